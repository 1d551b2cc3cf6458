//! [`Rhythm`]: when a producer that waits for the write lock will try again,
//! learnt from when its commits are seen, so that Sluice's turn ends just
//! before that try instead of just after it.
//!
//! SQLite's busy handler sleeps whole milliseconds (1, 2, 5, 10 … ms), so
//! every retry of one wait comes at the same point of a millisecond as the
//! wait's first try (plus what each sleep overran). A producer that writes on
//! a clock whose period is whole milliseconds (500 commits a second is one
//! every 2 ms) makes all its first tries at one point of the millisecond too.
//! Its commits in Sluice's gaps then all come at about one phase of the
//! millisecond. A turn that ends at a random moment leaves the lock free for
//! 0.5 ms on average before the retry (and 2 ms when it ended just after
//! one: the next comes 2 ms later); a turn that ends just before that phase
//! hands the lock over at once.
//!
//! The phase is the circular mean of where, in the millisecond, the first
//! commit of each recent gap was seen; it is used only while those commits
//! cluster (their mean resultant length, 1 for one point, about
//! 1/sqrt(n) for commits at random moments, is at least [`LOCKED_ON`]). A
//! turn that aims then ends [`Rhythm::lead`] before the phase, and lasts
//! between [`AIMED_TURN_MIN`] and a millisecond more. The lead learns from
//! each aimed gap: a commit seen soon after the aim means the retry came
//! after the turn ended (the lead shrinks a little), one seen about 2 ms
//! later (the next retry) means the turn ended after the retry (it grows
//! more). Producers at random moments never cluster, and their turns stay
//! as they were.
//!
//! `share` aims only the turn after a gap that a producer committed in:
//! aimed turns end on the millisecond's grid, so turn and gap together last
//! whole milliseconds, and a producer that missed a retry would find its
//! later ones (5, 10, 15 … ms apart) at the same point of that cycle.
//!
//! Pure: instants in, instants out; `share` does the watching.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many gaps' first commits the phase is learnt from.
pub const SAMPLES: usize = 64;
/// Aim only once this many samples are in.
pub const SAMPLES_MIN: usize = 32;
/// The commits' mean resultant length from which they are taken to cluster:
/// commits at random moments give about 0.13 for 64 samples.
pub const LOCKED_ON: f64 = 0.4;
/// The shortest aimed turn; an aimed turn is shorter than 1 ms + this. Shorter
/// than about 2 ms, it holds one point of the phase, 1 ms before the one it
/// ends ahead of: a producer that tried there retries just after the turn.
pub const AIMED_TURN_MIN: Duration = Duration::from_micros(1100);
/// The lead at first, and its bounds.
pub const LEAD_START: Duration = Duration::from_micros(300);
pub const LEAD_MIN: Duration = Duration::from_micros(100);
pub const LEAD_MAX: Duration = Duration::from_micros(700);
/// A commit seen within the lead and this much after the aim counts as the
/// retry caught.
pub const CAUGHT_WITHIN: Duration = Duration::from_micros(500);
/// A commit seen about 2 ms after the lead (the retry after the one the
/// turn covered) counts as the retry missed. One seen about 1 ms after it is
/// not: a producer on a 2 ms clock that first tried at the aimed point
/// retries 1 ms later however the lead is set.
pub const MISSED_AFTER: Duration = Duration::from_micros(1600);
pub const MISSED_BEFORE: Duration = Duration::from_micros(2600);
/// The lead's steps: a miss costs about 2 ms (the next retry), a catch saves
/// about as much as the lead is longer than needed; misses are kept rare.
pub const LEAD_UP: Duration = Duration::from_micros(50);
pub const LEAD_DOWN: Duration = Duration::from_micros(10);

const MS_NANOS: u64 = 1_000_000;

#[derive(Debug)]
pub struct Rhythm {
    epoch: Instant,
    /// Where in the millisecond each recent gap's first commit was seen, as
    /// a point on the unit circle (cos, sin): worked out once per sample,
    /// not once per sample per aimed turn.
    phases: VecDeque<(f64, f64)>,
    lead: Duration,
    /// The end the current turn aims at, if it aims.
    aim: Option<Instant>,
    /// Aimed gaps whose first commit was caught, and missed.
    pub caught: u64,
    pub missed: u64,
}

impl Rhythm {
    pub fn new(epoch: Instant) -> Rhythm {
        Rhythm {
            epoch,
            phases: VecDeque::with_capacity(SAMPLES),
            lead: LEAD_START,
            aim: None,
            caught: 0,
            missed: 0,
        }
    }

    pub fn lead(&self) -> Duration {
        self.lead
    }

    /// The first commit of a gap was seen at `at` (a look that came at most
    /// a look's interval after the one before it).
    pub fn first_commit_seen(&mut self, at: Instant) {
        if self.phases.len() == SAMPLES {
            self.phases.pop_front();
        }
        let angle = self.phase_of(at) as f64 / MS_NANOS as f64 * std::f64::consts::TAU;
        self.phases.push_back((angle.cos(), angle.sin()));
        if let Some(aim) = self.aim.take() {
            let after = at.saturating_duration_since(aim);
            if after <= self.lead + CAUGHT_WITHIN {
                self.caught += 1;
                self.lead = self.lead.saturating_sub(LEAD_DOWN).max(LEAD_MIN);
            } else if after >= self.lead + MISSED_AFTER && after < self.lead + MISSED_BEFORE {
                self.missed += 1;
                self.lead = (self.lead + LEAD_UP).min(LEAD_MAX);
            }
        }
    }

    /// A gap ended. If no commit in it was sampled, nobody was waiting (or
    /// the commit was not timed closely): that says nothing of the aim.
    pub fn gap_ended(&mut self) {
        self.aim = None;
    }

    /// The end of a turn that begins at `start`, if the commits cluster: the
    /// first moment at least [`AIMED_TURN_MIN`] later that is the lead
    /// before their phase.
    pub fn aim(&mut self, start: Instant) -> Option<Instant> {
        self.aim = None;
        let phase = self.phase()?;
        let target = (phase + MS_NANOS - (self.lead.as_nanos() as u64 % MS_NANOS)) % MS_NANOS;
        let earliest = start + AIMED_TURN_MIN;
        let ahead = (target + MS_NANOS - self.phase_of(earliest)) % MS_NANOS;
        let aim = earliest + Duration::from_nanos(ahead);
        self.aim = Some(aim);
        Some(aim)
    }

    /// The commits' phase in the millisecond (ns), if they cluster.
    pub fn phase(&self) -> Option<u64> {
        if self.phases.len() < SAMPLES_MIN {
            return None;
        }
        let (mut x, mut y) = (0.0, 0.0);
        for &(cos, sin) in &self.phases {
            x += cos;
            y += sin;
        }
        let n = self.phases.len() as f64;
        if (x / n).hypot(y / n) < LOCKED_ON {
            return None;
        }
        let angle = y.atan2(x).rem_euclid(std::f64::consts::TAU);
        Some((angle / std::f64::consts::TAU * MS_NANOS as f64) as u64 % MS_NANOS)
    }

    fn phase_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_nanos() % u128::from(MS_NANOS)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A rhythm that has seen a gap's first commit 0.5 ms into every other
    /// millisecond, and its epoch.
    fn locked_on() -> (Instant, Rhythm) {
        let epoch = Instant::now();
        let mut rhythm = Rhythm::new(epoch);
        for i in 0..SAMPLES as u64 {
            rhythm.first_commit_seen(epoch + us(2000 * i + 500));
        }
        (epoch, rhythm)
    }

    #[test]
    fn commits_at_one_point_of_the_millisecond_are_aimed_before() {
        let epoch = Instant::now();
        let mut rhythm = Rhythm::new(epoch);
        // Commits seen at 0.6 ms into a millisecond, give or take 50 µs.
        for i in 0..SAMPLES as u64 {
            rhythm.first_commit_seen(epoch + us(3000 * i + 600 + (i * 37) % 100 - 50));
        }
        let phase = rhythm.phase().expect("they cluster");
        assert!(phase.abs_diff(600_000) < 30_000, "{phase}");
        let start = epoch + us(100_250);
        let aim = rhythm.aim(start).unwrap();
        let len = aim - start;
        assert!(
            len >= AIMED_TURN_MIN && len < AIMED_TURN_MIN + us(1000),
            "{len:?}"
        );
        // The turn ends the lead before the phase.
        let end_phase = (aim - epoch).as_nanos() as u64 % MS_NANOS;
        let want = phase - LEAD_START.as_nanos() as u64;
        assert!(end_phase.abs_diff(want) < 1_000, "{end_phase} {want}");
    }

    #[test]
    fn commits_at_random_moments_are_not_aimed_at() {
        let epoch = Instant::now();
        let mut rhythm = Rhythm::new(epoch);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..SAMPLES as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rhythm.first_commit_seen(epoch + us(5000 * i + x % 1000));
        }
        assert_eq!(rhythm.phase(), None);
        assert_eq!(rhythm.aim(epoch + us(400_000)), None);
    }

    #[test]
    fn too_few_commits_are_not_aimed_at() {
        let epoch = Instant::now();
        let mut rhythm = Rhythm::new(epoch);
        for i in 0..SAMPLES_MIN as u64 - 1 {
            rhythm.first_commit_seen(epoch + us(2000 * i + 300));
        }
        assert_eq!(rhythm.phase(), None);
        rhythm.first_commit_seen(epoch + us(99_300));
        assert!(rhythm.phase().is_some());
    }

    #[test]
    fn a_retry_missed_lengthens_the_lead_and_one_caught_shortens_it() {
        let (epoch, mut rhythm) = locked_on();
        let aim = rhythm.aim(epoch + us(200_000)).unwrap();
        // Seen 2 ms after the aim: the turn ended after the retry.
        rhythm.first_commit_seen(aim + us(2000));
        assert_eq!(rhythm.lead(), LEAD_START + LEAD_UP);
        assert_eq!(rhythm.missed, 1);
        let aim = rhythm.aim(epoch + us(300_000)).unwrap();
        rhythm.first_commit_seen(aim + rhythm.lead());
        assert_eq!(rhythm.lead(), LEAD_START + LEAD_UP - LEAD_DOWN);
        assert_eq!(rhythm.caught, 1);
        // A commit 1 ms after the aim is a producer's next try on its own
        // clock, whatever the lead: it says nothing, as a gap nobody
        // committed in.
        let aim = rhythm.aim(epoch + us(350_000)).unwrap();
        rhythm.first_commit_seen(aim + rhythm.lead() + us(1000));
        assert_eq!((rhythm.caught, rhythm.missed), (1, 1));
        rhythm.aim(epoch + us(400_000)).unwrap();
        rhythm.gap_ended();
        rhythm.first_commit_seen(epoch + us(500_000));
        assert_eq!(rhythm.lead(), LEAD_START + LEAD_UP - LEAD_DOWN);
    }

    #[test]
    fn the_lead_stays_within_its_bounds() {
        let (epoch, mut rhythm) = locked_on();
        // Commits at the same phase as before, 2 ms after the aimed end,
        // then just after it.
        for i in 0..100 {
            let aim = rhythm.aim(epoch + us(200_000 + 5000 * i)).unwrap();
            rhythm.first_commit_seen(aim + rhythm.lead() + us(2000));
        }
        assert_eq!(rhythm.lead(), LEAD_MAX);
        for i in 0..1000 {
            let aim = rhythm.aim(epoch + us(800_000 + 5000 * i)).unwrap();
            rhythm.first_commit_seen(aim + rhythm.lead());
        }
        assert_eq!(rhythm.lead(), LEAD_MIN);
    }
}
