//! One shard's Redis connection: pipelined, coalescing, reconnecting.
//!
//! It owns the shard's only Redis connection and the FIFO that matches replies to waiting requests.
//! Requests register a [`Ticket`] and a count with [`Redis::incr`]; one writer turns everything
//! waiting into one `INCRBY key k` (or k `INCR`s with coalescing off) and one write; one reader
//! decodes replies in order and hands each request its own value. Both run on one task with a
//! deadline watcher (the scylla driver's router shape); when any of them ends, every request whose
//! command is queued or written gets a failure (never a silent replay: an INCR whose reply was lost
//! may or may not have happened), and the connection is rebuilt with capped, jittered backoff.
//!
//! It must not know about HTTP: failures are [`Failure`]s, and the connection decides the status.
//! Everything is shard-local (`Rc`/`RefCell`/`Cell`); no borrow is held across an `.await`.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use tracing::{debug, error, info, warn};

use super::resp::{self, ProtocolError, Reply};
use super::url::{Endpoint, RedisTarget};
use crate::metrics::shm::{Meter, Timeout};

/// How long a connect plus handshake may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// First reconnect delay; doubled per failed attempt up to [`BACKOFF_CAP`], then jittered.
const BACKOFF_START: Duration = Duration::from_millis(25);
/// The longest wait between reconnect attempts, so service resumes within about a second of Redis.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Replies to INCR are a few bytes; a reply buffer this large means Redis sent something else.
const MAX_REPLY_BUFFER: usize = 1 << 20;

/// What a shard's Redis connection needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Redis is and how to log in.
    pub target: RedisTarget,
    /// The counter key (`--key`).
    pub key: String,
    /// One `INCRBY key k` per batch (true) or one `INCR` per request (`--no-coalesce`).
    pub coalesce: bool,
    /// A command unanswered for this long breaks the connection (`--redis-timeout`).
    pub timeout: Duration,
    /// Requests queued or in flight at most; more get [`Failure::Overloaded`] at once.
    pub max_pending: u64,
    /// The shard index, for `CLIENT SETNAME hitcore-shard-N` (visible in `CLIENT LIST`).
    pub shard: usize,
}

/// Why a request got no value. The connection maps these to statuses.
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
    fn arm(&self, n: usize) {
        self.0.outcomes.borrow_mut().clear();
        self.0.want.set(n);
    }

    fn push(&self, outcome: Outcome, n: u64) {
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

    /// Waits until every request of the batch has its outcome.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.0.outcomes.borrow().len() >= self.0.want.get() {
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

/// Commands written and awaiting one reply each, with the tickets they answer.
#[derive(Debug, Default)]
struct Queue {
    /// Registered, not yet written: (ticket, number of requests). Drained by the writer.
    waiting: VecDeque<(Ticket, u64)>,
    /// Written commands, oldest first: (requests the reply covers, tickets it covers, when sent).
    groups: VecDeque<(u64, usize, Instant)>,
    /// The tickets of `groups`, flattened in the same order: (ticket, number of requests).
    members: VecDeque<(Ticket, u64)>,
    /// Requests in `waiting` and `members`: the overload bound counts these.
    pending: u64,
}

/// Shared between the HTTP side and the connection task.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    up: Cell<bool>,
    queue: RefCell<Queue>,
    /// The writer, parked until something is waiting.
    writer: RefCell<Option<Waker>>,
    /// `INCR key`, pre-encoded for `--no-coalesce`.
    incr: Vec<u8>,
    /// Error replies since the last log line about them, so a bad key logs once a second, not per request.
    error_log: ErrorLog,
    /// Set once the first connection attempt has ended, either way.
    attempted: Cell<bool>,
    /// The shard waiting for that, before it starts accepting.
    attempt_waiter: RefCell<Option<Waker>>,
    /// Whether the last reply was a value (an error reply, e.g. a key that holds no integer, makes
    /// the shard unhealthy until a value comes back); set again by each new connection.
    last_ok: Cell<bool>,
    /// Where the connection counts its round trips, state and reconnects.
    meter: Cell<Meter>,
}

/// The shard's handle to its Redis connection.
#[derive(Debug, Clone)]
pub struct Redis(Rc<Shared>);

impl Redis {
    /// Creates the handle and starts the connection task on the current executor. The shard is
    /// usable at once: until the first connection succeeds, requests fail fast as `Unavailable`.
    pub fn start(settings: Settings) -> Redis {
        let mut incr = Vec::new();
        resp::encode_command(&mut incr, &[b"INCR", settings.key.as_bytes()]);
        let shared = Rc::new(Shared {
            settings,
            up: Cell::new(false),
            queue: RefCell::default(),
            writer: RefCell::new(None),
            incr,
            error_log: ErrorLog::default(),
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
    /// command has waited longer than `--redis-timeout`, and the last reply was a value. The error
    /// is a one-line reason.
    pub fn health(&self) -> Result<(), &'static str> {
        if !self.0.up.get() {
            return Err("Redis connection down");
        }
        let oldest = self.0.queue.borrow().groups.front().map(|g| g.2);
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
        let mut q = self.0.queue.borrow_mut();
        if q.pending + n > self.0.settings.max_pending {
            drop(q);
            ticket.push(Outcome::Failed(Failure::Overloaded), n);
            return;
        }
        q.pending += n;
        q.waiting.push_back((ticket.clone(), n));
        drop(q);
        if let Some(w) = self.0.writer.borrow_mut().take() {
            w.wake();
        }
    }
}

/// The connection task: connect, run a session until it breaks, fail what was pending, back off,
/// again. Logs once per change of state, not once per attempt.
async fn maintain(shared: Rc<Shared>) {
    let target = shared.settings.target.clone();
    let mut delay = BACKOFF_START;
    let mut last_failure: Option<String> = None;
    let mut down_since: Option<Instant> = None;
    let mut connected_before = false;
    loop {
        let attempt = connect(&shared.settings).await;
        if !shared.attempted.replace(true) {
            // Up before the shard accepts, if the attempt succeeded.
            shared.up.set(attempt.is_ok());
            if let Some(w) = shared.attempt_waiter.borrow_mut().take() {
                w.wake();
            }
        }
        match attempt {
            Ok(stream) => {
                match down_since.take() {
                    Some(t) => info!("Reconnected to Redis at {target} after {:.1}s", t.elapsed().as_secs_f64()),
                    None => info!("Connected to Redis at {target}"),
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
                let end = session(&shared, stream).await;
                shared.up.set(false);
                shared.meter.get().redis_up(false);
                if matches!(end, SessionEnd::Timeout(_)) {
                    shared.meter.get().timeout(Timeout::Redis);
                }
                let failed = fail_all(&shared, Failure::Lost);
                error!("Lost the connection to Redis at {target}: {end}; {failed} requests in flight answered 503");
                down_since = Some(Instant::now());
            }
            Err(e) => {
                let kind = e.kind();
                if last_failure.as_deref() != Some(kind.as_str()) {
                    match &e {
                        ConnectError::Refused(_) => error!("Redis at {target} rejected the connection: {e}"),
                        _ => warn!("Cannot reach Redis at {target}: {e}; answering 503 and retrying"),
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

/// Completes every queued and written request with `failure`; returns how many there were.
fn fail_all(shared: &Shared, failure: Failure) -> u64 {
    let mut q = shared.queue.borrow_mut();
    let q = &mut *q;
    q.groups.clear();
    for (ticket, n) in q.members.drain(..).chain(q.waiting.drain(..)) {
        ticket.push(Outcome::Failed(failure), n);
    }
    std::mem::take(&mut q.pending)
}

/// Why a connection attempt failed; kept apart so that a wrong password reads differently from a
/// Redis that is not there.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Redis refused the handshake (WRONGPASS, NOAUTH, a bad database): the message is Redis's own.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

impl ConnectError {
    /// A key that changes when the failure changes in a way worth a new log line.
    fn kind(&self) -> String {
        match self {
            ConnectError::Io(e) => format!("io:{:?}", e.kind()),
            ConnectError::Timeout(_) => "timeout".into(),
            ConnectError::Refused(m) => format!("refused:{m}"),
            ConnectError::Protocol(_) => "protocol".into(),
        }
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
}

/// The transports Redis can be reached by, behind one read/write interface.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Runs `fut` for at most `limit`.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// Connects and runs the handshake (AUTH, SELECT, CLIENT SETNAME, PING) as one pipelined batch.
async fn connect(settings: &Settings) -> Result<Stream, ConnectError> {
    within(CONNECT_TIMEOUT, async {
        let mut stream = match &settings.target.endpoint {
            Endpoint::Tcp { addr, .. } => {
                let s = TcpStream::connect(*addr).await.map_err(io::Error::from)?;
                s.set_nodelay(true).map_err(io::Error::from)?;
                Stream::Tcp(s)
            }
            Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path).await.map_err(io::Error::from)?),
        };
        handshake(settings, &mut stream).await?;
        Ok(stream)
    })
    .await
    .unwrap_or(Err(ConnectError::Timeout(CONNECT_TIMEOUT)))
}

async fn handshake(settings: &Settings, stream: &mut Stream) -> Result<(), ConnectError> {
    let target = &settings.target;
    let mut out = Vec::new();
    // Each entry: what the command was, for the error message, and whether its failure matters.
    let mut expect: Vec<(String, bool)> = Vec::new();
    if let Some(password) = &target.password {
        match &target.user {
            Some(user) => {
                resp::encode_command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()]);
                expect.push((format!("AUTH as user '{user}'"), true));
            }
            None => {
                resp::encode_command(&mut out, &[b"AUTH", password.as_bytes()]);
                expect.push(("AUTH".into(), true));
            }
        }
    }
    if target.db != 0 {
        resp::encode_command(&mut out, &[b"SELECT", itoa::Buffer::new().format(target.db).as_bytes()]);
        expect.push((format!("SELECT {}", target.db), true));
    }
    let name = format!("hitcore-shard-{}", settings.shard);
    resp::encode_command(&mut out, &[b"CLIENT", b"SETNAME", name.as_bytes()]);
    expect.push(("CLIENT SETNAME".into(), false));
    // PING proves the session works: without AUTH against a server that wants it, this is NOAUTH.
    resp::encode_command(&mut out, &[b"PING"]);
    expect.push(("PING".into(), true));
    stream.write_all(&out).await?;
    stream.flush().await?;

    let mut buf = vec![0u8; 1024];
    let (mut start, mut end) = (0, 0);
    for (what, matters) in expect {
        let reply = loop {
            if let Some((reply, used)) = resp::decode_reply(&buf[start..end])? {
                let owned = match reply {
                    Reply::Status(_) => Ok(()),
                    Reply::Error(e) => Err(String::from_utf8_lossy(e).into_owned()),
                    // Handshake commands answer +OK or +PONG; anything else means we are not
                    // talking to a Redis that understood them.
                    Reply::Integer(_) | Reply::Unexpected => {
                        return Err(ProtocolError(format!("unexpected reply to {what}")).into());
                    }
                };
                start += used;
                break owned;
            }
            if end == buf.len() {
                return Err(ProtocolError("handshake reply too long".into()).into());
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection").into());
            }
            end += n;
        };
        if let Err(message) = reply {
            if matters {
                return Err(ConnectError::Refused(format!("{what} failed: {message}")));
            }
        }
    }
    Ok(())
}

/// Runs the reader, the writer and the deadline watcher on one task until one of them ends.
async fn session(shared: &Rc<Shared>, stream: Stream) -> SessionEnd {
    let (rd, wr) = futures_lite::io::split(stream);
    let reader = read_replies(shared, rd);
    let writer = write_commands(shared, wr);
    let watcher = watch_deadline(shared);
    futures_lite::future::or(futures_lite::future::or(reader, writer), watcher).await
}

async fn write_commands(shared: &Shared, mut wr: impl AsyncWrite + Unpin) -> SessionEnd {
    let mut out = Vec::with_capacity(4096);
    loop {
        poll_fn(|cx| {
            if shared.queue.borrow().waiting.is_empty() {
                *shared.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        encode_waiting(shared, &mut out);
        if let Err(e) = wr.write_all(&out).await {
            return e.into();
        }
        out.clear();
    }
}

/// Moves everything waiting into the written FIFO and appends its commands to `out`, in one step
/// with no await, so the order of bytes on the wire is the order of the FIFO.
fn encode_waiting(shared: &Shared, out: &mut Vec<u8>) {
    let mut q = shared.queue.borrow_mut();
    let q = &mut *q;
    let now = Instant::now();
    if shared.settings.coalesce {
        let total: u64 = q.waiting.iter().map(|(_, n)| n).sum();
        let tickets = q.waiting.len();
        q.groups.push_back((total, tickets, now));
        q.members.extend(q.waiting.drain(..));
        shared.meter.get().round_trip(total);
        if total == 1 {
            out.extend_from_slice(&shared.incr);
        } else {
            let mut by = itoa::Buffer::new();
            resp::encode_command(out, &[b"INCRBY", shared.settings.key.as_bytes(), by.format(total).as_bytes()]);
        }
    } else {
        for (ticket, n) in q.waiting.drain(..) {
            for _ in 0..n {
                shared.meter.get().round_trip(1);
                q.groups.push_back((1, 1, now));
                q.members.push_back((ticket.clone(), 1));
                out.extend_from_slice(&shared.incr);
            }
        }
    }
}

async fn read_replies(shared: &Shared, mut rd: impl AsyncRead + Unpin) -> SessionEnd {
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
                    if let Err(e) = complete_group(shared, reply) {
                        return e.into();
                    }
                    start += used;
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

/// Hands the oldest written command's reply to the requests it covers.
fn complete_group(shared: &Shared, reply: Reply<'_>) -> Result<(), ProtocolError> {
    let mut q = shared.queue.borrow_mut();
    let Some((total, tickets, _)) = q.groups.pop_front() else {
        return Err(ProtocolError("a reply arrived with no command waiting for it".into()));
    };
    let outcome = match reply {
        // The reply v to INCRBY k covers v-k+1 ..= v, handed out in registration order. A v so low
        // that the range would leave i64 is no reply to our INCRBY: the stream is out of step.
        Reply::Integer(v) => match v.checked_sub(total as i64 - 1) {
            Some(first) => {
                shared.last_ok.set(true);
                Outcome::Value(first)
            }
            None => {
                q.groups.push_front((total, tickets, Instant::now()));
                return Err(ProtocolError(format!("INCRBY {total} answered with {v}")));
            }
        },
        Reply::Error(message) => {
            shared.last_ok.set(false);
            shared.error_log.record(&shared.settings.key, message);
            Outcome::Failed(Failure::ErrorReply)
        }
        Reply::Status(_) | Reply::Unexpected => {
            // Put the group back so fail_all answers its requests along with the rest.
            q.groups.push_front((total, tickets, Instant::now()));
            return Err(ProtocolError("expected an integer reply to INCR".into()));
        }
    };
    q.pending -= total;
    // Waking a glommio task only queues it, so completing tickets under the borrow re-enters nothing.
    let mut next = outcome;
    for (ticket, n) in q.members.drain(..tickets) {
        ticket.push(next, n);
        if let Outcome::Value(v) = next {
            // At most the reply plus one, which only the last member computes and nobody uses:
            // wrapping there (a reply of i64::MAX) is harmless.
            next = Outcome::Value(v.wrapping_add(n as i64));
        }
    }
    Ok(())
}

/// Ends the session when the oldest written command has waited longer than `--redis-timeout`:
/// a stalled Redis then costs its waiting clients one timeout, not forever, and the FIFO stays in
/// step because the connection is rebuilt rather than the late reply being matched to a new request.
async fn watch_deadline(shared: &Shared) -> SessionEnd {
    let limit = shared.settings.timeout;
    let period = (limit / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        glommio::timer::sleep(period).await;
        let oldest = shared.queue.borrow().groups.front().map(|g| g.2);
        if oldest.is_some_and(|sent| sent.elapsed() > limit) {
            return SessionEnd::Timeout(limit);
        }
    }
}

/// Logs error replies at most once a second, with a count of those not logged.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl ErrorLog {
    fn record(&self, key: &str, message: &[u8]) {
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.suppressed.set(self.suppressed.get() + 1);
            return;
        }
        let also = self.suppressed.replace(0);
        let message = crate::logging::escape(message);
        error!(
            "Redis answered INCR on key '{key}' with an error: {message} (answering 500; {also} more since the last report)"
        );
        self.last.set(Some(now));
    }
}
