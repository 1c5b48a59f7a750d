//! One shard process: a glommio executor on the allowed CPUs (pinned to one with `--pin`), serving
//! the listener it inherited.
//!
//! It owns everything a shard does between its exec and its exit: placing and building the executor,
//! wrapping the inherited listener, the accept loop and its connection cap, the housekeeping tick
//! (heartbeat, `Date`, access log, signals), and the two ways to stop: TERM (or HUP) retires the
//! shard: it serves what the kernel already queued, takes its listener out of the reuseport group,
//! finishes every accepted request and exits; USR2 (a HUP replacement sharing the listener) retires
//! it the same way but leaves the listener alone for its successor; QUIT and INT exit at once (the
//! stopping state is one phase, [`stop`]). All state is shard-local (`Rc`/`RefCell`/`Cell`); only
//! its own heartbeat page is shared with the supervisor, the only part of the region it maps.
//! It must not create listeners or touch any other shard's slot.

use std::cell::Cell;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::FutureExt;
use glommio::net::TcpStream;
use glommio::sync::{Gate, Semaphore, StaticPermit};
use glommio::{CpuSet, Placement};
use socket2::SockRef;
use tracing::{debug, error, info, warn};

use self::stop::{Phase, Signals, StopSignal, sig};
use crate::api::Api;
use crate::config::{Config, Observe};
use crate::handoff::Spec;
use crate::heartbeat::{Heartbeats, features, state};
use crate::http::access::AccessLog;
use crate::http::conn::registry::{EVICT_RECHECK, Eviction};
use crate::http::conn::tls::Tls;
use crate::http::conn::{self, MAX_PIPELINE};
use crate::http::context::{self, Context, Observing, ProxyPolicy};
use crate::http::forwarded::Trust;
use crate::http::logformat::Format;
use crate::logging::{self, LogTarget, Sink};
use crate::metrics::shm::Meter;
use crate::redis::client::{Redis, Settings};

mod stop;

pub use crate::process::BOOT_ERROR;
use crate::process::set_process_name;

/// The longest interval between heartbeats and housekeeping passes.
const TICK: Duration = Duration::from_millis(100);

/// The shard's own state, shared by its tasks: what its connections are handed, and what only the
/// shard itself uses.
#[derive(Debug)]
struct Shard {
    /// The configuration.
    config: Config,
    /// What every connection is handed (see [`Context`]).
    ctx: Rc<Context>,
    /// Connections closed at the cap to make room, since the last report.
    evicted: Cell<u64>,
    /// When evictions were last reported (at most once a second).
    evictions_reported: Cell<Option<Instant>>,
    /// The supervisor that spawned this shard (the parent at start). Once it is gone, another
    /// process may hold this shard's listener (a USR2's old supervisor and its shards, whose
    /// listener a dying new supervisor's shards share), so the listener is never shut down then.
    supervisor: i32,
    /// The HTTPS acceptor, built at boot from `--certfile` and `--keyfile` (`None`: plain HTTP).
    tls: Option<Rc<Tls>>,
}

/// What a listener speaks: HTTPS on TCP listeners when `--certfile` is given, else plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// Where the shard's executor runs, and how the boot line says it. With `--pin`, on its own CPU: the
/// thread-per-core layout for a machine whose CPUs the shards have to themselves. By default, on any
/// allowed CPU, placed by the kernel: pinned, a shard that shares its CPU with a busy process (the
/// load generator on a small box, a log shipper) holds every connection the reuseport hash gave it
/// until that process yields, while another CPU idles; measured in docs/performance.md (target 2),
/// unpinned shards beat pinned ones by that margin under ab and lose nothing under wrk. The
/// scheduler keeps a busy shard on its CPU anyway when nothing else wants it.
fn placement(spec: &Spec) -> (Placement, String) {
    if spec.config.pin {
        return (Placement::Fixed(spec.cpu), format!("cpu {}", spec.cpu));
    }
    let allowed = &spec.config.allowed_cpus;
    let where_ = format!("cpus {}", crate::process::format_cpu_list(allowed));
    match CpuSet::online() {
        Ok(online) => (Placement::Fenced(online.filter(|l| allowed.contains(&l.cpu))), where_),
        // No CPU topology to read (a stripped /sys): pinned, which needs none and keeps to --cpus.
        Err(e) => (Placement::Fixed(spec.cpu), format!("cpu {} (pinned: cannot read the CPU topology: {e})", spec.cpu)),
    }
}

/// Runs a shard to completion and returns its exit status.
pub fn run(spec: Spec) -> i32 {
    #[cfg(feature = "test-hooks")]
    crate::testhook::at_shard_boot();
    if let Err(e) = logging::init_with(&spec.config.error_log, spec.config.log_level, spec.config.observe.log_format) {
        eprintln!("hitcore shard {}: cannot open the error log: {e}", spec.index);
        return BOOT_ERROR;
    }
    set_process_name(&format!("hitcore-shard{}", spec.index));
    let pid = std::process::id();
    let (placement, where_) = placement(&spec);
    info!("Booting worker with pid: {pid} (shard {}, {where_})", spec.index);
    let boot = || -> Result<(Signals, Heartbeats, glommio::LocalExecutor), String> {
        let signals = Signals::register().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        // SAFETY: the supervisor passed this memfd to this process alone. Only this shard's own page
        // is mapped (writable), and the descriptor is closed: no other shard's slot is reachable.
        let heartbeats = unsafe { Heartbeats::attach_own(spec.heartbeat_fd, spec.slot) }
            .map_err(|e| format!("cannot map the heartbeat region: {e}"))?;
        let name = format!("hitcore-shard{}", spec.index);
        let executor = crate::executor::build(&name, placement, spec.config.worker_connections).map_err(|e| {
            format!(
                "cannot start an io_uring executor on {where_}: {e} (check `ulimit -l`, at least 512 KiB, \
                     and that io_uring is enabled: sysctl kernel.io_uring_disabled)"
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
    // Mapped for the life of the process: the metrics meter writes into it from everywhere.
    let heartbeats: &'static Heartbeats = Box::leak(Box::new(heartbeats));
    let slot = spec.slot;
    heartbeats.slot(slot).beat();
    let access = match &spec.config.access_log {
        Some(target) => match open_access_log(target, &spec.config.observe) {
            Ok(log) => Some(log),
            Err(e) => {
                error!("Worker failed to boot: {e}");
                return BOOT_ERROR;
            }
        },
        None => None,
    };
    // Under an older supervisor the region has no metrics blocks: count into a private one.
    let meter = heartbeats.metrics_words(slot).map_or_else(Meter::detached, |words| Meter::attach(words, spec.index));
    let observing = Observing {
        meter,
        health_path: spec.config.observe.health_path.as_str().into(),
        proxy_protocol: match spec.config.observe.proxy_protocol {
            true => match Trust::parse(&spec.config.observe.proxy_allow_from) {
                Ok(allow) => Some(ProxyPolicy::new(allow)),
                Err(e) => {
                    error!("Worker failed to boot: --proxy-allow-from: {e}");
                    return BOOT_ERROR;
                }
            },
            false => None,
        },
    };
    // Every connection with a full batch waiting; beyond it requests get 503 rather than queue.
    let max_pending = (spec.config.worker_connections * MAX_PIPELINE) as u64;
    let redis = Redis::start(Settings::from_config(&spec.config, spec.index, max_pending));
    let settings = context::Settings {
        limits: spec.config.limits,
        keep_alive: spec.config.keep_alive,
        header_timeout: spec.config.header_timeout,
        write_timeout: spec.config.write_timeout,
    };
    // Read here, at boot, by the shard itself: a replacement (HUP, a restart) serves the files as
    // they are now, and the supervisor checked them a moment ago.
    let tls = match spec.config.https.as_ref().map(|https| Tls::boot(https, spec.ticket_fd)).transpose() {
        Ok(tls) => tls.map(Rc::new),
        Err(e) => {
            error!("Worker failed to boot: shard {}: {e}", spec.index);
            return BOOT_ERROR;
        }
    };
    let shard = Rc::new(Shard {
        ctx: Rc::new(Context::new(settings, redis, access, observing).with_api(Api::new(spec.config.api.clone()))),
        evicted: Cell::new(0),
        evictions_reported: Cell::new(None),
        // SAFETY: getppid cannot fail.
        supervisor: unsafe { libc::getppid() },
        tls,
        config: spec.config.clone(),
    });
    let stop = Rc::new(StopSignal::new(signals.clone()));
    let tick_every = tick_period([spec.config.timeout, spec.config.header_timeout, spec.config.keep_alive]);
    glommio::spawn_local(housekeeping(shard.clone(), heartbeats, slot, signals, stop.clone(), tick_every)).detach();
    shard.ctx.redis.first_attempt().await;
    // A replacement's listener arrives bound but not listening: it joins the reuseport group only
    // now that this shard can accept (docs/supervisor.md, "Failed reloads").
    let listen_sock = SockRef::from(&_listener);
    let options = crate::listener::ListenOptions::of(&spec.config);
    if let Err(e) = crate::listener::listen(&listen_sock, options) {
        error!("Worker failed to boot: shard {}: cannot listen: {e}", spec.index);
        return BOOT_ERROR;
    }
    // So does a later bind a HUP added (opened bound only, so that it never listens before a shard
    // serves it); on one that listens already, listen() only sets the backlog again.
    for &fd in &spec.extra_fds {
        // SAFETY: an inherited descriptor the supervisor passed; borrowed for the call only.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = SockRef::from(&fd);
        if let Err(e) = crate::listener::listen(&sock, options) {
            error!("Worker failed to boot: shard {}: cannot listen on a later bind: {e}", spec.index);
            return BOOT_ERROR;
        }
    }
    heartbeats.slot(slot).features.store(features::HANDOVER, Ordering::Relaxed);
    heartbeats.slot(slot).state.store(state::BOOTED, Ordering::Release);
    debug!("shard {} booted", spec.index);

    let gate = Gate::new();
    // One connection cap for every listener this shard accepts on.
    let cap = Rc::new(Semaphore::new(shard.config.worker_connections as u64));
    // Later -b addresses: one socket each, shared with every shard, never drained or shut down here.
    // SAFETY: the supervisor passed these listening sockets to this process; nothing else here owns them.
    let extras: Vec<OwnedFd> = spec.extra_fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    let extra_loops: Vec<_> = extras
        .iter()
        .map(|fd| {
            let loop_ =
                accept_loop(shard.clone(), fd.as_raw_fd(), gate.clone(), stop.clone(), cap.clone(), Retire::Leave);
            glommio::spawn_local(loop_)
        })
        .collect();
    // A main listener shared by every shard (unix:, fd://, systemd's) is left to the others too.
    let retire = if spec.config.main_listener_shared() { Retire::Leave } else { Retire::DrainAndEject };
    accept_loop(shard.clone(), spec.listen_fd, gate.clone(), stop.clone(), cap, retire).await;
    for task in extra_loops {
        task.await;
    }
    shard.ctx.draining.set(true);
    shard.ctx.registry.close_idle();
    info!("Shard {} stopping: finishing {} open connections", spec.index, shard.ctx.registry.len());
    let _ = gate.close().await;
    // The EXPIREs owed to counters that the last hits created go out before the shard does.
    shard.ctx.redis.settle().await;
    if let Some(log) = &shard.ctx.access {
        log.flush();
    }
    publish_stats(&shard, heartbeats, slot);
    let counters = &shard.ctx.counters;
    info!(
        "Shard {} served {} requests on {} connections",
        spec.index,
        counters.requests.get(),
        counters.connections.get()
    );
    info!("Worker exiting (pid: {})", std::process::id());
    0
}

/// What a shard does with a listener when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retire {
    /// Its own listener in a reuseport group: serve what the kernel queued, then eject it.
    DrainAndEject,
    /// A listener every shard shares: just stop accepting; the others carry on (draining a shared
    /// queue that others keep filling might never end).
    Leave,
}

/// Accepts connections, within the `--worker-connections` cap, until a stop is requested; then
/// retires the listener as `retire` says (see [`retire_listener`]).
async fn accept_loop(
    shard: Rc<Shard>,
    listen_fd: RawFd,
    gate: Gate,
    stop: Rc<StopSignal>,
    cap: Rc<Semaphore>,
    retire: Retire,
) {
    let (shard, gate, stop) = (&shard, &gate, &*stop);
    let scheme = if shard.tls.is_some() && conn::tls::serves(listen_fd) { Scheme::Https } else { Scheme::Http };
    let retire_listener = |shard: &Rc<Shard>, listen_fd: RawFd, gate: &Gate, stop: &StopSignal| {
        if retire == Retire::DrainAndEject {
            retire_listener(shard, listen_fd, gate, stop, scheme);
        }
    };
    let mut failures = 0u32;
    loop {
        let Some(permit) = next_slot(shard, &cap, stop).await else {
            retire_listener(shard, listen_fd, gate, stop);
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
                            retire_listener(shard, listen_fd, gate, stop);
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
                spawn_connection(shard, gate, stream, peer, Some(permit), scheme);
            }
            Err(e) => {
                // Stopping, or told to by a signal the tick has not read yet (see
                // [`StopSignal::follow`]): a sibling's drain may have shut a shared listener down.
                stop.follow();
                if stop.requested() {
                    debug!("accept failed while stopping: {e}");
                    retire_listener(shard, listen_fd, gate, stop);
                    return;
                }
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

/// Closes the connection that has waited longest for a complete request, once it has waited
/// `--evict-after` (see [`Registry::evict_longest_waiting`](crate::http::conn::registry::Registry)).
fn evict_longest_waiting(shard: &Shard) -> Eviction {
    let eviction = shard.ctx.registry.evict_longest_waiting(shard.config.evict_after, Instant::now());
    if eviction == Eviction::Done {
        shard.evicted.set(shard.evicted.get() + 1);
        shard.ctx.observing.meter.evicted();
    }
    eviction
}

/// Serves every connection already queued on the listener, then shuts the listener down, which
/// takes it out of the reuseport group: new connections go to the other shards, and any that
/// arrived in between move with them when `net.ipv4.tcp_migrate_req=1` (else they are reset).
/// Handing over (SIGUSR2), it does neither: the successor shares the listener and serves its queue,
/// so no connection meets a closing listener. Orphaned (its supervisor died: a TERM from
/// `PR_SET_PDEATHSIG`), it only stops accepting too: the listener may be one another supervisor's
/// shards accept on (a new supervisor killed during a USR2), and `shutdown()` would stop them all.
fn retire_listener(shard: &Rc<Shard>, listen_fd: RawFd, gate: &Gate, stop: &StopSignal, scheme: Scheme) {
    // SAFETY: getppid cannot fail.
    let orphaned = unsafe { libc::getppid() } != shard.supervisor;
    if stop.phase.get() == Phase::HandingOver || orphaned {
        return;
    }
    while let Ok(Some((stream, peer))) = accept_now(listen_fd) {
        spawn_connection(shard, gate, stream, peer, None, scheme);
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
    scheme: Scheme,
) {
    let ctx = shard.ctx.clone();
    // Two task types, not one with a branch inside: a plain connection's task stays as small as it
    // was, without room for TLS state.
    match (scheme, &shard.tls) {
        (Scheme::Https, Some(tls)) => {
            let tls = tls.clone();
            spawn_guarded(gate, permit, move || conn::serve_tls(ctx, stream, peer, tls));
        }
        _ => spawn_guarded(gate, permit, move || conn::serve(ctx, stream, peer)),
    }
}

/// Spawns a connection's task behind the gate, holding its permit for the task's life.
fn spawn_guarded<F>(gate: &Gate, permit: Option<StaticPermit>, connection: impl FnOnce() -> F + 'static)
where
    F: std::future::Future<Output = ()> + 'static,
{
    let spawned = gate.spawn(async move {
        // The connection's future is built here, inside the task, rather than moved into it.
        // A panic in one connection must not take the shard (and its other connections) down.
        if let Err(panic) = std::panic::AssertUnwindSafe(connection()).catch_unwind().await {
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

/// How often the housekeeping tick runs: [`TICK`], or more often where something it checks needs
/// it: four beats per watchdog `--timeout`, and four checks per `--header-timeout` and
/// `--keep-alive`, since the tick is what ends a connection's read at its deadline (at most one
/// period late).
fn tick_period(timeouts: [Duration; 3]) -> Duration {
    timeouts
        .into_iter()
        .filter(|d| !d.is_zero())
        .map(|d| (d / 4).clamp(Duration::from_millis(5), TICK))
        .fold(TICK, Duration::min)
}

/// The shard's heartbeat and chores, on its own executor so it stops exactly when the executor does.
async fn housekeeping(
    shard: Rc<Shard>,
    heartbeats: &'static Heartbeats,
    slot: usize,
    signals: Signals,
    stop: Rc<StopSignal>,
    every: Duration,
) {
    let timeouts = [shard.config.header_timeout, shard.config.keep_alive];
    let shortest_deadline = timeouts.into_iter().filter(|d| !d.is_zero()).min().unwrap_or_default();
    loop {
        heartbeats.slot(slot).beat();
        shard.ctx.date.refresh(SystemTime::now());
        if let Some(log) = &shard.ctx.access {
            log.refresh();
            log.flush();
        }
        publish_stats(&shard, heartbeats, slot);
        report_evictions(&shard);
        shard.ctx.registry.expire_overdue(Instant::now(), shortest_deadline);
        if signals.take(sig::USR1) {
            info!("Reopening log files");
            if let Err(e) = logging::reopen() {
                error!("cannot reopen the error log: {e}");
            }
            if let Some(log) = &shard.ctx.access {
                log.reopen();
            }
        }
        if signals.has(sig::QUIT) {
            if let Some(log) = &shard.ctx.access {
                log.flush();
            }
            info!("Worker exiting (pid: {})", std::process::id());
            std::process::exit(0);
        }
        stop.follow();
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
    s.requests.store(shard.ctx.counters.requests.get(), Ordering::Relaxed);
    s.connections.store(shard.ctx.counters.connections.get(), Ordering::Relaxed);
}

/// Opens the access log with its format and forwarded-allow list (both checked at start already).
fn open_access_log(target: &LogTarget, observe: &Observe) -> Result<AccessLog, String> {
    let format = Format::compile(&observe.access_log_format).map_err(|e| format!("--access-logformat: {e}"))?;
    let format = if observe.log_format == crate::logjson::LogFormat::Json { format.json() } else { format };
    let trust = Trust::parse(&observe.forwarded_allow_ips).map_err(|e| format!("--forwarded-allow-ips: {e}"))?;
    let sink = Sink::open(target).map_err(|e| format!("cannot open the access log: {e}"))?;
    Ok(AccessLog::new(sink, format, trust))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_runs_four_times_per_shortest_deadline_between_5_and_100_ms() {
        let s = Duration::from_secs;
        assert_eq!(tick_period([s(30), s(2), s(2)]), TICK, "the defaults");
        assert_eq!(
            tick_period([Duration::ZERO, Duration::from_millis(200), Duration::ZERO]),
            Duration::from_millis(50)
        );
        assert_eq!(tick_period([Duration::ZERO; 3]), TICK, "zero: no watchdog, no keep-alive");
        assert_eq!(tick_period([s(30), Duration::from_millis(1), s(2)]), Duration::from_millis(5));
    }
}
