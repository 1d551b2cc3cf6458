//! The real broker's send rate limit: one token bucket per member.
//!
//! Owns: `RateLimit`, the bucket arithmetic (a pure function of the time
//! passed in), the buckets by member and the rejection text. Does not own:
//! when a send is checked (`ledger` checks every send frame first) or the
//! clock (the caller passes milliseconds).
//!
//! The real broker (`apps/broker/src/rate-limit.ts`) keeps fractional
//! tokens, refills continuously at `per_minute / 60000` tokens a
//! millisecond up to `burst`, and only takes a token when at least one is
//! there: a rejected send takes nothing, every other send takes one, even
//! one rejected later for another reason.

use super::options::OptionError;
use std::collections::HashMap;
use std::str::FromStr;

/// A token bucket's size and refill rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per minute, spread evenly over the minute.
    pub per_minute: u32,
    /// The bucket's capacity: sends a full bucket lets through at once.
    pub burst: u32,
}

impl RateLimit {
    /// The real broker's limit: 60 sends a minute, burst 10.
    pub const REAL: RateLimit = RateLimit {
        per_minute: 60,
        burst: 10,
    };

    /// The ack error of a rate-limited send, verbatim as the real broker's.
    pub fn rejection(self) -> String {
        format!(
            "rate_limit: max {} msg/min (burst {}) — slow down",
            self.per_minute, self.burst
        )
    }
}

impl FromStr for RateLimit {
    type Err = OptionError;

    /// `PER_MINUTE/BURST`, e.g. `60/10`.
    fn from_str(text: &str) -> Result<RateLimit, OptionError> {
        let invalid = || OptionError::RateLimit(text.to_string());
        let (per_minute, burst) = text.split_once('/').ok_or_else(invalid)?;
        let per_minute = per_minute.trim().parse().map_err(|_| invalid())?;
        let burst: u32 = burst.trim().parse().map_err(|_| invalid())?;
        if burst == 0 {
            return Err(invalid());
        }
        Ok(RateLimit { per_minute, burst })
    }
}

/// One member's bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    tokens: f64,
    last_refill_ms: u64,
}

impl Bucket {
    /// A new member starts with a full bucket.
    pub(crate) fn full(limit: RateLimit, now_ms: u64) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst),
            last_refill_ms: now_ms,
        }
    }

    /// Refills for the time since the last refill, then takes a token if
    /// there is a whole one. `false`: rate-limited, nothing taken.
    pub(crate) fn take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        let elapsed_ms = now_ms.saturating_sub(self.last_refill_ms);
        if elapsed_ms > 0 {
            let refill = elapsed_ms as f64 * f64::from(limit.per_minute) / 60_000.0;
            self.tokens = (self.tokens + refill).min(f64::from(limit.burst));
            self.last_refill_ms = now_ms;
        }
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Every member's bucket, keyed by (mesh id, member key): a session link
/// counts as its parent member, so a member's daemon link and all its
/// session links share one bucket, as on the real broker.
///
/// The map grows by one entry per member ever seen; a test broker meets few.
#[derive(Default)]
pub(crate) struct Buckets {
    by_member: HashMap<(String, String), Bucket>,
}

impl Buckets {
    /// Whether the member may send now (taking a token if so).
    pub(crate) fn take(
        &mut self,
        mesh_id: &str,
        member_pubkey: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> bool {
        let key = (mesh_id.to_string(), member_pubkey.to_ascii_lowercase());
        self.by_member
            .entry(key)
            .or_insert_with(|| Bucket::full(limit, now_ms))
            .take(limit, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends accepted out of `count` sent at `at_ms`.
    fn burst(bucket: &mut Bucket, limit: RateLimit, count: u32, at_ms: u64) -> u32 {
        (0..count).filter(|_| bucket.take(limit, at_ms)).count() as u32
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_refuses() {
        let mut bucket = Bucket::full(RateLimit::REAL, 0);
        assert_eq!(burst(&mut bucket, RateLimit::REAL, 15, 0), 10);
        assert!(
            !bucket.take(RateLimit::REAL, 999),
            "under a second: no token"
        );
        assert!(bucket.take(RateLimit::REAL, 1_000), "a second refills one");
        assert!(!bucket.take(RateLimit::REAL, 1_000));
    }

    #[test]
    fn refusals_take_nothing_so_a_retry_after_refill_gets_through() {
        let mut bucket = Bucket::full(RateLimit::REAL, 0);
        burst(&mut bucket, RateLimit::REAL, 10, 0);
        // Hammering an empty bucket does not push the next token further away.
        for at_ms in (0..1_000).step_by(10) {
            assert!(!bucket.take(RateLimit::REAL, at_ms));
        }
        assert!(bucket.take(RateLimit::REAL, 1_000));
    }

    #[test]
    fn refill_is_continuous_and_capped_at_the_burst() {
        let limit = RateLimit {
            per_minute: 120,
            burst: 3,
        };
        let mut bucket = Bucket::full(limit, 0);
        assert_eq!(burst(&mut bucket, limit, 3, 0), 3);
        // 120 a minute is one per 500 ms; fractions accumulate across calls.
        assert!(!bucket.take(limit, 250));
        assert!(bucket.take(limit, 500));
        assert_eq!(
            burst(&mut bucket, limit, 10, 3_600_000),
            3,
            "an hour idle refills only to the burst"
        );
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut bucket = Bucket::full(RateLimit::REAL, 10_000);
        burst(&mut bucket, RateLimit::REAL, 10, 10_000);
        assert!(!bucket.take(RateLimit::REAL, 5_000));
        assert!(bucket.take(RateLimit::REAL, 11_000));
    }

    #[test]
    fn members_have_their_own_buckets_across_meshes_and_key_case() {
        let limit = RateLimit {
            per_minute: 0,
            burst: 1,
        };
        let mut buckets = Buckets::default();
        assert!(buckets.take("m", "aa", limit, 0));
        assert!(!buckets.take("m", "AA", limit, 0), "same key, other case");
        assert!(buckets.take("m", "bb", limit, 0));
        assert!(buckets.take("n", "aa", limit, 0));
    }

    #[test]
    fn limits_parse_from_flags_and_name_the_real_text() {
        assert_eq!("60/10".parse(), Ok(RateLimit::REAL));
        assert_eq!(
            RateLimit::REAL.rejection(),
            "rate_limit: max 60 msg/min (burst 10) — slow down"
        );
        for bad in ["60", "60/0", "x/10", "-1/10", ""] {
            let error = bad.parse::<RateLimit>().expect_err(bad).to_string();
            assert!(error.contains("PER_MINUTE/BURST"), "{error}");
        }
    }
}
