//! Fuzzes the HTTP request parser the way a connection drives it: arbitrary bytes, delivered whole
//! and again in pieces whose sizes come from the input, must never panic, never consume more than
//! they were given, never stall (a step that is not `Incomplete` consumes something), and must give
//! the same requests and the same final error however they are split.
//!
//! The input is exactly the bytes a client sends (so the seed corpus is plain HTTP). Each input runs
//! under gunicorn's default limits and again under tiny limits, so that short inputs also reach the
//! 414/431 paths the defaults only reach with kilobytes; a hash of the input picks the tiny limits
//! and the split sizes.

#![no_main]

use hitcore::http::parse::{Limits, ParseError, Parser, Request, Step};
use libfuzzer_sys::fuzz_target;

/// What a connection would have seen: the requests in order, then at most one error, plus where the
/// parser stopped.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Request>,
    error: Option<ParseError>,
    /// Bytes consumed in total (heads and skipped body bytes).
    consumed: usize,
    /// Whether the parser ended between requests rather than inside a body.
    at_boundary: bool,
}

/// Feeds `chunks` one after another to a fresh parser, stepping after each until it needs more.
fn drive<'a>(limits: Limits, chunks: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new(limits);
    let mut buf = Vec::new();
    let mut out = Outcome { requests: Vec::new(), error: None, consumed: 0, at_boundary: true };
    'feed: for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            match parser.step(&buf[at..]) {
                Ok(Step::Incomplete) => break,
                Ok(step) => {
                    let n = step.consumed();
                    assert!(n > 0, "{step:?} consumed nothing: the connection would spin");
                    assert!(n <= buf.len() - at, "{step:?} consumed {n} of {} bytes", buf.len() - at);
                    if let Step::Request(r) = step {
                        out.requests.push(r);
                    }
                    at += n;
                }
                Err(e) => {
                    out.error = Some(e);
                    // The status must be one the connection knows how to answer.
                    assert!(matches!(e.status().code(), 400 | 413 | 414 | 417 | 431 | 501 | 505), "{e:?}");
                    out.consumed += at;
                    break 'feed;
                }
            }
        }
        buf.drain(..at);
        out.consumed += at;
    }
    out.at_boundary = parser.at_boundary();
    if out.error.is_some() {
        // Where an erroring parser stopped is of no interest: the connection closes.
        out.consumed = 0;
        out.at_boundary = true;
    }
    out
}

/// Chunk sizes from a tiny xorshift PRNG seeded by the input: 1 to 16 bytes, or all the rest.
fn chunks(data: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = match state % 8 {
            0 => rest.len(),
            1..=3 => 1,
            _ => 1 + (state >> 8) as usize % 16,
        }
        .min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// FNV-1a, to derive the split sizes and the tiny limits from the input without taking any of it.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fuzz_target!(|data: &[u8]| {
    let h = hash(data);
    let tiny = Limits {
        request_line: 8 + (h % 64) as usize,
        fields: (h >> 8) as usize % 8,
        field_size: 8 + (h >> 16) as usize % 32,
    };
    for limits in [Limits::default(), tiny] {
        let whole = drive(limits, std::iter::once(data));
        let split = drive(limits, chunks(data, (h >> 24) as u8));
        assert_eq!(whole, split, "split delivery of {:?} changed the outcome", String::from_utf8_lossy(data));
        // Byte at a time is the worst case for a parser that rescans: keep it to inputs where it is cheap.
        if data.len() <= 256 {
            let bytewise = drive(limits, data.chunks(1));
            assert_eq!(whole, bytewise, "bytewise delivery of {:?} changed the outcome", String::from_utf8_lossy(data));
        }
    }
});
