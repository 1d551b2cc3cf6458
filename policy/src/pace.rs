//! Spending each member's send budget, free of I/O.
//!
//! The broker gives every member one token bucket, shared by its daemon link
//! and all its session links; a send into an empty bucket is refused and
//! only keeps it empty. The host mirrors the bucket and reports it per mesh
//! ([`MeshLink`]); a [`Pacer`] hands the tokens of one tick to the rows that
//! go out, and gives every row held back the moment its own token will be
//! there, one spacing apart, so held rows come back at the broker's pace
//! instead of all at once.

use crate::types::{ClaimFilter, MeshLink, TimestampMs};

/// A mesh's budget as one tick spends it.
#[derive(Clone, Debug)]
struct Budget {
    slug: String,
    tokens: u32,
    /// Milliseconds between two tokens; 0 without a limit.
    spacing_ms: i64,
    /// When the next row held back may go: advances one spacing per row.
    next_slot: TimestampMs,
}

/// Hands out the tokens of one tick, mesh by mesh.
#[derive(Clone, Debug)]
pub struct Pacer {
    budgets: Vec<Budget>,
}

/// How long a row refused for its rate waits when the mesh has no limit of
/// its own: the broker limits a member the host was told is unlimited.
pub const UNLIMITED_HOLD_MS: i64 = 1_000;

impl Pacer {
    pub fn new(links: &[MeshLink], now: TimestampMs) -> Pacer {
        let budgets = links
            .iter()
            .map(|link| {
                let spacing_ms = spacing_ms(link.per_minute);
                let next_slot = if link.tokens > 0 {
                    now.saturating_add(spacing_ms)
                } else {
                    link.next_token_at.max(now)
                };
                Budget {
                    slug: link.slug.clone(),
                    tokens: link.tokens,
                    spacing_ms,
                    next_slot,
                }
            })
            .collect();
        Pacer { budgets }
    }

    /// Takes one send from `mesh`'s budget; false when it is spent. A mesh
    /// the host does not list has nothing to spend: its rows never reach here.
    pub fn take(&mut self, mesh: &str) -> bool {
        match self.budget(mesh) {
            Some(budget) if budget.spacing_ms == 0 => true,
            Some(budget) if budget.tokens > 0 => {
                budget.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    /// When the next row held back for `mesh` may go; each call books the
    /// following slot.
    pub fn slot(&mut self, mesh: &str, now: TimestampMs) -> TimestampMs {
        match self.budget(mesh) {
            Some(budget) if budget.spacing_ms > 0 => {
                let slot = budget.next_slot.max(now);
                budget.next_slot = slot.saturating_add(budget.spacing_ms);
                slot
            }
            _ => now.saturating_add(UNLIMITED_HOLD_MS),
        }
    }

    /// The broker refused a send of `mesh` for its rate: its bucket is empty
    /// now, so nothing more goes out this tick and the next token is one
    /// spacing away.
    pub fn exhaust(&mut self, mesh: &str, now: TimestampMs) {
        if let Some(budget) = self.budget(mesh) {
            budget.tokens = 0;
            budget.next_slot = budget.next_slot.max(now.saturating_add(budget.spacing_ms));
        }
    }

    fn budget(&mut self, mesh: &str) -> Option<&mut Budget> {
        self.budgets.iter_mut().find(|b| b.slug == mesh)
    }
}

/// `ceil(60 000 / per_minute)`: never earlier than the broker's refill.
pub fn spacing_ms(per_minute: u32) -> i64 {
    if per_minute == 0 {
        0
    } else {
        (60_000 + i64::from(per_minute) - 1) / i64::from(per_minute)
    }
}

/// The daemon-link rows not worth claiming now: their link is down, or their
/// member's budget is spent. Rows without a mesh follow the only mesh.
pub fn claim_filter(links: &[MeshLink]) -> ClaimFilter {
    let idle = |link: &MeshLink| !link.open || link.tokens == 0;
    ClaimFilter {
        skip_meshes: links
            .iter()
            .filter(|l| idle(l))
            .map(|l| l.slug.clone())
            .collect(),
        skip_unnamed: links.len() == 1 && idle(&links[0]),
    }
}

/// When a mesh skipped for its budget next gains a token: the tick after
/// that one has something to send.
pub fn next_budget_at(links: &[MeshLink]) -> Option<TimestampMs> {
    links
        .iter()
        .filter(|l| l.open && l.tokens == 0)
        .map(|l| l.next_token_at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(slug: &str, open: bool, tokens: u32, next: i64, per_minute: u32) -> MeshLink {
        MeshLink {
            slug: slug.into(),
            open,
            tokens,
            next_token_at: next,
            per_minute,
        }
    }

    #[test]
    fn spacing_rounds_up() {
        assert_eq!(spacing_ms(60), 1_000);
        assert_eq!(spacing_ms(600), 100);
        assert_eq!(spacing_ms(7), 8_572);
        assert_eq!(spacing_ms(0), 0);
    }

    #[test]
    fn tokens_run_out_and_held_rows_get_one_slot_each() {
        let mut pacer = Pacer::new(&[link("a", true, 2, 1_000, 600)], 1_000);
        assert!(pacer.take("a"));
        assert!(pacer.take("a"));
        assert!(!pacer.take("a"));
        assert_eq!(pacer.slot("a", 1_000), 1_100);
        assert_eq!(pacer.slot("a", 1_000), 1_200);
        assert_eq!(pacer.slot("a", 1_000), 1_300);
    }

    #[test]
    fn an_empty_budget_books_from_its_next_token() {
        let mut pacer = Pacer::new(&[link("a", true, 0, 1_040, 600)], 1_000);
        assert!(!pacer.take("a"));
        assert_eq!(pacer.slot("a", 1_000), 1_040);
        assert_eq!(pacer.slot("a", 1_000), 1_140);
    }

    #[test]
    fn an_unlimited_mesh_always_sends_and_an_unknown_one_never() {
        let mut pacer = Pacer::new(&[link("free", true, u32::MAX, 0, 0)], 5);
        for _ in 0..1_000 {
            assert!(pacer.take("free"));
        }
        assert!(!pacer.take("elsewhere"));
        assert_eq!(pacer.slot("free", 5), 5 + UNLIMITED_HOLD_MS);
    }

    #[test]
    fn a_rate_refusal_empties_the_budget() {
        let mut pacer = Pacer::new(&[link("a", true, 5, 0, 60)], 0);
        assert!(pacer.take("a"));
        pacer.exhaust("a", 10);
        assert!(!pacer.take("a"));
        assert_eq!(pacer.slot("a", 10), 1_010);
    }

    #[test]
    fn the_filter_skips_down_and_spent_meshes_and_unnamed_rows_of_a_single_one() {
        let links = [
            link("up", true, 3, 0, 60),
            link("down", false, 3, 0, 60),
            link("spent", true, 0, 700, 60),
        ];
        let filter = claim_filter(&links);
        assert_eq!(filter.skip_meshes, vec!["down", "spent"]);
        assert!(!filter.skip_unnamed);
        assert_eq!(next_budget_at(&links), Some(700));
        assert!(claim_filter(&[link("only", false, 3, 0, 60)]).skip_unnamed);
        assert!(claim_filter(&[link("only", true, 3, 0, 60)]).is_empty());
    }
}
