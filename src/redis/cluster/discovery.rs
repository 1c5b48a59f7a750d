//! Finding the owner of the key's slot in a Redis Cluster, at every connect (and the whole slot
//! map, for the counting API's router).
//!
//! A shard's pipelined connection goes to one node: the primary that owns the configured key's
//! slot. At each connect this asks the primaries it has learnt, then the seeds, for the slot map
//! (`CLUSTER SHARDS`, with `CLUSTER SLOTS` in the same round trip for servers older than 7.0),
//! unless a `-MOVED` has just named the owner: the node that answered `-MOVED` knows better than
//! any map another node may still be gossiping about.
//!
//! It owns the cluster conversation only; transports are `dial`'s, the handshake and the `ROLE`
//! check of the node it names are `connect`'s, the slot arithmetic is `slots`'s.

use std::time::Duration;

use super::slots::{SlotMap, key_slot};
use crate::config::redis_topology::HostPort;
use crate::config::redis_url::RedisTarget;
use crate::redis::dial::{self, Address, Candidate, ConnectError, Dialer};
use crate::redis::resp::{self, Frame};
use crate::redis::stream::Stream;

/// How long one node may take to be reached and to send its slot map.
const MAP_TIMEOUT: Duration = Duration::from_millis(500);

/// One shard's view of the cluster, for its key or for the counting API's router.
#[derive(Debug, Clone)]
pub struct ClusterDiscovery {
    /// The URL's seed nodes: asked when no learnt primary answers.
    seeds: Vec<HostPort>,
    /// The slot map last learnt.
    map: SlotMap,
    /// What a map must give to be kept.
    wants: Wants,
    /// `rediss+cluster://`: TLS to every node.
    tls: bool,
}

/// What a learnt slot map must give to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wants {
    /// The owner of this slot (the configured key's): the node one connection goes to.
    Slot(u16),
    /// Any primary: the counting API's router sends each key to its own slot's owner, so a map
    /// with some slots uncovered (a primary failed with no replica to promote) still routes every
    /// key it covers, and one whose slot it lacks is answered 503 by the router.
    AnyPrimary,
}

impl Wants {
    fn met_by(self, map: &SlotMap) -> bool {
        match self {
            Wants::Slot(slot) => map.owner(slot).is_some(),
            Wants::AnyPrimary => !map.primaries().is_empty(),
        }
    }
}

impl std::fmt::Display for Wants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wants::Slot(slot) => write!(f, "an owner of slot {slot}"),
            Wants::AnyPrimary => write!(f, "any primary"),
        }
    }
}

impl ClusterDiscovery {
    /// Discovery of the owner of `key`'s slot, starting from `seeds`.
    pub fn new(seeds: Vec<HostPort>, key: &str, tls: bool) -> ClusterDiscovery {
        ClusterDiscovery { seeds, map: SlotMap::default(), wants: Wants::Slot(key_slot(key.as_bytes())), tls }
    }

    /// Discovery of the whole slot map, for the counting API's router, which routes every key
    /// by it (no one key's slot is required).
    pub fn for_every_key(seeds: Vec<HostPort>, tls: bool) -> ClusterDiscovery {
        ClusterDiscovery { seeds, map: SlotMap::default(), wants: Wants::AnyPrimary, tls }
    }

    /// Learns the slot map again (the router's use; a key's connection asks [`Self::candidates`]).
    pub async fn learn(&mut self, dialer: &Dialer, target: &RedisTarget) -> Result<(), ConnectError> {
        self.refresh(dialer, target).await
    }

    /// The owner of `slot` in the map last learnt, if any: the counting API's router
    /// (`router.rs`) sends each key to its slot's owner by it.
    pub fn owner(&self, slot: u16) -> Option<&HostPort> {
        self.map.owner(slot)
    }

    /// The owner of the key's slot, to connect to: `moved_to` when a `-MOVED` named it, else
    /// the owner in a freshly learnt map.
    pub async fn candidates(
        &mut self,
        dialer: &Dialer,
        target: &RedisTarget,
        moved_to: Option<HostPort>,
    ) -> Result<Vec<Candidate>, ConnectError> {
        let owner = match (moved_to, self.wants) {
            (Some(owner), _) => owner,
            (None, Wants::Slot(slot)) => {
                self.refresh(dialer, target).await?;
                self.map.owner(slot).cloned().expect("refresh only keeps a map that has the slot")
            }
            (None, Wants::AnyPrimary) => {
                return Err(ConnectError::Discovery("the router's discovery names no one node to connect to".into()));
            }
        };
        let addrs = dial::resolve(&owner.host, owner.port).await?;
        Ok(addrs.into_iter().map(|a| Candidate { name: owner.host.clone(), addr: Address::Tcp(a) }).collect())
    }

    /// Learns the slot map from the first node that gives one that has what we want.
    async fn refresh(&mut self, dialer: &Dialer, target: &RedisTarget) -> Result<(), ConnectError> {
        let mut ask = self.map.primaries();
        for seed in &self.seeds {
            if !ask.contains(seed) {
                ask.push(seed.clone());
            }
        }
        let mut why = Vec::new();
        for node in ask {
            match dial::within(MAP_TIMEOUT, slot_map(dialer, target, &node, self.tls)).await {
                Some(Ok(map)) if self.wants.met_by(&map) => {
                    self.map = map;
                    return Ok(());
                }
                Some(Ok(_)) => why.push(format!("{node}'s map lacks {}", self.wants)),
                Some(Err(e)) => why.push(format!("{node}: {e}")),
                None => why.push(format!("{node}: no answer within {MAP_TIMEOUT:?}")),
            }
        }
        Err(ConnectError::Discovery(format!("no cluster node gave {} ({})", self.wants, why.join("; "))))
    }
}

/// Opens a connection to `node` and logs in with the URL's credentials, in a round trip of its
/// own: nothing else is written unless the login succeeded.
pub async fn open_logged_in(
    dialer: &Dialer,
    target: &RedisTarget,
    node: &HostPort,
    tls: bool,
) -> Result<(Candidate, Stream), LoginError> {
    let (candidate, mut stream) = dialer.open_host(node, tls).await.map_err(LoginError::Dial)?;
    let mut out = Vec::new();
    if dial::encode_auth(&mut out, target.user.as_deref(), target.password.as_deref()) == 1 {
        let frames = dial::roundtrip(&mut stream, &candidate, &out, 1).await.map_err(LoginError::Dial)?;
        if let Frame::Error(e) = &frames[0] {
            return Err(LoginError::Refused(e.clone()));
        }
    }
    Ok((candidate, stream))
}

/// Why a connection to a cluster node could not be logged in. Either way, nothing but AUTH was
/// written on it.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The node could not be reached (or resolved, or the TLS handshake failed).
    #[error("{0}")]
    Dial(ConnectError),
    /// AUTH was refused (Redis's words).
    #[error("AUTH failed: {0}")]
    Refused(String),
}

/// `CLUSTER SHARDS` (Redis 7) and, in the same round trip, `CLUSTER SLOTS` (older servers).
async fn slot_map(dialer: &Dialer, target: &RedisTarget, node: &HostPort, tls: bool) -> Result<SlotMap, String> {
    let (candidate, mut stream) = open_logged_in(dialer, target, node, tls).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    resp::encode_command(&mut out, &[b"CLUSTER", b"SHARDS"]);
    resp::encode_command(&mut out, &[b"CLUSTER", b"SLOTS"]);
    let frames = dial::roundtrip(&mut stream, &candidate, &out, 2).await.map_err(|e| e.to_string())?;
    match &frames[0] {
        Frame::Error(_) => SlotMap::from_cluster_slots(&frames[1], &node.host),
        shards => SlotMap::from_cluster_shards(shards, &node.host, tls),
    }
}

#[cfg(test)]
mod tests {
    use redis_protocol::resp2::decode::decode;

    use super::*;

    /// `CLUSTER SLOTS` with two primaries: slots 0-8191 on :7000, 8192-16383 on an unknown
    /// endpoint (`?`), so the second half, "hit"'s slot 15723 included, has no owner.
    const HALF: &str = "*2\r\n\
        *3\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n\
        *3\r\n:8192\r\n:16383\r\n*3\r\n$1\r\n?\r\n:7001\r\n$2\r\nid\r\n";

    #[test]
    fn a_key_needs_its_slot_and_the_router_any_primary() {
        let (reply, _) = decode(HALF.as_bytes()).unwrap().unwrap();
        let half = SlotMap::from_cluster_slots(&reply, "seed").unwrap();
        assert!(Wants::Slot(key_slot(b"bar")).met_by(&half), "bar's slot 5061 is on :7000");
        assert!(!Wants::Slot(key_slot(b"hit")).met_by(&half), "hit's slot 15723 has no owner");
        // The API's router keeps the map: keys on :7000 are routed, the rest answered 503 by it,
        // instead of every key failing because the seed counter's slot is down.
        assert!(Wants::AnyPrimary.met_by(&half));
        assert!(!Wants::AnyPrimary.met_by(&SlotMap::default()));
        assert_eq!(Wants::Slot(15723).to_string(), "an owner of slot 15723");
    }
}
