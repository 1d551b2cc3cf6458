//! Traces: every export call and every import call of a policy, with
//! arguments and results, so a run can be replayed exactly.
//!
//! Format `sluice-trace` version 1 is JSON Lines (plain text: `grep` and
//! `jq` work on it; `sluice trace print` lays it out for reading):
//! - line 1, the header: format, version, the WIT package, the policy's
//!   name, version and sha256, and the settings it was configured with;
//! - then per tick: `{"ev":"tick","tick":N,"now":MS}`, one
//!   `{"ev":"call","call":"store.claim-due","args":{…},"result":…}` per
//!   import call in order, and `{"ev":"tick_end","result":{…}}` with the
//!   report, the policy's error, or the trap.
//!
//! Byte fields are base64. Calls are named as in `wit/drain.wit`.

pub mod calls;
mod reader;
mod recorder;
mod writer;

pub use reader::{TickRecord, Trace, TraceError};
pub use recorder::Recorder;
pub use writer::TraceWriter;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_policy::TickReport;

/// The format name in every trace header.
pub const TRACE_FORMAT: &str = "sluice-trace";
/// Bumped whenever a reader of the previous version would misread a trace.
pub const TRACE_FORMAT_VERSION: u32 = 1;
/// The contract the recorded policy was called through.
pub const WIT_PACKAGE: &str = sluice_contract::CONTRACT;

/// The first line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub wit: String,
    pub policy: PolicyId,
    pub settings: Vec<(String, String)>,
}

/// Which policy made the decisions in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyId {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl From<&crate::engine::PolicyMeta> for PolicyId {
    fn from(meta: &crate::engine::PolicyMeta) -> PolicyId {
        PolicyId {
            name: meta.name.clone(),
            version: meta.version.clone(),
            sha256: meta.sha256.clone(),
        }
    }
}

impl Header {
    pub fn new(policy: PolicyId, settings: Vec<(String, String)>) -> Header {
        Header {
            format: TRACE_FORMAT.into(),
            version: TRACE_FORMAT_VERSION,
            wit: WIT_PACKAGE.into(),
            policy,
            settings,
        }
    }
}

/// One line after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The host called the export `tick(now)`.
    Tick { tick: u64, now: i64 },
    /// The policy called an import.
    Call(Recorded),
    /// The export returned (or trapped).
    TickEnd { result: TickResult },
}

/// One import call as recorded: its WIT name, arguments and result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub call: String,
    pub args: Value,
    pub result: Value,
}

/// How a tick ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickResult {
    Report(TickReport),
    Error(String),
    Trap(String),
}

impl TickResult {
    /// How a tick call ended, as a trace records it.
    pub fn of(result: &Result<TickReport, crate::engine::TickError>) -> TickResult {
        match result {
            Ok(report) => TickResult::Report(report.clone()),
            Err(crate::engine::TickError::Policy(e)) => TickResult::Error(e.clone()),
            Err(crate::engine::TickError::Trap(e)) => TickResult::Trap(e.clone()),
            // The runner records the tick before it turns breaches into this.
            Err(e @ crate::engine::TickError::Violation { .. }) => TickResult::Error(e.to_string()),
        }
    }
}
