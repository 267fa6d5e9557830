//! Virtual-time harness: several [`Membership`] cores exchanging datagrams
//! through an in-memory network with a fixed latency, their timers on one
//! virtual clock. No sockets, no threads, no wall clock (beyond one base
//! instant); a run is a function of its seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshgate_storage::RegionId;
use proptest::prelude::*;

use super::auth::{self, ClusterKey, PacketKind};
use super::*;

const LATENCY: Duration = Duration::from_millis(2);

enum Delivery {
    Packet {
        from: SocketAddr,
        to: SocketAddr,
        payload: bytes::Bytes,
    },
    Timer {
        node: usize,
        generation: u32,
        timer: MembershipTimer,
    },
}

struct Node {
    core: Membership,
    address: SocketAddr,
    /// Bumped when the node crashes, so its pending timers die with it.
    generation: u32,
    running: bool,
    events: Vec<(Duration, MembershipEvent)>,
}

struct Cluster {
    base: Instant,
    elapsed: Duration,
    queue: BTreeMap<(Duration, u64), Delivery>,
    sequence: u64,
    nodes: Vec<Node>,
    /// Unordered pairs of addresses that cannot talk.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
    /// Every datagram delivered, for tests that replay or corrupt them.
    captured: Vec<(SocketAddr, SocketAddr, bytes::Bytes)>,
}

fn address(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, index as u8 + 1], 7422))
}

fn identity(index: usize, incarnation: u64) -> MemberId {
    let regions = ["us-east", "us-east", "eu-west", "eu-west", "ap-south"];
    let gossip = address(index);
    MemberId::new(
        NodeId::parse(&format!("node-{index}")).unwrap(),
        RegionId::parse(regions[index % regions.len()]).unwrap(),
        Incarnation(incarnation),
        MemberAddresses {
            gossip,
            peer: SocketAddr::new(gossip.ip(), 7423),
            client: SocketAddr::new(gossip.ip(), 7424),
        },
    )
}

fn config() -> MembershipConfig {
    MembershipConfig {
        cluster_key: Some(ClusterSecret::new("harness cluster secret!")),
        ..MembershipConfig::fast()
    }
}

impl Cluster {
    fn new(size: usize) -> Self {
        Self::with_seed(size, 0)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "one base instant; the harness only adds virtual durations to it"
    )]
    fn with_seed(size: usize, seed: u64) -> Self {
        let mut cluster = Self {
            base: Instant::now(),
            elapsed: Duration::ZERO,
            queue: BTreeMap::new(),
            sequence: 0,
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            captured: Vec::new(),
        };
        for index in 0..size {
            let core =
                Membership::new(identity(index, 1), &config(), seed * 1000 + index as u64).unwrap();
            cluster.nodes.push(Node {
                core,
                address: address(index),
                generation: 0,
                running: true,
                events: Vec::new(),
            });
            cluster.drain(index);
        }
        cluster
    }

    /// Everyone joins through node 0 (node 0 through node 1).
    fn join_all(&mut self) {
        for index in 0..self.nodes.len() {
            let seed = address(if index == 0 { 1 } else { 0 });
            self.nodes[index].core.join(&[seed]).unwrap();
            self.drain(index);
        }
    }

    fn push(&mut self, delay: Duration, delivery: Delivery) {
        self.sequence += 1;
        self.queue
            .insert((self.elapsed + delay, self.sequence), delivery);
    }

    fn drain(&mut self, index: usize) {
        let generation = self.nodes[index].generation;
        let from = self.nodes[index].address;
        while let Some(transmit) = self.nodes[index].core.poll_transmit() {
            self.push(
                LATENCY,
                Delivery::Packet {
                    from,
                    to: transmit.destination,
                    payload: transmit.payload,
                },
            );
        }
        while let Some((delay, timer)) = self.nodes[index].core.poll_timer() {
            self.push(
                delay,
                Delivery::Timer {
                    node: index,
                    generation,
                    timer,
                },
            );
        }
        while let Some(event) = self.nodes[index].core.poll_event() {
            let at = self.elapsed;
            self.nodes[index].events.push((at, event));
        }
    }

    fn blocked(&self, a: SocketAddr, b: SocketAddr) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn run_for(&mut self, duration: Duration) {
        let until = self.elapsed + duration;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), delivery) = entry.remove_entry();
            self.elapsed = at;
            match delivery {
                Delivery::Packet { from, to, payload } => {
                    let Some(index) = self.nodes.iter().position(|node| node.address == to) else {
                        continue;
                    };
                    if !self.nodes[index].running || self.blocked(from, to) {
                        continue;
                    }
                    self.captured.push((from, to, payload.clone()));
                    let now = self.base + self.elapsed;
                    let _ = self.nodes[index].core.handle_packet(now, from, &payload);
                    self.drain(index);
                }
                Delivery::Timer {
                    node,
                    generation,
                    timer,
                } => {
                    if self.nodes[node].running && self.nodes[node].generation == generation {
                        self.nodes[node].core.handle_timer(timer);
                        self.drain(node);
                    }
                }
            }
        }
        self.elapsed = until;
    }

    /// Runs until `done` holds, checking every 10 ms of virtual time; fails
    /// after `limit`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Cluster) -> bool) -> Duration {
        let start = self.elapsed;
        while !done(self) {
            if self.elapsed - start >= limit {
                for (index, node) in self.nodes.iter().enumerate() {
                    eprintln!("node {index} ({:?}):", node.core.identity());
                    for row in node.core.members() {
                        eprintln!(
                            "    {:?} {:?} swim#{}",
                            row.id, row.state, row.swim_incarnation
                        );
                    }
                    for (at, event) in node.events.iter().rev().take(12).rev() {
                        eprintln!("    {at:?} {event:?}");
                    }
                }
                panic!("condition not reached within {limit:?}");
            }
            self.run_for(Duration::from_millis(10));
        }
        self.elapsed - start
    }

    fn state_of(&self, observer: usize, subject: usize) -> Option<MemberState> {
        let subject = self.nodes[subject].address;
        self.nodes[observer]
            .core
            .members()
            .into_iter()
            .find(|row| row.id.addresses().gossip == subject)
            .map(|row| row.state)
    }

    fn all_see_all_alive(&self) -> bool {
        (0..self.nodes.len()).all(|observer| {
            (0..self.nodes.len())
                .all(|subject| self.state_of(observer, subject) == Some(MemberState::Alive))
        })
    }

    fn others(&self, subject: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |index| *index != subject)
    }
}

fn converged(size: usize) -> Cluster {
    converged_with_seed(size, 0)
}

fn converged_with_seed(size: usize, seed: u64) -> Cluster {
    let mut cluster = Cluster::with_seed(size, seed);
    cluster.join_all();
    cluster.run_until(Duration::from_secs(10), Cluster::all_see_all_alive);
    cluster
}

#[test]
fn five_nodes_in_three_regions_converge_to_all_alive() {
    let mut cluster = Cluster::new(5);
    cluster.join_all();
    let took = cluster.run_until(Duration::from_secs(10), Cluster::all_see_all_alive);
    assert!(took < Duration::from_secs(3), "converged in {took:?}");
    let regions: BTreeSet<String> = cluster.nodes[0]
        .core
        .members()
        .iter()
        .map(|row| row.id.region().as_str().to_string())
        .collect();
    assert_eq!(regions.len(), 3);
}

#[test]
fn crashed_node_is_marked_down_within_the_detection_bound() {
    let mut cluster = converged(5);
    cluster.nodes[4].running = false;
    cluster.nodes[4].generation += 1;
    let bound = cluster.nodes[0].core.config().failure_detection_bound(5);
    let took = cluster.run_until(bound, |cluster| {
        cluster
            .others(4)
            .all(|observer| cluster.state_of(observer, 4) == Some(MemberState::Down))
    });
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
}

#[test]
fn graceful_leave_is_reported_as_left_not_down() {
    for seed in 0..20 {
        graceful_leave_is_reported_as_left_not_down_with_seed(seed);
    }
}

fn graceful_leave_is_reported_as_left_not_down_with_seed(seed: u64) {
    let mut cluster = converged_with_seed(5, seed);
    cluster.nodes[2].core.leave().unwrap();
    cluster.drain(2);
    cluster.run_for(LATENCY * 2);
    cluster.nodes[2].running = false;
    cluster.run_until(Duration::from_secs(3), |cluster| {
        cluster
            .others(2)
            .all(|observer| cluster.state_of(observer, 2) == Some(MemberState::Left))
    });
    for observer in cluster.others(2) {
        let events = &cluster.nodes[observer].events;
        assert!(events.iter().any(|(_, event)| matches!(event, MembershipEvent::MemberLeft(id) if id.addresses().gossip == address(2))));
        assert!(!events.iter().any(|(_, event)| matches!(event, MembershipEvent::MemberDown(id) if id.addresses().gossip == address(2))));
    }
}

/// Cuts node 4 off, waits until the others hold it down, keeps the cut for
/// `hold`, heals, and waits until everyone sees everyone alive.
fn partition_and_heal(seed: u64, hold: Duration) -> Cluster {
    let mut cluster = converged_with_seed(5, seed);
    for other in 0..4 {
        cluster.cut.insert((
            address(other).min(address(4)),
            address(other).max(address(4)),
        ));
    }
    let bound = cluster.nodes[0].core.config().failure_detection_bound(5);
    cluster.run_until(bound, |cluster| {
        cluster
            .others(4)
            .all(|observer| cluster.state_of(observer, 4) == Some(MemberState::Down))
    });
    cluster.run_for(hold);
    cluster.cut.clear();
    cluster.run_until(Duration::from_secs(5), Cluster::all_see_all_alive);
    for observer in cluster.others(4) {
        let row = cluster.nodes[observer]
            .core
            .members()
            .into_iter()
            .find(|row| row.id.addresses().gossip == address(4))
            .unwrap();
        assert!(row.id.incarnation() > Incarnation(1), "{row:?}");
    }
    cluster
}

#[test]
fn isolated_node_returns_under_a_renewed_identity_and_no_one_else_renews() {
    for seed in 0..20 {
        let cluster = partition_and_heal(seed, Duration::from_secs(2));
        for index in 0..4 {
            assert_eq!(
                cluster.nodes[index].core.identity().incarnation(),
                Incarnation(1)
            );
        }
    }
}

#[test]
fn partition_healed_as_soon_as_it_is_detected_still_converges() {
    // Healed before the cut-off node holds everyone down, so each side may
    // hear from a member it holds down. foca then tells the sender
    // (`TurnUndead`) and two nodes that hold each other down both renew:
    // renames, but no lasting split.
    for seed in 0..20 {
        partition_and_heal(seed, Duration::ZERO);
    }
}

#[test]
fn member_told_it_is_suspected_refutes_everywhere() {
    let mut cluster = converged(3);
    let key = ClusterKey::from_secret(&ClusterSecret::new("harness cluster secret!"));
    let notice = super::sync::encode_suspect_notice(&identity(1, 1), 0);
    let packet = auth::seal(&key, PacketKind::Sync, &notice);
    let now = cluster.base + cluster.elapsed;
    assert_eq!(
        cluster.nodes[1]
            .core
            .handle_packet(now, address(0), &packet),
        Ok(())
    );
    cluster.drain(1);
    cluster.run_until(Duration::from_secs(2), |cluster| {
        cluster.others(1).all(|observer| {
            cluster.nodes[observer]
                .core
                .members()
                .iter()
                .any(|row| row.id == identity(1, 1) && row.swim_incarnation > 0)
        })
    });
    // A notice about someone else is refused.
    let stranger = super::sync::encode_suspect_notice(&identity(2, 1), 0);
    let packet = auth::seal(&key, PacketKind::Sync, &stranger);
    let now = cluster.base + cluster.elapsed;
    assert_eq!(
        cluster.nodes[1]
            .core
            .handle_packet(now, address(0), &packet),
        Err(DropReason::Refused)
    );
}

#[test]
fn config_published_on_one_node_reaches_all() {
    let mut cluster = converged(5);
    let change = cluster.nodes[3]
        .core
        .publish_config(
            "mirror-rule/orders-all",
            Some(b"orders.* us-east,eu-west".to_vec()),
        )
        .unwrap();
    cluster.drain(3);
    assert_eq!(change.version, 1);
    cluster.run_until(Duration::from_secs(2), |cluster| {
        cluster
            .nodes
            .iter()
            .all(|node| node.core.config_entries() == vec![change.clone()])
    });
    for node in &cluster.nodes {
        assert!(
            node.events
                .iter()
                .any(|(_, event)| *event == MembershipEvent::ConfigChanged(change.clone()))
        );
    }
}

#[test]
fn concurrent_config_writers_converge_on_the_higher_node_id() {
    let mut cluster = converged(5);
    cluster.nodes[1]
        .core
        .publish_config("k", Some(b"from 1".to_vec()))
        .unwrap();
    cluster.nodes[3]
        .core
        .publish_config("k", Some(b"from 3".to_vec()))
        .unwrap();
    cluster.drain(1);
    cluster.drain(3);
    cluster.run_until(Duration::from_secs(3), |cluster| {
        cluster.nodes.iter().all(|node| {
            node.core.config_entry("k").and_then(|change| change.value) == Some(b"from 3".to_vec())
        })
    });
    // A delete from anyone who saw version 1 wins against both.
    cluster.nodes[0].core.publish_config("k", None).unwrap();
    cluster.drain(0);
    cluster.run_until(Duration::from_secs(3), |cluster| {
        cluster
            .nodes
            .iter()
            .all(|node| node.core.config_entries().is_empty())
    });
}

#[test]
fn node_joining_after_a_publish_gets_the_config_through_anti_entropy() {
    let mut cluster = Cluster::new(3);
    // Nodes 0 and 1 form a cluster and publish; node 2 joins much later,
    // after gossip stopped retransmitting the change.
    cluster.nodes[0].core.join(&[address(1)]).unwrap();
    cluster.drain(0);
    cluster.run_for(Duration::from_secs(1));
    cluster.nodes[0]
        .core
        .publish_config("topic/orders", Some(b"p=8".to_vec()))
        .unwrap();
    cluster.drain(0);
    cluster.run_for(Duration::from_secs(5));
    cluster.nodes[2].core.join(&[address(0)]).unwrap();
    cluster.drain(2);
    cluster.run_until(Duration::from_secs(5), |cluster| {
        cluster.nodes[2].core.config_entry("topic/orders").is_some()
    });
    assert!(cluster.nodes[2].core.stats().sync_records_applied > 0);
}

#[test]
fn metadata_change_reaches_every_member() {
    let mut cluster = converged(5);
    let mut metadata = MemberMetadata::default();
    metadata.load.insert("cpu".to_string(), 0.5);
    metadata.topic_heads.insert(
        TopicHead {
            topic: "orders".to_string(),
            partition: 3,
            origin: RegionId::parse("eu-west").unwrap(),
        },
        1234,
    );
    let version = cluster.nodes[2]
        .core
        .set_metadata(metadata.clone())
        .unwrap();
    cluster.drain(2);
    cluster.run_until(Duration::from_secs(2), |cluster| {
        cluster.others(2).all(|observer| {
            cluster.nodes[observer]
                .core
                .members()
                .iter()
                .any(|row| row.metadata == Some((version, metadata.clone())) && !row.local)
        })
    });
}

#[test]
fn oversized_metadata_is_refused_and_the_old_one_kept() {
    let mut cluster = Cluster::new(1);
    let mut metadata = MemberMetadata::default();
    for index in 0..200 {
        metadata.load.insert(format!("figure-{index}"), 1.0);
    }
    assert!(matches!(
        cluster.nodes[0].core.set_metadata(metadata),
        Err(MembershipError::MetadataTooLarge { .. })
    ));
    let local = cluster.nodes[0].core.members().remove(0);
    assert_eq!(local.metadata, Some((1, MemberMetadata::default())));
    cluster.drain(0);
}

fn view_summary(core: &Membership) -> Vec<(MemberId, MemberState)> {
    core.members()
        .into_iter()
        .map(|row| (row.id, row.state))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn bit_flipped_packets_are_dropped_counted_and_change_nothing(
        pick in any::<usize>(),
        bit in any::<usize>(),
    ) {
        let mut cluster = converged(3);
        let (from, to, payload) = cluster.captured[pick % cluster.captured.len()].clone();
        let index = cluster.nodes.iter().position(|node| node.address == to).unwrap();
        let before = view_summary(&cluster.nodes[index].core);
        let dropped = cluster.nodes[index].core.stats().dropped.total();
        let mut corrupted = payload.to_vec();
        let bit = bit % (corrupted.len() * 8);
        corrupted[bit / 8] ^= 1 << (bit % 8);
        let now = cluster.base + cluster.elapsed;
        let result = cluster.nodes[index].core.handle_packet(now, from, &corrupted);
        prop_assert_eq!(result, Err(DropReason::AuthenticationFailed));
        prop_assert_eq!(cluster.nodes[index].core.stats().dropped.total(), dropped + 1);
        prop_assert_eq!(view_summary(&cluster.nodes[index].core), before);
        prop_assert!(cluster.nodes[index].core.poll_transmit().is_none());
    }

    #[test]
    fn garbage_never_panics_and_is_counted(garbage in prop::collection::vec(any::<u8>(), 0..1600)) {
        let mut core = Membership::new(identity(0, 1), &config(), 0).unwrap();
        let before = view_summary(&core);
        #[allow(clippy::disallowed_methods, reason = "a value to pass, not a clock read that decides anything")]
        let now = Instant::now();
        prop_assert!(core.handle_packet(now, address(9), &garbage).is_err());
        prop_assert_eq!(core.stats().dropped.total(), 1);
        prop_assert_eq!(view_summary(&core), before);
    }

    #[test]
    fn authentic_garbage_never_panics(
        kind in prop::sample::select(vec![PacketKind::Swim, PacketKind::Sync]),
        body in prop::collection::vec(any::<u8>(), 0..1300),
    ) {
        let mut core = Membership::new(identity(0, 1), &config(), 0).unwrap();
        let key = ClusterKey::from_secret(&ClusterSecret::new("harness cluster secret!"));
        let packet = auth::seal(&key, kind, &body);
        #[allow(clippy::disallowed_methods, reason = "a value to pass, not a clock read that decides anything")]
        let now = Instant::now();
        let result = core.handle_packet(now, address(9), &packet);
        let dropped = core.stats().dropped.total();
        prop_assert_eq!(dropped, u64::from(result.is_err()));
    }
}
