//! One HTTP connection's life on a shard: read, parse every complete request, one Redis batch, one
//! write, repeat; deadlines; a clean close.
//!
//! It owns the per-connection loop and its buffers, the choice of answer for each request, and the
//! close rules (errors close, `Connection: close` closes, a draining shard closes after the current
//! batch). Reads go through the shard's shared scratch buffer and writes are first tried straight
//! from the shard's shared output buffer, so a connection owns no buffer while it is idle and
//! copies bytes only when the kernel cannot take them at once. It must not parse bytes itself
//! (`parse` does) or format them (`response` does).

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use tracing::debug;

use super::access;
use super::parse::{Limits, Method, ParseError, Parser, Request, Step, Target, Version};
use super::response::{self, Answer, Persist};
use crate::config::MAX_PIPELINE;
use crate::redis::client::{Failure, Outcome, Ticket};
use crate::shard::Shard;

/// A connection's own input buffer is released once idle if it grew beyond this.
const KEEP_INPUT_CAPACITY: usize = 4096;
/// After answering with an error, unread input is drained for at most this long before closing,
/// so the client reads the response instead of a reset (a "lingering close").
const LINGER: Duration = Duration::from_secs(1);
/// ... and at most this many bytes.
const LINGER_BYTES: usize = 64 * 1024;

/// What the shard knows about a live connection, for draining on a graceful stop and for making
/// room at the connection cap.
#[derive(Debug)]
pub struct Entry {
    fd: RawFd,
    /// True while a connection that has been answered at least once waits for the first byte of
    /// its next request: the only moment it may be closed without cutting a request in half.
    idle: Cell<bool>,
    /// Since when the connection has been waiting for a complete request (from its accept or its
    /// last answer); `None` while a batch of its requests is being answered.
    waiting_since: Cell<Option<Instant>>,
}

impl Entry {
    /// How long the connection has waited for a complete request, if it is waiting.
    pub fn waiting_for(&self, now: Instant) -> Option<Duration> {
        self.waiting_since.get().map(|since| now.saturating_duration_since(since))
    }

    /// Whether bytes from the client wait unread in the socket: a connection that just sent its
    /// request but has not been read yet (a busy shard) must not be taken for an idle one.
    pub fn has_unread_input(&self) -> bool {
        let mut pending: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; the fd belongs to a live connection.
        let rc = unsafe { libc::ioctl(self.fd, libc::FIONREAD, &mut pending) };
        rc == 0 && pending > 0
    }

    /// Closes a waiting connection outright to free its slot (see the shard's connection cap): its
    /// pending read ends, and it closes without an answer, as a timed-out one would.
    pub fn evict(&self) {
        // SAFETY: the fd belongs to a live connection (entries are removed before it closes).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    /// Closes the connection's read side if it is idle, which ends its wait for a next request
    /// (its read returns end-of-file). A busy connection finishes its batch and answers it with
    /// `Connection: close`, seeing that the shard is draining.
    pub fn close_if_idle(&self) {
        if self.idle.get() {
            // SAFETY: the fd belongs to a live connection (entries are removed before it closes).
            unsafe { libc::shutdown(self.fd, libc::SHUT_RD) };
        }
    }
}

/// What one parsed request is waiting for.
#[derive(Debug)]
struct Slot {
    /// `None` for a GET on `/`, which takes the next counter value; otherwise the answer is known.
    answer: Option<Answer>,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    access: Option<access::Head>,
}

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: Option<IpAddr>) {
    let entry = Rc::new(Entry {
        fd: stream.as_raw_fd(),
        idle: Cell::new(false),
        waiting_since: Cell::new(Some(Instant::now())),
    });
    let key = shard.conns.borrow_mut().insert(entry.clone());
    let mut conn = Conn {
        parser: Parser::new(shard.config.limits),
        input: Vec::new(),
        batch: Vec::new(),
        ticket: Ticket::default(),
        peer,
        parsed_partial: 0,
    };
    let linger = conn.run(&shard, &mut stream, &entry).await;
    shard.conns.borrow_mut().remove(key);
    if linger {
        // Send our FIN now, then read what the client still sends, so our answer is not lost to a
        // reset; a plain close (below) already sends the FIN when nothing is left unread.
        let _ = stream.shutdown(Shutdown::Write).await;
        drain_before_close(&mut stream).await;
    }
}

struct Conn {
    parser: Parser,
    /// Bytes read but not yet consumed: a partial head, or pipelined requests beyond a batch.
    input: Vec<u8>,
    batch: Vec<Slot>,
    ticket: Ticket,
    peer: Option<IpAddr>,
    /// The length `input` had when its head was last parsed and found incomplete (0: none). Until a
    /// line ends or the current line outgrows every limit, parsing again cannot decide anything
    /// new; skipping it keeps a head sent in many small pieces linear in cost, not quadratic.
    parsed_partial: usize,
}

impl Conn {
    /// The read-parse-answer loop. Returns whether unread input may still be arriving, in which case
    /// the caller drains it before closing.
    async fn run(&mut self, shard: &Shard, stream: &mut TcpStream, entry: &Entry) -> bool {
        let cfg = &shard.config;
        // Read once per wake-up (after each answer and each read): deadlines are seconds apart, and
        // the clock is then read twice per request, not five times.
        let mut now = Instant::now();
        let mut deadline = now + cfg.header_timeout;
        // A connection becomes idle (closable by a draining shard) only after its first answer: a
        // client that has just connected is about to send its request and gets it answered.
        let mut answered_any = false;
        loop {
            let close = self.parse_batch(shard, false);
            if !self.batch.is_empty() {
                entry.waiting_since.set(None);
                let close = match self.answer(shard, stream, close).await {
                    Ok(close) => close,
                    Err(e) => {
                        debug!("connection closed while writing: {e}");
                        return false;
                    }
                };
                if close {
                    return !self.input.is_empty() || !self.parser.at_boundary();
                }
                answered_any = true;
                now = Instant::now();
                entry.waiting_since.set(Some(now));
                if self.input.is_empty() && self.input.capacity() > KEEP_INPUT_CAPACITY {
                    self.input = Vec::new();
                }
                deadline = now + if self.input.is_empty() { cfg.keep_alive } else { cfg.header_timeout };
                continue;
            }
            let between_requests = self.input.is_empty() && self.parser.at_boundary();
            let idle = between_requests && answered_any;
            if idle && shard.draining.get() {
                return false;
            }
            let Some(left) = deadline.checked_duration_since(now).filter(|d| !d.is_zero()) else {
                return self.expire(shard, stream).await;
            };
            entry.idle.set(idle);
            let read = read_some(shard, stream, left, &mut self.input).await;
            entry.idle.set(false);
            now = Instant::now();
            match read {
                Ok(0) => return false,
                Ok(_) if between_requests => deadline = now + cfg.header_timeout,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return self.expire(shard, stream).await,
                Err(e) => {
                    debug!("connection read ended: {e}");
                    return false;
                }
            }
        }
    }

    /// The head's deadline has passed. A head that is already invalid gets its error answer (its
    /// last pieces may not have been parsed, see `nothing_new`); an incomplete valid one, or none,
    /// is closed silently, as gunicorn and nginx do. Returns whether to linger before closing.
    async fn expire(&mut self, shard: &Shard, stream: &mut TcpStream) -> bool {
        let close = self.parse_batch(shard, true);
        if self.batch.is_empty() {
            debug!("closing a connection that sent no complete request in time");
            return false;
        }
        self.answer(shard, stream, close).await.is_ok()
    }

    /// Parses every complete request in the input into the batch (up to [`MAX_PIPELINE`]) and drops
    /// the consumed bytes. Returns whether the connection closes after this batch.
    fn parse_batch(&mut self, shard: &Shard, force: bool) -> bool {
        let cfg = &shard.config;
        if !force && self.nothing_new(&cfg.limits) {
            return false;
        }
        let mut at = 0;
        let mut close = false;
        let mut incomplete = false;
        while self.batch.len() < MAX_PIPELINE && !close {
            match self.parser.step(&self.input[at..]) {
                Ok(Step::Request(req)) => {
                    let access =
                        shard.access.as_ref().map(|_| access::Head::capture(&self.input[at..at + req.head_len]));
                    at += req.head_len;
                    close = !req.keep_alive || cfg.keep_alive.is_zero() || shard.draining.get();
                    self.batch.push(slot_for(req, close, access));
                }
                Ok(Step::Skipped(n)) => at += n,
                Ok(Step::Incomplete) => {
                    incomplete = true;
                    break;
                }
                Err(e) => {
                    debug!("rejecting a request: {e}");
                    self.batch.push(rejected(e));
                    close = true;
                }
            }
        }
        self.input.drain(..at);
        let partial_head = incomplete && self.parser.at_boundary() && !self.input.is_empty();
        self.parsed_partial = if partial_head { self.input.len() } else { 0 };
        close
    }

    /// Whether the input has not changed in a way that could complete or break the partial head
    /// parsed last time: no new line ended, the current line is within every line limit, the whole
    /// within the head limit.
    fn nothing_new(&self, limits: &Limits) -> bool {
        let seen = self.parsed_partial;
        if seen == 0 || seen > self.input.len() || !self.parser.at_boundary() {
            return false;
        }
        if self.input[seen..].contains(&b'\n') {
            return false;
        }
        let line_start = self.input[..seen].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let longest_line = limits.request_line.max(limits.field_size) + 1;
        self.input.len() - line_start <= longest_line && self.input.len() <= limits.max_head()
    }

    /// Gets a counter value for every GET in the batch with one Redis registration, then writes all
    /// the responses, in request order, with one write. Returns whether the connection closes now:
    /// as decided when parsing, or because the shard started draining while the batch waited.
    async fn answer(&mut self, shard: &Shard, stream: &mut TcpStream, close: bool) -> io::Result<bool> {
        let increments = self.batch.iter().filter(|s| s.answer.is_none()).count();
        if increments > 0 {
            shard.redis.incr(&self.ticket, increments);
            self.ticket.wait().await;
        }
        let close = close || shard.draining.get();
        let last = self.batch.len() - 1;
        let unsent = {
            let outcomes = self.ticket.outcomes();
            let mut values = outcomes.iter().take(increments);
            let mut out = shard.output.borrow_mut();
            out.clear();
            for (i, slot) in self.batch.drain(..).enumerate() {
                let answer = slot.answer.unwrap_or_else(|| match values.next() {
                    Some(Outcome::Value(v)) => Answer::Count(*v),
                    Some(Outcome::Failed(Failure::ErrorReply)) => Answer::RedisError,
                    Some(Outcome::Failed(_)) | None => Answer::Unavailable,
                });
                let persist = if slot.keep_alive && !(close && i == last) {
                    Persist::KeepAlive(slot.version)
                } else {
                    Persist::Close
                };
                let body = response::write(&mut out, answer, persist, slot.head_only, &shard.date);
                shard.requests.set(shard.requests.get() + 1);
                if let Some(log) = &shard.access {
                    let sent = (!slot.head_only && body > 0).then_some(body);
                    log.record(self.peer, slot.access.as_ref(), answer.status().code(), sent);
                }
            }
            let sent = try_send(stream, &out)?;
            // Only what the kernel did not take is copied out of the shared buffer.
            out[sent..].to_vec()
        };
        if !unsent.is_empty() {
            write_within(stream, &unsent, shard.config.write_timeout).await?;
        }
        Ok(close)
    }
}

/// Which answer a parsed request gets, or `None` if it needs a counter value.
fn slot_for(req: Request, close: bool, access: Option<access::Head>) -> Slot {
    let answer = match (req.target, req.method) {
        (Target::Root, Method::Get) => None,
        (Target::Root, Method::Head) => Some(Answer::Head),
        (Target::Root | Target::Asterisk, Method::Options) => Some(Answer::Options),
        (Target::Root, _) | (_, Method::Connect) => Some(Answer::MethodNotAllowed),
        (Target::Asterisk, _) | (Target::Other, _) => Some(Answer::NotFound),
    };
    Slot { answer, version: req.version, keep_alive: !close, head_only: req.method == Method::Head, access }
}

fn rejected(e: ParseError) -> Slot {
    Slot {
        answer: Some(Answer::Rejected(e)),
        version: Version::Http11,
        keep_alive: false,
        head_only: false,
        access: None,
    }
}

/// Reads whatever is available into `input` through the shard's scratch buffer, waiting at most
/// `limit`. The scratch is borrowed only inside each poll, never across a suspension.
async fn read_some(shard: &Shard, stream: &mut TcpStream, limit: Duration, input: &mut Vec<u8>) -> io::Result<usize> {
    stream.set_read_timeout(Some(limit)).map_err(io::Error::from)?;
    let n = poll_fn(|cx| {
        let mut scratch = shard.scratch.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                input.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
    .await?;
    Ok(n)
}

/// Writes as much of `bytes` as the kernel takes right now, without waiting, with plain
/// non-blocking `send` calls on the socket. It deliberately does not poll the glommio stream with a
/// dummy waker: that would arm the stream's write timeout with the dummy, and a later real wait
/// would never be woken by it (a client that never reads was then never timed out).
fn try_send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let fd = stream.as_raw_fd();
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: a valid socket and a valid buffer of `rest.len()` bytes.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        match n {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n if n > 0 => sent += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(sent)
}

/// Writes all of `bytes` within `limit`, or fails with `TimedOut`. The deadline covers the whole
/// batch, not each write (glommio's write timeout, like nginx's `send_timeout`, restarts at every
/// write that makes progress), so a client that reads a byte now and then to stay just ahead of the
/// timeout still has to take each batch (at most 128 answers) within `--write-timeout`.
async fn write_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left)).map_err(io::Error::from)?;
        match stream.write(&bytes[done..]).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Reads and discards what the client still sends, until it closes, for at most [`LINGER`].
async fn drain_before_close(stream: &mut TcpStream) {
    let until = Instant::now() + LINGER;
    // On the heap, not in the future: a 4 KiB array here made every connection's task 16 KiB larger
    // (measured: 20 KB of heap per idle connection before, 4 KB after).
    let mut sink = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else { return };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
