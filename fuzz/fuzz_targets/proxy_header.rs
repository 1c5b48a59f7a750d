//! Fuzzes the PROXY protocol header reader (`--proxy-protocol`) the way a connection drives it:
//! the bytes read so far, growing, until it finds a header or refuses the connection. Whatever the
//! input: nothing panics; a header takes at least one byte and no more than were read; every
//! shorter prefix of a header's bytes is still incomplete, never refused (a header cut by the
//! network arrives in pieces and must be taken the same as when it comes whole); the bytes after a
//! header are never part of it; and a refusal's reason, which the connection logs, is printable
//! ASCII of one line, whatever bytes caused it.

#![no_main]

use hitcore::http::proxy::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

/// The prefix lengths to try for `len` bytes: all of them up to 256, else the first and last 32,
/// the bytes around the reader's 4,096-byte bound, and 64 spread between.
fn prefixes(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (0..len).collect();
    }
    let bound = hitcore::http::proxy::MAX_HEADER;
    let mut ends: Vec<usize> =
        (0..32).chain(len - 32..len).chain(bound - 1..=bound).chain((1..64).map(|k| k * len / 64)).collect();
    ends.retain(|&e| e < len);
    ends.sort_unstable();
    ends.dedup();
    ends
}

fn check_reason(reason: &str) {
    assert!(reason.bytes().all(|b| (0x20..0x7f).contains(&b)), "a reason that is not one printable line: {reason:?}");
}

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Incomplete) => {
            // What a connection reads next may still complete it; its shorter prefixes were
            // incomplete too (a refusal is final, so a refused prefix would have closed it).
            for end in prefixes(data.len()) {
                assert_eq!(parse(&data[..end]), Ok(Parsed::Incomplete), "prefix {end} refused, the whole not");
            }
        }
        Ok(Parsed::Header { len, source }) => {
            assert!(len > 0 && len <= data.len(), "a header of {len} bytes in {}", data.len());
            let header = &data[..len];
            // The same header, alone or followed by anything else, reads the same.
            assert_eq!(parse(header), Ok(Parsed::Header { len, source }));
            for end in prefixes(len) {
                match parse(&data[..end]) {
                    Ok(Parsed::Incomplete) => {}
                    other => panic!("{len}-byte header: its first {end} bytes gave {other:?}"),
                }
            }
        }
        Err(reason) => check_reason(&reason),
    }
});
