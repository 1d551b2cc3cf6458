//! The world a policy sees while it is being loaded: `info()` and
//! `configure()` must not need the store, the links or the clock, so every
//! call here fails or answers emptily.

use sluice_policy::{ClaimFilter, MeshLink, World};

/// A world for validation: `info` and `configure` must not call imports.
pub(super) struct ProbeWorld;

impl World for ProbeWorld {
    fn claim_due(
        &mut self,
        _: i64,
        _: u32,
        _: i64,
        _: &ClaimFilter,
    ) -> Result<Vec<sluice_policy::Row>, String> {
        Err("not available while loading".into())
    }
    fn settle(&mut self, _: Vec<sluice_policy::Outcome>) -> Result<u32, String> {
        Err("not available while loading".into())
    }
    fn reclaim(&mut self, _: i64) -> Result<u32, String> {
        Err("not available while loading".into())
    }
    fn expire(&mut self, _: i64, _: i64) -> Result<u32, String> {
        Err("not available while loading".into())
    }
    fn next_due_at(&mut self, _: &ClaimFilter) -> Result<Option<i64>, String> {
        Err("not available while loading".into())
    }
    fn mesh_links(&mut self) -> Vec<MeshLink> {
        Vec::new()
    }
    fn throttle(&mut self, _: &str) {}
    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<sluice_policy::SessionState> {
        vec![sluice_policy::SessionState::Absent; pubkeys.len()]
    }
    fn send_batch(
        &mut self,
        dispatches: Vec<sluice_policy::Dispatch>,
        _: u32,
    ) -> Vec<sluice_policy::SendResult> {
        vec![
            sluice_policy::SendResult::Failed("not available while loading".into());
            dispatches.len()
        ]
    }
    fn now(&mut self) -> i64 {
        0
    }
    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        vec![0; len.min(1024) as usize]
    }
    fn log(&mut self, _: sluice_policy::Level, _: &str, _: Vec<(String, String)>) {}
}
