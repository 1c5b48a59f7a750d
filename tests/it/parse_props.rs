//! Property tests for the HTTP/1.x request parser, driven the way a connection drives it: a loop
//! that feeds [`Parser::step`] the unconsumed input and appends the next piece read from the socket
//! when it answers `Incomplete`, until the input runs out or an error closes the connection.
//!
//! - Valid requests, pipelined at random depth and cut at random points (and a byte at a time), come
//!   out exactly once each, in order, with the right method, target, version and keep-alive, and
//!   every byte, bodies included, is consumed.
//! - A known-bad request after some valid ones: the valid ones come out first, then the one status
//!   RFC 9112 asks for, and nothing after it, however the bytes are cut.
//! - Requests exactly at the `--limit-request-*` limits pass at every cut; one byte or one field
//!   more is refused with 414/431, at every cut.
//! - Arbitrary bytes never panic, never stall, and give the same outcome however they are cut.
//!
//! `PROPTEST_CASES=n` runs every property n times instead of its modest default.

use std::fmt;

use hitcore::http::parse::{Limits, MAX_BODY, Method, ParseError, Parser, Request, Step, Target, Version};
use proptest::prelude::*;
use proptest::sample::Index;

// --- The connection's loop -------------------------------------------------------------------

/// One thing the connection learns from the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Request(Request),
    Error(ParseError),
}

/// Everything a connection would have seen from one delivery of the input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Event>,
    /// Bytes consumed (heads and skipped bodies), up to the error if there was one.
    consumed: usize,
    /// Whether the parser ended between requests, not inside a body.
    at_boundary: bool,
}

/// Feeds `pieces` in order to a fresh parser, stepping after each until it needs more input, exactly
/// as `Conn::parse_batch` does, and checks the step contract on the way: a step that is not
/// `Incomplete` consumes at least one byte (or the connection would spin) and never more than given.
fn drive<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new(limits);
    let mut buf = Vec::new();
    let mut out = Outcome { events: Vec::new(), consumed: 0, at_boundary: true };
    for piece in pieces {
        buf.extend_from_slice(piece);
        let mut at = 0;
        loop {
            match parser.step(&buf[at..]) {
                Ok(Step::Incomplete) => break,
                Ok(step) => {
                    let n = step.consumed();
                    assert!(n > 0, "{step:?} consumed nothing");
                    assert!(n <= buf.len() - at, "{step:?} consumed more than the {} bytes given", buf.len() - at);
                    if let Step::Request(r) = step {
                        out.events.push(Event::Request(r));
                    }
                    at += n;
                }
                Err(e) => {
                    out.events.push(Event::Error(e));
                    out.consumed += at;
                    out.at_boundary = parser.at_boundary();
                    return out;
                }
            }
        }
        buf.drain(..at);
        out.consumed += at;
    }
    out.at_boundary = parser.at_boundary();
    out
}

/// Above this size, a byte-at-a-time delivery is skipped: every step rescans the head so far.
const BYTEWISE_MAX: usize = 4096;

/// Delivers `input` whole, cut at `cuts`, and a byte at a time; fails unless all three give the same
/// outcome, and returns it.
fn outcome_however_cut(limits: Limits, input: &[u8], cuts: &[Index]) -> Result<Outcome, TestCaseError> {
    let whole = drive(limits, [input]);
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    at.sort_unstable();
    at.push(input.len());
    let pieces = at.iter().scan(0, |from, &to| {
        let piece = &input[*from..to];
        *from = to;
        Some(piece)
    });
    let cut = drive(limits, pieces);
    prop_assert_eq!(&whole, &cut, "cut at {:?}: {:?}", &at[..at.len() - 1], Shown(input));
    if input.len() <= BYTEWISE_MAX {
        let bytewise = drive(limits, input.chunks(1));
        prop_assert_eq!(&whole, &bytewise, "a byte at a time: {:?}", Shown(input));
    }
    Ok(whole)
}

/// Bytes shown as text, so that a failing case reads as the request it is.
struct Shown<'a>(&'a [u8]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..12)
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

// --- Valid requests --------------------------------------------------------------------------

/// A request the parser must accept, with what it must report for it.
#[derive(Clone)]
struct Valid {
    bytes: Vec<u8>,
    expected: Request,
}

impl fmt::Debug for Valid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown(&self.bytes).fmt(f)
    }
}

/// How a valid request frames its body.
#[derive(Debug, Clone)]
enum Framing {
    None,
    /// `Content-Length`, the header's spelling (padding, repeated with the same value), and the body.
    Length {
        value: String,
        twice: bool,
        body: Vec<u8>,
    },
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only): the header value, the chunks with their size
    /// spelling and extension, the last chunk's spelling, and trailer fields.
    Chunked {
        value: &'static str,
        chunks: Vec<(String, Vec<u8>)>,
        last: String,
        trailers: Vec<String>,
    },
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE"])
            .prop_map(String::from),
        1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
    ]
}

/// A request target, with what it names for a method that is not CONNECT.
fn target() -> impl Strategy<Value = (String, Target)> {
    let fixed = prop::sample::select(vec![
        ("/", Target::Root),
        ("/?q", Target::Root),
        ("/?", Target::Root),
        ("/?a=1&b=%20", Target::Root),
        ("/x", Target::Other),
        ("/x/y?z", Target::Other),
        ("//", Target::Other),
        ("/%2F", Target::Other),
        ("http://h/", Target::Root),
        ("http://h", Target::Root),
        ("http://h?x", Target::Root),
        ("HTTP://H:80/?q", Target::Root),
        ("https://example.com:8443/", Target::Root),
        ("http://h/a", Target::Other),
        ("http://user@h/x?y", Target::Other),
    ]);
    prop_oneof![
        3 => fixed.prop_map(|(t, k)| (t.to_string(), k)),
        1 => ("[a-z0-9._~-]{1,8}", "(\\?[a-z0-9=&%]{0,8})?").prop_map(|(p, q)| (format!("/{p}{q}"), Target::Other)),
    ]
}

/// A header value: visible ASCII, obs-text, and inner spaces and tabs.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![8 => 0x21u8..=0x7e, 1 => 0x80u8..=0xff, 1 => Just(b' '), 1 => Just(b'\t')];
    prop::collection::vec(byte, 0..24)
}

/// Header fields hitcore does not interpret.
fn other_fields() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let name = prop_oneof![
        prop::sample::select(vec!["User-Agent", "Accept", "Accept-Encoding", "Cookie", "Referer"])
            .prop_map(String::from),
        "X-[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
    ];
    let field = (name, prop::sample::select(vec!["", " ", "  ", "\t"]), value()).prop_map(|(n, ws, v)| {
        let mut line = format!("{n}:{ws}").into_bytes();
        line.extend(v);
        line
    });
    prop::collection::vec(field, 0..5)
}

fn framing(http11: bool) -> impl Strategy<Value = Framing> {
    let length = (
        prop::collection::vec(any::<u8>(), 0..80),
        prop::sample::select(vec!["", " ", "\t", "0"]),
        prop::sample::select(vec!["", " ", "\t "]),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(body, pad_left, pad_right, twice)| {
            // A leading zero changes the spelling, not the value.
            let value = format!("{pad_left}{}{pad_right}", body.len());
            Framing::Length { value, twice, body }
        });
    let size = |n: usize, style: u8| match style % 3 {
        0 => format!("{n:x}"),
        1 => format!("{n:X}"),
        _ => format!("00{n:x}"),
    };
    let ext = prop::sample::select(vec!["", ";a", ";a=b", ";name=\"quoted value\"", " ;a", ";a;b=c", ";a=\"\\\"\""]);
    let chunk = (prop::collection::vec(any::<u8>(), 1..40), any::<u8>(), ext.clone())
        .prop_map(move |(data, style, ext)| (format!("{}{ext}", size(data.len(), style)), data));
    let chunked = (
        prop::sample::select(vec!["chunked", "Chunked", "CHUNKED", " chunked "]),
        prop::collection::vec(chunk, 0..4),
        (prop::sample::select(vec!["0", "000"]), ext),
        prop::collection::vec("X-T[0-9]: [a-z ]{0,8}", 0..3),
    )
        .prop_map(|(value, chunks, (zero, ext), trailers)| Framing::Chunked {
            value,
            chunks,
            last: format!("{zero}{ext}"),
            trailers,
        });
    if http11 {
        prop_oneof![2 => Just(Framing::None), 1 => length, 1 => chunked].boxed()
    } else {
        prop_oneof![2 => Just(Framing::None), 1 => length].boxed()
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (any::<bool>(), method(), target())
        .prop_flat_map(|(http11, method, (target, kind))| {
            // `*` is only valid with OPTIONS: give it to some of them.
            let target = if method == "OPTIONS" {
                prop_oneof![Just((target.clone(), kind)), Just(("*".to_string(), Target::Asterisk))].boxed()
            } else {
                Just((target, kind)).boxed()
            };
            let host = ("Host|host|HOST", "h|127\\.0\\.0\\.1:8000|example\\.com|");
            (
                Just(http11),
                Just(method),
                target,
                // Host: exactly one in HTTP/1.1, at most one in HTTP/1.0.
                if http11 { host.prop_map(Some).boxed() } else { prop::option::of(host).boxed() },
                prop::option::of(prop::sample::select(vec![
                    "close",
                    "Close",
                    "keep-alive",
                    "Keep-Alive",
                    "Upgrade, close",
                    "keep-alive, Upgrade",
                    "TE",
                    "close, keep-alive",
                    ", keep-alive ,",
                ])),
                prop::option::of(prop::sample::select(vec!["100-continue", "100-Continue"])),
                other_fields(),
                framing(http11),
                any::<bool>(),             // bare LF line endings
                prop::bool::weighted(0.2), // an empty line before the request line
                any::<u64>(),              // shuffles the fields
            )
        })
        .prop_map(|(http11, method, (target, kind), host, connection, expect, others, framing, lf, blank, shuffle)| {
            let eol: &[u8] = if lf { b"\n" } else { b"\r\n" };
            let mut fields: Vec<Vec<u8>> = others;
            if let Some((name, value)) = &host {
                fields.push(format!("{name}: {value}").into_bytes());
            }
            if let Some(c) = connection {
                fields.push(format!("Connection: {c}").into_bytes());
            }
            if let Some(e) = expect {
                fields.push(format!("Expect: {e}").into_bytes());
            }
            match &framing {
                Framing::None => {}
                Framing::Length { value, twice, .. } => {
                    fields.push(format!("Content-Length:{value}").into_bytes());
                    if *twice {
                        fields.push(format!("content-length: {}", value.trim()).into_bytes());
                    }
                }
                Framing::Chunked { value, .. } => fields.push(format!("Transfer-Encoding:{value}").into_bytes()),
            }
            // A deterministic shuffle, so that Host, framing and the rest come in any order.
            let mut state = shuffle | 1;
            for i in (1..fields.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                fields.swap(i, (state % (i as u64 + 1)) as usize);
            }

            let mut bytes = Vec::new();
            if blank {
                bytes.extend_from_slice(eol);
            }
            let version = if http11 { "HTTP/1.1" } else { "HTTP/1.0" };
            bytes.extend_from_slice(format!("{method} {target} {version}").as_bytes());
            bytes.extend_from_slice(eol);
            for field in &fields {
                bytes.extend_from_slice(field);
                bytes.extend_from_slice(eol);
            }
            bytes.extend_from_slice(eol);
            let head_len = bytes.len();
            match framing {
                Framing::None => {}
                Framing::Length { body, .. } => bytes.extend(body),
                Framing::Chunked { chunks, last, trailers, .. } => {
                    for (line, data) in chunks {
                        bytes.extend_from_slice(format!("{line}\r\n").as_bytes());
                        bytes.extend(data);
                        bytes.extend_from_slice(b"\r\n");
                    }
                    bytes.extend_from_slice(format!("{last}\r\n").as_bytes());
                    for t in trailers {
                        bytes.extend_from_slice(format!("{t}\r\n").as_bytes());
                    }
                    bytes.extend_from_slice(b"\r\n");
                }
            }

            let method_kind = match method.as_str() {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                "OPTIONS" => Method::Options,
                "CONNECT" => Method::Connect,
                _ => Method::Other,
            };
            let target = if method_kind == Method::Connect { Target::Other } else { kind };
            let tokens: Vec<String> =
                connection.map(|c| c.split(',').map(|t| t.trim().to_ascii_lowercase()).collect()).unwrap_or_default();
            let close = tokens.iter().any(|t| t == "close");
            let keep_alive = if http11 { !close } else { !close && tokens.iter().any(|t| t == "keep-alive") };
            let version = if http11 { Version::Http11 } else { Version::Http10 };
            Valid { bytes, expected: Request { method: method_kind, target, version, keep_alive, head_len } }
        })
}

fn pipeline(max: usize) -> impl Strategy<Value = Vec<Valid>> {
    prop::collection::vec(valid(), 0..=max)
}

fn concat(requests: &[Valid]) -> Vec<u8> {
    requests.iter().flat_map(|r| r.bytes.iter().copied()).collect()
}

proptest! {
    #![proptest_config(config(64))]

    /// Valid pipelined requests come out once each, in order, with every byte consumed, however cut.
    #[test]
    fn valid_pipelines_parse_exactly_once_in_order(requests in pipeline(8), cuts in cuts()) {
        let input = concat(&requests);
        let out = outcome_however_cut(Limits::default(), &input, &cuts)?;
        let expected: Vec<Event> = requests.iter().map(|r| Event::Request(r.expected)).collect();
        prop_assert_eq!(out.events, expected);
        prop_assert_eq!(out.consumed, input.len());
        prop_assert!(out.at_boundary);
    }

    /// A valid pipeline cut short anywhere yields the requests completed so far and nothing else.
    #[test]
    fn truncated_pipelines_yield_the_complete_requests(requests in pipeline(4), cut in any::<Index>()) {
        let input = concat(&requests);
        let end = cut.index(input.len() + 1);
        let out = outcome_however_cut(Limits::default(), &input[..end], &[])?;
        // A request is reported once its head is in, whether or not its body is.
        let mut start = 0;
        let complete: Vec<Event> = requests
            .iter()
            .take_while(|r| {
                let head_in = start + r.expected.head_len <= end;
                start += r.bytes.len();
                head_in
            })
            .map(|r| Event::Request(r.expected))
            .collect();
        prop_assert_eq!(out.events, complete);
        prop_assert!(out.consumed <= end);
    }
}

// --- Invalid requests ------------------------------------------------------------------------

/// A request the parser must refuse: its bytes, the head it must still report first when the
/// error is in the body, and the status.
#[derive(Clone)]
struct Invalid {
    bytes: Vec<u8>,
    head: Option<Request>,
    status: u16,
}

impl fmt::Debug for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.status, Shown(&self.bytes))
    }
}

/// `GET / HTTP/1.1`, Host, then `lines` (each without its CRLF), then the blank line.
fn get_with(lines: &[&[u8]]) -> Vec<u8> {
    let mut bytes = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn head_error(bytes: Vec<u8>, status: u16) -> Invalid {
    Invalid { bytes, head: None, status }
}

const CHUNKED_HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A chunked request whose head is fine and whose body is not: the head is reported, then the error.
fn body_error(body: &[u8], status: u16) -> Invalid {
    let head = Request {
        method: Method::Other,
        target: Target::Root,
        version: Version::Http11,
        keep_alive: true,
        head_len: CHUNKED_HEAD.len(),
    };
    Invalid { bytes: [CHUNKED_HEAD, body].concat(), head: Some(head), status }
}

fn invalid() -> impl Strategy<Value = Invalid> {
    let line = |s: &str| s.as_bytes().to_vec();
    prop_oneof![
        // Transfer-Encoding with Content-Length, in either order: the classic smuggling pair.
        (0..100u32, any::<bool>()).prop_map(|(n, te_first)| {
            let (te, cl) = (b"Transfer-Encoding: chunked".as_slice(), format!("Content-Length: {n}"));
            let lines = if te_first { [te, cl.as_bytes()] } else { [cl.as_bytes(), te] };
            head_error(get_with(&lines), 400)
        }),
        // Two different Content-Lengths.
        (0..100u32, 1..100u32).prop_map(|(a, d)| {
            let (a, b) = (format!("Content-Length: {a}"), format!("Content-Length: {}", a + d));
            head_error(get_with(&[a.as_bytes(), b.as_bytes()]), 400)
        }),
        // Content-Length that is not a plain decimal number.
        prop::sample::select(vec![
            "abc",
            "-1",
            "+1",
            "1 2",
            "0x10",
            "",
            "1,2",
            "1, 1",
            "1.0",
            "12345678901234567890",
            "\u{0663}"
        ])
        .prop_map(|v| head_error(get_with(&[format!("Content-Length: {v}").as_bytes()]), 400)),
        // obs-fold: a field line continued on the next line.
        prop::sample::select(vec![" folded", "\tfolded", " Transfer-Encoding: chunked"])
            .prop_map(|fold| head_error(get_with(&[b"X-A: 1", fold.as_bytes()]), 400)),
        // A bare CR, as a line ending or inside a value, the target or the method.
        prop::sample::select(vec![b"X-A: a\rb".as_slice(), b"X-A: a\rX-B: b", b"X-A: a\r",])
            .prop_map(|l| head_error(get_with(&[l]), 400)),
        prop::sample::select(vec![
            b"GET /\r HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
            b"G\rET / HTTP/1.1\r\nHost: h\r\n\r\n"
        ])
        .prop_map(|b| head_error(b.to_vec(), 400)),
        // NUL in a value, a name or the target.
        prop::sample::select(vec![b"X-A: a\0b".as_slice(), b"X\0A: b", b"X-A: \0"])
            .prop_map(|l| head_error(get_with(&[l]), 400)),
        Just(head_error(b"GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400)),
        // Whitespace between a field name and its colon.
        prop::sample::select(vec!["Host : h", "X-A\t: b", "Content-Length : 5", "Transfer-Encoding :chunked"])
            .prop_map(move |l| head_error(
                line("GET / HTTP/1.1\r\nHost: h\r\n").into_iter().chain(line(l)).chain(line("\r\n\r\n")).collect(),
                400
            )),
        // HTTP/1.1 without Host, or with two.
        Just(head_error(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n".to_vec(), 400)),
        prop::sample::select(vec!["Host: h", "Host: other", "host: h"])
            .prop_map(|l| head_error(get_with(&[l.as_bytes()]), 400)),
        // A well-formed version hitcore does not speak, and garbage where the version goes.
        prop::sample::select(vec!["HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/0.9", "HTTP/9.9"])
            .prop_map(|v| head_error(format!("GET / {v}\r\nHost: h\r\n\r\n").into_bytes(), 505)),
        prop::sample::select(vec![
            "HTTP/1.x",
            "HTTP/11",
            "HTTX/1.1",
            "http/1.1",
            "HTTP/1.1.1",
            "HTTP/1",
            "1.1",
            "HTTP/1.10",
            "HTTP/1.1 "
        ])
        .prop_map(|v| head_error(format!("GET / {v}\r\nHost: h\r\n\r\n").into_bytes(), 400)),
        // Transfer codings without chunked last, or chunked twice (RFC 9112 §6.3, §7.1): 400; a
        // coding hitcore cannot undo before a final chunked (§6.1): 501; chunked in HTTP/1.0: 400.
        prop::sample::select(vec![
            "gzip",
            "identity",
            "chunked, gzip",
            "chunked, chunked",
            "x-custom",
            "chunked, x, chunked"
        ])
        .prop_map(|c| head_error(get_with(&[format!("Transfer-Encoding: {c}").as_bytes()]), 400)),
        prop::sample::select(vec!["gzip, chunked", "x-custom, chunked", "deflate, gzip, chunked"])
            .prop_map(|c| head_error(get_with(&[format!("Transfer-Encoding: {c}").as_bytes()]), 501)),
        Just(head_error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400)),
        // A request line over gunicorn's default 4094: 414.
        (4095usize..4200).prop_map(|len| {
            let path = "a".repeat(len - "GET / HTTP/1.1".len());
            head_error(format!("GET /{path} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(), 414)
        }),
        // More than 100 fields, or one longer than 8190: 431.
        (101usize..110).prop_map(|n| {
            let fields: Vec<String> = (1..n).map(|i| format!("X-{i}: v")).collect();
            let lines: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
            head_error(get_with(&lines), 431)
        }),
        (8191usize..8300).prop_map(|len| {
            let field = format!("X-Big: {}", "b".repeat(len - "X-Big: ".len()));
            head_error(get_with(&[field.as_bytes()]), 431)
        }),
        // An expectation other than 100-continue: 417.
        prop::sample::select(vec!["200-ok", "100-continue, foo", "", "continue"])
            .prop_map(|e| head_error(get_with(&[format!("Expect: {e}").as_bytes()]), 417)),
        // A body over 64 KiB, declared or chunked: 413.
        (MAX_BODY + 1..=MAX_BODY * 1000)
            .prop_map(|n| head_error(get_with(&[format!("Content-Length: {n}").as_bytes()]), 413)),
        (MAX_BODY + 1..=MAX_BODY * 1000).prop_map(|n| body_error(format!("{n:x}\r\n").as_bytes(), 413)),
        Just(body_error(
            &[b"8000\r\n".as_slice(), &[b'x'; 0x8000], b"\r\n8000\r\n", &[b'x'; 0x8000], b"\r\n1\r\n"].concat(),
            413
        )),
        // Targets and methods that cannot be right.
        prop::sample::select(vec![
            "GET * HTTP/1.1",
            "G(T / HTTP/1.1",
            "GET  / HTTP/1.1",
            "GET x HTTP/1.1",
            "GET ftp://h/ HTTP/1.1",
            " GET / HTTP/1.1",
        ])
        .prop_map(|l| head_error(format!("{l}\r\nHost: h\r\n\r\n").into_bytes(), 400)),
        // Broken chunked framing, found after the head was reported.
        prop::sample::select(vec![
            b"zz\r\n".as_slice(),
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"12345678901234567\r\n",
            b"-1\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            // No digits: not a last chunk, whatever httparse makes of it.
            b"\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
            b";ext\r\n\r\n",
            b" 0\r\n\r\n",
            // A bare LF or another control byte in an extension: a proxy may end the line there.
            b"3;a\nabc\r\n0\r\n\r\n",
            b"0;a\n\r\n\r\n",
            b"3;a\0\r\nabc\r\n0\r\n\r\n",
        ])
        .prop_map(|b| body_error(b, 400)),
        // A chunk-size line longer than a field may be: refused however much of it has arrived.
        (8191usize..8300)
            .prop_map(|len| body_error(format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(len)).as_bytes(), 400)),
        // More trailer fields than header fields allowed, or one too long: 431.
        Just(body_error(&[b"0\r\n".as_slice(), &b"X-T: 1\r\n".repeat(101), b"\r\n"].concat(), 431)),
        (8191usize..8300)
            .prop_map(|len| body_error(format!("0\r\nX-T: {}\r\n\r\n", "t".repeat(len - 5)).as_bytes(), 431)),
        // An endless run of empty lines before a request line is buffered like a head, so it is
        // bounded like one.
        Just(head_error(b"\r\n".repeat(Limits::default().max_head() / 2 + 1), 431)),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// After valid requests, a bad one gets its status, nothing after it is parsed, however cut.
    #[test]
    fn invalid_request_after_valid_ones_gets_its_status(
        before in pipeline(4),
        bad in invalid(),
        cuts in cuts(),
    ) {
        let mut input = concat(&before);
        input.extend_from_slice(&bad.bytes);
        // A valid request after the bad one must never be reached.
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let out = outcome_however_cut(Limits::default(), &input, &cuts)?;
        let (last, events) = out.events.split_last().expect("at least the error");
        let expected: Vec<Event> =
            before.iter().map(|r| r.expected).chain(bad.head).map(Event::Request).collect();
        prop_assert_eq!(events, expected.as_slice());
        match last {
            Event::Error(e) => prop_assert_eq!(e.status().code(), bad.status, "{:?}", e),
            other => prop_assert!(false, "expected a {} error, got {:?}", bad.status, other),
        }
    }
}

// --- The limits, exactly ---------------------------------------------------------------------

/// A head exactly at `limits`: a request line of exactly `request_line` bytes, then `fields`
/// fields (Host first, if any) of exactly `field_size` bytes each.
fn head_at_limits(limits: Limits) -> Vec<u8> {
    let version = if limits.fields == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut head = format!("GET /{} {version}\r\n", "a".repeat(limits.request_line - "GET / HTTP/1.1".len()));
    for i in 0..limits.fields {
        let name = if i == 0 { "Host".to_string() } else { format!("X-{i}") };
        head.push_str(&format!("{name}:{}\r\n", "v".repeat(limits.field_size - name.len() - 1)));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Limits small enough that short inputs reach them, including degenerate ones.
fn tiny_limits() -> impl Strategy<Value = Limits> {
    (0usize..40, 0usize..6, 0usize..24).prop_map(|(request_line, fields, field_size)| Limits {
        request_line,
        fields,
        field_size,
    })
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (14usize..80, 0usize..8, 8usize..48).prop_map(|(request_line, fields, field_size)| Limits {
        request_line,
        fields,
        field_size,
    })
}

proptest! {
    #![proptest_config(config(128))]

    /// A head exactly at the limits is accepted however it is cut (the blank line arriving alone
    /// included); one byte more on the request line is 414, one byte more on a field or one field
    /// more is 431, however it is cut.
    #[test]
    fn limits_are_exact_at_every_cut(limits in small_limits(), which in any::<Index>(), cuts in cuts()) {
        let head = head_at_limits(limits);
        let out = outcome_however_cut(limits, &head, &cuts)?;
        prop_assert!(matches!(out.events.as_slice(), [Event::Request(r)] if r.head_len == head.len()), "{:?}", out);

        let text = String::from_utf8(head).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        // One byte more on the request line.
        let longer_line = text.replacen("GET /", "GET /a", 1);
        let out = outcome_however_cut(limits, longer_line.as_bytes(), &cuts)?;
        prop_assert_eq!(out.events, vec![Event::Error(ParseError::UriTooLong)]);
        // One byte more on one of the fields.
        if limits.fields > 0 {
            let i = 1 + which.index(limits.fields);
            let longer_field = text.replacen(lines[i], &format!("{}v", lines[i]), 1);
            let out = outcome_however_cut(limits, longer_field.as_bytes(), &cuts)?;
            prop_assert_eq!(out.events, vec![Event::Error(ParseError::HeadersTooLarge)]);
        }
        // One field more.
        let one_more = text.replacen("\r\n\r\n", "\r\nX-More: 1\r\n\r\n", 1);
        let out = outcome_however_cut(limits, one_more.as_bytes(), &cuts)?;
        prop_assert_eq!(out.events, vec![Event::Error(ParseError::HeadersTooLarge)]);
    }
}

// --- Arbitrary bytes -------------------------------------------------------------------------

/// Arbitrary input, shown as text when a case fails.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown(&self.0).fmt(f)
    }
}

/// Bytes that are mostly pieces of HTTP, so that arbitrary input gets past the first byte.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "HEAD", "OPTIONS", "POST", "CONNECT", " ", "  ", "/", "/x", "?q", "*", "http://h", "HTTP/1.1", "HTTP/1.0",
            "HTTP/2.0", "HTTP/", "\r\n", "\r\n", "\n", "\r", "\t", ":", ": ", "Host: h", "host:", "Content-Length: ",
            "Transfer-Encoding: chunked", "Transfer-Encoding: gzip", "Connection: close", "Connection: keep-alive",
            "Expect: 100-continue", "Expect: x", "0", "1", "3", "a", "ffff", "10000", ";ext", ";e=\"v\"", "abc", "\r\n\r\n",
            "0\r\n\r\n", "X-A: v", "\0", "\u{7f}", ",",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes never panic or stall, and give the same outcome however they are cut, under
    /// the default limits and under tiny ones.
    #[test]
    fn arbitrary_bytes_give_the_same_outcome_however_cut(
        input in prop_oneof![3 => http_ish(), 1 => prop::collection::vec(any::<u8>(), 0..256)].prop_map(Bytes),
        limits in tiny_limits(),
        cuts in cuts(),
    ) {
        for limits in [Limits::default(), limits] {
            let out = outcome_however_cut(limits, &input.0, &cuts)?;
            prop_assert!(out.consumed <= input.0.len());
            if let Some(Event::Error(e)) = out.events.last() {
                prop_assert!(matches!(e.status().code(), 400 | 413 | 414 | 417 | 431 | 501 | 505), "{:?}", e);
            }
        }
    }
}
