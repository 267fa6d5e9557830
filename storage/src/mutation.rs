//! A deliberate bug, compiled only with the `mutation` feature (which only
//! meshgate-sim enables) and off until switched on: the simulation's
//! mutation check (sim/tests/scenarios.rs, `MESHGATE_SIM_MUTATION`) turns
//! it on to show that the invariants catch a broken log. Not part of the
//! API.
//!
//! The switch is per thread: a simulation runs every host on the thread
//! that steps it, so one test's mutation never leaks into another's run.

use std::cell::Cell;

thread_local! {
    static DUPLICATES_KEPT: Cell<bool> = const { Cell::new(false) };
}

/// Mirrored records this log already holds are appended again as new ones
/// instead of dropped ([`crate::log::Log::append_batch`] forgets that it
/// holds them), on this thread.
pub fn keep_duplicates(on: bool) {
    DUPLICATES_KEPT.with(|flag| flag.set(on));
}

/// Whether [`keep_duplicates`] is on for this thread.
pub fn duplicates_kept() -> bool {
    DUPLICATES_KEPT.with(Cell::get)
}
