//! meshgate-sim: deterministic failure simulation. Gateways run as turmoil
//! hosts with the real node code (storage, membership, mirroring, groups)
//! over simulated UDP and an in-memory disk that loses unsynced data on a
//! crash; a seed reproduces a run exactly.
//!
//! # Layout
//! - [`net`]: [`TurmoilNetwork`], the node's sockets on turmoil.
//! - [`world`]: [`World`], a set of simulated gateways: start, crash,
//!   restart, look up.
//! - [`trace`]: [`Trace`], the timeline of a run and its hash.
#![deny(missing_docs)]

pub mod net;
pub mod trace;
pub mod world;

pub use net::TurmoilNetwork;
pub use trace::Trace;
pub use world::{NodeSpec, World, within};
