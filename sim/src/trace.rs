//! The timeline of a run: faults and key events with their simulated time.
//! Two runs of one seed give the same trace, so its hash tells whether a
//! run reproduced.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// A shared, append-only timeline.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Appends an event at simulated time `at`.
    pub fn record(&self, at: Duration, event: impl Into<String>) {
        let line = format!("{:>9.3}s {}", at.as_secs_f64(), event.into());
        self.lines.lock().push(line);
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().clone()
    }

    /// SHA-256 of the timeline, as hex.
    pub fn hash(&self) -> String {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for line in self.lines.lock().iter() {
            context.update(line.as_bytes());
            context.update(b"\n");
        }
        let mut hex = String::new();
        for byte in context.finish().as_ref() {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}
