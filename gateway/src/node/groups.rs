//! What consumer groups need across regions: leases taken on join,
//! members fenced when the lease moves away, commits forwarded to the
//! regions that mirror their partitions.

use meshgate_protocol::{
    CommitOffsets, ErrorCode, Heartbeat, JoinGroup, LeaveGroup, Reply, Response, WireError,
};

use super::Node;
use crate::groups::AssignmentMode;
use crate::mirror::PartitionKey;
use crate::offsets;

impl Node {
    /// Refuses requests of a member fenced when its group moved away.
    pub(super) fn check_not_fenced(&self, group: &str, member_id: &str) -> Result<(), WireError> {
        if self
            .fenced
            .lock()
            .contains(&(group.to_string(), member_id.to_string()))
        {
            let region = self
                .mirror
                .get()
                .and_then(|mirror| mirror.lease(group))
                .map_or_else(|| "another region".to_string(), |lease| lease.region);
            return Err(WireError::new(
                ErrorCode::Fenced,
                format!("group {group} is now consumed in {region}; this member must stop"),
            ));
        }
        Ok(())
    }

    pub(super) async fn join_group(&self, join: JoinGroup) -> Response {
        let mirrored = match self.mirror.get() {
            Some(mirror) => join
                .protocols
                .iter()
                .any(|protocol| mirror.subscription_is_mirrored(&protocol.metadata)),
            None => false,
        };
        self.join_group_as(join, AssignmentMode::Node, mirrored)
            .await
    }

    /// Joins a group whose leader assigns partitions (Kafka clients, whose
    /// protocol metadata the node does not read): `subscription` is the
    /// topics the member subscribes to, as the listener decoded them, and
    /// decides whether the group needs a mirroring lease.
    pub async fn join_group_leader_assigned(
        &self,
        join: JoinGroup,
        subscription: &[String],
    ) -> Response {
        let mirrored = self.mirror.get().is_some_and(|mirror| {
            mirror.subscription_is_mirrored(&meshgate_protocol::encode_subscription(subscription))
        });
        self.join_group_as(join, AssignmentMode::Leader, mirrored)
            .await
    }

    async fn join_group_as(
        &self,
        join: JoinGroup,
        mode: AssignmentMode,
        mirrored: bool,
    ) -> Response {
        if let Some(member) = &join.member_id {
            self.check_not_fenced(&join.group, member)?;
        }
        if let Some(mirror) = self.mirror.get()
            && mirrored
            && mirror.local_epoch(&join.group) == 0
        {
            mirror.acquire_lease(&join.group).await;
        }
        let counts = self.partition_counts();
        self.groups.join(join, mode, &counts).await
    }

    /// One group's membership in detail (members' protocol metadata and
    /// assignments included), if the coordinator holds it.
    pub async fn group_details(&self, group: &str) -> Option<crate::groups::GroupDetails> {
        self.groups.describe(group).await
    }

    /// Fences this node's members of `group`: its lease moved to another
    /// region. They get `Fenced` from now on and are removed.
    pub async fn fence_group(&self, group: &str) {
        let Some(details) = self.groups.describe(group).await else {
            return;
        };
        for member in details.members {
            self.fenced
                .lock()
                .insert((group.to_string(), member.member_id.clone()));
            let _ = self
                .groups
                .leave(LeaveGroup {
                    group: group.to_string(),
                    member_id: member.member_id,
                })
                .await;
        }
        tracing::warn!(target: "meshgate::groups", %group, "group moved to another region; local members fenced");
    }

    pub(super) async fn commit_offsets(&self, commit: CommitOffsets) -> Response {
        if let Some((_, member)) = &commit.member {
            self.check_not_fenced(&commit.group, member)?;
        }
        let member = commit
            .member
            .as_ref()
            .map(|(generation, id)| (*generation, id.as_str()));
        self.groups.check_commit(&commit.group, member).await?;
        let mirror = self.mirror.get();
        if let Some(mirror) = mirror
            && mirror.held_elsewhere(&commit.group)
        {
            let region = mirror
                .lease(&commit.group)
                .map(|l| l.region)
                .unwrap_or_default();
            return Err(WireError::new(
                ErrorCode::Fenced,
                format!(
                    "group {} is consumed in {region}; commits there only",
                    commit.group
                ),
            ));
        }
        offsets::commit(
            &self.meta,
            &self.topics,
            &commit.group,
            &commit.offsets,
            self.clock.now_ms(),
        )
        .await?;
        if let Some(mirror) = mirror {
            let epoch = mirror.local_epoch(&commit.group);
            let mut waits = Vec::new();
            for position in &commit.offsets {
                if mirror.rules_for(&position.topic).is_empty() {
                    continue;
                }
                let Ok(topic) = self.topics.get(&position.topic) else {
                    continue;
                };
                let incarnation = topic.incarnation().0;
                let Some(vector) = offsets::committed_vector(
                    &self.meta,
                    &commit.group,
                    &position.topic,
                    position.partition,
                    incarnation,
                ) else {
                    continue;
                };
                let key = PartitionKey {
                    topic: position.topic.clone(),
                    incarnation,
                    partition: position.partition,
                };
                let id = mirror.forward_commit(key.clone(), &commit.group, vector, epoch);
                waits.push((key, id));
            }
            for (key, id) in waits {
                mirror.wait_commit_forwarded(&key, id).await;
            }
        }
        Ok(Reply::Committed)
    }

    /// A heartbeat, for callers outside the dispatcher (tests).
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Response {
        self.check_not_fenced(&heartbeat.group, &heartbeat.member_id)?;
        self.groups.heartbeat(heartbeat).await
    }
}
