//! The world a policy sees while it is being loaded: `info()` and
//! `configure()` must not need the store, the links or the clock, so every
//! call here fails or answers emptily.

use sluice_policy::{Answer, Call, Reply};

/// A world for validation: `info` and `configure` must not call imports.
pub(super) struct ProbeWorld;

impl Answer for ProbeWorld {
    fn answer(&mut self, call: Call) -> Reply {
        Reply::failing(&call, "not available while loading")
    }
}
