//! Logging in gunicorn's words and format, for the supervisor and every shard.
//!
//! It owns the error log (`[%Y-%m-%d %H:%M:%S %z] [PID] [LEVEL] message`, gunicorn's `glogging.py`
//! format, so existing log scrapers keep working), the sinks both logs write to, reopening log files
//! on SIGUSR1, and escaping anything a client sent before it reaches a log line. It must not decide
//! what is logged; callers use `tracing` macros, and `critical = true` on an `error!` marks gunicorn's
//! CRITICAL level, which `tracing` lacks.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

pub use crate::logjson::LogFormat;

/// Where a log goes: `-` is stderr for the error log and stdout for the access log, as in gunicorn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogTarget {
    /// The process's standard error.
    Stderr,
    /// The process's standard output.
    Stdout,
    /// A file opened for appending; every process appends whole lines to it.
    File(PathBuf),
}

/// `--log-level`: gunicorn's level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-connection detail.
    Debug,
    /// Lifecycle events (the default).
    Info,
    /// Recoverable trouble.
    #[value(alias = "warn")]
    Warning,
    /// Failures.
    Error,
    /// Only what needs an operator now; hitcore logs these at the error threshold.
    Critical,
}

impl LogLevel {
    fn filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
        }
    }
}

/// An open log destination that can be reopened in place (log rotation, SIGUSR1).
#[derive(Debug)]
pub struct Sink {
    target: LogTarget,
    file: Mutex<Option<File>>,
}

impl Sink {
    /// Opens `target` (files are created if missing and appended to).
    pub fn open(target: &LogTarget) -> io::Result<Arc<Sink>> {
        let sink = Sink { target: target.clone(), file: Mutex::new(None) };
        sink.reopen()?;
        Ok(Arc::new(sink))
    }

    /// Reopens a file target by path, so a rotated file is replaced by a fresh one.
    pub fn reopen(&self) -> io::Result<()> {
        if let LogTarget::File(path) = &self.target {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        }
        Ok(())
    }

    /// Writes one complete line (or several) with a single write where the OS allows, so lines from
    /// several processes appending to one file never interleave mid-line.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.target {
            LogTarget::Stderr => io::stderr().lock().write_all(bytes),
            LogTarget::Stdout => io::stdout().lock().write_all(bytes),
            LogTarget::File(_) => match self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                Some(f) => f.write_all(bytes),
                None => Ok(()),
            },
        }
    }
}

static ERROR_SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// Installs the process-wide error log in gunicorn's text format. Called once per process, before
/// anything is logged.
pub fn init(target: &LogTarget, level: LogLevel) -> io::Result<()> {
    init_with(target, level, LogFormat::Text)
}

/// [`init`], in `format` (`--log-format`).
pub fn init_with(target: &LogTarget, level: LogLevel, format: LogFormat) -> io::Result<()> {
    let sink = Sink::open(target)?;
    let _ = ERROR_SINK.set(sink.clone());
    let subscriber = tracing_subscriber::fmt()
        .event_format(GunicornFormat { pid: std::process::id(), format })
        .with_writer(SinkWriter(sink))
        .with_max_level(level.filter())
        .finish();
    tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
    // glommio reports through the `log` crate (stall reports, ring set-up warnings). rustls does
    // too, but only about its peers' mistakes: a client that sends an IP address as SNI (wrk and
    // other OpenSSL clients do) drew one WARNING per connection, 18,476 lines in a 5 s benchmark
    // run. A failed handshake reaches the log (at debug) and the metrics through hitcore's code.
    let _ = tracing_log::LogTracer::builder().ignore_crate("rustls").init();
    Ok(())
}

/// Reopens the error log file (SIGUSR1).
pub fn reopen() -> io::Result<()> {
    ERROR_SINK.get().map_or(Ok(()), |s| s.reopen())
}

#[derive(Clone)]
struct SinkWriter(Arc<Sink>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// `[2026-11-26 10:00:00 +0000] [1234] [INFO] message key=value`, or with `--log-format json`
/// `{"time":"2026-11-26T10:00:00.000+00:00","pid":1234,"level":"INFO","message":"message","key":"value"}`.
struct GunicornFormat {
    pid: u32,
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for GunicornFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match (*event.metadata().level(), fields.critical) {
            (_, true) => "CRITICAL",
            (Level::ERROR, _) => "ERROR",
            (Level::WARN, _) => "WARNING",
            (Level::INFO, _) => "INFO",
            _ => "DEBUG",
        };
        if self.format == LogFormat::Json {
            let now = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
            let logger = fields.target.as_deref().map(|t| t.split("::").next().unwrap_or(t));
            let line = crate::logjson::event_line(&now, self.pid, level, logger, &fields.message, &fields.pairs);
            return w.write_str(&line);
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S %z");
        let prefix = fields.target.as_deref().map(|t| format!("{}: ", t.split("::").next().unwrap_or(t)));
        writeln!(w, "[{now}] [{}] [{level}] {}{}{}", self.pid, prefix.unwrap_or_default(), fields.message, fields.rest)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    /// The same fields as `rest`, by name, for the JSON format.
    pairs: Vec<(String, String)>,
    critical: bool,
    /// The module a bridged `log` record came from (glommio's), shown as a prefix.
    target: Option<String>,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "critical" {
            self.critical = value;
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
            self.pairs.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                // One event, one line: multi-line messages (a library's `{:#?}`) are folded.
                let text = format!("{value:?}");
                let mut lines = text.lines().map(str::trim);
                self.message.push_str(lines.next().unwrap_or_default());
                for line in lines.filter(|l| !l.is_empty()) {
                    self.message.push(' ');
                    self.message.push_str(line);
                }
            }
            // Where a `log` record came from, bridged by tracing-log: noise in an error log.
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
                self.pairs.push((name.to_string(), format!("{value:?}")));
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = Some(value.to_string()),
            name if name == "message" || name.starts_with("log.") => self.record_debug(field, &value),
            // The JSON form keeps the string itself, not its Debug quoting.
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
                self.pairs.push((name.to_string(), value.to_string()));
            }
        }
    }
}

/// Makes client-supplied bytes safe for a log line: printable ASCII stays, `"` and `\` are
/// backslash-escaped, everything else (control bytes, newlines, non-ASCII) becomes `\xNN`, so a
/// client can neither forge a log line nor smuggle terminal escapes into it.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(&mut out, bytes);
    out
}

/// [`escape`], appending to `out`.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// Makes a line another program wrote (a shard's stderr, whatever binary it was) safe to relay:
/// printable text, UTF-8 included, stays as it is, so ordinary log lines pass unchanged; control
/// characters and bytes that are not UTF-8 become `\xNN`. At most `max` bytes are appended, so
/// binary garbage cannot put kilobytes into a log line; returns how many bytes of `bytes` were
/// left out (the caller says so).
pub fn escape_relayed_into(out: &mut String, bytes: &[u8], max: usize) -> usize {
    let start = out.len();
    let mut taken = 0;
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let before = out.len();
            if c.is_control() {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
            if out.len() - start > max {
                out.truncate(before);
                break 'chunks;
            }
            taken += c.len_utf8();
        }
        for b in chunk.invalid() {
            if out.len() - start + 4 > max {
                break 'chunks;
            }
            let _ = write!(out, "\\x{b:02x}");
            taken += 1;
        }
    }
    bytes.len() - taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_control_bytes_and_quotes() {
        assert_eq!(escape(b"GET /a\"b\\c HTTP/1.1"), "GET /a\\\"b\\\\c HTTP/1.1");
        assert_eq!(
            escape(b"x\r\n[2026] [1] [INFO] forged\x1b[31m\xff"),
            "x\\x0d\\x0a[2026] [1] [INFO] forged\\x1b[31m\\xff"
        );
    }

    #[test]
    fn relayed_text_stays_readable_and_bounded() {
        let mut out = String::new();
        assert_eq!(escape_relayed_into(&mut out, "[INFO] \"ok\" \\ é\ttab".as_bytes(), 100), 0);
        assert_eq!(out, "[INFO] \"ok\" \\ é\\x09tab");
        out.clear();
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let left = escape_relayed_into(&mut out, &garbage, 64);
        assert!(out.len() <= 64 && left > 4900, "{out} {left}");
        assert!(out.bytes().all(|b| (0x20..0x7f).contains(&b)), "{out}");
    }
}
