//! The counting API's side of a shard's Redis connection: per-key coalescing of hits, and the few
//! other commands the API sends (GET, SET, TTL, ...), each answered whole. Pure state, no I/O.
//!
//! Requests register a [`KeyedTicket`] slot and an [`Op`]; [`Keyed::encode_waiting`] turns
//! everything waiting into commands appended to the connection's one write: the hits of a batch
//! are grouped by key, and each key present gets one `INCRBY key n`, placed where the key's first
//! hit arrived; every other op is one command in its place. With a TTL, `EXPIRE key ttl` follows
//! the `INCRBY` only when this connection has not refreshed the key within a fraction of the TTL
//! ([`refresh`]); a key the `INCRBY` created (its reply equals its increment) gets its `EXPIRE` in
//! the next write whatever the table says, and so does every key whose `INCRBY` or `EXPIRE` was
//! written but not answered when a connection ended. The reply `v` to `INCRBY key n` covers
//! `v-n+1 ..= v`, handed out in the order the hits arrived, so the values of one key are exactly
//! 1..N across shards and hosts, as the seed counter's are. [`Keyed::complete`] takes the replies in the order written;
//! [`Keyed::fail_all`] answers everything waiting or written when the connection ends.
//!
//! It must not know HTTP, names or JSON (`crate::api` does), nor the seed counter's queue
//! (`queue` owns that and hands this module the replies that are its own).

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use smallvec::{SmallVec, smallvec};

use super::errors::{ErrorKind, error_kind};
use super::queue::ticket::Failure;
use super::resp::{self, Reply};

mod op;
mod refresh;

pub use op::{Answered, KeyedTicket, Op};
use refresh::Refreshed;
pub use refresh::{MAX_REFRESH_INTERVAL, refresh_interval};

/// A hit (or `/update`) that must check or announce, in one step on the server: adds ARGV[1];
/// with ARGV[3] = `1` only to a counter that exists (`--api-mode closed`, `/update`: a DEL
/// between a check and the increment cannot recreate it); refreshes the TTL (ARGV[2], 0 for
/// none), with ARGV[5] = `1` only when the add leaves the counter at ARGV[1] (it created it, or
/// it was 0: the key's refresh is not due, but a new key must never be left without a TTL);
/// publishes the new value on the channel ARGV[4] when it is not empty (`/stream`). Answers the
/// new value, or a null when the counter is missing. `/update` passes four arguments: ARGV[5]
/// is then nil, and the TTL is always refreshed.
pub const ADD_SCRIPT: &[u8] = b"if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return false end \
local v = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if ARGV[2] ~= '0' and (ARGV[5] ~= '1' or v == tonumber(ARGV[1])) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end \
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], v) end \
return v";

/// `/set` and `/reset`: sets an existing counter to ARGV[1], refreshes the TTL (ARGV[2]) and
/// publishes on ARGV[3] when not empty; answers the value, or a null when the counter is missing.
pub const SET_SCRIPT: &[u8] = b"if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
redis.call('SET', KEYS[1], ARGV[1]) \
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end \
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[1]) end \
return tonumber(ARGV[1])";

/// Appends a command given as owned arguments.
fn encode_args(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    resp::encode_command(out, &args);
}

/// The requests one written command answers, in arrival order: most often one (a hit on a key
/// no other request of the write shares, or a command), so it needs no heap allocation then.
type Members = SmallVec<[(KeyedTicket, usize); 2]>;

/// What a written hit command leaves to do about its key's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Nothing: no TTL, or a script that sets it on the server in the same step.
    Settled,
    /// An `EXPIRE` (ttl) follows the `INCRBY` in the same write.
    Pipelined(u64),
    /// No `EXPIRE` was written (the key's refresh is not due): if the reply shows that the
    /// `INCRBY` created the key, one (ttl) is written next.
    IfCreated(u64),
}

/// One written command awaiting its reply, with the op it was written for (sent again after a
/// Cluster redirect).
#[derive(Debug)]
enum Sent {
    /// `INCRBY` (or the script) for these hits, in arrival order; `op` is one of them.
    Hits(Members, Op, Expiry),
    /// `EXPIRE key ttl`, after a key's `INCRBY` or on its own: its reply is not anyone's answer,
    /// but if it never comes it is written again.
    Expire(Rc<[u8]>, u64),
    /// `ASKING`: its reply is not anyone's answer.
    Ignored,
    /// `WAIT n ms` of [`Keyed::wait`]: its reply releases the held answers.
    Wait,
    /// A command whose reply is this request's answer.
    Command(KeyedTicket, usize, Op),
}

/// What a reply to one of the API's commands meant for the connection.
#[derive(Debug)]
pub enum KeyedCompleted<'a> {
    /// With [`Keyed::follow_redirects`], a Cluster node answered `-MOVED` or `-ASK` (the message):
    /// these ops ran nowhere and are handed back, each as [`Op::Redirected`], to be sent where it
    /// says.
    Redirected(&'a [u8], Vec<(KeyedTicket, usize, Op)>),
    /// Answered (an ordinary error reply included: it is that request's answer).
    Served,
    /// The node takes no writes (`-READONLY`, `-LOADING`, `-MASTERDOWN`): the connection must be
    /// rebuilt, as for the seed counter.
    NotPrimary(ErrorKind, &'a [u8]),
    /// [`Keyed::wait`]'s `WAIT` found fewer replicas than asked (or was refused): the held answers
    /// were 503s, and the node may no longer be the primary, so the connection should be rebuilt.
    NotDurable,
}

/// The API's requests waiting and written, in order.
#[derive(Debug, Default)]
pub struct Keyed {
    /// Hand redirected ops back ([`KeyedCompleted::Redirected`]) rather than answer them 503:
    /// set by the Cluster router, which sends them on.
    pub follow_redirects: bool,
    /// `--wait-replicas`: answers (not failures) are held until [`Keyed::release`], when the
    /// write's `WAIT` has answered; set by the queue that writes the `WAIT`.
    pub hold: bool,
    /// Answers held for the `WAIT` reply.
    held: Vec<(KeyedTicket, usize, Answered)>,
    /// `--wait-replicas` on a connection of the API's own (the Cluster router's): each write ends
    /// with `WAIT replicas ms`, written and read here, and answers are held until it answers.
    /// `None` on the shard's main connection, whose queue writes the one `WAIT`.
    pub wait: Option<(u32, u64)>,
    waiting: Vec<(KeyedTicket, usize, Op)>,
    sent: VecDeque<Sent>,
    /// When this connection last set each key's TTL (bounded; see [`refresh`]).
    refreshed: Refreshed,
    /// `EXPIRE`s (key, ttl) written first in the next write: keys a hit created, and keys whose
    /// `INCRBY` or `EXPIRE` had no reply when a connection ended. Kept across [`Keyed::fail_all`]
    /// (the next connection writes them); a Cluster node's are handed on with
    /// [`Keyed::take_follow_ups`].
    follow_ups: Vec<(Rc<[u8]>, u64)>,
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
        !self.waiting.is_empty() || !self.follow_ups.is_empty()
    }

    /// Whether an `EXPIRE` is owed (not yet written) or written and unanswered: a stopping shard
    /// waits for these ([`crate::redis::client::Redis::settle`]).
    pub fn owes_expires(&self) -> bool {
        !self.follow_ups.is_empty() || self.sent.iter().any(|s| matches!(s, Sent::Expire(..)))
    }

    /// The `EXPIRE`s not yet written, taken away (a Cluster node's connection ended: the router
    /// sends them to the key's owner).
    pub fn take_follow_ups(&mut self) -> Vec<(Rc<[u8]>, u64)> {
        std::mem::take(&mut self.follow_ups)
    }

    /// Whether anything written waits for its reply.
    pub fn has_sent(&self) -> bool {
        !self.sent.is_empty()
    }

    /// Requests waiting to be written.
    pub fn waiting_requests(&self) -> u64 {
        self.waiting.len() as u64
    }

    /// [`Keyed::encode_waiting_at`] now.
    pub fn encode_waiting(&mut self, out: &mut Vec<u8>) -> usize {
        self.encode_waiting_at(out, Instant::now())
    }

    /// Appends the commands for everything waiting to `out` and returns how many commands that
    /// is (each takes one place in the connection's reply order); `now` dates TTL refreshes.
    pub fn encode_waiting_at(&mut self, out: &mut Vec<u8>, now: Instant) -> usize {
        let mut commands = 0;
        for (key, ttl) in std::mem::take(&mut self.follow_ups) {
            commands += self.encode_expire(out, key, ttl);
        }
        let waiting = std::mem::take(&mut self.waiting);
        // Pass 1: the hits of each key, in arrival order, and where the key first appears.
        let mut groups: Vec<Members> = Vec::new();
        // Sized for the write up front: growing it rehashed every key seen so far (callgrind).
        let mut group_of: HashMap<Rc<[u8]>, usize> = HashMap::with_capacity(waiting.len());
        let mut first_of: Vec<Option<usize>> = Vec::with_capacity(waiting.len());
        for (ticket, index, op) in &waiting {
            match op {
                Op::Hit { key, .. } => {
                    let next = groups.len();
                    let g = *group_of.entry(key.clone()).or_insert(next);
                    if g == next {
                        groups.push(Members::new());
                        first_of.push(Some(g));
                    } else {
                        first_of.push(None);
                    }
                    groups[g].push((ticket.clone(), *index));
                }
                Op::Read { .. } | Op::Command(_) | Op::Redirected { .. } => first_of.push(None),
            }
        }
        // Pass 2: one command per key at its first hit, every other op in its place.
        let mut groups: Vec<Option<Members>> = groups.into_iter().map(Some).collect();
        for ((ticket, index, op), first) in waiting.into_iter().zip(first_of) {
            match op {
                hit @ Op::Hit { .. } => {
                    let Some(members) = first.and_then(|g| groups[g].take()) else { continue };
                    commands += self.encode_hit(out, members, hit, None, now);
                }
                Op::Read { key, ttl } => {
                    resp::encode_command(out, &[b"GET", &key]);
                    let due = ttl.filter(|&ttl| self.refreshed.due(&key, ttl, now));
                    self.sent.push_back(Sent::Command(ticket, index, Op::Read { key: key.clone(), ttl }));
                    commands += 1 + due.map_or(0, |ttl| self.encode_expire(out, key, ttl));
                }
                Op::Command(args) => {
                    encode_args(out, &args);
                    self.sent.push_back(Sent::Command(ticket, index, Op::Command(args)));
                    commands += 1;
                }
                Op::Redirected { op, asking } => {
                    if asking {
                        resp::encode_command(out, &[b"ASKING"]);
                        self.sent.push_back(Sent::Ignored);
                        commands += 1;
                    }
                    let again = Op::Redirected { op: op.clone(), asking };
                    match *op {
                        hit @ Op::Hit { .. } => {
                            let n = self.encode_hit(out, smallvec![(ticket, index)], hit, Some(asking), now);
                            // Remembered as redirected: a second redirect is answered, not followed.
                            if let Some(Sent::Hits(_, op, _)) =
                                self.sent.iter_mut().rev().find(|s| matches!(s, Sent::Hits(..)))
                            {
                                *op = again;
                            }
                            commands += n;
                        }
                        // A read's `EXPIRE`, if it was due, was redirected on its own.
                        Op::Read { key, .. } => {
                            resp::encode_command(out, &[b"GET", &key]);
                            self.sent.push_back(Sent::Command(ticket, index, again));
                            commands += 1;
                        }
                        Op::Command(args) => {
                            encode_args(out, &args);
                            self.sent.push_back(Sent::Command(ticket, index, again));
                            commands += 1;
                        }
                        Op::Redirected { .. } => {
                            self.pending -= 1;
                            ticket.set(index, Answered::Failed(Failure::NotPrimary));
                        }
                    }
                }
            }
        }
        if let (Some((n, ms)), true) = (self.wait, commands > 0) {
            let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
            resp::encode_command(out, &[b"WAIT", a.format(n).as_bytes(), b.format(ms).as_bytes()]);
            self.sent.push_back(Sent::Wait);
            commands += 1;
        }
        commands
    }

    /// Encodes one key's hits (`members`, in arrival order) as one `INCRBY` (+ `EXPIRE` when the
    /// key's refresh is due) or one script; `asking` forces the script, so that the TTL is set in
    /// the one command `ASKING` covers. A redirected hit (`redirected`) always refreshes: the
    /// refresh its first node recorded ran nowhere. Returns the commands written.
    fn encode_hit(
        &mut self,
        out: &mut Vec<u8>,
        members: Members,
        hit: Op,
        redirected: Option<bool>,
        now: Instant,
    ) -> usize {
        let Op::Hit { key, ttl, existing_only, publish } = &hit else { return 0 };
        let asking = redirected == Some(true);
        let due = match ttl {
            Some(ttl) => self.refreshed.due(key, *ttl, now) || redirected.is_some(),
            None => false,
        };
        let (mut n, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        let n = n.format(members.len()).as_bytes();
        let ttl_text = t.format(ttl.unwrap_or(0)).as_bytes();
        let scripted = *existing_only || publish.is_some() || asking;
        let expiry = match (ttl, scripted, due) {
            (None, ..) | (Some(_), true, _) => Expiry::Settled,
            (Some(ttl), false, true) => Expiry::Pipelined(*ttl),
            (Some(ttl), false, false) => Expiry::IfCreated(*ttl),
        };
        if scripted {
            let existing: &[u8] = if *existing_only { b"1" } else { b"0" };
            let channel = publish.as_deref().unwrap_or_default();
            // Not due: the script sets the TTL only on a counter this add created.
            let if_created: &[u8] = if ttl.is_some() && !due { b"1" } else { b"0" };
            resp::encode_command(out, &[b"EVAL", ADD_SCRIPT, b"1", key, n, ttl_text, existing, channel, if_created]);
        } else {
            resp::encode_command(out, &[b"INCRBY", key, n]);
        }
        let key = key.clone();
        self.sent.push_back(Sent::Hits(members, hit, expiry));
        match expiry {
            Expiry::Pipelined(ttl) => 1 + self.encode_expire(out, key, ttl),
            Expiry::Settled | Expiry::IfCreated(_) => 1,
        }
    }

    /// Writes `EXPIRE key ttl`, its reply ignored.
    fn encode_expire(&mut self, out: &mut Vec<u8>, key: Rc<[u8]>, ttl: u64) -> usize {
        let mut t = itoa::Buffer::new();
        resp::encode_command(out, &[b"EXPIRE", &key, t.format(ttl).as_bytes()]);
        self.sent.push_back(Sent::Expire(key, ttl));
        1
    }

    /// Hands the oldest written command's reply to its requests. `None` if nothing of the API's
    /// was written (the caller's reply order is then out of step).
    pub fn complete<'a>(&mut self, reply: Reply<'a>) -> Option<KeyedCompleted<'a>> {
        let sent = self.sent.pop_front()?;
        if matches!(sent, Sent::Ignored) {
            return Some(KeyedCompleted::Served);
        }
        if let Sent::Expire(key, ttl) = sent {
            return Some(self.expired(key, ttl, reply));
        }
        if matches!(sent, Sent::Wait) {
            let wanted = self.wait.map_or(0, |(n, _)| i64::from(n));
            let durable = matches!(reply, Reply::Integer(acked) if acked >= wanted);
            self.release(durable);
            return Some(if durable { KeyedCompleted::Served } else { KeyedCompleted::NotDurable });
        }
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
            if kind == ErrorKind::Redirect && self.follow_redirects {
                // Nothing ran: the ops go back to the router, to be sent where the node says
                // (once; an op redirected a second time is answered 503).
                return Some(KeyedCompleted::Redirected(message, self.redirected(sent)));
            }
            if kind == ErrorKind::Redirect {
                // A cluster node that does not own this key's slot, on a connection that does not
                // follow redirects: nothing ran, so 503, and the connection stays.
                self.answer(sent, |_| Answered::Failed(Failure::NotPrimary));
                return Some(KeyedCompleted::Served);
            }
        }
        match (&sent, reply) {
            (Sent::Hits(members, op, expiry), Reply::Integer(v)) => {
                let first = v.checked_sub(members.len() as i64 - 1);
                // The reply equals the increment: this INCRBY created the key (or found it at 0),
                // without a TTL, and no EXPIRE followed it; the next write gives it one.
                if let (Expiry::IfCreated(ttl), Some(1)) = (expiry, first) {
                    self.follow_ups.push((op.key().into(), *ttl));
                }
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

    /// An `EXPIRE`'s reply: nobody's answer, but one that did not run is sent again: to the
    /// node named after a redirect (handed back as a command nobody waits for), and on the next
    /// connection after `-READONLY` and the like. Any other error (a busy Redis) is not sent again
    /// at once, which could loop, but the key's refresh is forgotten, so its next hit sends one.
    fn expired<'a>(&mut self, key: Rc<[u8]>, ttl: u64, reply: Reply<'a>) -> KeyedCompleted<'a> {
        let Reply::Error(message) = reply else { return KeyedCompleted::Served };
        self.refreshed.forget_key(&key);
        match error_kind(message) {
            ErrorKind::Redirect if self.follow_redirects => {
                KeyedCompleted::Redirected(message, vec![(KeyedTicket::default(), 0, Op::expire(&key, ttl))])
            }
            kind @ ErrorKind::NotPrimary => {
                self.follow_ups.push((key, ttl));
                KeyedCompleted::NotPrimary(kind, message)
            }
            _ => KeyedCompleted::Served,
        }
    }

    /// The ops a redirected command carried, to be sent again; those already redirected once are
    /// answered 503 instead.
    fn redirected(&mut self, sent: Sent) -> Vec<(KeyedTicket, usize, Op)> {
        let (members, op) = match sent {
            Sent::Hits(members, op, _) => (members, op),
            Sent::Command(ticket, index, op) => (smallvec![(ticket, index)], op),
            Sent::Expire(..) | Sent::Ignored | Sent::Wait => return Vec::new(),
        };
        self.pending -= members.len() as u64;
        if matches!(op, Op::Redirected { .. }) {
            members.into_iter().for_each(|(t, i)| t.set(i, Answered::Failed(Failure::NotPrimary)));
            return Vec::new();
        }
        members.into_iter().map(|(t, i)| (t, i, op.clone())).collect()
    }

    /// Gives each request `sent` covers its answer (`answer(i)` for the i-th).
    fn answer(&mut self, sent: Sent, answer: impl Fn(usize) -> Answered) {
        let members = match sent {
            Sent::Hits(members, ..) => members,
            Sent::Expire(..) | Sent::Ignored | Sent::Wait => return,
            Sent::Command(ticket, index, _) => smallvec![(ticket, index)],
        };
        for (i, (ticket, index)) in members.into_iter().enumerate() {
            let a = answer(i);
            // A failure is final: there is nothing to make durable.
            if self.hold && !matches!(a, Answered::Failed(_) | Answered::Error(_)) {
                self.held.push((ticket, index, a));
            } else {
                self.pending -= 1;
                ticket.set(index, a);
            }
        }
    }

    /// The write's `WAIT` answered: the held answers go out if enough replicas acknowledged
    /// (`durable`), else each is a [`Failure::NotDurable`].
    pub fn release(&mut self, durable: bool) {
        for (ticket, index, a) in self.held.drain(..) {
            self.pending -= 1;
            ticket.set(index, if durable { a } else { Answered::Failed(Failure::NotDurable) });
        }
    }

    /// Answers everything waiting and written with `failure`; returns how many requests. A
    /// written `INCRBY` may have created its key, and a written `EXPIRE` may not have run: each
    /// such key gets an `EXPIRE` in the next connection's first write, and every recorded
    /// refresh is forgotten (a failover may have lost it).
    pub fn fail_all(&mut self, failure: Failure) -> u64 {
        let failed = self.pending;
        for (ticket, index, _) in self.waiting.drain(..) {
            ticket.set(index, Answered::Failed(failure));
        }
        // They ran, but whether enough replicas have them is unknown.
        for (ticket, index, _) in self.held.drain(..) {
            ticket.set(index, Answered::Failed(failure));
        }
        for sent in std::mem::take(&mut self.sent) {
            match sent {
                Sent::Hits(members, op, expiry) => {
                    members.into_iter().for_each(|(t, i)| t.set(i, Answered::Failed(failure)));
                    // A pipelined EXPIRE is its own entry, below.
                    if let Expiry::IfCreated(ttl) = expiry {
                        self.follow_ups.push((op.key().into(), ttl));
                    }
                }
                Sent::Expire(key, ttl) => self.follow_ups.push((key, ttl)),
                Sent::Ignored | Sent::Wait => {}
                Sent::Command(t, i, _) => t.set(i, Answered::Failed(failure)),
            }
        }
        self.refreshed.forget();
        self.pending = 0;
        failed
    }
}

#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod tests;
