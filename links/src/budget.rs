//! A mirror of the broker's send budget: one token bucket per member, as the
//! real broker keeps it, so the drain can see an empty bucket coming instead
//! of sending into it (a rejected send spends nothing but keeps it empty).
//!
//! Owns: the bucket arithmetic (capacity `burst`, continuous refill of
//! `per_minute` a minute, starts full), taking a token per send frame,
//! emptying it when the broker says it is empty, and `MeshBudget`, what the
//! host reads. Does not own: deciding to wait for a token (the policy does)
//! or which sends happen (`connection` takes a token per frame it writes).
//!
//! `TokenBucket` is pure: every call gets the time passed in. Amounts are
//! whole integers, exact: one token is `UNITS_PER_TOKEN` units and every
//! nanosecond adds `per_minute` units, so a minute adds `per_minute` tokens
//! with no rounding drift.

use crate::config::LinkState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Nanoseconds in a minute: the units one token is made of, so a refill of
/// `per_minute` tokens a minute is `per_minute` units a nanosecond.
const UNITS_PER_TOKEN: u128 = 60_000_000_000;

const NANOS_PER_MILLI: u128 = 1_000_000;

/// What `next_token_in` says for a bucket that never refills (`per_minute`
/// or `burst` zero): the longest a real refill takes, so a caller that sleeps
/// on it looks again once a minute instead of overflowing a deadline.
pub const REFILL_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long a member configured as unlimited (`per_minute` 0) sends nothing
/// after the broker refused it for its rate anyway: about what the real
/// broker takes to refill a token. Without it every due row would be sent and
/// refused in turn, as fast as the drain can claim them.
pub const UNLIMITED_REFUSED_PAUSE: Duration = Duration::from_secs(1);

/// One member's send budget on one broker, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshBudget {
    pub slug: String,
    /// The state of the mesh's daemon link.
    pub state: LinkState,
    /// Whole tokens now; `u32::MAX` for an unlimited member (unless paused
    /// after a refusal: then 0).
    pub tokens: u32,
    /// Time until the next whole token, rounded up to the millisecond (a send
    /// a hair early would be rejected); `ZERO` when `tokens >= 1`.
    pub next_token_in: Duration,
    pub per_minute: u32,
    pub burst: u32,
}

/// The broker's token bucket for one member, mirrored.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_minute: u32,
    burst: u32,
    /// Tokens in units (`UNITS_PER_TOKEN` each), at most `capacity()`.
    units: u128,
    /// When `units` was last brought up to date.
    at: Instant,
    /// An unlimited bucket the broker refused anyway sends nothing before this.
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket, as the broker starts one.
    pub fn new(per_minute: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            per_minute,
            burst,
            units: u128::from(burst) * UNITS_PER_TOKEN,
            at: now,
            paused_until: None,
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// A send frame goes out: takes a token if there is one. Without one the
    /// broker rejects the send without taking anything, and so does this.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            true
        } else {
            false
        }
    }

    /// The broker said the bucket is empty (a `rate_limit` rejection): it is,
    /// now, whatever the mirror thought. A bucket without a refill rate (the
    /// member was configured as unlimited, wrongly) pauses for
    /// `UNLIMITED_REFUSED_PAUSE` instead.
    pub fn empty(&mut self, now: Instant) {
        if self.per_minute == 0 {
            self.paused_until = Some(now + UNLIMITED_REFUSED_PAUSE);
            return;
        }
        self.refill(now);
        self.units = 0;
    }

    /// For a bucket without a refill rate: how long it still pauses after a
    /// refusal (`ZERO`: it may send).
    pub fn paused_for(&self, now: Instant) -> Duration {
        self.paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Whole tokens now.
    pub fn tokens(&mut self, now: Instant) -> u32 {
        self.refill(now);
        u32::try_from(self.units / UNITS_PER_TOKEN).unwrap_or(u32::MAX)
    }

    /// Time until the next whole token, rounded up to the millisecond;
    /// `ZERO` when one is there now.
    pub fn next_token_in(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.units >= UNITS_PER_TOKEN {
            return Duration::ZERO;
        }
        if self.per_minute == 0 || self.burst == 0 {
            return REFILL_WAIT_MAX;
        }
        let missing = UNITS_PER_TOKEN - self.units;
        let nanos = missing.div_ceil(u128::from(self.per_minute));
        let millis = nanos.div_ceil(NANOS_PER_MILLI);
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).min(REFILL_WAIT_MAX)
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * UNITS_PER_TOKEN
    }

    /// Adds what flowed in since `at`. A `now` before `at` (callers racing
    /// on the lock with slightly older readings) adds nothing.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        if elapsed == 0 {
            return;
        }
        let added = elapsed.saturating_mul(u128::from(self.per_minute));
        self.units = self.units.saturating_add(added).min(self.capacity());
        self.at = now;
    }
}

/// One mesh's bucket, shared by its daemon link, its session links and the
/// registry. std's Mutex: held for a few integer operations, never across an
/// await.
#[derive(Clone, Debug)]
pub(crate) struct Budget(Arc<Mutex<TokenBucket>>);

impl Budget {
    pub(crate) fn new(per_minute: u32, burst: u32) -> Budget {
        Budget(Arc::new(Mutex::new(TokenBucket::new(
            per_minute,
            burst,
            now(),
        ))))
    }

    /// Takes a token for one send about to be written; false when the
    /// budget has none (then the send is not written). A budget with no
    /// refill rate is no limit at all.
    pub(crate) fn take_one(&self) -> bool {
        let now = now();
        let mut bucket = self.lock();
        if bucket.per_minute() == 0 {
            return bucket.paused_for(now).is_zero();
        }
        bucket.take(now)
    }

    pub(crate) fn empty(&self) {
        self.lock().empty(now());
    }

    /// `(tokens, next_token_in, per_minute, burst)` now; an unlimited
    /// bucket has `u32::MAX` tokens, or none while paused.
    pub(crate) fn read(&self) -> (u32, Duration, u32, u32) {
        let now = now();
        let mut bucket = self.lock();
        if bucket.per_minute() == 0 {
            let paused = bucket.paused_for(now);
            let tokens = if paused.is_zero() { u32::MAX } else { 0 };
            return (tokens, paused, 0, bucket.burst());
        }
        let tokens = bucket.tokens(now);
        let next = bucket.next_token_in(now);
        (tokens, next, bucket.per_minute(), bucket.burst())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // The bucket is valid after any panic: every update is one store.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// tokio's clock, so tests with paused time see the bucket refill as time
/// is advanced.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
