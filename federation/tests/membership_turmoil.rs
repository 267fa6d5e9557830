//! Membership under turmoil: the real driver over turmoil's UDP, on
//! simulated time. Five gateways in three regions converge; one is
//! partitioned away and marked down within the configured bound; after the
//! repair it is alive again under a higher incarnation. The same seed gives
//! the same event trace, compared by hash across two runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use meshgate_federation::membership::{
    ClusterSecret, Incarnation, MemberAddresses, MemberId, MemberState, Membership,
    MembershipConfig, MembershipDriver, MembershipHandle, NodeId,
};
use meshgate_storage::RegionId;
use ring::digest;

const REGIONS: [&str; 5] = ["us-east", "us-east", "eu-west", "eu-west", "ap-south"];
const GOSSIP_PORT: u16 = 7422;
const NODES: usize = 5;
const VICTIM: usize = 4;

type Trace = Rc<RefCell<Vec<String>>>;
type Handles = Rc<RefCell<BTreeMap<usize, MembershipHandle>>>;

fn config() -> MembershipConfig {
    MembershipConfig {
        cluster_key: Some(ClusterSecret::new("turmoil test cluster secret")),
        ..MembershipConfig::fast()
    }
}

fn host_name(index: usize) -> String {
    format!("node{index}")
}

fn gossip_address(index: usize) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(host_name(index)), GOSSIP_PORT)
}

/// Each node's RNG seed, derived from the scenario seed and the node.
fn node_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn record(trace: &Trace, line: String) {
    trace.borrow_mut().push(format!("{:>10?} {line}", now()));
}

async fn run_node(index: usize, seed: u64, trace: Trace, handles: Handles) -> turmoil::Result {
    let socket =
        turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), GOSSIP_PORT)).await?;
    let gossip = gossip_address(index);
    let id = MemberId::new(
        NodeId::parse(&host_name(index))?,
        RegionId::parse(REGIONS[index])?,
        Incarnation(1),
        MemberAddresses {
            gossip,
            peer: SocketAddr::new(gossip.ip(), 7423),
            client: SocketAddr::new(gossip.ip(), 7424),
        },
    );
    let core = Membership::new(id, &config(), node_seed(seed, index))?;
    let (driver, handle) = MembershipDriver::new(core, socket);
    let mut events = handle.subscribe();
    tokio::spawn(driver.run());
    let seeds = if index == 0 {
        vec![gossip_address(1)]
    } else {
        vec![gossip_address(0)]
    };
    handle.join(seeds).await?;
    handles.borrow_mut().insert(index, handle);
    loop {
        match events.recv().await {
            Ok(event) => record(&trace, format!("node{index} {event:?}")),
            Err(error) => {
                record(&trace, format!("node{index} event stream: {error}"));
                if matches!(error, tokio::sync::broadcast::error::RecvError::Closed) {
                    return Ok(());
                }
            }
        }
    }
}

fn handle(handles: &Handles, index: usize) -> Option<MembershipHandle> {
    handles.borrow().get(&index).cloned()
}

/// How `observer` sees `subject`: incarnation and state.
async fn seen(
    handles: &Handles,
    observer: usize,
    subject: usize,
) -> Option<(Incarnation, MemberState)> {
    let rows = handle(handles, observer)?.members().await.ok()?;
    let subject = gossip_address(subject);
    rows.into_iter()
        .find(|row| row.id.addresses().gossip == subject)
        .map(|row| (row.id.incarnation(), row.state))
}

async fn all_alive(handles: &Handles) -> bool {
    for observer in 0..NODES {
        for subject in 0..NODES {
            if !matches!(
                seen(handles, observer, subject).await,
                Some((_, MemberState::Alive))
            ) {
                return false;
            }
        }
    }
    true
}

async fn victim_down_everywhere(handles: &Handles) -> bool {
    for observer in (0..NODES).filter(|index| *index != VICTIM) {
        if !matches!(
            seen(handles, observer, VICTIM).await,
            Some((_, MemberState::Down))
        ) {
            return false;
        }
    }
    true
}

/// Polls every 10 ms of simulated time; returns the simulated time it took.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = now();
    while !condition().await {
        assert!(
            now() - start < limit,
            "{what}: not reached within {limit:?} (simulated)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    now() - start
}

/// What one run measured.
struct Outcome {
    trace_hash: String,
    trace_lines: usize,
    trace: Vec<String>,
    converged_after: Duration,
    detected_after: Duration,
    detection_bound: Duration,
    recovered_after: Duration,
    victim_incarnation: Incarnation,
}

fn run_scenario(seed: u64) -> Outcome {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build();
    let trace: Trace = Rc::default();
    let handles: Handles = Rc::default();
    for index in 0..NODES {
        let (trace, handles) = (trace.clone(), handles.clone());
        sim.host(host_name(index), move || {
            run_node(index, seed, trace.clone(), handles.clone())
        });
    }
    let detection_bound = config()
        .validate()
        .unwrap()
        .failure_detection_bound(NODES as u32);
    let outcome: Rc<RefCell<Option<Outcome>>> = Rc::default();
    {
        let (trace, handles, outcome) = (trace.clone(), handles.clone(), outcome.clone());
        sim.client("test", async move {
            let limit = Duration::from_secs(20);
            let converged_after = wait_until("converged", limit, || all_alive(&handles)).await;
            record(&trace, "test: all alive".to_string());

            for other in (0..NODES).filter(|index| *index != VICTIM) {
                turmoil::partition(host_name(VICTIM), host_name(other));
            }
            record(&trace, "test: node4 partitioned".to_string());
            let detected_after =
                wait_until("victim down", limit, || victim_down_everywhere(&handles)).await;
            record(&trace, "test: node4 down everywhere".to_string());

            // Long enough for node4 to hold everyone down too.
            tokio::time::sleep(Duration::from_secs(2)).await;
            for other in (0..NODES).filter(|index| *index != VICTIM) {
                turmoil::repair(host_name(VICTIM), host_name(other));
            }
            record(&trace, "test: partition repaired".to_string());
            let recovered_after = wait_until("recovered", limit, || all_alive(&handles)).await;
            record(&trace, "test: all alive again".to_string());
            let (victim_incarnation, _) = seen(&handles, 0, VICTIM).await.unwrap();

            let lines = trace.borrow();
            let mut context = digest::Context::new(&digest::SHA256);
            for line in lines.iter() {
                context.update(line.as_bytes());
                context.update(b"\n");
            }
            let trace_hash: String = context
                .finish()
                .as_ref()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            *outcome.borrow_mut() = Some(Outcome {
                trace_hash,
                trace_lines: lines.len(),
                trace: lines.clone(),
                converged_after,
                detected_after,
                detection_bound,
                recovered_after,
                victim_incarnation,
            });
            Ok(())
        });
    }
    if let Err(error) = sim.run() {
        for line in trace.borrow().iter() {
            eprintln!("{line}");
        }
        panic!("seed {seed}: simulation failed: {error}");
    }
    outcome.borrow_mut().take().unwrap()
}

#[test]
fn five_nodes_converge_detect_a_partition_and_recover_from_it() {
    let seed = 7;
    let outcome = run_scenario(seed);
    eprintln!(
        "seed {seed}: converged after {:?}, partitioned node down everywhere after {:?} \
         (bound {:?}), all alive again {:?} after the repair, node4 now incarnation {}",
        outcome.converged_after,
        outcome.detected_after,
        outcome.detection_bound,
        outcome.recovered_after,
        outcome.victim_incarnation.0
    );
    assert!(
        outcome.detected_after <= outcome.detection_bound,
        "partitioned node marked down after {:?}, bound {:?}",
        outcome.detected_after,
        outcome.detection_bound
    );
    assert!(outcome.victim_incarnation > Incarnation(1));
    assert!(outcome.converged_after < Duration::from_secs(5));
    assert!(outcome.recovered_after < Duration::from_secs(5));
    if std::env::var_os("MEMBERSHIP_TRACE").is_some() {
        eprintln!("{}", outcome.trace.join("\n"));
    }
}

#[test]
fn same_seed_gives_the_same_event_trace() {
    let first = run_scenario(42);
    let second = run_scenario(42);
    eprintln!(
        "seed 42: trace of {} lines, hash {}",
        first.trace_lines, first.trace_hash
    );
    assert!(
        first.trace_lines > 20,
        "the trace records the whole scenario"
    );
    assert_eq!(first.trace, second.trace);
    assert_eq!(first.trace_hash, second.trace_hash);
}
