//! The sans-IO coordinator: every group of the node, request validation,
//! the deadline index and the answer queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use meshgate_protocol::{
    GroupSummary, Heartbeat, JoinGroup, LeaveGroup, Reply, Response, SyncGroup, decode_subscription,
};
use meshgate_storage::validate_name;

use super::assignor::{Assignor, PartitionCounts};
use super::config::{
    CLIENT_ID_BYTES_MAX, GROUP_NAME_BYTES_MAX, GroupConfig, GroupConfigError,
    PROTOCOL_NAME_BYTES_MAX, PROTOCOLS_PER_MEMBER_MAX,
};
use super::error::GroupError;
use super::group::{Group, MemberProtocol, Outbox, ValidJoin};
use super::types::{AssignmentMode, GroupDetails, GroupStats, RequestToken};

/// The consumer-group coordinator of one node, as a deterministic state
/// machine: inputs through `handle_*` with the current time, answers to
/// long-lived requests through [`Coordinator::poll_output`], the next time
/// it needs [`Coordinator::handle_timeout`] through
/// [`Coordinator::poll_timeout`]. It never reads a clock.
///
/// Joins and syncs are long-lived: each carries a caller-chosen
/// [`RequestToken`] and gets exactly one answer under it, possibly at once
/// (errors, a sync of a stable group), possibly much later (the end of a
/// join phase, the leader's sync), unless the caller cancels it with
/// [`Coordinator::handle_cancel`]. Drain `poll_output` after every call.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    /// Each group's next deadline, and the same pairs ordered by time.
    deadlines: BTreeMap<String, Instant>,
    timers: BTreeSet<(Instant, String)>,
    outbox: Outbox,
    next_member_number: u64,
    stats: GroupStats,
}

impl Coordinator {
    /// A coordinator without groups.
    ///
    /// Member ids are `<client id>-<n>` with `n` counting up from
    /// `first_member_number`. Pick a value no earlier run of this node
    /// used (a boot counter shifted left by 32 bits, or a number from the
    /// node's seeded RNG), so a client that kept a member id across a node
    /// restart cannot be mistaken for a new member holding the same id.
    pub fn new(config: GroupConfig, first_member_number: u64) -> Result<Self, GroupConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            groups: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            timers: BTreeSet::new(),
            outbox: Outbox::default(),
            next_member_number: first_member_number,
            stats: GroupStats::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// A join (or rejoin). The answer comes through `poll_output` under
    /// `token`: at once for an error or a rejoin that changes nothing, at
    /// the end of the join phase otherwise.
    ///
    /// `mode` says who assigns (see [`AssignmentMode`]); a group keeps the
    /// mode of its first member while it has members. `counts` is read
    /// during this call only, to refresh the group's snapshot of the
    /// partition counts of its subscribed topics (node mode); that snapshot
    /// serves every assignment until the next join or
    /// [`Coordinator::handle_metadata_changed`].
    pub fn handle_join(
        &mut self,
        now: Instant,
        token: RequestToken,
        request: JoinGroup,
        mode: AssignmentMode,
        counts: &dyn PartitionCounts,
    ) {
        if let Err(error) = self.join(now, token, request, mode, counts) {
            self.outbox.fail(token, error);
        }
    }

    fn join(
        &mut self,
        now: Instant,
        token: RequestToken,
        request: JoinGroup,
        mode: AssignmentMode,
        counts: &dyn PartitionCounts,
    ) -> Result<(), GroupError> {
        let join = self.validate_join(&request, mode)?;
        let name = request.group;
        if !self.groups.contains_key(&name) {
            if let Some(member) = &join.member_id {
                return Err(GroupError::UnknownMember {
                    group: name,
                    member: member.clone(),
                });
            }
            self.make_room_for_a_group()?;
            self.groups
                .insert(name.clone(), Group::new(name.clone(), now));
        }
        let group = self
            .groups
            .get_mut(&name)
            .expect("present or just inserted");
        group.check_join(&join, self.config.members_per_group_max)?;
        if join.member_id.is_some() {
            group.rejoin(now, token, join, counts, &mut self.outbox);
        } else {
            let prefix = if join.client_id.is_empty() {
                "member"
            } else {
                join.client_id.as_str()
            };
            let member_id = format!("{prefix}-{}", self.next_member_number);
            self.next_member_number += 1;
            let delay = Duration::from_millis(self.config.initial_rebalance_delay_ms.into());
            group.add_member(now, token, member_id, join, delay, counts, &mut self.outbox);
        }
        self.reindex(&name);
        Ok(())
    }

    /// Checks a join's arguments against the limits and parses its
    /// protocols; node mode keeps only node-computed protocols.
    fn validate_join(
        &self,
        request: &JoinGroup,
        mode: AssignmentMode,
    ) -> Result<ValidJoin, GroupError> {
        validate_name("group", &request.group, GROUP_NAME_BYTES_MAX)?;
        check_size(
            "client_id (bytes)",
            request.client_id.len(),
            CLIENT_ID_BYTES_MAX,
        )?;
        let session_timeout = check_ms(
            "session_timeout_ms",
            request.session_timeout_ms,
            self.config.session_timeout_ms_min,
            self.config.session_timeout_ms_max,
        )?;
        let rebalance_timeout = check_ms(
            "rebalance_timeout_ms",
            request.rebalance_timeout_ms,
            self.config.rebalance_timeout_ms_min,
            self.config.rebalance_timeout_ms_max,
        )?;
        check_size(
            "protocols (entries)",
            request.protocols.len(),
            PROTOCOLS_PER_MEMBER_MAX,
        )?;
        let metadata_bytes: usize = request.protocols.iter().map(|p| p.metadata.len()).sum();
        check_size(
            "protocol metadata (bytes)",
            metadata_bytes,
            self.config.metadata_bytes_max as usize,
        )?;
        let mut names = BTreeSet::new();
        let mut protocols = Vec::with_capacity(request.protocols.len());
        for protocol in &request.protocols {
            check_size(
                "protocol name (bytes)",
                protocol.name.len(),
                PROTOCOL_NAME_BYTES_MAX,
            )?;
            if !names.insert(protocol.name.as_str()) {
                return Err(GroupError::Malformed(format!(
                    "protocol {:?} is listed twice",
                    protocol.name
                )));
            }
            let subscription = match mode {
                AssignmentMode::Leader => None,
                AssignmentMode::Node if Assignor::from_protocol(&protocol.name).is_none() => {
                    continue;
                }
                AssignmentMode::Node => {
                    let topics = decode_subscription(&protocol.metadata).ok_or_else(|| {
                        GroupError::Malformed(format!(
                            "metadata of protocol {:?} is not a subscription (encode_subscription)",
                            protocol.name
                        ))
                    })?;
                    Some(topics.into_iter().collect())
                }
            };
            protocols.push(MemberProtocol {
                name: protocol.name.clone(),
                metadata: protocol.metadata.clone(),
                subscription,
            });
        }
        if protocols.is_empty() {
            let offered: Vec<&str> = request.protocols.iter().map(|p| p.name.as_str()).collect();
            let reason = match mode {
                AssignmentMode::Node => format!(
                    "node-computed assignment needs protocol range or roundrobin; offered {offered:?}"
                ),
                AssignmentMode::Leader => "a join must offer at least one protocol".to_string(),
            };
            return Err(GroupError::InconsistentProtocol {
                group: request.group.clone(),
                reason,
            });
        }
        Ok(ValidJoin {
            member_id: request.member_id.clone(),
            client_id: request.client_id.clone(),
            session_timeout,
            rebalance_timeout,
            protocols,
            mode,
        })
    }

    /// Makes room for a new group: at the limit, the group that has been
    /// empty longest is forgotten; if every group has members, fails.
    fn make_room_for_a_group(&mut self) -> Result<(), GroupError> {
        if self.groups.len() < self.config.groups_max as usize {
            return Ok(());
        }
        let oldest_empty = self
            .groups
            .iter()
            .filter_map(|(name, group)| Some((group.empty_since?, name)))
            .min()
            .map(|(_, name)| name.clone());
        match oldest_empty {
            Some(name) => {
                self.groups.remove(&name);
                self.reindex(&name);
                Ok(())
            }
            None => Err(GroupError::TooManyGroups {
                groups_max: self.config.groups_max,
            }),
        }
    }

    /// A sync. The answer comes through `poll_output` under `token`: at
    /// once in a stable group (and for errors), when the leader's sync
    /// arrives while the leader assigns.
    pub fn handle_sync(&mut self, now: Instant, token: RequestToken, request: SyncGroup) {
        if let Err(error) = self.sync(now, token, request) {
            self.outbox.fail(token, error);
        }
    }

    fn sync(
        &mut self,
        now: Instant,
        token: RequestToken,
        request: SyncGroup,
    ) -> Result<(), GroupError> {
        validate_name("group", &request.group, GROUP_NAME_BYTES_MAX)?;
        check_size(
            "assignments (entries)",
            request.assignments.len(),
            self.config.members_per_group_max as usize,
        )?;
        let mut assignments = BTreeMap::new();
        for (member, bytes) in request.assignments {
            check_size(
                "an assignment (bytes)",
                bytes.len(),
                self.config.assignment_bytes_max as usize,
            )?;
            if assignments.insert(member.clone(), bytes).is_some() {
                return Err(GroupError::Malformed(format!(
                    "member {member:?} is assigned twice"
                )));
            }
        }
        let group = group_mut(&mut self.groups, &request.group, &request.member_id)?;
        let result = group.sync(
            now,
            token,
            &request.member_id,
            request.generation,
            assignments,
            &mut self.outbox,
        );
        // Even a refused sync may have refreshed the member's session.
        self.reindex(&request.group);
        result
    }

    /// A heartbeat: keeps the member's session alive. `RebalanceInProgress`
    /// tells it to rejoin, `IllegalGeneration` that it missed a rebalance,
    /// `UnknownMember` that it was removed.
    pub fn handle_heartbeat(&mut self, now: Instant, request: Heartbeat) -> Response {
        let result = (|| {
            validate_name("group", &request.group, GROUP_NAME_BYTES_MAX)?;
            let group = group_mut(&mut self.groups, &request.group, &request.member_id)?;
            group.heartbeat(now, &request.member_id, request.generation)
        })();
        self.reindex(&request.group);
        Ok(result?)
    }

    /// A member leaves at once; the others rebalance. Its pending join or
    /// sync is answered with `UnknownMember`.
    pub fn handle_leave(&mut self, now: Instant, request: LeaveGroup) -> Response {
        let result = (|| {
            validate_name("group", &request.group, GROUP_NAME_BYTES_MAX)?;
            let group = group_mut(&mut self.groups, &request.group, &request.member_id)?;
            group.leave(now, &request.member_id, &mut self.outbox)
        })();
        self.reindex(&request.group);
        result?;
        Ok(Reply::Left)
    }

    /// The caller stopped waiting for a join or sync of `group` (its client
    /// went away). The token gets no answer. A cancelled join removes its
    /// member (which may complete the join phase for the others); a
    /// cancelled sync leaves the member to its session timeout. Unknown or
    /// already answered tokens are ignored.
    pub fn handle_cancel(&mut self, now: Instant, group: &str, token: RequestToken) {
        let Some(entry) = self.groups.get_mut(group) else {
            return;
        };
        if entry.cancel(now, token, &mut self.outbox) {
            self.reindex(group);
        }
    }

    /// Partition counts of topics changed (a topic was created, deleted or
    /// grew): every node-mode group refreshes its snapshot from `counts`,
    /// and a stable one whose assignment would change rebalances.
    pub fn handle_metadata_changed(&mut self, now: Instant, counts: &dyn PartitionCounts) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let group = self.groups.get_mut(&name).expect("listed above");
            group.metadata_changed(now, counts, &mut self.outbox);
            self.reindex(&name);
        }
    }

    /// Expires every session and phase deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .timers
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, name)| name.clone())
            .collect();
        for name in due {
            let group = self
                .groups
                .get_mut(&name)
                .expect("timers index present groups");
            group.handle_timeout(now, &mut self.outbox);
            self.reindex(&name);
            // Each due deadline is acted on (a member removed, a phase
            // ended), so what remains lies ahead; otherwise the driver
            // would spin.
            assert!(
                self.deadlines
                    .get(&name)
                    .is_none_or(|deadline| *deadline > now),
                "group {name:?} still has a deadline due after handle_timeout"
            );
        }
    }

    /// The next time [`Coordinator::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(deadline, _)| *deadline)
    }

    /// The next answer to a join or sync.
    pub fn poll_output(&mut self) -> Option<(RequestToken, Response)> {
        self.outbox.answers.pop_front()
    }

    /// Whether an offset commit may proceed. With `(generation, member id)`
    /// the member must be in the group at that generation (stale:
    /// `IllegalGeneration`; unknown member or group: `UnknownMember`;
    /// while the group prepares a rebalance and while the leader assigns it
    /// is allowed, so a member commits what it processed before it rejoins,
    /// as in Kafka). Without, a standalone commit is allowed
    /// only when the group has no members (else `ActiveGroup`, which maps
    /// to `UnknownMember` as in Kafka). The coordinator stores no offsets.
    pub fn check_commit(&self, group: &str, member: Option<(u32, &str)>) -> Result<(), GroupError> {
        validate_name("group", group, GROUP_NAME_BYTES_MAX)?;
        match (self.groups.get(group), member) {
            (Some(entry), member) => entry.check_commit(member),
            (None, None) => Ok(()),
            (None, Some((_, member))) => Err(GroupError::UnknownMember {
                group: group.to_string(),
                member: member.to_string(),
            }),
        }
    }

    /// Every group, by name.
    pub fn list(&self) -> Vec<GroupSummary> {
        self.groups.values().map(Group::summary).collect()
    }

    /// One group in detail, if the coordinator holds it.
    pub fn describe(&self, group: &str) -> Option<GroupDetails> {
        self.groups.get(group).map(Group::details)
    }

    /// Counters and gauges for metrics.
    pub fn stats(&self) -> GroupStats {
        let mut stats = self.stats.clone();
        stats.groups = self.groups.len() as u64;
        stats.groups_stable = self
            .groups
            .values()
            .filter(|group| group.state() == super::GroupState::Stable)
            .count() as u64;
        stats.members = self
            .groups
            .values()
            .map(|group| group.member_count() as u64)
            .sum();
        stats.requests_pending = self
            .groups
            .values()
            .map(|group| group.pending_count() as u64)
            .sum();
        stats
    }

    /// Re-files `name`'s next deadline after its group changed (or went).
    /// Also folds the outbox counters into the stats.
    fn reindex(&mut self, name: &str) {
        let next = self.groups.get(name).and_then(Group::next_deadline);
        let previous = match next {
            Some(deadline) => self.deadlines.insert(name.to_string(), deadline),
            None => self.deadlines.remove(name),
        };
        if previous != next {
            if let Some(deadline) = previous {
                self.timers.remove(&(deadline, name.to_string()));
            }
            if let Some(deadline) = next {
                self.timers.insert((deadline, name.to_string()));
            }
        }
        self.stats.rebalances_completed += std::mem::take(&mut self.outbox.rebalances_completed);
        self.stats.sessions_expired += std::mem::take(&mut self.outbox.sessions_expired);
        self.stats.members_dropped += std::mem::take(&mut self.outbox.members_dropped);
    }
}

/// The group a request for `member` names; an unknown group means an
/// unknown member, as in Kafka.
fn group_mut<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    group: &str,
    member: &str,
) -> Result<&'a mut Group, GroupError> {
    groups
        .get_mut(group)
        .ok_or_else(|| GroupError::UnknownMember {
            group: group.to_string(),
            member: member.to_string(),
        })
}

fn check_size(what: &str, size: usize, size_max: usize) -> Result<(), GroupError> {
    if size > size_max {
        return Err(GroupError::TooLarge {
            what: what.to_string(),
            size,
            size_max,
        });
    }
    Ok(())
}

fn check_ms(field: &'static str, value: u32, min: u32, max: u32) -> Result<Duration, GroupError> {
    if !(min..=max).contains(&value) {
        return Err(GroupError::OutOfRange {
            field,
            value: value.into(),
            min: min.into(),
            max: max.into(),
        });
    }
    Ok(Duration::from_millis(value.into()))
}

#[cfg(test)]
impl Coordinator {
    /// Panics if an invariant of the coordinator or of a group does not
    /// hold: the deadline index matches the groups, every group is sound.
    pub(crate) fn assert_invariants(&self) {
        for (name, group) in &self.groups {
            group.assert_invariants();
            assert_eq!(
                self.deadlines.get(name).copied(),
                group.next_deadline(),
                "{name}: indexed deadline"
            );
        }
        let indexed: BTreeSet<(Instant, String)> = self
            .deadlines
            .iter()
            .map(|(name, deadline)| (*deadline, name.clone()))
            .collect();
        assert_eq!(indexed, self.timers, "timers mirror deadlines");
    }
}
