//! Coordinator configuration and the fixed limits. Every field documents
//! its unit, default and limits; [`GroupConfig::validate`] checks them.

use serde::{Deserialize, Serialize};

/// Longest group name, in bytes (names follow the shared naming rule of
/// `meshgate_storage::validate_name`).
pub const GROUP_NAME_BYTES_MAX: usize = 255;
/// Longest client id, in bytes. Member ids are `<client id>-<n>`, so this
/// also bounds member ids (plus 21 bytes).
pub const CLIENT_ID_BYTES_MAX: usize = 255;
/// Most assignment protocols one member may offer.
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 16;
/// Longest protocol name, in bytes.
pub const PROTOCOL_NAME_BYTES_MAX: usize = 255;

/// The coordinator's configuration.
///
/// Memory is bounded by `groups_max * members_per_group_max *
/// (metadata_bytes_max + assignment_bytes_max)` in the worst case; the
/// defaults keep a typical deployment (hundreds of groups of a handful of
/// members with small subscriptions) in the low megabytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Most groups the coordinator holds. Groups without members count too,
    /// but the longest-empty one is forgotten to make room for a new group.
    /// A join that needs a new group when all are busy gets `Busy`.
    /// Default 10 000; at least 1.
    pub groups_max: u32,
    /// Most members in one group; a further join gets `Busy`.
    /// Default 1 000; at least 1.
    pub members_per_group_max: u32,
    /// How long the first join of an empty group waits for more members
    /// before the first generation is formed, in milliseconds; each further
    /// join during that wait extends it by this much, up to the rebalance
    /// timeout. Like Kafka's `group.initial.rebalance.delay.ms`. 0 forms the
    /// generation as soon as every known member has joined.
    /// Default 300; at most 60 000.
    pub initial_rebalance_delay_ms: u32,
    /// Shortest session timeout a member may ask for, in milliseconds.
    /// Default 1 000; at least 1.
    pub session_timeout_ms_min: u32,
    /// Longest session timeout a member may ask for, in milliseconds.
    /// Default 600 000 (10 minutes); at least `session_timeout_ms_min`.
    pub session_timeout_ms_max: u32,
    /// Shortest rebalance timeout a member may ask for, in milliseconds.
    /// Default 1 000; at least 1.
    pub rebalance_timeout_ms_min: u32,
    /// Longest rebalance timeout a member may ask for, in milliseconds.
    /// Default 1 800 000 (30 minutes); at least `rebalance_timeout_ms_min`.
    pub rebalance_timeout_ms_max: u32,
    /// Most metadata bytes one member may send, summed over its protocols.
    /// Default 65 536; at least 64.
    pub metadata_bytes_max: u32,
    /// Most assignment bytes a leader may set for one member.
    /// Default 65 536; at least 64.
    pub assignment_bytes_max: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            groups_max: 10_000,
            members_per_group_max: 1_000,
            initial_rebalance_delay_ms: 300,
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 600_000,
            rebalance_timeout_ms_min: 1_000,
            rebalance_timeout_ms_max: 1_800_000,
            metadata_bytes_max: 64 * 1024,
            assignment_bytes_max: 64 * 1024,
        }
    }
}

/// A configuration value out of its limits. Nothing is built from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("groups.{field}: {problem}")]
pub struct GroupConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl GroupConfig {
    /// Checks every field against its documented limits.
    pub fn validate(&self) -> Result<(), GroupConfigError> {
        let at_least = |field: &'static str, value: u32, min: u32| {
            if value < min {
                Err(GroupConfigError {
                    field,
                    problem: format!("{value} is below the minimum of {min}"),
                })
            } else {
                Ok(())
            }
        };
        at_least("groups_max", self.groups_max, 1)?;
        at_least("members_per_group_max", self.members_per_group_max, 1)?;
        at_least("session_timeout_ms_min", self.session_timeout_ms_min, 1)?;
        at_least(
            "session_timeout_ms_max",
            self.session_timeout_ms_max,
            self.session_timeout_ms_min,
        )?;
        at_least("rebalance_timeout_ms_min", self.rebalance_timeout_ms_min, 1)?;
        at_least(
            "rebalance_timeout_ms_max",
            self.rebalance_timeout_ms_max,
            self.rebalance_timeout_ms_min,
        )?;
        at_least("metadata_bytes_max", self.metadata_bytes_max, 64)?;
        at_least("assignment_bytes_max", self.assignment_bytes_max, 64)?;
        if self.initial_rebalance_delay_ms > 60_000 {
            return Err(GroupConfigError {
                field: "initial_rebalance_delay_ms",
                problem: format!(
                    "{} is above the maximum of 60000",
                    self.initial_rebalance_delay_ms
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_inverted_bounds_are_named() {
        assert_eq!(GroupConfig::default().validate(), Ok(()));
        let config = GroupConfig {
            session_timeout_ms_min: 5_000,
            session_timeout_ms_max: 4_000,
            ..GroupConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "session_timeout_ms_max");
        assert_eq!(
            error.to_string(),
            "groups.session_timeout_ms_max: 4000 is below the minimum of 5000"
        );
    }

    #[test]
    fn partial_toml_takes_defaults_for_missing_fields() {
        let config: GroupConfig = toml::from_str("groups_max = 7").expect("parses");
        assert_eq!(config.groups_max, 7);
        assert_eq!(config.initial_rebalance_delay_ms, 300);
        assert!(toml::from_str::<GroupConfig>("group_max = 7").is_err());
    }
}
