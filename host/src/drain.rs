//! The tick/wake loop: [`Drain::step`] runs one tick, [`Drain::run`] loops.
//!
//! After a tick whose claim came back full the next tick starts at once;
//! otherwise the loop sleeps until the next row is due or the poll interval
//! ends, whichever is first, and a wake signal (a row enqueued through
//! Sluice) or a stop signal cuts the sleep short. A stop lets the current
//! tick finish, so no row is left claimed.

use crate::engine::{PolicyMeta, TickError};
use crate::guard::{Breach, Rule};
use crate::swap::{AfterTrap, Failure, PolicySlot};
use crate::world::{HostWorld, now_ms};
use sluice_policy::{TickReport, TimestampMs};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What can interrupt the loop's sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Rows were enqueued: tick now.
    Wake,
    /// Finish the current tick and return.
    Stop,
}

/// Sends a signal to every loop of a process (one per batch in flight).
#[derive(Clone, Debug, Default)]
pub struct Signals {
    senders: Vec<std::sync::mpsc::Sender<Signal>>,
}

impl Signals {
    /// A new loop's receiver, wired to this fan-out.
    pub fn subscribe(&mut self) -> Receiver<Signal> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.senders.push(sender);
        receiver
    }

    /// Every loop but the `index`-th: whom a loop wakes after doing work.
    pub fn siblings_of(&self, index: usize) -> Signals {
        let senders = self
            .senders
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, s)| s.clone())
            .collect();
        Signals { senders }
    }

    pub fn send(&self, signal: Signal) {
        for sender in &self.senders {
            // A loop that already returned has dropped its receiver: fine.
            let _ = sender.send(signal);
        }
    }
}

/// The policy the loop drives, over the host's world.
pub type Runner = crate::runner::Runner<HostWorld>;

#[derive(Clone, Debug)]
pub struct DrainOptions {
    /// Longest sleep between ticks when nothing is due sooner.
    pub poll_interval: Duration,
    /// Return once no row is `pending` or `inflight`.
    pub exit_when_drained: bool,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            poll_interval: Duration::from_millis(500),
            exit_when_drained: false,
        }
    }
}

/// Sums of every tick's report, and how the run went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub ticks: u64,
    pub failed_ticks: u64,
    pub claimed: u64,
    pub done: u64,
    pub dead: u64,
    pub retried: u64,
    pub held: u64,
    pub reclaimed: u64,
    pub expired: u64,
}

impl Totals {
    /// Adds another loop's totals (a process runs one loop per batch in flight).
    pub fn merge(&mut self, other: &Totals) {
        self.ticks += other.ticks;
        self.failed_ticks += other.failed_ticks;
        self.claimed += other.claimed;
        self.done += other.done;
        self.dead += other.dead;
        self.retried += other.retried;
        self.held += other.held;
        self.reclaimed += other.reclaimed;
        self.expired += other.expired;
    }

    fn add(&mut self, r: &TickReport) {
        self.ticks += 1;
        self.claimed += u64::from(r.claimed);
        self.done += u64::from(r.done);
        self.dead += u64::from(r.dead);
        self.retried += u64::from(r.retried);
        self.held += u64::from(r.held);
        self.reclaimed += u64::from(r.reclaimed);
        self.expired += u64::from(r.expired);
    }
}

/// Called after every successful tick (progress bars, tests).
pub type TickObserver = Box<dyn FnMut(&TickReport) + Send>;

/// Called after every tick, failed ones too, with how long it took (metrics).
pub type TickTimer = Box<dyn FnMut(Duration) + Send>;

/// Called after a tick in which the policy broke the host's rules: the
/// policy, the breaches kept, and how many more were only counted.
pub type ViolationObserver = Arc<dyn Fn(&PolicyMeta, &[Breach], u64) + Send + Sync>;

pub struct Drain {
    runner: Runner,
    options: DrainOptions,
    signals: Receiver<Signal>,
    totals: Totals,
    observer: Option<TickObserver>,
    timer: Option<TickTimer>,
    /// The other loops of this process, woken after a tick that did work: a
    /// sibling asleep for the poll interval would otherwise miss retries this
    /// tick made due, or the moment the outbox drains.
    siblings: Signals,
    /// The process's live policy and the generation this loop's runner was
    /// built from; None for a policy that cannot be swapped.
    slot: Option<(Arc<PolicySlot>, u64)>,
    /// The policy this loop's runner runs, for the violation reports.
    policy: PolicyMeta,
    /// Told every tick's breaches of the host's rules (status, metrics).
    violations: Vec<ViolationObserver>,
}

impl Drain {
    pub fn new(runner: Runner, options: DrainOptions, signals: Receiver<Signal>) -> Drain {
        Drain {
            runner,
            options,
            signals,
            totals: Totals::default(),
            observer: None,
            timer: None,
            siblings: Signals::default(),
            slot: None,
            policy: PolicyMeta::native(),
            violations: Vec::new(),
        }
    }

    /// Tells `observer` the breaches of every tick that broke a rule.
    pub fn observe_violations(&mut self, observer: ViolationObserver) {
        self.violations.push(observer);
    }

    /// Follows `slot`: each tick starts on whatever policy is live in it.
    pub fn follow(&mut self, slot: Arc<PolicySlot>) {
        let generation = slot.generation();
        if let Some((_, engine)) = slot.live() {
            self.runner.world().decided_by = Some(engine.meta().sha256.clone());
            self.policy = engine.meta().clone();
        }
        self.slot = Some((slot, generation));
    }

    pub fn set_siblings(&mut self, siblings: Signals) {
        self.siblings = siblings;
    }

    pub fn observe(&mut self, observer: TickObserver) {
        self.observer = Some(observer);
    }

    pub fn time_ticks(&mut self, timer: TickTimer) {
        self.timer = Some(timer);
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn runner_mut(&mut self) -> &mut Runner {
        &mut self.runner
    }

    /// One tick at the current time. A failed tick is logged and counted; its
    /// claimed rows (if any) come back when their lease runs out.
    pub fn step(&mut self) -> Result<TickReport, TickError> {
        let generation = match self.catch_up() {
            Ok(generation) => generation,
            Err(halted) => return Err(TickError::Policy(halted)),
        };
        let started = Instant::now();
        let result = self.runner.tick(now_ms());
        if let Some(timer) = self.timer.as_mut() {
            timer(started.elapsed());
        }
        if let (Some((slot, _)), Some(generation)) = (&self.slot, generation) {
            let failure = match &result {
                Ok(report) => {
                    slot.tick_ok(generation, report.claimed > 0);
                    None
                }
                Err(TickError::Trap(cause)) => Some(Failure::Trapped(cause.clone())),
                Err(violation @ TickError::Violation { .. }) => {
                    Some(Failure::BrokeRules(violation.to_string()))
                }
                Err(TickError::Policy(_)) => None,
            };
            if let Some(failure) = failure
                && let AfterTrap::RolledBack { .. } | AfterTrap::Halted(_) =
                    slot.tick_trapped(generation, &failure)
            {
                self.siblings.send(Signal::Wake);
            }
        }
        if let Err(TickError::Violation { breaches, dropped }) = &result {
            self.report_violations(breaches, *dropped);
        }
        match result {
            Ok(report) => {
                self.totals.add(&report);
                if let Some(observer) = self.observer.as_mut() {
                    observer(&report);
                }
                Ok(report)
            }
            Err(error) => {
                self.totals.failed_ticks += 1;
                let store = &self.runner.world().store;
                if let Some(message) = store.corrupt_report() {
                    tracing::error!(target: "sluice", "outbox_corrupt {message}");
                } else if matches!(error, TickError::Violation { .. }) {
                    // Logged by rule in `report_violations`.
                } else if store.corrupt().is_none() {
                    tracing::warn!(target: "sluice::policy", "drain_tick_failed err={error}");
                }
                Err(error)
            }
        }
    }

    /// One `policy_violation` line per rule broken in the tick, naming the
    /// rule, the first row and the policy's hash; then the observers.
    fn report_violations(&mut self, breaches: &[Breach], dropped: u64) {
        let sha256 = &self.policy.sha256;
        let mut by_rule: BTreeMap<Rule, (&Breach, u64)> = BTreeMap::new();
        for breach in breaches {
            by_rule.entry(breach.rule).or_insert((breach, 0)).1 += 1;
        }
        let mut counted = Vec::with_capacity(by_rule.len());
        for (rule, (first, count)) in &by_rule {
            let row = first
                .row
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string);
            counted.push((
                rule.name().to_string(),
                *count,
                row.clone(),
                first.detail.clone(),
            ));
            tracing::error!(target: "sluice", rule = rule.name(), policy = %sha256, "policy_violation rule={rule} count={count} row=\"{row}\" policy={} {} sha256={sha256}: the call was refused: {}", self.policy.name, self.policy.version, first.detail);
        }
        if dropped > 0 {
            tracing::error!(target: "sluice", policy = %sha256, "policy_violation: {dropped} more breaches in the same tick were counted but not kept");
        }
        // For `sluice status`, per policy and rule, beside the policy history.
        let store = &self.runner.world().store;
        if let Err(e) = store.record_violations(sha256, &counted, now_ms()) {
            tracing::warn!(target: "sluice", "could not count the violations in the outbox: {e}");
        }
        for observer in &self.violations {
            observer(&self.policy, breaches, dropped);
        }
    }

    /// Moves this loop's runner onto the live policy when another went live
    /// since its last tick; returns the generation the tick runs on. Err
    /// while the slot is halted (the slot logged why, once).
    fn catch_up(&mut self) -> Result<Option<u64>, String> {
        let Some((slot, current)) = &mut self.slot else {
            return Ok(None);
        };
        let Some((generation, engine)) = slot.live() else {
            return Err(slot.halted().unwrap_or_default());
        };
        if generation != *current {
            match self.runner.rebind(&engine) {
                Ok(()) => {
                    *current = generation;
                    self.runner.world().decided_by = Some(engine.meta().sha256.clone());
                    self.policy = engine.meta().clone();
                    tracing::info!(target: "sluice", generation, "policy_running {} {}", engine.meta().name, engine.meta().version);
                }
                Err(e) => {
                    tracing::error!(target: "sluice", "could not move a drain loop onto {}: {e}; it keeps the policy it had", engine.meta().source);
                    *current = generation;
                }
            }
        }
        Ok(Some(*current))
    }

    /// Ticks until stopped (or drained, with `exit_when_drained`), or until
    /// the outbox is found corrupt: then every loop stops and writes nothing.
    pub fn run(&mut self) -> &Totals {
        loop {
            if self.stop_requested() || self.runner.world().store.corrupt().is_some() {
                self.siblings.send(Signal::Stop);
                break;
            }
            let step = self.step();
            if step.as_ref().is_ok_and(wakes_siblings) {
                self.siblings.send(Signal::Wake);
            }
            let ended = step.as_ref().map_err(|_| ());
            let Some(wait) = wait_after(ended, now_ms(), self.options.poll_interval) else {
                continue;
            };
            if self.options.exit_when_drained && self.drained() {
                break;
            }
            match self.signals.recv_timeout(wait) {
                Ok(Signal::Stop) => break,
                Ok(Signal::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
        &self.totals
    }

    fn stop_requested(&self) -> bool {
        // Drain pending wakes; keep looking for a stop among them.
        while let Ok(signal) = self.signals.try_recv() {
            if signal == Signal::Stop {
                return true;
            }
        }
        false
    }

    fn drained(&mut self) -> bool {
        match self.runner.world().store.read(|o| o.open_work()) {
            Ok(open) => open == 0,
            Err(e) => {
                tracing::warn!(target: "sluice", "could not count open rows: {e}");
                false
            }
        }
    }
}

/// Whether a tick's work should wake the drainer's other loops: it claimed,
/// reclaimed or expired rows, so more may be due (a sibling asleep for the
/// poll interval would miss them). The simulator wakes its loops by this too.
pub fn wakes_siblings(report: &TickReport) -> bool {
    report.claimed > 0 || report.reclaimed > 0 || report.expired > 0
}

/// How long a loop waits after a tick, by how it ended: not at all after a
/// full claim (`None`: tick again at once); until the next row is due, at
/// least 1 ms (so a row held by another drainer cannot make it spin) and at
/// most `poll`; `poll` after a failed tick (no spinning on a failing policy
/// or a locked database). The simulator waits by this rule on its virtual
/// clock.
pub fn wait_after(
    ended: Result<&TickReport, ()>,
    now: TimestampMs,
    poll: Duration,
) -> Option<Duration> {
    match ended {
        Ok(report) if report.more_due => None,
        Ok(report) => Some(match report.next_due_at {
            None => poll,
            Some(due) => {
                let until_due = u64::try_from(due.saturating_sub(now)).unwrap_or(0);
                Duration::from_millis(until_due.max(1)).min(poll)
            }
        }),
        Err(()) => Some(poll),
    }
}
