//! What went out on the wire, beyond the guard's rules: never a row the
//! broker already has.
//!
//! Which rows a tick may send, over which link and with what content are
//! the guard's rules (`sluice::guard`): the simulator runs every policy under
//! the guard and reports a breach as its violation, so those rules have one
//! copy. This check needs what the guard cannot see, the rows' history
//! across ticks.

use super::{Checker, TickView, name, unknown};
use crate::sim::violation::ViolationKind;

impl Checker {
    pub(super) fn check_sends(&self, tick: &TickView<'_>) -> Result<(), ViolationKind> {
        for (dispatch, _) in &tick.journal.sends {
            let Some(message_id) = self
                .history
                .get(&dispatch.rowid)
                .and_then(|h| h.delivered.as_ref())
            else {
                continue;
            };
            let row = tick
                .store
                .get(dispatch.rowid)
                .map_or_else(|| unknown(dispatch.rowid), |r| name(&r));
            let why = format!(
                "the broker had already accepted it as {message_id} and that claim was settled"
            );
            return Err(ViolationKind::ResentWithoutFailure { row, why });
        }
        Ok(())
    }
}
