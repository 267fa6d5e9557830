//! The consumer-group coordinator: Kafka's classic group membership
//! protocol (join, sync, heartbeat, leave, session and rebalance timeouts),
//! shared by native clients and, later, Kafka clients.
//!
//! # Layout
//! - [`Coordinator`] (`coordinator.rs`): the sans-IO state machine of every
//!   group of the node: `handle_*` inputs with the time as an argument,
//!   `poll_output` / `poll_timeout` outputs.
//! - `group/`: one group's states (`Empty`, `PreparingRebalance`,
//!   `CompletingRebalance`, `Stable`) and transitions: the join phase and
//!   timeouts (`mod.rs`), requests of members already in (`requests.rs`).
//! - [`assignor`]: Kafka's range and round-robin assignors, for groups whose
//!   assignment the node computes.
//! - [`GroupCoordinator`] (`driver.rs`): the async shell: a mutex around the
//!   machine, a tokio timer task, one oneshot per long-lived request.
//! - [`GroupConfig`] (`config.rs`), [`GroupError`] (`error.rs`), shared
//!   types and views (`types.rs`), state-machine tests on a virtual clock
//!   (`tests.rs`).
//!
//! Events are logged under the tracing target `meshgate::gateway::groups`.
//!
//! # Two ways to assign
//! The listener a join comes through picks the [`AssignmentMode`]:
//! - [`AssignmentMode::Node`] (native clients): members offer `range`
//!   and/or `roundrobin` with `encode_subscription(topics)` as metadata. At
//!   the end of the join phase the coordinator assigns the partitions
//!   itself, from the group's snapshot of partition counts (taken from the
//!   [`PartitionCounts`] passed with each join and with
//!   [`Coordinator::handle_metadata_changed`]), and the group is stable at
//!   once: a sync answers `encode_assignment(partitions)` immediately.
//! - [`AssignmentMode::Leader`] (Kafka clients): protocols are opaque; the
//!   leader's join answer lists every member's metadata, the group waits in
//!   `CompletingRebalance` for the leader's sync with every assignment,
//!   then answers every member's sync.
//!
//! A group keeps the mode of its first member until it is empty again; a
//! join in the other mode gets `InconsistentProtocol`.
//!
//! # Driving the state machine
//! ```
//! use std::collections::BTreeMap;
//! use std::time::{Duration, Instant};
//! use meshgate_gateway::groups::*;
//! use meshgate_protocol::*;
//!
//! # #[allow(clippy::disallowed_methods)] // a doc example needs some origin for its virtual clock
//! let start = Instant::now();
//! let mut coordinator = Coordinator::new(GroupConfig::default(), 1).unwrap();
//! let counts = BTreeMap::from([("orders".to_string(), 3)]);
//! let join = JoinGroup {
//!     group: "billing".into(),
//!     member_id: None,
//!     client_id: "worker".into(),
//!     session_timeout_ms: 10_000,
//!     rebalance_timeout_ms: 30_000,
//!     protocols: vec![GroupProtocol {
//!         name: "range".into(),
//!         metadata: encode_subscription(&["orders".to_string()]),
//!     }],
//! };
//! coordinator.handle_join(start, RequestToken(1), join, AssignmentMode::Node, &counts);
//! assert!(coordinator.poll_output().is_none()); // waits for more members
//! let deadline = coordinator.poll_timeout().unwrap(); // the initial delay
//! assert_eq!(deadline, start + Duration::from_millis(300));
//! coordinator.handle_timeout(deadline);
//! let (token, response) = coordinator.poll_output().unwrap();
//! let Ok(Reply::Joined(joined)) = response else { panic!() };
//! assert_eq!((token, joined.generation), (RequestToken(1), 1));
//!
//! let sync = SyncGroup {
//!     group: "billing".into(),
//!     generation: 1,
//!     member_id: joined.member_id,
//!     assignments: vec![],
//! };
//! coordinator.handle_sync(deadline, RequestToken(2), sync);
//! let (_, response) = coordinator.poll_output().unwrap();
//! let Ok(Reply::Synced(bytes)) = response else { panic!() };
//! let partitions = decode_assignment(&bytes).unwrap();
//! assert_eq!(partitions[0].partitions, vec![0, 1, 2]);
//! ```

pub mod assignor;
mod config;
mod coordinator;
mod driver;
mod error;
mod group;
mod types;

pub use assignor::{Assignor, PartitionCounts};
pub use config::{
    CLIENT_ID_BYTES_MAX, GROUP_NAME_BYTES_MAX, GroupConfig, GroupConfigError,
    PROTOCOL_NAME_BYTES_MAX, PROTOCOLS_PER_MEMBER_MAX,
};
pub use coordinator::Coordinator;
pub use driver::GroupCoordinator;
pub use error::GroupError;
pub use types::{
    AssignmentMode, GroupDetails, GroupState, GroupStats, MemberDetails, RequestToken,
};

#[cfg(test)]
mod tests;
