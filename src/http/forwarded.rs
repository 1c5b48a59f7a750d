//! `--forwarded-allow-ips`: whose `X-Forwarded-For` names the client in the access log.
//!
//! gunicorn's flag and default (`127.0.0.1,::1`; `*` trusts every peer), with networks in CIDR form
//! too. A request from a trusted peer is logged as coming from the address its `X-Forwarded-For`
//! gives: the right-most entry that is not itself a trusted proxy (each proxy appends the address
//! it received from, so entries left of the first untrusted one could be forged by the client);
//! if every entry is trusted, the left-most. A request from any other peer is logged as the peer.
//! It owns that rule and nothing else: it must not read sockets or headers itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// The parsed list.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    all: bool,
    nets: Vec<IpNet>,
}

impl Trust {
    /// Parses a comma-separated list of addresses, networks (`10.0.0.0/8`) or `*`.
    pub fn parse(list: &str) -> Result<Trust, String> {
        let mut trust = Trust::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                trust.all = true;
            } else if let Ok(net) = item.parse::<IpNet>() {
                trust.nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                trust.nets.push(IpNet::from(ip));
            } else {
                return Err(format!("'{item}' is not an IP address, a network (a.b.c.d/n) or *"));
            }
        }
        Ok(trust)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.all || self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer` carrying `forwarded_for` (an `X-Forwarded-For` value).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        let Some(list) = forwarded_for.filter(|_| self.trusts(peer)) else { return peer };
        let mut client = peer;
        for entry in list.rsplit(',').map(str::trim) {
            let Some(ip) = parse_entry(entry) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally `[v6]` or `v4:port` as some proxies write.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(inner) = entry.strip_prefix('[') {
        return inner.split(']').next()?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_trusts_loopback_only() {
        let t = Trust::parse(crate::config::defaults::DEFAULT_TRUSTED_PEERS).unwrap();
        assert_eq!(t.client(ip("127.0.0.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(t.client(ip("::ffff:127.0.0.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(t.client(ip("10.1.1.1"), Some("203.0.113.9")), ip("10.1.1.1"), "untrusted peer");
        assert_eq!(t.client(ip("127.0.0.1"), None), ip("127.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_entry_wins() {
        let t = Trust::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        assert_eq!(t.client(ip("127.0.0.1"), Some("1.1.1.1, 2.2.2.2, 10.0.0.5")), ip("2.2.2.2"));
        assert_eq!(t.client(ip("127.0.0.1"), Some("10.0.0.9, 10.0.0.5")), ip("10.0.0.9"));
        assert_eq!(t.client(ip("127.0.0.1"), Some("[2001:db8::1]:443")), ip("2001:db8::1"));
        assert_eq!(t.client(ip("127.0.0.1"), Some("1.2.3.4:5678")), ip("1.2.3.4"));
        assert_eq!(t.client(ip("127.0.0.1"), Some("garbage")), ip("127.0.0.1"));
    }

    /// What the client writes is the left part of the header; the proxies append to its right.
    /// Once the proxies' part names an untrusted address, nothing the client prepends (addresses,
    /// garbage, empty entries) changes who the client is; and a peer that is not trusted is the
    /// client whatever its header says.
    #[test]
    fn nothing_a_client_prepends_changes_who_it_is() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let t = Trust::parse("127.0.0.1, ::1, 10.0.0.0/8, 2001:db8:a::/48").unwrap();
        let trusted = ["10.0.0.1", "10.200.3.4", "127.0.0.1", "::1", "2001:db8:a::9", "::ffff:10.1.2.3"];
        let untrusted = ["203.0.113.7", "198.51.100.4", "2001:db8:b::1", "192.0.2.200", "::ffff:192.0.2.1"];
        let forged = ["1.2.3.4", "10.0.0.1", "127.0.0.1", "garbage", "", "[::1]:80", "unknown", "::", "9.9.9.9:53"];
        for _ in 0..5_000 {
            // The proxies' part: trusted hops around at least one untrusted address.
            let mut real: Vec<&str> = (0..rng.usize(0..3)).map(|_| trusted[rng.usize(..trusted.len())]).collect();
            real.push(untrusted[rng.usize(..untrusted.len())]);
            real.extend((0..rng.usize(0..3)).map(|_| trusted[rng.usize(..trusted.len())]));
            let prefix: Vec<&str> = (0..rng.usize(0..4)).map(|_| forged[rng.usize(..forged.len())]).collect();
            let (real, all) = (real.join(", "), [prefix.join(", "), real.join(", ")].join(", "));
            let peer = ip(trusted[rng.usize(..trusted.len())]);
            assert_eq!(t.client(peer, Some(&all)), t.client(peer, Some(&real)), "seed {seed}: {all:?}");
            assert!(!t.trusts(t.client(peer, Some(&all))), "seed {seed}: a trusted proxy taken for the client");
            let stranger = ip(untrusted[rng.usize(..untrusted.len())]);
            assert_eq!(t.client(stranger, Some(&all)), stranger.to_canonical(), "seed {seed}");
        }
    }

    #[test]
    fn star_trusts_everyone_and_bad_lists_are_refused() {
        let t = Trust::parse("*").unwrap();
        assert_eq!(t.client(ip("192.0.2.1"), Some("1.1.1.1, 2.2.2.2")), ip("1.1.1.1"));
        assert!(Trust::parse("127.0.0.1,nope").unwrap_err().contains("'nope'"));
        assert!(!Trust::parse("").unwrap().trusts(ip("127.0.0.1")));
    }
}
