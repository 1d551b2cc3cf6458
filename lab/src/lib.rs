//! Sluice's lab: where a policy is tried before and beside production, and
//! nothing here runs in a drainer of its own accord.
//!
//! - [`sim`]: a policy against a simulated broker and a real outbox file (the
//!   store's own code on the virtual clock, the drain loop's own wait), with
//!   seeded faults and invariants checked after every tick.
//! - [`replay`]: a trace replayed against a policy, stopping at the first
//!   difference.
//! - [`whatif`]: a candidate's decisions against a trace's inputs, row by row.
//! - [`validate`]: the checks a candidate passes — the contract, recorded
//!   traces, a short simulation (`sluice policy check`), and the trace
//!   verifier a drainer's hot swap is given for `--verify`.
//! - [`behaviour`]: a candidate and the default side by side in the simulator
//!   and against the golden traces (`sluice policy test`).
//!
//! It drives the production library (`sluice`, in `host/`) and never the
//! other way round: the daemon learns of the trace verifier only when the
//! binary hands it one ([`validate::TraceVerifier`]).

pub mod behaviour;
pub mod replay;
pub mod sim;
pub mod validate;
pub mod whatif;
