//! Sluice's outage-aware drain policy, as plain Rust.
//!
//! The default policy (`sluice-policy`) with two rules changed, for a broker
//! that is away for minutes rather than seconds:
//!
//! - a send the link never carried (`link_not_open…`, `link_closed`,
//!   `write_failed…`), and a session row whose session link is connecting,
//!   spends no attempt: the row is held (the contract's `hold`), not retried;
//! - such rows are held until one shared time per recheck period
//!   ([`rules::mesh_recheck_at`]), so a mesh whose link is down comes back
//!   as a whole, not row by row on each row's own backoff.
//!
//! Everything else (routing, payloads, permanent errors, `max_attempts` for
//! real transient errors, pacing, expiry) is the default policy's own code:
//! this crate supplies [`rules::OutageRules`] hooks to `sluice_policy::tick_with`.
//!
//! - [`settings`]: the default's settings plus `outage_recheck_ms`.
//! - [`rules`]: the changed per-row rules, free of I/O.
//! - [`tick`]: one tick, the default's wiring with these rules.
//!
//! `guest-outage/` binds this crate to the component model; `cargo build
//! --release` leaves the component at `target/release/sluice-outage-aware.wasm`
//! (`sluice run --policy target/release/sluice-outage-aware.wasm`), and the
//! tests find it through `SLUICE_OUTAGE_POLICY_WASM`.

pub mod rules;
pub mod settings;
pub mod tick;

pub use settings::OutageSettings;
pub use tick::tick;

/// The name the outage-aware policy reports from `info()`.
pub const POLICY_NAME: &str = "sluice-outage-aware";
/// The version the outage-aware policy reports from `info()`.
pub const POLICY_VERSION: &str = env!("CARGO_PKG_VERSION");
