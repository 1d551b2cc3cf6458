//! One tick of the default policy: the only place the rules meet the imports.
//!
//! Order: reclaim run-out leases, look at the links and budgets, claim a
//! batch of the size `claim` carries from the last tick (leaving alone
//! daemon rows whose link is down or whose budget is spent), decide every row, spend each member's budget by priority and hold
//! back the rest, send all dispatches in one call, judge the results, settle
//! everything in one call, sweep expired rows when the backlog is drained,
//! report when a row is next due, and size the next claim by what this
//! tick saw.
//!
//! The per-row rules are [`Rules`] hooks: [`DefaultRules`] are the default
//! policy's (`rules::decide`, `rules::retry`, `rules::judge`), and another
//! policy built on this crate overrides only the ones it changes and runs
//! the same tick with [`tick_with`].

use crate::World;
use crate::claim::{ClaimSize, Seen};
use crate::classify::is_rate_limit;
use crate::pace::{Pacer, claim_filter, next_budget_at};
use crate::rules::{Decision, LEGACY_NONCE_BYTES, LogLine, View, decide, judge, retry, route_mesh};
use crate::settings::Settings;
use crate::types::{
    Dispatch, Level, MeshLink, Outcome, RATE_BUDGET_EMPTY, Route, Row, SendResult, SessionState,
    TickReport, TimestampMs, Verdict,
};
use std::collections::{BTreeMap, BTreeSet};

/// The per-row rules a tick applies. Every hook defaults to the default
/// policy's rule; a policy that departs from it overrides that hook alone.
pub trait Rules {
    /// What to do with a claimed row before sending.
    fn decide(
        &self,
        row: &Row,
        view: &View<'_>,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Decision {
        decide(row, view, fresh_nonce)
    }

    /// The verdict for a row `decide` kept back with `error` (not sent).
    /// `after` is read after the tick's sends returned.
    fn unsent(
        &self,
        row: &Row,
        error: &str,
        view: &View<'_>,
        after: TimestampMs,
    ) -> (Verdict, Option<LogLine>) {
        retry(row, error, after, view.settings, None)
    }

    /// The verdict for what the host reported for a row's dispatch (rate
    /// refusals and unspent budgets are the tick's, before this is asked).
    fn judge(
        &self,
        row: &Row,
        result: &SendResult,
        view: &View<'_>,
        after: TimestampMs,
    ) -> (Verdict, Option<LogLine>) {
        judge(row, result, after, view.settings)
    }
}

/// The default policy's rules: every hook as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRules;

impl Rules for DefaultRules {}

/// Runs one tick of the default policy against `world`; `claim` is the
/// loop's claim size, carried from tick to tick.
pub fn tick<W: World>(
    world: &mut W,
    settings: &Settings,
    claim: &mut ClaimSize,
    now: TimestampMs,
) -> Result<TickReport, String> {
    tick_with(world, settings, claim, now, &DefaultRules)
}

/// Runs one tick against `world` with `rules` for the per-row decisions.
pub fn tick_with<W: World, R: Rules + ?Sized>(
    world: &mut W,
    settings: &Settings,
    claim: &mut ClaimSize,
    now: TimestampMs,
    rules: &R,
) -> Result<TickReport, String> {
    let mut report = TickReport {
        reclaimed: world.reclaim(now)?,
        ..TickReport::default()
    };
    let links = world.mesh_links();
    let skip = claim_filter(&links);
    let limit = claim.rows(settings);
    let rows = world.claim_due(now, limit, settings.lease_ms, &skip)?;
    report.claimed = count(rows.len());
    report.more_due = report.claimed >= limit;
    let mut seen = Seen {
        limit,
        claimed: report.claimed,
        troubled: false,
        took_ms: 0,
    };

    if !rows.is_empty() {
        let (outcomes, pressure) = drain_rows(world, settings, now, &rows, &links, rules);
        seen.troubled = pressure.troubled;
        seen.took_ms = pressure.answered_at.saturating_sub(now);
        report.tally(&outcomes);
        world.settle(outcomes)?;
    }
    claim.observe(seen, settings);

    // While claims come back full, expiry happens lazily as rows are claimed;
    // the sweep (which reads every pending row) waits for a drained backlog.
    if !report.more_due {
        let now = world.now();
        report.expired = world.expire(now, now.saturating_sub(settings.row_ttl_ms))?;
        if report.expired > 0 {
            let fields = vec![("count".to_string(), report.expired.to_string())];
            world.log(Level::Warn, "drain_expired_rows", fields);
        }
    }
    let due = world.next_due_at(&skip)?;
    report.next_due_at = match (due, next_budget_at(&links)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(report)
}

/// What a batch's sends said about the load the links can take.
struct Pressure {
    /// A transport failure, a rate refusal, or a row held for the budget.
    troubled: bool,
    /// When the sends had all been answered.
    answered_at: TimestampMs,
}

/// Decides, paces, sends and judges the claimed rows; one outcome per row,
/// in order.
fn drain_rows<W: World, R: Rules + ?Sized>(
    world: &mut W,
    settings: &Settings,
    now: TimestampMs,
    rows: &[Row],
    links: &[MeshLink],
    rules: &R,
) -> (Vec<Outcome>, Pressure) {
    let meshes: Vec<String> = links.iter().map(|l| l.slug.clone()).collect();
    let sessions = session_states(world, rows);
    let view = View {
        now,
        settings,
        meshes: &meshes,
        sessions: &sessions,
    };
    let decisions: Vec<Decision> = rows
        .iter()
        .map(|row| rules.decide(row, &view, &mut || world.random_bytes(LEGACY_NONCE_BYTES)))
        .collect();

    // Spend each member's budget: priority `now` first, then `next`, then
    // `low`, claim order within each; the rest wait for their own token.
    let mut pacer = Pacer::new(links, now);
    let mut held: BTreeMap<usize, TimestampMs> = BTreeMap::new();
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| matches!(decisions[i], Decision::Send(_)))
        .collect();
    order.sort_by_key(|&i| match &decisions[i] {
        Decision::Send(d) => priority_rank(&d.priority),
        _ => u8::MAX,
    });
    for i in order {
        let mesh = budget_mesh(&rows[i], &meshes);
        if !pacer.take(&mesh) {
            held.insert(i, pacer.slot(&mesh, now));
        }
    }
    let dispatches: Vec<Dispatch> = decisions
        .iter()
        .enumerate()
        .filter_map(|(i, decision)| match decision {
            Decision::Send(dispatch) if !held.contains_key(&i) => Some(dispatch.clone()),
            _ => None,
        })
        .collect();

    let mut results = if dispatches.is_empty() {
        Vec::new()
    } else {
        world.send_batch(dispatches, settings.ack_timeout_ms)
    }
    .into_iter();
    let after = world.now();

    let mut failures: BTreeMap<(String, String), (u32, String)> = BTreeMap::new();
    let mut throttled: BTreeSet<String> = BTreeSet::new();
    // Rows the budget turned back after the send was asked for.
    let mut held_after = 0u32;
    let mut outcomes = Vec::with_capacity(rows.len());
    for (i, (row, decision)) in rows.iter().zip(decisions).enumerate() {
        let (verdict, log) = match decision {
            Decision::Send(_) if held.contains_key(&i) => (hold(held[&i], None), None),
            Decision::Send(sent) => match results.next() {
                Some(SendResult::Failed(error)) if error == RATE_BUDGET_EMPTY => {
                    held_after += 1;
                    let mesh = budget_mesh(row, &meshes);
                    (hold(pacer.slot(&mesh, after), None), None)
                }
                Some(SendResult::Rejected(error)) if is_rate_limit(&error) => {
                    held_after += 1;
                    let mesh = budget_mesh(row, &meshes);
                    if throttled.insert(mesh.clone()) {
                        world.throttle(&mesh);
                        pacer.exhaust(&mesh, after);
                    }
                    (hold(pacer.slot(&mesh, after), Some(error)), None)
                }
                Some(result) => {
                    if let SendResult::Failed(error) = &result {
                        let key = (link_label(&sent.route), error.clone());
                        let entry = failures.entry(key).or_insert((0, row.id.clone()));
                        entry.0 += 1;
                    }
                    rules.judge(row, &result, &view, after)
                }
                // A host that answered fewer results than dispatches broke the
                // contract; the row is retried rather than lost.
                None => retry(row, "host_returned_no_result", after, settings, None),
            },
            Decision::Dead { reason, log } => (Verdict::Dead { reason }, log),
            Decision::Retry { error, log } => {
                let (verdict, cap_log) = rules.unsent(row, &error, &view, after);
                (verdict, cap_log.or(log))
            }
        };
        if let Some(LogLine {
            level,
            event,
            fields,
        }) = log
        {
            world.log(level, event, fields);
        }
        outcomes.push(Outcome {
            rowid: row.rowid,
            attempts: row.attempts,
            verdict,
        });
    }
    let failed = !failures.is_empty();
    // One line per link and error, not one per row: a link that went down
    // under a full batch writes one line a tick.
    for ((link, error), (rows, first_id)) in failures {
        let fields = vec![
            ("link".to_string(), link),
            ("err".to_string(), error),
            ("rows".to_string(), rows.to_string()),
            ("first_id".to_string(), first_id),
        ];
        world.log(Level::Warn, "drain_send_threw", fields);
    }
    if !throttled.is_empty() {
        let meshes: Vec<String> = throttled.into_iter().collect();
        let fields = vec![("mesh".to_string(), meshes.join(","))];
        world.log(Level::Info, "drain_rate_limited", fields);
    }
    let pressure = Pressure {
        troubled: !held.is_empty() || failed || held_after > 0,
        answered_at: after,
    };
    (outcomes, pressure)
}

fn hold(next_attempt_at: TimestampMs, last_error: Option<String>) -> Verdict {
    Verdict::Hold {
        next_attempt_at,
        last_error,
    }
}

/// The mesh whose member pays for a row's send; a row that got this far has
/// one (`decide` makes rows without one dead).
fn budget_mesh(row: &Row, meshes: &[String]) -> String {
    route_mesh(row, meshes).unwrap_or_default()
}

fn priority_rank(priority: &str) -> u8 {
    match priority {
        "now" => 0,
        "low" => 2,
        _ => 1,
    }
}

fn link_label(route: &Route) -> String {
    match route {
        Route::Daemon(mesh) => format!("mesh:{mesh}"),
        Route::Session(key) => format!("session:{}", key.chars().take(12).collect::<String>()),
    }
}

/// One lookup for the distinct session keys of the batch, in a fixed order.
fn session_states<W: World>(world: &mut W, rows: &[Row]) -> Vec<(String, SessionState)> {
    let keys: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.sender_session_pubkey.as_deref())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return Vec::new();
    }
    let keys: Vec<String> = keys.into_iter().map(str::to_string).collect();
    let states = world.session_states(keys.clone());
    keys.into_iter()
        .zip(
            states
                .into_iter()
                .chain(std::iter::repeat(SessionState::Absent)),
        )
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
