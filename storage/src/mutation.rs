//! A deliberate bug, off unless a test turns it on: the simulation's
//! mutation check (sim/tests/mutation.rs) turns it on to show that the
//! invariants catch a broken log. Not part of the API.
//!
//! The switch is per thread: a simulation runs every host on the thread
//! that steps it, so one test's mutation never leaks into another's run.

use std::cell::Cell;

thread_local! {
    static DUPLICATES_KEPT: Cell<bool> = const { Cell::new(false) };
}

/// Mirrored records this log already holds are appended again as new ones,
/// instead of dropped (the contiguity check of
/// [`crate::log::Log::append_batch`] is skipped), on this thread.
pub fn keep_duplicates(on: bool) {
    DUPLICATES_KEPT.with(|flag| flag.set(on));
}

/// Whether [`keep_duplicates`] is on for this thread.
pub fn duplicates_kept() -> bool {
    DUPLICATES_KEPT.with(Cell::get)
}
