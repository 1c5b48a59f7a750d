//! One shard's Redis connection: pipelined, coalescing, reconnecting.
//!
//! It owns the shard's only Redis connection task. Requests register a [`Ticket`] and a count
//! with [`Redis::incr`]; one writer turns everything waiting into one write (what is written, and
//! how replies are shared out, is `queue`'s arithmetic); one reader decodes replies in order. Both
//! run on one task with a deadline watcher (the scylla driver's router shape); when any of them
//! ends, every request whose command is queued or written gets a failure (never a silent replay:
//! an INCR whose reply was lost may or may not have happened), and the connection is rebuilt
//! through `connect` (which finds the node again) with capped, jittered backoff. A reply that says
//! the node is not a writable primary (`-READONLY`, `-LOADING`, `-MASTERDOWN`) or a WAIT shortfall
//! ends the session the same way: that batch is answered 503, and the node is looked up again.
//!
//! It must not know about HTTP: failures are [`Failure`]s, and the connection decides the status.
//! Everything is shard-local (`Rc`/`RefCell`/`Cell`); no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, error, info, warn};

use super::connect::{Address, ConnectError, Connector, Discovery, SessionHint};
use super::follow::{Follow, Redirection};
use super::keyed::{Answered, KeyedTicket, Op};
use super::queue::{Batching, Completed, Queue};
pub use super::queue::{Failure, Outcome, Ticket};
use super::resp::{self, ErrorKind, ProtocolError};
use super::stream::Stream;
use super::subscribe::{Subscriber, Subscription};
use super::tls::TlsFiles;
use super::topology::HostPort;
use super::url::RedisTarget;
use crate::config::Config;
use crate::metrics::shm::{Meter, Timeout};

/// First reconnect delay; doubled per failed attempt up to [`BACKOFF_CAP`], then jittered.
const BACKOFF_START: Duration = Duration::from_millis(25);
/// The longest wait between reconnect attempts, so service resumes within about a second of Redis.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// `-MOVED`s followed at once, each within a second of the last, before backing off (the
/// cluster spec's clients cap redirections similarly; redis-cli allows 16 per command).
const MAX_RAPID_MOVES: u32 = 5;
/// Replies to INCR are a few bytes; a reply buffer this large means Redis sent something else.
const MAX_REPLY_BUFFER: usize = 1 << 20;

/// What a shard's Redis connection needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Redis is and how to log in.
    pub target: RedisTarget,
    /// `--redis-tls-*`, for `rediss://`.
    pub tls: TlsFiles,
    /// The counter key (`--key`).
    pub key: String,
    /// One `INCRBY key k` per batch (true) or one `INCR` per request (`--no-coalesce`).
    pub coalesce: bool,
    /// `WAIT replicas timeout_ms` after each batch (`--wait-replicas`, `--wait-timeout`), if any.
    pub wait: Option<(u32, u64)>,
    /// A command unanswered for this long breaks the connection (`--redis-timeout`).
    pub timeout: Duration,
    /// Requests queued or in flight at most; more get [`Failure::Overloaded`] at once.
    pub max_pending: u64,
    /// The shard index, for `CLIENT SETNAME hitcore-shard-N` (visible in `CLIENT LIST`).
    pub shard: usize,
}

impl Settings {
    /// The Redis settings of shard `shard` under `config`, with at most `max_pending` requests
    /// waiting (the shard knows how many its connections may have in flight).
    pub fn from_config(config: &Config, shard: usize, max_pending: u64) -> Settings {
        Settings {
            target: config.redis.clone(),
            tls: config.redis_tls.clone(),
            key: config.key.clone(),
            coalesce: config.coalesce,
            wait: (config.wait_replicas > 0)
                .then(|| (config.wait_replicas, config.wait_timeout.as_millis().max(1) as u64)),
            timeout: config.redis_timeout,
            max_pending,
            shard,
        }
    }
}

/// Shared between the HTTP side and the connection task.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    batching: Batching,
    up: Cell<bool>,
    queue: RefCell<Queue>,
    /// The writer, parked until something is waiting.
    writer: RefCell<Option<Waker>>,
    /// Error replies since the last log line about them, so a bad key logs once a second, not per request.
    error_log: RateLimited,
    /// WAIT shortfalls, likewise.
    wait_log: RateLimited,
    /// Set once the first connection attempt has ended, either way.
    attempted: Cell<bool>,
    /// The shard waiting for that, before it starts accepting.
    attempt_waiter: RefCell<Option<Waker>>,
    /// Whether the last INCR reply was a value (an error reply, e.g. a key that holds no integer,
    /// makes the shard unhealthy until a value comes back); set again by each new connection.
    last_ok: Cell<bool>,
    /// Where the connection counts its round trips, state and reconnects (the shard's metrics slot).
    meter: Cell<Meter>,
    /// Sentinel and Cluster: failovers announced, `-MOVED` and `-ASK` followed (`follow`).
    follow: Follow,
    /// The counting API's `/stream` subscriber (connects on first use).
    subscriber: Subscriber,
}

/// The shard's handle to its Redis connection.
#[derive(Debug, Clone)]
pub struct Redis(Rc<Shared>);

impl Redis {
    /// Creates the handle and starts the connection task on the current executor. The shard is
    /// usable at once: until the first connection succeeds, requests fail fast as `Unavailable`.
    pub fn start(settings: Settings) -> Redis {
        let mut batching = Batching::new(&settings.key, settings.coalesce, settings.wait);
        let name = format!("hitcore-shard-{}", settings.shard);
        let follow = Follow::start(&settings.target, &settings.tls, name, &settings.key, settings.wait);
        batching.follow_redirects = follow.follows_redirects();
        let subscriber = Subscriber::new(settings.target.clone(), settings.tls.clone(), settings.shard);
        let shared = Rc::new(Shared {
            follow,
            subscriber,
            settings,
            batching,
            up: Cell::new(false),
            queue: RefCell::default(),
            writer: RefCell::new(None),
            error_log: RateLimited::default(),
            wait_log: RateLimited::default(),
            attempted: Cell::new(false),
            attempt_waiter: RefCell::new(None),
            last_ok: Cell::new(true),
            meter: Cell::new(Meter::detached()),
        });
        glommio::spawn_local(maintain(shared.clone())).detach();
        Redis(shared)
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
        if !self.0.up.get() {
            ticket.push(Outcome::Failed(Failure::Unavailable), n);
            return;
        }
        let registered = self.0.queue.borrow_mut().register(ticket, n, self.0.settings.max_pending);
        match registered {
            Err(failure) => ticket.push(Outcome::Failed(failure), n),
            Ok(()) => {
                if let Some(w) = self.0.writer.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }

    /// `--redis-timeout`.
    pub fn timeout(&self) -> Duration {
        self.0.settings.timeout
    }

    /// Listens to a `/stream` channel through the shard's subscriber connection.
    pub fn subscribe(&self, channel: &[u8]) -> Subscription {
        self.0.subscriber.subscribe(channel)
    }

    /// Registers the counting API's requests of one round for `ticket` (armed for them by the
    /// caller): `(index, op)` each. Refusals are delivered through the ticket too.
    pub fn keyed(&self, ticket: &KeyedTicket, ops: impl IntoIterator<Item = (usize, Op)>) {
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

/// The connection task: connect, run a session until it breaks, fail what was pending, back off,
/// again. Logs once per change of state, not once per attempt.
async fn maintain(shared: Rc<Shared>) {
    let s = &shared.settings;
    let mut connector =
        Connector::new(s.target.clone(), s.key.clone(), s.tls.clone(), format!("hitcore-shard-{}", s.shard));
    // Set after a -MOVED: the session ended with requests still queued for the slot's new owner.
    let mut moving = false;
    // -MOVED followed within a second of the previous one, in a row: a cluster whose nodes
    // disagree (mid-resharding) could otherwise bounce the same requests between them forever.
    let (mut rapid_moves, mut last_move): (u32, Option<Instant>) = (0, None);
    if let (Discovery::Sentinel(sentinels), Some(switch)) = (connector.discovery_mut(), shared.follow.switch()) {
        sentinels.listen(switch);
    }
    let target = s.target.clone();
    let mut delay = BACKOFF_START;
    let mut last_failure: Option<String> = None;
    let mut role_warned = false;
    let mut down_since: Option<Instant> = None;
    // After a WAIT shortfall the node is looked up again, which is usually the same node: the
    // rate-limited WARNING has said what happened, so reconnecting to it is not worth a line.
    let mut quiet_for: Option<String> = None;
    let mut connected_before = false;
    loop {
        let attempt = connector.connect().await;
        if std::mem::take(&mut moving) && attempt.is_err() {
            // The new owner cannot be reached: what was redirected to it gets 503 like the rest.
            shared.up.set(false);
            shared.queue.borrow_mut().fail_all(Failure::Unavailable);
        }
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
                match down_since.take() {
                    Some(_) if quiet_for.take().as_ref() == Some(&node) => {
                        debug!("Reconnected to Redis at {target} ({node}) after a WAIT shortfall")
                    }
                    Some(t) => {
                        info!("Reconnected to Redis at {target} ({node}) after {:.1}s", t.elapsed().as_secs_f64())
                    }
                    None => info!("Connected to Redis at {target} ({node})"),
                }
                if let Some(why) = ready.role_unchecked.filter(|_| !role_warned) {
                    role_warned = true;
                    warn!(
                        "Cannot ask Redis at {node} for its ROLE ({why}); a replica would be found only by its \
                         -READONLY replies. Allow ROLE for hitcore's user."
                    );
                }
                last_failure = None;
                delay = BACKOFF_START;
                let meter = shared.meter.get();
                if connected_before {
                    meter.redis_reconnected();
                }
                connected_before = true;
                shared.last_ok.set(true);
                shared.up.set(true);
                meter.redis_up(true);
                shared.follow.connected(&ready.node.name);
                let end = session(&shared, ready.stream, &ready.node.addr).await;
                if let SessionEnd::Moved(to) = &end {
                    rapid_moves = if last_move.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                        rapid_moves + 1
                    } else {
                        1
                    };
                    last_move = Some(Instant::now());
                    if let Discovery::Cluster(cluster) = connector.discovery_mut() {
                        cluster.moved(to.clone());
                    }
                    if rapid_moves <= MAX_RAPID_MOVES {
                        // Nothing written is unanswered (the session drained), and what -MOVED
                        // handed back ran nowhere: it goes to the new owner first, at once, and
                        // the shard stays up meanwhile (new requests queue behind it).
                        info!("Redis at {target} ({node}) says the key's slot moved to {to}; following");
                        shared.queue.borrow_mut().requeue_redirected();
                        moving = true;
                        continue;
                    }
                    // Still nothing ran: answer 503 (not 500), back off, and look again.
                    error!(
                        "Redis at {target} ({node}) moved the key's slot {rapid_moves} times within a second each \
                         (now to {to}); answering 503 and backing off"
                    );
                }
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
                        quiet_for = Some(node);
                    }
                    SessionEnd::NotPrimary(_)
                    | SessionEnd::Redirect(_)
                    | SessionEnd::Switched(_)
                    | SessionEnd::Moved(_) => error!(
                        "Redis at {target} ({node}): {end}; {failed} more requests in flight answered 503; reconnecting"
                    ),
                    _ => error!(
                        "Lost the connection to Redis at {target} ({node}): {end}; {failed} requests in flight \
                         answered 503"
                    ),
                }
                connector.session_ended(end.hint());
                down_since = Some(Instant::now());
            }
            Err(e) => {
                let kind = e.kind();
                if last_failure.as_deref() != Some(kind.as_str()) {
                    if e.is_unreachable() {
                        warn!("Cannot reach Redis at {target}: {e}; answering 503 and retrying");
                    } else if matches!(e, ConnectError::Refused(_)) {
                        error!("Redis at {target} rejected the connection: {e}");
                    } else {
                        error!("Cannot use Redis at {target}: {e}; answering 503 and retrying");
                    }
                    last_failure = Some(kind);
                } else {
                    debug!("Redis at {target} still unavailable: {e}");
                }
                down_since.get_or_insert_with(Instant::now);
            }
        }
        let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
        glommio::timer::sleep(jittered).await;
        delay = (delay * 2).min(BACKOFF_CAP);
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("Redis closed the connection")]
    Closed,
    #[error("no reply within {0:?} (--redis-timeout)")]
    Timeout(Duration),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// `-READONLY`, `-LOADING`, `-MASTERDOWN`: the node takes no writes.
    #[error("it refused a write: {0}")]
    NotPrimary(String),
    /// `-MOVED`, `-ASK`: a Cluster node that does not own the key's slot.
    #[error("it redirected a write: {0} (a Redis Cluster node: hitcore needs a redis+cluster:// URL for it)")]
    Redirect(String),
    /// Fewer replicas than `--wait-replicas` acknowledged: this may be a primary that has been
    /// replaced (its replicas left it), so the node is looked up again.
    #[error("fewer replicas than --wait-replicas acknowledged a write")]
    NotDurable,
    /// A sentinel announced a failover away from this node (`+try-failover`), or that the primary
    /// is now another node (`+switch-master`).
    #[error("{}", .0.map_or("a sentinel started a failover away from it".to_string(), |a| format!("a sentinel announced a failover to {a}")))]
    Switched(Option<std::net::SocketAddr>),
    /// A cluster node answered `-MOVED`, and every reply of this session is in.
    #[error("the key's slot moved to {0}")]
    Moved(HostPort),
}

impl SessionEnd {
    /// What discovery is told about this end.
    fn hint(&self) -> SessionHint {
        match self {
            SessionEnd::NotPrimary(_) => SessionHint::NotPrimary,
            SessionEnd::Redirect(message) => SessionHint::Redirect(message.clone()),
            SessionEnd::NotDurable => SessionHint::NotDurable,
            _ => SessionHint::Broken,
        }
    }
}

/// Runs the reader, the writer and the deadline watcher on one task until one of them ends.
async fn session(shared: &Rc<Shared>, stream: Stream, node: &Address) -> SessionEnd {
    let (rd, wr) = futures_lite::io::split(stream);
    let reader = read_replies(shared, rd);
    let writer = write_commands(shared, wr);
    let watcher = watch_deadline(shared);
    // Sentinel only (pending otherwise): the primary moved away from this node.
    let switched = async { SessionEnd::Switched(shared.follow.switched(node).await) };
    let session = futures_lite::future::or(futures_lite::future::or(reader, writer), watcher);
    futures_lite::future::or(session, switched).await
}

async fn write_commands(shared: &Shared, mut wr: impl AsyncWrite + Unpin) -> SessionEnd {
    let mut out = Vec::with_capacity(4096);
    loop {
        poll_fn(|cx| {
            // After a -MOVED nothing more is written here: it would be redirected too.
            if shared.queue.borrow().has_waiting() && !shared.follow.draining() {
                Poll::Ready(())
            } else {
                *shared.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let increments = {
            let mut q = shared.queue.borrow_mut();
            let n = q.waiting_requests();
            q.encode_waiting(&shared.batching, &mut out, Instant::now());
            n
        };
        let meter = shared.meter.get();
        if shared.settings.coalesce {
            meter.round_trip(increments);
        } else {
            for _ in 0..increments {
                meter.round_trip(1);
            }
        }
        if let Err(e) = wr.write_all(&out).await {
            return e.into();
        }
        // TLS may keep the tail of a record until flushed; for TCP this is free.
        if let Err(e) = wr.flush().await {
            return e.into();
        }
        out.clear();
    }
}

async fn read_replies(shared: &Rc<Shared>, mut rd: impl AsyncRead + Unpin) -> SessionEnd {
    let mut buf = vec![0u8; 16 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            } else if buf.len() >= MAX_REPLY_BUFFER {
                return ProtocolError("reply larger than any INCR reply".into()).into();
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = match rd.read(&mut buf[end..]).await {
            Ok(0) => return SessionEnd::Closed,
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        end += n;
        loop {
            match resp::decode_reply(&buf[start..end]) {
                Ok(Some((reply, used))) => {
                    let completed = shared.queue.borrow_mut().complete(&shared.batching, reply);
                    start += used;
                    match completed {
                        Ok(done) => {
                            if let Some(end) = report(shared, done) {
                                return end;
                            }
                            // A -MOVED session ends once every reply of what it wrote is in.
                            if shared.follow.draining() && !shared.queue.borrow().has_sent() {
                                let to = shared.follow.take_moved().expect("draining");
                                return SessionEnd::Moved(to);
                            }
                        }
                        Err(e) => return e.into(),
                    }
                }
                Ok(None) => break,
                Err(e) => return e.into(),
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
    }
}

/// Logs what a reply meant, and says whether the session must end because of it.
fn report(shared: &Rc<Shared>, done: Completed<'_>) -> Option<SessionEnd> {
    let key = &shared.settings.key;
    shared.last_ok.set(!matches!(done, Completed::Error(_)));
    match done {
        Completed::Redirected(message) => match shared.follow.redirected(message) {
            Redirection::Moved => None,
            Redirection::Ask(to) => {
                let tickets = shared.queue.borrow_mut().take_redirected();
                let shared = shared.clone();
                glommio::spawn_local(async move {
                    let settled = shared.follow.send_asked(to, tickets).await;
                    shared.queue.borrow_mut().settle(settled);
                })
                .detach();
                None
            }
            Redirection::Unreadable => {
                let tickets = shared.queue.borrow_mut().take_redirected();
                let n = tickets.iter().map(|(_, n)| n).sum();
                tickets.into_iter().for_each(|(t, n)| t.push(Outcome::Failed(Failure::NotPrimary), n));
                shared.queue.borrow_mut().settle(n);
                Some(SessionEnd::NotPrimary(crate::logging::escape(message)))
            }
        },
        Completed::Served => None,
        Completed::Waited { acked, wanted } if acked >= i64::from(wanted) => None,
        Completed::Error(message) => {
            let message = crate::logging::escape(message);
            shared.error_log.record(|also| {
                error!(
                    "Redis answered INCR on key '{key}' with an error: {message} (answering 500; {also} more since \
                     the last report)"
                )
            });
            None
        }
        Completed::NotPrimary(kind, message) => {
            let message = crate::logging::escape(message);
            Some(match kind {
                ErrorKind::Redirect => SessionEnd::Redirect(message),
                _ => SessionEnd::NotPrimary(message),
            })
        }
        Completed::Waited { acked, wanted } => {
            let timeout = shared.settings.wait.map_or(0, |(_, ms)| ms);
            shared.wait_log.record(|also| {
                warn!(
                    "Only {acked} of {wanted} replicas acknowledged a write within {timeout} ms (--wait-replicas); \
                     answering 503 ({also} more since the last report)"
                )
            });
            Some(SessionEnd::NotDurable)
        }
        Completed::WaitError(message) => {
            let message = crate::logging::escape(message);
            shared.wait_log.record(|also| {
                warn!("Redis refused WAIT: {message}; answering 503 ({also} more since the last report)")
            });
            Some(SessionEnd::NotDurable)
        }
    }
}

/// Ends the session when the oldest written command has waited longer than `--redis-timeout`:
/// a stalled Redis then costs its waiting clients one timeout, not forever, and the FIFO stays in
/// step because the connection is rebuilt rather than the late reply being matched to a new request.
async fn watch_deadline(shared: &Shared) -> SessionEnd {
    let limit = shared.settings.timeout;
    let period = (limit / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        glommio::timer::sleep(period).await;
        let oldest = shared.queue.borrow().oldest_sent();
        if oldest.is_some_and(|sent| sent.elapsed() > limit) {
            return SessionEnd::Timeout(limit);
        }
    }
}

/// Logs one kind of event at most once a second, with a count of those not logged.
#[derive(Debug, Default)]
struct RateLimited {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl RateLimited {
    /// Calls `log` with the number suppressed since the last call that logged, unless one logged
    /// less than a second ago.
    fn record(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.suppressed.set(self.suppressed.get() + 1);
            return;
        }
        log(self.suppressed.replace(0));
        self.last.set(Some(now));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::redis::url::Endpoint;

    fn config(args: &[&str]) -> Config {
        Cli::try_parse_from([&["hitcore", "-w", "1"], args].concat()).unwrap().into_config().unwrap()
    }

    #[test]
    fn a_hand_off_from_the_previous_release_decodes_with_no_tls_and_no_wait() {
        let mut json = serde_json::to_value(config(&["--redis", "redis://localhost:7000/2"])).unwrap();
        let fields = json.as_object_mut().unwrap();
        for new in ["redis_tls", "wait_replicas", "wait_timeout"] {
            assert!(fields.remove(new).is_some(), "{new}");
        }
        // The previous release resolved the host in the supervisor.
        fields["redis"]["endpoint"] = serde_json::json!({"Tcp": {"host": "localhost", "addr": "127.0.0.1:7000"}});
        let old: Config = serde_json::from_value(json).unwrap();
        let s = Settings::from_config(&old, 3, 128);
        assert_eq!(s.target.endpoint, Endpoint::Tcp { host: "localhost".into(), port: 7000, tls: false });
        assert_eq!((s.wait, s.tls, s.shard, s.target.db), (None, TlsFiles::default(), 3, 2));
    }

    #[test]
    fn settings_carry_the_wait_and_the_tls_files() {
        let s = Settings::from_config(&config(&["--wait-replicas", "2", "--wait-timeout", "30"]), 0, 128);
        assert_eq!(s.wait, Some((2, 30)));
        let s = Settings::from_config(&config(&["--redis", "rediss://h/0", "--redis-tls-insecure"]), 0, 128);
        assert!(s.target.tls() && s.tls.insecure);
        assert_eq!(Settings::from_config(&config(&[]), 0, 128).wait, None);
    }
}
