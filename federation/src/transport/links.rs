//! Peer links: one outgoing QUIC connection per remote gateway, kept up
//! with bounded exponential backoff, and an accept loop that hands incoming
//! authenticated peer connections to the owner.
//!
//! # Connections per pair
//! Each node dials every peer it was told about and accepts whoever dials
//! it, so two nodes that know each other hold two connections, one dialed
//! by each. That is deliberate: mirroring pulls ("region b asks a peer for
//! origin o's stream"), so each side pulls over the connection it dialed and
//! answers over the ones it accepted, and neither needs to agree with the
//! other on who dials.
//!
//! # Time and randomness
//! Waits use tokio time and jitter comes from the seeded RNG passed to
//! [`PeerLinks::start`], so links run unchanged under turmoil. `select!`s are
//! `biased;` with the stop signal first.
//!
//! Metrics: [`PeerLinks::stats`] counts attempts and refusals,
//! [`PeerLinks::states`] gives each link's state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quinn::{Connection, Endpoint, VarInt};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::BackoffConfig;
use super::error::{CLOSE_BUSY, CLOSE_LINK_REMOVED, TransportError};
use super::handshake::{AuthenticatedPeer, accept_peer, connect_peer};
use super::node_name::NodeName;

const TRACING_TARGET: &str = "meshgate::federation::links";

/// Configuration of peer links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkConfig {
    /// Waits between connection attempts.
    pub backoff: BackoffConfig,
    /// Bound of one connection attempt or one accepted handshake (QUIC, TLS
    /// and link hello), in milliseconds. Default 10 000; 1 ..= 600 000.
    pub connect_timeout_ms: u64,
    /// Accepted peer connections queued for the owner; when full, further
    /// ones are closed with [`CLOSE_BUSY`] and counted. Default 64; 1 ..=
    /// 65 536. Each entry is a connection handle (a few hundred bytes).
    pub accepted_queue_max: usize,
    /// Incoming handshakes in progress at once; further incoming
    /// connections wait in quinn (bounded by its `incoming_max`). Default
    /// 64; 1 ..= 65 536.
    pub handshakes_max: usize,
    /// Peers this node may dial. Default 1 024; 1 ..= 65 536.
    pub peers_max: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig::default(),
            connect_timeout_ms: 10_000,
            accepted_queue_max: 64,
            handshakes_max: 64,
            peers_max: 1_024,
        }
    }
}

/// Upper bound of the count limits of [`LinkConfig`].
const COUNT_MAX: usize = 65_536;

impl LinkConfig {
    /// Checks the documented ranges.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.backoff.validate()?;
        let fail = |reason: &str| {
            Err(TransportError::InvalidLimits {
                reason: reason.into(),
            })
        };
        if !(1..=600_000).contains(&self.connect_timeout_ms) {
            return fail("connect_timeout_ms not in 1..=600000");
        }
        for (name, value) in [
            ("accepted_queue_max", self.accepted_queue_max),
            ("handshakes_max", self.handshakes_max),
            ("peers_max", self.peers_max),
        ] {
            if !(1..=COUNT_MAX).contains(&value) {
                return fail(&format!("{name} not in 1..={COUNT_MAX}"));
            }
        }
        Ok(())
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// The state of one outgoing link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// A connection attempt is under way; `attempt` counts from 1 since the
    /// last success.
    Connecting {
        /// Number of this attempt.
        attempt: u32,
    },
    /// Connected; `rtt` is quinn's current round-trip estimate.
    Connected {
        /// Smoothed round-trip time.
        rtt: Duration,
    },
    /// Waiting until `until` (tokio time) before the next attempt, after
    /// `attempts` consecutive failures (a lost connection counts as one).
    Backoff {
        /// When the next attempt starts.
        until: Instant,
        /// Consecutive failures so far.
        attempts: u32,
    },
    /// The link was removed or the links shut down.
    Closed,
}

/// Counters of all links of a node, for metrics. Every counter only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Outgoing connections established.
    pub connects: u64,
    /// Outgoing attempts that failed, refusals included.
    pub connect_failures: u64,
    /// Established outgoing connections that were lost.
    pub disconnects: u64,
    /// Incoming peer connections authenticated and handed to the owner.
    pub accepted: u64,
    /// Incoming handshakes that failed, refusals included.
    pub accept_failures: u64,
    /// Authenticated incoming connections closed because the owner's queue
    /// was full.
    pub accept_overflows: u64,
    /// Handshakes refused in either direction because a certificate did not
    /// verify or named the wrong node.
    pub refused_handshakes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    accepted: AtomicU64,
    accept_failures: AtomicU64,
    accept_overflows: AtomicU64,
    refused_handshakes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a link task publishes: its state and, when connected, the
/// connection.
#[derive(Clone, Debug)]
struct Published {
    state: LinkState,
    connection: Option<Connection>,
}

impl Published {
    fn state(&self) -> LinkState {
        match (&self.state, &self.connection) {
            (LinkState::Connected { .. }, Some(connection)) => LinkState::Connected {
                rtt: connection.rtt(),
            },
            (state, _) => state.clone(),
        }
    }
}

/// A view of one link that can wait for changes.
#[derive(Clone, Debug)]
pub struct LinkWatch {
    receiver: watch::Receiver<Published>,
}

impl LinkWatch {
    /// The link's current state.
    pub fn state(&self) -> LinkState {
        self.receiver.borrow().state()
    }

    /// The link's connection, if connected.
    pub fn connection(&self) -> Option<Connection> {
        self.receiver.borrow().connection.clone()
    }

    /// Waits for the next state change; false once the link task ended (the
    /// state then stays [`LinkState::Closed`]).
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }

    /// Waits until the link is connected and returns the connection; `None`
    /// if the link ends first.
    pub async fn connected(&mut self) -> Option<Connection> {
        let published = self
            .receiver
            .wait_for(|published| {
                published.connection.is_some() || published.state == LinkState::Closed
            })
            .await
            .ok()?;
        published.connection.clone()
    }
}

struct Link {
    addr: SocketAddr,
    published: watch::Receiver<Published>,
    stop: watch::Sender<bool>,
}

struct Shared {
    local: NodeName,
    endpoint: Endpoint,
    client_config: quinn::ClientConfig,
    config: LinkConfig,
    counters: Counters,
    /// Never held across an await.
    links: Mutex<Links>,
    shutdown: watch::Sender<bool>,
}

struct Links {
    by_node: BTreeMap<NodeName, Link>,
    /// Parent of every link's jitter RNG.
    rng: SmallRng,
}

impl Shared {
    fn links(&self) -> MutexGuard<'_, Links> {
        // Only this module locks it, never across an await, and no code
        // under the lock panics; poisoning would mean a bug here.
        self.links.lock().expect("links lock poisoned")
    }
}

/// A node's peer links. Dropping it shuts them down (see
/// [`PeerLinks::shutdown`]).
pub struct PeerLinks {
    shared: Arc<Shared>,
}

impl PeerLinks {
    /// Starts the accept loop on `endpoint` and returns the links with the
    /// receiver of authenticated incoming peer connections.
    ///
    /// `endpoint` should carry a [`super::peer_server_config`] to accept
    /// peers; `client_config` comes from [`super::peer_client_config`]. `rng`
    /// seeds the backoff jitter (derive it from the simulation seed in sim).
    /// Must be called inside a tokio runtime (or a turmoil host).
    pub fn start(
        local: NodeName,
        endpoint: Endpoint,
        client_config: quinn::ClientConfig,
        config: LinkConfig,
        rng: SmallRng,
    ) -> Result<(Self, mpsc::Receiver<AuthenticatedPeer>), TransportError> {
        config.validate()?;
        let (accepted_sender, accepted) = mpsc::channel(config.accepted_queue_max);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            local,
            endpoint,
            client_config,
            config,
            counters: Counters::default(),
            links: Mutex::new(Links {
                by_node: BTreeMap::new(),
                rng,
            }),
            shutdown,
        });
        tokio::spawn(run_accept(Arc::clone(&shared), accepted_sender));
        Ok((Self { shared }, accepted))
    }

    /// This node's name.
    pub fn local(&self) -> &NodeName {
        &self.shared.local
    }

    /// Starts a link to `node` at `addr` (spawns its task: call inside the
    /// tokio runtime or turmoil host that runs the links). Adding a known peer at the same
    /// address changes nothing; at another address the old link is closed
    /// and a new one started. Fails, changing nothing, for this node itself
    /// or beyond `peers_max`.
    pub fn add_peer(&self, node: NodeName, addr: SocketAddr) -> Result<(), TransportError> {
        if node == self.shared.local {
            return Err(TransportError::PeerRejected {
                node: node.to_string(),
                reason: "it is this node".into(),
            });
        }
        if *self.shared.shutdown.borrow() {
            return Ok(());
        }
        let mut links = self.shared.links();
        match links.by_node.get(&node) {
            Some(link) if link.addr == addr => return Ok(()),
            Some(_) => {}
            None if links.by_node.len() >= self.shared.config.peers_max => {
                return Err(TransportError::PeerRejected {
                    node: node.to_string(),
                    reason: format!("peers_max {} reached", self.shared.config.peers_max),
                });
            }
            None => {}
        }
        let rng = SmallRng::from_rng(&mut links.rng);
        let (publisher, published) = watch::channel(Published {
            state: LinkState::Connecting { attempt: 1 },
            connection: None,
        });
        let (stop, stop_receiver) = watch::channel(false);
        let span = tracing::info_span!(target: TRACING_TARGET, "link", local = %self.shared.local, peer = %node, %addr);
        tokio::spawn(
            run_link(
                Arc::clone(&self.shared),
                node.clone(),
                addr,
                rng,
                publisher,
                stop_receiver,
            )
            .instrument(span),
        );
        let old = links.by_node.insert(
            node,
            Link {
                addr,
                published,
                stop,
            },
        );
        if let Some(old) = old {
            old.stop.send_replace(true);
        }
        Ok(())
    }

    /// Closes and forgets the link to `node`; false if there was none.
    pub fn remove_peer(&self, node: &NodeName) -> bool {
        let removed = self.shared.links().by_node.remove(node);
        match removed {
            Some(link) => {
                link.stop.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// The connection to `node`, if its link is connected.
    pub fn connection(&self, node: &NodeName) -> Option<Connection> {
        let links = self.shared.links();
        links
            .by_node
            .get(node)?
            .published
            .borrow()
            .connection
            .clone()
    }

    /// The state of the link to `node`, if there is one.
    pub fn state(&self, node: &NodeName) -> Option<LinkState> {
        let links = self.shared.links();
        Some(links.by_node.get(node)?.published.borrow().state())
    }

    /// Every link's state, ordered by node name.
    pub fn states(&self) -> Vec<(NodeName, SocketAddr, LinkState)> {
        let links = self.shared.links();
        links
            .by_node
            .iter()
            .map(|(node, link)| (node.clone(), link.addr, link.published.borrow().state()))
            .collect()
    }

    /// A watch of the link to `node`, to wait for changes.
    pub fn watch(&self, node: &NodeName) -> Option<LinkWatch> {
        let links = self.shared.links();
        Some(LinkWatch {
            receiver: links.by_node.get(node)?.published.clone(),
        })
    }

    /// The counters of all links.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkStats {
            connects: load(&c.connects),
            connect_failures: load(&c.connect_failures),
            disconnects: load(&c.disconnects),
            accepted: load(&c.accepted),
            accept_failures: load(&c.accept_failures),
            accept_overflows: load(&c.accept_overflows),
            refused_handshakes: load(&c.refused_handshakes),
        }
    }

    /// Stops accepting, closes every link (their connections close with
    /// [`CLOSE_LINK_REMOVED`]) and forgets them. Connections already handed
    /// to the owner are the owner's. The endpoint stays open: it may serve
    /// others. Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let links = std::mem::take(&mut self.shared.links().by_node);
        for link in links.into_values() {
            link.stop.send_replace(true);
        }
    }
}

impl Drop for PeerLinks {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for PeerLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLinks")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

/// Resolves once `stop` is set or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One link's driver: connect, hold the connection until it is lost, back
/// off, repeat; until stopped. Each turn of the loop waits (on a handshake
/// bounded by `connect_timeout_ms`, a connection, or a backoff of at least
/// `initial_backoff_ms` scaled down by jitter), so it never spins.
async fn run_link(
    shared: Arc<Shared>,
    node: NodeName,
    addr: SocketAddr,
    mut rng: SmallRng,
    publisher: watch::Sender<Published>,
    mut stop: watch::Receiver<bool>,
) {
    let publish = |state: LinkState, connection: Option<Connection>| {
        publisher.send_replace(Published { state, connection });
    };
    let counters = &shared.counters;
    let mut failures: u32 = 0;
    loop {
        publish(
            LinkState::Connecting {
                attempt: failures.saturating_add(1),
            },
            None,
        );
        let outcome = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            outcome = connect_peer(
                &shared.endpoint,
                shared.client_config.clone(),
                addr,
                &node,
                shared.config.connect_timeout(),
            ) => outcome,
        };
        match outcome {
            Ok(peer) => {
                bump(&counters.connects);
                let connection = peer.into_connection();
                tracing::info!(target: TRACING_TARGET, local = %shared.local, peer = %node, %addr, "link connected");
                publish(
                    LinkState::Connected {
                        rtt: connection.rtt(),
                    },
                    Some(connection.clone()),
                );
                let reason = tokio::select! {
                    biased;
                    () = stopped(&mut stop) => {
                        connection.close(VarInt::from_u32(CLOSE_LINK_REMOVED), b"link removed");
                        break;
                    }
                    reason = connection.closed() => reason,
                };
                bump(&counters.disconnects);
                tracing::warn!(target: TRACING_TARGET, local = %shared.local, peer = %node, %addr, %reason, "link lost");
                // A lost connection counts as the first failure, so a peer
                // that accepts and drops at once is retried after a backoff,
                // never in a tight loop.
                failures = 1;
            }
            Err(error) => {
                bump(&counters.connect_failures);
                if error.is_refusal() {
                    bump(&counters.refused_handshakes);
                }
                failures = failures.saturating_add(1);
                tracing::warn!(target: TRACING_TARGET, local = %shared.local, peer = %node, %addr, %error, failures, "link attempt failed");
            }
        }
        let until = Instant::now() + shared.config.backoff.delay(failures, &mut rng);
        publish(
            LinkState::Backoff {
                until,
                attempts: failures,
            },
            None,
        );
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            () = tokio::time::sleep_until(until) => {}
        }
    }
    publish(LinkState::Closed, None);
}

/// The accept loop: takes incoming connections while fewer than
/// `handshakes_max` handshakes run, and completes each in its own task.
async fn run_accept(shared: Arc<Shared>, accepted: mpsc::Sender<AuthenticatedPeer>) {
    let mut shutdown = shared.shutdown.subscribe();
    let permits = Arc::new(Semaphore::new(shared.config.handshakes_max));
    loop {
        let permit = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            permit = Arc::clone(&permits).acquire_owned() => {
                // The semaphore lives in this function and is never closed.
                permit.expect("handshake semaphore never closes")
            }
        };
        let incoming = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            incoming = shared.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                // The endpoint was closed: nothing more will arrive.
                None => break,
            },
        };
        let span = tracing::info_span!(target: TRACING_TARGET, "accept", local = %shared.local, addr = %incoming.remote_address());
        let shared = Arc::clone(&shared);
        let accepted = accepted.clone();
        let handshake = async move {
            let _permit = permit;
            let counters = &shared.counters;
            let addr = incoming.remote_address();
            match accept_peer(incoming, &shared.local, shared.config.connect_timeout()).await {
                Ok(peer) => {
                    let node = peer.node().clone();
                    match accepted.try_send(peer) {
                        Ok(()) => {
                            bump(&counters.accepted);
                            tracing::info!(target: TRACING_TARGET, local = %shared.local, peer = %node, %addr, "peer accepted");
                        }
                        Err(error) => {
                            let peer = match error {
                                mpsc::error::TrySendError::Full(peer)
                                | mpsc::error::TrySendError::Closed(peer) => peer,
                            };
                            peer.connection()
                                .close(VarInt::from_u32(CLOSE_BUSY), b"busy");
                            bump(&counters.accept_overflows);
                            tracing::warn!(target: TRACING_TARGET, local = %shared.local, peer = %node, %addr, "accepted peer dropped: owner queue full or gone");
                        }
                    }
                }
                Err(error) => {
                    bump(&counters.accept_failures);
                    if error.is_refusal() {
                        bump(&counters.refused_handshakes);
                    }
                    tracing::warn!(target: TRACING_TARGET, local = %shared.local, %addr, %error, "incoming peer refused");
                }
            }
        };
        tokio::spawn(handshake.instrument(span));
    }
}
