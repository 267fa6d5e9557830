//! The real quinn endpoint under turmoil: three hosts connect with mutual
//! TLS over `TurmoilUdpSocket` + `quinn::TokioRuntime`, exchange data, stay
//! connected through a 30 s idle period on keep-alives, and a seed replays
//! the same event trace.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Cluster, Trace, node, peer_addr, sim_endpoint};
use meshgate_federation::transport::{NodeName, accept_peer, connect_peer};
use quinn::{Connection, Endpoint};

const NAMES: [&str; 3] = ["a", "b", "c"];
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle period between the two rounds, in simulated time.
const IDLE: Duration = Duration::from_secs(30);
/// Longest message echoed, in bytes.
const MESSAGE_BYTES_MAX: usize = 1024;

/// Runs the three-host scenario for `seed` and returns its trace and the
/// simulated time it took.
fn scenario(seed: u64) -> (Trace, Duration) {
    let cluster = Cluster::new(&NAMES);
    let trace = Trace::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .build();
    for name in NAMES {
        let ca = cluster.ca.clone();
        let cert = cluster.cert(name);
        let trace = trace.clone();
        let finished = Arc::clone(&finished);
        sim.client(name, async move {
            let (endpoint, client) = sim_endpoint(seed, &ca, &cert).await?;
            let me = node(name);
            tokio::spawn(accept_and_echo(endpoint.clone(), me.clone(), trace.clone()));

            let mut connections = Vec::new();
            for peer in NAMES.iter().filter(|peer| **peer != name) {
                let authenticated = connect_peer(
                    &endpoint,
                    client.clone(),
                    peer_addr(peer),
                    &node(peer),
                    HANDSHAKE_TIMEOUT,
                )
                .await?;
                trace.record(format!("{name} connected to {peer}"));
                connections.push((*peer, authenticated.into_connection()));
            }
            for (peer, connection) in &connections {
                echo_round(connection, name, peer, 1, &trace).await?;
            }

            tokio::time::sleep(IDLE).await;
            for (peer, connection) in &connections {
                assert!(
                    connection.close_reason().is_none(),
                    "{name}->{peer} survived the idle period"
                );
                echo_round(connection, name, peer, 2, &trace).await?;
                let stats = connection.stats();
                assert!(stats.frame_tx.ping > 0, "keep-alives kept {name}->{peer}");
                trace.record(format!(
                    "{name}->{peer} datagrams tx {} rx {} pings {} rtt {}us",
                    stats.udp_tx.datagrams,
                    stats.udp_rx.datagrams,
                    stats.frame_tx.ping,
                    connection.rtt().as_micros()
                ));
            }

            // Stay up until every node is done: the others still talk to
            // this node's endpoint.
            finished.fetch_add(1, Ordering::SeqCst);
            while finished.load(Ordering::SeqCst) < NAMES.len() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for (_, connection) in connections {
                connection.close(0u32.into(), b"done");
            }
            Ok(())
        });
    }
    sim.run().unwrap();
    (trace, sim.elapsed())
}

async fn echo_round(
    connection: &Connection,
    name: &str,
    peer: &str,
    round: u32,
    trace: &Trace,
) -> Result<(), Box<dyn std::error::Error>> {
    let message = format!("round {round} from {name} to {peer}");
    let (mut send, mut receive) = connection.open_bi().await?;
    send.write_all(message.as_bytes()).await?;
    send.finish()?;
    let echo = receive.read_to_end(MESSAGE_BYTES_MAX).await?;
    assert_eq!(echo, message.as_bytes());
    trace.record(format!("{name} got echo of round {round} from {peer}"));
    Ok(())
}

/// Accepts peers and echoes every bidirectional stream they open.
async fn accept_and_echo(endpoint: Endpoint, me: NodeName, trace: Trace) {
    while let Some(incoming) = endpoint.accept().await {
        let me = me.clone();
        let trace = trace.clone();
        tokio::spawn(async move {
            let Ok(peer) = accept_peer(incoming, &me, HANDSHAKE_TIMEOUT).await else {
                trace.record(format!("{me} refused a peer"));
                return;
            };
            trace.record(format!("{me} accepted {}", peer.node()));
            while let Ok((mut send, mut receive)) = peer.connection().accept_bi().await {
                let Ok(request) = receive.read_to_end(MESSAGE_BYTES_MAX).await else {
                    return;
                };
                if send.write_all(&request).await.is_err() || send.finish().is_err() {
                    return;
                }
            }
        });
    }
}

#[test]
fn three_hosts_connect_with_mutual_tls_and_exchange_data_under_turmoil() {
    let (trace, elapsed) = scenario(1);
    let lines = trace.lines();
    for name in NAMES {
        for peer in NAMES.iter().filter(|peer| **peer != name) {
            for round in [1, 2] {
                let event = format!("{name} got echo of round {round} from {peer}");
                assert!(
                    lines.iter().any(|line| line.ends_with(&event)),
                    "missing {event:?} in\n{}",
                    lines.join("\n")
                );
            }
            let accepted = format!("{peer} accepted {name}");
            assert!(lines.iter().any(|line| line.ends_with(&accepted)));
        }
    }
    assert!(!lines.iter().any(|line| line.contains("refused")));
    assert!(elapsed >= IDLE, "the idle period ran in simulated time");
}

#[test]
fn same_seed_replays_the_same_trace() {
    let (first, _) = scenario(7);
    let (second, _) = scenario(7);
    assert_eq!(
        first.lines(),
        second.lines(),
        "seed 7 diverged between two runs"
    );
    assert_eq!(first.hash(), second.hash());

    // The hash does depend on the seed (turmoil's link latencies differ).
    let (other, _) = scenario(8);
    assert_ne!(first.hash(), other.hash());
}

#[test]
fn simulated_time_runs_much_faster_than_wall_time() {
    // The wall clock is read here only to compare it with simulated time;
    // nothing in the scenario reads it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let (_, simulated) = scenario(3);
    let wall = started.elapsed();
    assert!(simulated >= IDLE);
    assert!(
        wall < simulated / 2,
        "{simulated:?} of simulated time took {wall:?} of wall time"
    );
}
