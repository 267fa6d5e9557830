//! The node's place in the federation: SWIM membership over gossip (foca)
//! and QUIC peer links to every other live gateway (mutual TLS from the
//! cluster CA). A member found down has its link removed; when it returns
//! the link is added again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use meshgate_federation::membership::{
    ConfigChange, Incarnation, MemberAddresses, MemberId, MemberState, MemberView, Membership,
    MembershipError, MembershipEvent, MembershipHandle, NodeId,
};
use meshgate_federation::transport::{
    AuthenticatedPeer, LinkState, LinkStats, NodeName, PeerLinks, TransportLimits,
    peer_client_config, peer_server_config,
};
use meshgate_protocol::MemberInfo;
use meshgate_storage::{FileSystem, RegionId};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster_files::{Incarnations, SavedConfig};
use crate::config::GatewayConfig;
use crate::gateway::StartError;
use crate::metrics::{EventLabels, Snapshot, StateLabels};
use crate::net::Network;
use crate::tls::NodeTls;

/// Membership and peer links of a running node.
pub struct Cluster {
    membership: MembershipHandle,
    links: PeerLinks,
    accepted: Mutex<Option<mpsc::Receiver<AuthenticatedPeer>>>,
    addresses: MemberAddresses,
    local: NodeId,
    driver: tokio::task::JoinHandle<()>,
    incarnations: Incarnations,
    saved_config: SavedConfig,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("local", &self.local)
            .field("addresses", &self.addresses)
            .finish()
    }
}

/// The IP others reach this node at: `advertise_host` if set, else the
/// listen address (which must then not be a wildcard).
async fn advertised_ip(
    config: &GatewayConfig,
    network: &dyn Network,
) -> Result<IpAddr, StartError> {
    match &config.advertise_host {
        Some(host) => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(ip);
            }
            let resolved = network
                .resolve(format!("{host}:0"))
                .await
                .map_err(|error| StartError::Cluster(format!("advertise_host {host}: {error}")))?;
            resolved.first().map(SocketAddr::ip).ok_or_else(|| {
                StartError::Cluster(format!("advertise_host {host} resolves to nothing"))
            })
        }
        None if config.listen.ip().is_unspecified() => Err(StartError::Cluster(
            "listen is a wildcard address: set advertise_host to the name or IP others use".into(),
        )),
        None => Ok(config.listen.ip()),
    }
}

/// Everything [`Cluster::start`] needs from the node.
pub struct ClusterStart<'a> {
    /// The node's configuration.
    pub config: &'a GatewayConfig,
    /// Its file system (for the incarnation counter).
    pub fs: Arc<dyn FileSystem>,
    /// Its id.
    pub node_id: &'a str,
    /// Its region.
    pub region: &'a RegionId,
    /// Its certificates.
    pub tls: &'a NodeTls,
    /// Its sockets.
    pub network: &'a dyn Network,
    /// Where its client listener is bound.
    pub client_address: SocketAddr,
    /// Seeds every random choice.
    pub seed: u64,
}

impl Cluster {
    /// Binds the gossip socket and the peer endpoint, joins through the
    /// configured seeds, and keeps links to every live member.
    pub async fn start(
        start: ClusterStart<'_>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, StartError> {
        let ClusterStart {
            config,
            fs,
            node_id,
            region,
            tls,
            network,
            client_address,
            seed,
        } = start;
        let node_name = NodeName::parse(node_id)?;
        let limits = TransportLimits::default();
        let server = peer_server_config(&tls.ca, &tls.node, &limits)?;
        let endpoint = network
            .quic_endpoint(config.peer_listen, Some(server))
            .await?;
        let peer_bound = endpoint.local_addr().map_err(|source| {
            StartError::Cluster(format!("peer endpoint {}: {source}", config.peer_listen))
        })?;
        let client_tls = peer_client_config(&tls.ca, &tls.node, &limits)?;
        let (links, accepted) = PeerLinks::start(
            node_name,
            endpoint,
            client_tls,
            config.links.clone(),
            SmallRng::seed_from_u64(seed),
        )?;

        let ip = advertised_ip(config, network).await?;
        let (incarnations, incarnation) = Incarnations::start(fs.clone(), &config.data_dir)?;
        let (saved_config, restored_config) = SavedConfig::open(fs, &config.data_dir);
        let node =
            NodeId::parse(node_id).map_err(|error| StartError::Cluster(error.to_string()))?;
        let peer = SocketAddr::new(ip, peer_bound.port());
        let client = SocketAddr::new(ip, client_address.port());
        let make = {
            let (node, region, membership_config) =
                (node.clone(), region.clone(), config.membership.clone());
            Box::new(move |gossip_bound: SocketAddr| {
                let addresses = MemberAddresses {
                    gossip: SocketAddr::new(ip, gossip_bound.port()),
                    peer,
                    client,
                };
                let id = MemberId::new(node, region, Incarnation(incarnation), addresses);
                let mut membership = Membership::new(id, &membership_config, seed ^ 0x9e37_79b9)?;
                membership.restore_config(restored_config);
                Ok(membership)
            })
        };
        let (membership, gossip_bound, driver) = network
            .start_membership(config.gossip_listen, make)
            .await
            .map_err(|error| {
                StartError::Cluster(format!("gossip listener {}: {error}", config.gossip_listen))
            })?;
        let addresses = MemberAddresses {
            gossip: SocketAddr::new(ip, gossip_bound.port()),
            peer,
            client,
        };
        let mut seeds = Vec::new();
        for seed in &config.seeds {
            match network.resolve(seed.clone()).await {
                Ok(resolved) => {
                    seeds.extend(resolved.into_iter().filter(|a| *a != addresses.gossip))
                }
                Err(error) => {
                    tracing::warn!(target: "meshgate::cluster", %seed, %error, "seed does not resolve; skipped")
                }
            }
        }
        if !seeds.is_empty() {
            membership
                .join(seeds)
                .await
                .map_err(|error| StartError::Cluster(error.to_string()))?;
        }
        let cluster = Arc::new(Cluster {
            membership,
            links,
            accepted: Mutex::new(Some(accepted)),
            addresses,
            local: node,
            driver,
            incarnations,
            saved_config,
        });
        tokio::spawn(maintain_links(cluster.clone(), shutdown));
        tracing::info!(target: "meshgate::cluster", gossip = %addresses.gossip, peer = %addresses.peer, incarnation, "joined the federation");
        Ok(cluster)
    }

    /// The addresses this node advertises.
    pub fn addresses(&self) -> MemberAddresses {
        self.addresses
    }

    /// The membership handle (config broadcasts, metadata, events).
    pub fn membership(&self) -> &MembershipHandle {
        &self.membership
    }

    /// Publishes a cluster configuration change and saves the node's copy
    /// of the configuration before returning, so an acknowledged change
    /// survives even a crash of every node right after.
    pub async fn publish_config(
        &self,
        key: impl Into<String>,
        value: Option<Vec<u8>>,
    ) -> Result<ConfigChange, MembershipError> {
        let change = self.membership.publish_config(key, value).await?;
        self.save_config().await;
        Ok(change)
    }

    /// Saves the node's copy of the cluster configuration.
    async fn save_config(&self) {
        match self.membership.config_entries().await {
            Ok(entries) => self.saved_config.save(entries),
            Err(error) => {
                tracing::warn!(target: "meshgate::cluster", %error, "cluster configuration not read for saving");
            }
        }
    }

    /// The peer links.
    pub fn links(&self) -> &PeerLinks {
        &self.links
    }

    /// Takes the queue of accepted peer connections (once; for mirroring).
    pub fn take_accepted(&self) -> Option<mpsc::Receiver<AuthenticatedPeer>> {
        self.accepted.lock().take()
    }

    /// The membership view, for clients and the admin API.
    pub async fn members(&self) -> Vec<MemberInfo> {
        let now = tokio::time::Instant::now().into_std();
        let views = self.membership.members().await.unwrap_or_default();
        views.iter().map(|view| member_info(view, now)).collect()
    }

    /// Link states and counters, for metrics.
    pub fn link_report(&self) -> (Vec<(NodeName, SocketAddr, LinkState)>, LinkStats) {
        (self.links.states(), self.links.stats())
    }

    /// Adds membership and link gauges to a metrics snapshot.
    pub async fn sample_metrics(&self, snapshot: &Snapshot) {
        for state in ["alive", "suspect", "down", "left"] {
            snapshot
                .cluster_members
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(0);
        }
        for member in self.members().await {
            snapshot
                .cluster_members
                .get_or_create(&StateLabels {
                    state: member.state,
                })
                .inc();
        }
        let (links, stats) = self.link_report();
        for state in ["connecting", "connected", "backoff", "closed"] {
            snapshot
                .peer_links
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(0);
        }
        for (_, _, state) in links {
            let name = match state {
                LinkState::Connecting { .. } => "connecting",
                LinkState::Connected { .. } => "connected",
                LinkState::Backoff { .. } => "backoff",
                LinkState::Closed => "closed",
            };
            snapshot
                .peer_links
                .get_or_create(&StateLabels { state: name.into() })
                .inc();
        }
        let events = [
            ("connects", stats.connects),
            ("connect_failures", stats.connect_failures),
            ("disconnects", stats.disconnects),
            ("accepted", stats.accepted),
            ("accept_failures", stats.accept_failures),
            ("accept_overflows", stats.accept_overflows),
            ("refused_handshakes", stats.refused_handshakes),
        ];
        for (event, count) in events {
            snapshot
                .peer_link_events
                .get_or_create(&EventLabels {
                    event: event.into(),
                })
                .set(count as i64);
        }
        if let Ok(stats) = self.membership.stats().await {
            let dropped = stats.dropped;
            let reasons = [
                ("too_large", dropped.too_large),
                ("too_short", dropped.too_short),
                ("authentication_failed", dropped.authentication_failed),
                ("unknown_version", dropped.unknown_version),
                ("unknown_kind", dropped.unknown_kind),
                ("malformed", dropped.malformed),
                ("from_ourselves", dropped.from_ourselves),
                ("refused", dropped.refused),
            ];
            for (reason, count) in reasons {
                snapshot
                    .gossip_dropped
                    .get_or_create(&EventLabels {
                        event: reason.into(),
                    })
                    .set(count as i64);
            }
        }
    }

    /// Stops gossip and links without a word, as a crash would.
    pub fn abort(&self) {
        self.driver.abort();
        self.links.shutdown();
    }

    /// Announces leaving and closes the links.
    pub async fn leave(&self) {
        if let Err(error) = self.membership.leave().await {
            tracing::debug!(target: "meshgate::cluster", %error, "leave");
        }
        self.links.shutdown();
    }
}

fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
        MemberState::Left => "left",
    }
}

fn member_info(view: &MemberView, now: std::time::Instant) -> MemberInfo {
    let addresses = view.id.addresses();
    MemberInfo {
        node_id: view.id.node().as_str().to_string(),
        region: view.id.region().to_string(),
        state: state_name(view.state).to_string(),
        incarnation: view.id.incarnation().0,
        client_address: addresses.client.to_string(),
        peer_address: addresses.peer.to_string(),
        gossip_address: addresses.gossip.to_string(),
        last_heard_ms_ago: view
            .last_heard
            .map(|heard| now.saturating_duration_since(heard).as_millis() as u64),
        local: view.local,
    }
}

/// Keeps one peer link per live member: added when it comes up, removed
/// when it goes down or leaves.
async fn maintain_links(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut events = cluster.membership.subscribe();
    // Members known before the subscription started.
    add_links_of_live_members(&cluster).await;
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(MembershipEvent::MemberUp(id)) => add_link(&cluster, &id),
            Ok(MembershipEvent::MemberRenamed { current, .. }) => add_link(&cluster, &current),
            Ok(MembershipEvent::MemberDown(id) | MembershipEvent::MemberLeft(id)) => {
                remove_link(&cluster, &id);
            }
            Ok(MembershipEvent::IdentityRenewed(id)) => {
                cluster.incarnations.renewed(id.incarnation().0);
            }
            Ok(MembershipEvent::ConfigChanged(_)) => cluster.save_config().await,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(target: "meshgate::cluster", missed, "membership events missed; resyncing links");
                add_links_of_live_members(&cluster).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Adds a link per live member; a node known under several identities
/// (restarted on new addresses) is linked at its newest.
async fn add_links_of_live_members(cluster: &Cluster) {
    let Ok(views) = cluster.membership.members().await else {
        return;
    };
    let mut newest: std::collections::BTreeMap<String, &MemberView> =
        std::collections::BTreeMap::new();
    for view in views.iter().filter(|v| !v.local && v.state.is_active()) {
        let node = view.id.node().as_str().to_string();
        match newest.get(&node) {
            Some(current) if current.id.incarnation() >= view.id.incarnation() => {}
            _ => {
                newest.insert(node, view);
            }
        }
    }
    for view in newest.values() {
        add_link(cluster, &view.id);
    }
}

/// Removes the link to a member that went down, unless the link already
/// points at a newer identity of the same node (a restart on new
/// addresses: the old identity is declared down after the new one is up).
fn remove_link(cluster: &Cluster, id: &MemberId) {
    let Ok(name) = NodeName::parse(id.node().as_str()) else {
        return;
    };
    let same_address = cluster
        .links
        .states()
        .iter()
        .any(|(node, address, _)| *node == name && *address == id.addresses().peer);
    if same_address {
        cluster.links.remove_peer(&name);
    }
}

fn add_link(cluster: &Cluster, id: &MemberId) {
    if id.node() == &cluster.local {
        return;
    }
    let Ok(name) = NodeName::parse(id.node().as_str()) else {
        tracing::warn!(target: "meshgate::cluster", node = %id.node().as_str(), "member name is not a valid peer name; no link");
        return;
    };
    let peer = id.addresses().peer;
    let existing = cluster
        .links
        .states()
        .into_iter()
        .find(|(node, _, _)| *node == name);
    match existing {
        Some((_, address, _)) if address == peer => return,
        Some(_) => {
            cluster.links.remove_peer(&name);
        }
        None => {}
    }
    if let Err(error) = cluster.links.add_peer(name, peer) {
        tracing::warn!(target: "meshgate::cluster", %error, "cannot add a peer link");
    }
}
