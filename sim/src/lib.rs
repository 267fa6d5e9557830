//! meshgate-sim: deterministic failure simulation. Gateways run as turmoil
//! hosts with the real node code (storage, membership, mirroring, groups,
//! dispatch queues) over simulated UDP and an in-memory disk that loses or
//! tears unsynced data on a crash; a seed reproduces a run exactly.
//!
//! # Layout
//! - [`net`]: [`TurmoilNetwork`], the node's sockets on turmoil.
//! - [`world`]: [`World`], a set of simulated gateways: start, crash,
//!   restart, look up, call.
//! - [`trace`]: [`Trace`], the timeline of a run and its hash.
//! - [`faults`]: partitions, holds, loss, latency, crashes and restarts.
//! - [`check`]: the invariants and the [`Ledger`] of what clients wrote.
//! - [`client`]: what simulated clients do (produce, groups, topics).
//! - [`scenario`]: the [`Scenario`] list; [`scenarios`]: their code.
//! - [`run`]: running one seed or many, catching panics.
//!
//! The `meshgate-sim` binary (also `meshgate sim`) lists and runs them.
#![deny(missing_docs)]

pub mod check;
pub mod client;
pub mod faults;
pub mod net;
pub mod run;
pub mod scenario;
pub mod scenarios;
pub mod trace;
pub mod world;

pub use check::{Ledger, Violation};
pub use faults::{Fault, Faults};
pub use net::TurmoilNetwork;
pub use run::{Outcome, run_many, run_seed};
pub use scenario::{ALL, Scenario};
pub use trace::Trace;
pub use world::{NodeSpec, World, within};
