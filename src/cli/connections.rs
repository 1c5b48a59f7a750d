//! The connection flags (`--keep-alive`, `--header-timeout`, `--evict-after`, `--write-timeout`,
//! `--backlog`, `--worker-connections`, `--limit-request-*`), a group flattened into
//! [`super::Cli`], with their validation into [`Connections`]: how each client connection is
//! accepted, timed and bounded.
//!
//! It checks numbers only; it must not touch sockets or the open-files limit (shards do).

use std::time::Duration;

use super::error::{FlagError, refuse};
use super::values::{seconds, seconds_text};
use crate::config::defaults::{
    DEFAULT_BACKLOG, DEFAULT_EVICT_AFTER, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_WORKER_CONNECTIONS,
    DEFAULT_WRITE_TIMEOUT,
};
use crate::config::limits::{
    DEFAULT_FIELD_SIZE, DEFAULT_FIELDS, DEFAULT_REQUEST_LINE, Limits, MAX_FIELD_SIZE, MAX_FIELDS, MAX_REQUEST_LINE,
};

/// How client connections are accepted, timed and bounded.
#[derive(Debug, clap::Args)]
pub struct ConnectionFlags {
    /// Seconds an idle keep-alive connection waits for its next request; 0 disables keep-alive
    #[arg(long = "keep-alive", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_KEEP_ALIVE))]
    pub keep_alive: Duration,

    /// Seconds a connection may take to send a complete request head
    #[arg(long = "header-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: Duration,

    /// At --worker-connections, seconds a connection must have waited for a complete request (idle
    /// or slow) before it may be closed to make room for a new one
    #[arg(long = "evict-after", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_EVICT_AFTER))]
    pub evict_after: Duration,

    /// Seconds a batch of answers may wait for a client that does not read them; then the connection is closed
    #[arg(long = "write-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_WRITE_TIMEOUT))]
    pub write_timeout: Duration,

    /// Pending-connection queue of each shard's listener (the kernel caps it at somaxconn)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    pub backlog: u32,

    /// Connections each shard serves at once; beyond it, new ones wait in the kernel's queue (an idle
    /// one costs about 3.4 KiB; the open-files limit is raised to fit, up to its hard limit). Each
    /// shard's receive buffers follow it: 2 KiB for half of N, 256 to 4096 of them (8 MiB at most)
    #[arg(long = "worker-connections", value_name = "N", default_value_t = DEFAULT_WORKER_CONNECTIONS)]
    pub worker_connections: usize,

    /// Longest request line in bytes (answered 414 beyond); 0 means the maximum, 8190
    #[arg(long = "limit-request-line", value_name = "N", default_value_t = DEFAULT_REQUEST_LINE)]
    pub limit_request_line: usize,

    /// Most header fields in a request (answered 431 beyond); at most 32768
    #[arg(long = "limit-request-fields", value_name = "N", default_value_t = DEFAULT_FIELDS)]
    pub limit_request_fields: usize,

    /// Longest header field in bytes (answered 431 beyond); 0 means the maximum, 8190
    #[arg(
        long = "limit-request-field-size",
        alias = "limit-request-field_size",
        value_name = "N",
        default_value_t = DEFAULT_FIELD_SIZE
    )]
    pub limit_request_field_size: usize,
}

/// The connection part of [`crate::config::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// `--keep-alive`.
    pub keep_alive: Duration,
    /// `--header-timeout`.
    pub header_timeout: Duration,
    /// `--evict-after`.
    pub evict_after: Duration,
    /// `--write-timeout`.
    pub write_timeout: Duration,
    /// `--backlog`.
    pub backlog: u32,
    /// `--worker-connections`.
    pub worker_connections: usize,
    /// `--limit-request-*`, 0 turned into the maximum.
    pub limits: Limits,
}

impl ConnectionFlags {
    /// Refuses zero where it would mean nothing works, and limits above gunicorn's maximums.
    pub fn into_connections(self) -> Result<Connections, FlagError> {
        if self.backlog == 0 {
            return Err(refuse("--backlog", "must be at least 1"));
        }
        if self.worker_connections == 0 {
            return Err(refuse("--worker-connections", "must be at least 1"));
        }
        let limits = Limits {
            request_line: bounded("--limit-request-line", self.limit_request_line, MAX_REQUEST_LINE)?,
            fields: match self.limit_request_fields {
                0 => return Err(refuse("--limit-request-fields", "must be at least 1")),
                n if n > MAX_FIELDS => return Err(refuse("--limit-request-fields", format!("at most {MAX_FIELDS}"))),
                n => n,
            },
            field_size: bounded("--limit-request-field-size", self.limit_request_field_size, MAX_FIELD_SIZE)?,
        };
        if self.header_timeout.is_zero() {
            return Err(refuse("--header-timeout", "must be more than 0"));
        }
        if self.write_timeout.is_zero() {
            return Err(refuse("--write-timeout", "must be more than 0"));
        }
        Ok(Connections {
            keep_alive: self.keep_alive,
            header_timeout: self.header_timeout,
            evict_after: self.evict_after,
            write_timeout: self.write_timeout,
            backlog: self.backlog,
            worker_connections: self.worker_connections,
            limits,
        })
    }
}

/// 0 means the maximum; above the maximum is refused.
fn bounded(flag: &'static str, value: usize, max: usize) -> Result<usize, FlagError> {
    match value {
        0 => Ok(max),
        n if n > max => Err(refuse(flag, format!("at most {max} (0 means {max})"))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn connections(args: &[&str]) -> Result<Connections, FlagError> {
        Cli::try_parse_from([&["hitcore"], args].concat()).unwrap().connections.into_connections()
    }

    #[test]
    fn zero_limits_mean_the_maximum_and_zero_counts_are_refused() {
        let c = connections(&["--limit-request-line", "0", "--limit-request-field-size", "0"]).unwrap();
        assert_eq!((c.limits.request_line, c.limits.field_size), (MAX_REQUEST_LINE, MAX_FIELD_SIZE));
        assert_eq!(c.limits.fields, DEFAULT_FIELDS);
        for (args, flag) in [
            (&["--limit-request-fields", "0"][..], "--limit-request-fields"),
            (&["--limit-request-fields", "32769"], "--limit-request-fields"),
            (&["--limit-request-line", "8191"], "--limit-request-line"),
            (&["--backlog", "0"], "--backlog"),
            (&["--worker-connections", "0"], "--worker-connections"),
            (&["--header-timeout", "0"], "--header-timeout"),
            (&["--write-timeout", "0"], "--write-timeout"),
        ] {
            assert_eq!(connections(args).unwrap_err().flag, flag, "{args:?}");
        }
        // Zero keep-alive and zero eviction wait are meaningful: off, and at once.
        let c = connections(&["--keep-alive", "0", "--evict-after", "0"]).unwrap();
        assert_eq!((c.keep_alive, c.evict_after), (Duration::ZERO, Duration::ZERO));
    }
}
