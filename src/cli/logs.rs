//! The log flags (`--error-logfile`, `--access-logfile`, `--log-level`), a group flattened into
//! [`super::Cli`], turned into [`Logs`]: where each log goes and how much it says.
//!
//! It must not open the files (`--check-config` checks they can be written; each process opens
//! them). What the access log's lines hold is with the observability flags (`super::observe`).

use std::path::PathBuf;

use crate::config::defaults::{DEFAULT_ERROR_LOGFILE, DEFAULT_LOG_LEVEL};
use crate::logging::{LogLevel, LogTarget};

/// Where the logs go.
#[derive(Debug, clap::Args)]
pub struct LogFlags {
    /// Error log file, or - for stderr
    #[arg(long = "error-logfile", alias = "log-file", value_name = "FILE", default_value = DEFAULT_ERROR_LOGFILE)]
    pub error_logfile: String,

    /// Access log file, or - for stdout [default: off]
    #[arg(long = "access-logfile", value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// Error log level: debug, info, warning, error or critical, in any case
    #[arg(long = "log-level", value_enum, ignore_case = true, value_name = "LEVEL", default_value_t = DEFAULT_LOG_LEVEL)]
    pub log_level: LogLevel,
}

/// The log part of [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// `--error-logfile`: `-` is stderr.
    pub error_log: LogTarget,
    /// `--access-logfile`: `-` is stdout.
    pub access_log: Option<LogTarget>,
    /// `--log-level`.
    pub log_level: LogLevel,
}

impl LogFlags {
    /// Every file name is usable here; `-` names the standard stream.
    pub fn into_logs(self) -> Logs {
        let target = |s: &str, dash: LogTarget| if s == "-" { dash } else { LogTarget::File(PathBuf::from(s)) };
        Logs {
            error_log: target(&self.error_logfile, LogTarget::Stderr),
            access_log: self.access_logfile.as_deref().map(|s| target(s, LogTarget::Stdout)),
            log_level: self.log_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn a_dash_names_the_standard_stream() {
        let logs = |args: &[&str]| Cli::try_parse_from([&["hitcore"], args].concat()).unwrap().logs.into_logs();
        let l = logs(&["--access-logfile", "-", "--log-level", "WARNING"]);
        assert_eq!(
            (l.error_log, l.access_log, l.log_level),
            (LogTarget::Stderr, Some(LogTarget::Stdout), LogLevel::Warning)
        );
        let l = logs(&["--error-logfile", "/var/log/e", "--access-logfile", "/var/log/a"]);
        assert_eq!(l.error_log, LogTarget::File("/var/log/e".into()));
        assert_eq!(l.access_log, Some(LogTarget::File("/var/log/a".into())));
        assert_eq!(logs(&[]).access_log, None);
    }
}
