//! One group's membership state machine: Kafka's classic protocol (join
//! phase, sync phase, heartbeats, session and rebalance timeouts).
//!
//! Invariants (asserted where they matter):
//! - pending joins exist only in `PreparingRebalance`, pending syncs only in
//!   `CompletingRebalance`; every pending request is answered exactly once
//!   (by completion, an error, supersession, removal) or cancelled by the
//!   caller;
//! - `mode` is `Some` exactly while the group has members;
//! - the members' protocol names always intersect (checked on every join),
//!   so the end of a join phase always finds a protocol.
//!
//! This file holds the join phase and timeouts; `requests.rs` the requests
//! of members already in the group and the views.

mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshgate_protocol::{GroupMember, JoinOk, Reply, Response, TopicPartitions, encode_assignment};

use super::assignor::{Assignment, Assignor, PartitionCounts, Subscriptions};
use super::error::GroupError;
use super::types::{AssignmentMode, GroupState, RequestToken};

/// The tracing target of the coordinator's events.
pub(crate) const TARGET: &str = "meshgate::gateway::groups";

/// Answers and counters produced while handling an input.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Answers to long-lived requests, in the order they were decided.
    /// Bounded by the pending requests (at most two per member) plus the
    /// request being handled, because the caller drains it after each call.
    pub(crate) answers: VecDeque<(RequestToken, Response)>,
    /// Join phases completed.
    pub(crate) rebalances_completed: u64,
    /// Members removed by their session timeout.
    pub(crate) sessions_expired: u64,
    /// Members removed by the rebalance timeout or a cancelled join.
    pub(crate) members_dropped: u64,
}

impl Outbox {
    pub(crate) fn answer(&mut self, token: RequestToken, response: Response) {
        self.answers.push_back((token, response));
    }

    pub(crate) fn fail(&mut self, token: RequestToken, error: GroupError) {
        self.answer(token, Err(error.into()));
    }
}

/// An assignment protocol a member supports, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberProtocol {
    pub(crate) name: String,
    pub(crate) metadata: Bytes,
    /// The decoded subscription, in node mode.
    pub(crate) subscription: Option<BTreeSet<String>>,
}

/// A validated join request.
#[derive(Debug, Clone)]
pub(crate) struct ValidJoin {
    pub(crate) member_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocols: Vec<MemberProtocol>,
    pub(crate) mode: AssignmentMode,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<MemberProtocol>,
    /// Removed at this time unless a request is pending or it shows life.
    session_deadline: Instant,
    pending_join: Option<RequestToken>,
    pending_sync: Option<RequestToken>,
    /// Sent a sync in the current `CompletingRebalance` phase.
    synced: bool,
    /// Join order, for choosing a leader: the longest-standing member.
    seniority: u64,
    /// What a sync returns in the current generation.
    assignment: Bytes,
    /// The partitions behind `assignment`, in node mode.
    partitions: Vec<TopicPartitions>,
}

impl Member {
    fn protocol(&self, name: &str) -> Option<&MemberProtocol> {
        self.protocols.iter().find(|protocol| protocol.name == name)
    }

    fn supports(&self, name: &str) -> bool {
        self.protocol(name).is_some()
    }

    fn is_pending(&self) -> bool {
        self.pending_join.is_some() || self.pending_sync.is_some()
    }

    fn keep_alive(&mut self, now: Instant) {
        self.session_deadline = now + self.session_timeout;
    }
}

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    name: String,
    state: GroupState,
    generation: u32,
    mode: Option<AssignmentMode>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// `PreparingRebalance`: when the join phase completes anyway.
    /// `CompletingRebalance`: when members that did not sync are removed.
    phase_deadline: Option<Instant>,
    /// While the first join phase of an empty group runs (the initial
    /// delay), the latest it may last.
    initial_join_cap: Option<Instant>,
    /// Partition counts of the subscribed topics, node mode: refreshed on
    /// joins and metadata changes, used when a join phase completes.
    partition_counts: BTreeMap<String, u32>,
    /// When the group last became (or was created) empty.
    pub(crate) empty_since: Option<Instant>,
    next_seniority: u64,
}

impl Group {
    pub(crate) fn new(name: String, now: Instant) -> Self {
        Self {
            name,
            state: GroupState::Empty,
            generation: 0,
            mode: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            phase_deadline: None,
            initial_join_cap: None,
            partition_counts: BTreeMap::new(),
            empty_since: Some(now),
            next_seniority: 0,
        }
    }

    pub(crate) fn state(&self) -> GroupState {
        self.state
    }

    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.members
            .values()
            .map(|member| {
                usize::from(member.pending_join.is_some())
                    + usize::from(member.pending_sync.is_some())
            })
            .sum()
    }

    /// The earliest time `handle_timeout` has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|member| !member.is_pending())
            .map(|member| member.session_deadline);
        sessions.chain(self.phase_deadline).min()
    }

    fn unknown_member(&self, member: &str) -> GroupError {
        GroupError::UnknownMember {
            group: self.name.clone(),
            member: member.to_string(),
        }
    }

    fn inconsistent(&self, reason: String) -> GroupError {
        GroupError::InconsistentProtocol {
            group: self.name.clone(),
            reason,
        }
    }

    /// Checks that `join` may enter this group: known member id or room for
    /// a new one, the group's mode, a protocol shared with every other
    /// member. Does not change anything.
    pub(crate) fn check_join(&self, join: &ValidJoin, members_max: u32) -> Result<(), GroupError> {
        match &join.member_id {
            Some(id) if !self.members.contains_key(id) => return Err(self.unknown_member(id)),
            Some(_) => {}
            None if self.members.len() >= members_max as usize => {
                return Err(GroupError::GroupFull {
                    group: self.name.clone(),
                    members_max,
                });
            }
            None => {}
        }
        if let Some(mode) = self.mode
            && mode != join.mode
        {
            return Err(self.inconsistent(format!(
                "the group uses {mode} assignment; this join asks for {} assignment",
                join.mode
            )));
        }
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| Some(*id) != join.member_id.as_ref())
            .map(|(_, member)| member)
            .collect();
        let shared = join
            .protocols
            .iter()
            .any(|protocol| others.iter().all(|member| member.supports(&protocol.name)));
        if !shared {
            let offered: Vec<&str> = join.protocols.iter().map(|p| p.name.as_str()).collect();
            return Err(self.inconsistent(format!("no member protocol in common with {offered:?}")));
        }
        Ok(())
    }

    /// Adds a new member (checked by [`Group::check_join`]) whose join
    /// waits for the end of the join phase.
    #[allow(clippy::too_many_arguments)] // One join's inputs; a struct would only rename them.
    pub(crate) fn add_member(
        &mut self,
        now: Instant,
        token: RequestToken,
        member_id: String,
        join: ValidJoin,
        initial_delay: Duration,
        counts: &dyn PartitionCounts,
        out: &mut Outbox,
    ) {
        let member = Member {
            client_id: join.client_id,
            session_timeout: join.session_timeout,
            rebalance_timeout: join.rebalance_timeout,
            protocols: join.protocols,
            session_deadline: now + join.session_timeout,
            pending_join: Some(token),
            pending_sync: None,
            synced: false,
            seniority: self.next_seniority,
            assignment: Bytes::new(),
            partitions: Vec::new(),
        };
        self.next_seniority += 1;
        let previous = self.members.insert(member_id, member);
        assert!(previous.is_none(), "member ids are never reused");
        self.mode = Some(join.mode);
        self.empty_since = None;
        self.refresh_counts(counts);
        match self.state {
            GroupState::Empty if initial_delay.is_zero() => {
                self.prepare_rebalance(now, out);
                self.maybe_complete_join(now, out);
            }
            GroupState::Empty => {
                self.prepare_rebalance(now, out);
                let cap = self.phase_deadline.expect("set by prepare_rebalance");
                self.initial_join_cap = Some(cap);
                self.phase_deadline = Some(cap.min(now + initial_delay));
            }
            GroupState::PreparingRebalance => match self.initial_join_cap {
                // Another member starting together: wait a little longer.
                Some(cap) => self.phase_deadline = Some(cap.min(now + initial_delay)),
                None => self.maybe_complete_join(now, out),
            },
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(now, out);
            }
        }
    }

    /// A known member (checked by [`Group::check_join`]) joins again.
    pub(crate) fn rejoin(
        &mut self,
        now: Instant,
        token: RequestToken,
        join: ValidJoin,
        counts: &dyn PartitionCounts,
        out: &mut Outbox,
    ) {
        let id = join.member_id.clone().expect("a rejoin names its member");
        let member = self.members.get_mut(&id).expect("checked by check_join");
        let unchanged = member.protocols == join.protocols;
        member.session_timeout = join.session_timeout;
        member.rebalance_timeout = join.rebalance_timeout;
        member.protocols = join.protocols;
        member.keep_alive(now);
        // Before any completion below: the assignment uses the snapshot.
        self.refresh_counts(counts);
        let is_leader = self.leader.as_ref() == Some(&id);
        let member = self.members.get_mut(&id).expect("checked by check_join");
        match self.state {
            GroupState::Empty => unreachable!("an empty group has no member to rejoin"),
            GroupState::PreparingRebalance => {
                if let Some(old) = member.pending_join.replace(token) {
                    out.fail(old, GroupError::Superseded { member: id });
                }
                self.maybe_complete_join(now, out);
            }
            // Kafka: a follower (or anyone while the leader assigns) that
            // rejoins with unchanged metadata just gets the current
            // generation, so a lost join answer does not cost a rebalance.
            // A Kafka leader's rejoin always rebalances: it is how a leader
            // that saw a metadata change asks for a new assignment.
            state @ (GroupState::CompletingRebalance | GroupState::Stable)
                if unchanged
                    && !(state == GroupState::Stable
                        && is_leader
                        && self.mode == Some(AssignmentMode::Leader)) =>
            {
                out.answer(token, Ok(Reply::Joined(self.join_ok(&id))));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.pending_join = Some(token);
                self.prepare_rebalance(now, out);
                // A lone member completes the phase at once.
                self.maybe_complete_join(now, out);
            }
        }
    }

    /// Starts a join phase: pending syncs are told to rejoin; members have
    /// until the largest rebalance timeout to rejoin.
    fn prepare_rebalance(&mut self, now: Instant, out: &mut Outbox) {
        for member in self.members.values_mut() {
            if let Some(token) = member.pending_sync.take() {
                out.fail(
                    token,
                    GroupError::RebalanceInProgress {
                        group: self.name.clone(),
                    },
                );
            }
        }
        self.state = GroupState::PreparingRebalance;
        self.initial_join_cap = None;
        self.phase_deadline = Some(now + self.rebalance_timeout());
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn maybe_complete_join(&mut self, now: Instant, out: &mut Outbox) {
        let all_joined = self
            .members
            .values()
            .all(|member| member.pending_join.is_some());
        if self.state == GroupState::PreparingRebalance
            && self.initial_join_cap.is_none()
            && !self.members.is_empty()
            && all_joined
        {
            self.complete_join(now, out);
        }
    }

    /// Ends a join phase: members that did not rejoin are removed, a new
    /// generation forms and every pending join is answered.
    fn complete_join(&mut self, now: Instant, out: &mut Outbox) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        let before = self.members.len();
        self.members.retain(|_, member| {
            assert!(
                member.pending_sync.is_none(),
                "no pending sync while preparing"
            );
            member.pending_join.is_some()
        });
        let dropped = before - self.members.len();
        if dropped > 0 {
            out.members_dropped += dropped as u64;
            tracing::info!(target: TARGET, group = %self.name, dropped, "members did not rejoin in time");
        }
        if self.members.is_empty() {
            self.become_empty(now);
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.initial_join_cap = None;
        self.protocol = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, member)| member.seniority)
                .map(|(id, _)| id.clone());
        }
        match self.mode.expect("a group with members has a mode") {
            AssignmentMode::Node => {
                let assignment = self.node_assignment();
                for (id, partitions) in assignment {
                    let member = self.members.get_mut(&id).expect("assigned members exist");
                    member.assignment = encode_assignment(&partitions);
                    member.partitions = partitions;
                }
                self.state = GroupState::Stable;
                self.phase_deadline = None;
            }
            AssignmentMode::Leader => {
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    member.partitions.clear();
                    member.synced = false;
                }
                self.state = GroupState::CompletingRebalance;
                self.phase_deadline = Some(now + self.rebalance_timeout());
            }
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.join_ok(&id);
            let member = self.members.get_mut(&id).expect("listed above");
            let token = member
                .pending_join
                .take()
                .expect("only joined members remain");
            member.keep_alive(now);
            out.answer(token, Ok(Reply::Joined(answer)));
        }
        out.rebalances_completed += 1;
        tracing::info!(
            target: TARGET,
            group = %self.name,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or_default(),
            state = %self.state,
            "generation formed"
        );
    }

    /// Kafka's vote: among the protocols every member supports, each member
    /// votes for the first of its own list; most votes wins, ties go to the
    /// longest-standing member's preference.
    fn select_protocol(&self) -> String {
        let senior = self
            .members
            .values()
            .min_by_key(|member| member.seniority)
            .expect("called with members");
        let candidates: Vec<&str> = senior
            .protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find_map(|protocol| candidates.iter().position(|name| *name == protocol.name));
            if let Some(index) = choice {
                votes[index] += 1;
            }
        }
        // Earliest index among the maxima: iterate in reverse so `max_by_key`
        // (which keeps the last maximum) lands on the first.
        let winner = (0..candidates.len())
            .rev()
            .max_by_key(|&index| votes[index])
            .expect("join checks keep a protocol common to every member");
        candidates[winner].to_string()
    }

    /// The node-computed assignment of the current members under the
    /// current protocol and partition counts.
    fn node_assignment(&self) -> Assignment {
        let protocol = self.protocol.as_deref().expect("a protocol is chosen");
        let assignor = Assignor::from_protocol(protocol)
            .expect("node mode keeps only node-computed protocols");
        let subscriptions: Subscriptions = self
            .members
            .iter()
            .map(|(id, member)| {
                let topics = member
                    .protocol(protocol)
                    .and_then(|chosen| chosen.subscription.clone())
                    .expect("node-mode protocols carry a parsed subscription");
                (id.clone(), topics)
            })
            .collect();
        assignor.assign(&subscriptions, &self.partition_counts)
    }

    fn join_ok(&self, member_id: &str) -> JoinOk {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader_id = self.leader.clone().unwrap_or_default();
        let members = if self.mode == Some(AssignmentMode::Leader) && leader_id == member_id {
            self.members
                .iter()
                .map(|(id, member)| GroupMember {
                    member_id: id.clone(),
                    metadata: member
                        .protocol(&protocol)
                        .map(|p| p.metadata.clone())
                        .unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOk {
            generation: self.generation,
            member_id: member_id.to_string(),
            leader_id,
            protocol,
            members,
        }
    }

    fn become_empty(&mut self, now: Instant) {
        assert!(self.members.is_empty());
        // Kafka forms an (empty) next generation too.
        self.generation = self.generation.wrapping_add(1);
        self.state = GroupState::Empty;
        self.mode = None;
        self.protocol = None;
        self.leader = None;
        self.phase_deadline = None;
        self.initial_join_cap = None;
        self.partition_counts.clear();
        self.empty_since = Some(now);
    }

    /// Reacts to members having gone: the rest rebalance.
    fn after_removal(&mut self, now: Instant, out: &mut Outbox) {
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.become_empty(now);
            }
            return;
        }
        match self.state {
            GroupState::Empty => unreachable!("members were just removed"),
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(now, out)
            }
        }
    }

    /// Expires sessions and phase deadlines due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let before = self.members.len();
        self.members
            .retain(|_, member| member.is_pending() || member.session_deadline > now);
        let expired = before - self.members.len();
        if expired > 0 {
            out.sessions_expired += expired as u64;
            tracing::info!(target: TARGET, group = %self.name, expired, "member sessions expired");
            self.after_removal(now, out);
        }
        if self.phase_deadline.is_some_and(|deadline| deadline <= now) {
            match self.state {
                GroupState::PreparingRebalance => self.complete_join(now, out),
                GroupState::CompletingRebalance => self.expire_sync(now, out),
                GroupState::Empty | GroupState::Stable => {
                    unreachable!("only rebalancing states have a phase deadline")
                }
            }
        }
    }

    /// The leader did not assign within the rebalance timeout: members that
    /// never sent a sync (the leader among them) are removed, as Kafka does,
    /// and the rest rebalance.
    fn expire_sync(&mut self, now: Instant, out: &mut Outbox) {
        let before = self.members.len();
        self.members.retain(|_, member| member.synced);
        assert!(
            self.members.len() < before,
            "the leader cannot have synced in this state"
        );
        out.members_dropped += (before - self.members.len()) as u64;
        tracing::info!(
            target: TARGET,
            group = %self.name,
            removed = before - self.members.len(),
            "the leader did not assign within the rebalance timeout"
        );
        self.after_removal(now, out);
    }

    /// Partition counts changed: refresh the snapshot and rebalance a
    /// stable node-mode group whose assignment would change.
    pub(crate) fn metadata_changed(
        &mut self,
        now: Instant,
        counts: &dyn PartitionCounts,
        out: &mut Outbox,
    ) {
        if self.mode != Some(AssignmentMode::Node) {
            return;
        }
        self.refresh_counts(counts);
        if self.state != GroupState::Stable {
            return;
        }
        let changed = self.node_assignment().iter().any(|(id, partitions)| {
            self.members
                .get(id)
                .is_none_or(|member| member.partitions != *partitions)
        });
        if changed {
            tracing::info!(target: TARGET, group = %self.name, "partition counts changed; rebalancing");
            self.prepare_rebalance(now, out);
        }
    }

    fn refresh_counts(&mut self, counts: &dyn PartitionCounts) {
        if self.mode != Some(AssignmentMode::Node) {
            return;
        }
        let topics: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|member| member.protocols.iter())
            .flat_map(|protocol| protocol.subscription.iter().flatten())
            .collect();
        self.partition_counts = topics
            .into_iter()
            .filter_map(|topic| Some((topic.clone(), counts.partitions(topic)?)))
            .collect();
    }
}
