//! Unit tests of the parser through its public interface: framing, limits, and splits.

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
    let body = |b: &[u8]| [b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(), b].concat();
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
