//! Request heads: the request line and header fields, from bytes to a [`Request`] and the framing of
//! its body.
//!
//! httparse does the tokenising; this file adds what httparse leaves to its caller: the
//! `--limit-request-*` limits (checked in the order the bytes arrive, so any split of the input gets
//! the same answer), `Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, `Expect`, and the
//! request target's form. It must not skip bodies (`body` does) or touch sockets or clocks.

use std::mem::MaybeUninit;

use super::body::{Body, Chunked};
use super::{Fields, Limits, MAX_BODY, Method, ParseError, Request, Span, Target, Version, memchr, trim_cr};

/// Parses one head with httparse, then applies hitcore's limits and semantic checks.
/// `Ok(None)` means incomplete; it also checks incomplete input against the limits, so an oversized
/// head is refused as soon as it is seen, not after it has been buffered.
///
/// Syntax errors and limits are checked in the order a client sends the bytes: an input is refused
/// for whichever problem starts at the earlier byte. Checking the limits only after a successful
/// tokenise (or only before it) would make the answer depend on how the input was split into reads:
/// a field line too long *and* holding a bare CR got 431 a byte at a time and 400 in one read.
///
/// A complete head's [`Fields`] go to `found` (left as they were otherwise).
pub(super) fn parse_head<'b>(
    input: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
    found: &mut Fields,
) -> Result<Option<(Request, Body)>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    let head_len = match tokenise(&mut req, input, headers) {
        Ok(Some(n)) => n,
        Ok(None) => return first_violation(input, limits).map_or(Ok(None), |(_, e)| Err(e)),
        Err(e) => {
            // A limit broken before the byte httparse choked on wins: a connection fed a byte at a
            // time would have refused the input for it before that byte arrived.
            let limit = first_violation(input, limits).and_then(|(at, limit)| {
                let mut prefix = httparse::Request::new(&mut []);
                tokenise(&mut prefix, &input[..at], headers).ok().map(|_| limit)
            });
            return Err(limit.unwrap_or(e));
        }
    };
    // A complete head no longer than the shortest line limit cannot break any limit: httparse has
    // already refused more fields than allowed, and every line is shorter than the head. That is
    // every ordinary request, which thus skips the line-by-line scan.
    if head_len > limits.request_line.min(limits.field_size) {
        if let Some((_, e)) = first_violation(&input[..head_len], limits) {
            return Err(e);
        }
    }

    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let method = match req.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        "CONNECT" => Method::Connect,
        _ => Method::Other,
    };
    let (target, origin) = classify_target(method, req.path.unwrap_or_default())?;
    let mut fields = Fields {
        method: Span::within(input, req.method.unwrap_or_default().as_bytes()),
        target: Span::within(input, origin),
        ..Fields::default()
    };

    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    // The codings of every Transfer-Encoding line, in order: how many were `chunked`, whether the
    // last one was, and how many were something else.
    let (mut chunked_codings, mut last_chunked, mut other_codings) = (0usize, false, 0usize);
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::BadRequest("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            for coding in tokens(h.value) {
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if last_chunked {
                    chunked_codings += 1;
                } else {
                    other_codings += 1;
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(h.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") && version == Version::Http11 {
            // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(ParseError::ExpectationFailed);
            }
        } else {
            let slot = match name.len() {
                6 if name.eq_ignore_ascii_case(b"origin") => &mut fields.origin,
                7 if name.eq_ignore_ascii_case(b"referer") => &mut fields.referer,
                13 if name.eq_ignore_ascii_case(b"authorization") => &mut fields.authorization,
                15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => &mut fields.forwarded_for,
                _ => continue,
            };
            slot.get_or_insert(Span::within(input, h.value));
        }
    }
    // The expectation needs no interim response: hitcore answers before reading any body, and the
    // body, if the client sends it anyway, is skipped by its framing.
    let _ = expect_continue;

    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(ParseError::BadRequest("HTTP/1.1 requires exactly one Host header"));
    }
    let body = if transfer_encoding {
        if content_length.is_some() {
            return Err(ParseError::BadRequest("Transfer-Encoding together with Content-Length"));
        }
        if version == Version::Http10 {
            return Err(ParseError::BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // RFC 9112 §6.3: without chunked as the final coding the body's length cannot be known (400);
        // chunked must not be applied twice (§7.1); a coding before it that hitcore cannot undo is
        // one it does not implement (§6.1: 501).
        if !last_chunked {
            return Err(ParseError::BadRequest("chunked is not the final transfer coding"));
        }
        if chunked_codings > 1 {
            return Err(ParseError::BadRequest("chunked applied more than once"));
        }
        if other_codings > 0 {
            return Err(ParseError::NotImplemented);
        }
        Body::Chunked(Chunked::Size { seen: 0 })
    } else {
        match content_length {
            Some(n) if n > MAX_BODY => return Err(ParseError::BodyTooLarge),
            Some(n) if n > 0 => Body::Length(n),
            _ => Body::None,
        }
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    *found = fields;
    Ok(Some((Request { method, target, version, keep_alive, head_len }, body)))
}

/// Runs httparse over `input` and maps its errors to statuses, without any of hitcore's limits.
/// `Ok(Some(n))` is a complete head of `n` bytes, `Ok(None)` an incomplete one.
fn tokenise<'h, 'b>(
    req: &mut httparse::Request<'h, 'b>,
    input: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<usize>, ParseError> {
    match req.parse_with_uninit_headers(input, headers) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(ParseError::HeadersTooLarge),
        Err(httparse::Error::Version) => version_error(input),
        Err(httparse::Error::Token) if req.method.is_none() => Err(ParseError::BadRequest("invalid method")),
        Err(httparse::Error::Token) => Err(ParseError::BadRequest("invalid request target")),
        Err(httparse::Error::HeaderName) => Err(ParseError::BadRequest("invalid header name")),
        Err(httparse::Error::HeaderValue) => Err(ParseError::BadRequest("invalid header value")),
        Err(_) => Err(ParseError::BadRequest("invalid line ending")),
    }
}

/// httparse reports any version it does not know as one error; RFC 9110 tells a well-formed but
/// unsupported `HTTP/x.y` (505) from garbage where the version should be (400). httparse may report
/// it before the line is complete (`HTTP/2`), so a version that could still become `HTTP/d.d` is
/// incomplete input, not yet an error: a request must parse the same however it is split.
fn version_error(input: &[u8]) -> Result<Option<usize>, ParseError> {
    let line = skip_empty_lines(input);
    let (line, complete) = match memchr(b'\n', line) {
        Some(i) => (trim_cr(&line[..i]), true),
        None => (trim_cr(line), false),
    };
    // httparse has already taken a method and a target, each followed by one space: the version
    // is all the rest. (Taking the last word instead read `GET / HTX * HTTP/1.1` as 505 when whole
    // but 400 when cut after `HTX`.)
    let Some(version) = line.splitn(3, |&b| b == b' ').nth(2) else {
        return Err(ParseError::BadRequest("invalid request line"));
    };
    let shape = |i: usize, b: u8| match i {
        0..=4 => b == b"HTTP/"[i],
        5 | 7 => b.is_ascii_digit(),
        6 => b == b'.',
        _ => false,
    };
    let plausible = version.iter().enumerate().all(|(i, &b)| shape(i, b));
    match (plausible, complete) {
        (true, true) if version.len() == 8 => Err(ParseError::VersionNotSupported),
        (true, false) => Ok(None),
        _ => Err(ParseError::BadRequest("invalid HTTP version")),
    }
}

/// What the target names, and the target in origin form (path and query; an absolute form's
/// scheme and authority left out), which the API and the health check read ([`Fields::target`]).
fn classify_target(method: Method, path: &str) -> Result<(Target, &[u8]), ParseError> {
    let path = path.as_bytes();
    if method == Method::Connect {
        // Authority form (`host:port`) is only for CONNECT, which an origin server does not support:
        // answered 405 by the caller, whatever the target.
        return Ok((Target::Other, path));
    }
    if path == b"*" {
        return if method == Method::Options {
            Ok((Target::Asterisk, path))
        } else {
            Err(ParseError::BadRequest("asterisk target is only valid for OPTIONS"))
        };
    }
    let origin = if path.first() == Some(&b'/') {
        path
    } else if let Some(rest) =
        strip_prefix_ignore_case(path, b"http://").or_else(|| strip_prefix_ignore_case(path, b"https://"))
    {
        // Absolute form (RFC 9112 §3.2.2): servers must accept it; the authority is ignored, the
        // path (empty means `/`) is what is routed.
        match rest.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) if rest[i] == b'/' => &rest[i..],
            // No path: the root, whatever the query.
            _ => return Ok((Target::Root, &rest[rest.len()..])),
        }
    } else {
        return Err(ParseError::BadRequest("invalid request target"));
    };
    let path_only = &origin[..origin.iter().position(|&b| b == b'?').unwrap_or(origin.len())];
    Ok((if path_only == b"/" { Target::Root } else { Target::Other }, origin))
}

fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let value = trim_ows(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadRequest("invalid Content-Length"));
    }
    Ok(value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The shortest prefix of `input` that already breaks a limit, with the error for it: the point at
/// which a connection receiving `input` a byte at a time must refuse it. `None` if no prefix of the
/// head does. The scan stops at the blank line that ends the head.
///
/// Computing the point, rather than checking whatever has arrived, is what makes the answer the
/// same however the input is split: a complete head and each of its prefixes agree on it.
fn first_violation(input: &[u8], limits: &Limits) -> Option<(usize, ParseError)> {
    let mut at = input.len() - skip_empty_lines(input).len();
    let mut line_no = 0usize;
    let mut found = None;
    // Where the head ends: the end of its blank line, or of the input while it is incomplete.
    let end = loop {
        let rest = &input[at..];
        let newline = memchr(b'\n', rest);
        let raw = &rest[..newline.unwrap_or(rest.len())];
        if line_no > 0 && newline.is_some() && trim_cr(raw).is_empty() {
            break at + raw.len() + 1;
        }
        let (limit, error) = if line_no == 0 {
            (limits.request_line, ParseError::UriTooLong)
        } else {
            (limits.field_size, ParseError::HeadersTooLarge)
        };
        // Too long: an unfinished line may still be missing its CR, so it breaks the limit at its
        // second byte past it; a finished one, CR removed, at its LF.
        let too_long = if raw.len() > limit + 1 {
            Some(at + limit + 2)
        } else if newline.is_some() && trim_cr(raw).len() > limit {
            Some(at + raw.len() + 1)
        } else {
            None
        };
        // Too many: the line after the last field allowed must be the blank line, so it breaks the
        // limit at its first byte that cannot begin one.
        let too_many = match rest {
            _ if line_no <= limits.fields => None,
            [b'\r', b'\n', ..] | [b'\n', ..] | [b'\r'] | [] => None,
            [b'\r', ..] => Some(at + 2),
            [_, ..] => Some(at + 1),
        };
        if let Some(first) = too_long.into_iter().chain(too_many).min() {
            found = Some((first, error));
            break input.len();
        }
        match newline {
            Some(i) => at += i + 1,
            None => break input.len(),
        }
        line_no += 1;
    };
    // Leading empty lines are skipped but still buffered: they count towards the head's size, so
    // that a client cannot make the connection buffer an unbounded run of CRLFs.
    let max_head = limits.max_head();
    let oversized = (end > max_head).then_some((max_head + 1, ParseError::HeadersTooLarge));
    found.into_iter().chain(oversized).min_by_key(|&(at, _)| at)
}

/// RFC 9112 §2.2: a server should ignore empty lines received before a request line (httparse does).
fn skip_empty_lines(mut input: &[u8]) -> &[u8] {
    loop {
        match input {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => input = rest,
            _ => return input,
        }
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The comma-separated tokens of a list-valued header, trimmed, empty elements skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|t| !t.is_empty())
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}
