//! One session on a ready connection: the writer turns everything waiting into one write, the
//! reader decodes replies in order and hands them to the queue, a watcher ends the session when a
//! written command outlives `--redis-timeout`, and (Sentinel) a failover announcement ends it too.
//! All run on the connection task (the scylla driver's router shape) until one of them ends, and
//! [`run`] says why ([`SessionEnd`]).
//!
//! It acts on what a reply meant (log it, rate-limited; follow a redirection; end the session),
//! but completes no ticket itself: the queue does. Reconnecting is `client`'s and `reconnect`'s.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{error, warn};

use super::cluster::ask::Asked;
use super::cluster::moves::{Redirection, Verdict};
use super::dial::Address;
use super::errors::{self, ErrorKind};
use super::queue::{Completed, Failure};
use super::resp::{self, ProtocolError};
use super::shared::Shared;
use super::stream::Stream;

/// Replies to INCR are a few bytes; a reply buffer this large means Redis sent something else.
const MAX_REPLY_BUFFER: usize = 1 << 20;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Redis closed the connection.
    #[error("Redis closed the connection")]
    Closed,
    /// A written command waited longer than `--redis-timeout`.
    #[error("no reply within {0:?} (--redis-timeout)")]
    Timeout(Duration),
    /// The replies could not be understood or were out of step.
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
    #[error("the key's slot moved to {}", .0.to())]
    Moved(Verdict),
}

/// Runs the reader, the writer and the deadline watcher on one task until one of them ends.
pub async fn run(shared: &Rc<Shared>, mut stream: Stream, node: &Address) -> SessionEnd {
    // Replies arrive as completions of one receive for the session's life: measured (issue 21,
    // docs/performance.md), 0.04-0.16 fewer syscalls per request than a `recv` that finds nothing
    // and a poll armed after each batch's replies.
    stream.use_multishot_recv();
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
        // A write of owed EXPIREs alone carries no request: it is no batch of the histogram.
        if shared.settings.coalesce && increments > 0 {
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
                                let cluster = shared.follow.cluster().expect("only a Cluster session drains");
                                let verdict = cluster.moves.borrow_mut().drained(Instant::now());
                                return SessionEnd::Moved(verdict.expect("draining"));
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
        // A reply may have left a command to write (the EXPIRE of a key a hit created).
        if shared.queue.borrow().has_waiting() {
            if let Some(w) = shared.writer.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Logs what a reply meant, and says whether the session must end because of it.
fn report(shared: &Rc<Shared>, done: Completed<'_>) -> Option<SessionEnd> {
    let key = &shared.settings.key;
    shared.last_ok.set(!matches!(done, Completed::Error(_) | Completed::TryAgain(_)));
    match done {
        Completed::Redirected(message) => {
            let cluster = shared.follow.cluster().expect("redirects are followed only in a Cluster");
            let redirection = cluster.moves.borrow_mut().redirected(message);
            match redirection {
                Redirection::Moved => None,
                Redirection::Ask(to) => {
                    let (id, total) = shared.queue.borrow_mut().take_redirected()?;
                    let (shared, asker) = (shared.clone(), cluster.asker.clone());
                    glommio::spawn_local(async move {
                        let asked = asker.send(&to, &shared.batching.key, total).await;
                        if !matches!(asked, Asked::Value { .. }) {
                            warn!("A batch redirected with -ASK to {to} got no value there: {asked:?}; answering 503");
                        }
                        shared.queue.borrow_mut().settle_asked(&shared.batching, id, &asked);
                    })
                    .detach();
                    None
                }
                Redirection::Unreadable => {
                    shared.queue.borrow_mut().fail_redirected(Failure::NotPrimary);
                    Some(SessionEnd::NotPrimary(crate::logging::escape(message)))
                }
            }
        }
        Completed::Served => None,
        Completed::Waited { acked, wanted } if acked >= i64::from(wanted) => None,
        Completed::Error(raw) => {
            let message = crate::logging::escape(raw);
            let fix = match errors::advice(raw) {
                "" => String::new(),
                advice => format!("; {advice}"),
            };
            shared.error_log.record(|also| {
                error!(
                    "Redis answered INCR on key '{key}' with an error: {message}{fix} (answering 500; {also} more \
                     since the last report)"
                )
            });
            None
        }
        Completed::TryAgain(raw) => {
            let message = crate::logging::escape(raw);
            let meaning = errors::advice(raw);
            shared.try_again_log.record(|also| {
                warn!(
                    "Redis cannot take increments now: {message} ({meaning}); answering 503 with Retry-After \
                     ({also} more since the last report)"
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
