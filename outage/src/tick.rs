//! One tick of the outage-aware policy: the default policy's tick
//! (`sluice_policy::tick_with`) with [`OutageRules`] for the per-row rules.
//!
//! The host already leaves the daemon rows of a mesh whose link is down
//! unclaimed (the default's claim filter) and wakes the loop when a link
//! opens; what this policy adds is for the rows that are claimed anyway:
//! those whose send found the link gone, and session rows of a session whose
//! link is connecting.

use crate::rules::OutageRules;
use crate::settings::OutageSettings;
use sluice_policy::{ClaimSize, TickReport, TimestampMs, World, tick_with};

/// Runs one tick against `world`; `claim` is carried from tick to tick.
pub fn tick<W: World>(
    world: &mut W,
    settings: &OutageSettings,
    claim: &mut ClaimSize,
    now: TimestampMs,
) -> Result<TickReport, String> {
    let rules = OutageRules {
        recheck_ms: settings.outage_recheck_ms,
    };
    tick_with(world, &settings.policy, claim, now, &rules)
}
