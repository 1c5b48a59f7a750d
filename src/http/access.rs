//! The access log: gunicorn's default line, buffered per shard.
//!
//! `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`, i.e.
//! `127.0.0.1 - - [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 3 "-" "curl/8.0"`.
//! It owns the line format and the shard's buffer, flushed by the shard's tick or when it grows
//! large, so that logging costs one write per flush instead of one per request. Everything taken
//! from the request is escaped. It must not be on the path at all when the access log is off.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use crate::logging::{Sink, escape_into};

/// Flush once the buffer holds this much, without waiting for the tick.
const FLUSH_AT: usize = 32 * 1024;

/// What the access log needs from a request head, captured (escaped) while the head is in hand.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// The request line, escaped.
    line: String,
    /// `Referer`, escaped, or `-`.
    referer: String,
    /// `User-Agent`, escaped, or `-`.
    agent: String,
}

impl Head {
    /// Captures from a complete, already validated head.
    pub fn capture(head: &[u8]) -> Head {
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let mut out = Head::default();
        if let Some(first) = lines.by_ref().find(|l| !l.is_empty()) {
            escape_into(&mut out.line, first);
        }
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"referer") {
                escape_into(&mut out.referer, value);
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                escape_into(&mut out.agent, value);
            }
        }
        for field in [&mut out.referer, &mut out.agent] {
            if field.is_empty() {
                field.push('-');
            }
        }
        out
    }
}

/// One shard's access log.
#[derive(Debug)]
pub struct AccessLog {
    sink: Arc<Sink>,
    buf: RefCell<String>,
    /// `[%d/%b/%Y:%H:%M:%S %z]`, re-rendered by [`AccessLog::refresh`].
    time: RefCell<String>,
}

impl AccessLog {
    /// An access log writing to `sink`.
    pub fn new(sink: Arc<Sink>) -> AccessLog {
        let log = AccessLog { sink, buf: RefCell::default(), time: RefCell::default() };
        log.refresh();
        log
    }

    /// Re-renders the timestamp (called by the shard's tick).
    pub fn refresh(&self) {
        *self.time.borrow_mut() = chrono::Local::now().format("[%d/%b/%Y:%H:%M:%S %z]").to_string();
    }

    /// Appends one line; `body` is `None` when no body was sent (logged as `-`).
    pub fn record(&self, peer: Option<IpAddr>, head: Option<&Head>, status: u16, body: Option<usize>) {
        let mut buf = self.buf.borrow_mut();
        let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        let (line, referer, agent) = head.map_or(("-", "-", "-"), |h| (&h.line, &h.referer, &h.agent));
        let _ = write!(buf, "{peer} - - {} \"{line}\" {status} ", self.time.borrow());
        match body {
            Some(n) => {
                let _ = write!(buf, "{n}");
            }
            None => buf.push('-'),
        }
        let _ = writeln!(buf, " \"{referer}\" \"{agent}\"");
        if buf.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            if let Err(e) = self.sink.write_all(buf.as_bytes()) {
                tracing::warn!("cannot write the access log: {e}");
            }
            buf.clear();
        }
    }

    /// Reopens the file (SIGUSR1), after flushing into the old one.
    pub fn reopen(&self) {
        self.flush();
        if let Err(e) = self.sink.reopen() {
            tracing::error!("cannot reopen the access log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_escapes_and_defaults() {
        let h = Head::capture(b"GET /\"x HTTP/1.1\r\nHost: a\r\nUser-Agent: ab/2.3\x1b\r\n\r\n");
        assert_eq!(h.line, "GET /\\\"x HTTP/1.1");
        assert_eq!(h.agent, "ab/2.3\\x1b");
        assert_eq!(h.referer, "-");
    }
}
