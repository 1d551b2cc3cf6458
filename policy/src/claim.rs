//! How many rows a tick claims: adapted from one tick to the next by what
//! the last tick saw, free of I/O.
//!
//! A small claim keeps ticks short, so a row enqueued during one waits
//! little for the next; a large claim spreads each tick's fixed costs (the
//! claim and settle transactions, the call into the policy) over more rows.
//! So the claim starts at `batch_rows` and:
//!
//! - doubles after a tick whose claim came back full and whose sends were
//!   all acked within `batch_target_ms` (a backlog, and a broker keeping up);
//! - halves after a tick with a transport failure or timeout, a rate
//!   refusal, or rows held back for the member's budget (more rows would
//!   only wait), or one that took over twice `batch_target_ms`;
//! - after a claim that came back short (the backlog fit in it), becomes
//!   the smallest power of two that holds what was claimed: small again as
//!   soon as the backlog is.
//!
//! Always within `batch_rows..=batch_rows_max`; `batch_rows` set alone fixes
//! it. The size lives in the policy instance between ticks and depends only
//! on what earlier ticks of that instance observed through the imports, so a
//! replay of a trace from its first tick reproduces every claim. A fresh
//! instance (after a trap or a swap) starts again from `batch_rows`.

use crate::settings::Settings;
use crate::types::TimestampMs;

/// The claim size a drain loop carries from tick to tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimSize {
    /// 0 until the first tick: then `batch_rows`.
    rows: u32,
}

/// What one tick saw, for the next claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The claim's limit.
    pub limit: u32,
    /// Rows it returned.
    pub claimed: u32,
    /// A transport failure, a rate refusal or a row held for the budget.
    pub troubled: bool,
    /// From the tick's start to its sends' last answer.
    pub took_ms: TimestampMs,
}

impl ClaimSize {
    /// The limit of the next claim.
    pub fn rows(&self, settings: &Settings) -> u32 {
        let rows = if self.rows == 0 {
            settings.batch_rows
        } else {
            self.rows
        };
        rows.clamp(settings.batch_rows, settings.batch_rows_max)
    }

    /// Adapts the next claim to what the last tick saw.
    pub fn observe(&mut self, seen: Seen, settings: &Settings) {
        let rows = self.rows(settings);
        let target = settings.batch_target_ms;
        let next = if seen.troubled || seen.took_ms > target.saturating_mul(2) {
            rows / 2
        } else if seen.claimed < seen.limit {
            seen.claimed.checked_next_power_of_two().unwrap_or(u32::MAX)
        } else if seen.took_ms <= target {
            rows.saturating_mul(2)
        } else {
            rows
        };
        self.rows = next.clamp(settings.batch_rows, settings.batch_rows_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    fn full(limit: u32, took_ms: i64) -> Seen {
        Seen {
            limit,
            claimed: limit,
            troubled: false,
            took_ms,
        }
    }

    #[test]
    fn starts_at_batch_rows_and_doubles_while_full_and_quick() {
        let s = settings();
        let mut claim = ClaimSize::default();
        let mut sizes = vec![claim.rows(&s)];
        for _ in 0..10 {
            claim.observe(full(claim.rows(&s), 5), &s);
            sizes.push(claim.rows(&s));
        }
        assert_eq!(
            sizes,
            [32, 64, 128, 256, 512, 1024, 1024, 1024, 1024, 1024, 1024]
        );
    }

    #[test]
    fn a_slow_tick_stops_growth_and_a_very_slow_one_halves() {
        let s = settings();
        let mut claim = ClaimSize { rows: 1024 };
        claim.observe(full(1024, s.batch_target_ms + 1), &s);
        assert_eq!(claim.rows(&s), 1024);
        claim.observe(full(1024, s.batch_target_ms * 2 + 1), &s);
        assert_eq!(claim.rows(&s), 512);
    }

    #[test]
    fn trouble_halves_down_to_the_floor() {
        let s = settings();
        let mut claim = ClaimSize { rows: 256 };
        let troubled = Seen {
            troubled: true,
            ..full(256, 1)
        };
        let mut sizes = Vec::new();
        for _ in 0..4 {
            claim.observe(troubled, &s);
            sizes.push(claim.rows(&s));
        }
        assert_eq!(sizes, [128, 64, 32, 32]);
    }

    #[test]
    fn a_short_claim_shrinks_to_what_it_found() {
        let s = settings();
        let mut claim = ClaimSize { rows: 1024 };
        claim.observe(
            Seen {
                claimed: 300,
                ..full(1024, 1)
            },
            &s,
        );
        assert_eq!(claim.rows(&s), 512);
        claim.observe(
            Seen {
                claimed: 0,
                ..full(512, 0)
            },
            &s,
        );
        assert_eq!(claim.rows(&s), 32);
    }

    #[test]
    fn batch_rows_alone_never_moves() {
        let s = Settings::from_pairs(&[("batch_rows".into(), "100".into())]).unwrap();
        let mut claim = ClaimSize::default();
        for seen in [
            full(100, 1),
            full(100, 10_000),
            Seen {
                claimed: 3,
                ..full(100, 1)
            },
        ] {
            claim.observe(seen, &s);
            assert_eq!(claim.rows(&s), 100);
        }
    }
}
