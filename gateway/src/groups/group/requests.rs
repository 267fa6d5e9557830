//! The requests of members already in a group (sync, heartbeat, leave,
//! cancel, commit checks) and the group's read-only views.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshgate_protocol::{GroupSummary, Reply};

use super::{Group, Outbox, TARGET};
use crate::groups::error::GroupError;
use crate::groups::types::{GroupDetails, GroupState, MemberDetails, RequestToken};

impl Group {
    /// A sync (validated by the coordinator). Answers through `out`.
    pub(crate) fn sync(
        &mut self,
        now: Instant,
        token: RequestToken,
        member_id: &str,
        generation: u32,
        assignments: BTreeMap<String, Bytes>,
        out: &mut Outbox,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, generation)?;
        let is_leader = self.leader.as_deref() == Some(member_id);
        let member = self.members.get_mut(member_id).expect("checked above");
        member.keep_alive(now);
        match self.state {
            GroupState::Empty => unreachable!("check_member found a member"),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress {
                group: self.name.clone(),
            }),
            GroupState::Stable => {
                out.answer(token, Ok(Reply::Synced(member.assignment.clone())));
                Ok(())
            }
            GroupState::CompletingRebalance => {
                if let Some(old) = member.pending_sync.replace(token) {
                    out.fail(
                        old,
                        GroupError::Superseded {
                            member: member_id.to_string(),
                        },
                    );
                }
                member.synced = true;
                // Only reached in leader mode: node mode goes straight to
                // Stable. A follower's assignments are ignored, as in Kafka.
                if is_leader {
                    self.complete_sync(now, assignments, out);
                }
                Ok(())
            }
        }
    }

    /// The leader's assignments arrived: every member gets its bytes (none
    /// for members the leader left out) and the group is stable.
    fn complete_sync(
        &mut self,
        now: Instant,
        mut assignments: BTreeMap<String, Bytes>,
        out: &mut Outbox,
    ) {
        for (id, member) in &mut self.members {
            member.assignment = assignments.remove(id).unwrap_or_default();
            if let Some(token) = member.pending_sync.take() {
                member.keep_alive(now);
                out.answer(token, Ok(Reply::Synced(member.assignment.clone())));
            }
        }
        self.state = GroupState::Stable;
        self.phase_deadline = None;
    }

    fn check_member(&self, member_id: &str, generation: u32) -> Result<(), GroupError> {
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration {
                group: self.name.clone(),
                generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    /// A heartbeat: refreshes the session of a current member.
    pub(crate) fn heartbeat(
        &mut self,
        now: Instant,
        member_id: &str,
        generation: u32,
    ) -> Result<Reply, GroupError> {
        self.check_member(member_id, generation)?;
        self.members
            .get_mut(member_id)
            .expect("checked above")
            .keep_alive(now);
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress {
                group: self.name.clone(),
            }),
            // Kafka answers a heartbeat while the leader assigns with
            // success: the member has joined this generation already and
            // only waits for its sync answer; telling it to rejoin would
            // restart the rebalance it is completing.
            _ => Ok(Reply::HeartbeatOk),
        }
    }

    /// A member leaves at once; its pending requests are answered with
    /// `UnknownMember` and the rest of the group rebalances.
    pub(crate) fn leave(
        &mut self,
        now: Instant,
        member_id: &str,
        out: &mut Outbox,
    ) -> Result<(), GroupError> {
        let member = self
            .members
            .remove(member_id)
            .ok_or_else(|| self.unknown_member(member_id))?;
        tracing::debug!(target: TARGET, group = %self.name, member = member_id, "member left");
        for token in [member.pending_join, member.pending_sync]
            .into_iter()
            .flatten()
        {
            out.fail(token, self.unknown_member(member_id));
        }
        self.after_removal(now, out);
        Ok(())
    }

    /// The caller gave up waiting for `token` (its client went away). A
    /// cancelled join removes its member, so a vanished client neither
    /// holds up the join phase nor receives partitions; a cancelled sync
    /// leaves the member to its session timeout. Returns whether the token
    /// was pending here.
    pub(crate) fn cancel(&mut self, now: Instant, token: RequestToken, out: &mut Outbox) -> bool {
        let joiner = self
            .members
            .iter()
            .find(|(_, member)| member.pending_join == Some(token))
            .map(|(id, _)| id.clone());
        if let Some(id) = joiner {
            self.members.remove(&id);
            out.members_dropped += 1;
            tracing::debug!(target: TARGET, group = %self.name, member = %id, "join cancelled; member removed");
            self.after_removal(now, out);
            return true;
        }
        for member in self.members.values_mut() {
            if member.pending_sync == Some(token) {
                member.pending_sync = None;
                return true;
            }
        }
        false
    }

    /// Whether a commit may proceed (see `Coordinator::check_commit`).
    pub(crate) fn check_commit(&self, member: Option<(u32, &str)>) -> Result<(), GroupError> {
        match member {
            None if self.members.is_empty() => Ok(()),
            None => Err(GroupError::ActiveGroup {
                group: self.name.clone(),
            }),
            Some((generation, member_id)) => {
                // As in Kafka, a member of the current generation may still
                // commit while the group prepares a rebalance: it commits
                // what it processed before it rejoins, so the partition's
                // next owner does not process it again.
                self.check_member(member_id, generation)
            }
        }
    }

    pub(crate) fn summary(&self) -> GroupSummary {
        GroupSummary {
            group: self.name.clone(),
            state: self.state.as_str().to_string(),
            members: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            protocol: self.protocol.clone(),
        }
    }

    pub(crate) fn details(&self) -> GroupDetails {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        GroupDetails {
            group: self.name.clone(),
            state: self.state,
            generation: self.generation,
            mode: self.mode,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, member)| MemberDetails {
                    member_id: id.clone(),
                    client_id: member.client_id.clone(),
                    session_timeout_ms: duration_ms(member.session_timeout),
                    rebalance_timeout_ms: duration_ms(member.rebalance_timeout),
                    metadata: member
                        .protocol(protocol)
                        .map(|p| p.metadata.clone())
                        .unwrap_or_default(),
                    assignment: member.assignment.clone(),
                    partitions: member.partitions.clone(),
                })
                .collect(),
        }
    }
}

fn duration_ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
impl Group {
    /// Panics if a documented invariant of the group does not hold.
    pub(crate) fn assert_invariants(&self) {
        assert_eq!(
            self.mode.is_some(),
            !self.members.is_empty(),
            "{}: mode iff members",
            self.name
        );
        assert_eq!(
            self.state == GroupState::Empty,
            self.members.is_empty(),
            "{}: empty iff no members",
            self.name
        );
        for (id, member) in &self.members {
            if member.pending_join.is_some() {
                assert_eq!(
                    self.state,
                    GroupState::PreparingRebalance,
                    "{id}: pending join"
                );
            }
            if member.pending_sync.is_some() {
                assert_eq!(
                    self.state,
                    GroupState::CompletingRebalance,
                    "{id}: pending sync"
                );
            }
        }
        let rebalancing = matches!(
            self.state,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
        );
        assert_eq!(
            self.phase_deadline.is_some(),
            rebalancing,
            "{}: phase deadline",
            self.name
        );
        if self.state == GroupState::Stable {
            let leader = self.leader.as_ref().expect("a stable group has a leader");
            assert!(
                self.members.contains_key(leader),
                "{}: leader is a member",
                self.name
            );
        }
    }
}
