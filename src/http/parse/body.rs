//! Body framing: where a request's body ends, so the next request starts at the right byte.
//!
//! hitcore never uses a body; it only skips one, by `Content-Length` or by the chunked coding (RFC
//! 9112 §7.1), refusing what would let a proxy in front disagree on the framing. It owns the body
//! state between requests and the chunked state machine; it must not parse heads (`head` does), and
//! like the rest of the parser it touches no socket and no clock.

use super::{Limits, MAX_BODY, ParseError, Step, memchr, trim_cr};

/// Where the parser is within the body of the last request, if it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// Between requests: the next byte starts a request head.
    None,
    /// This many bytes of a `Content-Length` body are still to be skipped.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunked),
}

/// The chunked-body state machine (RFC 9112 §7.1), only to find the body's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Expecting a chunk-size line; `seen` is the body size so far, bounded by [`MAX_BODY`].
    Size { seen: u64 },
    /// Inside chunk data with `left` bytes to go, then a CRLF.
    Data { left: u64, seen: u64 },
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd { seen: u64 },
    /// After the last chunk: trailer fields until a blank line.
    Trailer { fields: usize },
}

/// Skips what it can of the body at the front of `input` (the parser is inside one: `body` is not
/// [`Body::None`]), advancing `body`; at the body's end it becomes [`Body::None`].
pub(super) fn skip(body: &mut Body, input: &[u8], limits: &Limits) -> Result<Step, ParseError> {
    match *body {
        Body::None => Ok(Step::Incomplete),
        Body::Length(left) => {
            if input.is_empty() {
                return Ok(Step::Incomplete);
            }
            let n = left.min(input.len() as u64);
            *body = if n == left { Body::None } else { Body::Length(left - n) };
            Ok(Step::Skipped(n as usize))
        }
        Body::Chunked(state) => chunked(body, state, input, limits),
    }
}

/// Skips what it can of a chunked body at the front of `input`, advancing `body`.
fn chunked(body: &mut Body, state: Chunked, input: &[u8], limits: &Limits) -> Result<Step, ParseError> {
    match state {
        Chunked::Size { seen } => {
            let Some((used, size)) = chunk_size_line(input, limits)? else {
                return Ok(Step::Incomplete);
            };
            let seen = seen.saturating_add(size);
            if seen > MAX_BODY {
                return Err(ParseError::BodyTooLarge);
            }
            let next = if size == 0 { Chunked::Trailer { fields: 0 } } else { Chunked::Data { left: size, seen } };
            *body = Body::Chunked(next);
            Ok(Step::Skipped(used))
        }
        Chunked::Data { left, seen } => {
            if input.is_empty() {
                return Ok(Step::Incomplete);
            }
            let n = left.min(input.len() as u64);
            let next = if n == left { Chunked::DataEnd { seen } } else { Chunked::Data { left: left - n, seen } };
            *body = Body::Chunked(next);
            Ok(Step::Skipped(n as usize))
        }
        Chunked::DataEnd { seen } => match input {
            [] | [b'\r'] => Ok(Step::Incomplete),
            [b'\r', b'\n', ..] => {
                *body = Body::Chunked(Chunked::Size { seen });
                Ok(Step::Skipped(2))
            }
            [b'\n', ..] => {
                *body = Body::Chunked(Chunked::Size { seen });
                Ok(Step::Skipped(1))
            }
            _ => Err(ParseError::BadRequest("chunk data not followed by CRLF")),
        },
        Chunked::Trailer { fields } => {
            let Some(end) = memchr(b'\n', input) else {
                if input.len() > limits.field_size + 1 {
                    return Err(ParseError::HeadersTooLarge);
                }
                return Ok(Step::Incomplete);
            };
            let line = trim_cr(&input[..end]);
            if line.is_empty() {
                *body = Body::None;
            } else if fields + 1 > limits.fields || line.len() > limits.field_size {
                return Err(ParseError::HeadersTooLarge);
            } else {
                *body = Body::Chunked(Chunked::Trailer { fields: fields + 1 });
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
fn chunk_size_line(input: &[u8], limits: &Limits) -> Result<Option<(usize, u64)>, ParseError> {
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
    if text.len() > limits.field_size || text.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(INVALID);
    }
    Ok(line)
}
