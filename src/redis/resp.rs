//! RESP2 on the wire: commands to bytes (written here), bytes to the few replies hitcore
//! expects.
//!
//! It owns nothing but encoding and decoding, and must stay free of I/O and state so that the
//! reply decoder can be fuzzed on its own.

use redis_protocol::resp2::decode::{decode, decode_range};
use redis_protocol::resp2::types::RangeFrame;

/// An owned, fully decoded reply: what the connect path reads (ROLE, and the discovery replies of
/// Sentinel and Cluster), never the hot path.
pub use redis_protocol::resp2::types::OwnedFrame as Frame;

/// Appends `args` to `out` as one RESP array of bulk strings.
///
/// Written here rather than through redis-protocol's encoder: that one sizes every frame with an
/// `f64` `log10` per length before writing, which callgrind measured at about 8 % of a `/hit`'s
/// user-space instructions. The bytes are the same (a test compares them with redis-protocol's).
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = itoa::Buffer::new();
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.push(b'*');
    out.extend_from_slice(digits.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(digits.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A decoded reply, borrowing error text from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `:n`, the answer to INCR and INCRBY.
    Integer(i64),
    /// `+...`, the answer to AUTH, SELECT, CLIENT SETNAME and PING.
    Status(&'a [u8]),
    /// `-...`, an error, such as WRONGPASS or "value is not an integer".
    Error(&'a [u8]),
    /// `$n ...`, a bulk string: the counting API's `GET`.
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`, a null: `GET` of a missing key, `SET ... NX` that did not set.
    Nil,
    /// Anything else (arrays): never the answer to a command hitcore sends.
    Unexpected,
}

/// The reply stream could not be decoded: the connection is out of step and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable reply from Redis: {0}")]
pub struct ProtocolError(pub String);

/// Arrays nested deeper than this are refused without being decoded. redis-protocol decodes arrays
/// by recursion, one level per 4 bytes (`*1\r\n`): a server answering garbage nested some 50,000
/// deep, far less than the connection's reply buffer, overflowed the stack and aborted the whole
/// shard. hitcore's commands are never answered with arrays at all, so any small bound will do.
const MAX_DEPTH: usize = 32;

/// Decodes one reply from the front of `buf`. `Ok(None)` means more bytes are needed.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    if let Some((n, used)) = plain_integer(buf) {
        return Ok(Some((Reply::Integer(n), used)));
    }
    if nested_too_deep(buf) {
        return Err(ProtocolError(format!("reply nests arrays more than {MAX_DEPTH} deep")));
    }
    let Some((frame, used)) = decode_range(buf).map_err(|e| ProtocolError(e.details().to_string()))? else {
        return Ok(None);
    };
    let reply = match frame {
        RangeFrame::Integer(n) => Reply::Integer(n),
        RangeFrame::SimpleString((start, end)) => Reply::Status(&buf[start..end]),
        RangeFrame::Error((start, end)) => Reply::Error(&buf[start..end]),
        RangeFrame::BulkString((start, end)) => Reply::Bulk(&buf[start..end]),
        RangeFrame::Null => Reply::Nil,
        _ => Reply::Unexpected,
    };
    Ok(Some((reply, used)))
}

/// `:n\r\n` with `n` plain decimal (an optional `-`, then digits, within `i64`), the reply to
/// every `INCRBY`, read in a few instructions; `None` for anything else, which the general
/// decoder then judges. (redis-protocol's decoder took about 350 instructions per reply,
/// callgrind: 3 % of a `/hit`.)
fn plain_integer(buf: &[u8]) -> Option<(i64, usize)> {
    let rest = buf.strip_prefix(b":")?;
    // i64::MIN has 20 characters.
    let end = rest.iter().take(21).position(|&b| b == b'\r')?;
    if rest.get(end + 1) != Some(&b'\n') {
        return None;
    }
    let (negative, digits) = match &rest[..end] {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some((n, end + 3))
}

/// Decodes one reply from the front of `buf` into an owned [`Frame`], for replies that are arrays
/// (ROLE, SENTINEL, CLUSTER SLOTS). `Ok(None)` means more bytes are needed. The same nesting bound
/// as [`decode_reply`] applies.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    if nested_too_deep(buf) {
        return Err(ProtocolError(format!("reply nests arrays more than {MAX_DEPTH} deep")));
    }
    decode(buf).map_err(|e| ProtocolError(e.details().to_string()))
}

/// The text of a bulk or simple string frame.
pub fn frame_text(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::BulkString(b) => std::str::from_utf8(b).ok(),
        Frame::SimpleString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// Whether the reply at the front of `buf` nests arrays more than [`MAX_DEPTH`] deep, found by
/// walking its element headers without recursion. Anything this walk cannot follow (a malformed
/// header, a reply still incomplete) is left to redis-protocol to judge.
fn nested_too_deep(buf: &[u8]) -> bool {
    // Elements still to come in each array open around the current position, innermost last.
    let mut open = [0i64; MAX_DEPTH];
    let mut depth = 0;
    let mut at = 0usize;
    loop {
        let Some(&kind) = buf.get(at) else { return false };
        let Some(header_len) = buf[at + 1..].windows(2).position(|w| w == b"\r\n") else { return false };
        let header = &buf[at + 1..at + 1 + header_len];
        at += 1 + header_len + 2;
        let len = || std::str::from_utf8(header).ok().and_then(|h| h.parse::<i64>().ok());
        match kind {
            b'*' => match len() {
                Some(n) if n > 0 => {
                    if depth == MAX_DEPTH {
                        return true;
                    }
                    open[depth] = n;
                    depth += 1;
                    continue;
                }
                Some(_) => {}
                None => return false,
            },
            b'$' => match len() {
                Some(n) if n >= 0 => at = at.saturating_add(n as usize).saturating_add(2),
                Some(_) => {}
                None => return false,
            },
            _ => {}
        }
        // One element is complete: close every array it completes.
        loop {
            if depth == 0 {
                return false;
            }
            open[depth - 1] -= 1;
            if open[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"INCRBY", b"hit", b"12"]);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$3\r\nhit\r\n$2\r\n12\r\n");
        encode_command(&mut out, &[b"PING"]);
        assert!(out.ends_with(b"*1\r\n$4\r\nPING\r\n"));
    }

    /// Seeded: any command of up to 12 arguments (empty, binary, long) encodes to exactly the bytes
    /// redis-protocol's own encoder writes for it.
    #[test]
    fn encodes_as_redis_protocol_does_for_any_arguments() {
        use redis_protocol::resp2::encode::encode_borrowed;
        use redis_protocol::resp2::types::BorrowedFrame;
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..2_000 {
            let args: Vec<Vec<u8>> = (0..rng.usize(1..=12))
                .map(|_| {
                    let len = if rng.u8(..) < 8 { rng.usize(100..20_000) } else { rng.usize(0..40) };
                    (0..len).map(|_| rng.u8(..)).collect()
                })
                .collect();
            let borrowed: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut ours = b"prefix".to_vec();
            encode_command(&mut ours, &borrowed);
            let frames: Vec<BorrowedFrame<'_>> = borrowed.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
            let frame = BorrowedFrame::Array(&frames);
            let mut theirs = vec![0; frame.encode_len(false)];
            let n = encode_borrowed(&mut theirs, &frame, false).unwrap();
            assert_eq!(&ours[6..], &theirs[..n], "seed {seed}");
        }
    }

    /// Seeded: integer replies of every shape (signs, zeros, overflow, stray bytes, cut short)
    /// decode exactly as redis-protocol's decoder alone decodes them, fast path or not.
    #[test]
    fn integers_decode_as_redis_protocol_decodes_them() {
        let general = |buf: &[u8]| -> Result<Option<(Reply<'_>, usize)>, String> {
            match decode_range(buf) {
                Err(e) => Err(e.details().to_string()),
                Ok(None) => Ok(None),
                Ok(Some((RangeFrame::Integer(n), used))) => Ok(Some((Reply::Integer(n), used))),
                Ok(Some((_, used))) => Ok(Some((Reply::Unexpected, used))),
            }
        };
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let pieces = ["-", "+", "0", "7", "9", "00", "9223372036854775807", "9223372036854775808", " ", "x", "\r"];
        for _ in 0..20_000 {
            let mut reply = b":".to_vec();
            if rng.bool() {
                reply.extend(rng.i64(..).to_string().bytes());
            } else {
                for _ in 0..rng.usize(0..4) {
                    reply.extend(pieces[rng.usize(..pieces.len())].bytes());
                }
            }
            reply.extend_from_slice(if rng.u8(..) < 230 { b"\r\n" } else { b"\r" });
            reply.extend_from_slice(b":1\r\n");
            let cut = &reply[..rng.usize(0..=reply.len())];
            for buf in [&reply[..], cut] {
                if let Some(fast) = plain_integer(buf) {
                    assert_eq!(Ok(Some((Reply::Integer(fast.0), fast.1))), general(buf), "seed {seed}: {buf:?}");
                }
                let ours = decode_reply(buf).map_err(|e| e.0);
                match general(buf) {
                    Err(_) => assert!(ours.is_err(), "seed {seed}: {buf:?}"),
                    theirs => assert_eq!(ours, theirs, "seed {seed}: {buf:?}"),
                }
            }
        }
    }

    #[test]
    fn decodes_replies_and_partials() {
        assert_eq!(decode_reply(b":42\r\n+OK\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(decode_reply(b"+OK\r\n"), Ok(Some((Reply::Status(b"OK"), 5))));
        assert_eq!(decode_reply(b"-ERR bad\r\n"), Ok(Some((Reply::Error(b"ERR bad"), 10))));
        assert_eq!(decode_reply(b"$1\r\nx\r\n"), Ok(Some((Reply::Bulk(b"x"), 7))));
        assert_eq!(decode_reply(b"$-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(decode_reply(b"*1\r\n:1\r\n"), Ok(Some((Reply::Unexpected, 8))));
        assert_eq!(decode_reply(b":4"), Ok(None));
        assert_eq!(decode_reply(b""), Ok(None));
        assert!(decode_reply(b"?what\r\n").is_err());
        assert!(decode_reply(b":12x\r\n").is_err());
    }

    #[test]
    fn decodes_owned_frames() {
        let role = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
        let (frame, used) = decode_frame(role).unwrap().unwrap();
        assert_eq!(used, role.len());
        let Frame::Array(items) = frame else { panic!("not an array") };
        assert_eq!(frame_text(&items[0]), Some("master"));
        assert_eq!(decode_frame(b"*2\r\n$1\r\na"), Ok(None));
        assert!(decode_frame(&b"*1\r\n".repeat(1000)).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        // Found by running the resp_reply fuzz target on a 200 KB input: a stack overflow, which
        // aborts the shard process, not a panic.
        let deep = b"*1\r\n".repeat(200_000);
        assert!(decode_reply(&deep).is_err());
        assert!(decode_reply(&[deep.as_slice(), b":1\r\n"].concat()).is_err());
        let at_limit = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert_eq!(decode_reply(&at_limit), Ok(Some((Reply::Unexpected, at_limit.len()))));
        let over = [b"*1\r\n".repeat(MAX_DEPTH + 1), b":1\r\n".to_vec()].concat();
        assert!(decode_reply(&over).is_err());
        // Depth, not size: wide arrays and bulk strings that look like array headers are fine.
        let wide = [b"*3\r\n".as_slice(), b"$4\r\n*1\r\n\r\n", b"*2\r\n:1\r\n:2\r\n", b"*0\r\n"].concat();
        assert_eq!(decode_reply(&wide), Ok(Some((Reply::Unexpected, wide.len()))));
        // Headers whose line is empty or starts with the CRLF itself (found by the fuzzer).
        assert!(decode_reply(b"\r\n").is_err());
        assert!(decode_reply(b"*\r\n").is_err());
        assert!(decode_reply(b"*1\r\n\r\n").is_err());
        // A following reply is not part of the first one's depth.
        let two = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec(), b"*1\r\n".repeat(MAX_DEPTH)].concat();
        assert!(matches!(decode_reply(&two), Ok(Some((Reply::Unexpected, _)))));
    }
}
