//! The sans-IO membership state machine: foca plus authentication, custom
//! broadcasts, seed announcing and anti-entropy.
//!
//! Inputs are `handle_*` calls and local operations; outputs are drained
//! with `poll_*` after every input. Time enters only as the `now` of a
//! received packet (for "last heard"); randomness only through the seed
//! given to [`Membership::new`]. The same inputs in the same order give the
//! same outputs.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Codec, Foca, Identity, OwnedNotification, State};
use foca_rand::rngs::SmallRng;
use foca_rand::{Rng, SeedableRng};
use parking_lot::Mutex;

use super::auth::{self, ClusterKey, ClusterSecret, DropReason, ENVELOPE_BYTES, PacketKind};
use super::broadcast::{BroadcastItem, ClusterState, GossipHandler, SharedState, StateChange};
use super::cluster_config::{ConfigChange, validate_config_key};
use super::codec::WireCodec;
use super::config::{MembershipConfig, ValidConfig};
use super::error::MembershipError;
use super::identity::{MemberId, NodeId};
use super::metadata::{MemberMetadata, MetadataRecord};
use super::sync;
use super::view::{
    MemberState, MemberView, MembershipEvent, MembershipStats, MembershipTimer, TimerKind, Transmit,
};

mod anti_entropy;

type SwimMachine = Foca<MemberId, WireCodec, SmallRng, GossipHandler>;

/// Most events queued between two drains. A driver drains after every
/// input and one input yields a handful of events, so this bound is only
/// reached if nobody drains; beyond it events are dropped and counted.
const EVENTS_QUEUED_MAX: usize = 4096;

/// The membership of one node, as a sans-IO state machine.
///
/// Inputs: [`Membership::handle_packet`] (a datagram and when it arrived),
/// [`Membership::handle_timer`] (a timer it asked for, once due) and the
/// local operations ([`Membership::join`], [`Membership::publish_config`],
/// [`Membership::set_metadata`], [`Membership::leave`]). Outputs, to drain
/// after every input: [`Membership::poll_transmit`],
/// [`Membership::poll_timer`], [`Membership::poll_event`]. Time enters only
/// as the arrival time of packets; randomness only through the seed given
/// to [`Membership::new`]. The same inputs in the same order give the same
/// outputs.
///
/// Failure handling beyond foca's SWIM: a node that finds itself with no
/// active member (it was partitioned away, or everyone else died) starts a
/// fresh SWIM instance under a renewed identity and re-announces to its
/// seeds with backoff, so the cluster, which has declared its old identity
/// down, takes it back as soon as the network allows; a member that stays
/// suspect without ever hearing of it is told directly (see `sync.rs`).
pub struct Membership {
    swim: SwimMachine,
    /// Bumped whenever `swim` is rebuilt, so timers of an older instance are
    /// ignored.
    epoch: u32,
    runtime: AccumulatingRuntime<MemberId>,
    state: SharedState,
    config: ValidConfig,
    key: ClusterKey,
    rng: SmallRng,
    metadata: MemberMetadata,
    metadata_version: u64,
    seeds: Vec<SocketAddr>,
    announce_token: u64,
    announce_delay: Duration,
    leaving: bool,
    /// Keyed by gossip address, pruned to the addresses foca knows.
    last_heard: BTreeMap<SocketAddr, Instant>,
    /// The identity and state last reported in an event, per gossip address,
    /// so every transition is reported exactly once.
    reported: BTreeMap<SocketAddr, (MemberId, MemberState)>,
    /// Members seen suspect, with their SWIM incarnation and for how many
    /// sync ticks (see `sync.rs` on stuck suspicion).
    suspects: BTreeMap<SocketAddr, (MemberId, u16, u32)>,
    // Output queues. Each input adds a bounded number of items (a few
    // datagrams per foca call, one per seed, `sync_packets_per_round_max`
    // per sync message) and the driver drains them after every input.
    transmits: VecDeque<Transmit>,
    timers: VecDeque<(Duration, MembershipTimer)>,
    events: VecDeque<MembershipEvent>,
    stats: MembershipStats,
}

impl Membership {
    /// Builds the membership of the node `identity`. Nothing is sent until
    /// [`Membership::join`] or [`Membership::announce`]; the anti-entropy
    /// timer is already queued.
    pub fn new(
        identity: MemberId,
        config: &MembershipConfig,
        rng_seed: u64,
    ) -> Result<Self, MembershipError> {
        let valid = config.validate()?;
        let secret = config.cluster_key.clone().unwrap_or_else(|| {
            tracing::warn!(
                target: "meshgate::federation::membership",
                "no cluster_key configured: gossip uses the public development key and is not authenticated"
            );
            ClusterSecret::new(auth::INSECURE_DEV_CLUSTER_SECRET)
        });
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        let state = Arc::new(Mutex::new(ClusterState::new(
            valid.config_entries_max,
            valid.members_max,
        )));
        let swim = build_swim(identity, &valid, &state, &mut rng);
        let mut membership = Self {
            swim,
            epoch: 0,
            runtime: AccumulatingRuntime::new(),
            state,
            key: ClusterKey::from_secret(&secret),
            rng,
            metadata: MemberMetadata::default(),
            metadata_version: 0,
            seeds: Vec::new(),
            announce_token: 0,
            announce_delay: valid.announce_interval,
            leaving: false,
            last_heard: BTreeMap::new(),
            reported: BTreeMap::new(),
            suspects: BTreeMap::new(),
            transmits: VecDeque::new(),
            timers: VecDeque::new(),
            events: VecDeque::new(),
            stats: MembershipStats::default(),
            config: valid,
        };
        membership.timers.push_back((
            membership.config.sync_interval,
            MembershipTimer(TimerKind::Sync),
        ));
        membership.broadcast_own_metadata()?;
        Ok(membership)
    }

    /// This node's current identity (its incarnation grows on renewal).
    pub fn identity(&self) -> &MemberId {
        self.swim.identity()
    }

    /// The validated configuration in use.
    pub fn config(&self) -> &ValidConfig {
        &self.config
    }

    // ----- inputs -------------------------------------------------------

    /// Announces to `seeds` now, and again with exponential backoff (from
    /// `announce_interval_ms` to `announce_interval_max_ms`) whenever this
    /// node knows no active member. This node's own address and seeds beyond
    /// `seeds_max` are ignored.
    pub fn join(&mut self, seeds: &[SocketAddr]) -> Result<(), MembershipError> {
        if self.leaving {
            return Err(MembershipError::Left);
        }
        let own = self.identity().addresses().gossip;
        self.seeds.clear();
        for seed in seeds {
            if *seed != own
                && !self.seeds.contains(seed)
                && self.seeds.len() < self.config.seeds_max
            {
                self.seeds.push(*seed);
            }
        }
        self.restart_announcing();
        Ok(())
    }

    /// Sends one announce to the node listening at `seed`.
    pub fn announce(&mut self, seed: SocketAddr) -> Result<(), MembershipError> {
        if self.leaving {
            return Err(MembershipError::Left);
        }
        let result = self.swim.announce(MemberId::seed(seed), &mut self.runtime);
        self.drain_runtime();
        result.map_err(MembershipError::Swim)
    }

    /// Handles a datagram that arrived at `now` from `from`. The tag is
    /// verified before anything is decoded; a packet that fails is dropped,
    /// counted by reason and its reason returned. Never panics.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
    ) -> Result<(), DropReason> {
        self.stats.packets_received = self.stats.packets_received.saturating_add(1);
        self.stats.bytes_received = self
            .stats
            .bytes_received
            .saturating_add(packet.len() as u64);
        let result = match auth::open(&self.key, packet, self.config.packet_bytes_max) {
            Err(reason) => Err(reason),
            Ok((PacketKind::Swim, body)) => self.handle_swim(now, body),
            Ok((PacketKind::Sync, body)) => self.handle_sync(from, body),
        };
        if let Err(reason) = result {
            self.stats.dropped.count(reason);
            tracing::debug!(target: "meshgate::federation::membership", %from, %reason, "gossip packet dropped");
        }
        result
    }

    /// Handles a timer this core asked for (see [`Membership::poll_timer`])
    /// once its delay has passed.
    pub fn handle_timer(&mut self, timer: MembershipTimer) {
        match timer.0 {
            TimerKind::Swim { epoch, timer } => {
                if epoch == self.epoch {
                    let result = self.swim.handle_timer(timer, &mut self.runtime);
                    self.note_swim_result(result);
                    self.drain_runtime();
                }
            }
            TimerKind::Announce { token } => {
                if token == self.announce_token && !self.leaving && self.swim.num_members() == 0 {
                    if self.announce_delay > self.config.announce_interval {
                        // Two announces went unanswered: say so (at most once
                        // per backed-off interval).
                        tracing::warn!(
                            target: "meshgate::federation::membership",
                            seeds = ?self.seeds,
                            retry_in_ms = self.announce_delay.as_millis() as u64,
                            "no seed answers; this node stays alone until one does (check the seed addresses, their gossip port, and that every node has the same cluster key)"
                        );
                    }
                    self.announce_to_seeds();
                    self.announce_delay =
                        (self.announce_delay * 2).min(self.config.announce_interval_max);
                    self.schedule(self.announce_delay, TimerKind::Announce { token });
                }
                // Otherwise the chain stops: a newer one runs, or this node
                // is connected and restarts it when it becomes isolated.
            }
            TimerKind::Sync => {
                self.housekeeping();
                self.notify_stuck_suspects();
                self.start_sync_round();
                self.schedule(self.config.sync_interval, TimerKind::Sync);
            }
        }
    }

    // ----- local operations ----------------------------------------------

    /// Merges configuration changes the caller kept from an earlier run (the
    /// node persists what it learns, so the cluster configuration survives
    /// a restart of every node). They merge by the usual rule, as if
    /// received, without events; anti-entropy spreads them to members that
    /// lack them. Changes beyond `config_entries_max` are dropped.
    pub fn restore_config(&mut self, changes: impl IntoIterator<Item = ConfigChange>) {
        let mut state = self.state.lock();
        for change in changes {
            let _ = state.config.merge(change);
        }
    }

    /// Publishes a configuration change for `key` (`None` deletes it) with
    /// the key's next version, applies it here and starts gossiping it.
    pub fn publish_config(
        &mut self,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<ConfigChange, MembershipError> {
        if self.leaving {
            return Err(MembershipError::Left);
        }
        validate_config_key(key).map_err(MembershipError::InvalidConfigKey)?;
        let version = {
            let state = self.state.lock();
            if state.config.get(key).is_none()
                && state.config.len() >= self.config.config_entries_max
            {
                return Err(MembershipError::ConfigTableFull);
            }
            state.config.next_version(key)
        };
        let change = ConfigChange {
            key: key.to_string(),
            version,
            author: self.identity().node().clone(),
            value,
        };
        let bytes = BroadcastItem::Config((&change).into()).encode();
        if bytes.len() > self.config.broadcast_item_bytes_max {
            return Err(MembershipError::ConfigChangeTooLarge {
                bytes: bytes.len(),
                bytes_max: self.config.broadcast_item_bytes_max,
            });
        }
        // The handler merges it (and queues the ConfigChanged event).
        self.swim
            .add_broadcast(&bytes)
            .map_err(MembershipError::Swim)?;
        let result = self.swim.broadcast(&mut self.runtime);
        self.note_swim_result(result);
        self.drain_runtime();
        Ok(change)
    }

    /// Replaces this node's metadata and gossips it under the next version,
    /// which is returned. Too large metadata is refused and the previous one
    /// stays in effect.
    pub fn set_metadata(&mut self, metadata: MemberMetadata) -> Result<u64, MembershipError> {
        if self.leaving {
            return Err(MembershipError::Left);
        }
        let previous = std::mem::replace(&mut self.metadata, metadata);
        match self.broadcast_own_metadata() {
            Ok(version) => {
                let result = self.swim.broadcast(&mut self.runtime);
                self.note_swim_result(result);
                self.drain_runtime();
                Ok(version)
            }
            Err(error) => {
                self.metadata = previous;
                Err(error)
            }
        }
    }

    /// Leaves the cluster gracefully: sends metadata marked "leaving" to
    /// every active member, then declares this identity down to a few of
    /// them (foca gossips it on). Drain the datagrams and send them before
    /// stopping. Idempotent; after it, local operations return
    /// [`MembershipError::Left`].
    pub fn leave(&mut self) -> Result<(), MembershipError> {
        if self.leaving {
            return Ok(());
        }
        self.leaving = true;
        // The metadata was accepted before and the flag does not change its
        // size, so this cannot fail on size; leave anyway if it does.
        if let Err(error) = self.broadcast_own_metadata() {
            self.stats.swim_errors += 1;
            tracing::warn!(target: "meshgate::federation::membership", %error, "leaving without the leaving record");
        }
        // Tell every active member directly that this is a departure, ahead
        // of the "down" update foca gossips next: a member that learnt the
        // "down" first would report a failure before the departure.
        let record = self
            .state
            .lock()
            .metadata
            .get(self.identity().node())
            .map(|record| BroadcastItem::Metadata(record.clone()).encode());
        if let Some(record) = record {
            let body_bytes_max = self.config.packet_bytes_max - ENVELOPE_BYTES;
            let active: Vec<SocketAddr> = self
                .swim
                .iter_members()
                .map(|member| member.id().addr())
                .collect();
            for body in sync::pack_records(&[record], 0, body_bytes_max, 1) {
                for member in &active {
                    self.push_transmit(*member, PacketKind::Sync, &body);
                }
            }
        }
        let result = self.swim.leave_cluster(&mut self.runtime);
        self.drain_runtime();
        result.map_err(MembershipError::Swim)
    }

    // ----- outputs --------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next timer to arm: hand it back to [`Membership::handle_timer`]
    /// after the delay.
    pub fn poll_timer(&mut self) -> Option<(Duration, MembershipTimer)> {
        self.timers.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// Records that the driver could not send a datagram.
    pub fn note_send_failure(&mut self) {
        self.stats.send_failures = self.stats.send_failures.saturating_add(1);
    }

    // ----- views -------------------------------------------------------------

    /// Every member this node knows, itself included, ordered by node id
    /// then gossip address.
    pub fn members(&self) -> Vec<MemberView> {
        let own = self.identity().clone();
        let state = self.state.lock();
        let metadata_of = |node: &NodeId| {
            state
                .metadata
                .get(node)
                .map(|record| (record.version, record.metadata.clone()))
        };
        let mut rows = vec![MemberView {
            metadata: metadata_of(own.node()),
            state: if self.leaving {
                MemberState::Left
            } else {
                MemberState::Alive
            },
            swim_incarnation: 0,
            last_heard: None,
            local: true,
            id: own.clone(),
        }];
        for member in self.swim.iter_membership_state() {
            let id = member.id();
            // Earlier lives of this node, as others reported them.
            if id.addr() == own.addr() {
                continue;
            }
            rows.push(MemberView {
                id: id.clone(),
                state: self.state_of(id, member.state(), &state),
                swim_incarnation: member.incarnation(),
                last_heard: self.last_heard.get(&id.addr()).copied(),
                metadata: metadata_of(id.node()),
                local: false,
            });
        }
        rows.sort_by(|left, right| left.id.cmp(&right.id));
        rows
    }

    /// Live configuration entries, by key.
    pub fn config_entries(&self) -> Vec<ConfigChange> {
        self.state.lock().config.live().cloned().collect()
    }

    /// The winning change for `key`, a tombstone included.
    pub fn config_entry(&self, key: &str) -> Option<ConfigChange> {
        self.state.lock().config.get(key).cloned()
    }

    /// Counters, with the members counted by state.
    pub fn stats(&self) -> MembershipStats {
        let mut stats = self.stats;
        for row in self.members().iter().filter(|row| !row.local) {
            let counter = match row.state {
                MemberState::Alive => &mut stats.members_alive,
                MemberState::Suspect => &mut stats.members_suspect,
                MemberState::Down => &mut stats.members_down,
                MemberState::Left => &mut stats.members_left,
            };
            *counter += 1;
        }
        let state = self.state.lock();
        stats.config_entries = state.config.live().count() as u64;
        stats.refused_table_full = state.refused_full;
        stats.events_dropped = stats.events_dropped.saturating_add(state.changes_dropped);
        stats
    }

    // ----- internals -----------------------------------------------------------

    fn handle_swim(&mut self, now: Instant, body: &[u8]) -> Result<(), DropReason> {
        // Decoding the header first tells who is talking before foca acts.
        let header = WireCodec::default()
            .decode_header(body)
            .map_err(|_| DropReason::Malformed)?;
        let own = self.identity();
        if header.src == *own || header.src.addr() == own.addr() {
            return Err(DropReason::FromOurselves);
        }
        let source = header.src.addr();
        if self.last_heard.contains_key(&source) || self.last_heard.len() < self.config.members_max
        {
            self.last_heard.insert(source, now);
        }
        let result = self.swim.handle_data(body, &mut self.runtime);
        // foca may have applied part of a packet before failing: drain anyway.
        self.drain_runtime();
        match result {
            Ok(()) => Ok(()),
            Err(foca::Error::DataTooBig) => Err(DropReason::TooLarge),
            Err(foca::Error::DataFromOurselves) => Err(DropReason::FromOurselves),
            Err(
                foca::Error::Decode(_)
                | foca::Error::MalformedPacket
                | foca::Error::CustomBroadcast(_),
            ) => Err(DropReason::Malformed),
            Err(error) => {
                tracing::debug!(target: "meshgate::federation::membership", %error, "foca refused a packet");
                Err(DropReason::Refused)
            }
        }
    }

    fn restart_announcing(&mut self) {
        self.announce_token = self.announce_token.wrapping_add(1);
        self.announce_delay = self.config.announce_interval;
        if self.seeds.is_empty() {
            return;
        }
        self.announce_to_seeds();
        self.schedule(
            self.announce_delay,
            TimerKind::Announce {
                token: self.announce_token,
            },
        );
    }

    fn announce_to_seeds(&mut self) {
        for index in 0..self.seeds.len() {
            let seed = MemberId::seed(self.seeds[index]);
            let result = self.swim.announce(seed, &mut self.runtime);
            self.note_swim_result(result);
        }
        self.drain_runtime();
    }

    /// Gossips this node's metadata under the next version.
    fn broadcast_own_metadata(&mut self) -> Result<u64, MembershipError> {
        let version = self.metadata_version + 1;
        let record = MetadataRecord {
            node: self.identity().node().clone(),
            incarnation: self.identity().incarnation(),
            version,
            leaving: self.leaving,
            metadata: self.metadata.clone(),
        };
        let bytes = BroadcastItem::Metadata(record).encode();
        if bytes.len() > self.config.broadcast_item_bytes_max {
            return Err(MembershipError::MetadataTooLarge {
                bytes: bytes.len(),
                bytes_max: self.config.broadcast_item_bytes_max,
            });
        }
        self.swim
            .add_broadcast(&bytes)
            .map_err(MembershipError::Swim)?;
        self.metadata_version = version;
        Ok(version)
    }

    /// After isolation, starts over with a fresh foca under a renewed
    /// identity, so the cluster (which has declared the old identity down)
    /// accepts this node again, and this node carries no stale "down"
    /// verdicts about the others.
    fn restart_swim(&mut self) {
        let Some(renewed) = self.identity().renew() else {
            tracing::error!(target: "meshgate::federation::membership", "incarnation exhausted; staying isolated");
            return;
        };
        self.restart_swim_as(renewed);
    }

    /// Starts over with a fresh foca under `renewed` and announces it to
    /// the seeds until someone answers.
    fn restart_swim_as(&mut self, renewed: MemberId) {
        self.epoch = self.epoch.wrapping_add(1);
        self.swim = build_swim(renewed.clone(), &self.config, &self.state, &mut self.rng);
        self.stats.identity_renewals += 1;
        self.push_event(MembershipEvent::IdentityRenewed(renewed));
        if let Err(error) = self.broadcast_own_metadata() {
            self.stats.swim_errors += 1;
            tracing::warn!(target: "meshgate::federation::membership", %error, "metadata not re-broadcast");
        }
        self.restart_announcing();
    }

    /// Turns what foca and the broadcast handler produced into outputs.
    fn drain_runtime(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.push_transmit(to.addr(), PacketKind::Swim, &data);
        }
        while let Some((delay, timer)) = self.runtime.to_schedule() {
            self.schedule(
                delay,
                TimerKind::Swim {
                    epoch: self.epoch,
                    timer,
                },
            );
        }
        let mut isolated = false;
        let mut rejoined = None;
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => self.report(id, MemberState::Alive),
                OwnedNotification::MemberDown(id) => {
                    let state = if self.has_left(&id) {
                        MemberState::Left
                    } else {
                        MemberState::Down
                    };
                    self.report(id, state);
                }
                OwnedNotification::Rename(previous, current) => {
                    if let Some(entry) = self.reported.get_mut(&current.addr()) {
                        entry.0 = current.clone();
                    }
                    self.push_event(MembershipEvent::MemberRenamed { previous, current });
                }
                OwnedNotification::Active => self.push_event(MembershipEvent::Joined),
                OwnedNotification::Idle => {
                    self.push_event(MembershipEvent::Isolated);
                    isolated = true;
                }
                // foca renewed the identity after hearing it was declared
                // down, but kept its member table while dropping the
                // timers of it: a member it held suspect then stays
                // suspect for good, so it neither probes it nor counts
                // itself alone and announces. Start over instead, as
                // after isolation (found by the simulation, chaos).
                OwnedNotification::Rejoin(id) => rejoined = Some(id),
                // Reached only by leaving: identities always renew otherwise.
                OwnedNotification::Defunct => {}
            }
        }
        self.drain_state_changes();
        if self.leaving {
            return;
        }
        if let Some(renewed) = rejoined {
            self.restart_swim_as(renewed);
        } else if isolated {
            self.restart_swim();
        }
    }

    fn drain_state_changes(&mut self) {
        let own = self.identity().node().clone();
        loop {
            let change = self.state.lock().pop_change();
            match change {
                None => break,
                Some(StateChange::Config(change)) => {
                    self.push_event(MembershipEvent::ConfigChanged(change));
                }
                Some(StateChange::Metadata(node)) if node != own => {
                    self.push_event(MembershipEvent::MetadataChanged(node.clone()));
                    self.report_departures_of(&node);
                }
                Some(StateChange::Metadata(_)) => {}
            }
        }
    }

    /// A "leaving" record may arrive after the member went down: report it
    /// as left then.
    fn report_departures_of(&mut self, node: &NodeId) {
        let departed: Vec<MemberId> = self
            .swim
            .iter_membership_state()
            .filter(|member| member.state() == State::Down && member.id().node() == node)
            .map(|member| member.id().clone())
            .filter(|id| self.has_left(id))
            .collect();
        for id in departed {
            self.report(id, MemberState::Left);
        }
    }

    fn has_left(&self, id: &MemberId) -> bool {
        self.state
            .lock()
            .metadata
            .get(id.node())
            .is_some_and(|record| record.leaving && record.incarnation == id.incarnation())
    }

    fn state_of(&self, id: &MemberId, swim_state: State, state: &ClusterState) -> MemberState {
        match swim_state {
            State::Alive => MemberState::Alive,
            State::Suspect => MemberState::Suspect,
            State::Down => {
                let left = state
                    .metadata
                    .get(id.node())
                    .is_some_and(|record| record.leaving && record.incarnation == id.incarnation());
                if left {
                    MemberState::Left
                } else {
                    MemberState::Down
                }
            }
        }
    }

    fn report(&mut self, id: MemberId, state: MemberState) {
        let address = id.addr();
        if self.reported.get(&address) == Some(&(id.clone(), state)) {
            return;
        }
        let event = match state {
            MemberState::Alive | MemberState::Suspect => MembershipEvent::MemberUp(id.clone()),
            MemberState::Down => MembershipEvent::MemberDown(id.clone()),
            MemberState::Left => MembershipEvent::MemberLeft(id.clone()),
        };
        self.reported.insert(address, (id, state));
        self.push_event(event);
    }

    fn push_event(&mut self, event: MembershipEvent) {
        if self.events.len() >= EVENTS_QUEUED_MAX {
            self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
            return;
        }
        tracing::debug!(target: "meshgate::federation::membership", ?event, "membership event");
        self.events.push_back(event);
    }

    fn push_transmit(&mut self, destination: SocketAddr, kind: PacketKind, body: &[u8]) {
        let payload = auth::seal(&self.key, kind, body);
        debug_assert!(
            payload.len() <= self.config.packet_bytes_max,
            "foca and sync respect the packet limit"
        );
        self.stats.packets_sent = self.stats.packets_sent.saturating_add(1);
        self.stats.bytes_sent = self.stats.bytes_sent.saturating_add(payload.len() as u64);
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
    }

    fn schedule(&mut self, delay: Duration, kind: TimerKind) {
        self.timers.push_back((delay, MembershipTimer(kind)));
    }

    fn note_swim_result(&mut self, result: Result<(), foca::Error>) {
        if let Err(error) = result {
            self.stats.swim_errors = self.stats.swim_errors.saturating_add(1);
            tracing::debug!(target: "meshgate::federation::membership", %error, "foca error");
        }
    }
}

fn build_swim(
    identity: MemberId,
    config: &ValidConfig,
    state: &SharedState,
    rng: &mut SmallRng,
) -> SwimMachine {
    Foca::with_custom_broadcast(
        identity,
        config.swim.clone(),
        SmallRng::seed_from_u64(rng.next_u64()),
        WireCodec::default(),
        GossipHandler::new(state.clone(), config.broadcast_item_bytes_max),
    )
}
