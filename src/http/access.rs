//! The access log: one line per response in `--access-logformat` (gunicorn's atoms; gunicorn's
//! default line unless told otherwise), buffered per shard.
//!
//! `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`, i.e.
//! `127.0.0.1 - - [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 3 "-" "curl/8.0"`.
//! It owns the shard's buffer, flushed by the shard's tick or when it grows large, so that logging
//! costs one write per flush instead of one per request and never waits on the disk per request;
//! what the request head must yield for the format ([`Head`]); and the client address rule
//! (PROXY protocol source, then `--forwarded-allow-ips`). The format itself is `logformat`'s.
//! Everything taken from the request is escaped. It must not be on the path at all when the access
//! log is off.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::forwarded::Trust;
use super::logformat::{FORWARDED_FOR, Fields, Format};
use crate::logging::{Sink, escape_into};

/// Flush once the buffer holds this much, without waiting for the tick.
const FLUSH_AT: usize = 32 * 1024;

/// What the access log needs from a request head, captured (escaped) while the head is in hand.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// The request line, escaped.
    line: String,
    /// The headers the format needs, escaped, in `Format::request_headers` order.
    headers: Vec<Option<String>>,
}

impl Head {
    /// Captures, from a complete and already validated head, the request line and the values of
    /// `names` (lower-case; the last of repeated headers wins, as in gunicorn).
    fn capture_named(head: &[u8], names: &[String]) -> Head {
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let mut out = Head { line: String::new(), headers: vec![None; names.len()] };
        if let Some(first) = lines.by_ref().find(|l| !l.is_empty()) {
            escape_into(&mut out.line, first);
        }
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if let Some(i) = names.iter().position(|n| name.eq_ignore_ascii_case(n.as_bytes())) {
                let mut v = String::new();
                escape_into(&mut v, value);
                out.headers[i] = Some(v);
            }
        }
        out
    }
}

/// One response, as the access log sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The TCP peer, or the source a PROXY protocol header named (which `--forwarded-allow-ips`
    /// then judges like a peer).
    pub peer: Option<IpAddr>,
    /// The request's captured head, if it got that far.
    pub head: Option<&'a Head>,
    /// The status sent.
    pub status: u16,
    /// Body bytes sent, `None` when none were.
    pub body: Option<usize>,
    /// The response's bytes, for `{header}o` atoms (may be empty when the format has none).
    pub response: &'a [u8],
    /// From the complete request to its answer.
    pub elapsed: Duration,
    /// `http` or `https`, for `%({wsgi.url_scheme}e)s`.
    pub scheme: &'static str,
}

/// One shard's access log.
#[derive(Debug)]
pub struct AccessLog {
    sink: Arc<Sink>,
    format: Format,
    trust: Trust,
    buf: RefCell<String>,
    /// `[%d/%b/%Y:%H:%M:%S %z]`, re-rendered by [`AccessLog::refresh`].
    time: RefCell<String>,
}

impl AccessLog {
    /// An access log writing `format` lines to `sink`, taking `X-Forwarded-For` from `trust`ed peers.
    pub fn new(sink: Arc<Sink>, format: Format, trust: Trust) -> AccessLog {
        let log = AccessLog { sink, format, trust, buf: RefCell::default(), time: RefCell::default() };
        log.refresh();
        log
    }

    /// Captures what this log's format needs from a complete, validated request head.
    pub fn capture(&self, head: &[u8]) -> Head {
        Head::capture_named(head, self.format.request_headers())
    }

    /// Re-renders the timestamp (called by the shard's tick).
    pub fn refresh(&self) {
        *self.time.borrow_mut() = chrono::Local::now().format("[%d/%b/%Y:%H:%M:%S %z]").to_string();
    }

    /// Appends one line for `r`.
    pub fn log(&self, r: &Record<'_>) {
        let forwarded_for = r.head.and_then(|h| h.headers.get(FORWARDED_FOR)).and_then(|v| v.as_deref());
        let remote = match r.peer {
            Some(peer) => self.trust.client(peer, forwarded_for).to_string(),
            None => "-".to_string(),
        };
        let time = self.time.borrow();
        let fields = Fields {
            remote: &remote,
            time: &time,
            line: r.head.map(|h| h.line.as_str()),
            headers: r.head.map_or(&[], |h| h.headers.as_slice()),
            status: r.status,
            body: r.body,
            response: r.response,
            elapsed: r.elapsed,
            scheme: r.scheme,
        };
        let mut buf = self.buf.borrow_mut();
        self.format.render(&mut buf, &fields);
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
        let format = Format::compile(crate::config::defaults::DEFAULT_ACCESS_LOG_FORMAT).unwrap();
        let head = b"GET /\"x HTTP/1.1\r\nHost: a\r\nUser-Agent: ab/2.3\x1b\r\n\r\n";
        let h = Head::capture_named(head, format.request_headers());
        assert_eq!(h.line, "GET /\\\"x HTTP/1.1");
        assert_eq!(h.headers[1].as_deref(), Some("ab/2.3\\x1b"));
        assert_eq!(h.headers[0], None);
    }

    /// Whether `line` is escape output only: printable ASCII, each `\\` starting `\\`, `\"` or
    /// `\xNN`, no bare `"`.
    fn only_escaped(line: &str) -> Result<(), String> {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => match b.get(i + 1) {
                    Some(b'\\' | b'"') => i += 2,
                    Some(b'x') if b.get(i + 2..i + 4).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 4,
                    _ => return Err(format!("a lone backslash at {i} in {line:?}")),
                },
                b'"' => return Err(format!("a raw quote at {i} in {line:?}")),
                0x20..=0x7e => i += 1,
                c => return Err(format!("byte {c:#04x} at {i} in {line:?}")),
            }
        }
        Ok(())
    }

    #[test]
    fn a_decoded_path_is_escaped_again() {
        let format = Format::compile("%(U)s").unwrap();
        let log_head = Head::capture_named(b"GET /%0a%1b[31mFAKE%22%5c%zz HTTP/1.1\r\n\r\n", format.request_headers());
        let fields = Fields {
            remote: "-",
            time: "",
            line: Some(&log_head.line),
            headers: &log_head.headers,
            status: 200,
            body: None,
            response: b"",
            elapsed: Duration::ZERO,
            scheme: "http",
        };
        let mut out = String::new();
        format.render(&mut out, &fields);
        assert_eq!(out, "/\\x0a\\x1b[31mFAKE\\\"\\\\%zz\n");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Whatever a client sends, no atom puts a control byte, a raw quote or a newline into a line.
        #[test]
        fn no_atom_lets_raw_bytes_through(
            target in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            percents in proptest::collection::vec(0u8..=255, 0..8),
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let atoms = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p",
                "{X-Any}i", "{x-forwarded-for}i", "{server}o", "{x-echo}o", "{wsgi.url_scheme}e"];
            // A target with raw bytes and percent escapes of every byte, a header value of raw bytes, an
            // `Authorization: Basic` user of raw bytes.
            let mut t = b"/".to_vec();
            t.extend(target.iter().filter(|&&b| b != b' ' && b != b'\n'));
            for p in &percents {
                t.extend(format!("%{p:02x}").bytes());
            }
            let v: Vec<u8> = value.iter().copied().filter(|&b| b != b'\n' && b != b'\r').collect();
            let user = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [&v[..], b":pw"].concat());
            let mut head = [b"GET ".as_slice(), &t, b"?", &v, b" HTTP/1.1\r\n"].concat();
            for name in ["X-Any", "X-Forwarded-For", "Referer", "User-Agent"] {
                head.extend([name.as_bytes(), b": ", &v, b"\r\n"].concat());
            }
            head.extend(format!("Authorization: Basic {user}\r\n\r\n").bytes());
            let response = [b"HTTP/1.1 200 OK\r\nX-Echo: ".as_slice(), &v, b"\r\n\r\n"].concat();
            for atom in atoms {
                let format = Format::compile(&format!("%({atom})s")).unwrap();
                let captured = Head::capture_named(&head, format.request_headers());
                let trust = Trust::parse("*").unwrap();
                let ff = captured.headers.get(FORWARDED_FOR).and_then(|v| v.as_deref());
                let remote = trust.client("127.0.0.1".parse().unwrap(), ff).to_string();
                let fields = Fields {
                    remote: &remote,
                    time: "[02/Dec/2026:10:00:00 +0000]",
                    line: Some(&captured.line),
                    headers: &captured.headers,
                    status: 200,
                    body: Some(1),
                    response: &response,
                    elapsed: Duration::from_micros(1500),
                    scheme: "https",
                };
                let mut out = String::new();
                format.render(&mut out, &fields);
                let value = out.strip_suffix('\n').expect("one line, ended by its newline");
                proptest::prop_assert!(only_escaped(value).is_ok(), "atom {}: {:?}", atom, only_escaped(value));
            }
        }
    }

    #[test]
    fn capture_takes_the_formats_headers() {
        let format = Format::compile("%({X-Request-Id}i)s").unwrap();
        let h = Head::capture_named(
            b"GET / HTTP/1.1\r\nx-request-id: a\r\nX-Request-ID: b\r\n\r\n",
            format.request_headers(),
        );
        assert_eq!(h.headers.last().unwrap().as_deref(), Some("b"), "the last one wins, as in gunicorn");
    }
}
