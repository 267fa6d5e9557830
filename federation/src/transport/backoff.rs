//! Bounded exponential backoff with seeded jitter (sans-IO: the caller
//! passes the RNG and sleeps).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::error::TransportError;

/// How a link waits between connection attempts.
///
/// The n-th consecutive failure waits `initial_backoff_ms * 2^(n-1)`, capped
/// at `max_backoff_ms`, then shortened by a random fraction of up to
/// `jitter_percent` so peers that failed together do not retry together.
/// The wait is therefore always within
/// `[cap * (100 - jitter_percent) / 100, cap]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackoffConfig {
    /// Wait after the first failure, in milliseconds. Default 200; 1 ..=
    /// `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Longest wait, in milliseconds. Default 10 000; at most 3 600 000.
    pub max_backoff_ms: u64,
    /// Largest share of a wait removed at random, in percent. Default 20;
    /// 0 ..= 100.
    pub jitter_percent: u8,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            jitter_percent: 20,
        }
    }
}

/// Upper bound of `max_backoff_ms`: one hour.
const BACKOFF_MS_MAX: u64 = 3_600_000;

impl BackoffConfig {
    /// Checks the documented ranges.
    pub fn validate(&self) -> Result<(), TransportError> {
        let fail = |reason: String| Err(TransportError::InvalidLimits { reason });
        if self.max_backoff_ms > BACKOFF_MS_MAX {
            return fail(format!("max_backoff_ms above {BACKOFF_MS_MAX}"));
        }
        if !(1..=self.max_backoff_ms).contains(&self.initial_backoff_ms) {
            return fail("initial_backoff_ms not in 1..=max_backoff_ms".into());
        }
        if self.jitter_percent > 100 {
            return fail("jitter_percent above 100".into());
        }
        Ok(())
    }

    /// The cap of the wait after `failures` consecutive failures (at least
    /// 1), before jitter.
    pub fn ceiling(&self, failures: u32) -> Duration {
        assert!(failures >= 1, "a backoff follows at least one failure");
        // 2^63 overflows any sane initial value; the cap is reached long
        // before, so saturate the exponent.
        let doublings = (failures - 1).min(62);
        let ms = self
            .initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }

    /// The wait after `failures` consecutive failures, jittered with `rng`.
    pub fn delay(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(failures);
        // `ceiling` was built from a u64 of milliseconds, so it fits one.
        let ms = u64::try_from(ceiling.as_millis()).expect("ceiling fits u64 milliseconds");
        let jitter_ms_max = ms * u64::from(self.jitter_percent) / 100;
        let jitter_ms = if jitter_ms_max == 0 {
            0
        } else {
            rng.random_range(0..=jitter_ms_max)
        };
        Duration::from_millis(ms - jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn backoff_doubles_until_the_cap() {
        let config = BackoffConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            jitter_percent: 0,
        };
        let waits: Vec<u128> = (1..=6).map(|n| config.ceiling(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(config.ceiling(u32::MAX).as_millis(), 1_000);
    }

    #[test]
    fn jitter_stays_within_its_share_and_repeats_with_the_seed() {
        let config = BackoffConfig {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 1_000,
            jitter_percent: 20,
        };
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..100)
                .map(|_| config.delay(3, &mut rng))
                .collect::<Vec<_>>()
        };
        let waits = draw(9);
        assert!(
            waits
                .iter()
                .all(|wait| (800..=1_000).contains(&wait.as_millis()))
        );
        assert!(waits.iter().any(|wait| wait.as_millis() < 1_000));
        assert_eq!(waits, draw(9));
    }

    #[test]
    fn backoff_config_rejects_an_initial_wait_above_the_cap() {
        let config = BackoffConfig {
            initial_backoff_ms: 5_000,
            max_backoff_ms: 1_000,
            jitter_percent: 0,
        };
        assert!(config.validate().is_err());
    }
}
