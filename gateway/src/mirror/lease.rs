//! Group leases: which region consumes a consumer group of mirrored topics.
//! The region where a group's first member joins takes the lease
//! `group-lease/<group>` with the next epoch; a region that sees the lease
//! held elsewhere fences its members; commits carry the epoch and a
//! forwarded commit of an older epoch is ignored.

use meshgate_protocol::decode_subscription;
use serde::{Deserialize, Serialize};

use super::Mirror;

/// The cluster-configuration key prefix of group leases.
pub(super) const LEASE_KEY_PREFIX: &str = "group-lease/";

/// Who consumes a group, since which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLease {
    /// The region holding it.
    pub region: String,
    /// Grows with every move.
    pub epoch: u64,
}

impl Mirror {
    /// The group's lease as last seen.
    pub fn lease(&self, group: &str) -> Option<GroupLease> {
        self.state.lock().leases.get(group).cloned()
    }

    /// True when a member joining with this subscription metadata consumes
    /// a topic that a rule mirrors with this region (such groups take leases).
    pub fn subscription_is_mirrored(&self, metadata: &[u8]) -> bool {
        decode_subscription(metadata)
            .is_some_and(|topics| topics.iter().any(|topic| !self.rules_for(topic).is_empty()))
    }

    /// Takes the group's lease for this region unless it already holds it;
    /// returns the epoch this region's commits carry.
    pub async fn acquire_lease(&self, group: &str) -> u64 {
        let key = format!("{LEASE_KEY_PREFIX}{group}");
        let entries = self
            .cluster
            .membership()
            .config_entries()
            .await
            .unwrap_or_default();
        let current = entries
            .iter()
            .find(|entry| entry.key == key)
            .and_then(|entry| rmp_serde::from_slice::<GroupLease>(entry.value.as_deref()?).ok());
        if let Some(lease) = &current
            && lease.region == self.region.as_str()
        {
            self.state
                .lock()
                .leases
                .insert(group.to_string(), lease.clone());
            return lease.epoch;
        }
        let lease = GroupLease {
            region: self.region.to_string(),
            epoch: current.map_or(1, |lease| lease.epoch + 1),
        };
        match rmp_serde::to_vec_named(&lease) {
            Ok(value) => {
                if let Err(error) = self.cluster.publish_config(key, Some(value)).await {
                    tracing::warn!(target: "meshgate::mirror", %group, %error, "group lease not published");
                }
            }
            Err(error) => {
                tracing::warn!(target: "meshgate::mirror", %group, %error, "group lease not encoded")
            }
        }
        tracing::info!(target: "meshgate::mirror", %group, epoch = lease.epoch, "this region now consumes the group");
        let epoch = lease.epoch;
        self.state.lock().leases.insert(group.to_string(), lease);
        epoch
    }

    /// The epoch commits made here carry (0 when this region holds no lease).
    pub fn local_epoch(&self, group: &str) -> u64 {
        match self.lease(group) {
            Some(lease) if lease.region == self.region.as_str() => lease.epoch,
            _ => 0,
        }
    }

    /// True when another region holds the group's lease.
    pub fn held_elsewhere(&self, group: &str) -> bool {
        self.lease(group)
            .is_some_and(|lease| lease.region != self.region.as_str())
    }

    /// Whether a forwarded commit stamped with `epoch` may be applied.
    pub fn commit_epoch_current(&self, group: &str, epoch: u64) -> bool {
        self.lease(group).is_none_or(|lease| epoch >= lease.epoch)
    }
}
