//! Sluice: drains a SQLite transactional outbox to a message broker, with the
//! drain policy as a WebAssembly component.
//!
//! The map, in the order a row travels:
//! - [`config`]: the TOML file `sluice run` reads.
//! - `sluice_store` (crate `store/`): the outbox table — claim, settle, reclaim, expire.
//! - `sluice_links` (crate `links/`): broker WebSockets, the wire protocol, the test broker.
//! - [`world`]: the host side of every import, over the store and the links.
//! - [`engine`]: wasmtime — compiling, validating and running a policy component under limits.
//! - [`runner`]: one tick of a policy, component or native, recorded when asked.
//! - [`drain`]: the tick/wake loop (`step` and `run`).
//! - [`trace`]: recording every call of a policy, and reading it back.
//! - [`replay`]: replaying a trace against a policy, stopping at the first difference.
//! - [`validate`]: a candidate policy checked before it goes live: contract, settings, recorded traces.
//! - [`whatif`]: a candidate policy's decisions against a trace's inputs, row by row.
//! - [`sim`]: a policy against a simulated outbox and broker, with virtual time, seeded faults and invariants.
//! - [`wake`]: how `sluice enqueue` wakes running drainers.
//! - [`daemon`]: assembles the above for `run`, `demo` and the benchmark.
//! - [`metrics`]: `sluice run --metrics`: Prometheus metrics over HTTP.
//! - [`demo`]: the embedded demonstration.
//! - [`cli`]: the `sluice` command line.
//!
//! The policy's rules live in `sluice_policy` (crate `policy/`), compiled to a
//! component by `guest/` and embedded here by `build.rs`.

pub mod behaviour;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod drain;
pub mod engine;
pub mod guard;
pub mod linkstatus;
pub mod metrics;
pub mod policy_settings;
pub mod replay;
pub mod runner;
pub mod sim;
pub mod swap;
pub mod trace;
pub mod validate;
pub mod wake;
pub mod watch;
pub mod whatif;
pub mod world;

pub use sluice_links as links;
pub use sluice_policy as policy;
pub use sluice_store as store;
