//! Where and how the `sluice` command logs: stderr, filtered by `RUST_LOG`,
//! as text (the default) or one JSON object per line (`--log-format json`).
//!
//! Owns: the subscriber and the process-wide format choice. Not here: what is
//! logged (the daemon, the links, `world::policy_log`).
//!
//! Policy log lines carry their event name twice over: the message starts
//! with it (`drain_max_attempts id=… attempts=…`, so a grep for the name
//! works in both formats) and JSON lines also have it as the top-level
//! `event` key. Text lines leave that field out: it would only repeat the
//! message's first word.

use clap::ValueEnum;
use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The field policy log lines name their event in (see `world::policy_log`).
pub const EVENT_FIELD: &str = "event";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-… WARN drain_max_attempts id=… attempts=…`, for people. The
    /// default, on a terminal or not: journald and files keep it readable.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`,
    /// `event` and other fields at the top level), for log pipelines.
    Json,
}

/// Set once by `cli::execute`, before any subcommand starts logging.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Records the `--log-format` choice for [`init_logging`]; the first call wins.
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// Logs to stderr in the chosen format; `RUST_LOG` overrides `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match FORMAT.get().copied().unwrap_or_default() {
        // Colours only for a person at a terminal, not in journald or a file.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(WithoutEvent(DefaultFields::new()))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The default text field formatter minus the [`EVENT_FIELD`] field.
struct WithoutEvent(DefaultFields);

impl<'a> MakeVisitor<Writer<'a>> for WithoutEvent {
    type Visitor = SkipEvent<<DefaultFields as MakeVisitor<Writer<'a>>>::Visitor>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        SkipEvent(self.0.make_visitor(target))
    }
}

struct SkipEvent<V>(V);

impl<V: Visit> Visit for SkipEvent<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != EVENT_FIELD {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() != EVENT_FIELD {
            self.0.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() != EVENT_FIELD {
            self.0.record_debug(field, value);
        }
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for SkipEvent<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for SkipEvent<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}
