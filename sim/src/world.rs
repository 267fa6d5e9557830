//! A simulated federation: gateways as turmoil hosts running the real node
//! code on an in-memory disk ([`MemFs`]), simulated UDP (gossip and QUIC)
//! and a wall clock that follows simulated time.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_federation::membership::MembershipConfig;
use meshgate_federation::transport::{ClusterCa, NodeName};
use meshgate_gateway::clock::Clock;
use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::{Environment, Gateway};
use meshgate_gateway::mirror::MirrorConfig;
use meshgate_gateway::node::Node;
use meshgate_gateway::tls::NodeTls;
use meshgate_protocol::{Request, Response};
use meshgate_storage::{CrashMode, MemFs};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::net::TurmoilNetwork;
use crate::trace::Trace;

/// Wall-clock time at the start of every run: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// Client (QUIC) port of every simulated gateway.
pub const CLIENT_PORT: u16 = 7420;
/// Gossip port of every simulated gateway.
pub const GOSSIP_PORT: u16 = 7422;
/// Peer (QUIC) port of every simulated gateway.
pub const PEER_PORT: u16 = 7423;

/// One gateway of the world.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Host name, also the node id.
    pub name: String,
    /// Its region.
    pub region: String,
    /// Its wall clock's skew, in milliseconds.
    pub skew_ms: i64,
}

/// Where the answer to a call goes; taken by whoever is first: the
/// gateway answering, or a crash of the gateway ([`World::crash`]).
type Answer = Arc<Mutex<Option<oneshot::Sender<Response>>>>;

/// Sends a request into a gateway's host, where it is handled.
type Caller = tokio::sync::mpsc::UnboundedSender<(Request, Answer)>;

struct Shared {
    seed: u64,
    specs: Vec<NodeSpec>,
    certificates: BTreeMap<String, NodeTls>,
    disks: BTreeMap<String, MemFs>,
    running: Mutex<BTreeMap<String, Arc<Node>>>,
    callers: Mutex<BTreeMap<String, Caller>>,
    /// Calls waiting for an answer, by gateway and call number.
    pending: Mutex<BTreeMap<(String, u64), Answer>>,
    next_call: AtomicU64,
    starts: BTreeMap<String, AtomicU64>,
    trace: Trace,
}

/// A set of simulated gateways. Cheap to clone.
#[derive(Clone)]
pub struct World {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.shared.seed)
            .finish()
    }
}

impl World {
    /// A world of `specs` for a run seeded by `seed`.
    pub fn new(seed: u64, specs: Vec<NodeSpec>) -> anyhow::Result<World> {
        let ca = ClusterCa::seeded(seed)?;
        let mut certificates = BTreeMap::new();
        for spec in &specs {
            let name = NodeName::parse(&spec.name)?;
            let node = ca.issue_node_cert(&name, &[])?;
            certificates.insert(
                spec.name.clone(),
                NodeTls {
                    ca: ca.certificate().clone(),
                    node,
                },
            );
        }
        let disks = specs
            .iter()
            .map(|s| (s.name.clone(), MemFs::new()))
            .collect();
        let starts = specs
            .iter()
            .map(|s| (s.name.clone(), AtomicU64::new(0)))
            .collect();
        Ok(World {
            shared: Arc::new(Shared {
                seed,
                specs,
                certificates,
                disks,
                running: Mutex::new(BTreeMap::new()),
                callers: Mutex::new(BTreeMap::new()),
                pending: Mutex::new(BTreeMap::new()),
                next_call: AtomicU64::new(0),
                starts,
                trace: Trace::default(),
            }),
        })
    }

    /// Regions and nodes from `(name, region)` pairs, without clock skew.
    pub fn layout(pairs: &[(&str, &str)]) -> Vec<NodeSpec> {
        pairs
            .iter()
            .map(|(name, region)| NodeSpec {
                name: (*name).to_string(),
                region: (*region).to_string(),
                skew_ms: 0,
            })
            .collect()
    }

    /// The run's timeline.
    pub fn trace(&self) -> &Trace {
        &self.shared.trace
    }

    /// Records an event at the current simulated time.
    pub fn record(&self, event: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.shared.trace.record(at, event);
    }

    /// The gateways' specs.
    pub fn specs(&self) -> &[NodeSpec] {
        &self.shared.specs
    }

    /// The running node named `name`, if it is up.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.shared.running.lock().get(name).cloned()
    }

    /// The running nodes, by name.
    pub fn running(&self) -> Vec<(String, Arc<Node>)> {
        self.shared
            .running
            .lock()
            .iter()
            .map(|(name, node)| (name.clone(), node.clone()))
            .collect()
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Sends `request` to the gateway `name` and waits for its answer;
    /// `None` when it is down or crashes first. The request is handled
    /// inside the gateway's host, as one from the network would be, so
    /// whatever the node spawns for it lives and dies with that host.
    pub async fn call(&self, name: &str, request: Request) -> Option<Response> {
        let caller = self.shared.callers.lock().get(name).cloned()?;
        let (answer, answered) = oneshot::channel();
        let answer: Answer = Arc::new(Mutex::new(Some(answer)));
        let key = (
            name.to_string(),
            self.shared.next_call.fetch_add(1, Ordering::SeqCst),
        );
        self.shared
            .pending
            .lock()
            .insert(key.clone(), answer.clone());
        let sent = caller.send((request, answer));
        let reply = match sent {
            Ok(()) => answered.await.ok(),
            Err(_) => None,
        };
        self.shared.pending.lock().remove(&key);
        reply
    }

    /// The configuration every simulated gateway runs with.
    pub fn config(&self, spec: &NodeSpec) -> GatewayConfig {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        GatewayConfig {
            node_id: Some(spec.name.clone()),
            region: spec.region.clone(),
            data_dir: "/data".into(),
            listen: SocketAddr::new(any.ip(), CLIENT_PORT),
            gossip_listen: SocketAddr::new(any.ip(), GOSSIP_PORT),
            peer_listen: SocketAddr::new(any.ip(), PEER_PORT),
            advertise_host: Some(spec.name.clone()),
            seeds: self
                .shared
                .specs
                .iter()
                .filter(|other| other.name != spec.name)
                .map(|other| format!("{}:{GOSSIP_PORT}", other.name))
                .collect(),
            membership: MembershipConfig::fast(),
            mirror: MirrorConfig {
                reconcile_ms: 200,
                heads_ms: 200,
                idle_ms: 200,
                retry_initial_ms: 50,
                retry_max_ms: 1_000,
                ..MirrorConfig::default()
            },
            ..GatewayConfig::default()
        }
    }

    /// Registers every gateway as a turmoil host. A host restarted by
    /// `Sim::bounce` starts the gateway again on what its disk kept.
    pub fn install(&self, sim: &mut turmoil::Sim<'_>) {
        for spec in self.shared.specs.clone() {
            let world = self.clone();
            sim.host(spec.name.clone(), move || {
                let world = world.clone();
                let spec = spec.clone();
                async move { world.run_gateway(&spec).await.map_err(|e| e.into()) }
            });
        }
    }

    async fn run_gateway(&self, spec: &NodeSpec) -> anyhow::Result<()> {
        let start = self.shared.starts[&spec.name].fetch_add(1, Ordering::SeqCst);
        let name = NodeName::parse(&spec.name)?;
        let environment = Environment {
            fs: Arc::new(self.shared.disks[&spec.name].clone()),
            clock: Arc::new(SimClock {
                skew_ms: spec.skew_ms,
            }),
            network: Arc::new(TurmoilNetwork::new(self.shared.seed ^ (start << 32), name)),
            seed: self.shared.seed ^ (start << 32) ^ fnv(&spec.name),
            certificates: Some(self.shared.certificates[&spec.name].clone()),
        };
        let mut config = self.config(spec);
        // A restarted gateway takes the next peer port: the crashed run's
        // peer endpoint is not released inside the simulation (something
        // outside the crashed host keeps it alive; not found yet), and
        // peers learn the port from the new identity's address anyway.
        config.peer_listen.set_port(PEER_PORT + start as u16);
        let gateway = Gateway::start_with(config, environment).await?;
        self.record(format!("{} started (start {start})", spec.name));
        self.shared
            .running
            .lock()
            .insert(spec.name.clone(), gateway.node().clone());
        let (caller, mut calls) = tokio::sync::mpsc::unbounded_channel();
        self.shared.callers.lock().insert(spec.name.clone(), caller);
        let node = gateway.node().clone();
        tokio::spawn(async move {
            while let Some((request, answer)) = calls.recv().await {
                let node = node.clone();
                tokio::spawn(async move {
                    let response = node.handle(request).await;
                    if let Some(answer) = answer.lock().take() {
                        let _ = answer.send(response);
                    }
                });
            }
        });
        let mut events = gateway.cluster().membership().subscribe();
        let world = self.clone();
        let node = spec.name.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                world.record(format!("{node}: {}", describe(&event)));
            }
        });
        gateway.run_until_stopped().await;
        Ok(())
    }

    /// Crashes `name`: its host stops, its disk keeps only what was synced
    /// (plus, with `torn_seed`, a torn part of the rest).
    pub fn crash(&self, sim: &mut turmoil::Sim<'_>, name: &str, torn_seed: Option<u64>) {
        // Calls in flight fail first, in the order they were made: left to
        // the crash, they would fail in the order tokio drops the host's
        // tasks, which follows process-wide task ids (another run in the
        // same process would wake its clients in another order).
        let doomed: Vec<Answer> = {
            let mut pending = self.shared.pending.lock();
            let keys: Vec<(String, u64)> = pending
                .range((name.to_string(), 0)..=(name.to_string(), u64::MAX))
                .map(|(key, _)| key.clone())
                .collect();
            keys.iter().filter_map(|key| pending.remove(key)).collect()
        };
        for answer in doomed {
            drop(answer.lock().take());
        }
        sim.crash(name.to_string());
        self.shared.running.lock().remove(name);
        self.shared.callers.lock().remove(name);
        let mode = match torn_seed {
            Some(seed) => CrashMode::TornWrites { seed },
            None => CrashMode::LoseUnsynced,
        };
        self.shared.disks[name].crash(mode);
        self.shared
            .trace
            .record(sim.elapsed(), format!("{name} crashed ({mode:?})"));
    }

    /// Restarts a crashed gateway on its disk.
    pub fn restart(&self, sim: &mut turmoil::Sim<'_>, name: &str) {
        sim.bounce(name.to_string());
        self.shared
            .trace
            .record(sim.elapsed(), format!("{name} restarting"));
    }
}

/// The wall clock of a simulated gateway: the run's simulated time since
/// [`EPOCH_MS`], shifted by the gateway's skew. It reads the simulation's
/// own time, so it goes on across a restart and reads the same from any
/// host (a tokio clock would not: each host's runtime has its own base,
/// taken from the real clock when it was built).
#[derive(Debug)]
struct SimClock {
    skew_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        (EPOCH_MS + elapsed.as_millis() as u64).saturating_add_signed(self.skew_ms)
    }
}

/// A short, stable description of a membership event (no addresses).
fn describe(event: &meshgate_federation::membership::MembershipEvent) -> String {
    use meshgate_federation::membership::MembershipEvent as Event;
    let id = |id: &meshgate_federation::membership::MemberId| {
        format!("{}#{}", id.node().as_str(), id.incarnation().0)
    };
    match event {
        Event::MemberUp(member) => format!("up {}", id(member)),
        Event::MemberDown(member) => format!("down {}", id(member)),
        Event::MemberLeft(member) => format!("left {}", id(member)),
        Event::MemberRenamed { previous, current } => {
            format!("renamed {} -> {}", id(previous), id(current))
        }
        Event::MetadataChanged(node) => format!("metadata {}", node.as_str()),
        Event::ConfigChanged(change) => format!("config {} v{}", change.key, change.version),
        Event::Joined => "joined".to_string(),
        Event::Isolated => "isolated".to_string(),
        Event::IdentityRenewed(member) => format!("renewed {}", id(member)),
    }
}

/// FNV-1a of a name: a stable per-node seed component.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Polls `condition` every 50 ms of simulated time for at most `limit`;
/// returns how long it took to hold, or `None`.
pub async fn within<F, Fut>(limit: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() <= limit {
        if condition().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Like [`within`], but a violation of `invariant` (described by `detail`)
/// when `condition` does not hold in time.
pub async fn eventually<F, Fut>(
    limit: Duration,
    invariant: &'static str,
    detail: impl FnOnce() -> String,
    condition: F,
) -> crate::check::Checked
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    match within(limit, condition).await {
        Some(_) => Ok(()),
        None => Err(crate::check::Violation::new(invariant, detail())),
    }
}
