//! Response bytes: status lines, headers and bodies, appended to a caller's buffer.
//!
//! It owns the wire format of every answer hitcore gives and the per-second `Date` value. It must
//! not decide *which* answer a request gets (that is `conn`'s job) and never allocates per response:
//! everything is appended from static pieces and `itoa`.

use std::cell::Cell;
use std::time::SystemTime;

use super::parse::{ParseError, Version};
use super::status::Status;

/// The methods `/` supports, for `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// How the connection continues after a response, which decides its `Connection` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Keep the connection open. HTTP/1.1 implies it; HTTP/1.0 needs `Connection: keep-alive`
    /// (ab `-k` only reuses a connection whose response says so and carries a Content-Length).
    KeepAlive(Version),
    /// Close after this response: `Connection: close`.
    Close,
}

/// What to answer. Every variant carries what its bytes need and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the counter value as the body.
    Count(i64),
    /// 200 to `HEAD /`: the headers of a GET without `Content-Length` (the value a GET would
    /// return is not known without incrementing, and RFC 9110 §9.3.2 lets HEAD omit it).
    Head,
    /// 200 to OPTIONS, with `Allow`.
    Options,
    /// 404 for any path but `/`.
    NotFound,
    /// 405 with `Allow` for other methods on `/`.
    MethodNotAllowed,
    /// 503 with `Retry-After: 1`: Redis is down, overloaded, or lost the command.
    Unavailable,
    /// 500: Redis answered with an error (e.g. the key does not hold an integer).
    RedisError,
    /// The request could not be parsed or framed.
    Rejected(ParseError),
    /// The health check (`--health-path`): 200 `OK`, or 503 with `Retry-After: 1` and the one-line
    /// reason as the body.
    Health(Result<(), &'static str>),
}

impl Answer {
    /// The status this answer is sent with.
    pub fn status(&self) -> Status {
        match self {
            Answer::Count(_) | Answer::Head | Answer::Options | Answer::Health(Ok(())) => Status::Ok,
            Answer::Health(Err(_)) => Status::ServiceUnavailable,
            Answer::NotFound => Status::NotFound,
            Answer::MethodNotAllowed => Status::MethodNotAllowed,
            Answer::Unavailable => Status::ServiceUnavailable,
            Answer::RedisError => Status::InternalServerError,
            Answer::Rejected(e) => e.status(),
        }
    }
}

/// Appends the complete response for `answer` to `out`; `head_only` drops the body (for HEAD).
/// Returns the number of body bytes that were (or, for HEAD, would have been) sent.
pub fn write(out: &mut Vec<u8>, answer: Answer, persist: Persist, head_only: bool, date: &HttpDate) -> usize {
    let status = answer.status();
    out.extend_from_slice(status.status_line());
    out.extend_from_slice(b"Server: hitcore\r\nDate: ");
    out.extend_from_slice(&date.get());
    out.extend_from_slice(match persist {
        Persist::KeepAlive(Version::Http11) => b"\r\n",
        Persist::KeepAlive(Version::Http10) => b"\r\nConnection: keep-alive\r\n",
        Persist::Close => b"\r\nConnection: close\r\n",
    });
    match answer {
        Answer::MethodNotAllowed | Answer::Options => {
            out.extend_from_slice(b"Allow: ");
            out.extend_from_slice(ALLOW.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Answer::Unavailable | Answer::Health(Err(_)) => {
            out.extend_from_slice(b"Retry-After: 1\r\nCache-Control: no-store\r\n")
        }
        Answer::Health(Ok(())) => out.extend_from_slice(b"Cache-Control: no-store\r\n"),
        _ => {}
    }
    let mut digits = itoa::Buffer::new();
    let body: &[u8] = match answer {
        Answer::Count(v) => {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
            digits.format(v).as_bytes()
        }
        Answer::Health(Ok(())) => b"OK\n",
        Answer::Health(Err(reason)) => {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
            out.extend_from_slice(digits.format(reason.len() + 1).as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            if !head_only {
                out.extend_from_slice(reason.as_bytes());
                out.push(b'\n');
            }
            return reason.len() + 1;
        }
        // A 200 without a counter value (HEAD, OPTIONS) has an empty body; errors say their phrase.
        _ if status == Status::Ok => b"",
        _ => status.error_body(),
    };
    if answer == Answer::Head {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n\r\n");
        return 0;
    }
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    body.len()
}

/// The `Date` header value (IMF-fixdate, 29 bytes), re-rendered at most once per second by the
/// shard's housekeeping tick so that responses only copy it.
#[derive(Debug)]
pub struct HttpDate {
    value: Cell<[u8; 29]>,
    second: Cell<u64>,
}

impl Default for HttpDate {
    fn default() -> Self {
        let date = HttpDate { value: Cell::new([b' '; 29]), second: Cell::new(u64::MAX) };
        date.refresh(SystemTime::now());
        date
    }
}

impl HttpDate {
    /// The cached value.
    pub fn get(&self) -> [u8; 29] {
        self.value.get()
    }

    /// Re-renders the value if `now` is in a different second from the cached one.
    pub fn refresh(&self, now: SystemTime) {
        let second = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if second == self.second.get() {
            return;
        }
        let text = httpdate::fmt_http_date(now);
        if let Ok(bytes) = <[u8; 29]>::try_from(text.as_bytes()) {
            self.value.set(bytes);
            self.second.set(second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(answer: Answer, persist: Persist, head_only: bool) -> String {
        let mut out = Vec::new();
        let date = HttpDate::default();
        date.refresh(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784111777));
        write(&mut out, answer, persist, head_only, &date);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn count_keep_alive_http11() {
        assert_eq!(
            render(Answer::Count(42), Persist::KeepAlive(Version::Http11), false),
            "HTTP/1.1 200 OK\r\nServer: hitcore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n42"
        );
    }

    #[test]
    fn http10_keep_alive_is_explicit() {
        let r = render(Answer::Count(7), Persist::KeepAlive(Version::Http10), false);
        assert!(r.contains("\r\nConnection: keep-alive\r\n"));
        assert!(r.contains("\r\nContent-Length: 1\r\n"));
    }

    #[test]
    fn errors_have_reason_bodies() {
        let r = render(Answer::NotFound, Persist::Close, false);
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("Content-Length: 10\r\n\r\nNot Found\n"));
        let r = render(Answer::Rejected(ParseError::HeadersTooLarge), Persist::Close, false);
        assert!(r.ends_with("\r\n\r\nRequest Header Fields Too Large\n"));
        let r = render(Answer::MethodNotAllowed, Persist::Close, true);
        assert!(r.contains("Allow: GET, HEAD, OPTIONS\r\n"));
        assert!(r.ends_with("Content-Length: 19\r\n\r\n"));
        let r = render(Answer::Unavailable, Persist::KeepAlive(Version::Http11), false);
        assert!(r.contains("Retry-After: 1\r\n"));
    }

    #[test]
    fn health_answers() {
        let r = render(Answer::Health(Ok(())), Persist::KeepAlive(Version::Http11), false);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.ends_with(
            "Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nOK\n"
        ));
        let r = render(Answer::Health(Err("draining")), Persist::Close, false);
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(r.contains("Retry-After: 1\r\n"));
        assert!(r.ends_with("Content-Length: 9\r\n\r\ndraining\n"));
        let r = render(Answer::Health(Err("draining")), Persist::Close, true);
        assert!(r.ends_with("Content-Length: 9\r\n\r\n"));
    }

    #[test]
    fn head_has_no_length_and_no_body() {
        let r = render(Answer::Head, Persist::KeepAlive(Version::Http11), true);
        assert!(!r.contains("Content-Length"));
        assert!(r.ends_with("charset=utf-8\r\nCache-Control: no-store\r\n\r\n"));
    }
}
