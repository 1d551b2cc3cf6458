//! The policies and golden traces that ship inside the `sluice` binary, so
//! the walkthroughs work wherever it was installed, not only in a checkout
//! (`sluice policy bundled DIR` writes them out).
//!
//! Owns: the list of bundled components with what each is for, the golden
//! traces (`tests/golden/`, embedded by `build.rs`), and writing them to a
//! folder. Not here: loading a policy (`engine`) or replaying a trace
//! (`replay`, `validate`).

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// A policy component that ships with the binary.
pub struct BundledPolicy {
    /// Its file name when written out.
    pub file: &'static str,
    pub bytes: &'static [u8],
    /// What it is for, in a line.
    pub purpose: &'static str,
}

/// Where the build left the faulty test policy, as a file: for the tests
/// and benches, which load it by path. A path on the machine that built
/// this library; nothing in the daemon reads it.
#[doc(hidden)]
pub const FAULTY_POLICY_FILE: &str = env!("SLUICE_FAULTY_POLICY_WASM");

/// Where the build left the outage-aware policy, as a file (see above).
#[doc(hidden)]
pub const OUTAGE_POLICY_FILE: &str = env!("SLUICE_OUTAGE_POLICY_WASM");

/// The bundled components, the embedded default first.
pub const POLICIES: &[BundledPolicy] = &[
    BundledPolicy {
        file: "sluice-default.wasm",
        bytes: crate::engine::DEFAULT_POLICY_WASM,
        purpose: "the default policy, the one `sluice run` embeds",
    },
    BundledPolicy {
        file: "sluice-outage-aware.wasm",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/outage_policy.wasm")),
        purpose: "the default's rules, but sends to a link that is down spend no attempt (docs/policies.md)",
    },
    BundledPolicy {
        file: "sluice-faulty.wasm",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/faulty_policy.wasm")),
        purpose: "the default with faults on request (--setting fault=trap, double_send, …), to watch a refusal and a rollback",
    },
];

/// The golden traces, one per rule of the default policy: (file name, bytes).
pub const GOLDEN_TRACES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/golden_traces.rs"));

/// The folder under `DIR` that `write` puts the golden traces in.
pub const GOLDEN_DIR: &str = "golden";

/// One file written: where, and what it is.
pub struct Written {
    pub path: PathBuf,
    pub what: String,
}

/// Writes every bundled policy into `dir` and the golden traces into
/// `dir/golden`, creating the folders; files already there are replaced.
pub fn write(dir: &Path) -> Result<Vec<Written>, String> {
    let golden = dir.join(GOLDEN_DIR);
    std::fs::create_dir_all(&golden)
        .map_err(|e| format!("cannot create {}: {e}", golden.display()))?;
    let put = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let mut written = Vec::new();
    for policy in POLICIES {
        let path = dir.join(policy.file);
        put(&path, policy.bytes)?;
        let sha = hex::encode(Sha256::digest(policy.bytes));
        written.push(Written {
            path,
            what: format!("{} (sha256 {})", policy.purpose, &sha[..12]),
        });
    }
    for (name, bytes) in GOLDEN_TRACES {
        put(&golden.join(name), bytes)?;
    }
    written.push(Written {
        path: golden,
        what: format!(
            "{} golden traces of the default policy, for --verify",
            GOLDEN_TRACES.len()
        ),
    });
    Ok(written)
}
