//! What the API asks of a shard's Redis connection and how it hears back: an [`Op`] per
//! request command, and the [`KeyedTicket`] whose slots receive each [`Answered`] by position.
//! Plain data and a waker; it must not encode or decode RESP (`super` does) nor know HTTP.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::redis::queue::ticket::Failure;

/// What one request asks of Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// One hit on a counter key: coalesced with the batch's other hits on the same key.
    Hit {
        /// The Redis key (`K:{namespace}:{key}`).
        key: Rc<[u8]>,
        /// The TTL in seconds (`--counter-ttl`; `None`: no expiry, no `EXPIRE`): refreshed once
        /// per [`refresh_interval`] per key per connection, and at once on a key the hit created.
        ttl: Option<u64>,
        /// Only an existing counter counts (`--api-mode closed`): a missing one answers [`Answered::Nil`].
        existing_only: bool,
        /// The channel each new value is published on (`/stream`), if any.
        publish: Option<Rc<[u8]>>,
    },
    /// `GET key`, this request's answer; with a TTL, the key's `EXPIRE` follows when this
    /// connection's refresh of it is due, as for a hit: a counter that is read stays (Abacus
    /// refreshes on reads) at one `EXPIRE` per key per refresh interval, not one per read. The
    /// `EXPIRE`'s reply is nobody's answer.
    Read {
        /// The Redis key (`K:{namespace}:{key}`).
        key: Rc<[u8]>,
        /// The TTL in seconds (`--counter-ttl`; `None`: no `EXPIRE`).
        ttl: Option<u64>,
    },
    /// Any other command, sent as it is, its reply handed back whole.
    Command(Vec<Vec<u8>>),
    /// An op a Cluster node redirected, sent once more to the node it named, alone (a hit is
    /// `INCRBY key 1`), after `ASKING` for an `-ASK`. Redirected again, it is answered 503.
    Redirected {
        /// The op as first sent.
        op: Box<Op>,
        /// `-ASK`: send `ASKING` first.
        asking: bool,
    },
}

impl Op {
    /// The Redis key the op is about, whose slot decides a Cluster node: a hit's key, a plain
    /// command's first argument, an `EVAL`'s first key.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Hit { key, .. } | Op::Read { key, .. } => key,
            Op::Command(args) if args.first().is_some_and(|c| c == b"EVAL") => args.get(3).map_or(&[], Vec::as_slice),
            Op::Command(args) => args.get(1).map_or(&[], Vec::as_slice),
            Op::Redirected { op, .. } => op.key(),
        }
    }

    /// `EXPIRE key ttl` as a plain command: an owed TTL sent on to the node that owns the key
    /// (after a redirect, or when a Cluster node's connection ended), its reply nobody's answer.
    pub fn expire(key: &[u8], ttl: u64) -> Op {
        let mut t = itoa::Buffer::new();
        Op::Command(vec![b"EXPIRE".to_vec(), key.to_vec(), t.format(ttl).as_bytes().to_vec()])
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
    /// Most tickets wait for one or two answers: no heap allocation then.
    answers: RefCell<smallvec::SmallVec<[Option<Answered>; 2]>>,
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
