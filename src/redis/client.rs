//! One shard's Redis connection: pipelined, coalescing, reconnecting.
//!
//! It owns the shard's only Redis connection task. Requests register a [`Ticket`] and a count
//! with [`Redis::incr`]; a session (`session`) writes everything waiting as one write and hands
//! replies to the queue (`queue`'s arithmetic). When a session ends, every request whose command
//! is queued or written gets a failure (never a silent replay: an INCR whose reply was lost may or
//! may not have happened), and the connection is rebuilt through `connect` (which finds the node
//! again) after the backoff that `reconnect`'s state machine gives. A reply that says the node is
//! not a writable primary (`-READONLY`, `-LOADING`, `-MASTERDOWN`) or a WAIT shortfall ends the
//! session the same way: that batch is answered 503, and the node is looked up again.
//!
//! It must not know about HTTP: failures are [`Failure`]s, and the connection decides the status.
//! Everything is shard-local (`Rc`/`RefCell`/`Cell`); no borrow is held across an `.await`.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::cluster::moves::Verdict;
use super::cluster::router::Router;
use super::connect::{Connector, Discovery};
use super::dial::ConnectError;
use super::dial::Dialer;
use super::follow::Follow;
use super::keyed::{Answered, KeyedTicket, Op};
use super::queue::Batching;
pub use super::queue::{Failure, Outcome, Ticket};
use super::reconnect::{Ended, Greeting, Reconnect};
use super::session::{self, SessionEnd};
pub use super::shared::Settings;
use super::shared::Shared;
use super::subscribe::{Subscriber, Subscription};
use crate::metrics::shm::{Meter, Timeout};

/// The shard's handle to its Redis connection, and to the counting API's `/stream` subscriber
/// (which connects on first use).
#[derive(Debug, Clone)]
pub struct Redis(Rc<Shared>, Subscriber, Option<Router>);

impl Redis {
    /// Creates the handle and starts the connection task on the current executor. The shard is
    /// usable at once: until the first connection succeeds, requests fail fast as `Unavailable`.
    pub fn start(settings: Settings) -> Redis {
        let mut batching = Batching::new(&settings.key, settings.coalesce, settings.wait);
        // One dialer per shard: every connection it opens shares one TLS configuration.
        let dialer = Dialer::new(settings.tls.clone());
        let follow = Follow::start(&settings.target, &dialer, settings.wait);
        batching.follow_redirects = follow.follows_redirects();
        let subscriber = Subscriber::new(settings.target.clone(), dialer.clone(), settings.shard);
        let router =
            Router::for_target(&settings.target, dialer.clone(), settings.max_pending, settings.timeout, settings.wait);
        let shared = Rc::new(Shared::new(settings, batching, follow));
        glommio::spawn_local(maintain(shared.clone(), dialer)).detach();
        Redis(shared, subscriber, router)
    }

    /// Whether the connection is up (requests would be sent, not refused).
    pub fn is_up(&self) -> bool {
        self.0.up.get()
    }

    /// Counts into `meter` from now on (the shard's metrics slot).
    pub fn set_meter(&self, meter: Meter) {
        meter.redis_up(self.0.up.get());
        self.0.meter.set(meter);
    }

    /// Whether this connection can serve increments now, for a health check: it is up, no written
    /// command has waited longer than `--redis-timeout`, and the last INCR reply was a value. The
    /// error is a one-line reason.
    pub fn health(&self) -> Result<(), &'static str> {
        if !self.0.up.get() {
            return Err("Redis connection down");
        }
        let oldest = self.0.queue.borrow().oldest_sent();
        if oldest.is_some_and(|sent| sent.elapsed() > self.0.settings.timeout) {
            return Err("Redis has not answered within --redis-timeout");
        }
        if !self.0.last_ok.get() {
            return Err("Redis answered the last increment with an error");
        }
        Ok(())
    }

    /// Waits, at most `--redis-timeout`, until every `EXPIRE` owed to a counter that a hit
    /// created is written and answered: a stopping shard calls it after its last request, so that
    /// a counter created in its last moments does not outlive `--counter-ttl`. A poll every
    /// millisecond: it runs once per shard life, and only while something is owed.
    pub async fn settle(&self) {
        let deadline = Instant::now() + self.0.settings.timeout;
        let owes = || self.0.queue.borrow().keyed.owes_expires() || self.2.as_ref().is_some_and(Router::owes_expires);
        while owes() && Instant::now() < deadline {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Waits until the first connection attempt has ended, successfully or not (at most the
    /// connect timeout). A shard waits for this before it accepts, so that a shard started while
    /// Redis is up does not answer its first requests with 503, and one started while Redis is
    /// down still boots and serves 503 at once.
    pub async fn first_attempt(&self) {
        poll_fn(|cx| {
            if self.0.attempted.get() {
                Poll::Ready(())
            } else {
                *self.0.attempt_waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Registers `n` increments for `ticket` and re-arms it; await [`Ticket::wait`] for the results.
    /// Refusals (down, overloaded) are delivered through the ticket too, so callers have one path.
    pub fn incr(&self, ticket: &Ticket, n: usize) {
        ticket.arm(n);
        if n == 0 {
            return;
        }
        let n = n as u64;
        let mut queue = self.0.queue.borrow_mut();
        if !self.0.up.get() {
            queue.refuse(ticket, n, Failure::Unavailable);
            return;
        }
        match queue.register(ticket, n, self.0.settings.max_pending) {
            Err(failure) => queue.refuse(ticket, n, failure),
            Ok(()) => {
                if let Some(w) = self.0.writer.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }

    /// `--redis-timeout`.
    pub fn timeout(&self) -> std::time::Duration {
        self.0.settings.timeout
    }

    /// Listens to a `/stream` channel through the shard's subscriber connection.
    pub fn subscribe(&self, channel: &[u8]) -> Subscription {
        self.1.subscribe(channel)
    }

    /// Registers the counting API's requests of one round for `ticket` (armed for them by the
    /// caller): `(index, op)` each. Refusals are delivered through the ticket too.
    pub fn keyed(&self, ticket: &KeyedTicket, ops: impl IntoIterator<Item = (usize, Op)>) {
        if let Some(router) = &self.2 {
            // Cluster: each key to its slot's owner, on connections of the router's own.
            for (index, op) in ops {
                router.register(ticket, index, op);
            }
            return;
        }
        let up = self.0.up.get();
        let mut queued = false;
        for (index, op) in ops {
            if !up {
                ticket.set(index, Answered::Failed(Failure::Unavailable));
                continue;
            }
            let registered = self.0.queue.borrow_mut().keyed.register(ticket, index, op, self.0.settings.max_pending);
            match registered {
                Ok(()) => queued = true,
                Err(failure) => ticket.set(index, Answered::Failed(failure)),
            }
        }
        if queued {
            if let Some(w) = self.0.writer.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// The connection task: connect, run a session until it ends, fail what was pending, back off,
/// again. The lifecycle and its log lines' choice are `reconnect`'s; this performs them.
async fn maintain(shared: Rc<Shared>, dialer: Dialer) {
    let s = &shared.settings;
    let discovery = Discovery::for_target(&s.target, &s.key, shared.follow.switch());
    let name = format!("hitcore-shard-{}", s.shard);
    let mut connector = Connector::new(s.target.clone(), discovery, dialer, name);
    let target = s.target.clone();
    let mut link = Reconnect::default();
    loop {
        let moved_to = shared.follow.cluster().and_then(|c| c.moves.borrow_mut().take_owner());
        let attempt = connector.connect(moved_to).await;
        if !shared.attempted.replace(true) {
            // Up before the shard accepts, if the attempt succeeded.
            shared.up.set(attempt.is_ok());
            if let Some(w) = shared.attempt_waiter.borrow_mut().take() {
                w.wake();
            }
        }
        match attempt {
            Ok(ready) => {
                let node = ready.node.to_string();
                let connected = link.connected(&node, Instant::now());
                match connected.greeting {
                    Greeting::Connected => info!("Connected to Redis at {target} ({node})"),
                    Greeting::Reconnected(after) => {
                        info!("Reconnected to Redis at {target} ({node}) after {:.1}s", after.as_secs_f64())
                    }
                    Greeting::ReconnectedQuietly => {
                        debug!("Reconnected to Redis at {target} ({node}) after a WAIT shortfall")
                    }
                }
                if let Some(why) = ready.role_unchecked.filter(|_| link.warn_role_once()) {
                    warn!(
                        "Cannot ask Redis at {node} for its ROLE ({why}); a replica would be found only by its \
                         -READONLY replies. Allow ROLE for hitcore's user."
                    );
                }
                let meter = shared.meter.get();
                if connected.counts_as_reconnect {
                    meter.redis_reconnected();
                }
                shared.last_ok.set(true);
                shared.up.set(true);
                meter.redis_up(true);
                shared.follow.connected(&ready.node.name);
                let end = session::run(&shared, ready.stream, &ready.node.addr).await;
                match &end {
                    SessionEnd::Moved(Verdict::Follow(to)) => {
                        // Nothing written is unanswered (the session drained), and what -MOVED
                        // handed back ran nowhere: it goes to the new owner first, at once, and
                        // the shard stays up meanwhile (new requests queue behind it).
                        info!("Redis at {target} ({node}) says the key's slot moved to {to}; following");
                        shared.queue.borrow_mut().requeue_redirected();
                        link.moved();
                        continue;
                    }
                    // Still nothing ran: answer 503 (not 500), back off, and look again.
                    SessionEnd::Moved(Verdict::BackOff(to, rapid)) => error!(
                        "Redis at {target} ({node}) moved the key's slot {rapid} times within a second each \
                         (now to {to}); answering 503 and backing off"
                    ),
                    _ => {}
                }
                ended(&shared, &mut link, &node, end);
            }
            Err(e) => {
                let failed = link.failed(e.kind(), Instant::now());
                if failed.fail_redirected {
                    // The new owner cannot be reached: what was redirected to it gets 503 like the rest.
                    shared.up.set(false);
                    shared.meter.get().redis_up(false);
                    shared.queue.borrow_mut().fail_all(Failure::Unavailable);
                }
                if !failed.log {
                    debug!("Redis at {target} still unavailable: {e}");
                } else if e.is_unreachable() {
                    warn!("Cannot reach Redis at {target}: {e}; answering 503 and retrying");
                } else if matches!(e, ConnectError::Refused(_)) {
                    error!("Redis at {target} rejected the connection: {e}");
                } else {
                    error!("Cannot use Redis at {target}: {e}; answering 503 and retrying");
                }
            }
        }
        glommio::timer::sleep(link.next_delay(fastrand::f64())).await;
    }
}

/// A session ended (other than by a followed `-MOVED`): the shard is down, what was pending
/// fails, and the end is logged.
fn ended(shared: &Shared, link: &mut Reconnect, node: &str, end: SessionEnd) {
    let target = &shared.settings.target;
    shared.up.set(false);
    let meter = shared.meter.get();
    meter.redis_up(false);
    if matches!(end, SessionEnd::Timeout(_)) {
        meter.timeout(Timeout::Redis);
    }
    let failed = shared.queue.borrow_mut().fail_all(Failure::Lost);
    match &end {
        SessionEnd::NotDurable => {
            debug!("Redis at {target} ({node}): {end}; {failed} more requests answered 503; reconnecting");
            link.ended(Ended::QuietFor(node.to_string()), Instant::now());
            return;
        }
        // A "try again" reply (errors.rs): a WARNING, at most one a second.
        SessionEnd::NotPrimary(_) => shared.try_again_log.record(|also| {
            warn!(
                "Redis at {target} ({node}): {end}; {failed} more requests in flight answered 503; reconnecting \
                 ({also} more since the last report)"
            )
        }),
        SessionEnd::Redirect(_) | SessionEnd::Switched(_) | SessionEnd::Moved(_) => {
            error!("Redis at {target} ({node}): {end}; {failed} more requests in flight answered 503; reconnecting")
        }
        _ => {
            error!("Lost the connection to Redis at {target} ({node}): {end}; {failed} requests in flight answered 503")
        }
    }
    link.ended(Ended::Loud, Instant::now());
}
