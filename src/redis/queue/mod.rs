//! The coalescing arithmetic of one shard's Redis connection: which requests wait, what is
//! written for them, and how each reply is handed out. Pure state, no I/O and no executor, so
//! every rule here is unit-tested without a socket.
//!
//! Requests register a [`Ticket`] and a count; [`Queue::encode_waiting`] turns everything waiting
//! into one `INCRBY key k` (or k `INCR`s with coalescing off), optionally followed by one
//! `WAIT n timeout`, and moves it to the written FIFO in the same step; [`Queue::complete`] takes
//! replies in order: the reply v to `INCRBY k` covers v-k+1 ..= v, handed out in registration
//! order. With WAIT the values are held until the WAIT reply says enough replicas have them.
//! [`Queue::fail_all`] answers everything queued, written or held when a connection ends (never a
//! replay: a command already written may have run).
//!
//! It must not know about sockets, HTTP or logging: the connection task owns those and decides,
//! from what [`Queue::complete`] returns, whether the connection stays.

mod batching;
mod redirected;
pub(crate) mod ticket;

use std::collections::VecDeque;
use std::time::Instant;

pub use batching::{Batching, Completed};
pub use redirected::AskId;
use redirected::Redirected;
pub use ticket::{Failure, Outcome, Ticket};

use super::cluster::ask::Asked;
use super::errors::{self, ErrorKind};
use super::keyed::{Keyed, KeyedCompleted};
use super::resp::{self, ProtocolError, Reply};

/// One written command awaiting its reply.
#[derive(Debug, Clone, Copy)]
enum Sent {
    /// `INCR`/`INCRBY` covering `total` requests of the next `tickets` members.
    Incr { total: u64, tickets: usize },
    /// `WAIT`, releasing everything held.
    Wait,
    /// One of the counting API's commands: its reply is [`Keyed`]'s to hand out.
    Keyed,
}

/// Requests waiting, written and held, in order.
#[derive(Debug, Default)]
pub struct Queue {
    /// Registered, not yet written: (ticket, number of requests). Drained by the writer.
    waiting: VecDeque<(Ticket, u64)>,
    /// Written commands, oldest first, with when they were written.
    sent: VecDeque<(Sent, Instant)>,
    /// The tickets of the written INCRs, flattened in the same order: (ticket, number of requests).
    members: VecDeque<(Ticket, u64)>,
    /// Answered INCRs whose values wait for the WAIT reply: (ticket, requests, outcome of the first).
    held: Vec<(Ticket, u64, Outcome)>,
    /// Requests whose batch a cluster node redirected: not run anywhere yet (see
    /// [`Completed::Redirected`]), waiting or out on an `-ASK` connection.
    redirected: Redirected,
    /// Requests in `waiting`, `members`, `held` and `redirected`: the overload bound counts these.
    pending: u64,
    /// The counting API's requests (`crate::api`): per-key hits and whole commands, written in
    /// the same write as the seed counter's batch.
    pub keyed: Keyed,
}

impl Queue {
    /// Adds `n` requests for `ticket`, unless that would exceed `max_pending`.
    pub fn register(&mut self, ticket: &Ticket, n: u64, max_pending: u64) -> Result<(), Failure> {
        if self.pending + n > max_pending {
            return Err(Failure::Overloaded);
        }
        self.pending += n;
        self.waiting.push_back((ticket.clone(), n));
        Ok(())
    }

    /// Answers `n` requests for `ticket` with `failure` at once, without queueing them (the
    /// connection is down, or [`Queue::register`] refused them).
    pub fn refuse(&self, ticket: &Ticket, n: u64, failure: Failure) {
        ticket.push(Outcome::Failed(failure), n);
    }

    /// Whether anything waits to be written.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty() || self.keyed.has_waiting()
    }

    /// Requests registered and not yet written (what the next write carries; the metrics'
    /// coalescing factor).
    pub fn waiting_requests(&self) -> u64 {
        self.waiting.iter().map(|(_, n)| n).sum::<u64>() + self.keyed.waiting_requests()
    }

    /// When the oldest written command still unanswered was written.
    pub fn oldest_sent(&self) -> Option<Instant> {
        self.sent.front().map(|(_, at)| *at)
    }

    /// Moves everything waiting into the written FIFO and appends its commands to `out`, in one
    /// step with no await, so the order of bytes on the wire is the order of the FIFO.
    pub fn encode_waiting(&mut self, batching: &Batching, out: &mut Vec<u8>, now: Instant) {
        // The API's answers wait for the same WAIT as the seed counter's values.
        self.keyed.hold = batching.wait.is_some();
        let keyed = self.keyed.encode_waiting_at(out, now);
        self.sent.extend(std::iter::repeat_n((Sent::Keyed, now), keyed));
        if self.waiting.is_empty() {
            if keyed > 0 && batching.wait.is_some() {
                self.sent.push_back((Sent::Wait, now));
                out.extend_from_slice(&batching.wait_command);
            }
            return;
        }
        if batching.coalesce {
            let total: u64 = self.waiting.iter().map(|(_, n)| n).sum();
            let tickets = self.waiting.len();
            self.sent.push_back((Sent::Incr { total, tickets }, now));
            self.members.extend(self.waiting.drain(..));
            if total == 1 {
                out.extend_from_slice(&batching.incr);
            } else {
                let mut by = itoa::Buffer::new();
                resp::encode_command(out, &[b"INCRBY", batching.key.as_bytes(), by.format(total).as_bytes()]);
            }
        } else {
            for (ticket, n) in self.waiting.drain(..) {
                for _ in 0..n {
                    self.sent.push_back((Sent::Incr { total: 1, tickets: 1 }, now));
                    self.members.push_back((ticket.clone(), 1));
                    out.extend_from_slice(&batching.incr);
                }
            }
        }
        // One WAIT per write, after all of its increments: it covers every write before it.
        if batching.wait.is_some() {
            self.sent.push_back((Sent::Wait, now));
            out.extend_from_slice(&batching.wait_command);
        }
    }

    /// Hands the oldest written command's reply to the requests it covers. An `Err` means the
    /// reply stream is out of step: the connection must be dropped (and [`Queue::fail_all`]
    /// answers the rest, the command this reply belonged to included).
    pub fn complete<'a>(&mut self, batching: &Batching, reply: Reply<'a>) -> Result<Completed<'a>, ProtocolError> {
        let Some(&(sent, _)) = self.sent.front() else {
            return Err(ProtocolError("a reply arrived with no command waiting for it".into()));
        };
        match sent {
            Sent::Incr { total, tickets } => {
                let (outcome, completed) = match reply {
                    // The reply v to INCRBY k covers v-k+1 ..= v. A v so low that the range would
                    // leave i64 is no reply to our INCRBY: the stream is out of step.
                    Reply::Integer(v) => match v.checked_sub(total as i64 - 1) {
                        Some(first) => (Outcome::Value(first), Completed::Served),
                        None => return Err(ProtocolError(format!("INCRBY {total} answered with {v}"))),
                    },
                    // A cluster node checks the key's slot before it runs anything: -MOVED and
                    // -ASK mean this batch ran nowhere, so it may be sent again (once) where the
                    // node says. Nothing else that fails a batch is ever resent.
                    Reply::Error(message)
                        if batching.follow_redirects && errors::error_kind(message) == ErrorKind::Redirect =>
                    {
                        self.sent.pop_front();
                        self.redirected.list.extend(self.members.drain(..tickets));
                        return Ok(Completed::Redirected(message));
                    }
                    Reply::Error(message) => match errors::error_kind(message) {
                        ErrorKind::Other | ErrorKind::Misconfigured => {
                            (Outcome::Failed(Failure::ErrorReply), Completed::Error(message))
                        }
                        ErrorKind::TryAgain => (Outcome::Failed(Failure::TryAgain), Completed::TryAgain(message)),
                        kind => (Outcome::Failed(Failure::NotPrimary), Completed::NotPrimary(kind, message)),
                    },
                    Reply::Status(_) | Reply::Bulk(_) | Reply::Nil | Reply::Unexpected => {
                        return Err(ProtocolError("expected an integer reply to INCR".into()));
                    }
                };
                self.sent.pop_front();
                let mut next = outcome;
                let hold = batching.wait.is_some() && matches!(outcome, Outcome::Value(_));
                for (ticket, n) in self.members.drain(..tickets) {
                    if hold {
                        self.held.push((ticket, n, next));
                    } else {
                        self.pending -= n;
                        // Waking a glommio task only queues it, so this re-enters nothing.
                        ticket.push(next, n);
                    }
                    if let Outcome::Value(v) = next {
                        // At most the reply plus one, which only the last member computes and
                        // nobody uses: wrapping there (a reply of i64::MAX) is harmless.
                        next = Outcome::Value(v.wrapping_add(n as i64));
                    }
                }
                Ok(completed)
            }
            Sent::Wait => {
                let wanted = batching.wait.map_or(0, |(n, _)| n);
                let (durable, completed) = match reply {
                    Reply::Integer(acked) => (acked >= i64::from(wanted), Completed::Waited { acked, wanted }),
                    Reply::Error(message) => (false, Completed::WaitError(message)),
                    Reply::Status(_) | Reply::Bulk(_) | Reply::Nil | Reply::Unexpected => {
                        return Err(ProtocolError("expected an integer reply to WAIT".into()));
                    }
                };
                self.sent.pop_front();
                for (ticket, n, outcome) in self.held.drain(..) {
                    self.pending -= n;
                    ticket.push(if durable { outcome } else { Outcome::Failed(Failure::NotDurable) }, n);
                }
                self.keyed.release(durable);
                Ok(completed)
            }
            Sent::Keyed => {
                self.sent.pop_front();
                match self.keyed.complete(reply) {
                    Some(KeyedCompleted::Served) => Ok(Completed::Served),
                    Some(KeyedCompleted::NotPrimary(kind, message)) => Ok(Completed::NotPrimary(kind, message)),
                    // Only the Cluster router's queues follow redirects and write their own WAIT;
                    // this one answers redirects, and its WAIT is the queue's.
                    Some(KeyedCompleted::Redirected(..) | KeyedCompleted::NotDurable) => Ok(Completed::Served),
                    None => Err(ProtocolError("a reply arrived with no API command waiting for it".into())),
                }
            }
        }
    }

    /// Whether any written command still waits for its reply.
    pub fn has_sent(&self) -> bool {
        !self.sent.is_empty()
    }

    /// Takes the redirected requests as one batch to send after `-ASK`: its id and how many
    /// requests it carries. They stay counted as pending until [`Queue::settle_asked`].
    pub fn take_redirected(&mut self) -> Option<(AskId, u64)> {
        self.redirected.take()
    }

    /// Hands each request of the `-ASK` batch `id` its outcome, in registration order, as the
    /// pipelined connection would have: the reply v to `INCRBY total` covers v-total+1 ..= v.
    /// Returns how many requests it settled.
    pub fn settle_asked(&mut self, batching: &Batching, id: AskId, asked: &Asked) -> u64 {
        let Some(batch) = self.redirected.finish(id) else { return 0 };
        let total: u64 = batch.iter().map(|(_, n)| n).sum();
        let mut next = match asked {
            Asked::Value { acked, .. } if batching.wait.is_some_and(|(n, _)| acked.unwrap_or(0) < i64::from(n)) => {
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
        for (ticket, n) in batch {
            ticket.push(next, n);
            if let Outcome::Value(v) = next {
                next = Outcome::Value(v.wrapping_add(n as i64));
            }
        }
        self.pending -= total;
        total
    }

    /// Fails the redirected requests not yet taken (a redirection hitcore cannot follow);
    /// returns how many.
    pub fn fail_redirected(&mut self, failure: Failure) -> u64 {
        let mut failed = 0;
        for (ticket, n) in self.redirected.list.drain(..) {
            ticket.push(Outcome::Failed(failure), n);
            failed += n;
        }
        self.pending -= failed;
        failed
    }

    /// Puts the redirected requests back at the head of the waiting list, in their order, to be
    /// written first on the next connection (after `-MOVED`: to the slot's new owner).
    pub fn requeue_redirected(&mut self) {
        while let Some(r) = self.redirected.list.pop_back() {
            self.waiting.push_front(r);
        }
    }

    /// Completes every queued, written and held request with `failure`; returns how many there
    /// were. Held requests ran, but their durability is unknown, so they fail too.
    pub fn fail_all(&mut self, failure: Failure) -> u64 {
        self.sent.clear();
        for (ticket, n) in self.redirected.list.drain(..) {
            ticket.push(Outcome::Failed(failure), n);
        }
        for (ticket, n, _) in self.held.drain(..) {
            ticket.push(Outcome::Failed(failure), n);
        }
        for (ticket, n) in self.members.drain(..).chain(self.waiting.drain(..)) {
            ticket.push(Outcome::Failed(failure), n);
        }
        // Requests out on an -ASK connection are answered by it, and settled when it is done.
        let asking = self.redirected.asking();
        let failed = self.pending - asking + self.keyed.fail_all(failure);
        self.pending = asking;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MAX: u64 = 1000;

    pub(super) fn ticket(q: &mut Queue, n: usize) -> Ticket {
        let t = Ticket::default();
        t.arm(n);
        q.register(&t, n as u64, MAX).unwrap();
        t
    }

    pub(super) fn values(t: &Ticket) -> Vec<Outcome> {
        t.outcomes().to_vec()
    }

    pub(super) fn v(range: std::ops::RangeInclusive<i64>) -> Vec<Outcome> {
        range.map(Outcome::Value).collect()
    }

    pub(super) fn written(q: &mut Queue, b: &Batching) -> Vec<u8> {
        let mut out = Vec::new();
        q.encode_waiting(b, &mut out, Instant::now());
        out
    }

    #[test]
    fn k_waiting_increments_are_one_incrby_and_its_reply_is_shared_in_arrival_order() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let (a, c, d) = (ticket(&mut q, 3), ticket(&mut q, 1), ticket(&mut q, 2));
        assert_eq!(written(&mut q, &b), b"*3\r\n$6\r\nINCRBY\r\n$3\r\nhit\r\n$1\r\n6\r\n");
        assert!(!q.has_waiting());
        assert!(q.oldest_sent().is_some());
        assert!(!a.is_done());
        assert_eq!(q.complete(&b, Reply::Integer(106)), Ok(Completed::Served));
        assert_eq!(values(&a), v(101..=103));
        assert_eq!(values(&c), v(104..=104));
        assert_eq!(values(&d), v(105..=106));
        assert!(a.is_done() && c.is_done() && d.is_done());
        assert_eq!((q.pending, q.oldest_sent()), (0, None));
    }

    #[test]
    fn one_waiting_increment_is_a_plain_incr_and_nothing_waiting_writes_nothing() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        assert!(written(&mut q, &b).is_empty());
        let t = ticket(&mut q, 1);
        assert_eq!(written(&mut q, &b), b"*2\r\n$4\r\nINCR\r\n$3\r\nhit\r\n");
        q.complete(&b, Reply::Integer(1)).unwrap();
        assert_eq!(values(&t), v(1..=1));
    }

    #[test]
    fn batches_written_back_to_back_are_answered_in_order() {
        let b = Batching::new("k", true, None);
        let mut q = Queue::default();
        let first = ticket(&mut q, 2);
        written(&mut q, &b);
        let second = ticket(&mut q, 3);
        let late = ticket(&mut q, 1);
        assert_eq!(written(&mut q, &b), b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n4\r\n");
        // Another client's INCR ran between the two batches: 11 is not ours.
        q.complete(&b, Reply::Integer(10)).unwrap();
        assert!(first.is_done() && !second.is_done());
        q.complete(&b, Reply::Integer(15)).unwrap();
        assert_eq!(values(&first), v(9..=10));
        assert_eq!(values(&second), v(12..=14));
        assert_eq!(values(&late), v(15..=15));
    }

    #[test]
    fn an_error_reply_fails_its_whole_group_and_the_next_group_stays_in_step() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let (a, c) = (ticket(&mut q, 2), ticket(&mut q, 1));
        written(&mut q, &b);
        let d = ticket(&mut q, 1);
        written(&mut q, &b);
        let msg = b"ERR value is not an integer or out of range";
        assert_eq!(q.complete(&b, Reply::Error(msg)), Ok(Completed::Error(msg)));
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::ErrorReply); 2]);
        assert_eq!(values(&c), vec![Outcome::Failed(Failure::ErrorReply)]);
        q.complete(&b, Reply::Integer(42)).unwrap();
        assert_eq!(values(&d), v(42..=42));
        assert_eq!(q.pending, 0);
    }

    #[test]
    fn not_primary_replies_are_classified_for_the_connection_to_drop() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let a = ticket(&mut q, 2);
        written(&mut q, &b);
        let msg = b"READONLY You can't write against a read only replica.";
        assert_eq!(q.complete(&b, Reply::Error(msg)), Ok(Completed::NotPrimary(ErrorKind::NotPrimary, msg)));
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::NotPrimary); 2]);
    }

    #[test]
    fn a_broken_connection_fails_written_and_waiting_requests_and_the_next_one_starts_clean() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let answered = ticket(&mut q, 1);
        written(&mut q, &b);
        let in_flight = ticket(&mut q, 2);
        written(&mut q, &b);
        let queued = ticket(&mut q, 3);
        q.complete(&b, Reply::Integer(7)).unwrap();
        assert_eq!(q.fail_all(Failure::Lost), 5);
        assert_eq!(values(&answered), v(7..=7));
        assert_eq!(values(&in_flight), vec![Outcome::Failed(Failure::Lost); 2]);
        assert_eq!(values(&queued), vec![Outcome::Failed(Failure::Lost); 3]);
        // The next connection's first reply belongs to the next command written, not a lost one.
        let next = ticket(&mut q, 2);
        written(&mut q, &b);
        q.complete(&b, Reply::Integer(20)).unwrap();
        assert_eq!(values(&next), v(19..=20));
        assert!(q.complete(&b, Reply::Integer(21)).is_err(), "a reply with nothing written is out of step");
    }

    #[test]
    fn out_of_step_replies_are_protocol_errors_and_fail_all_still_answers_their_requests() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let a = ticket(&mut q, 3);
        written(&mut q, &b);
        assert!(q.complete(&b, Reply::Status(b"OK")).is_err());
        assert!(q.complete(&b, Reply::Unexpected).is_err());
        assert!(q.complete(&b, Reply::Integer(i64::MIN)).is_err());
        assert!(!a.is_done());
        assert_eq!(q.fail_all(Failure::Lost), 3);
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::Lost); 3]);
    }

    #[test]
    fn no_coalesce_writes_one_incr_per_request_and_hands_out_each_reply() {
        let b = Batching::new("hit", false, None);
        let mut q = Queue::default();
        let (a, c) = (ticket(&mut q, 2), ticket(&mut q, 1));
        assert_eq!(written(&mut q, &b), b"*2\r\n$4\r\nINCR\r\n$3\r\nhit\r\n".repeat(3));
        q.complete(&b, Reply::Integer(5)).unwrap();
        assert!(!a.is_done());
        // Replies need not be consecutive: other clients' INCRs interleave.
        q.complete(&b, Reply::Integer(9)).unwrap();
        q.complete(&b, Reply::Error(b"ERR no")).unwrap();
        assert_eq!(values(&a), v(5..=5).into_iter().chain(v(9..=9)).collect::<Vec<_>>());
        assert_eq!(values(&c), vec![Outcome::Failed(Failure::ErrorReply)]);
    }

    #[test]
    fn the_overload_bound_counts_waiting_written_and_held_requests() {
        let b = Batching::new("hit", true, Some((1, 50)));
        let mut q = Queue::default();
        let t = Ticket::default();
        q.register(&t, 6, 10).unwrap();
        written(&mut q, &b);
        q.complete(&b, Reply::Integer(6)).unwrap();
        assert_eq!(q.register(&t, 5, 10), Err(Failure::Overloaded), "held values still count");
        q.complete(&b, Reply::Integer(1)).unwrap();
        assert_eq!(q.register(&t, 10, 10), Ok(()));
    }

    #[test]
    fn wait_follows_each_write_and_releases_values_only_when_enough_replicas_acked() {
        let b = Batching::new("hit", true, Some((2, 50)));
        let mut q = Queue::default();
        let a = ticket(&mut q, 2);
        let out = written(&mut q, &b);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$3\r\nhit\r\n$1\r\n2\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$2\r\n50\r\n");
        q.complete(&b, Reply::Integer(2)).unwrap();
        assert!(!a.is_done(), "held until WAIT answers");
        assert_eq!(q.complete(&b, Reply::Integer(2)), Ok(Completed::Waited { acked: 2, wanted: 2 }));
        assert_eq!(values(&a), v(1..=2));

        let short = ticket(&mut q, 1);
        written(&mut q, &b);
        q.complete(&b, Reply::Integer(3)).unwrap();
        assert_eq!(q.complete(&b, Reply::Integer(1)), Ok(Completed::Waited { acked: 1, wanted: 2 }));
        assert_eq!(values(&short), vec![Outcome::Failed(Failure::NotDurable)]);

        let refused = ticket(&mut q, 1);
        written(&mut q, &b);
        q.complete(&b, Reply::Integer(4)).unwrap();
        assert_eq!(q.complete(&b, Reply::Error(b"NOPERM")), Ok(Completed::WaitError(b"NOPERM")));
        assert_eq!(values(&refused), vec![Outcome::Failed(Failure::NotDurable)]);
        assert_eq!(q.pending, 0);
    }

    #[test]
    fn wait_with_no_coalesce_is_one_wait_per_write_and_errors_are_not_held() {
        let b = Batching::new("hit", false, Some((1, 5)));
        let mut q = Queue::default();
        let (a, c) = (ticket(&mut q, 1), ticket(&mut q, 1));
        let mut expected = b"*2\r\n$4\r\nINCR\r\n$3\r\nhit\r\n".repeat(2);
        expected.extend_from_slice(b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$1\r\n5\r\n");
        assert_eq!(written(&mut q, &b), expected);
        q.complete(&b, Reply::Error(b"ERR wrong type")).unwrap();
        assert!(a.is_done(), "an error is final; nothing to make durable");
        q.complete(&b, Reply::Integer(8)).unwrap();
        assert!(!c.is_done());
        q.complete(&b, Reply::Integer(1)).unwrap();
        assert_eq!(values(&c), v(8..=8));
    }

    #[test]
    fn a_connection_lost_before_wait_answers_fails_the_held_values() {
        let b = Batching::new("hit", true, Some((1, 50)));
        let mut q = Queue::default();
        let a = ticket(&mut q, 2);
        written(&mut q, &b);
        q.complete(&b, Reply::Integer(2)).unwrap();
        assert_eq!(q.fail_all(Failure::Lost), 2);
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::Lost); 2]);
    }
}
