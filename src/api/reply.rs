//! The counting API's answers on the wire: status, CORS headers, JSON or JSONP body, appended to
//! the connection's output buffer.
//!
//! It owns the bytes of an API answer and the CORS rule (`--cors-origins`); it must not decide the
//! status or the body (`route` and `serve` do) nor which connection header a batch needs (`conn`
//! passes its [`Persist`]).

use crate::http::parse::Version;
use crate::http::response::{HttpDate, Persist};
use crate::http::status::Status;

use super::json;
use crate::badge::Badge;

/// The headers of a JSON answer up to its length's digits, one literal each: the answer of every
/// `/hit` and `/get` writes them (pieced together, they cost about 1 % of a `/hit`'s instructions).
const JSON_HEADERS: &[u8] =
    b"Cache-Control: no-store\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ";
/// The same for JSONP.
const JSONP_HEADERS: &[u8] =
    b"Cache-Control: no-store\r\nContent-Type: application/javascript; charset=utf-8\r\nContent-Length: ";
/// The same for a badge ([`crate::badge::CONTENT_TYPE`]); `no-cache` so that README image proxies
/// (GitHub's camo) fetch the count again.
const BADGE_HEADERS: &[u8] =
    b"Cache-Control: no-cache\r\nContent-Type: image/svg+xml;charset=utf-8\r\nContent-Length: ";

/// What the API answers, before it is dressed for the request (CORS, JSONP, HEAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body; empty for the preflight.
    pub body: Body,
    /// `Allow`, on 405.
    pub allow: Option<&'static str>,
    /// `Retry-After` in seconds, on 503 and 429.
    pub retry_after: Option<u64>,
    /// `/stream`'s answer: `text/event-stream` with no length (the events follow until either side
    /// closes); the body is the first event, or empty for a counter that does not exist yet.
    pub event_stream: bool,
}

/// An answer's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Text built for this answer: JSON, or `/stream`'s first event.
    Text(String),
    /// A counter's value, the 200 of `/hit` and `/get`: `{"value":N}` written straight into the
    /// output (no string built per request), or the number a badge draws.
    Value(i64),
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: String) -> Reply {
        Reply { status, body: Body::Text(body), allow: None, retry_after: None, event_stream: false }
    }

    /// 200 `{"value":N}`.
    pub fn value(value: i64) -> Reply {
        Reply { body: Body::Value(value), ..Reply::json(200, String::new()) }
    }

    /// The start of a `/stream` answer, with the current value's event when there is one.
    pub fn event_stream(current: Option<i64>) -> Reply {
        Reply { event_stream: true, ..Reply::json(200, current.map(event).unwrap_or_default()) }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, json::error(message))
    }

    /// 204 to a CORS preflight.
    pub fn preflight() -> Reply {
        Reply::json(204, String::new())
    }

    /// 405 with `Allow`.
    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply { allow: Some(allow), ..Reply::error(405, "Method not allowed on this route") }
    }

    /// 503 with `Retry-After: 1`: Redis is down, overloaded or lost the command.
    pub fn unavailable() -> Reply {
        Reply { retry_after: Some(1), ..Reply::error(503, "Redis is unavailable. Try again later.") }
    }
}

/// Which origins may read the API's answers from a browser (`--cors-origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`: any origin.
    Any,
    /// Only these origins (exact `scheme://host[:port]`), echoed back with `Vary: Origin`.
    Only(Vec<String>),
}

impl Cors {
    /// From the flag's list.
    pub fn new(origins: &[String]) -> Cors {
        if origins.iter().any(|o| o == "*") { Cors::Any } else { Cors::Only(origins.to_vec()) }
    }
}

/// One Server-Sent Event carrying a value: `data: {"value":N}` and a blank line, as Abacus sends.
pub fn event(value: i64) -> String {
    format!("data: {}\n\n", json::value(value))
}

/// How an answer is dressed for its request.
#[derive(Debug, Clone, Copy)]
pub struct Dress<'a> {
    /// The CORS rule.
    pub cors: &'a Cors,
    /// The request's `Origin`.
    pub origin: Option<&'a str>,
    /// `?callback=`, already checked: the body becomes `callback(json);`.
    pub callback: Option<&'a str>,
    /// HEAD: headers only.
    pub head_only: bool,
    /// `/shield`: a 200 with a value is this badge (SVG), not JSON.
    pub badge: Option<&'a Badge<'static>>,
}

/// Appends the complete answer to `out`; returns the body's length (sent, or for HEAD, not).
pub fn write(out: &mut Vec<u8>, reply: &Reply, dress: Dress<'_>, persist: Persist, date: &HttpDate) -> usize {
    match Status::from_code(reply.status) {
        Some(s) => out.extend_from_slice(s.status_line()),
        None => out.extend_from_slice(format!("HTTP/1.1 {} Unknown\r\n", reply.status).as_bytes()),
    }
    out.extend_from_slice(b"Server: hitcore\r\nDate: ");
    out.extend_from_slice(&date.get());
    out.extend_from_slice(match persist {
        Persist::KeepAlive(Version::Http11) => b"\r\n",
        Persist::KeepAlive(Version::Http10) => b"\r\nConnection: keep-alive\r\n",
        Persist::Close => b"\r\nConnection: close\r\n",
    });
    match (dress.cors, dress.origin) {
        (Cors::Any, _) => out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n"),
        (Cors::Only(allowed), Some(origin)) if allowed.iter().any(|a| a == origin) => {
            out.extend_from_slice(b"Access-Control-Allow-Origin: ");
            out.extend_from_slice(origin.as_bytes());
            out.extend_from_slice(b"\r\nVary: Origin\r\n");
        }
        (Cors::Only(_), _) => out.extend_from_slice(b"Vary: Origin\r\n"),
    }
    if reply.status == 204 {
        out.extend_from_slice(
            b"Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\n\
              Access-Control-Allow-Headers: Authorization, Content-Type\r\n\
              Access-Control-Max-Age: 43200\r\n\r\n",
        );
        return 0;
    }
    if reply.event_stream {
        // No length: the events follow until either side closes. `X-Accel-Buffering` keeps nginx
        // from holding them back.
        out.extend_from_slice(
            b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\r\n",
        );
        let event = match &reply.body {
            Body::Text(text) => text.as_bytes(),
            Body::Value(_) => b"",
        };
        if !dress.head_only {
            out.extend_from_slice(event);
        }
        return event.len();
    }
    if let Some(allow) = reply.allow {
        out.extend_from_slice(b"Allow: ");
        out.extend_from_slice(allow.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(secs) = reply.retry_after {
        out.extend_from_slice(b"Retry-After: ");
        out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
        // Not a CORS-safelisted header: without this a page's script sees the 429 but not when to
        // try again.
        out.extend_from_slice(b"\r\nAccess-Control-Expose-Headers: Retry-After\r\n");
    }
    let owned: Vec<u8>;
    let value_text: json::ValueText;
    let (body, headers): (&[u8], &[u8]) = match (dress.badge, &reply.body, dress.callback) {
        (Some(badge), Body::Value(value), _) => {
            let mut svg = Vec::with_capacity(1536);
            badge.render(*value, &mut svg);
            owned = svg;
            (&owned, BADGE_HEADERS)
        }
        (_, body, Some(cb)) => {
            let text = match body {
                Body::Text(text) => text.as_str(),
                Body::Value(v) => {
                    value_text = json::ValueText::new(*v);
                    value_text.as_str()
                }
            };
            owned = json::jsonp(cb, text).into_bytes();
            (&owned, JSONP_HEADERS)
        }
        (_, Body::Value(v), None) => {
            value_text = json::ValueText::new(*v);
            (value_text.as_bytes(), JSON_HEADERS)
        }
        (_, Body::Text(text), None) => (text.as_bytes(), JSON_HEADERS),
    };
    out.extend_from_slice(headers);
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if !dress.head_only {
        out.extend_from_slice(body);
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(reply: &Reply, cors: &Cors, origin: Option<&str>, callback: Option<&str>) -> String {
        let mut out = Vec::new();
        let dress = Dress { cors, origin, callback, head_only: false, badge: None };
        write(&mut out, reply, dress, Persist::KeepAlive(Version::Http11), &HttpDate::default());
        String::from_utf8(out).unwrap()
    }

    /// Seeded: a value written straight into the output is byte for byte the answer its JSON text
    /// gives, for any value, CORS rule, origin, HEAD or GET and connection header.
    #[test]
    fn a_value_written_directly_is_the_json_answer() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let rules = [Cors::Any, Cors::Only(vec!["https://a.org".into()])];
        for _ in 0..2_000 {
            let value = match rng.u8(..4) {
                0 => rng.i64(..),
                1 => [0, -1, 1, i64::MIN, i64::MAX][rng.usize(..5)],
                _ => rng.i64(-1_000..1_000_000),
            };
            let cors = &rules[rng.usize(..2)];
            let origin = [None, Some("https://a.org"), Some("https://b.org")][rng.usize(..3)];
            let head_only = rng.bool();
            let persist = if rng.bool() { Persist::KeepAlive(Version::Http11) } else { Persist::Close };
            let dress = Dress { cors, origin, callback: None, head_only, badge: None };
            let (mut direct, mut text) = (Vec::new(), Vec::new());
            let n = write(&mut direct, &Reply::value(value), dress, persist, &HttpDate::default());
            let m = write(&mut text, &Reply::json(200, json::value(value)), dress, persist, &HttpDate::default());
            assert_eq!(
                (String::from_utf8_lossy(&direct), n),
                (String::from_utf8_lossy(&text), m),
                "seed {seed}, value {value}"
            );
        }
    }

    #[test]
    fn the_badge_headers_name_the_badges_content_type() {
        let line = format!("Content-Type: {}\r\n", crate::badge::CONTENT_TYPE);
        assert!(String::from_utf8_lossy(BADGE_HEADERS).contains(&line));
    }

    #[test]
    fn json_with_cors_for_any_origin() {
        let r = render(&Reply::json(200, json::value(7)), &Cors::Any, None, None);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("\r\nAccess-Control-Allow-Origin: *\r\n"));
        assert!(
            r.ends_with("Content-Type: application/json; charset=utf-8\r\nContent-Length: 11\r\n\r\n{\"value\":7}")
        );
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_no_allow_header() {
        let cors = Cors::new(&["https://a.example".into()]);
        let r = render(&Reply::json(200, json::value(1)), &cors, Some("https://a.example"), None);
        assert!(r.contains("\r\nAccess-Control-Allow-Origin: https://a.example\r\nVary: Origin\r\n"));
        let r = render(&Reply::json(200, json::value(1)), &cors, Some("https://b.example"), None);
        assert!(!r.contains("Access-Control-Allow-Origin"));
    }

    #[test]
    fn jsonp_preflight_and_errors() {
        let r = render(&Reply::json(200, json::value(3)), &Cors::Any, None, Some("cb"));
        assert!(r.ends_with("application/javascript; charset=utf-8\r\nContent-Length: 16\r\n\r\ncb({\"value\":3});"));
        let r = render(&Reply::preflight(), &Cors::Any, Some("https://x.org"), None);
        assert!(r.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(r.contains("Access-Control-Allow-Headers: Authorization, Content-Type\r\n"));
        assert!(r.ends_with("Access-Control-Max-Age: 43200\r\n\r\n"));
        let r = render(&Reply::unavailable(), &Cors::Any, None, None);
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && r.contains("Retry-After: 1\r\n"));
        assert!(r.contains("\r\nAccess-Control-Expose-Headers: Retry-After\r\n"), "{r}");
        let r = render(&Reply::method_not_allowed("POST, OPTIONS"), &Cors::Any, None, None);
        assert!(r.contains("Allow: POST, OPTIONS\r\n"));
    }
}
