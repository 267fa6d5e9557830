//! Dispatch queues: a hot topic read once and routed into small
//! per-domain work queues (competing consumers, leases, acks, redelivery,
//! dead letters, delays, per-key FIFO).
//!
//! # Layout
//! Sans-IO core (time is an argument, nothing here touches files, clocks
//! or tasks):
//! - [`ack_set`]: a floor plus a compact set of done offsets above it.
//! - [`filter`]: which records a queue takes (tags, header, key prefix).
//! - [`options`]: a queue's options and limits.
//! - [`queue`]: one queue as a state machine.
//! - [`domain`]: a queue with its dead-letter queue `NAME.dlq`.
//! - [`error`]: typed errors.
//!
//! Shell (one task per dispatcher, one reconciler, one flusher):
//! - [`state_file`]: a domain's durable state, replaced atomically.
//! - [`rules`]: dispatch rules in the cluster configuration (gossip) and
//!   the reconciler that opens and removes queues.
//! - [`dispatcher`]: one per source partition, reads the log once.
//! - [`service`]: [`Queues`], the registry: receive, settle, redrive,
//!   describe, the hot-record cache, the flush policy.

pub mod ack_set;
pub mod dispatcher;
pub mod domain;
pub mod error;
pub mod filter;
pub mod options;
pub mod queue;
pub mod rules;
pub mod service;
pub mod state_file;

pub use domain::{DEAD_LETTER_SUFFIX, Domain, DomainState, Side};
pub use error::QueueError;
pub use filter::{Filter, FilterError, TagExpression};
pub use options::QueueOptions;
pub use queue::{Delivery, Incoming, LeaseId, MessageId, Queue, QueueStats};
pub use service::{Queues, QueuesConfig, ReadCounts};
