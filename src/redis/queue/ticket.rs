//! What a request gets back from the Redis connection: a [`Ticket`] (one per HTTP connection,
//! re-armed per batch) through which the queue hands out each request's [`Outcome`].
//!
//! Only the queue completes a ticket (`Ticket::push` is visible to `queue` alone); the HTTP side arms it,
//! waits on it and reads the outcomes. It must not know about Redis commands or sockets.

use std::cell::{Cell, Ref, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Why a request got no value. The HTTP side maps these to statuses: [`Failure::ErrorReply`] is a
/// 500, everything else a 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection is down; nothing was sent.
    Unavailable,
    /// The command was queued or written, and the connection broke before its reply.
    Lost,
    /// Too many requests already waiting on this shard's connection.
    Overloaded,
    /// Redis answered with an error (logged by the reader).
    ErrorReply,
    /// The node refused the write because it is not a writable primary (`-READONLY`, `-LOADING`,
    /// `-MASTERDOWN`, `-MOVED`, `-ASK`): nothing ran, and the connection is rebuilt.
    NotPrimary,
    /// The increment ran, but fewer replicas than `--wait-replicas` acknowledged it in time.
    NotDurable,
    /// The node answered "try again" (`-CLUSTERDOWN`, `-TRYAGAIN`, `-BUSY`, `-NOREPLICAS`,
    /// `-OOM`): nothing ran, and the connection stays (see `errors`).
    TryAgain,
}

/// One request's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The counter value this request produced.
    Value(i64),
    /// No value.
    Failed(Failure),
}

/// A reusable slot through which one connection receives the results of a batch of requests, in
/// request order. One per HTTP connection, re-armed per batch, so a batch allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Rc<TicketState>);

#[derive(Debug, Default)]
struct TicketState {
    /// Results so far, in the order the requests were registered.
    outcomes: RefCell<Vec<Outcome>>,
    /// How many results complete the current batch.
    want: Cell<usize>,
    /// The connection task waiting for the batch.
    waker: RefCell<Option<Waker>>,
}

impl Ticket {
    /// Starts a batch of `n` requests, forgetting the previous batch's results.
    pub(crate) fn arm(&self, n: usize) {
        self.0.outcomes.borrow_mut().clear();
        self.0.want.set(n);
    }

    /// Records `n` results: `first, first+1, ...` for a value, `n` copies of a failure.
    pub(super) fn push(&self, outcome: Outcome, n: u64) {
        let mut outcomes = self.0.outcomes.borrow_mut();
        match outcome {
            Outcome::Value(first) => outcomes.extend((0..n as i64).map(|i| Outcome::Value(first + i))),
            failed => outcomes.extend(std::iter::repeat_n(failed, n as usize)),
        }
        if outcomes.len() >= self.0.want.get() {
            if let Some(w) = self.0.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Whether every request of the batch has its outcome.
    pub fn is_done(&self) -> bool {
        self.0.outcomes.borrow().len() >= self.0.want.get()
    }

    /// Waits until every request of the batch has its outcome.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_done() {
                Poll::Ready(())
            } else {
                *self.0.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The outcomes of the finished batch, in request order.
    pub fn outcomes(&self) -> Ref<'_, [Outcome]> {
        Ref::map(self.0.outcomes.borrow(), |v| v.as_slice())
    }
}
