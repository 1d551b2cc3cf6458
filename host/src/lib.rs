//! Sluice: drains a SQLite transactional outbox to a message broker, with the
//! drain policy as a WebAssembly component. This is the production library:
//! what a drainer runs. The lab (simulator, replay, what-if, checks) is
//! `sluice_lab` in `lab/`, the test broker `sluice_test_broker` in
//! `test-broker/`, and the `sluice` command `sluice_cli` in `cli/`.
//!
//! The map, in the order a row travels:
//! - [`config`]: the TOML file `sluice run` reads.
//! - `sluice_store` (crate `store/`): the outbox table — claim, settle, reclaim, expire.
//! - `sluice_links` (crate `links/`): broker WebSockets and the wire protocol.
//! - [`world`]: the host side of every import, over the store and the links.
//! - [`engine`]: wasmtime — compiling, validating and running a policy component under limits.
//! - [`runner`]: one tick of a policy, component or native, recorded when asked.
//! - [`drain`]: the tick/wake loop (`step` and `run`).
//! - [`trace`]: recording every call of a policy, and reading it back.
//! - [`wake`]: how `sluice enqueue` wakes running drainers.
//! - [`daemon`]: assembles the above for `run`, `demo` and the benchmark.
//! - [`swap`]: the live policy slot, hot swaps and rollbacks.
//! - [`metrics`]: `sluice run --metrics`: Prometheus metrics over HTTP.
//!
//! The policy's rules live in `sluice_policy` (crate `policy/`), compiled to a
//! component by `guest/` and embedded here by `build.rs`.

pub mod bundled;
pub mod config;
pub mod control;
pub mod daemon;
pub mod drain;
pub mod engine;
pub mod guard;
pub mod linkstatus;
pub mod metrics;
pub mod policy_settings;
pub mod runner;
pub mod swap;
pub mod trace;
pub mod wake;
pub mod watch;
pub mod world;

pub use sluice_links as links;
pub use sluice_policy as policy;
pub use sluice_store as store;
