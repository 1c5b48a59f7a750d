//! One shard process: a glommio executor pinned to one CPU, serving the listener it inherited.
//!
//! It owns everything a shard does between its exec and its exit: pinning and building the executor,
//! wrapping the inherited listener, the accept loop and its connection cap, the housekeeping tick
//! (heartbeat, `Date`, access log, signals), and the two ways to stop: TERM (or HUP) retires the
//! shard: it serves what the kernel already queued, takes its listener out of the reuseport group,
//! finishes every accepted request and exits; QUIT and INT exit at once. All state is
//! shard-local (`Rc`/`RefCell`/`Cell`); only the heartbeat slot is shared, with the supervisor.
//! It must not create listeners or touch any other shard's slot.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::IpAddr;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use futures_lite::FutureExt;
use glommio::net::TcpStream;
use glommio::sync::{Gate, Semaphore, StaticPermit};
use glommio::{LocalExecutorBuilder, Placement};
use serde::{Deserialize, Serialize};
use slab::Slab;
use socket2::SockRef;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::heartbeat::{Heartbeats, state};
use crate::http::access::AccessLog;
use crate::http::conn::{self, Entry};
use crate::http::response::HttpDate;
use crate::logging::{self, Sink};
use crate::redis::client::{Redis, Settings};

/// The environment variable that carries a shard's [`Spec`] from the supervisor. Its presence is
/// what makes the binary run as a shard.
pub const SPEC_ENV: &str = "HITCORE_SHARD";

/// Exit status of a shard that could not boot; the supervisor halts instead of restarting it
/// (gunicorn's `WORKER_BOOT_ERROR`).
pub const BOOT_ERROR: i32 = 3;

/// The longest interval between heartbeats and housekeeping passes.
const TICK: Duration = Duration::from_millis(100);

/// How often a shard at its connection cap looks again for a connection to evict when none is
/// evictable yet, at the least (the wait for `--evict-after` itself is timed exactly).
const EVICT_RECHECK: Duration = Duration::from_millis(100);

/// glommio's registered I/O memory, used only for its file I/O, which hitcore does not do. Its
/// default (10 MiB, pinned in every ring) made up most of a shard's resident memory; the minimum
/// leaves a shard at 4 MiB (measured: 14.3 MiB RSS at start before, see docs/performance.md).
const IO_MEMORY: usize = 64 * 1024;

/// Bytes read per `recv` into the shard's shared scratch buffer.
const SCRATCH: usize = 64 * 1024;

/// What the supervisor tells a shard it spawns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The shard's index (for logs and the process title).
    pub index: usize,
    /// The CPU to pin to.
    pub cpu: usize,
    /// The inherited, bound, listening, non-blocking socket.
    pub listen_fd: RawFd,
    /// The inherited heartbeat memfd.
    pub heartbeat_fd: RawFd,
    /// This shard's slot in the heartbeat region.
    pub slot: usize,
    /// Everything else.
    pub config: Config,
}

/// The shard's state, shared by its tasks.
#[derive(Debug)]
pub struct Shard {
    /// The configuration.
    pub config: Config,
    /// The shard's Redis connection.
    pub redis: Redis,
    /// The cached `Date` header.
    pub date: HttpDate,
    /// The access log, when `--access-logfile` is given.
    pub access: Option<AccessLog>,
    /// Every read lands here first; a connection keeps only what it cannot consume at once.
    pub scratch: RefCell<Vec<u8>>,
    /// Responses are built here and written from here when the socket takes them at once.
    pub output: RefCell<Vec<u8>>,
    /// Set on a graceful stop: answers carry `Connection: close` and idle connections close.
    pub draining: Cell<bool>,
    /// Live connections, so a graceful stop can close the idle ones.
    pub conns: RefCell<Slab<Rc<Entry>>>,
    /// Requests answered.
    pub requests: Cell<u64>,
    /// Connections accepted.
    pub connections: Cell<u64>,
    /// Connections closed at the cap to make room, since the last report.
    pub evicted: Cell<u64>,
    /// When evictions were last reported (at most once a second).
    evictions_reported: Cell<Option<Instant>>,
}

/// Signal flags, set by signal handlers and read by the tick.
#[derive(Debug, Default)]
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
        let s = Signals::default();
        signal_hook::flag::register(SIGTERM, s.term.clone())?;
        signal_hook::flag::register(SIGHUP, s.hup.clone())?;
        signal_hook::flag::register(SIGQUIT, s.quit.clone())?;
        signal_hook::flag::register(SIGINT, s.quit.clone())?;
        signal_hook::flag::register(SIGUSR1, s.usr1.clone())?;
        Ok(s)
    }
}

/// A graceful stop request that the accept loop can wait for.
#[derive(Debug, Default)]
struct StopSignal {
    requested: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl StopSignal {
    fn request(&self) {
        if !self.requested.replace(true) {
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.requested.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Runs a shard to completion and returns its exit status.
pub fn run(spec: Spec) -> i32 {
    if let Err(e) = logging::init(&spec.config.error_log, spec.config.log_level) {
        eprintln!("hitcore shard {}: cannot open the error log: {e}", spec.index);
        return BOOT_ERROR;
    }
    set_process_name(&format!("hitcore-shard{}", spec.index));
    let pid = std::process::id();
    info!("Booting worker with pid: {pid} (shard {}, cpu {})", spec.index, spec.cpu);
    let boot = || -> Result<(Signals, Heartbeats, glommio::LocalExecutor), String> {
        let signals = Signals::register().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        // SAFETY: the supervisor passed this memfd to this process alone.
        let heartbeats = unsafe { Heartbeats::attach(spec.heartbeat_fd) }
            .map_err(|e| format!("cannot map the heartbeat region: {e}"))?;
        let executor = LocalExecutorBuilder::new(Placement::Fixed(spec.cpu))
            .name(&format!("hitcore-shard{}", spec.index))
            .io_memory(IO_MEMORY)
            // Both left at their measured defaults (docs/performance.md: spinning 50 µs before
            // parking made no difference here); the variables let an operator measure on their own
            // hardware without a rebuild.
            .spin_before_park(Duration::from_micros(
                std::env::var("HITCORE_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
            ))
            .preempt_timer(Duration::from_micros(
                std::env::var("HITCORE_PREEMPT_US").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000),
            ))
            .make()
            .map_err(|e| {
                format!(
                    "cannot start an io_uring executor on CPU {}: {e} (check `ulimit -l`, at least 512 KiB, and \
                     that io_uring is enabled: sysctl kernel.io_uring_disabled)",
                    spec.cpu
                )
            })?;
        Ok((signals, heartbeats, executor))
    };
    match boot() {
        Ok((signals, heartbeats, executor)) => executor.run(serve(spec, heartbeats, signals)),
        Err(reason) => {
            error!("Worker failed to boot: shard {}: {reason}", spec.index);
            BOOT_ERROR
        }
    }
}

async fn serve(spec: Spec, heartbeats: Heartbeats, signals: Signals) -> i32 {
    // SAFETY: the supervisor passed this listening socket to this process; nothing else here owns it.
    // Owned here so it closes when the shard is done; the accept loop uses the raw descriptor.
    let _listener = unsafe { OwnedFd::from_raw_fd(spec.listen_fd) };
    let heartbeats = Rc::new(heartbeats);
    let slot = spec.slot;
    heartbeats.slot(slot).beat();
    let access = match &spec.config.access_log {
        Some(target) => match Sink::open(target) {
            Ok(sink) => Some(AccessLog::new(sink)),
            Err(e) => {
                error!("Worker failed to boot: cannot open the access log: {e}");
                return BOOT_ERROR;
            }
        },
        None => None,
    };
    let redis = Redis::start(Settings::from_config(&spec.config, spec.index));
    let shard = Rc::new(Shard {
        redis,
        date: HttpDate::default(),
        access,
        scratch: RefCell::new(vec![0; SCRATCH]),
        output: RefCell::new(Vec::with_capacity(SCRATCH)),
        draining: Cell::new(false),
        conns: RefCell::new(Slab::new()),
        requests: Cell::new(0),
        connections: Cell::new(0),
        evicted: Cell::new(0),
        evictions_reported: Cell::new(None),
        config: spec.config.clone(),
    });
    let stop = Rc::new(StopSignal::default());
    let tick_every = (spec.config.timeout / 4).clamp(Duration::from_millis(5), TICK);
    glommio::spawn_local(housekeeping(shard.clone(), heartbeats.clone(), slot, signals, stop.clone(), tick_every))
        .detach();
    shard.redis.first_attempt().await;
    heartbeats.slot(slot).state.store(state::BOOTED, Ordering::Release);
    debug!("shard {} booted", spec.index);

    let gate = Gate::new();
    accept_loop(&shard, spec.listen_fd, &gate, &stop).await;
    shard.draining.set(true);
    for (_, entry) in shard.conns.borrow().iter() {
        entry.close_if_idle();
    }
    info!("Shard {} stopping: finishing {} open connections", spec.index, shard.conns.borrow().len());
    let _ = gate.close().await;
    if let Some(log) = &shard.access {
        log.flush();
    }
    publish_stats(&shard, &heartbeats, slot);
    info!("Shard {} served {} requests on {} connections", spec.index, shard.requests.get(), shard.connections.get());
    info!("Worker exiting (pid: {})", std::process::id());
    0
}

/// Accepts connections, within the `--worker-connections` cap, until a stop is requested; then
/// serves what the kernel has queued and ejects the listener (see [`retire_listener`]).
async fn accept_loop(shard: &Rc<Shard>, listen_fd: RawFd, gate: &Gate, stop: &StopSignal) {
    let cap = Rc::new(Semaphore::new(shard.config.worker_connections as u64));
    let mut failures = 0u32;
    loop {
        let Some(permit) = next_slot(shard, &cap, stop).await else {
            retire_listener(shard, listen_fd, gate);
            return;
        };
        // Under load the queue is rarely empty: take the next connection with one accept4. An empty
        // queue is waited on with an io_uring poll, never an io_uring accept: a pending accept takes
        // the next connection into this process even while it is stopped, and a shard killed then
        // (SIGSTOP, then WORKER TIMEOUT) would lose it; a poll takes nothing, so whatever is queued
        // stays for the replacement, and a stop needs no cancellation.
        let accepted = loop {
            match accept_now(listen_fd) {
                Ok(Some(next)) => break Ok(next),
                Ok(None) => {
                    let ready = async { Some(glommio::net::wait_readable(listen_fd).await) }.or(async {
                        stop.wait().await;
                        None
                    });
                    match ready.await {
                        Some(Ok(())) => continue,
                        Some(Err(e)) => break Err(e),
                        None => {
                            drop(permit);
                            retire_listener(shard, listen_fd, gate);
                            return;
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                failures = 0;
                spawn_connection(shard, gate, stream, peer, Some(permit));
            }
            Err(_) if stop.requested.get() => return,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and say so once per burst.
                failures += 1;
                if failures == 1 {
                    warn!("accept failed: {e}; backing off");
                }
                glommio::timer::sleep(Duration::from_millis(10 * u64::from(failures.min(10)))).await;
            }
        }
    }
}

/// One non-blocking `accept4` on the (O_NONBLOCK) listener: a connection and its peer's address, or
/// `None` if the queue is empty. Connection-level failures of a queued connection (ECONNABORTED)
/// count as an empty queue this time round.
fn accept_now(listen_fd: RawFd) -> std::io::Result<Option<(TcpStream, Option<IpAddr>)>> {
    // SAFETY: listen_fd is this shard's listening socket, open for the shard's lifetime.
    let listener = unsafe { BorrowedFd::borrow_raw(listen_fd) };
    match SockRef::from(&listener).accept() {
        Ok((sock, addr)) => {
            let peer = addr.as_socket().map(|a| a.ip());
            // SAFETY: the fd was just accepted and is owned by nothing else.
            Ok(Some((unsafe { TcpStream::from_raw_fd(sock.into_raw_fd()) }, peer)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::ConnectionAborted => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Waits for a connection slot, or for a stop (`None`). At the cap it makes room by closing the
/// connection that has waited longest for a complete request, once that one has waited at least
/// `--evict-after`, so slow and idle clients cannot keep real ones out; meanwhile the kernel's queue
/// holds new connections.
async fn next_slot(shard: &Shard, cap: &Rc<Semaphore>, stop: &StopSignal) -> Option<StaticPermit> {
    loop {
        if let Ok(permit) = cap.try_acquire_static_permit(1) {
            return Some(permit);
        }
        // When nobody is evictable yet, look again when the longest waiter becomes so (or at least
        // every EVICT_RECHECK, as waiters come and go).
        let recheck = match evict_longest_waiting(shard) {
            Eviction::Done | Eviction::Nobody => None,
            Eviction::NotYet(after) => Some(after),
        };
        let slot = async { cap.acquire_static_permit(1).await.ok().map(Some) };
        let stopped = async {
            stop.wait().await;
            Some(None)
        };
        let later = async {
            glommio::timer::sleep(recheck.unwrap_or(EVICT_RECHECK)).await;
            None
        };
        if let Some(outcome) = slot.or(stopped).or(later).await {
            return outcome;
        }
    }
}

/// What one look for an evictable connection found.
enum Eviction {
    /// One was closed; its slot is about to be free.
    Done,
    /// The longest waiter becomes evictable after this long.
    NotYet(Duration),
    /// Every connection is busy with a request: nothing to evict.
    Nobody,
}

/// Closes the connection that has waited longest for a complete request, if it has waited at least
/// `--evict-after` and has nothing unread in its socket (a request that has arrived but that a busy
/// shard has not read yet is not idleness). A scan of at most `--worker-connections` entries per
/// candidate, a few candidates at most, only at the cap.
fn evict_longest_waiting(shard: &Shard) -> Eviction {
    const CANDIDATES: usize = 4;
    let now = Instant::now();
    let grace = shard.config.evict_after;
    let conns = shard.conns.borrow();
    let mut skipped: [Option<usize>; CANDIDATES] = [None; CANDIDATES];
    for round in 0..CANDIDATES {
        let longest = conns
            .iter()
            .filter(|(key, _)| !skipped.contains(&Some(*key)))
            .filter_map(|(key, e)| e.waiting_for(now).map(|w| (w, key, e)))
            .max_by_key(|(w, _, _)| *w);
        let Some((waited, key, entry)) = longest else {
            return if round == 0 { Eviction::Nobody } else { Eviction::NotYet(EVICT_RECHECK) };
        };
        if waited < grace {
            return Eviction::NotYet(grace - waited);
        }
        if entry.has_unread_input() {
            skipped[round] = Some(key);
            continue;
        }
        entry.evict();
        shard.evicted.set(shard.evicted.get() + 1);
        return Eviction::Done;
    }
    Eviction::NotYet(EVICT_RECHECK)
}

/// Serves every connection already queued on the listener, then shuts the listener down, which
/// takes it out of the reuseport group: new connections go to the other shards, and any that
/// arrived in between move with them when `net.ipv4.tcp_migrate_req=1` (else they are reset).
fn retire_listener(shard: &Rc<Shard>, listen_fd: RawFd, gate: &Gate) {
    while let Ok(Some((stream, peer))) = accept_now(listen_fd) {
        spawn_connection(shard, gate, stream, peer, None);
    }
    // SAFETY: listen_fd is this shard's listening socket, open for the shard's lifetime.
    unsafe { libc::shutdown(listen_fd, libc::SHUT_RDWR) };
}

fn spawn_connection(
    shard: &Rc<Shard>,
    gate: &Gate,
    stream: TcpStream,
    peer: Option<IpAddr>,
    permit: Option<StaticPermit>,
) {
    shard.connections.set(shard.connections.get() + 1);
    let shard = shard.clone();
    let spawned = gate.spawn(async move {
        // The connection's future is built here, inside the task, rather than moved into it.
        // A panic in one connection must not take the shard (and its other connections) down.
        if let Err(panic) = std::panic::AssertUnwindSafe(conn::serve(shard, stream, peer)).catch_unwind().await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!("connection task panicked: {what}");
        }
        drop(permit);
    });
    match spawned {
        Ok(task) => {
            task.detach();
        }
        Err(e) => debug!("connection refused while stopping: {e}"),
    }
}

/// The shard's heartbeat and chores, on its own executor so it stops exactly when the executor does.
async fn housekeeping(
    shard: Rc<Shard>,
    heartbeats: Rc<Heartbeats>,
    slot: usize,
    signals: Signals,
    stop: Rc<StopSignal>,
    every: Duration,
) {
    loop {
        heartbeats.slot(slot).beat();
        shard.date.refresh(SystemTime::now());
        if let Some(log) = &shard.access {
            log.refresh();
            log.flush();
        }
        publish_stats(&shard, &heartbeats, slot);
        report_evictions(&shard);
        if signals.usr1.swap(false, Ordering::Relaxed) {
            info!("Reopening log files");
            if let Err(e) = logging::reopen() {
                error!("cannot reopen the error log: {e}");
            }
            if let Some(log) = &shard.access {
                log.reopen();
            }
        }
        if signals.quit.load(Ordering::Relaxed) {
            if let Some(log) = &shard.access {
                log.flush();
            }
            info!("Worker exiting (pid: {})", std::process::id());
            std::process::exit(0);
        }
        if signals.term.load(Ordering::Relaxed) || signals.hup.load(Ordering::Relaxed) {
            stop.request();
        }
        glommio::timer::sleep(every).await;
    }
}

/// Says, at most once a second, how many connections the cap made room by closing.
fn report_evictions(shard: &Shard) {
    let due = shard.evictions_reported.get().is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
    if due && shard.evicted.get() > 0 {
        let n = shard.evicted.replace(0);
        warn!(
            "at the --worker-connections cap ({}): closed {n} connections that were idle or slow to send a request",
            shard.config.worker_connections
        );
        shard.evictions_reported.set(Some(Instant::now()));
    }
}

fn publish_stats(shard: &Shard, heartbeats: &Heartbeats, slot: usize) {
    let s = heartbeats.slot(slot);
    s.requests.store(shard.requests.get(), Ordering::Relaxed);
    s.connections.store(shard.connections.get(), Ordering::Relaxed);
}

/// Sets the thread/process name shown by `ps -o comm` and `top` (15 bytes at most).
pub fn set_process_name(name: &str) {
    let mut bytes = [0u8; 16];
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}
