//! Writes a trace, one line per event.

use super::{Event, Header};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// A trace being written. Lines are buffered and flushed at the end of every
/// tick, so a run that is killed leaves whole ticks behind.
pub struct TraceWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The first write error; later events are dropped and the run goes on.
    failed: Option<String>,
}

impl TraceWriter {
    pub fn create(path: &Path, header: &Header) -> std::io::Result<TraceWriter> {
        let file = File::create(path)?;
        TraceWriter::new(Box::new(file), header)
    }

    pub fn new(out: Box<dyn Write + Send>, header: &Header) -> std::io::Result<TraceWriter> {
        let mut writer = TraceWriter {
            out: BufWriter::new(out),
            failed: None,
        };
        let line = serde_json::to_string(header).map_err(std::io::Error::other)?;
        writeln!(writer.out, "{line}")?;
        Ok(writer)
    }

    pub fn event(&mut self, event: &Event) {
        if self.failed.is_some() {
            return;
        }
        let written = serde_json::to_string(event)
            .map_err(std::io::Error::other)
            .and_then(|line| writeln!(self.out, "{line}"));
        let flushed = match (written, event) {
            (Ok(()), Event::TickEnd { .. }) => self.out.flush(),
            (other, _) => other,
        };
        if let Err(e) = flushed {
            tracing::error!(target: "sluice", "trace write failed, recording stops: {e}");
            self.failed = Some(e.to_string());
        }
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()?;
        match self.failed {
            Some(e) => Err(std::io::Error::other(e)),
            None => Ok(()),
        }
    }
}
