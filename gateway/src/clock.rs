//! The wall clock, passed in: the real one in production, one that follows
//! tokio's (possibly simulated) time in the simulation.

use std::time::{Duration, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as this node believes.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // The one place production code reads the wall clock.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }
}

/// A wall clock that advances with tokio's clock from a fixed starting
/// point, shifted by a skew: under turmoil it follows simulated time, so a
/// seed reproduces every timestamp.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
    skew_ms: i64,
}

impl TokioClock {
    /// Starts at `base_ms` now (tokio time), shifted by `skew_ms`.
    pub fn new(base_ms: u64, skew_ms: i64) -> Self {
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
            skew_ms,
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed: Duration = self.start.elapsed();
        (self.base_ms + elapsed.as_millis() as u64).saturating_add_signed(self.skew_ms)
    }
}
