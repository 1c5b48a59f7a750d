//! One shard's Redis connection: pipelined, coalescing, reconnecting.
//!
//! It owns the shard's only Redis connection task. Requests register a [`Ticket`] and a count
//! with [`Redis::incr`]; one writer turns everything waiting into one write (what is written, and
//! how replies are shared out, is `queue`'s arithmetic); one reader decodes replies in order. Both
//! run on one task with a deadline watcher (the scylla driver's router shape); when any of them
//! ends, every request whose command is queued or written gets a failure (never a silent replay:
//! an INCR whose reply was lost may or may not have happened), and the connection is rebuilt
//! with capped, jittered backoff. A reply that says
//! the node is not a writable primary (`-READONLY`, `-LOADING`, `-MASTERDOWN`) or a WAIT shortfall
//! ends the session the same way: that batch is answered 503, and the node is looked up again.
//!
//! It must not know about HTTP: failures are [`Failure`]s, and the connection decides the status.
//! Everything is shard-local (`Rc`/`RefCell`/`Cell`); no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use tracing::{debug, error, info, warn};

use super::queue::{Batching, Completed, Queue};
pub use super::queue::{Failure, Outcome, Ticket};
use super::resp::{self, ErrorKind, ProtocolError, Reply};
use super::url::{Endpoint, RedisTarget};

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
}

/// The shard's handle to its Redis connection.
#[derive(Debug, Clone)]
pub struct Redis(Rc<Shared>);

impl Redis {
    /// Creates the handle and starts the connection task on the current executor. The shard is
    /// usable at once: until the first connection succeeds, requests fail fast as `Unavailable`.
    pub fn start(settings: Settings) -> Redis {
        let batching = Batching::new(&settings.key, settings.coalesce, None);
        let shared = Rc::new(Shared {
            settings,
            batching,
            up: Cell::new(false),
            queue: RefCell::default(),
            writer: RefCell::new(None),
            error_log: RateLimited::default(),
            wait_log: RateLimited::default(),
            attempted: Cell::new(false),
            attempt_waiter: RefCell::new(None),
        });
        glommio::spawn_local(maintain(shared.clone())).detach();
        Redis(shared)
    }

    /// Whether the connection is up (requests would be sent, not refused).
    pub fn is_up(&self) -> bool {
        self.0.up.get()
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
}

/// The connection task: connect, run a session until it breaks, fail what was pending, back off,
/// again. Logs once per change of state, not once per attempt.
async fn maintain(shared: Rc<Shared>) {
    let target = shared.settings.target.clone();
    let mut delay = BACKOFF_START;
    let mut last_failure: Option<String> = None;
    let mut down_since: Option<Instant> = None;
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
                shared.up.set(true);
                let end = session(&shared, stream).await;
                shared.up.set(false);
                let failed = shared.queue.borrow_mut().fail_all(Failure::Lost);
                match &end {
                    SessionEnd::NotPrimary(_) | SessionEnd::NotDurable => {
                        error!("Redis at {target}: {end}; {failed} more requests in flight answered 503; reconnecting")
                    }
                    _ => error!(
                        "Lost the connection to Redis at {target}: {end}; {failed} requests in flight answered 503"
                    ),
                }
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
    /// `-READONLY`, `-LOADING`, `-MASTERDOWN` (or a Cluster redirect): the node takes no writes.
    #[error("it refused a write: {0}")]
    NotPrimary(String),
    /// Fewer replicas than `--wait-replicas` acknowledged: this may be a primary that has been
    /// replaced (its replicas left it), so the node is looked up again.
    #[error("fewer replicas than --wait-replicas acknowledged a write")]
    NotDurable,
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
            if shared.queue.borrow().has_waiting() {
                Poll::Ready(())
            } else {
                *shared.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        shared.queue.borrow_mut().encode_waiting(&shared.batching, &mut out, Instant::now());
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
                    let completed = shared.queue.borrow_mut().complete(&shared.batching, reply);
                    start += used;
                    match completed {
                        Ok(done) => {
                            if let Some(end) = report(shared, done) {
                                return end;
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
fn report(shared: &Shared, done: Completed<'_>) -> Option<SessionEnd> {
    let key = &shared.settings.key;
    match done {
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
            Some(SessionEnd::NotPrimary(match kind {
                ErrorKind::Redirect => {
                    format!("{message} (a Redis Cluster node; hitcore needs redis+cluster:// for it)")
                }
                _ => message,
            }))
        }
        Completed::Waited { acked, wanted } => {
            let timeout = shared.batching.wait.map_or(0, |(_, ms)| ms);
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
