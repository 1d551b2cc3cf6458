//! A [`World`] that passes every call through and, when recording, writes it
//! to a trace.

use super::{Event, Recorded, TickResult, TraceWriter, calls};
use sluice_policy::{Answer, Call, Reply, TimestampMs, World};

/// Wraps a world; records when it holds a writer.
pub struct Recorder<W> {
    pub inner: W,
    writer: Option<TraceWriter>,
    ticks: u64,
}

impl<W> Recorder<W> {
    pub fn new(inner: W, writer: Option<TraceWriter>) -> Recorder<W> {
        Recorder {
            inner,
            writer,
            ticks: 0,
        }
    }

    pub fn is_recording(&self) -> bool {
        self.writer.is_some()
    }

    /// Marks the export call `tick(now)`.
    pub fn begin_tick(&mut self, now: TimestampMs) {
        self.ticks += 1;
        let tick = self.ticks;
        if let Some(writer) = self.writer.as_mut() {
            writer.event(&Event::Tick { tick, now });
        }
    }

    /// Marks how the export returned.
    pub fn end_tick(&mut self, result: TickResult) {
        if let Some(writer) = self.writer.as_mut() {
            writer.event(&Event::TickEnd { result });
        }
    }

    /// Flushes and closes the trace, if any.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self.writer.take() {
            Some(writer) => writer.finish(),
            None => Ok(()),
        }
    }
}

impl<W: World> Answer for Recorder<W> {
    fn answer(&mut self, call: Call) -> Reply {
        let Some(writer) = self.writer.as_mut() else {
            return call.on(&mut self.inner);
        };
        let (name, args) = (call.name(), calls::args(&call));
        let reply = call.on(&mut self.inner);
        writer.event(&Event::Call(Recorded {
            call: name.into(),
            args,
            result: calls::result(&reply),
        }));
        reply
    }
}
