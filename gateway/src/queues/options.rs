//! A queue's options: leases, attempts, delay, ordering and limits. The
//! type lives in the protocol crate, since rules travel on the wire, in
//! gossip and in the configuration file alike.

pub use meshgate_protocol::queues::{BACKLOG_MAX_LIMIT, QueueOptions, VISIBILITY_MS_MAX};
