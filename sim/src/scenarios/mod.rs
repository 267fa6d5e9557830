//! The scenarios' code. Each is an async function of a [`Context`] that
//! ends with `Ok(())` or the first [`Violation`] it saw.
//!
//! [`Context`]: crate::scenario::Context
//! [`Violation`]: crate::check::Violation

mod chaos;
mod groups;
mod mirroring;
mod queues;

pub use chaos::chaos;
pub use groups::group_failover;
pub use mirroring::{chain_origin_down, region_crash, region_partition};
pub use queues::queue_consumer_crashes;

use crate::scenario::REGIONS;

/// The topic every mirroring scenario writes.
pub(crate) const TOPIC: &str = "orders";

/// Host of `region`, one of [`REGIONS`].
pub(crate) fn host(region: &str) -> &'static str {
    REGIONS
        .iter()
        .find(|(_, r)| *r == region)
        .map(|(h, _)| *h)
        .unwrap_or_else(|| unreachable!("{region} is not one of the scenario regions"))
}

/// Hosts other than `host`.
pub(crate) fn others(host: &str) -> Vec<&'static str> {
    REGIONS
        .iter()
        .map(|(h, _)| *h)
        .filter(|h| *h != host)
        .collect()
}
