//! Reads a trace back, grouped by tick.

use super::{Event, Header, Recorded, TRACE_FORMAT, TRACE_FORMAT_VERSION, TickResult, WIT_PACKAGE};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a sluice trace: {message}")]
    NotTrace { path: PathBuf, message: String },
    #[error(
        "trace {path} is format version {found}; this sluice reads version {TRACE_FORMAT_VERSION}: replay it with the sluice that recorded it"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("trace {path} was recorded through {found}; this sluice speaks {WIT_PACKAGE}")]
    Contract { path: PathBuf, found: String },
    #[error("trace {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One recorded tick.
#[derive(Clone, Debug, PartialEq)]
pub struct TickRecord {
    pub tick: u64,
    pub now: i64,
    pub calls: Vec<Recorded>,
    /// None when the trace ends inside this tick (the recording was cut off).
    pub result: Option<TickResult>,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub header: Header,
    pub ticks: Vec<TickRecord>,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
            path: path.into(),
            source,
        })?;
        Trace::read(path, std::io::BufReader::new(file))
    }

    pub fn read(path: &Path, input: impl BufRead) -> Result<Trace, TraceError> {
        let mut lines = input.lines().enumerate();
        let io = |source| TraceError::Io {
            path: path.into(),
            source,
        };
        let first = match lines.next() {
            Some((_, line)) => line.map_err(io)?,
            None => {
                return Err(TraceError::NotTrace {
                    path: path.into(),
                    message: "the file is empty".into(),
                });
            }
        };
        let header: Header = serde_json::from_str(&first).map_err(|e| TraceError::NotTrace {
            path: path.into(),
            message: format!("its first line is not a trace header ({e})"),
        })?;
        if header.format != TRACE_FORMAT {
            return Err(TraceError::NotTrace {
                path: path.into(),
                message: format!("format {:?}", header.format),
            });
        }
        if header.version != TRACE_FORMAT_VERSION {
            return Err(TraceError::Version {
                path: path.into(),
                found: header.version,
            });
        }
        if header.wit != WIT_PACKAGE {
            return Err(TraceError::Contract {
                path: path.into(),
                found: header.wit.clone(),
            });
        }
        let mut ticks: Vec<TickRecord> = Vec::new();
        for (index, line) in lines {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| TraceError::Line {
                path: path.into(),
                line: index + 1,
                message,
            };
            let event: Event = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            match event {
                Event::Tick { tick, now } => ticks.push(TickRecord {
                    tick,
                    now,
                    calls: Vec::new(),
                    result: None,
                }),
                Event::Call(call) => match ticks.last_mut() {
                    Some(t) if t.result.is_none() => t.calls.push(call),
                    _ => return Err(bad("an import call outside a tick".into())),
                },
                Event::TickEnd { result } => match ticks.last_mut() {
                    Some(t) if t.result.is_none() => t.result = Some(result),
                    _ => return Err(bad("a tick end without its tick".into())),
                },
            }
        }
        Ok(Trace { header, ticks })
    }

    /// Import calls in the whole trace.
    pub fn calls(&self) -> usize {
        self.ticks.iter().map(|t| t.calls.len()).sum()
    }
}
