//! Finding the owner of the key's slot in a Redis Cluster, at every connect, and running a batch
//! that a migrating slot's owner redirected with `-ASK` on the importing node.
//!
//! hitcore writes one key, so a shard's one pipelined connection goes to one node: the primary
//! that owns the key's slot. At each connect this asks the primaries it has learnt, then the
//! seeds, for the slot map (`CLUSTER SHARDS`, with `CLUSTER SLOTS` in the same round trip for
//! servers older than 7.0), unless a `-MOVED` has just named the owner: the node that answered
//! `-MOVED` knows better than any map another node may still be gossiping about.
//!
//! It owns the cluster conversation only; transports, the handshake and the `ROLE` check of the
//! node it names are `connect`'s, the slot arithmetic is `slots`'s, and what happens to the
//! requests of a redirected batch is `client`'s and `queue`'s.

use std::time::Duration;

use super::connect::{self, Address, Candidate, ConnectError, Connector};
use super::queue::{Failure, Outcome, Ticket};
use super::resp::{self, Frame};
use super::slots::{SlotMap, key_slot};
use super::topology::HostPort;
use super::url::RedisTarget;

/// How long one node may take to be reached and to send its slot map.
const MAP_TIMEOUT: Duration = Duration::from_millis(500);

/// One shard's view of the cluster, for its key.
#[derive(Debug, Clone)]
pub struct ClusterDiscovery {
    /// The URL's seed nodes: asked when no learnt primary answers.
    seeds: Vec<HostPort>,
    /// The slot map last learnt.
    map: SlotMap,
    /// The key's slot.
    slot: u16,
    /// Where the last `-MOVED` said the slot went: the next connect goes there without asking.
    moved_to: Option<HostPort>,
    /// `rediss+cluster://`: TLS to every node.
    tls: bool,
}

impl ClusterDiscovery {
    /// Discovery of the owner of `key`'s slot, starting from `seeds`.
    pub fn new(seeds: Vec<HostPort>, key: &str, tls: bool) -> ClusterDiscovery {
        ClusterDiscovery { seeds, map: SlotMap::default(), slot: key_slot(key.as_bytes()), moved_to: None, tls }
    }

    /// The counter's key, whose slot is the one that matters.
    pub fn set_key(&mut self, key: &str) {
        self.slot = key_slot(key.as_bytes());
    }

    /// A node answered `-MOVED` for our slot: it lives at `to` now.
    pub fn moved(&mut self, to: HostPort) {
        self.moved_to = Some(to);
    }

    /// The owner of the key's slot, to connect to.
    pub async fn candidates(
        &mut self,
        connector: &mut Connector,
        target: &RedisTarget,
    ) -> Result<Vec<Candidate>, ConnectError> {
        let owner = match self.moved_to.take() {
            Some(owner) => owner,
            None => {
                self.refresh(connector, target).await?;
                self.map.owner(self.slot).cloned().expect("refresh only keeps a map that has the slot")
            }
        };
        let addrs = connect::resolve(&owner.host, owner.port).await?;
        Ok(addrs.into_iter().map(|a| Candidate { name: owner.host.clone(), addr: Address::Tcp(a) }).collect())
    }

    /// Learns the slot map from the first node that gives one with an owner for our slot.
    async fn refresh(&mut self, connector: &mut Connector, target: &RedisTarget) -> Result<(), ConnectError> {
        let mut ask = self.map.primaries();
        for seed in &self.seeds {
            if !ask.contains(seed) {
                ask.push(seed.clone());
            }
        }
        let mut why = Vec::new();
        for node in ask {
            match connect::within(MAP_TIMEOUT, slot_map(connector, target, &node, self.tls)).await {
                Some(Ok(map)) if map.owner(self.slot).is_some() => {
                    self.map = map;
                    return Ok(());
                }
                Some(Ok(_)) => why.push(format!("{node} knows no owner of slot {}", self.slot)),
                Some(Err(e)) => why.push(format!("{node}: {e}")),
                None => why.push(format!("{node}: no answer within {MAP_TIMEOUT:?}")),
            }
        }
        Err(ConnectError::Discovery(format!(
            "no cluster node gave an owner of slot {} ({})",
            self.slot,
            why.join("; ")
        )))
    }
}

/// Opens a connection to `node` and logs in with the URL's credentials.
pub async fn open_logged_in(
    connector: &mut Connector,
    target: &RedisTarget,
    node: &HostPort,
    tls: bool,
    then: &[u8],
    replies: usize,
) -> Result<Vec<Frame>, String> {
    let addr =
        *connect::resolve(&node.host, node.port).await.map_err(|e| e.to_string())?.first().ok_or("no address")?;
    let candidate = Candidate { name: node.host.clone(), addr: Address::Tcp(addr) };
    let mut stream = connector.open(&candidate, tls).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let login = match (&target.user, &target.password) {
        (Some(u), Some(p)) => {
            resp::encode_command(&mut out, &[b"AUTH", u.as_bytes(), p.as_bytes()]);
            1
        }
        (None, Some(p)) => {
            resp::encode_command(&mut out, &[b"AUTH", p.as_bytes()]);
            1
        }
        _ => 0,
    };
    out.extend_from_slice(then);
    let mut frames =
        connect::roundtrip(&mut stream, &candidate, &out, login + replies).await.map_err(|e| e.to_string())?;
    if login == 1 {
        if let Frame::Error(e) = &frames[0] {
            return Err(format!("AUTH failed: {e}"));
        }
    }
    Ok(frames.split_off(login))
}

/// `CLUSTER SHARDS` (Redis 7) and, in the same round trip, `CLUSTER SLOTS` (older servers).
async fn slot_map(
    connector: &mut Connector,
    target: &RedisTarget,
    node: &HostPort,
    tls: bool,
) -> Result<SlotMap, String> {
    let mut out = Vec::new();
    resp::encode_command(&mut out, &[b"CLUSTER", b"SHARDS"]);
    resp::encode_command(&mut out, &[b"CLUSTER", b"SLOTS"]);
    let frames = open_logged_in(connector, target, node, tls, &out, 2).await?;
    match &frames[0] {
        Frame::Error(_) => SlotMap::from_cluster_slots(&frames[1], &node.host),
        shards => SlotMap::from_cluster_shards(shards, &node.host, tls),
    }
}

/// What became of a batch sent to the importing node after `-ASK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// `INCRBY` answered `v`: the batch's values end at `v`. With WAIT, `acked` replicas confirmed.
    Value {
        /// The INCRBY reply.
        last: i64,
        /// WAIT's reply, when WAIT was sent.
        acked: Option<i64>,
    },
    /// The importing node refused (`-TRYAGAIN`, `-MOVED`, an ACL): nothing ran.
    Refused(String),
    /// The batch was written and no reply came back: it may have run.
    Lost(String),
    /// Nothing was written (no connection, no login).
    NotSent(String),
}

/// Sends `ASKING` then `INCRBY key total` (then `WAIT`, if `wait`) to `to`, once, on a short
/// connection of its own: `-ASK` is an answer about this one command, so the slot map and the
/// shard's pipelined connection stay as they are.
///
/// Sending the batch here after the owner answered `-ASK` cannot count it twice: a cluster node
/// checks the key's slot before it runs a command, and `-ASK` (like `-MOVED`) is what it answers
/// *instead of* running it. That is why this resend is safe, while replaying a batch whose
/// connection broke or timed out is not: that batch may have run, and its reply was lost.
pub async fn send_asked(
    connector: &mut Connector,
    target: &RedisTarget,
    to: &HostPort,
    tls: bool,
    key: &str,
    total: u64,
    wait: Option<(u32, u64)>,
) -> Asked {
    let mut out = Vec::new();
    resp::encode_command(&mut out, &[b"ASKING"]);
    let mut by = itoa::Buffer::new();
    resp::encode_command(&mut out, &[b"INCRBY", key.as_bytes(), by.format(total).as_bytes()]);
    let mut replies = 2;
    if let Some((n, ms)) = wait {
        let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
        resp::encode_command(&mut out, &[b"WAIT", a.format(n).as_bytes(), b.format(ms).as_bytes()]);
        replies += 1;
    }
    // The login happens in the same write as the batch; a failure to connect or log in is told
    // apart from a failure after the batch was written by whether any reply arrived.
    let frames = match open_logged_in(connector, target, to, tls, &out, replies).await {
        Ok(frames) => frames,
        Err(e) if e.starts_with("AUTH failed") => return Asked::NotSent(e),
        Err(e) => return Asked::Lost(e),
    };
    match (&frames[0], &frames[1]) {
        (Frame::Error(e), _) => Asked::Refused(format!("ASKING: {e}")),
        (_, Frame::Error(e)) => Asked::Refused(e.clone()),
        (_, Frame::Integer(last)) => Asked::Value {
            last: *last,
            acked: frames.get(2).and_then(|f| if let Frame::Integer(n) = f { Some(*n) } else { None }),
        },
        _ => Asked::Lost("an unexpected reply to INCRBY".into()),
    }
}

/// Hands each request of an `-ASK`ed batch its outcome, in registration order, as the pipelined
/// connection would have: the reply v to `INCRBY total` covers v-total+1 ..= v.
pub fn answer_asked(tickets: Vec<(Ticket, u64)>, total: u64, asked: &Asked, wait: Option<(u32, u64)>) {
    let mut next = match asked {
        Asked::Value { acked, .. } if wait.is_some_and(|(n, _)| acked.unwrap_or(0) < i64::from(n)) => {
            Outcome::Failed(Failure::NotDurable)
        }
        Asked::Value { last, .. } => match last.checked_sub(total as i64 - 1) {
            Some(first) => Outcome::Value(first),
            None => Outcome::Failed(Failure::Lost),
        },
        Asked::Refused(_) => Outcome::Failed(Failure::NotPrimary),
        Asked::Lost(_) => Outcome::Failed(Failure::Lost),
        Asked::NotSent(_) => Outcome::Failed(Failure::Unavailable),
    };
    for (ticket, n) in tickets {
        ticket.push(next, n);
        if let Outcome::Value(v) = next {
            next = Outcome::Value(v.wrapping_add(n as i64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(n: usize) -> Ticket {
        let t = Ticket::default();
        t.arm(n);
        t
    }

    #[test]
    fn an_asked_batch_is_handed_out_like_a_pipelined_one() {
        let (a, b) = (armed(2), armed(3));
        answer_asked(vec![(a.clone(), 2), (b.clone(), 3)], 5, &Asked::Value { last: 14, acked: None }, None);
        assert_eq!(&*a.outcomes(), [Outcome::Value(10), Outcome::Value(11)]);
        assert_eq!(&*b.outcomes(), [Outcome::Value(12), Outcome::Value(13), Outcome::Value(14)]);
    }

    #[test]
    fn an_asked_batch_without_enough_replicas_or_refused_gets_no_value() {
        let a = armed(1);
        answer_asked(vec![(a.clone(), 1)], 1, &Asked::Value { last: 7, acked: Some(0) }, Some((1, 50)));
        assert_eq!(&*a.outcomes(), [Outcome::Failed(Failure::NotDurable)]);
        let a = armed(1);
        answer_asked(vec![(a.clone(), 1)], 1, &Asked::Value { last: 7, acked: Some(1) }, Some((1, 50)));
        assert_eq!(&*a.outcomes(), [Outcome::Value(7)]);
        let a = armed(2);
        answer_asked(vec![(a.clone(), 2)], 2, &Asked::Refused("TRYAGAIN".into()), None);
        assert_eq!(&*a.outcomes(), [Outcome::Failed(Failure::NotPrimary); 2]);
        let a = armed(1);
        answer_asked(vec![(a.clone(), 1)], 1, &Asked::Lost("reset".into()), None);
        assert_eq!(&*a.outcomes(), [Outcome::Failed(Failure::Lost)]);
    }
}
