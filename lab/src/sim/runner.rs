//! Which policy the simulator drives, how one tick of it is called, and where
//! the trace of the run goes.
//!
//! Owns: [`SimPolicy`] (the real component, or the policy crate linked
//! natively for fast property runs), the recorded tick (`tick(now)` marked
//! in the trace exactly as `drain` marks it, so `sluice replay` reads a
//! simulated run like a real one), and [`TraceSink`]. Not here: the world the
//! policy sees (`world`), what happens between ticks (`Sim`).

use super::world::SimWorld;
use sluice::engine::{LoadError, PolicyEngine, PolicyMeta};
use sluice::runner::Runner;
use sluice::trace::{Header, PolicyId, TraceWriter};
use sluice_policy::Settings;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The policy a simulation runs.
#[derive(Clone, Copy)]
pub enum SimPolicy<'a> {
    /// A loaded component, configured with its settings when it was loaded:
    /// the real compiled guest, as `sluice run` runs it. Load it once and
    /// share it between runs; each run makes its own instance.
    Component(&'a PolicyEngine),
    /// The default policy crate linked natively, with these settings.
    Native(&'a [(String, String)]),
}

impl SimPolicy<'_> {
    /// The settings the policy was configured with.
    pub fn settings(&self) -> &[(String, String)] {
        match self {
            SimPolicy::Component(engine) => engine.settings(),
            SimPolicy::Native(settings) => settings,
        }
    }

    /// Who makes the decisions, for the trace header.
    pub fn policy_id(&self) -> PolicyId {
        match self {
            SimPolicy::Component(engine) => PolicyId::from(engine.meta()),
            SimPolicy::Native(_) => PolicyId::from(&PolicyMeta::native()),
        }
    }
}

/// Where a run's trace goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceSink {
    /// Not recorded (fastest; a failing seed can be rerun with a sink).
    Off,
    /// Kept in memory, up to [`TRACE_MEMORY_BYTES_MAX`]; `Sim::finish_trace` returns it.
    Memory,
    /// Written to this file as the run goes.
    File(PathBuf),
}

/// The most bytes of trace kept in memory: bounds what a long run can hold.
/// Past it the recording stops (the writer reports the error) and the trace
/// ends early; record to a file for longer runs.
pub const TRACE_MEMORY_BYTES_MAX: usize = 1 << 30;

/// A trace kept in memory, shared with the writer that fills it.
#[derive(Clone, Debug, Default)]
pub struct TraceBuffer(Arc<Mutex<Vec<u8>>>);

impl TraceBuffer {
    /// The bytes written so far, leaving the buffer empty.
    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut bytes| std::mem::take(&mut *bytes))
            .unwrap_or_default()
    }
}

impl Write for TraceBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("trace buffer poisoned"))?;
        if bytes.len().saturating_add(data.len()) > TRACE_MEMORY_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "trace exceeds {TRACE_MEMORY_BYTES_MAX} bytes in memory"
            )));
        }
        bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TraceSink {
    /// The sink of the `n`-th loop of a simulation: each loop has a trace of
    /// its own (a policy instance replays one loop's ticks). The first
    /// writes to the file given; the others beside it, `NAME.loopN.trace`.
    pub fn for_loop(&self, n: u64) -> TraceSink {
        match self {
            TraceSink::File(path) if n > 0 => TraceSink::File(loop_trace_path(path, n)),
            other => other.clone(),
        }
    }
}

/// `run.trace` → `run.loop1.trace` for loop 1; loop 0 keeps the name.
pub fn loop_trace_path(path: &std::path::Path, n: u64) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.loop{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.loop{n}"),
    };
    path.with_file_name(name)
}

/// Opens the sink: a writer with the header written, and the buffer for `Memory`.
pub fn open_trace(
    sink: &TraceSink,
    header: &Header,
) -> std::io::Result<(Option<TraceWriter>, Option<TraceBuffer>)> {
    match sink {
        TraceSink::Off => Ok((None, None)),
        TraceSink::Memory => {
            let buffer = TraceBuffer::default();
            Ok((
                Some(TraceWriter::new(Box::new(buffer.clone()), header)?),
                Some(buffer),
            ))
        }
        TraceSink::File(path) => Ok((Some(TraceWriter::create(path, header)?), None)),
    }
}

/// The world as the policy sees it: simulated, guarded, recorded when asked.
pub type RecordedWorld = sluice::runner::Guarded<SimWorld>;

/// A policy bound to its simulated world.
pub type SimRunner = Runner<SimWorld>;

/// Binds `policy` to `world`: a fresh instance of the component, or the
/// native policy with `settings`.
pub fn bind(
    policy: &SimPolicy<'_>,
    world: RecordedWorld,
    settings: Settings,
) -> Result<SimRunner, LoadError> {
    Ok(match policy {
        SimPolicy::Component(engine) => Runner::Component(Box::new(engine.runner(world)?)),
        SimPolicy::Native(_) => Runner::Native {
            world: Box::new(world),
            settings,
            claim: sluice_policy::ClaimSize::default(),
        },
    })
}
