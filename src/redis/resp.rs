//! RESP2 on the wire, through redis-protocol: commands to bytes, bytes to the few replies hitcore
//! expects.
//!
//! It owns nothing but encoding and decoding, and must stay free of I/O and state so that the
//! reply decoder can be fuzzed on its own.

use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};

/// The largest command hitcore sends has this many arguments (`AUTH user password`, `INCRBY key n`).
const MAX_ARGS: usize = 4;

/// Appends `args` to `out` as one RESP array of bulk strings.
///
/// # Panics
/// If `args` has more than [`MAX_ARGS`] elements: every call site passes a fixed, short command.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    assert!(args.len() <= MAX_ARGS, "RESP command with {} arguments", args.len());
    let frames: [BorrowedFrame<'_>; MAX_ARGS] =
        std::array::from_fn(|i| args.get(i).map_or(BorrowedFrame::Null, |a| BorrowedFrame::BulkString(a)));
    let frame = BorrowedFrame::Array(&frames[..args.len()]);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    let written = encode_borrowed(&mut out[start..], &frame, false).expect("buffer sized by encode_len");
    out.truncate(start + written);
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
    /// Anything else (bulk strings, arrays, nulls): never the answer to a command hitcore sends.
    Unexpected,
}

/// The reply stream could not be decoded: the connection is out of step and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable reply from Redis: {0}")]
pub struct ProtocolError(pub String);

/// Decodes one reply from the front of `buf`. `Ok(None)` means more bytes are needed.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let Some((frame, used)) = decode_range(buf).map_err(|e| ProtocolError(e.details().to_string()))? else {
        return Ok(None);
    };
    let reply = match frame {
        RangeFrame::Integer(n) => Reply::Integer(n),
        RangeFrame::SimpleString((start, end)) => Reply::Status(&buf[start..end]),
        RangeFrame::Error((start, end)) => Reply::Error(&buf[start..end]),
        _ => Reply::Unexpected,
    };
    Ok(Some((reply, used)))
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

    #[test]
    fn decodes_replies_and_partials() {
        assert_eq!(decode_reply(b":42\r\n+OK\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(decode_reply(b"+OK\r\n"), Ok(Some((Reply::Status(b"OK"), 5))));
        assert_eq!(decode_reply(b"-ERR bad\r\n"), Ok(Some((Reply::Error(b"ERR bad"), 10))));
        assert_eq!(decode_reply(b"$1\r\nx\r\n"), Ok(Some((Reply::Unexpected, 7))));
        assert_eq!(decode_reply(b":4"), Ok(None));
        assert_eq!(decode_reply(b""), Ok(None));
        assert!(decode_reply(b"?what\r\n").is_err());
        assert!(decode_reply(b":12x\r\n").is_err());
    }
}
