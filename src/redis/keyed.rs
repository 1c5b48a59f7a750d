//! The counting API's side of a shard's Redis connection: per-key coalescing of hits, and the few
//! other commands the API sends (GET, SET, TTL, ...), each answered whole. Pure state, no I/O.
//!
//! Requests register a [`KeyedTicket`] slot and an [`Op`]; [`Keyed::encode_waiting`] turns
//! everything waiting into commands appended to the connection's one write: the hits of a batch
//! are grouped by key, and each key present gets one `INCRBY key n` (followed by one `EXPIRE key
//! ttl` when the API has a TTL), placed where the key's first hit arrived; every other op is one
//! command in its place. The reply `v` to `INCRBY key n` covers `v-n+1 ..= v`, handed out in the
//! order the hits arrived, so the values of one key are exactly 1..N across shards and hosts, as
//! the seed counter's are. [`Keyed::complete`] takes the replies in the order written;
//! [`Keyed::fail_all`] answers everything waiting or written when the connection ends.
//!
//! It must not know HTTP, names or JSON (`crate::api` does), nor the seed counter's queue
//! (`queue` owns that and hands this module the replies that are its own).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::errors::{ErrorKind, error_kind};
use super::queue::Failure;
use super::resp::{self, Reply};

/// A hit (or `/update`) that must check or announce, in one step on the server: adds ARGV[1];
/// with ARGV[3] = `1` only to a counter that exists (`--api-mode closed`, `/update`: a DEL
/// between a check and the increment cannot recreate it); refreshes the TTL (ARGV[2], 0 for
/// none); publishes the new value on the channel ARGV[4] when it is not empty (`/stream`).
/// Answers the new value, or a null when the counter is missing.
pub const ADD_SCRIPT: &[u8] = b"if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return false end \
local v = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end \
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], v) end \
return v";

/// `/set` and `/reset`: sets an existing counter to ARGV[1], refreshes the TTL (ARGV[2]) and
/// publishes on ARGV[3] when not empty; answers the value, or a null when the counter is missing.
pub const SET_SCRIPT: &[u8] = b"if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
redis.call('SET', KEYS[1], ARGV[1]) \
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end \
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[1]) end \
return tonumber(ARGV[1])";

/// What one request asks of Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// One hit on a counter key: coalesced with the batch's other hits on the same key.
    Hit {
        /// The Redis key (`K:{namespace}:{key}`).
        key: Rc<[u8]>,
        /// `EXPIRE key ttl` once per key per batch (`--counter-ttl`; `None`: 0, no expiry).
        ttl: Option<u64>,
        /// Only an existing counter counts (`--api-mode closed`): a missing one answers [`Answered::Nil`].
        existing_only: bool,
        /// The channel each new value is published on (`/stream`), if any.
        publish: Option<Rc<[u8]>>,
    },
    /// Any other command, sent as it is, its reply handed back whole.
    Command(Vec<Vec<u8>>),
}

impl Op {
    /// The Redis key the op is about, whose slot decides a Cluster node: a hit's key, a plain
    /// command's first argument, an `EVAL`'s first key.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Hit { key, .. } => key,
            Op::Command(args) if args.first().is_some_and(|c| c == b"EVAL") => args.get(3).map_or(&[], Vec::as_slice),
            Op::Command(args) => args.get(1).map_or(&[], Vec::as_slice),
        }
    }
}

/// One request's answer from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// An integer reply; for a hit, this request's own value.
    Int(i64),
    /// A bulk string or a status (`OK`).
    Text(Vec<u8>),
    /// A null: a missing key, a `SET NX` that did not set.
    Nil,
    /// An ordinary error reply (the text is logged by the API, escaped).
    Error(Vec<u8>),
    /// No reply: see [`Failure`].
    Failed(Failure),
}

/// Where the API's requests of one connection receive their answers, by position. One per
/// connection, re-armed per round.
#[derive(Debug, Clone, Default)]
pub struct KeyedTicket(Rc<TicketState>);

#[derive(Debug, Default)]
struct TicketState {
    answers: RefCell<Vec<Option<Answered>>>,
    left: Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

impl KeyedTicket {
    /// Starts a round of `n` answers, forgetting the previous round's.
    pub fn arm(&self, n: usize) {
        let mut answers = self.0.answers.borrow_mut();
        answers.clear();
        answers.resize(n, None);
        self.0.left.set(n);
    }

    /// Records the answer at `index`.
    pub fn set(&self, index: usize, answer: Answered) {
        let mut answers = self.0.answers.borrow_mut();
        if let Some(slot) = answers.get_mut(index) {
            if slot.replace(answer).is_none() {
                self.0.left.set(self.0.left.get() - 1);
            }
        }
        if self.0.left.get() == 0 {
            if let Some(w) = self.0.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Waits until every answer of the round is in.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.0.left.get() == 0 {
                Poll::Ready(())
            } else {
                *self.0.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes the answer at `index` (a failure if it never came, which `wait` rules out).
    pub fn take(&self, index: usize) -> Answered {
        self.0.answers.borrow_mut().get_mut(index).and_then(Option::take).unwrap_or(Answered::Failed(Failure::Lost))
    }
}

/// One written command awaiting its reply.
#[derive(Debug)]
enum Sent {
    /// `INCRBY` (or the closed-mode script) for these hits, in arrival order.
    Hits(Vec<(KeyedTicket, usize)>),
    /// `EXPIRE` after a key's `INCRBY`: its reply is not anyone's answer.
    Ignored,
    /// A command whose reply is this request's answer.
    Command(KeyedTicket, usize),
}

/// What a reply to one of the API's commands meant for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedCompleted<'a> {
    /// Answered (an ordinary error reply included: it is that request's answer).
    Served,
    /// The node takes no writes (`-READONLY`, `-LOADING`, `-MASTERDOWN`): the connection must be
    /// rebuilt, as for the seed counter.
    NotPrimary(ErrorKind, &'a [u8]),
}

/// The API's requests waiting and written, in order.
#[derive(Debug, Default)]
pub struct Keyed {
    waiting: Vec<(KeyedTicket, usize, Op)>,
    sent: VecDeque<Sent>,
    /// Requests waiting or written: the overload bound counts these.
    pending: u64,
}

impl Keyed {
    /// Adds one request, unless `max_pending` are already waiting.
    pub fn register(&mut self, ticket: &KeyedTicket, index: usize, op: Op, max_pending: u64) -> Result<(), Failure> {
        if self.pending >= max_pending {
            return Err(Failure::Overloaded);
        }
        self.pending += 1;
        self.waiting.push((ticket.clone(), index, op));
        Ok(())
    }

    /// Whether anything waits to be written.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether anything written waits for its reply.
    pub fn has_sent(&self) -> bool {
        !self.sent.is_empty()
    }

    /// Requests waiting to be written.
    pub fn waiting_requests(&self) -> u64 {
        self.waiting.len() as u64
    }

    /// Appends the commands for everything waiting to `out` and returns how many commands that
    /// is (each takes one place in the connection's reply order).
    pub fn encode_waiting(&mut self, out: &mut Vec<u8>) -> usize {
        let waiting = std::mem::take(&mut self.waiting);
        // Pass 1: the hits of each key, in arrival order, and where the key first appears.
        let mut groups: Vec<Vec<(KeyedTicket, usize)>> = Vec::new();
        let mut group_of: HashMap<Rc<[u8]>, usize> = HashMap::new();
        let mut first_of: Vec<Option<usize>> = Vec::with_capacity(waiting.len());
        for (ticket, index, op) in &waiting {
            match op {
                Op::Hit { key, .. } => {
                    let next = groups.len();
                    let g = *group_of.entry(key.clone()).or_insert(next);
                    if g == next {
                        groups.push(Vec::new());
                        first_of.push(Some(g));
                    } else {
                        first_of.push(None);
                    }
                    groups[g].push((ticket.clone(), *index));
                }
                Op::Command(_) => first_of.push(None),
            }
        }
        // Pass 2: one command per key at its first hit, every other op in its place.
        let mut groups: Vec<Option<Vec<(KeyedTicket, usize)>>> = groups.into_iter().map(Some).collect();
        let mut commands = 0;
        for ((ticket, index, op), first) in waiting.into_iter().zip(first_of) {
            match op {
                Op::Hit { key, ttl, existing_only, publish } => {
                    let Some(members) = first.and_then(|g| groups[g].take()) else { continue };
                    let (mut n, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
                    let n = n.format(members.len()).as_bytes();
                    let ttl_text = t.format(ttl.unwrap_or(0)).as_bytes();
                    let scripted = existing_only || publish.is_some();
                    if scripted {
                        let existing: &[u8] = if existing_only { b"1" } else { b"0" };
                        let channel = publish.as_deref().unwrap_or_default();
                        resp::encode_command(out, &[b"EVAL", ADD_SCRIPT, b"1", &key, n, ttl_text, existing, channel]);
                    } else {
                        resp::encode_command(out, &[b"INCRBY", &key, n]);
                    }
                    self.sent.push_back(Sent::Hits(members));
                    commands += 1;
                    if ttl.is_some() && !scripted {
                        resp::encode_command(out, &[b"EXPIRE", &key, ttl_text]);
                        self.sent.push_back(Sent::Ignored);
                        commands += 1;
                    }
                }
                Op::Command(args) => {
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    resp::encode_command(out, &args);
                    self.sent.push_back(Sent::Command(ticket, index));
                    commands += 1;
                }
            }
        }
        commands
    }

    /// Hands the oldest written command's reply to its requests. `None` if nothing of the API's
    /// was written (the caller's reply order is then out of step).
    pub fn complete<'a>(&mut self, reply: Reply<'a>) -> Option<KeyedCompleted<'a>> {
        let sent = self.sent.pop_front()?;
        if let Reply::Error(message) = reply {
            let kind = error_kind(message);
            if kind == ErrorKind::NotPrimary {
                self.answer(sent, |_| Answered::Failed(Failure::NotPrimary));
                return Some(KeyedCompleted::NotPrimary(kind, message));
            }
            if kind == ErrorKind::TryAgain {
                // Busy, out of memory, resharding: nothing ran; 503, and the connection stays.
                self.answer(sent, |_| Answered::Failed(Failure::TryAgain));
                return Some(KeyedCompleted::Served);
            }
            if kind == ErrorKind::Redirect {
                // A cluster node that does not own this key's slot: nothing ran (per-key cluster
                // routing is not built yet), so 503, and the connection stays.
                self.answer(sent, |_| Answered::Failed(Failure::NotPrimary));
                return Some(KeyedCompleted::Served);
            }
        }
        match (&sent, reply) {
            (Sent::Hits(members), Reply::Integer(v)) => {
                let first = v.checked_sub(members.len() as i64 - 1);
                self.answer(sent, |i| first.map_or(Answered::Failed(Failure::Lost), |f| Answered::Int(f + i as i64)));
            }
            (_, reply) => {
                let answer = match reply {
                    Reply::Integer(v) => Answered::Int(v),
                    Reply::Status(t) | Reply::Bulk(t) => Answered::Text(t.to_vec()),
                    Reply::Nil => Answered::Nil,
                    Reply::Error(e) => Answered::Error(e.to_vec()),
                    Reply::Unexpected => Answered::Error(b"unexpected reply".to_vec()),
                };
                self.answer(sent, |_| answer.clone());
            }
        }
        Some(KeyedCompleted::Served)
    }

    /// Gives each request `sent` covers its answer (`answer(i)` for the i-th).
    fn answer(&mut self, sent: Sent, answer: impl Fn(usize) -> Answered) {
        match sent {
            Sent::Hits(members) => {
                self.pending -= members.len() as u64;
                for (i, (ticket, index)) in members.into_iter().enumerate() {
                    ticket.set(index, answer(i));
                }
            }
            Sent::Ignored => {}
            Sent::Command(ticket, index) => {
                self.pending -= 1;
                ticket.set(index, answer(0));
            }
        }
    }

    /// Answers everything waiting and written with `failure`; returns how many requests.
    pub fn fail_all(&mut self, failure: Failure) -> u64 {
        let failed = self.pending;
        for (ticket, index, _) in self.waiting.drain(..) {
            ticket.set(index, Answered::Failed(failure));
        }
        for sent in std::mem::take(&mut self.sent) {
            match sent {
                Sent::Hits(members) => members.into_iter().for_each(|(t, i)| t.set(i, Answered::Failed(failure))),
                Sent::Ignored => {}
                Sent::Command(t, i) => t.set(i, Answered::Failed(failure)),
            }
        }
        self.pending = 0;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(key: &str, ttl: Option<u64>) -> Op {
        Op::Hit { key: key.as_bytes().into(), ttl, existing_only: false, publish: None }
    }

    fn cmd(args: &[&str]) -> Op {
        Op::Command(args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    fn encoded(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        resp::encode_command(&mut out, args);
        out
    }

    #[test]
    fn hits_are_one_incrby_per_key_at_its_first_hit_and_values_go_out_in_arrival_order() {
        let mut k = Keyed::default();
        let (a, b) = (KeyedTicket::default(), KeyedTicket::default());
        a.arm(4);
        b.arm(2);
        k.register(&a, 0, hit("K:x:aaa", Some(60)), 100).unwrap();
        k.register(&a, 1, hit("K:x:bbb", Some(60)), 100).unwrap();
        k.register(&b, 0, hit("K:x:aaa", Some(60)), 100).unwrap();
        k.register(&a, 2, cmd(&["GET", "K:x:ccc"]), 100).unwrap();
        k.register(&b, 1, hit("K:x:bbb", Some(60)), 100).unwrap();
        k.register(&a, 3, hit("K:x:aaa", Some(60)), 100).unwrap();
        let mut out = Vec::new();
        assert_eq!(k.encode_waiting(&mut out), 5);
        let expected = [
            encoded(&[b"INCRBY", b"K:x:aaa", b"3"]),
            encoded(&[b"EXPIRE", b"K:x:aaa", b"60"]),
            encoded(&[b"INCRBY", b"K:x:bbb", b"2"]),
            encoded(&[b"EXPIRE", b"K:x:bbb", b"60"]),
            encoded(&[b"GET", b"K:x:ccc"]),
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(k.complete(Reply::Integer(13)), Some(KeyedCompleted::Served));
        assert_eq!(k.complete(Reply::Integer(1)), Some(KeyedCompleted::Served));
        assert_eq!(k.complete(Reply::Integer(2)), Some(KeyedCompleted::Served));
        assert_eq!(k.complete(Reply::Integer(1)), Some(KeyedCompleted::Served));
        assert_eq!(k.complete(Reply::Nil), Some(KeyedCompleted::Served));
        assert_eq!(k.complete(Reply::Integer(1)), None, "nothing else was written");
        assert_eq!([a.take(0), b.take(0), a.take(3)], [Answered::Int(11), Answered::Int(12), Answered::Int(13)]);
        assert_eq!([a.take(1), b.take(1)], [Answered::Int(1), Answered::Int(2)]);
        assert_eq!(a.take(2), Answered::Nil);
        assert_eq!(k.pending, 0);
    }

    #[test]
    fn closed_mode_is_one_script_per_key_and_a_null_answers_every_hit_of_it() {
        let mut k = Keyed::default();
        let t = KeyedTicket::default();
        t.arm(2);
        for i in 0..2 {
            let op = Op::Hit { key: b"K:a:bcd"[..].into(), ttl: None, existing_only: true, publish: None };
            k.register(&t, i, op, 10).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(k.encode_waiting(&mut out), 1);
        assert_eq!(out, encoded(&[b"EVAL", ADD_SCRIPT, b"1", b"K:a:bcd", b"2", b"0", b"1", b""]));
        k.complete(Reply::Nil).unwrap();
        assert_eq!([t.take(0), t.take(1)], [Answered::Nil, Answered::Nil]);
    }

    #[test]
    fn errors_answer_their_requests_and_not_primary_ends_the_connection() {
        let mut k = Keyed::default();
        let t = KeyedTicket::default();
        t.arm(3);
        k.register(&t, 0, hit("K:a:aaa", None), 10).unwrap();
        k.register(&t, 1, cmd(&["GET", "K:a:bbb"]), 10).unwrap();
        k.register(&t, 2, cmd(&["GET", "K:a:ccc"]), 10).unwrap();
        k.encode_waiting(&mut Vec::new());
        k.complete(Reply::Error(b"WRONGTYPE no")).unwrap();
        assert_eq!(
            k.complete(Reply::Error(b"READONLY r")),
            Some(KeyedCompleted::NotPrimary(ErrorKind::NotPrimary, b"READONLY r"))
        );
        assert_eq!(t.take(0), Answered::Error(b"WRONGTYPE no".to_vec()));
        assert_eq!(t.take(1), Answered::Failed(Failure::NotPrimary));
        assert_eq!(k.fail_all(Failure::Lost), 1);
        assert_eq!(t.take(2), Answered::Failed(Failure::Lost));
    }

    #[test]
    fn the_overload_bound_counts_waiting_and_written_requests() {
        let mut k = Keyed::default();
        let t = KeyedTicket::default();
        t.arm(3);
        k.register(&t, 0, hit("K:a:aaa", None), 2).unwrap();
        k.encode_waiting(&mut Vec::new());
        k.register(&t, 1, hit("K:a:aaa", None), 2).unwrap();
        assert_eq!(k.register(&t, 2, hit("K:a:aaa", None), 2), Err(Failure::Overloaded));
    }

    /// A seeded randomized check: however hits on a few keys from many tickets interleave across
    /// batches, each key's values are exactly 1..N and each ticket sees its own hits rise.
    #[test]
    fn randomized_batches_hand_out_each_value_of_each_key_once() {
        let seed =
            std::env::var("HITCORE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
        eprintln!("seed {seed} (HITCORE_TEST_SEED={seed} reproduces)");
        let mut rng = fastrand::Rng::with_seed(seed);
        let keys = ["K:n:aaa", "K:n:bbb", "K:n:ccc", "K:n:ddd"];
        let mut redis: HashMap<&[u8], i64> = HashMap::new();
        let mut seen: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut k = Keyed::default();
        for _ in 0..200 {
            let tickets: Vec<(KeyedTicket, Vec<&str>)> = (0..rng.usize(1..6))
                .map(|_| {
                    let t = KeyedTicket::default();
                    let ks: Vec<&str> = (0..rng.usize(1..8)).map(|_| keys[rng.usize(..keys.len())]).collect();
                    t.arm(ks.len());
                    (t, ks)
                })
                .collect();
            for (t, ks) in &tickets {
                for (i, key) in ks.iter().enumerate() {
                    k.register(t, i, hit(key, None), u64::MAX).unwrap();
                }
            }
            let mut out = Vec::new();
            k.encode_waiting(&mut out);
            // Play Redis: decode each INCRBY and answer it.
            let mut at = 0;
            while at < out.len() {
                let (frame, used) = resp::decode_frame(&out[at..]).unwrap().unwrap();
                at += used;
                let resp::Frame::Array(parts) = frame else { panic!() };
                let key = keys.iter().find(|k| resp::frame_text(&parts[1]) == Some(**k)).unwrap();
                let n: i64 = resp::frame_text(&parts[2]).unwrap().parse().unwrap();
                let v = redis.entry(key.as_bytes()).or_default();
                *v += n;
                k.complete(Reply::Integer(*v)).unwrap();
            }
            for (t, ks) in &tickets {
                let mut last: HashMap<&str, i64> = HashMap::new();
                for (i, key) in ks.iter().enumerate() {
                    let Answered::Int(v) = t.take(i) else { panic!("seed {seed}: no value") };
                    assert!(last.insert(key, v).is_none_or(|prev| prev < v), "seed {seed}: order within a ticket");
                    seen.entry(key).or_default().push(v);
                }
            }
        }
        for (key, mut values) in seen {
            values.sort_unstable();
            assert_eq!(values, (1..=values.len() as i64).collect::<Vec<_>>(), "seed {seed}: key {key}");
        }
    }
}
