//! The requests of batches a Cluster node redirected (`-MOVED`, `-ASK`): they ran nowhere, so
//! they may be sent once more, where the node said. After `-MOVED` they wait here until the next
//! connection writes them first; after `-ASK` they are out on a connection of their own, under an
//! [`AskId`], until what became of that batch comes back.
//!
//! It owns those lists only; the queue moves requests in and out and completes their tickets.

use std::collections::VecDeque;

use super::ticket::Ticket;

/// A batch out on an `-ASK` connection, to settle when its answer comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskId(u64);

/// Redirected requests, by where they stand.
#[derive(Debug, Default)]
pub(super) struct Redirected {
    /// Redirected and not yet taken: (ticket, number of requests), in registration order.
    pub(super) list: VecDeque<(Ticket, u64)>,
    /// Taken for an `-ASK` send: each batch's requests, until settled. They outlive the session
    /// that was redirected, so a broken connection does not fail them.
    asking: Vec<(AskId, Vec<(Ticket, u64)>)>,
    /// The next batch's id.
    next: u64,
}

impl Redirected {
    /// Takes everything redirected as one batch for `-ASK`: its id and how many requests.
    pub(super) fn take(&mut self) -> Option<(AskId, u64)> {
        if self.list.is_empty() {
            return None;
        }
        let id = AskId(self.next);
        self.next += 1;
        let batch: Vec<(Ticket, u64)> = self.list.drain(..).collect();
        let total = batch.iter().map(|(_, n)| n).sum();
        self.asking.push((id, batch));
        Some((id, total))
    }

    /// The requests of the `-ASK` batch `id`, taken (`None` if already settled).
    pub(super) fn finish(&mut self, id: AskId) -> Option<Vec<(Ticket, u64)>> {
        let at = self.asking.iter().position(|(i, _)| *i == id)?;
        Some(self.asking.swap_remove(at).1)
    }

    /// Requests out on `-ASK` connections.
    pub(super) fn asking(&self) -> u64 {
        self.asking.iter().flat_map(|(_, batch)| batch.iter().map(|(_, n)| n)).sum()
    }
}

/// How the queue treats redirected requests (with the queue's own test helpers).
#[cfg(test)]
mod tests {
    use super::super::tests::{ticket, v, values, written};
    use super::super::*;

    fn cluster() -> Batching {
        let mut b = Batching::new("hit", true, None);
        b.follow_redirects = true;
        b
    }

    #[test]
    fn a_redirected_batch_is_handed_back_not_failed_and_goes_first_on_the_next_connection() {
        let b = cluster();
        let mut q = Queue::default();
        let (a, c) = (ticket(&mut q, 2), ticket(&mut q, 1));
        written(&mut q, &b);
        let msg = &b"MOVED 15723 127.0.0.1:7001"[..];
        assert_eq!(q.complete(&b, Reply::Error(msg)), Ok(Completed::Redirected(msg)));
        assert!(!a.is_done() && !c.is_done() && !q.has_sent());
        let later = ticket(&mut q, 1);
        q.requeue_redirected();
        // The redirected requests are written first, in their order, before the later one.
        assert_eq!(written(&mut q, &b), b"*3\r\n$6\r\nINCRBY\r\n$3\r\nhit\r\n$1\r\n4\r\n");
        q.complete(&b, Reply::Integer(40)).unwrap();
        assert_eq!((values(&a), values(&c), values(&later)), (v(37..=38), v(39..=39), v(40..=40)));
        assert_eq!(q.pending, 0);
    }

    #[test]
    fn without_follow_redirects_a_redirect_fails_the_batch() {
        let b = Batching::new("hit", true, None);
        let mut q = Queue::default();
        let a = ticket(&mut q, 1);
        written(&mut q, &b);
        let msg = &b"ASK 1 h:1"[..];
        assert_eq!(q.complete(&b, Reply::Error(msg)), Ok(Completed::NotPrimary(ErrorKind::Redirect, msg)));
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::NotPrimary)]);
    }

    #[test]
    fn asked_requests_stay_counted_across_a_broken_connection_until_settled() {
        let b = cluster();
        let mut q = Queue::default();
        let a = ticket(&mut q, 2);
        written(&mut q, &b);
        q.complete(&b, Reply::Error(b"ASK 1 h:1")).unwrap();
        let (id, total) = q.take_redirected().unwrap();
        assert_eq!(total, 2);
        let c = ticket(&mut q, 3);
        written(&mut q, &b);
        // The connection breaks: the written batch fails, the asked one is still out.
        assert_eq!(q.fail_all(Failure::Lost), 3);
        assert_eq!(values(&c), vec![Outcome::Failed(Failure::Lost); 3]);
        assert!(!a.is_done());
        assert_eq!(q.pending, 2);
        assert_eq!(q.settle_asked(&b, id, &Asked::Value { last: 14, acked: None }), 2);
        assert_eq!(values(&a), v(13..=14));
        assert_eq!(q.pending, 0);
        assert_eq!(q.settle_asked(&b, id, &Asked::Lost("x".into())), 0, "settled once");
        // A redirected batch not yet taken fails with the rest.
        let d = ticket(&mut q, 1);
        written(&mut q, &b);
        q.complete(&b, Reply::Error(b"MOVED 1 h:1")).unwrap();
        assert_eq!(q.fail_all(Failure::Lost), 1);
        assert_eq!(values(&d), vec![Outcome::Failed(Failure::Lost)]);
    }

    fn asked(q: &mut Queue, b: &Batching, counts: &[usize], asked: Asked) -> Vec<Ticket> {
        let tickets: Vec<Ticket> = counts.iter().map(|&n| ticket(q, n)).collect();
        written(q, b);
        q.complete(b, Reply::Error(b"ASK 1 h:1")).unwrap();
        if b.wait.is_some() {
            q.complete(b, Reply::Integer(1)).unwrap();
        }
        let (id, _) = q.take_redirected().unwrap();
        q.settle_asked(b, id, &asked);
        assert_eq!(q.pending, 0);
        tickets
    }

    #[test]
    fn an_asked_batch_is_handed_out_like_a_pipelined_one() {
        let (b, mut q) = (cluster(), Queue::default());
        let t = asked(&mut q, &b, &[2, 3], Asked::Value { last: 14, acked: None });
        assert_eq!((values(&t[0]), values(&t[1])), (v(10..=11), v(12..=14)));
    }

    #[test]
    fn an_asked_batch_without_enough_replicas_or_refused_gets_no_value() {
        let mut b = Batching::new("hit", true, Some((1, 50)));
        b.follow_redirects = true;
        let mut q = Queue::default();
        let t = asked(&mut q, &b, &[1], Asked::Value { last: 7, acked: Some(0) });
        assert_eq!(values(&t[0]), vec![Outcome::Failed(Failure::NotDurable)]);
        let t = asked(&mut q, &b, &[1], Asked::Value { last: 7, acked: Some(1) });
        assert_eq!(values(&t[0]), v(7..=7));
        let b = cluster();
        let t = asked(&mut q, &b, &[2], Asked::Refused("TRYAGAIN".into()));
        assert_eq!(values(&t[0]), vec![Outcome::Failed(Failure::NotPrimary); 2]);
        let t = asked(&mut q, &b, &[1], Asked::Lost("reset".into()));
        assert_eq!(values(&t[0]), vec![Outcome::Failed(Failure::Lost)]);
        let t = asked(&mut q, &b, &[1], Asked::NotSent("WRONGPASS".into()));
        assert_eq!(values(&t[0]), vec![Outcome::Failed(Failure::Unavailable)]);
    }

    #[test]
    fn an_unfollowable_redirect_fails_only_the_redirected_requests() {
        let (b, mut q) = (cluster(), Queue::default());
        let a = ticket(&mut q, 2);
        written(&mut q, &b);
        q.complete(&b, Reply::Error(b"MOVED nonsense")).unwrap();
        let later = ticket(&mut q, 1);
        assert_eq!(q.fail_redirected(Failure::NotPrimary), 2);
        assert_eq!(values(&a), vec![Outcome::Failed(Failure::NotPrimary); 2]);
        assert!(!later.is_done());
        assert_eq!(q.pending, 1);
    }
}
