//! Fuzzes the RESP2 reply decoder the way the Redis connection drives it: decode replies from the
//! front of the buffer until it needs more bytes or fails. It must never panic, a decoded reply must
//! take at least one byte and no more than it was given, and a prefix of a stream that decoded must
//! either decode the same way or ask for more: never an error (replies arrive in arbitrary pieces).

#![no_main]

use hitcore::redis::resp::decode_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut at = 0;
    while at < input.len() {
        let rest = &input[at..];
        let (reply, used) = match decode_reply(rest) {
            Ok(Some(decoded)) => decoded,
            Ok(None) | Err(_) => break,
        };
        assert!(used > 0 && used <= rest.len(), "{reply:?} used {used} of {} bytes", rest.len());
        // The reply read whole must also be read from exactly its own bytes, and every shorter
        // prefix of them is incomplete, not an error: a reply split by the network still decodes.
        assert_eq!(decode_reply(&rest[..used]), Ok(Some((reply, used))));
        for cut in [0, 1, used / 2, used - 1] {
            assert_eq!(decode_reply(&rest[..cut]), Ok(None), "prefix {cut} of a {used}-byte reply");
        }
        at += used;
    }
});
