//! The membership layer's error type.

use meshgate_storage::NameError;

use super::cluster_config::ConfigKeyError;

/// What can go wrong in membership. Each variant says what it did to state.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The configuration breaks a limit. Returned before anything is built;
    /// no state exists.
    #[error("invalid membership configuration: {reason}")]
    InvalidConfig {
        /// Which field and limit.
        reason: String,
    },
    /// A node id or region name is invalid. No state changed.
    #[error("invalid name")]
    InvalidName(#[source] NameError),
    /// A configuration key is invalid. The change was not applied or sent.
    #[error("invalid configuration key")]
    InvalidConfigKey(#[source] ConfigKeyError),
    /// A configuration change, once encoded, is larger than
    /// `broadcast_item_bytes_max`. Not applied or sent.
    #[error("configuration change is {bytes} bytes encoded; the limit is {bytes_max}")]
    ConfigChangeTooLarge {
        /// Encoded size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The configuration table holds `config_entries_max` keys and this one
    /// is new. Not applied or sent.
    #[error("configuration table is full")]
    ConfigTableFull,
    /// The metadata, once encoded, is larger than
    /// `broadcast_item_bytes_max`. The previous metadata stays in effect.
    #[error("member metadata is {bytes} bytes encoded; the limit is {bytes_max}")]
    MetadataTooLarge {
        /// Encoded size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// This node has left the cluster; it neither publishes nor announces.
    /// No state changed.
    #[error("this node has left the cluster")]
    Left,
    /// foca refused an operation. Its documentation per variant says what
    /// that did to its state; the ones reachable here (`DataTooBig`,
    /// `Encode`) leave it unchanged for broadcasts and announces.
    #[error("SWIM state machine error")]
    Swim(#[source] foca::Error),
    /// The gossip socket failed to receive. The driver stopped; membership
    /// state is kept in the dropped core and lost.
    #[error("gossip socket failed")]
    Socket(#[source] std::io::Error),
    /// The driver is no longer running (it left, failed or was aborted). No
    /// state changed.
    #[error("membership driver is not running")]
    Stopped,
}
