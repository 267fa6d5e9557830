//! Peer links under turmoil: a partition drops the connection and the link
//! backs off; after repair it reconnects within the bounded backoff; a peer
//! with a certificate from another CA is refused and counted.

mod common;

use std::time::Duration;

use common::{Cluster, Trace, node, peer_addr, sim_endpoint};
use meshgate_federation::transport::{
    BackoffConfig, CaCertificate, ClusterCa, LinkConfig, LinkState, NodeCert, PeerLinks,
    TransportError,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::{Instant, timeout};

fn link_config() -> LinkConfig {
    LinkConfig {
        backoff: BackoffConfig {
            initial_backoff_ms: 200,
            max_backoff_ms: 2_000,
            jitter_percent: 20,
        },
        connect_timeout_ms: 3_000,
        ..LinkConfig::default()
    }
}

/// Longest a link may take to reconnect once the network is back: an
/// attempt begun during the partition may run out its timeout, then the
/// longest backoff, then one handshake (a few simulated round trips).
fn reconnect_bound() -> Duration {
    let config = link_config();
    Duration::from_millis(config.connect_timeout_ms + config.backoff.max_backoff_ms + 1_000)
}

/// A state for the trace: a backoff's deadline is an absolute tokio instant
/// whose base differs per run, so record how far ahead it is instead.
fn describe(state: &LinkState) -> String {
    match state {
        LinkState::Backoff { until, attempts } => format!(
            "Backoff for {:?} after {attempts} failures",
            until.saturating_duration_since(Instant::now())
        ),
        other => format!("{other:?}"),
    }
}

/// Registers host `name` running peer links that accept, record and hold
/// every incoming peer connection.
fn accepting_host(
    sim: &mut turmoil::Sim<'_>,
    name: &'static str,
    seed: u64,
    ca: CaCertificate,
    cert: NodeCert,
    trace: Trace,
) {
    sim.host(name, move || {
        let (ca, cert, trace) = (ca.clone(), cert.clone(), trace.clone());
        async move {
            let (endpoint, client) = sim_endpoint(seed, &ca, &cert).await?;
            let rng = SmallRng::seed_from_u64(seed);
            let (_links, mut accepted) =
                PeerLinks::start(node(name), endpoint, client, link_config(), rng)?;
            let mut held = Vec::new();
            while let Some(peer) = accepted.recv().await {
                trace.record(format!("{name} accepted {}", peer.node()));
                held.push(peer);
            }
            Ok(())
        }
    });
}

/// The partition scenario; returns its trace.
fn partition_scenario(seed: u64) -> Trace {
    let cluster = Cluster::new(&["a", "b"]);
    let trace = Trace::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .build();
    accepting_host(
        &mut sim,
        "b",
        seed,
        cluster.ca.clone(),
        cluster.cert("b"),
        trace.clone(),
    );

    let (ca, cert, record) = (cluster.ca.clone(), cluster.cert("a"), trace.clone());
    sim.client("a", async move {
        let trace = record;
        let (endpoint, client) = sim_endpoint(seed, &ca, &cert).await?;
        let rng = SmallRng::seed_from_u64(seed);
        let (links, _accepted) = PeerLinks::start(node("a"), endpoint, client, link_config(), rng)?;
        let b = node("b");
        links.add_peer(b.clone(), peer_addr("b"))?;
        let mut watch = links.watch(&b).expect("link added");

        let first = timeout(Duration::from_secs(10), watch.connected())
            .await?
            .expect("link stays open");
        assert!(matches!(links.state(&b), Some(LinkState::Connected { .. })));
        trace.record("a connected to b");

        turmoil::partition("a", "b");
        trace.record("partitioned");
        // Keep-alives go unanswered; the idle timeout (4 s) ends the
        // connection and the link backs off.
        timeout(Duration::from_secs(10), async {
            while !matches!(watch.state(), LinkState::Backoff { .. }) {
                assert!(watch.changed().await, "link task alive");
            }
        })
        .await?;
        let LinkState::Backoff { attempts, .. } = watch.state() else {
            unreachable!("waited for Backoff");
        };
        assert_eq!(attempts, 1, "a lost connection is the first failure");
        assert_eq!(first.close_reason(), Some(quinn::ConnectionError::TimedOut));
        assert!(links.connection(&b).is_none());
        trace.record(format!("a lost b, state {}", describe(&watch.state())));

        // Stay cut off long enough for attempts to fail and backoff to grow.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let stats = links.stats();
        assert!(stats.connect_failures >= 1, "{stats:?}");
        assert_eq!(stats.refused_handshakes, 0, "{stats:?}");
        assert!(links.connection(&b).is_none());

        turmoil::repair("a", "b");
        let repaired = Instant::now();
        trace.record(format!("repaired, state {}", describe(&watch.state())));
        let second = timeout(reconnect_bound(), watch.connected())
            .await
            .map_err(|_| format!("no reconnect within {:?}", reconnect_bound()))?
            .expect("link stays open");
        trace.record(format!("a reconnected to b after {:?}", repaired.elapsed()));
        assert_ne!(second.stable_id(), first.stable_id());

        let stats = links.stats();
        assert_eq!(stats.connects, 2, "{stats:?}");
        assert_eq!(stats.disconnects, 1, "{stats:?}");
        trace.record(format!("a stats {stats:?}"));
        Ok(())
    });
    sim.run().unwrap();
    trace
}

#[test]
fn partitioned_link_backs_off_then_reconnects_after_repair_within_the_bound() {
    let trace = partition_scenario(11);
    let lines = trace.lines();
    // b learned who dialed it from the certificate, twice (one per connection).
    let accepted = lines
        .iter()
        .filter(|line| line.ends_with("b accepted a"))
        .count();
    assert_eq!(accepted, 2, "{}", lines.join("\n"));
}

#[test]
fn links_replay_the_same_trace_for_the_same_seed() {
    // Backoff jitter comes from the seeded RNG, so even the reconnect time
    // repeats.
    assert_eq!(partition_scenario(5).lines(), partition_scenario(5).lines());
}

#[test]
fn link_to_a_peer_with_a_certificate_from_another_ca_is_refused_and_counted() {
    let seed = 21;
    let cluster = Cluster::new(&["a"]);
    let stranger = ClusterCa::generate().unwrap();
    let impostor = stranger.issue_node_cert(&node("b"), &[]).unwrap();
    let trace = Trace::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(60))
        .build();
    // The impostor trusts the cluster CA, so only its own certificate is
    // wrong.
    accepting_host(
        &mut sim,
        "b",
        seed,
        cluster.ca.clone(),
        impostor,
        trace.clone(),
    );

    let (ca, cert) = (cluster.ca.clone(), cluster.cert("a"));
    sim.client("a", async move {
        let (endpoint, client) = sim_endpoint(seed, &ca, &cert).await?;
        let rng = SmallRng::seed_from_u64(seed);
        let (links, _accepted) = PeerLinks::start(node("a"), endpoint, client, link_config(), rng)?;
        let b = node("b");
        links.add_peer(b.clone(), peer_addr("b"))?;
        let error = links.add_peer(node("a"), peer_addr("a")).unwrap_err();
        assert!(matches!(error, TransportError::PeerRejected { .. }), "{error}");
        tokio::time::sleep(Duration::from_secs(10)).await;

        let stats = links.stats();
        assert_eq!(stats.connects, 0, "{stats:?}");
        assert!(stats.refused_handshakes >= 3, "{stats:?}");
        assert_eq!(stats.refused_handshakes, stats.connect_failures, "{stats:?}");
        assert!(
            matches!(
                links.state(&b),
                Some(LinkState::Backoff { attempts, .. } | LinkState::Connecting { attempt: attempts })
                    if attempts >= 3
            ),
            "{:?}",
            links.state(&b)
        );
        assert!(links.connection(&b).is_none());
        Ok(())
    });
    sim.run().unwrap();
    assert!(
        !trace.lines().iter().any(|line| line.contains("accepted")),
        "the impostor never got an authenticated connection"
    );
}
