//! The HTTP/1.x request parser: bytes in, [`Request`]s or a [`ParseError`] out, no I/O.
//!
//! It owns request framing (where one request ends and the next begins, including any body that must
//! be skipped), the limits on request heads (gunicorn's `--limit-request-*`), and the mapping of every
//! malformed or unsupported input to the status RFC 9112 asks for. It must not touch sockets, Redis or
//! the clock, so that it can be property-tested and fuzzed on its own. httparse does the tokenising;
//! this module adds what httparse leaves to its caller: limits, `Host`, `Content-Length`,
//! `Transfer-Encoding`, `Connection`, `Expect`, the request target's form, and body skipping; and
//! it notes where the parts the counting API reads lie ([`Fields`]), so no one tokenises a head twice.
//!
//! The work is split as hyper splits it: `head` parses request heads, `body` skips
//! bodies; this file holds the types they share and the [`Parser`] that alternates between them.
//!
//! Incomplete input is `Ok(Step::Incomplete)`, never an error, and nothing is consumed until a
//! request head (or a piece of body) is complete, so a request split at any byte parses the same.

mod body;
mod head;
#[cfg(test)]
mod tests;

use std::mem::MaybeUninit;

use super::status::Status;
use body::Body;
use head::parse_head;

/// Request heads are parsed with a stack array of this many (uninitialised, so free) headers when
/// `--limit-request-fields` allows no more; a larger limit needs a heap array per parse. It covers
/// gunicorn's default, 100.
const STACK_HEADERS: usize = 128;

/// Bodies are never used by hitcore, only skipped to keep the connection framed. A body larger than
/// this is refused with 413 and the connection is closed rather than read for no purpose.
pub const MAX_BODY: u64 = 64 * 1024;

pub use crate::config::limits::{Limits, MAX_FIELD_SIZE, MAX_FIELDS, MAX_REQUEST_LINE};

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

/// A run of a head's bytes by offset, so that a [`Request`] can say where a part lies without
/// borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part`, a slice of `input`, lies in it (empty if it is not one).
    fn within(input: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize);
        match start.and_then(|s| Some((u32::try_from(s).ok()?, u32::try_from(s + part.len()).ok()?))) {
            Some((start, end)) if end as usize <= input.len() => Span { start, end },
            _ => Span::default(),
        }
    }

    /// The bytes of `head` (the input the request was parsed from) this span covers.
    pub fn of(self, head: &[u8]) -> &[u8] {
        head.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// Where the parts of a head that the counting API reads lie, found while httparse tokenises it,
/// so that the API does not tokenise the head a second time (callgrind: that was about 8 % of a
/// `/hit`'s instructions). For a repeated header, the first one counts. [`Parser::fields`] has
/// them for the head it returned last; they are not in [`Request`], which every `GET /` moves
/// around several times (callgrind: carrying them there cost `GET /` 2.7 % more instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields {
    /// The method token.
    pub method: Span,
    /// The request target in origin form, with its query: an absolute form's scheme and
    /// authority are left out, as the parser routes it.
    pub target: Span,
    /// `Origin`'s value.
    pub origin: Option<Span>,
    /// `Referer`'s value.
    pub referer: Option<Span>,
    /// `Authorization`'s value.
    pub authorization: Option<Span>,
    /// `X-Forwarded-For`'s value.
    pub forwarded_for: Option<Span>,
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
    /// The status this error is answered with.
    pub fn status(self) -> Status {
        match self {
            ParseError::BadRequest(_) => Status::BadRequest,
            ParseError::UriTooLong => Status::UriTooLong,
            ParseError::HeadersTooLarge => Status::HeaderFieldsTooLarge,
            ParseError::BodyTooLarge => Status::ContentTooLarge,
            ParseError::ExpectationFailed => Status::ExpectationFailed,
            ParseError::NotImplemented => Status::NotImplemented,
            ParseError::VersionNotSupported => Status::VersionNotSupported,
        }
    }
}

/// What one call to [`Parser::step`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A complete request head, [`Request::head_len`] bytes long. Its body, if any, is skipped by later steps.
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

/// Parses the requests of one connection, one step at a time. It keeps only the body state between
/// steps: a head is parsed from scratch each time, which is what lets partial input cost nothing.
#[derive(Debug, Clone)]
pub struct Parser {
    limits: Limits,
    body: Body,
    /// The API's parts of the head last returned as [`Step::Request`].
    fields: Fields,
}

impl Parser {
    /// A parser for a new connection.
    pub fn new(limits: Limits) -> Self {
        Parser { limits, body: Body::None, fields: Fields::default() }
    }

    /// Where the counting API's parts lie in the head the last [`Step::Request`] was parsed from
    /// (offsets from the start of the input that step was given).
    pub fn fields(&self) -> &Fields {
        &self.fields
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
            _ => body::skip(&mut self.body, input, &self.limits),
        }
    }

    fn head(&mut self, input: &[u8]) -> Result<Step, ParseError> {
        let fields = self.limits.fields;
        let parsed = if fields <= STACK_HEADERS {
            let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
            parse_head(input, &self.limits, &mut headers[..fields], &mut self.fields)
        } else {
            let mut headers = Vec::new();
            headers.resize_with(fields, MaybeUninit::uninit);
            parse_head(input, &self.limits, &mut headers, &mut self.fields)
        }?;
        match parsed {
            None => Ok(Step::Incomplete),
            Some((request, body)) => {
                self.body = body;
                Ok(Step::Request(request))
            }
        }
    }
}

/// The line without a trailing CR.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}
