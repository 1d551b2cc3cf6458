//! A [`World`] that passes every call through and, when recording, writes it
//! to a trace.

use super::{Call, Event, TickResult, TraceWriter, calls};
use serde::Serialize;
use serde_json::Value;
use sluice_policy::{
    ClaimFilter, Dispatch, Level, MeshLink, Outcome, Row, SendResult, SessionState, TimestampMs,
    World,
};

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

    fn record<R: Serialize>(&mut self, call: &str, args: impl FnOnce() -> Value, result: &R) {
        if let Some(writer) = self.writer.as_mut() {
            let result = serde_json::to_value(result).unwrap_or(Value::Null);
            writer.event(&Event::Call(Call {
                call: call.into(),
                args: args(),
                result,
            }));
        }
    }
}

impl<W: World> World for Recorder<W> {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        let result = self.inner.claim_due(now, limit, lease_ms, skip);
        self.record(
            calls::CLAIM_DUE,
            || calls::claim_due(now, limit, lease_ms, skip),
            &result,
        );
        result
    }

    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        let args = self.writer.as_ref().map(|_| calls::settle(&outcomes));
        let result = self.inner.settle(outcomes);
        self.record(calls::SETTLE, || args.unwrap_or(Value::Null), &result);
        result
    }

    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        let result = self.inner.reclaim(now);
        self.record(calls::RECLAIM, || calls::now_only(now), &result);
        result
    }

    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        let result = self.inner.expire(now, cutoff);
        self.record(calls::EXPIRE, || calls::expire(now, cutoff), &result);
        result
    }

    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String> {
        let result = self.inner.next_due_at(skip);
        self.record(calls::NEXT_DUE_AT, || calls::next_due_at(skip), &result);
        result
    }

    fn mesh_links(&mut self) -> Vec<MeshLink> {
        let result = self.inner.mesh_links();
        self.record(calls::MESH_LINKS, calls::none, &result);
        result
    }

    fn throttle(&mut self, mesh: &str) {
        self.record(calls::THROTTLE, || calls::throttle(mesh), &());
        self.inner.throttle(mesh);
    }

    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState> {
        let args = self
            .writer
            .as_ref()
            .map(|_| calls::session_states(&pubkeys));
        let result = self.inner.session_states(pubkeys);
        self.record(
            calls::SESSION_STATES,
            || args.unwrap_or(Value::Null),
            &result,
        );
        result
    }

    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let args = self
            .writer
            .as_ref()
            .map(|_| calls::send_batch(&dispatches, ack_timeout_ms));
        let result = self.inner.send_batch(dispatches, ack_timeout_ms);
        self.record(calls::SEND_BATCH, || args.unwrap_or(Value::Null), &result);
        result
    }

    fn now(&mut self) -> TimestampMs {
        let result = self.inner.now();
        self.record(calls::NOW, calls::none, &result);
        result
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let result = self.inner.random_bytes(len);
        self.record(
            calls::RANDOM_BYTES,
            || calls::random_bytes(len),
            &calls::bytes_text(&result),
        );
        result
    }

    fn log(&mut self, level: Level, event: &str, fields: Vec<(String, String)>) {
        self.record(calls::LOG, || calls::log(level, event, &fields), &());
        self.inner.log(level, event, fields);
    }
}
