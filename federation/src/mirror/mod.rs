//! Cross-region mirroring: rules and the pull protocol between gateways.
//! The semantics and how this code implements them are in `design.md`
//! beside this file; the driver that runs pulls and serves them over the
//! node's logs lives in the gateway (`meshgate_gateway::mirror`).
//!
//! # Layout
//! - [`rules`]: the rules ([`MirrorRule`]: topic pattern, regions, topology, filter)
//!   and which regions a region pulls from.
//! - [`protocol`]: the messages of a pull stream.

pub mod protocol;
pub mod rules;

pub use protocol::{
    CommitForward, PULL_FRAME_BYTES_MAX, PULL_PROTOCOL_VERSION, PullAck, PullFrame, PullRequest,
    Refusal, RefusalCode,
};
pub use rules::{MirrorFilter, MirrorRule, RULE_KEY_PREFIX, RuleError, TopicPattern, Topology};
