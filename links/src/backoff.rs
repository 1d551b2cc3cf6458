//! How long a link waits before it tries to connect again.
//!
//! Owns: capped exponential backoff with jitter, as a pure function so it is
//! tested without a clock. Does not own: counting failures (`link`).

use std::time::Duration;

/// Doublings after which the delay no longer grows before the cap applies:
/// prevents `2^failures` from overflowing after days of failures.
const DOUBLINGS_MAX: u32 = 20;

/// The delay before reconnect attempt number `failures + 1`.
///
/// The delay doubles from `min` per failure up to `max`; then "equal jitter"
/// picks it in `[delay/2, delay]` using `random`, so links of many daemons
/// cut off by one broker restart do not all come back in the same instant.
pub fn reconnect_delay(failures: u32, min: Duration, max: Duration, random: u64) -> Duration {
    let max = max.max(min);
    let grown = min.saturating_mul(1u32 << failures.min(DOUBLINGS_MAX));
    let ceiling = grown.min(max);
    let half = ceiling / 2;
    let spread_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if spread_nanos == 0 {
        0
    } else {
        random % (spread_nanos + 1)
    };
    (half + Duration::from_nanos(jitter)).min(max)
}

/// A random number for jitter; the OS source failing only costs jitter.
pub fn jitter_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0;
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn the_delay_doubles_per_failure_within_its_jitter_band() {
        for failures in 0..6 {
            let ceiling = MIN * (1 << failures);
            assert_eq!(reconnect_delay(failures, MIN, MAX, 0), ceiling / 2);
            let spread = u64::try_from((ceiling / 2).as_nanos()).expect("small");
            assert_eq!(reconnect_delay(failures, MIN, MAX, spread), ceiling);
            let mid = reconnect_delay(failures, MIN, MAX, 12_345_678);
            assert!(
                mid >= ceiling / 2 && mid <= ceiling,
                "{mid:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn the_delay_never_exceeds_the_cap_even_after_endless_failures() {
        for failures in [7, 8, 20, 21, 1_000, u32::MAX] {
            for random in [0, 1, 999_999_999, u64::MAX] {
                let delay = reconnect_delay(failures, MIN, MAX, random);
                assert!(
                    delay <= MAX && delay >= MAX / 2,
                    "{failures} failures gave {delay:?}"
                );
            }
        }
    }

    #[test]
    fn a_cap_below_the_minimum_is_raised_to_the_minimum() {
        let delay = reconnect_delay(3, Duration::from_secs(2), Duration::from_secs(1), 0);
        assert_eq!(delay, Duration::from_secs(1));
    }
}
