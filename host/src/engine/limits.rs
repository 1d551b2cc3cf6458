//! The bounds on a guest: memory, time per tick, and the epoch clock.

use super::GuestState;
use std::time::Duration;
use wasmtime::{Engine, StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

/// Linear memory one policy instance may grow to. Stops a policy that eats
/// memory from taking the host down with it; the default policy needs under
/// 2 MiB for a batch of 10,000 rows.
pub const GUEST_MEMORY_BYTES_MAX: usize = 64 << 20;

/// Guest CPU time (time in imports excluded) one tick may use. Stops a
/// policy that loops; the default policy needs well under a millisecond.
pub const TICK_GUEST_TIME_MAX: Duration = Duration::from_secs(1);

/// How often the engine's epoch advances: the granularity of the budget check.
const EPOCH_PERIOD: Duration = Duration::from_millis(10);

pub fn store_limits() -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(GUEST_MEMORY_BYTES_MAX)
        .instances(16)
        .tables(64)
        .table_elements(1 << 16)
        .memories(4)
        .trap_on_grow_failure(true)
        .build()
}

/// Called at each epoch while the guest runs: interrupts it once its own time
/// in this tick exceeds the budget. (Takes the context by value: that is
/// the shape wasmtime's callback has.)
#[allow(clippy::needless_pass_by_value)]
pub fn guest_time_check<W>(
    ctx: StoreContextMut<'_, GuestState<W>>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = ctx.data();
    let guest_time = state
        .tick_started
        .elapsed()
        .saturating_sub(state.import_time);
    if guest_time > TICK_GUEST_TIME_MAX {
        Ok(UpdateDeadline::Interrupt)
    } else {
        Ok(UpdateDeadline::Continue(1))
    }
}

/// Starts the thread that advances `engine`'s epoch for as long as the
/// engine lives. Without it a policy that loops would never be interrupted,
/// so failing to start it fails the engine.
pub fn start_epoch_clock(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_PERIOD);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
}
