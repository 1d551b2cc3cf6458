//! The simulated host's links: which daemon links are up, what state each
//! session link is in, and how both change between ticks.
//!
//! Owns: link states and their flips (a daemon link goes down and
//! reconnects; a session registers, connects, opens, goes away), and the
//! `link_not_open` answers a send on a link that is not open gets. Not here:
//! what the broker answers on an open link (`broker`).

use super::profile::{FaultCounts, Profile};
use super::rng::SimRng;
use sluice_policy::{MeshLink, Route, SessionState, TimestampMs};
use std::collections::BTreeMap;

/// Where a flipping session link lands: weights of absent, connecting, open.
const SESSION_FLIP_WEIGHTS: [u32; 3] = [20, 30, 50];
/// Where a session link starts: weights of open, connecting, absent.
const SESSION_START_WEIGHTS: [u32; 3] = [70, 20, 10];

/// The links the simulated host keeps.
#[derive(Clone, Debug)]
pub struct SimLinks {
    profile: Profile,
    rng: SimRng,
    /// Daemon links in a fixed order, with whether each is up.
    daemon_up: BTreeMap<String, bool>,
    /// Registered sessions; any other key is `absent`.
    sessions: BTreeMap<String, SessionState>,
}

impl SimLinks {
    pub fn new(
        profile: Profile,
        mut rng: SimRng,
        meshes: &[String],
        sessions: &[String],
    ) -> SimLinks {
        let up = profile.links_start_open();
        let daemon_up = meshes.iter().map(|m| (m.clone(), up)).collect();
        let start = |rng: &mut SimRng| match profile.sessions_may_open() {
            true => [
                SessionState::Open,
                SessionState::Connecting,
                SessionState::Absent,
            ][rng.weighted(&SESSION_START_WEIGHTS)],
            false => SessionState::Connecting,
        };
        let sessions = sessions
            .iter()
            .map(|key| (key.clone(), start(&mut rng)))
            .collect();
        SimLinks {
            profile,
            rng,
            daemon_up,
            sessions,
        }
    }

    /// Between ticks: daemon links go down and come back, sessions come and go.
    pub fn flip(&mut self, faults: &mut FaultCounts) {
        for up in self.daemon_up.values_mut() {
            let flip_ppm = if *up {
                self.profile.daemon_link_down_ppm
            } else {
                self.profile.daemon_link_up_ppm
            };
            if self.rng.chance(flip_ppm) {
                *up = !*up;
                *faults
                    .entry(if *up {
                        "daemon_link_up"
                    } else {
                        "daemon_link_down"
                    })
                    .or_default() += 1;
            }
        }
        for state in self.sessions.values_mut() {
            if self.rng.chance(self.profile.session_flip_ppm) {
                let states = [
                    SessionState::Absent,
                    SessionState::Connecting,
                    SessionState::Open,
                ];
                *state = states[self.rng.weighted(&SESSION_FLIP_WEIGHTS)];
                *faults.entry("session_flip").or_default() += 1;
            }
        }
    }

    /// The profile's opening outage is over: every daemon link and every
    /// registered session link opens.
    pub fn open_all(&mut self) {
        self.daemon_up.values_mut().for_each(|up| *up = true);
        self.sessions
            .values_mut()
            .for_each(|state| *state = SessionState::Open);
    }

    /// Meshes with a daemon link, open or not, in a fixed order.
    pub fn meshes(&self) -> Vec<String> {
        self.daemon_up.keys().cloned().collect()
    }

    /// The daemon links as the policy sees them. The simulated broker sets no
    /// rate limit, so every budget is unlimited.
    pub fn mesh_links(&self, now: TimestampMs) -> Vec<MeshLink> {
        self.daemon_up
            .iter()
            .map(|(slug, up)| MeshLink {
                slug: slug.clone(),
                open: *up,
                tokens: u32::MAX,
                next_token_at: now,
                per_minute: 0,
            })
            .collect()
    }

    pub fn session_states(&self, pubkeys: &[String]) -> Vec<SessionState> {
        pubkeys
            .iter()
            .map(|key| {
                self.sessions
                    .get(key)
                    .copied()
                    .unwrap_or(SessionState::Absent)
            })
            .collect()
    }

    /// Ok when a send on `route` reaches the broker; else the host's failure text.
    pub fn check_open(&self, route: &Route) -> Result<(), String> {
        match route {
            Route::Daemon(mesh) => match self.daemon_up.get(mesh) {
                None => Err(format!("link_not_open: unknown mesh {mesh}")),
                Some(false) => Err("link_not_open".into()),
                Some(true) => Ok(()),
            },
            Route::Session(key) => match self.sessions.get(key) {
                Some(SessionState::Open) => Ok(()),
                Some(_) => Err("link_not_open".into()),
                None => Err("link_not_open: no session link".into()),
            },
        }
    }

    /// The link of `route` closed: a daemon link is down and a session back
    /// to connecting, until a later flip reconnects them.
    pub fn close(&mut self, route: &Route) {
        match route {
            Route::Daemon(mesh) => _ = self.daemon_up.insert(mesh.clone(), false),
            Route::Session(key) => _ = self.sessions.insert(key.clone(), SessionState::Connecting),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn without_faults_links_never_change() {
        let mut links = SimLinks::new(
            Profile::named("none").unwrap(),
            SimRng::new(1),
            &["alpha".into()],
            &["k".into()],
        );
        let before = links.session_states(&["k".into()]);
        let mut faults = FaultCounts::new();
        for _ in 0..1_000 {
            links.flip(&mut faults);
        }
        assert!(faults.is_empty());
        assert_eq!(links.session_states(&["k".into()]), before);
        assert_eq!(links.check_open(&Route::Daemon("alpha".into())), Ok(()));
        assert_eq!(
            links.session_states(&["nobody".into()]),
            [SessionState::Absent]
        );
    }

    #[test]
    fn links_flip_and_a_closed_link_stays_closed_until_a_flip() {
        let mut links = SimLinks::new(
            Profile::named("harsh").unwrap(),
            SimRng::new(2),
            &["alpha".into()],
            &["k".into()],
        );
        links.close(&Route::Daemon("alpha".into()));
        assert_eq!(
            links.check_open(&Route::Daemon("alpha".into())),
            Err("link_not_open".into())
        );
        let mut faults = FaultCounts::new();
        for _ in 0..1_000 {
            links.flip(&mut faults);
        }
        assert!(
            faults["daemon_link_up"] > 0
                && faults["daemon_link_down"] > 0
                && faults["session_flip"] > 0,
            "{faults:?}"
        );
    }

    #[test]
    fn with_the_broker_down_nothing_ever_opens() {
        let mut links = SimLinks::new(
            Profile::named("broker-down").unwrap(),
            SimRng::new(3),
            &["alpha".into()],
            &["k".into()],
        );
        let mut faults = FaultCounts::new();
        for _ in 0..1_000 {
            links.flip(&mut faults);
            assert!(links.check_open(&Route::Daemon("alpha".into())).is_err());
            assert!(links.check_open(&Route::Session("k".into())).is_err());
        }
    }
}
