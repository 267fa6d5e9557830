//! meshgate-gateway: one gateway node: topics and their partition logs,
//! producers, consumer groups, the client listener, admin HTTP, metrics,
//! configuration, and the `meshgate` command line.
//!
//! # Layout
//! - [`groups`]: the consumer-group coordinator (sans-IO state machine and
//!   its async driver).
#![deny(missing_docs)]

pub mod groups;
