//! Named fault profiles: how often each simulated fault strikes.
//!
//! Owns: the table of profiles `--faults` chooses from and their rates. Not
//! here: how a fault is carried out (`broker` answers sends, `world` crashes
//! a settle and moves the clock).
//!
//! Every rate is in parts per million (see `rng::PPM`) and every duration in
//! milliseconds, so a profile is plain integers and a run is exactly
//! repeatable.

use std::collections::BTreeMap;
use std::fmt;

/// Faults injected so far, by kind (ordered, so reports are stable).
pub type FaultCounts = BTreeMap<&'static str, u64>;

/// The rates of one fault profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// What the profile is for, shown in the list of profiles.
    pub about: &'static str,
    /// Per dispatch: the broker acks with a permanent error (`forbidden`, ...).
    pub reject_permanent_ppm: u32,
    /// Per dispatch: the broker acks with a transient error (`rate_limited`, ...).
    pub reject_transient_ppm: u32,
    /// Per dispatch: no ack within the ack timeout (`ack_timeout`).
    pub ack_timeout_ppm: u32,
    /// Per route per batch: the link closes mid-batch, failing every send of
    /// the batch on it (`link_closed`).
    pub link_drop_ppm: u32,
    /// Per open daemon link per tick: it goes down; a send on a down link
    /// fails `link_not_open`.
    pub daemon_link_down_ppm: u32,
    /// Per down daemon link per tick: it reconnects.
    pub daemon_link_up_ppm: u32,
    /// Per registered session per tick: its link moves to a random state
    /// (absent, connecting, open).
    pub session_flip_ppm: u32,
    /// Per settle: the drainer dies after sending, before its settle lands;
    /// the claims are lost and the rows come back through their lease.
    pub crash_ppm: u32,
    /// Per tick: the clock jumps forward (a suspended laptop, an NTP step).
    pub clock_jump_ppm: u32,
    /// Longest such jump.
    pub clock_jump_max_ms: i64,
    /// Longest time a broker takes to ack one send.
    pub ack_latency_max_ms: i64,
    /// Every link is down from the start of the run for this long, then all
    /// open at once (registered sessions too); 0 for no opening outage.
    pub outage_ms: i64,
}

/// Every profile `--faults` accepts, the default first.
pub const PROFILES: &[Profile] = &[MIXED, NONE, HARSH, BROKER_DOWN, OUTAGE_10M];

/// `default` is another name for this one.
pub const DEFAULT_PROFILE: &str = "mixed";

const MINUTE_MS: i64 = 60_000;

const NONE: Profile = Profile {
    name: "none",
    about: "no faults: links open, every send accepted, no crash, no clock jump",
    reject_permanent_ppm: 0,
    reject_transient_ppm: 0,
    ack_timeout_ppm: 0,
    link_drop_ppm: 0,
    daemon_link_down_ppm: 0,
    daemon_link_up_ppm: 0,
    session_flip_ppm: 0,
    crash_ppm: 0,
    clock_jump_ppm: 0,
    clock_jump_max_ms: 0,
    ack_latency_max_ms: 50,
    outage_ms: 0,
};

const MIXED: Profile = Profile {
    name: "mixed",
    about: "a bit of everything, as a busy day on a real broker",
    reject_permanent_ppm: 15_000,
    reject_transient_ppm: 60_000,
    ack_timeout_ppm: 10_000,
    link_drop_ppm: 10_000,
    daemon_link_down_ppm: 10_000,
    daemon_link_up_ppm: 200_000,
    session_flip_ppm: 100_000,
    crash_ppm: 10_000,
    clock_jump_ppm: 5_000,
    clock_jump_max_ms: 15 * MINUTE_MS,
    ack_latency_max_ms: 400,
    outage_ms: 0,
};

const HARSH: Profile = Profile {
    name: "harsh",
    about: "every fault often, and clock jumps past a day",
    reject_permanent_ppm: 50_000,
    reject_transient_ppm: 250_000,
    ack_timeout_ppm: 60_000,
    link_drop_ppm: 50_000,
    daemon_link_down_ppm: 60_000,
    daemon_link_up_ppm: 150_000,
    session_flip_ppm: 300_000,
    crash_ppm: 50_000,
    clock_jump_ppm: 2_000,
    clock_jump_max_ms: 25 * 60 * MINUTE_MS,
    ack_latency_max_ms: 2_000,
    outage_ms: 0,
};

const BROKER_DOWN: Profile = Profile {
    name: "broker-down",
    about: "no link ever opens: every row must still end dead, none lost",
    reject_permanent_ppm: 0,
    reject_transient_ppm: 0,
    ack_timeout_ppm: 0,
    link_drop_ppm: 0,
    daemon_link_down_ppm: 0,
    daemon_link_up_ppm: 0,
    session_flip_ppm: 0,
    crash_ppm: 10_000,
    clock_jump_ppm: 0,
    clock_jump_max_ms: 0,
    ack_latency_max_ms: 50,
    outage_ms: 0,
};

const OUTAGE_10M: Profile = Profile {
    name: "outage-10m",
    about: "every link down for the first 10 virtual minutes, then up, with no other fault",
    outage_ms: 10 * MINUTE_MS,
    ..NONE
};

impl Profile {
    /// The profile named `name` (`default` is `mixed`).
    pub fn named(name: &str) -> Result<Profile, UnknownProfile> {
        let wanted = if name == "default" {
            DEFAULT_PROFILE
        } else {
            name
        };
        PROFILES
            .iter()
            .find(|p| p.name == wanted)
            .cloned()
            .ok_or_else(|| UnknownProfile(name.to_string()))
    }

    /// Whether the daemon links start open (the broker is reachable at all).
    pub fn links_start_open(&self) -> bool {
        self.name != BROKER_DOWN.name && self.outage_ms == 0
    }

    /// Whether a registered session's link may open from the start.
    pub fn sessions_may_open(&self) -> bool {
        self.name != BROKER_DOWN.name && self.outage_ms == 0
    }
}

impl Default for Profile {
    fn default() -> Self {
        MIXED
    }
}

/// `--faults` named no profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownProfile(pub String);

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault profile {:?}: choose one of ", self.0)?;
        let names: Vec<String> = PROFILES
            .iter()
            .map(|p| format!("{} ({})", p.name, p.about))
            .collect();
        write!(f, "{}; `default` is `{DEFAULT_PROFILE}`", names.join(", "))
    }
}

impl std::error::Error for UnknownProfile {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::sim::rng::PPM;

    #[test]
    fn default_is_mixed_and_names_are_unique() {
        assert_eq!(
            Profile::named("default").unwrap(),
            Profile::named("mixed").unwrap()
        );
        assert_eq!(Profile::default().name, DEFAULT_PROFILE);
        let mut names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROFILES.len());
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = Profile::named("chaos").unwrap_err().to_string();
        assert!(err.contains("\"chaos\""), "{err}");
        for p in PROFILES {
            assert!(err.contains(p.name), "{err}");
        }
    }

    #[test]
    fn the_outage_profile_starts_down_and_has_no_other_fault() {
        let outage = Profile::named("outage-10m").unwrap();
        assert_eq!(outage.outage_ms, 10 * MINUTE_MS);
        assert!(!outage.links_start_open() && !outage.sessions_may_open());
        let none = Profile::named("none").unwrap();
        assert_eq!(
            Profile {
                name: none.name,
                about: none.about,
                outage_ms: 0,
                ..outage
            },
            none
        );
        assert!(PROFILES.iter().filter(|p| p.outage_ms > 0).count() == 1);
    }

    #[test]
    fn per_dispatch_rates_leave_room_for_acceptance() {
        for p in PROFILES {
            let faults = p.reject_permanent_ppm + p.reject_transient_ppm + p.ack_timeout_ppm;
            assert!(faults < PPM, "{}", p.name);
        }
    }
}
