//! One HTTP connection's life on a shard: read, parse every complete request, one Redis batch, one
//! write, repeat; deadlines; a clean close.
//!
//! It owns the per-connection loop and its buffers, the choice of answer for each request (the
//! health check's and `HEAD /`'s through `health`), the close rules (errors close, `Connection:
//! close` closes, a draining shard closes after the current batch), reading a PROXY protocol header
//! first when `--proxy-protocol` says so, and counting each answer into the shard's metrics slot.
//! It is handed a [`Context`] and knows nothing else of the shard. Reads go through the context's
//! shared scratch buffer and writes are first tried straight from its shared output buffer, so a
//! connection owns no buffer while it is idle and copies bytes only when the kernel cannot take them
//! at once. It must not parse bytes itself (`parse` and `proxy` do), format them (`response` and the
//! access log do) or do socket calls beyond its loop (`io` does).

mod io;
pub mod registry;
mod speculate;
mod sse;
pub mod tls;
mod transport;

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;
use tracing::{debug, warn};

use super::access::{self, Record};
use super::context::{Context, Counters};
use super::health;
use super::parse::{Fields, Limits, Method, ParseError, Parser, Request, Step, Target, Version};
use super::proxy::{self, Parsed};
use super::response::{self, Answer, Persist};
use crate::api::route::Call;
use crate::metrics::shm::{Handshake, Meter, Timeout, Unavailable};
use crate::redis::client::{Failure, Outcome, Ticket};
use crate::redis::keyed::KeyedTicket;
use io::{drain_before_close, read_after_answer, read_some, write_within};
use registry::{Entry, Registered};
use smallvec::SmallVec;
use speculate::Speculation;
use tls::{NoTls, Tls};
use transport::Transport;

/// Pipelined requests taken from one connection per batch. More stay in its buffer for the next
/// batch, so one client cannot make a shard hold an unbounded batch.
pub const MAX_PIPELINE: usize = 128;

/// A connection's own input buffer is released once idle if it grew beyond this.
const KEEP_INPUT_CAPACITY: usize = 4096;

/// What a parsed request needs before it can be answered.
#[derive(Debug)]
enum Work {
    /// A GET on `/`: the next value of the seed counter.
    Count,
    /// Nothing: the answer is known.
    Known(Answer),
    /// A counting API request (`crate::api`), run with the batch's other API requests.
    Api(Box<Call>),
}

/// What one parsed request is waiting for.
#[derive(Debug)]
struct Slot {
    work: Work,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    access: Option<access::Head>,
}

/// Serves one accepted plain-HTTP connection until it closes.
pub async fn serve(ctx: Rc<Context>, mut stream: TcpStream, peer: Option<IpAddr>) {
    // Registered for as long as the socket is open: the guard's drop (on any way out of this task,
    // a panic included) removes the entry before the socket is closed, so the registry never holds
    // a descriptor that is closed or already reused by another connection.
    let entry = ctx.registry.register(stream.as_raw_fd());
    let _open = opened(&ctx);
    // One multishot receive for the connection's life instead of a poll per read that waits
    // (glommio patch 10); glommio keeps the poll where the kernel refuses it.
    stream.use_multishot_recv();
    serve_on(&ctx, &mut stream, peer, entry).await;
}

/// Serves one accepted HTTPS connection until it closes: the handshake (within
/// `--header-timeout`), then the same loop as plain HTTP over TLS. Its task is a separate
/// instance from [`serve`]'s, so plain connections carry nothing of TLS.
pub async fn serve_tls(ctx: Rc<Context>, stream: TcpStream, peer: Option<IpAddr>, tls: Rc<Tls>) {
    // Registered (and evictable at the cap) from the start: a client that stalls its handshake
    // waits for a complete request as much as one that stalls its head.
    let entry = ctx.registry.register(stream.as_raw_fd());
    let _open = opened(&ctx);
    let started = tls::handshake(&tls, stream, peer, ctx.settings.header_timeout).await;
    ctx.observing.meter.handshake(match &started {
        Ok(_) => Handshake::Done,
        Err(NoTls::Failed) => Handshake::Failed,
        Err(NoTls::PlainHttp) => Handshake::PlainHttp,
        Err(NoTls::Silent) => Handshake::Closed,
    });
    let Ok(mut stream) = started else { return };
    // After the handshake, whose first byte is peeked from the socket: a multishot receive armed
    // before it would take that byte.
    stream.get_mut().0.use_multishot_recv();
    serve_on(&ctx, &mut *stream, peer, entry).await;
}

/// Counts a new connection, for as long as the returned guard lives.
fn opened(ctx: &Context) -> OpenConnection {
    Counters::bump(&ctx.counters.connections);
    let open = OpenConnection::new(ctx.observing.meter);
    #[cfg(feature = "test-hooks")]
    if ctx.panic_at == Some(ctx.counters.connections.get()) {
        panic!("test hook: HITCORE_TEST_PANIC_CONNECTION");
    }
    open
}

/// The connection's life after its transport is ready: the PROXY protocol header if configured,
/// the loop, and a lingering close when input may still be arriving.
async fn serve_on<S: Transport>(ctx: &Context, stream: &mut S, peer: Option<IpAddr>, entry: Registered<'_>) {
    let mut conn = Conn {
        parser: Parser::new(ctx.settings.limits),
        input: Vec::new(),
        batch: Vec::new(),
        ticket: Ticket::default(),
        api_ticket: None,
        peer,
        parsed_partial: 0,
        speculation: Speculation::default(),
        streaming: None,
    };
    if let Some(proxy) = &ctx.observing.proxy_protocol {
        if !proxy.admits(peer) {
            ctx.observing.meter.proxy_rejected();
            return;
        }
        match conn.read_proxy_header(ctx, stream, &entry).await {
            Ok(Some(source)) => conn.peer = Some(source),
            Ok(None) => {}
            Err(None) => return,
            Err(Some(reason)) => {
                ctx.observing.meter.proxy_rejected();
                let from = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
                warn!("closing a connection from {from}: {reason} (--proxy-protocol)");
                return;
            }
        }
    }
    let linger = conn.run(ctx, stream, &entry).await;
    drop(entry);
    if linger {
        // Send our FIN now, then read what the client still sends, so our answer is not lost to a
        // reset; a plain close (below) already sends the FIN when nothing is left unread.
        stream.close_write().await;
        drain_before_close(stream).await;
    }
}

/// Counts a connection open for as long as it lives, whichever way its task ends.
struct OpenConnection(Meter);

impl OpenConnection {
    fn new(meter: Meter) -> OpenConnection {
        meter.opened();
        OpenConnection(meter)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.closed();
    }
}

struct Conn {
    parser: Parser,
    /// Bytes read but not yet consumed: a partial head, or pipelined requests beyond a batch.
    input: Vec<u8>,
    batch: Vec<Slot>,
    ticket: Ticket,
    /// Where the counting API's replies land, made at the connection's first API request and
    /// re-armed for each batch's rounds after it.
    api_ticket: Option<KeyedTicket>,
    peer: Option<IpAddr>,
    /// The length `input` had when its head was last parsed and found incomplete (0: none). Until a
    /// line ends or the current line outgrows every limit, parsing again cannot decide anything
    /// new; skipping it keeps a head sent in many small pieces linear in cost, not quadratic.
    parsed_partial: usize,
    /// Whether the read after an answer tries `recv` before arming a poll (see `speculate`).
    speculation: Speculation,
    /// Set when the batch just answered was a `/stream`: the connection streams its events next.
    streaming: Option<crate::redis::subscribe::Subscription>,
}

impl Conn {
    /// Reads the PROXY protocol header every connection on a `--proxy-protocol` listener starts
    /// with, within `--header-timeout`, and leaves what follows it in the input. Returns the client
    /// address it names (`None`: a LOCAL/UNKNOWN header, the peer stands), or why the connection
    /// must close (`None`: it closed before sending anything, which is not worth a log line).
    async fn read_proxy_header<S: Transport>(
        &mut self,
        ctx: &Context,
        stream: &mut S,
        entry: &Entry,
    ) -> Result<Option<IpAddr>, Option<String>> {
        let deadline = Instant::now() + ctx.settings.header_timeout;
        loop {
            match proxy::parse(&self.input) {
                Ok(Parsed::Header { len, source }) => {
                    self.input.drain(..len);
                    return Ok(source.map(|s| s.ip()));
                }
                Ok(Parsed::Incomplete) => {}
                Err(reason) => return Err(Some(reason)),
            }
            if deadline <= Instant::now() {
                return Err(Some("no complete PROXY protocol header within --header-timeout".into()));
            }
            match read_some(ctx, stream, entry, deadline, &mut self.input).await {
                Ok(0) if self.input.is_empty() => return Err(None),
                Ok(0) => return Err(Some("closed in the middle of its PROXY protocol header".into())),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Some("no complete PROXY protocol header within --header-timeout".into()));
                }
                Err(e) => return Err(Some(format!("read failed before its PROXY protocol header: {e}"))),
            }
        }
    }

    /// The read-parse-answer loop. Returns whether unread input may still be arriving, in which case
    /// the caller drains it before closing.
    async fn run<S: Transport>(&mut self, ctx: &Context, stream: &mut S, entry: &Entry) -> bool {
        let cfg = &ctx.settings;
        // Read once per wake-up (after each answer and each read): deadlines are seconds apart, and
        // the clock is then read twice per request, not five times.
        let mut now = Instant::now();
        let mut deadline = now + cfg.header_timeout;
        // A connection becomes idle (closable by a draining shard) only after its first answer: a
        // client that has just connected is about to send its request and gets it answered.
        let mut answered_any = false;
        // Whether the next read is the first after an answer, with nothing of the next request
        // read yet: the client may still be waiting for that answer (see `speculate`).
        let mut after_answer = false;
        loop {
            let close = self.parse_batch(ctx, false);
            if !self.batch.is_empty() {
                entry.set_waiting(None);
                let close = match self.answer(ctx, stream, close, now).await {
                    Ok(close) => close,
                    Err(e) => {
                        debug!("connection closed while writing: {e}");
                        return false;
                    }
                };
                if let Some(subscription) = self.streaming.take() {
                    sse::serve(ctx, stream, entry, subscription).await;
                    return false;
                }
                if close {
                    return !self.input.is_empty() || !self.parser.at_boundary();
                }
                answered_any = true;
                now = Instant::now();
                entry.set_waiting(Some(now));
                if self.input.is_empty() && self.input.capacity() > KEEP_INPUT_CAPACITY {
                    self.input = Vec::new();
                }
                deadline = now + if self.input.is_empty() { cfg.keep_alive } else { cfg.header_timeout };
                after_answer = self.input.is_empty();
                continue;
            }
            let between_requests = self.input.is_empty() && self.parser.at_boundary();
            let idle = between_requests && answered_any;
            if idle && ctx.draining.get() {
                return false;
            }
            let kind = if idle { Timeout::KeepAlive } else { Timeout::Header };
            if deadline <= now {
                return self.expire(ctx, stream, kind).await;
            }
            entry.set_idle(idle);
            let read = if std::mem::take(&mut after_answer) {
                let try_first = self.speculation.try_now();
                let read = read_after_answer(ctx, stream, entry, deadline, &mut self.input, try_first).await;
                if try_first {
                    self.speculation.found(matches!(read, Ok((_, true))));
                }
                read.map(|(n, _)| n)
            } else {
                read_some(ctx, stream, entry, deadline, &mut self.input).await
            };
            entry.set_idle(false);
            now = Instant::now();
            match read {
                Ok(0) => return false,
                Ok(_) if between_requests => deadline = now + cfg.header_timeout,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return self.expire(ctx, stream, kind).await,
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
    async fn expire<S: Transport>(&mut self, ctx: &Context, stream: &mut S, kind: Timeout) -> bool {
        ctx.observing.meter.timeout(kind);
        let close = self.parse_batch(ctx, true);
        if self.batch.is_empty() {
            debug!("closing a connection that sent no complete request in time");
            return false;
        }
        self.answer(ctx, stream, close, Instant::now()).await.is_ok()
    }

    /// Parses every complete request in the input into the batch (up to [`MAX_PIPELINE`]) and drops
    /// the consumed bytes. Returns whether the connection closes after this batch.
    fn parse_batch(&mut self, ctx: &Context, force: bool) -> bool {
        let cfg = &ctx.settings;
        if !force && self.nothing_new(&cfg.limits) {
            return false;
        }
        let mut at = 0;
        let mut close = false;
        let mut incomplete = false;
        while self.batch.len() < MAX_PIPELINE && !close {
            match self.parser.step(&self.input[at..]) {
                Ok(Step::Request(req)) => {
                    let head = &self.input[at..at + req.head_len];
                    let access = ctx.access.as_ref().map(|log| log.capture(head));
                    let work = route(ctx, &req, head, self.parser.fields(), self.peer);
                    at += req.head_len;
                    // A stream keeps the connection to itself: nothing after it is read as a request.
                    let streams = matches!(&work, Work::Api(c) if c.route == crate::api::route::Route::Stream);
                    close = !req.keep_alive || cfg.keep_alive.is_zero() || ctx.draining.get() || streams;
                    self.batch.push(slot_for(req, work, close, access));
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
    /// `ready` is when the batch's requests were complete: latencies are measured from it.
    async fn answer<S: Transport>(
        &mut self,
        ctx: &Context,
        stream: &mut S,
        close: bool,
        ready: Instant,
    ) -> std::io::Result<bool> {
        let increments = self.batch.iter().filter(|s| matches!(s.work, Work::Count)).count();
        if increments > 0 {
            ctx.redis.incr(&self.ticket, increments);
        }
        // Registered with no await since the INCRBY above: both go out in the same write.
        // In a block: `calls` borrows the batch, and a SmallVec (unlike a Vec) holds its borrow
        // until it is dropped, which must come before the batch is drained below.
        {
            // Most batches hold one or two API requests: no heap vector for them.
            let mut calls: SmallVec<[&mut Call; 4]> = self
                .batch
                .iter_mut()
                .filter_map(|s| match &mut s.work {
                    Work::Api(call) => Some(&mut **call),
                    _ => None,
                })
                .collect();
            if !calls.is_empty() {
                let ticket = self.api_ticket.get_or_insert_with(KeyedTicket::default);
                crate::api::serve::run(&ctx.api, &ctx.redis, ticket, &mut calls).await;
            }
        }
        if increments > 0 {
            self.ticket.wait().await;
        }
        let close = close || ctx.draining.get();
        let meter = ctx.observing.meter;
        // One clock read per batch: every answer in it took as long.
        let elapsed = Instant::now().saturating_duration_since(ready);
        let latency_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let last = self.batch.len() - 1;
        let unsent = {
            let outcomes = self.ticket.outcomes();
            let mut values = outcomes.iter().take(increments);
            let mut out = ctx.output.borrow_mut();
            out.clear();
            for (i, slot) in self.batch.drain(..).enumerate() {
                let persist = if slot.keep_alive && !(close && i == last) {
                    Persist::KeepAlive(slot.version)
                } else {
                    Persist::Close
                };
                let start = out.len();
                let (status, body, unavailable) = match slot.work {
                    Work::Api(mut call) => {
                        if status_of(&call) == Some(200) {
                            self.streaming = call.subscription.take();
                        }
                        let (status, body) = ctx.api.write(&mut out, &call, persist, &ctx.date);
                        meter.api_request(call.route.metric_index(), status == 429);
                        (status, body, None)
                    }
                    Work::Known(answer) => known(&mut out, ctx, answer, persist, slot.head_only),
                    Work::Count => {
                        let (answer, reason) = counted(values.next());
                        let (status, body, _) = known(&mut out, ctx, answer, persist, slot.head_only);
                        (status, body, reason)
                    }
                };
                Counters::bump(&ctx.counters.requests);
                meter.response(status, latency_ns);
                if let Some(reason) = unavailable {
                    meter.unavailable(reason);
                }
                if let Some(log) = &ctx.access {
                    log.log(&Record {
                        peer: self.peer,
                        head: slot.access.as_ref(),
                        status,
                        body: (!slot.head_only && body > 0).then_some(body),
                        response: &out[start..],
                        elapsed,
                        scheme: S::SCHEME,
                    });
                }
            }
            let sent = stream.try_send(&out)?;
            // Only what the kernel did not take is copied out of the shared buffer.
            out[sent..].to_vec()
        };
        if !unsent.is_empty() || stream.pending_output() {
            if let Err(e) = write_within(stream, &unsent, ctx.settings.write_timeout).await {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    meter.timeout(Timeout::Write);
                }
                return Err(e);
            }
        }
        Ok(close)
    }
}

/// The status an API call's answer has, once decided.
fn status_of(call: &Call) -> Option<u16> {
    match &call.step {
        crate::api::route::Step::Done(reply) => Some(reply.status),
        crate::api::route::Step::Request(_) => None,
    }
}

/// Appends an answer of the seed counter's kind; returns its status, body length and, for a 503,
/// why.
fn known(
    out: &mut Vec<u8>,
    ctx: &Context,
    answer: Answer,
    persist: Persist,
    head_only: bool,
) -> (u16, usize, Option<Unavailable>) {
    let unavailable = match answer {
        // Decided without Redis: HEAD / while Redis is down, or a failing health check.
        Answer::Unavailable => Some(Unavailable::RedisDown),
        Answer::Health(Err(_)) => Some(Unavailable::Unhealthy),
        _ => None,
    };
    let body = response::write(out, answer, persist, head_only, &ctx.date);
    (answer.status().code(), body, unavailable)
}

/// The answer a GET on `/` gets from its outcome, and a 503's reason.
fn counted(outcome: Option<&Outcome>) -> (Answer, Option<Unavailable>) {
    match outcome {
        Some(Outcome::Value(v)) => (Answer::Count(*v), None),
        Some(Outcome::Failed(Failure::ErrorReply)) => (Answer::RedisError, None),
        Some(Outcome::Failed(Failure::Unavailable)) => (Answer::Unavailable, Some(Unavailable::RedisDown)),
        Some(Outcome::Failed(Failure::Overloaded)) => (Answer::Unavailable, Some(Unavailable::Overloaded)),
        Some(Outcome::Failed(Failure::Lost)) | None => (Answer::Unavailable, Some(Unavailable::RedisLost)),
        // The node refused the write (metrics keep the one reason for both).
        Some(Outcome::Failed(Failure::NotPrimary | Failure::TryAgain)) => {
            (Answer::Unavailable, Some(Unavailable::NotPrimary))
        }
        Some(Outcome::Failed(Failure::NotDurable)) => (Answer::Unavailable, Some(Unavailable::NotDurable)),
    }
}

/// What a parsed request (whose head is `head`, the API's parts at `fields`) needs: a counter
/// value, nothing, or the API.
fn route(ctx: &Context, req: &Request, head: &[u8], fields: &Fields, peer: Option<IpAddr>) -> Work {
    match (req.target, req.method) {
        (Target::Root, Method::Get) => Work::Count,
        (Target::Root, Method::Head) => Work::Known(health::head_root(ctx)),
        (Target::Root | Target::Asterisk, Method::Options) => Work::Known(Answer::Options),
        (Target::Root, _) | (_, Method::Connect) => Work::Known(Answer::MethodNotAllowed),
        (Target::Other, Method::Get | Method::Head)
            if health::targets(fields.target.of(head), &ctx.observing.health_path) =>
        {
            Work::Known(health::check(ctx))
        }
        (Target::Other, _) => match ctx.api.call(head, fields, peer) {
            Some(call) => Work::Api(Box::new(call)),
            None => Work::Known(Answer::NotFound),
        },
        (Target::Asterisk, _) => Work::Known(Answer::NotFound),
    }
}

fn slot_for(req: Request, work: Work, close: bool, access: Option<access::Head>) -> Slot {
    Slot { work, version: req.version, keep_alive: !close, head_only: req.method == Method::Head, access }
}

fn rejected(e: ParseError) -> Slot {
    Slot {
        work: Work::Known(Answer::Rejected(e)),
        version: Version::Http11,
        keep_alive: false,
        head_only: false,
        access: None,
    }
}
