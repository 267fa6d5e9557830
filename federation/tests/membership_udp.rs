//! Membership over real UDP sockets on 127.0.0.1: five gateways in three
//! regions, each a driver task. Uses the `fast` preset, so every scenario
//! takes a few seconds of wall time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use meshgate_federation::membership::{
    ClusterSecret, Incarnation, MemberAddresses, MemberId, MemberState, Membership,
    MembershipConfig, MembershipDriver, MembershipError, MembershipEvent, MembershipHandle, NodeId,
};
use meshgate_storage::RegionId;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const REGIONS: [&str; 5] = ["us-east", "us-east", "eu-west", "eu-west", "ap-south"];
const WAIT_MAX: Duration = Duration::from_secs(15);

fn config() -> MembershipConfig {
    MembershipConfig {
        cluster_key: Some(ClusterSecret::new("udp test cluster secret")),
        ..MembershipConfig::fast()
    }
}

struct Node {
    handle: MembershipHandle,
    task: JoinHandle<Result<(), MembershipError>>,
    address: SocketAddr,
}

async fn start(index: usize, incarnation: u64, bind: SocketAddr, seeds: Vec<SocketAddr>) -> Node {
    let socket = UdpSocket::bind(bind).await.unwrap();
    let address = socket.local_addr().unwrap();
    let id = MemberId::new(
        NodeId::parse(&format!("gw-{index}")).unwrap(),
        RegionId::parse(REGIONS[index]).unwrap(),
        Incarnation(incarnation),
        MemberAddresses {
            gossip: address,
            peer: SocketAddr::from(([127, 0, 0, 1], 17_000 + index as u16)),
            client: SocketAddr::from(([127, 0, 0, 1], 18_000 + index as u16)),
        },
    );
    let core = Membership::new(id, &config(), 1000 + index as u64).unwrap();
    let (driver, handle) = MembershipDriver::new(core, socket);
    let task = tokio::spawn(driver.run());
    handle.join(seeds).await.unwrap();
    Node {
        handle,
        task,
        address,
    }
}

/// Five nodes; node 0 has no seed, the others join through node 0.
async fn start_cluster() -> Vec<Node> {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut nodes = vec![start(0, 1, any_port, Vec::new()).await];
    for index in 1..5 {
        let seed = nodes[0].address;
        nodes.push(start(index, 1, any_port, vec![seed]).await);
    }
    wait_until("all alive", || all_alive(&nodes)).await;
    nodes
}

/// Each node's view: gossip address -> (incarnation, state).
async fn views(nodes: &[&Node]) -> Vec<BTreeMap<SocketAddr, (Incarnation, MemberState)>> {
    let mut views = Vec::new();
    for node in nodes {
        let rows = node.handle.members().await.unwrap();
        views.push(
            rows.into_iter()
                .map(|row| (row.id.addresses().gossip, (row.id.incarnation(), row.state)))
                .collect(),
        );
    }
    views
}

async fn all_alive(nodes: &[Node]) -> bool {
    let all: Vec<&Node> = nodes.iter().collect();
    views(&all).await.iter().all(|view| {
        view.len() == nodes.len() && view.values().all(|(_, state)| *state == MemberState::Alive)
    })
}

async fn state_seen_by_all(
    observers: &[&Node],
    subject: SocketAddr,
) -> Vec<Option<(Incarnation, MemberState)>> {
    views(observers)
        .await
        .iter()
        .map(|view| view.get(&subject).copied())
        .collect()
}

/// Polls `condition` every 20 ms; fails after [`WAIT_MAX`]. Returns how long
/// it took.
async fn wait_until<F, Fut>(what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < WAIT_MAX,
            "{what}: not reached within {WAIT_MAX:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_in_three_regions_converge_to_all_alive() {
    let nodes = start_cluster().await;
    let rows = nodes[4].handle.members().await.unwrap();
    let regions: std::collections::BTreeSet<&str> =
        rows.iter().map(|row| row.id.region().as_str()).collect();
    assert_eq!(regions.len(), 3);
    assert_eq!(rows.iter().filter(|row| row.local).count(), 1);
    let stats = nodes[0].handle.stats().await.unwrap();
    assert_eq!(stats.members_alive, 4);
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_marked_down_then_rejoins_with_a_higher_incarnation() {
    let mut nodes = start_cluster().await;
    let victim = nodes.pop().unwrap();
    let address = victim.address;
    victim.task.abort();
    assert!(victim.task.await.unwrap_err().is_cancelled());
    let killed_at = Instant::now();

    let others: Vec<&Node> = nodes.iter().collect();
    let took = wait_until("victim down everywhere", || async {
        state_seen_by_all(&others, address)
            .await
            .iter()
            .all(|state| matches!(state, Some((_, MemberState::Down))))
    })
    .await;
    let bound = config().validate().unwrap().failure_detection_bound(5);
    eprintln!("killed node marked down by all four others after {took:?} (bound {bound:?})");
    // Twice the bound: wall-clock scheduling on a loaded machine adds jitter
    // that the virtual-time and turmoil tests do not have.
    assert!(killed_at.elapsed() <= bound * 2, "detection took {took:?}");

    // Restart on the same address, one incarnation higher (as a persisted
    // start counter would give).
    let restarted = start(4, 2, address, vec![nodes[0].address]).await;
    let took = wait_until("victim alive again with incarnation 2", || async {
        state_seen_by_all(&others, address)
            .await
            .iter()
            .all(|state| *state == Some((Incarnation(2), MemberState::Alive)))
    })
    .await;
    eprintln!("restarted node alive again everywhere after {took:?}");
    nodes.push(restarted);
    wait_until("all alive", || all_alive(&nodes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_seen_as_left() {
    let nodes = start_cluster().await;
    let mut events = nodes[0].handle.subscribe();
    let leaver = &nodes[2];
    leaver.handle.leave().await.unwrap();
    assert!(matches!(
        leaver.handle.members().await,
        Err(MembershipError::Stopped)
    ));

    let others: Vec<&Node> = nodes
        .iter()
        .filter(|node| node.address != leaver.address)
        .collect();
    let took = wait_until("leaver seen as left", || async {
        state_seen_by_all(&others, leaver.address)
            .await
            .iter()
            .all(|state| matches!(state, Some((_, MemberState::Left))))
    })
    .await;
    eprintln!("graceful leave seen by all after {took:?}");
    let mut saw_left = false;
    while let Ok(event) = events.try_recv() {
        if let MembershipEvent::MemberLeft(id) = &event {
            saw_left |= id.addresses().gossip == leaver.address;
        }
    }
    assert!(saw_left, "node 0 reported the departure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_on_the_gossip_port_change_nothing() {
    let nodes = start_cluster().await;
    let all: Vec<&Node> = nodes.iter().collect();
    let target = &nodes[1];
    let before_view = views(&all).await;
    let before_drops = target.handle.stats().await.unwrap().dropped;

    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0; 1],
        vec![1; 34],
        vec![0xff; 1400],
        vec![0xab; 2000],
    ];
    // A well-formed envelope (version 1, kind SWIM) with a wrong tag.
    let mut forged = vec![1, 0];
    forged.extend_from_slice(&[7; 100]);
    forged.extend_from_slice(&[0; 32]);
    garbage.push(forged);
    let mut state = 0x5eed_u64;
    for length in [3usize, 50, 200, 700, 1399] {
        garbage.push(
            (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect(),
        );
    }
    for datagram in &garbage {
        attacker.send_to(datagram, target.address).await.unwrap();
    }

    let count = garbage.len() as u64;
    wait_until("every garbage datagram counted", || async {
        let drops = target.handle.stats().await.unwrap().dropped;
        drops.total() >= before_drops.total() + count
    })
    .await;
    let drops = target.handle.stats().await.unwrap().dropped;
    assert_eq!(drops.total() - before_drops.total(), count, "{drops:?}");
    assert_eq!(drops.too_large - before_drops.too_large, 1);
    // Empty, 1 byte and 3 bytes are shorter than an envelope; everything
    // else fails its tag.
    assert_eq!(drops.too_short - before_drops.too_short, 3);
    assert_eq!(
        drops.authentication_failed - before_drops.authentication_failed,
        count - 4
    );
    assert_eq!(views(&all).await, before_view);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_published_on_one_node_reaches_all() {
    let nodes = start_cluster().await;
    let mut events = nodes[4].handle.subscribe();
    let change = nodes[2]
        .handle
        .publish_config(
            "mirror-rule/orders-all",
            Some(b"orders.* -> us-east,eu-west,ap-south".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(change.version, 1);
    let took = wait_until("config everywhere", || async {
        for node in &nodes {
            if node.handle.config_entries().await.unwrap() != vec![change.clone()] {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("config change reached all five nodes after {took:?}");
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let MembershipEvent::ConfigChanged(received) = events.recv().await.unwrap() {
                return received;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(event, change);
}
