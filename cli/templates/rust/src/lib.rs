//! {{name}}: a Sluice drain policy.
//!
//! This file is the tick: the only code that calls the host. Every decision
//! about one row is in `rules.rs`, free of I/O, and tested by `cargo test`.
//! The contract is `wit/drain.wit` (sluice:drain@{{contract}}); the guide is
//! "Writing a policy" in Sluice's docs.

mod rules;

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "drain-policy",
        additional_derives: [PartialEq],
    });

    use super::Component;
    export!(Component with_types_in self);
}

use bindings::exports::sluice::drain::policy::{Guest, PolicyInfo, TickReport};
use bindings::sluice::drain::types::{ClaimFilter, Level, Outcome, SendResult, Verdict};
use bindings::sluice::drain::{env, links, store};
use rules::{Decision, Settings};
use std::cell::RefCell;

struct Component;

thread_local! {
    /// The configuration: the only state this policy keeps between ticks.
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings::default());
}

impl Guest for Component {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
        }
    }

    fn configure(pairs: Vec<(String, String)>) -> Result<(), String> {
        let settings = Settings::from_pairs(&pairs)?;
        SETTINGS.with(|s| *s.borrow_mut() = settings);
        Ok(())
    }

    fn tick(now: i64) -> Result<TickReport, String> {
        let settings = SETTINGS.with(|s| s.borrow().clone());
        tick(&settings, now)
    }
}

fn tick(settings: &Settings, now: i64) -> Result<TickReport, String> {
    // 1. Rows whose drainer died go back to pending.
    let reclaimed = store::reclaim(now)?;
    // 2-3. Leave alone the rows of meshes whose link is down or whose
    // budget is spent, and claim a batch.
    let meshes = links::mesh_links();
    let skip = ClaimFilter {
        skip_meshes: meshes
            .iter()
            .filter(|m| !m.open || m.tokens == 0)
            .map(|m| m.slug.clone())
            .collect(),
        skip_unnamed: meshes.len() == 1 && (!meshes[0].open || meshes[0].tokens == 0),
    };
    let rows = store::claim_due(now, settings.batch_rows, settings.lease_ms, &skip)?;
    let slugs: Vec<String> = meshes.iter().map(|m| m.slug.clone()).collect();

    // 4-5. Decide every row; session rows need their session's state.
    let keys: Vec<String> = rows
        .iter()
        .filter_map(|r| rules::present(&r.sender_session_pubkey))
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let states = if keys.is_empty() {
        Vec::new()
    } else {
        links::session_states(&keys)
    };
    let sessions: Vec<_> = keys.into_iter().zip(states).collect();
    let decisions: Vec<Decision> = rows
        .iter()
        .map(|row| {
            rules::decide(row, now, settings, &slugs, &sessions, || {
                env::random_bytes(rules::LEGACY_NONCE_BYTES)
            })
        })
        .collect();

    // 6. One send for every dispatch.
    let dispatches: Vec<_> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Send(dispatch) => Some(dispatch.clone()),
            _ => None,
        })
        .collect();
    let mut results = if dispatches.is_empty() {
        Vec::new()
    } else {
        links::send_batch(&dispatches, settings.ack_timeout_ms)
    }
    .into_iter();
    let after = env::now();

    // 7. An outcome for every claimed row, with its claimed attempts.
    let mut throttled: Vec<String> = Vec::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    for (row, decision) in rows.iter().zip(decisions) {
        let verdict = match decision {
            Decision::Send(_) => {
                let result = results
                    .next()
                    .unwrap_or_else(|| SendResult::Failed("host_returned_no_result".into()));
                if let Some(mesh) = rules::rate_refused(&result)
                    .then(|| rules::route_mesh(row, &slugs).ok())
                    .flatten()
                    && !throttled.contains(&mesh)
                {
                    // The member's bucket is empty: slow all of its links.
                    links::throttle(&mesh);
                    throttled.push(mesh);
                }
                rules::judge(row, &result, after, settings)
            }
            Decision::Dead(reason) => Verdict::Dead(reason),
            Decision::Retry(error) => rules::retry(row, &error, after, settings),
        };
        if let Verdict::Dead(reason) = &verdict {
            let fields = rules::fields(&[("id", &row.id), ("reason", reason)]);
            env::log(Level::Warn, "policy_dead", &fields);
        }
        outcomes.push(Outcome {
            rowid: row.rowid,
            attempts: row.attempts,
            verdict,
        });
    }
    let mut report = rules::tally(&outcomes);
    report.claimed = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    report.reclaimed = reclaimed;
    report.more_due = report.claimed >= settings.batch_rows;
    if !outcomes.is_empty() {
        store::settle(&outcomes)?;
    }

    // 8. When the backlog is drained, rows past their time to live die.
    if !report.more_due {
        let now = env::now();
        report.expired = store::expire(now, now.saturating_sub(settings.row_ttl_ms))?;
    }
    // 9. When to come back: the next due row, or the next token of a
    // mesh skipped for its budget.
    let budget_at = meshes
        .iter()
        .filter(|m| m.open && m.tokens == 0)
        .map(|m| m.next_token_at)
        .min();
    report.next_due_at = match (store::next_due_at(&skip)?, budget_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(report)
}
