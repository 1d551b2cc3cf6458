//! Sluice's default drain policy, as plain Rust.
//!
//! - [`types`]: the contract's shapes and its [`World`] trait, from
//!   `sluice_contract` (crate `contract/`), re-exported.
//! - [`settings`]: the tunable constants and their checks.
//! - [`classify`]: the one error classifier for both link kinds.
//! - [`rules`]: the per-row decisions, free of I/O.
//! - [`pace`]: spending each member's send budget, free of I/O.
//! - [`claim`]: how many rows a tick claims, adapted tick to tick, free of I/O.
//! - [`tick`]: one tick, wiring the rules to a [`World`]; its [`Rules`] hooks
//!   let another policy change a rule and keep the rest.
//!
//! `guest/` binds this crate to the component model; the host links it
//! natively as the baseline of the benchmark. Both run the same code.

pub mod claim;
pub mod classify;
pub mod pace;
pub mod rules;
pub mod settings;
pub mod tick;

pub use claim::ClaimSize;
pub use settings::{SettingError, Settings};
pub use sluice_contract::*;
pub use tick::{DefaultRules, Rules, tick, tick_with};

/// The name the default policy reports from `info()`.
pub const POLICY_NAME: &str = "sluice-default";
/// The version the default policy reports from `info()`.
pub const POLICY_VERSION: &str = env!("CARGO_PKG_VERSION");
