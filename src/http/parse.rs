//! The HTTP/1.x request parser: bytes in, [`Request`]s or a [`ParseError`] out, no I/O.
//!
//! It owns request framing (where one request ends and the next begins, including any body that must
//! be skipped), the limits on request heads (gunicorn's `--limit-request-*`), and the mapping of every
//! malformed or unsupported input to the status RFC 9112 asks for. It must not touch sockets, Redis or
//! the clock, so that it can be property-tested and fuzzed on its own. httparse does the tokenising;
//! this module adds what httparse leaves to its caller: limits, `Host`, `Content-Length`,
//! `Transfer-Encoding`, `Connection`, `Expect`, the request target's form, and body skipping.
//!
//! Incomplete input is `Ok(Step::Incomplete)`, never an error, and nothing is consumed until a
//! request head (or a piece of body) is complete, so a request split at any byte parses the same.

use std::mem::MaybeUninit;

/// Request heads are parsed with a stack array of this many (uninitialised, so free) headers when
/// `--limit-request-fields` allows no more; a larger limit needs a heap array per parse. It covers
/// gunicorn's default, 100.
const STACK_HEADERS: usize = 128;

/// Bodies are never used by hitcore, only skipped to keep the connection framed. A body larger than
/// this is refused with 413 and the connection is closed rather than read for no purpose.
pub const MAX_BODY: u64 = 64 * 1024;

/// The largest value each `--limit-request-*` flag accepts, as gunicorn caps them.
pub const MAX_REQUEST_LINE: usize = 8190;
/// See [`MAX_REQUEST_LINE`].
pub const MAX_FIELDS: usize = 32768;
/// See [`MAX_REQUEST_LINE`].
pub const MAX_FIELD_SIZE: usize = 8190;

/// The limits a request head must respect. The defaults are gunicorn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Longest request line, without its CRLF (`--limit-request-line`, default 4094). Longer: 414.
    pub request_line: usize,
    /// Most header fields (`--limit-request-fields`, default 100). More: 431.
    pub fields: usize,
    /// Longest header field line, name and value (`--limit-request-field-size`, default 8190). Longer: 431.
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_line: 4094, fields: 100, field_size: 8190 }
    }
}

impl Limits {
    /// The most bytes a complete head may take: the request line, every field line, their CRLFs and
    /// the blank line. A connection never buffers more than this for one head.
    pub fn max_head(&self) -> usize {
        self.request_line + 2 + self.fields * (self.field_size + 2) + 2
    }
}

/// The request methods hitcore tells apart; everything else is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: increments the counter when the target is `/`.
    Get,
    /// `HEAD`: the headers a GET would get, without a body and without incrementing (it is safe).
    Head,
    /// `OPTIONS`: 200 with `Allow`.
    Options,
    /// `CONNECT`, whose target is an authority, not a path.
    Connect,
    /// Any other syntactically valid method: 405 on `/`.
    Other,
}

/// What the request target names, once its form (origin, absolute, asterisk) is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/`, with or without a query string, in origin or absolute form.
    Root,
    /// `*` (asterisk form): only meaningful for `OPTIONS`.
    Asterisk,
    /// Any other path: 404.
    Other,
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client asks for keep-alive.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says `Connection: close`.
    Http11,
}

/// One parsed request head. It owns no bytes of the input, so the read buffer can be reused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The target.
    pub target: Target,
    /// The version, which also decides how keep-alive is signalled in the response.
    pub version: Version,
    /// Whether the client allows the connection to stay open after this response.
    pub keep_alive: bool,
    /// Bytes of the input taken by the head: the access log's view of the request line starts here.
    pub head_len: usize,
}

/// Why a request cannot be served. Each maps to one status; all of them close the connection,
/// because after any of them the server can no longer be sure where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Bad syntax in the request line or a header, a missing or repeated `Host`, conflicting framing.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The request line is longer than `--limit-request-line`.
    #[error("request line too long")]
    UriTooLong,
    /// More header fields than `--limit-request-fields`, or one longer than `--limit-request-field-size`.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// A body larger than [`MAX_BODY`].
    #[error("request body too large")]
    BodyTooLarge,
    /// An `Expect` value other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// A transfer coding other than `chunked`, before a final `chunked`.
    #[error("unsupported transfer coding")]
    NotImplemented,
    /// A well-formed `HTTP/x.y` version other than 1.0 and 1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::BadRequest(_) => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::ExpectationFailed => 417,
            ParseError::NotImplemented => 501,
            ParseError::VersionNotSupported => 505,
        }
    }
}

/// What one call to [`Parser::step`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A complete request head, `consumed` bytes long. Its body, if any, is skipped by later steps.
    Request(Request),
    /// `n` bytes of a body were skipped; call again.
    Skipped(usize),
    /// More input is needed; nothing was consumed.
    Incomplete,
}

impl Step {
    /// How many input bytes this step consumed.
    pub fn consumed(&self) -> usize {
        match self {
            Step::Request(r) => r.head_len,
            Step::Skipped(n) => *n,
            Step::Incomplete => 0,
        }
    }
}

/// Where the parser is within the body of the last request, if it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Between requests: the next byte starts a request head.
    None,
    /// This many bytes of a `Content-Length` body are still to be skipped.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunked),
}

/// The chunked-body state machine (RFC 9112 §7.1), only to find the body's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Expecting a chunk-size line; `seen` is the body size so far, bounded by [`MAX_BODY`].
    Size { seen: u64 },
    /// Inside chunk data with `left` bytes to go, then a CRLF.
    Data { left: u64, seen: u64 },
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd { seen: u64 },
    /// After the last chunk: trailer fields until a blank line.
    Trailer { fields: usize },
}

/// Parses the requests of one connection, one step at a time. It keeps only the body state between
/// steps: a head is parsed from scratch each time, which is what lets partial input cost nothing.
#[derive(Debug, Clone)]
pub struct Parser {
    limits: Limits,
    body: Body,
}

impl Parser {
    /// A parser for a new connection.
    pub fn new(limits: Limits) -> Self {
        Parser { limits, body: Body::None }
    }

    /// Whether the parser is between requests (not inside a body). A connection idle in this state
    /// may be closed without cutting a request in half.
    pub fn at_boundary(&self) -> bool {
        self.body == Body::None
    }

    /// Looks at the front of `input`. On `Ok(step)`, the caller drops `step.consumed()` bytes before
    /// the next call. On `Err`, the caller answers the error's status and closes the connection.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ParseError> {
        match self.body {
            Body::None => self.head(input),
            Body::Length(left) => {
                if input.is_empty() {
                    return Ok(Step::Incomplete);
                }
                let n = left.min(input.len() as u64);
                self.body = if n == left { Body::None } else { Body::Length(left - n) };
                Ok(Step::Skipped(n as usize))
            }
            Body::Chunked(state) => self.chunked(state, input),
        }
    }

    fn head(&mut self, input: &[u8]) -> Result<Step, ParseError> {
        let fields = self.limits.fields;
        let parsed = if fields <= STACK_HEADERS {
            let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
            parse_head(input, &self.limits, &mut headers[..fields])
        } else {
            let mut headers = Vec::new();
            headers.resize_with(fields, MaybeUninit::uninit);
            parse_head(input, &self.limits, &mut headers)
        }?;
        match parsed {
            None => Ok(Step::Incomplete),
            Some((request, body)) => {
                self.body = body;
                Ok(Step::Request(request))
            }
        }
    }

    fn chunked(&mut self, state: Chunked, input: &[u8]) -> Result<Step, ParseError> {
        match state {
            Chunked::Size { seen } => {
                let Some((used, size)) = self.chunk_size_line(input)? else {
                    return Ok(Step::Incomplete);
                };
                let seen = seen.saturating_add(size);
                if seen > MAX_BODY {
                    return Err(ParseError::BodyTooLarge);
                }
                let next = if size == 0 { Chunked::Trailer { fields: 0 } } else { Chunked::Data { left: size, seen } };
                self.body = Body::Chunked(next);
                Ok(Step::Skipped(used))
            }
            Chunked::Data { left, seen } => {
                if input.is_empty() {
                    return Ok(Step::Incomplete);
                }
                let n = left.min(input.len() as u64);
                let next = if n == left { Chunked::DataEnd { seen } } else { Chunked::Data { left: left - n, seen } };
                self.body = Body::Chunked(next);
                Ok(Step::Skipped(n as usize))
            }
            Chunked::DataEnd { seen } => match input {
                [] | [b'\r'] => Ok(Step::Incomplete),
                [b'\r', b'\n', ..] => {
                    self.body = Body::Chunked(Chunked::Size { seen });
                    Ok(Step::Skipped(2))
                }
                [b'\n', ..] => {
                    self.body = Body::Chunked(Chunked::Size { seen });
                    Ok(Step::Skipped(1))
                }
                _ => Err(ParseError::BadRequest("chunk data not followed by CRLF")),
            },
            Chunked::Trailer { fields } => {
                let Some(end) = memchr(b'\n', input) else {
                    if input.len() > self.limits.field_size + 1 {
                        return Err(ParseError::HeadersTooLarge);
                    }
                    return Ok(Step::Incomplete);
                };
                let line = trim_cr(&input[..end]);
                if line.is_empty() {
                    self.body = Body::None;
                } else if fields + 1 > self.limits.fields || line.len() > self.limits.field_size {
                    return Err(ParseError::HeadersTooLarge);
                } else {
                    self.body = Body::Chunked(Chunked::Trailer { fields: fields + 1 });
                }
                Ok(Step::Skipped(end + 1))
            }
        }
    }

    /// Reads a chunk-size line (RFC 9112 §7.1): `Some((bytes, size))` once it is complete.
    ///
    /// httparse is more lenient than the RFC in two ways that matter for framing: it takes a line
    /// with no digits at all (an empty line) as a last chunk, and it lets any byte, a bare LF
    /// included, through in a chunk extension. A proxy in front that reads either differently
    /// would disagree with hitcore on where the body ends, so both are refused here. Every refusal
    /// is the same error, so that it does not depend on how far the line had arrived.
    fn chunk_size_line(&self, input: &[u8]) -> Result<Option<(usize, u64)>, ParseError> {
        const INVALID: ParseError = ParseError::BadRequest("invalid chunk size line");
        match input.first() {
            None => return Ok(None),
            Some(b) if !b.is_ascii_hexdigit() => return Err(INVALID),
            Some(_) => {}
        }
        let line = match httparse::parse_chunk_size(input) {
            Ok(httparse::Status::Complete((used, size))) => Some((used, size)),
            Ok(httparse::Status::Partial) => None,
            Err(_) => return Err(INVALID),
        };
        // The line without its CRLF, or all there is of it so far (a final CR may yet get its LF).
        let text = match line {
            Some((used, _)) => &input[..used - 2],
            None => input.strip_suffix(b"\r").unwrap_or(input),
        };
        // A chunk-size line is hex digits and short extensions: a long one is an attack.
        if text.len() > self.limits.field_size || text.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(INVALID);
        }
        Ok(line)
    }
}

/// Parses one head with httparse, then applies hitcore's limits and semantic checks.
/// `Ok(None)` means incomplete; it also checks incomplete input against the limits, so an oversized
/// head is refused as soon as it is seen, not after it has been buffered.
///
/// Syntax errors and limits are checked in the order a client sends the bytes: an input is refused
/// for whichever problem starts at the earlier byte. Checking the limits only after a successful
/// tokenise (or only before it) would make the answer depend on how the input was split into reads:
/// a field line too long *and* holding a bare CR got 431 a byte at a time and 400 in one read.
fn parse_head<'b>(
    input: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
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
    let target = classify_target(method, req.path.unwrap_or_default())?;

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

fn classify_target(method: Method, path: &str) -> Result<Target, ParseError> {
    let path = path.as_bytes();
    if method == Method::Connect {
        // Authority form (`host:port`) is only for CONNECT, which an origin server does not support:
        // answered 405 by the caller, whatever the target.
        return Ok(Target::Other);
    }
    if path == b"*" {
        return if method == Method::Options {
            Ok(Target::Asterisk)
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
            _ => b"/",
        }
    } else {
        return Err(ParseError::BadRequest("invalid request target"));
    };
    let path_only = &origin[..origin.iter().position(|&b| b == b'?').unwrap_or(origin.len())];
    Ok(if path_only == b"/" { Target::Root } else { Target::Other })
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

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Result<Step, ParseError> {
        Parser::new(Limits::default()).step(input)
    }

    fn req(input: &[u8]) -> Request {
        match one(input) {
            Ok(Step::Request(r)) => r,
            other => panic!("expected a request from {:?}, got {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn get_root_http11_keeps_alive() {
        let r = req(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.method, r.target, r.version, r.keep_alive), (Method::Get, Target::Root, Version::Http11, true));
        assert_eq!(r.head_len, 27);
    }

    #[test]
    fn http10_closes_unless_asked() {
        assert!(!req(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!req(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn targets() {
        assert_eq!(req(b"GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\n").target, Target::Root);
        assert_eq!(req(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").target, Target::Other);
        assert_eq!(req(b"GET http://h:1/ HTTP/1.1\r\nHost: h\r\n\r\n").target, Target::Root);
        assert_eq!(req(b"GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n").target, Target::Root);
        assert_eq!(req(b"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n").target, Target::Other);
        assert_eq!(req(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").target, Target::Asterisk);
        assert_eq!(
            one(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(ParseError::BadRequest("asterisk target is only valid for OPTIONS"))
        );
        assert_eq!(req(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").method, Method::Connect);
    }

    #[test]
    fn partial_is_incomplete_at_every_split() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(one(&full[..cut]), Ok(Step::Incomplete), "cut at {cut}");
        }
        assert!(matches!(one(full), Ok(Step::Request(_))));
    }

    #[test]
    fn versions() {
        assert_eq!(one(b"GET / HTTP/2.0\r\n\r\n"), Err(ParseError::VersionNotSupported));
        assert_eq!(one(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"), Err(ParseError::VersionNotSupported));
        assert!(matches!(one(b"GET / FOO/1.1\r\n\r\n"), Err(ParseError::BadRequest(_))));
        for cut in 0..16 {
            let r = one(&b"GET / HTTP/2.0\r\n"[..cut]);
            assert!(r == Ok(Step::Incomplete), "cut {cut}: {r:?}");
        }
    }

    #[test]
    fn host_rules() {
        assert!(matches!(one(b"GET / HTTP/1.1\r\n\r\n"), Err(ParseError::BadRequest(_))));
        assert!(matches!(one(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Err(ParseError::BadRequest(_))));
        assert!(matches!(one(b"GET / HTTP/1.0\r\n\r\n"), Ok(Step::Request(_))));
    }

    #[test]
    fn framing_errors() {
        let te_cl = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert!(matches!(one(te_cl), Err(ParseError::BadRequest(_))));
        let gzip = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(matches!(one(gzip), Err(ParseError::BadRequest(_))), "chunked is not the final coding");
        let gzip_chunked = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(one(gzip_chunked), Err(ParseError::NotImplemented));
        let twice = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n";
        assert!(matches!(one(twice), Err(ParseError::BadRequest(_))));
        let two_cl = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(one(two_cl), Err(ParseError::BadRequest(_))));
        let bad_cl = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n";
        assert!(matches!(one(bad_cl), Err(ParseError::BadRequest(_))));
        let big = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(one(big), Err(ParseError::BodyTooLarge));
        let expect = b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n";
        assert_eq!(one(expect), Err(ParseError::ExpectationFailed));
        let fold = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n";
        assert!(matches!(one(fold), Err(ParseError::BadRequest(_))));
        let space = b"GET / HTTP/1.1\r\nHost : x\r\n\r\n";
        assert!(matches!(one(space), Err(ParseError::BadRequest(_))));
    }

    #[test]
    fn content_length_body_is_skipped_not_parsed() {
        let mut p = Parser::new(Limits::default());
        let input = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let Ok(Step::Request(r)) = p.step(input) else { panic!() };
        let mut at = r.head_len;
        assert_eq!(p.step(&input[at..]), Ok(Step::Skipped(18)));
        at += 18;
        let Ok(Step::Request(r)) = p.step(&input[at..]) else { panic!() };
        assert_eq!(r.target, Target::Root);
        assert_eq!(at + r.head_len, input.len());
    }

    #[test]
    fn chunked_body_is_skipped() {
        let mut p = Parser::new(Limits::default());
        let input = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut at = 0;
        let mut requests = vec![];
        while at < input.len() {
            let step = p.step(&input[at..]).unwrap();
            if let Step::Request(r) = step {
                requests.push(r.target);
            }
            assert_ne!(step, Step::Incomplete, "stalled at {at}");
            at += step.consumed();
        }
        assert_eq!(requests, vec![Target::Root, Target::Other]);
        assert!(p.at_boundary());
    }

    /// Feeds `input` to a fresh parser `piece` bytes at a time, as a connection would, and returns
    /// the requests, or the first error.
    fn feed(limits: Limits, input: &[u8], piece: usize) -> Result<Vec<Request>, ParseError> {
        let mut p = Parser::new(limits);
        let (mut buf, mut requests) = (Vec::new(), Vec::new());
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                let step = p.step(&buf)?;
                if let Step::Request(r) = step {
                    requests.push(r);
                }
                if step == Step::Incomplete {
                    break;
                }
                buf.drain(..step.consumed());
            }
        }
        Ok(requests)
    }

    /// The same answer whole, a byte at a time and in pieces of 7.
    fn however_split(limits: Limits, input: &[u8]) -> Result<Vec<Request>, ParseError> {
        let whole = feed(limits, input, input.len().max(1));
        assert_eq!(feed(limits, input, 1), whole, "a byte at a time: {:?}", input.escape_ascii().to_string());
        assert_eq!(feed(limits, input, 7), whole, "in pieces of 7: {:?}", input.escape_ascii().to_string());
        whole
    }

    #[test]
    fn exactly_the_field_limit_passes_when_the_blank_line_comes_alone() {
        // Found by the property tests: with as many fields as allowed, a head whose blank line
        // arrived in a later read was refused with 431, because the empty line still to come was
        // counted as one field too many.
        let limits = Limits { request_line: 100, fields: 2, field_size: 100 };
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
        assert_eq!(however_split(limits, head).map(|r| r.len()), Ok(1));
        let mut p = Parser::new(limits);
        assert_eq!(p.step(&head[..head.len() - 2]), Ok(Step::Incomplete));
        assert_eq!(p.step(&head[..head.len() - 1]), Ok(Step::Incomplete));
        // A third field is still refused, as soon as its first byte shows it is not the blank line.
        assert_eq!(p.step(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX"), Err(ParseError::HeadersTooLarge));
        let none = Limits { fields: 0, ..limits };
        assert_eq!(however_split(none, b"GET / HTTP/1.0\r\n\r\n").map(|r| r.len()), Ok(1));
    }

    #[test]
    fn the_earlier_of_a_limit_and_a_syntax_error_wins_however_split() {
        // Found by the fuzzer: a field line both too long and holding a bare CR was 400 in one read
        // and 431 a byte at a time. The problem at the earlier byte decides, in both.
        let limits = Limits { request_line: 100, fields: 4, field_size: 8 };
        let long_first = b"GET / HTTP/1.1\r\nHost: hhhhhhh\rX: y\r\n\r\n";
        assert_eq!(however_split(limits, long_first), Err(ParseError::HeadersTooLarge));
        let cr_first = b"GET / HTTP/1.1\r\nHost: h\rX: yyyyyyyyyy\r\n\r\n";
        assert!(matches!(however_split(limits, cr_first), Err(ParseError::BadRequest(_))));
        let defaults = Limits::default();
        let long_line = [b"GET /".as_slice(), &[b'a'; 5000], b"\x01 HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
        assert_eq!(however_split(defaults, &long_line), Err(ParseError::UriTooLong));
        let long_version = [b"GET /".as_slice(), &[b'a'; 5000], b" HTTP/2.0\r\n\r\n"].concat();
        assert_eq!(however_split(defaults, &long_version), Err(ParseError::UriTooLong));
    }

    #[test]
    fn leading_empty_lines_are_bounded_like_a_head() {
        // RFC 9112 §2.2 lets a server skip empty lines before a request line, but they stay in the
        // connection's buffer until the head is complete: unbounded, they were a way to make it
        // buffer without limit.
        let limits = Limits { request_line: 20, fields: 2, field_size: 16 };
        let flood = b"\r\n".repeat(limits.max_head() / 2 + 1);
        assert_eq!(however_split(limits, &flood), Err(ParseError::HeadersTooLarge));
        let few = [b"\r\n\r\n\n".as_slice(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(however_split(limits, &few).map(|r| r[0].head_len), Ok(few.len()));
    }

    #[test]
    fn the_version_is_what_follows_the_target() {
        // Found by the fuzzer: the last word of the line was taken for the version, so this was
        // 505 in one read (`HTTP/1.1` is well formed) and 400 when cut after `HTX` (it is not).
        let input = b"POST / HTX * HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(however_split(Limits::default(), input), Err(ParseError::BadRequest("invalid HTTP version")));
        let trailing = b"GET / HTTP/2.0 \r\nHost: h\r\n\r\n";
        assert!(matches!(however_split(Limits::default(), trailing), Err(ParseError::BadRequest(_))));
        assert_eq!(however_split(Limits::default(), b"GET / HTTP/2.0\r\n\r\n"), Err(ParseError::VersionNotSupported));
    }

    #[test]
    fn chunk_size_lines_are_strict() {
        let body =
            |b: &[u8]| [b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(), b].concat();
        let invalid = Err(ParseError::BadRequest("invalid chunk size line"));
        // No digits: httparse reads an empty line as a last chunk, which would end the body early
        // and parse what follows as a request.
        assert_eq!(however_split(Limits::default(), &body(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")), invalid);
        assert_eq!(however_split(Limits::default(), &body(b";a\r\n\r\n")), invalid);
        // A bare LF (or another control byte) in an extension: httparse lets it through, a proxy
        // may take it for the end of the line.
        assert_eq!(however_split(Limits::default(), &body(b"3;a\nabc\r\n0\r\n\r\n")), invalid);
        assert_eq!(however_split(Limits::default(), &body(b"3;a\x7f\r\nabc\r\n0\r\n\r\n")), invalid);
        // Too long is too long, whether it arrives whole (it was accepted) or in pieces.
        let limits = Limits { field_size: 28, ..Limits::default() };
        let ext = |n| body(&[b"3;".as_slice(), &b"e".repeat(n), b"\r\nabc\r\n0\r\n\r\n"].concat());
        assert_eq!(however_split(limits, &ext(27)), invalid);
        assert_eq!(however_split(limits, &ext(26)).map(|r| r.len()), Ok(1));
        // Extensions, quoted or not, and upper-case hex are fine.
        let fine = body(b"A;x=\"a b\"\r\n0123456789\r\n0;y\r\n\r\n");
        assert_eq!(however_split(Limits::default(), &fine).map(|r| r.len()), Ok(1));
    }

    #[test]
    fn limits_refuse_early() {
        let limits = Limits { request_line: 20, fields: 2, field_size: 16 };
        let mut p = Parser::new(limits);
        assert_eq!(p.step(b"GET /aaaaaaaaaaaaaaaaaaaaaaaaa"), Err(ParseError::UriTooLong));
        assert_eq!(p.step(b"GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaa"), Err(ParseError::HeadersTooLarge));
        assert_eq!(p.step(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), Err(ParseError::HeadersTooLarge));
        assert_eq!(p.step(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), Err(ParseError::HeadersTooLarge));
        assert!(matches!(p.step(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(Step::Request(_))));
        // Exactly at the limits is allowed.
        let at = b"GET /aaaaaa HTTP/1.1\r\nHost: aaaaaaaaaa\r\n\r\n";
        assert!(matches!(Parser::new(limits).step(at), Ok(Step::Request(_))));
    }
}
