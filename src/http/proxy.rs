//! `--proxy-protocol`: the PROXY protocol header (v1 text or v2 binary) a load balancer sends
//! before the first request, parsed by the `ppp` crate.
//!
//! It owns deciding, from the bytes read so far, whether the header is complete, still arriving or
//! bad, and which client address it names. A connection on a proxy-protocol listener must start
//! with one; anything else is bad and the connection closes (the caller logs it). It must not read
//! sockets: the connection loop feeds it what it read.

use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, PartialResult, v1, v2};

/// The v2 signature; v1 starts with `PROXY `.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest header accepted: v1 is at most 107 bytes; v2 carries TLVs, bounded here.
pub const MAX_HEADER: usize = 4096;

/// What the bytes read so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet to decide.
    Incomplete,
    /// A complete header of `len` bytes naming `source` (`None` for `LOCAL`/`UNKNOWN`: health checks
    /// from the balancer itself, whose peer address is then the client).
    Header {
        /// Bytes taken by the header; the HTTP request starts after them.
        len: usize,
        /// The original client's address.
        source: Option<SocketAddr>,
    },
}

/// Parses the start of a connection's input.
pub fn parse(input: &[u8]) -> Result<Parsed, String> {
    let n = input.len().min(V2_SIGNATURE.len());
    let maybe_v2 = input[..n] == V2_SIGNATURE[..n];
    let n1 = input.len().min(V1_PREFIX.len());
    let maybe_v1 = input[..n1] == V1_PREFIX[..n1];
    if !maybe_v1 && !maybe_v2 {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    // Dispatch on the signature ourselves: `HeaderResult::parse` retries a bad v2 header as v1,
    // which would report the wrong error.
    let result: HeaderResult<'_> =
        if maybe_v2 { v2::Header::try_from(input).into() } else { v1::Header::try_from(input).into() };
    if result.is_incomplete() {
        // A v1 header is one line: once a line has ended, "incomplete" means malformed.
        return if maybe_v1 && input.contains(&b'\n') {
            Err("bad PROXY protocol v1 header: not a complete 'PROXY proto src dst sport dport' line".into())
        } else if maybe_v1 && input.len() > 107 {
            Err("bad PROXY protocol v1 header: longer than 107 bytes".into())
        } else if input.len() >= MAX_HEADER {
            Err("PROXY protocol header too long".into())
        } else {
            Ok(Parsed::Incomplete)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                v1::Addresses::Unknown => None,
            };
            Ok(Parsed::Header { len: h.header.len(), source })
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Ok(Parsed::Header { len: h.len(), source })
        }
        HeaderResult::V1(Err(e)) => Err(format!("bad PROXY protocol v1 header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("bad PROXY protocol v2 header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(source: &str, dest: &str) -> Vec<u8> {
        let addresses: v2::Addresses =
            (source.parse::<SocketAddr>().unwrap(), dest.parse::<SocketAddr>().unwrap()).into();
        v2::Builder::with_addresses(v2::Version::Two | v2::Command::Proxy, v2::Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[test]
    fn v1_complete_partial_and_unknown() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(h).unwrap(), Parsed::Header { len: 42, source: Some("203.0.113.7:56324".parse().unwrap()) });
        assert_eq!(parse(&h[..20]).unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"PRO").unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Parsed::Header { len: 15, source: None });
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 1000 80\r\n";
        assert_eq!(
            parse(v6).unwrap(),
            Parsed::Header { len: v6.len(), source: Some("[2001:db8::7]:1000".parse().unwrap()) }
        );
    }

    #[test]
    fn v2_complete_and_partial() {
        let mut h = v2("198.51.100.4:4000", "10.0.0.1:80");
        let len = h.len();
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&h).unwrap(), Parsed::Header { len, source: Some("198.51.100.4:4000".parse().unwrap()) });
        assert_eq!(parse(&h[..len - 1]).unwrap(), Parsed::Incomplete);
        assert_eq!(parse(&h[..5]).unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(parse(b"GET / HTTP/1.1\r\n").unwrap_err().contains("did not start"));
        assert!(parse(b"PROXY TCP4 nonsense\r\n").unwrap_err().contains("v1"));
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET / HTTP/1.1\r\n").is_err());
        assert!(parse(&[b"PROXY ".as_slice(), &[b'1'; 120]].concat()).is_err(), "v1 is at most 107 bytes");
        let mut h = v2("198.51.100.4:4000", "10.0.0.1:80");
        h[12] = 0x30; // version 3
        assert!(parse(&h).unwrap_err().contains("v2"));
    }
}
