//! The binaries' log output, configured as etcd's is (`--logger`, `--log-level`,
//! `--log-outputs`): etcd's zap logger writes one JSON object per line (`level`, `ts`, `caller`,
//! `msg`, then the event's fields), which log pipelines built for etcd parse; `capnslog` (the
//! default, as in etcd 3.4) is the human format. `RUST_LOG`, when set, overrides the level with
//! a `tracing` filter. One place, so `ferrocd` and `ferrocdutl` log alike.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// etcd's `--logger`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Logger {
    /// JSON lines, as etcd's zap logger writes them.
    Zap,
    /// Human-readable lines (etcd 3.4's default logger's name).
    #[default]
    Capnslog,
}

/// etcd's `--log-level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, debugging detail included.
    Debug,
    /// The default.
    #[default]
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
    /// Errors only (zap's panic level; ferrocd logs nothing above error).
    Panic,
    /// Errors only (zap's fatal level; ferrocd logs nothing above error).
    Fatal,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
        }
    }
}

/// Where and how to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// The format.
    pub logger: Logger,
    /// The least severe level written.
    pub level: LogLevel,
    /// `default` or `stderr` (standard error), `stdout`, or file paths (appended to).
    pub outputs: Vec<String>,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            logger: Logger::default(),
            level: LogLevel::default(),
            outputs: vec![DEFAULT_OUTPUT.to_owned()],
        }
    }
}

/// etcd's name for its default output (standard error here: there is no journald writer).
pub const DEFAULT_OUTPUT: &str = "default";

/// Logging that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `default` named beside other outputs (etcd's refusal).
    #[error("multi logoutput for \"default\" is not supported yet")]
    DefaultAmongOthers,
    /// No output at all.
    #[error("--log-outputs is empty")]
    NoOutput,
    /// A log file that cannot be opened for appending.
    #[error("cannot open log output {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A global subscriber was installed already.
    #[error("logging was set up twice")]
    AlreadySet,
}

impl LogSettings {
    /// Checks the outputs as etcd does.
    pub fn validate(&self) -> Result<(), LoggingError> {
        let outputs: Vec<&String> = self.outputs.iter().filter(|o| !o.is_empty()).collect();
        if outputs.is_empty() {
            return Err(LoggingError::NoOutput);
        }
        if outputs.len() > 1 && outputs.iter().any(|o| *o == DEFAULT_OUTPUT) {
            return Err(LoggingError::DefaultAmongOthers);
        }
        Ok(())
    }

    fn writer(&self) -> Result<BoxMakeWriter, LoggingError> {
        self.validate()?;
        let mut writer: Option<BoxMakeWriter> = None;
        for output in self.outputs.iter().filter(|o| !o.is_empty()) {
            let next = match output.as_str() {
                DEFAULT_OUTPUT | "stderr" => BoxMakeWriter::new(std::io::stderr),
                "stdout" => BoxMakeWriter::new(std::io::stdout),
                path => {
                    let file = File::options()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|source| LoggingError::File {
                            path: PathBuf::from(path),
                            source,
                        })?;
                    BoxMakeWriter::new(Arc::new(file))
                }
            };
            writer = Some(match writer {
                None => next,
                Some(w) => BoxMakeWriter::new(w.and(next)),
            });
        }
        writer.ok_or(LoggingError::NoOutput)
    }

    /// Whether every output is a terminal (colours only then).
    fn ansi(&self) -> bool {
        use std::io::IsTerminal;
        self.outputs.iter().all(|o| match o.as_str() {
            DEFAULT_OUTPUT | "stderr" => std::io::stderr().is_terminal(),
            "stdout" => std::io::stdout().is_terminal(),
            _ => false,
        })
    }
}

/// Installs the global subscriber for `settings`; call once, first thing in `main` after the
/// configuration is read.
pub fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.filter()));
    let writer = settings.writer()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match settings.logger {
        Logger::Zap => builder.event_format(ZapFormat).try_init(),
        Logger::Capnslog => builder.with_ansi(settings.ansi()).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadySet)
}

/// Installs the human format on standard error at `info` (for tools without logging flags).
pub fn init_default() -> Result<(), LoggingError> {
    init(&LogSettings::default())
}

/// One JSON object per event, as etcd's zap logger writes it: `level`, `ts` (ISO 8601, UTC,
/// milliseconds), `caller` (the last directory and the file, with the line), `msg`, then the
/// event's fields in the order they were given.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZapFormat;

impl<S, N> FormatEvent<S, N> for ZapFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let caller = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => format!("{}:{line}", short_caller(file)),
            _ => meta.target().to_owned(),
        };
        write!(
            writer,
            "{{\"level\":\"{}\",\"ts\":\"{}\",\"caller\":{},\"msg\":{}",
            zap_level(*meta.level()),
            iso8601_now(),
            json_string(&caller),
            json_string(&fields.message),
        )?;
        for (name, value) in &fields.fields {
            write!(writer, ",{}:{}", json_string(name), value)?;
        }
        writeln!(writer, "}}")
    }
}

fn zap_level(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        // zap has no trace level.
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// zap's short caller: the file's directory and name (`server/main.rs`).
fn short_caller(file: &str) -> &str {
    let mut slashes = file.rmatch_indices('/').map(|(i, _)| i);
    let _last = slashes.next();
    match slashes.next() {
        Some(i) => &file[i + 1..],
        None => file,
    }
}

/// Now, as zap's ISO 8601 encoder writes it in UTC: `2006-01-02T15:04:05.000Z`.
fn iso8601_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// An event's message and fields, each field's value already JSON.
#[derive(Default)]
struct JsonFields {
    message: String,
    fields: Vec<(String, String)>,
}

impl JsonFields {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        self.fields
            .push((field.name().to_owned(), value.to_string()));
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.push(field, serde_json::Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.push(field, value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn zap_lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_max_level(Level::DEBUG)
            .event_format(ZapFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn zap_lines_carry_level_ts_caller_msg_and_typed_fields() {
        let lines = zap_lines(|| {
            tracing::info!(
                address = "127.0.0.1:2379",
                members = 3u64,
                term = -1i64,
                leader = true,
                "ready to serve \"client\" requests"
            );
            tracing::warn!(error = %std::io::Error::other("disk full"), "apply failed");
            tracing::debug!("detail");
        });
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert_eq!(first["level"], "info");
        assert_eq!(first["msg"], "ready to serve \"client\" requests");
        assert_eq!(first["address"], "127.0.0.1:2379");
        assert_eq!(first["members"], 3);
        assert_eq!(first["term"], -1);
        assert_eq!(first["leader"], true);
        let caller = first["caller"].as_str().unwrap();
        assert!(caller.starts_with("src/logging.rs:"), "{caller}");
        let ts = first["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2006-01-02T15:04:05.000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(lines[1]["level"], "warn");
        assert_eq!(lines[1]["error"], "disk full");
        assert_eq!(lines[2]["level"], "debug");
    }

    #[test]
    fn the_order_of_keys_is_zaps() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .event_format(ZapFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!(k = 1, "m"));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let keys: Vec<usize> = ["\"level\"", "\"ts\"", "\"caller\"", "\"msg\"", "\"k\""]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn short_callers_keep_the_last_directory() {
        assert_eq!(short_caller("crates/server/src/main.rs"), "src/main.rs");
        assert_eq!(short_caller("main.rs"), "main.rs");
        assert_eq!(short_caller("src/main.rs"), "src/main.rs");
    }

    #[test]
    fn default_cannot_be_mixed_with_other_outputs() {
        let mixed = LogSettings {
            outputs: vec!["default".into(), "stdout".into()],
            ..LogSettings::default()
        };
        assert!(matches!(
            mixed.validate(),
            Err(LoggingError::DefaultAmongOthers)
        ));
        let none = LogSettings {
            outputs: vec![String::new()],
            ..LogSettings::default()
        };
        assert!(matches!(none.validate(), Err(LoggingError::NoOutput)));
        let files = LogSettings {
            outputs: vec!["stderr".into(), "/tmp/x.log".into()],
            ..LogSettings::default()
        };
        assert!(files.validate().is_ok());
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_is_an_error() {
        let bad = LogSettings {
            outputs: vec!["/nonexistent-dir/ferrocd.log".into()],
            ..LogSettings::default()
        };
        assert!(matches!(bad.writer(), Err(LoggingError::File { .. })));
    }
}
