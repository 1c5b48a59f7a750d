//! Redis Cluster's routing facts, as pure functions: the slot of a key, the slot map from
//! `CLUSTER SHARDS` or `CLUSTER SLOTS`, and the `-MOVED` / `-ASK` redirections.
//!
//! It owns no connection and no state beyond a parsed map: the cluster connection (which decides
//! when to refresh the map and where to send a batch) is elsewhere. Replies come in as
//! redis-protocol frames already decoded and bounded by the caller.

use redis_protocol::resp2::types::OwnedFrame;

use crate::config::redis_topology::HostPort;

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the bytes between the first
/// `{` and the next `}`, when not empty), modulo 16384, as the cluster spec defines it.
/// redis-protocol already carries this function, so hitcore does not write its own.
pub fn key_slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// A redirection: the node that answered did not run the command, and says where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `-MOVED slot host:port`: the slot lives there for good; refresh the map and go there.
    Moved {
        /// The slot.
        slot: u16,
        /// Its owner.
        to: HostPort,
    },
    /// `-ASK slot host:port`: the slot is being migrated and this key is already there; send
    /// `ASKING` and the command there, once, and keep the map as it is.
    Ask {
        /// The slot.
        slot: u16,
        /// The importing node.
        to: HostPort,
    },
}

impl Redirect {
    /// Parses an error reply's text (without the `-`). `from` is the node that answered: an
    /// empty host (`MOVED 3999 :6380`, "endpoint unknown") means that node's host, as the spec says.
    /// Anything else, including a malformed redirection, is `None`: an ordinary error.
    pub fn parse(message: &[u8], from: &str) -> Option<Redirect> {
        let text = std::str::from_utf8(message).ok()?;
        let mut words = text.split(' ');
        let kind = words.next()?;
        let slot: u16 = words.next()?.parse().ok().filter(|&s| s < SLOTS)?;
        let addr = words.next()?;
        if words.next().is_some() {
            return None;
        }
        // An IPv6 address is written without brackets (`MOVED 1 ::1:7000`): the port follows the last colon.
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let to = HostPort { host: if host.is_empty() { from.to_string() } else { host.to_string() }, port };
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, to }),
            "ASK" => Some(Redirect::Ask { slot, to }),
            _ => None,
        }
    }
}

/// Which primary serves which slots, as one node reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first slot, last slot, primary)`, sorted by first slot, not overlapping.
    ranges: Vec<(u16, u16, HostPort)>,
}

impl SlotMap {
    /// The primary serving `slot`, if the map has one.
    pub fn owner(&self, slot: u16) -> Option<&HostPort> {
        let i = self.ranges.partition_point(|r| r.0 <= slot);
        let (first, last, node) = self.ranges.get(i.checked_sub(1)?)?;
        (*first..=*last).contains(&slot).then_some(node)
    }

    /// Every primary in the map, each once, in slot order: the nodes to ask next time.
    pub fn primaries(&self) -> Vec<HostPort> {
        let mut seen: Vec<HostPort> = Vec::new();
        for (_, _, node) in &self.ranges {
            if !seen.contains(node) {
                seen.push(node.clone());
            }
        }
        seen
    }

    /// Whether every slot has an owner (`cluster_state:ok` as a client sees it).
    pub fn is_complete(&self) -> bool {
        let mut next = 0u32;
        for (first, last, _) in &self.ranges {
            if u32::from(*first) != next {
                return false;
            }
            next = u32::from(*last) + 1;
        }
        next == u32::from(SLOTS)
    }

    fn build(mut ranges: Vec<(u16, u16, HostPort)>) -> Result<SlotMap, String> {
        ranges.sort_by_key(|r| r.0);
        for w in ranges.windows(2) {
            if w[1].0 <= w[0].1 {
                return Err(format!("slot ranges {}-{} and {}-{} overlap", w[0].0, w[0].1, w[1].0, w[1].1));
            }
        }
        Ok(SlotMap { ranges })
    }

    /// From a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id, ...], replica...], ...]`.
    /// A host of `""` or null means the answering node's host (`from`); `"?"` (endpoint unknown)
    /// leaves that range without an owner.
    pub fn from_cluster_slots(reply: &OwnedFrame, from: &str) -> Result<SlotMap, String> {
        let OwnedFrame::Array(entries) = reply else { return Err(format!("CLUSTER SLOTS answered {}", kind(reply))) };
        let mut ranges = Vec::new();
        for entry in entries {
            let OwnedFrame::Array(fields) = entry else { return Err("a CLUSTER SLOTS entry is not an array".into()) };
            let (Some(first), Some(last), Some(OwnedFrame::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err("a CLUSTER SLOTS entry is too short".into());
            };
            let (first, last) = (slot(first)?, slot(last)?);
            if first > last {
                return Err(format!("CLUSTER SLOTS range {first}-{last} is empty"));
            }
            let host = match primary.first() {
                None | Some(OwnedFrame::Null) => from.to_string(),
                Some(h) => text(h)?,
            };
            let port = match primary.get(1) {
                Some(OwnedFrame::Integer(p)) => port(*p)?,
                _ => return Err("a CLUSTER SLOTS node has no port".into()),
            };
            match host.as_str() {
                "?" => {}
                "" => ranges.push((first, last, HostPort { host: from.to_string(), port })),
                _ => ranges.push((first, last, HostPort { host, port })),
            }
        }
        SlotMap::build(ranges)
    }

    /// From a `CLUSTER SHARDS` reply (Redis 7): per shard a flat map with `slots` (`[first, last,
    /// first, last, ...]`) and `nodes` (flat maps with `role`, `health`, `endpoint`/`ip`, `port`,
    /// `tls-port`). The shard's primary must be `online`; with `tls`, its `tls-port` is used.
    pub fn from_cluster_shards(reply: &OwnedFrame, from: &str, tls: bool) -> Result<SlotMap, String> {
        let OwnedFrame::Array(shards) = reply else { return Err(format!("CLUSTER SHARDS answered {}", kind(reply))) };
        let mut ranges = Vec::new();
        for shard in shards {
            let shard = fields(shard)?;
            let Some(OwnedFrame::Array(slots)) = lookup(&shard, "slots") else {
                return Err("a CLUSTER SHARDS entry has no slots".into());
            };
            let Some(OwnedFrame::Array(nodes)) = lookup(&shard, "nodes") else {
                return Err("a CLUSTER SHARDS entry has no nodes".into());
            };
            let mut primary = None;
            for node in nodes {
                let node = fields(node)?;
                let is = |k: &str, v: &str| lookup(&node, k).and_then(|f| text(f).ok()).as_deref() == Some(v);
                if is("role", "master") && is("health", "online") {
                    primary = Some(node);
                }
            }
            // A shard without an online primary (mid-failover) owns nothing a client can use.
            let Some(node) = primary else { continue };
            let port_key = if tls { "tls-port" } else { "port" };
            let port = match lookup(&node, port_key) {
                Some(OwnedFrame::Integer(p)) => port(*p)?,
                _ => return Err(format!("a CLUSTER SHARDS primary has no {port_key}")),
            };
            let host = ["endpoint", "ip"].iter().find_map(|k| lookup(&node, k).and_then(|f| text(f).ok()));
            let host = match host.as_deref() {
                Some("?") => continue,
                None | Some("") => from.to_string(),
                Some(h) => h.to_string(),
            };
            if slots.len() % 2 != 0 {
                return Err("CLUSTER SHARDS slots are not pairs".into());
            }
            for pair in slots.chunks(2) {
                let (first, last) = (slot(&pair[0])?, slot(&pair[1])?);
                if first > last {
                    return Err(format!("CLUSTER SHARDS range {first}-{last} is empty"));
                }
                ranges.push((first, last, HostPort { host: host.clone(), port }));
            }
        }
        SlotMap::build(ranges)
    }
}

fn kind(f: &OwnedFrame) -> &'static str {
    match f {
        OwnedFrame::Error(_) => "an error",
        OwnedFrame::Null => "null",
        OwnedFrame::Array(_) => "an array",
        OwnedFrame::Integer(_) => "an integer",
        _ => "a string",
    }
}

fn text(f: &OwnedFrame) -> Result<String, String> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        other => Err(format!("expected a string, got {}", kind(other))),
    }
}

fn slot(f: &OwnedFrame) -> Result<u16, String> {
    match f {
        OwnedFrame::Integer(n) if (0..i64::from(SLOTS)).contains(n) => Ok(*n as u16),
        OwnedFrame::Integer(n) => Err(format!("slot {n} is out of range")),
        other => Err(format!("expected a slot number, got {}", kind(other))),
    }
}

fn port(n: i64) -> Result<u16, String> {
    u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| format!("port {n} is out of range"))
}

/// A RESP2 "map" (a flat `[key, value, key, value, ...]` array) as pairs.
fn fields(f: &OwnedFrame) -> Result<Vec<(String, &OwnedFrame)>, String> {
    let OwnedFrame::Array(items) = f else { return Err(format!("expected a map, got {}", kind(f))) };
    items.chunks(2).filter(|kv| kv.len() == 2).map(|kv| Ok((text(&kv[0])?, &kv[1]))).collect()
}

fn lookup<'a>(map: &[(String, &'a OwnedFrame)], key: &str) -> Option<&'a OwnedFrame> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use redis_protocol::resp2::decode::decode;

    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    fn frame(bytes: &str) -> OwnedFrame {
        let (f, used) = decode(bytes.as_bytes()).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        f
    }

    #[test]
    fn key_slots_match_the_cluster_spec() {
        // The spec's CRC16 check value: CRC16("123456789") = 0x31C3 = 12739 (< 16384, so the slot).
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 12739);
        // What `CLUSTER KEYSLOT` answers on redis-server 7.0.15, hash tags included: only the part
        // between the first { and the next } counts, when it is not empty.
        for (key, slot) in [
            (&b"hit"[..], 15723),
            (b"foo", 12182),
            (b"", 0),
            (b"bar", 5061),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"foo{bar}{zap}", 5061),
            (b"{hit", 8449),
            (b"x{hit}", 15723),
        ] {
            assert_eq!(key_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
    }

    #[test]
    fn redirections() {
        assert_eq!(
            Redirect::parse(b"MOVED 3999 127.0.0.1:6381", "n"),
            Some(Redirect::Moved { slot: 3999, to: hp("127.0.0.1", 6381) })
        );
        assert_eq!(
            Redirect::parse(b"ASK 3999 10.0.0.2:7000", "n"),
            Some(Redirect::Ask { slot: 3999, to: hp("10.0.0.2", 7000) })
        );
        assert_eq!(
            Redirect::parse(b"MOVED 1 :6380", "10.1.1.1"),
            Some(Redirect::Moved { slot: 1, to: hp("10.1.1.1", 6380) })
        );
        assert_eq!(Redirect::parse(b"MOVED 1 ::1:6380", "n"), Some(Redirect::Moved { slot: 1, to: hp("::1", 6380) }));
        assert_eq!(
            Redirect::parse(b"ASK 16383 redis-3.example:6379", "n"),
            Some(Redirect::Ask { slot: 16383, to: hp("redis-3.example", 6379) })
        );
        for not in [
            &b"ERR value is not an integer or out of range"[..],
            b"MOVED",
            b"MOVED 16384 h:1",
            b"MOVED x h:1",
            b"MOVED 1 h",
            b"MOVED 1 h:0",
            b"MOVED 1 h:1 extra",
            b"READONLY You can't write against a read only replica.",
            b"ASKING 1 h:1",
            b"MOVED 1 h:\xff",
        ] {
            assert_eq!(Redirect::parse(not, "n"), None, "{}", String::from_utf8_lossy(not));
        }
    }

    /// Three primaries on 7000..7002, each with a replica, as redis-server 7.0 answers.
    const SLOTS_REPLY: &str = "*3\r\n\
        *4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n*0\r\n\
        *3\r\n:5461\r\n:10922\r\n*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n\
        *3\r\n:10923\r\n:16383\r\n*3\r\n$7\r\nnode-c.\r\n:7002\r\n$2\r\nid\r\n";

    #[test]
    fn slot_map_from_cluster_slots() {
        let map = SlotMap::from_cluster_slots(&frame(SLOTS_REPLY), "seed").unwrap();
        assert!(map.is_complete());
        assert_eq!(map.owner(0), Some(&hp("127.0.0.1", 7000)));
        assert_eq!(map.owner(5460), Some(&hp("127.0.0.1", 7000)));
        assert_eq!(map.owner(5461), Some(&hp("seed", 7001)), "an empty host is the answering node's");
        assert_eq!(map.owner(16383), Some(&hp("node-c.", 7002)));
        assert_eq!(map.primaries().len(), 3);
        // A range whose endpoint is unknown ("?") has no owner, and the map says it is incomplete.
        let unknown = SLOTS_REPLY.replace("$7\r\nnode-c.", "$1\r\n?");
        let map = SlotMap::from_cluster_slots(&frame(&unknown), "seed").unwrap();
        assert_eq!(map.owner(12000), None);
        assert!(!map.is_complete());
    }

    #[test]
    fn bad_cluster_slots_replies_are_errors() {
        for bad in [
            "-ERR This instance has cluster support disabled\r\n",
            "*1\r\n:1\r\n",
            "*1\r\n*2\r\n:0\r\n:1\r\n",
            "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            "*1\r\n*3\r\n:9\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:70000\r\n",
            "*2\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:10\r\n:20\r\n*2\r\n$1\r\nh\r\n:2\r\n",
        ] {
            assert!(SlotMap::from_cluster_slots(&frame(bad), "n").is_err(), "{bad:?}");
        }
    }

    fn node(role: &str, health: &str, endpoint: &str, port: u16) -> String {
        let kv = |k: &str, v: &str| format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len());
        format!(
            "*14\r\n{}{}{}{}{}$4\r\nport\r\n:{port}\r\n$8\r\ntls-port\r\n:{}\r\n",
            kv("id", "abc"),
            kv("ip", "10.9.9.9"),
            kv("endpoint", endpoint),
            kv("role", role),
            kv("health", health),
            port + 1000
        )
    }

    fn shard(slots: &[u16], nodes: &[String]) -> String {
        let slots: String = slots.iter().map(|s| format!(":{s}\r\n")).collect();
        format!(
            "*4\r\n$5\r\nslots\r\n*{}\r\n{slots}$5\r\nnodes\r\n*{}\r\n{}",
            slots.matches(':').count(),
            nodes.len(),
            nodes.concat()
        )
    }

    #[test]
    fn slot_map_from_cluster_shards() {
        let reply = format!(
            "*3\r\n{}{}{}",
            shard(
                &[0, 5460],
                &[node("master", "online", "127.0.0.1", 7000), node("replica", "online", "127.0.0.1", 7003)]
            ),
            // After a failover the old primary is listed as a failed master; the promoted replica serves.
            shard(
                &[5461, 10922],
                &[node("master", "failed", "127.0.0.1", 7001), node("master", "online", "127.0.0.1", 7004)]
            ),
            shard(&[10923, 12000, 12001, 16383], &[node("master", "online", "", 7002)]),
        );
        let map = SlotMap::from_cluster_shards(&frame(&reply), "seed", false).unwrap();
        assert!(map.is_complete());
        assert_eq!(map.owner(100), Some(&hp("127.0.0.1", 7000)));
        assert_eq!(map.owner(6000), Some(&hp("127.0.0.1", 7004)));
        assert_eq!(map.owner(12001), Some(&hp("seed", 7002)));
        let tls = SlotMap::from_cluster_shards(&frame(&reply), "seed", true).unwrap();
        assert_eq!(tls.owner(100), Some(&hp("127.0.0.1", 8000)));
        // A shard with no online primary owns nothing.
        let reply = format!("*1\r\n{}", shard(&[0, 16383], &[node("master", "loading", "h", 1)]));
        let map = SlotMap::from_cluster_shards(&frame(&reply), "seed", false).unwrap();
        assert_eq!(map.owner(0), None);
        assert!(SlotMap::from_cluster_shards(&frame("*1\r\n*2\r\n$5\r\nslots\r\n*0\r\n"), "s", false).is_err());
    }
}
