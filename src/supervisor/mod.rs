//! The supervisor, hitcore's arbiter: it binds, spawns one process per shard, watches them, and
//! answers signals the way gunicorn's arbiter does.
//!
//! It owns the shard table, the listeners' supervisor-side copies, spawning (a re-exec of this
//! binary with the listener and the heartbeat region inherited), reaping, respawning with backoff,
//! the WORKER TIMEOUT policy (eject the listener, SIGABRT, SIGKILL on the next pass), graceful and
//! quick stops, rolling reloads (HUP), TTIN/TTOU and log reopening. It never touches request bytes
//! or Redis, and runs no glommio executor. One thread owns all state: signals and the watchdog
//! reach it as [`Event`]s on one channel.

pub mod pidfile;
pub mod watchdog;

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;
use socket2::Socket;
use tracing::{debug, error, info, warn};

use crate::cli::format_cpu_list;
use crate::config::Config;
use crate::heartbeat::{Heartbeats, SLOTS, state};
use crate::listener::{self, ListenError, ListenOptions};
use crate::shard::{BOOT_ERROR, SPEC_ENV, Spec, set_process_name};
use pidfile::Pidfile;

/// What wakes the arbiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived (SIGCHLD included).
    Signal(i32),
    /// The watchdog found this slot's heartbeat older than `--timeout`.
    Stale {
        /// The heartbeat slot.
        slot: usize,
        /// The pid the slot belonged to when it was read.
        pid: i32,
        /// How old the heartbeat was.
        age: Duration,
    },
}

/// A shard that lived less than this before dying counts towards a crash loop.
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(5);
/// The longest a crash-looping shard waits before its next start.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// How often the arbiter looks at a reload in progress (a new shard's boot is seen in shared memory).
const RELOAD_POLL: Duration = Duration::from_millis(20);
/// How many times a busy address is retried at start, a second apart (as gunicorn).
const BIND_ATTEMPTS: u32 = 5;
/// How long a halt (boot failure) waits for the other shards before killing them.
const HALT_GRACE: Duration = Duration::from_secs(2);

/// One shard process.
#[derive(Debug)]
struct Proc {
    /// The logical shard (stable across restarts; a replacement takes the same index).
    index: usize,
    cpu: usize,
    pid: i32,
    slot: usize,
    /// The supervisor's copy of the shard's listener, handed to the shard's replacement after a
    /// crash so that the connections queued on it are served rather than reset.
    listener: Socket,
    started: Instant,
    /// When WORKER TIMEOUT sent SIGABRT; the next pass sends SIGKILL.
    aborted_at: Option<Instant>,
    killed: bool,
    /// Its listener was taken out of the reuseport group; a replacement needs a fresh one.
    ejected: bool,
    /// Asked to stop (TERM, HUP, TTOU): not restarted when it exits.
    retiring: bool,
}

/// A shard to start once its backoff delay is over.
#[derive(Debug)]
struct Respawn {
    index: usize,
    cpu: usize,
    at: Instant,
    /// The listener to hand over, when the old one is still good (connections queued on it are
    /// then served by the new shard instead of being reset).
    listener: Option<Socket>,
}

/// A rolling reload (HUP): one shard at a time, the new one listening (on a listener of its own,
/// in the same reuseport group) and booted before the old one is told to retire.
#[derive(Debug, Default)]
struct Reload {
    /// Old shard pids still to replace.
    queue: VecDeque<i32>,
    /// (old pid, new pid) while the new one boots.
    current: Option<(i32, i32)>,
}

#[derive(Debug)]
struct Stopping {
    deadline: Instant,
    killed: bool,
    code: i32,
    /// Why the server halts on its own, for gunicorn's `Reason:` line.
    reason: Option<String>,
}

struct Arbiter {
    config: Config,
    exe: PathBuf,
    heartbeats: Arc<Heartbeats>,
    procs: Vec<Proc>,
    respawns: Vec<Respawn>,
    /// Consecutive quick deaths per shard index.
    streaks: HashMap<usize, u32>,
    next_index: usize,
    reload: Option<Reload>,
    stopping: Option<Stopping>,
    /// The watchdog's check period: SIGKILL follows SIGABRT after one more of these.
    check_period: Duration,
}

/// Runs the server: binds, spawns the shards, supervises them until told to stop. Returns the exit
/// status: 0 after a requested stop, 1 when start-up fails, 3 when a shard fails to boot.
pub fn run(mut config: Config) -> i32 {
    set_process_name("hitcore-master");
    let pid = std::process::id();
    info!("Starting hitcore {}", env!("CARGO_PKG_VERSION"));
    let pidfile = match &config.pidfile {
        Some(path) => match Pidfile::create(path) {
            Ok(p) => Some(p),
            Err(e) => {
                error!("{e}");
                return 1;
            }
        },
        None => None,
    };
    let listeners = match bind_all(&config) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    config.bind = match listener::local_addr(&listeners[0]) {
        Ok(a) => a,
        Err(e) => {
            error!("cannot read the bound address: {e}");
            return 1;
        }
    };
    info!("Listening at: http://{} ({pid})", config.bind);
    info!(
        "Using worker: glommio, {} shards on CPUs {} (thread-per-core)",
        config.cpus.len(),
        format_cpu_list(&config.cpus)
    );
    crate::redis::warn_at_start(&config);
    if listener::migrate_req() == Some(false) {
        warn!(
            "net.ipv4.tcp_migrate_req is 0: when a stalled shard is ejected, the connections queued on its \
             listener are reset instead of moving to the other shards; set it to 1 (sysctl -w \
             net.ipv4.tcp_migrate_req=1)"
        );
    }
    if let Err(e) = hand_logs_to_shards(&config) {
        error!("{e}");
        return 1;
    }
    let heartbeats = match Heartbeats::create() {
        Ok(h) => Arc::new(h),
        Err(e) => {
            error!("cannot create the heartbeat region: {e}");
            return 1;
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let (events, inbox) = mpsc::channel();
    if let Err(e) = forward_signals(events.clone()) {
        error!("cannot install signal handlers: {e}");
        return 1;
    }
    let check_period = (config.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    if !config.timeout.is_zero() {
        watchdog::start(heartbeats.clone(), config.timeout, check_period, events);
    }
    let mut arbiter = Arbiter {
        exe,
        heartbeats,
        procs: Vec::new(),
        respawns: Vec::new(),
        streaks: HashMap::new(),
        next_index: config.cpus.len(),
        reload: None,
        stopping: None,
        check_period,
        config,
    };
    let cpus = arbiter.config.cpus.clone();
    for (index, (cpu, sock)) in cpus.into_iter().zip(listeners).enumerate() {
        if let Err(e) = arbiter.spawn(index, cpu, sock) {
            error!("cannot start shard {index}: {e}");
            arbiter.halt("Worker failed to boot.", BOOT_ERROR);
            break;
        }
    }
    let code = arbiter.supervise(inbox);
    drop(pidfile);
    code
}

/// Creates one listener per shard on the same address, after checking the address is free.
/// A busy address is retried like gunicorn does, then given up on.
fn bind_all(config: &Config) -> Result<Vec<Socket>, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = listener::probe(config.bind).and_then(|()| {
            let first = listener::open(config.bind, ListenOptions::of(config))?;
            let addr = listener::local_addr(&first).map_err(|source| ListenError::Io {
                addr: config.bind,
                step: "getsockname",
                source,
            })?;
            let mut all = vec![first];
            for _ in 1..config.cpus.len() {
                all.push(listener::open(addr, ListenOptions::of(config))?);
            }
            Ok(all)
        });
        match result {
            Ok(all) => return Ok(all),
            Err(ListenError::InUse(addr)) if attempt < BIND_ATTEMPTS => {
                error!("Connection in use: {addr}");
                error!("Retrying in 1 second.");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(ListenError::InUse(addr)) => return Err(format!("Connection in use: {addr}; Can't connect to {addr}")),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// With `--user`/`--group`, shards open the log files as that user: create them now and give them
/// to it, so a root supervisor's files do not lock its shards out.
fn hand_logs_to_shards(config: &Config) -> Result<(), String> {
    if config.user.is_none() && config.group.is_none() {
        return Ok(());
    }
    let files = [Some(&config.error_log), config.access_log.as_ref()];
    for path in files.into_iter().flatten().filter_map(|t| match t {
        crate::logging::LogTarget::File(p) => Some(p),
        _ => None,
    }) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|_| std::os::unix::fs::chown(path, config.user, config.group))
            .map_err(|e| format!("cannot hand {} to the shards' user: {e}", path.display()))?;
    }
    Ok(())
}

fn forward_signals(events: Sender<Event>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH,
    ])?;
    std::thread::Builder::new().name("hitcore-signals".into()).spawn(move || {
        for sig in signals.forever() {
            if events.send(Event::Signal(sig)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

fn send(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

impl Arbiter {
    /// The arbiter loop: wait for an event or the next due chore, handle it, reap, manage.
    fn supervise(&mut self, inbox: Receiver<Event>) -> i32 {
        loop {
            let wait = self.next_wakeup();
            match inbox.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    error!("signal and watchdog threads are gone; stopping");
                    self.begin_stop(false, 1);
                }
            }
            self.reap();
            if let Some(code) = self.manage() {
                let reason = self.stopping.as_ref().and_then(|s| s.reason.clone());
                // gunicorn's halt: INFO for a requested stop, ERROR when the server gives up.
                if code == 0 {
                    info!("Shutting down: Master");
                } else {
                    error!("Shutting down: Master");
                }
                if let Some(reason) = reason {
                    error!("Reason: {reason}");
                }
                return code;
            }
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        for r in &self.respawns {
            wake = wake.min(r.at);
        }
        if let Some(s) = &self.stopping {
            wake = wake.min(s.deadline);
        }
        if self.reload.is_some() {
            wake = wake.min(now + RELOAD_POLL);
        }
        wake.saturating_duration_since(now).max(Duration::from_millis(1))
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(SIGCHLD) => {}
            Event::Signal(sig) => {
                info!("Handling signal: {}", signal_name(sig).trim_start_matches("SIG").to_lowercase());
                match sig {
                    SIGTERM => self.begin_stop(true, 0),
                    SIGINT | SIGQUIT => self.begin_stop(false, 0),
                    SIGHUP => self.begin_reload(),
                    SIGTTIN => self.add_shard(),
                    SIGTTOU => self.remove_shard(),
                    SIGUSR1 => {
                        if let Err(e) = crate::logging::reopen() {
                            error!("cannot reopen the error log: {e}");
                        }
                        for p in &self.procs {
                            send(p.pid, SIGUSR1);
                        }
                    }
                    SIGUSR2 => warn!(
                        "USR2 (binary upgrade) is not supported: HUP replaces every shard with the binary now on disk"
                    ),
                    _ => {}
                }
            }
            Event::Stale { slot, pid, age } => self.murder(slot, pid, age),
        }
    }

    /// gunicorn's `murder_workers`: the first pass logs WORKER TIMEOUT, ejects the listener and sends
    /// SIGABRT; a later pass, if the shard is still there, sends SIGKILL.
    fn murder(&mut self, slot: usize, pid: i32, age: Duration) {
        let period = self.check_period;
        let Some(p) = self.procs.iter_mut().find(|p| p.slot == slot && p.pid == pid) else { return };
        match p.aborted_at {
            None => {
                error!(critical = true, "WORKER TIMEOUT (pid:{pid})");
                debug!("shard {} heartbeat is {:.1}s old", p.index, age.as_secs_f64());
                listener::eject(&p.listener);
                p.ejected = true;
                send(pid, SIGABRT);
                p.aborted_at = Some(Instant::now());
            }
            Some(at) if !p.killed && at.elapsed() >= period => {
                send(pid, SIGKILL);
                p.killed = true;
            }
            Some(_) => {}
        }
    }

    /// Collects every exited shard, logs how it ended, and decides what follows.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(pos) = self.procs.iter().position(|p| p.pid == pid) else { continue };
            let p = self.procs.remove(pos);
            let slot = self.heartbeats.slot(p.slot);
            let booted = slot.state.load(Ordering::Acquire) == state::BOOTED;
            debug!(
                "shard {} (pid {pid}) answered {} requests on {} connections",
                p.index,
                slot.requests.load(Ordering::Relaxed),
                slot.connections.load(Ordering::Relaxed)
            );
            slot.state.store(state::FREE, Ordering::Release);
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                let name = signal_name(sig);
                match sig {
                    SIGKILL => error!("Worker (pid:{pid}) was sent {name}! Perhaps out of memory?"),
                    SIGTERM => info!("Worker (pid:{pid}) was sent {name}!"),
                    _ => warn!("Worker (pid:{pid}) was sent {name}!"),
                }
            } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
                error!("Worker (pid:{pid}) exited with code {}", libc::WEXITSTATUS(status));
            }
            let boot_failure = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == BOOT_ERROR && !booted;
            self.after_exit(p, boot_failure);
        }
    }

    fn after_exit(&mut self, p: Proc, boot_failure: bool) {
        if boot_failure && self.stopping.is_none() {
            self.halt("Worker failed to boot.", BOOT_ERROR);
            return;
        }
        if let Some(reload) = &mut self.reload {
            match reload.current {
                Some((_, new)) if new == p.pid => {
                    error!("Reload stopped: the new shard {} (pid {}) exited before it booted", p.index, p.pid);
                    self.reload = None;
                    return;
                }
                // The old one died while its replacement boots: the replacement takes over.
                Some((old, _)) if old == p.pid => return,
                _ => {}
            }
        }
        if self.stopping.is_some() || p.retiring {
            return;
        }
        if self.procs.iter().any(|q| q.index == p.index && !q.retiring) {
            return;
        }
        let streak = self.streaks.entry(p.index).or_insert(0);
        *streak = if p.started.elapsed() < CRASH_LOOP_WINDOW { *streak + 1 } else { 1 };
        let delay = match *streak {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2)).min(MAX_RESTART_DELAY),
        };
        let mut keep = !p.ejected && listener::is_listening(&p.listener);
        if delay >= Duration::from_secs(1) {
            warn!(
                "Shard {} keeps crashing ({} times in a row); restarting it in {:.1}s",
                p.index,
                streak,
                delay.as_secs_f64()
            );
            // Clients should not wait that long on a queue nobody accepts from.
            if keep {
                listener::eject(&p.listener);
                keep = false;
            }
        }
        let listener = keep.then_some(p.listener);
        self.respawns.push(Respawn { index: p.index, cpu: p.cpu, at: Instant::now() + delay, listener });
    }

    /// Starts due respawns, moves a reload along, and finishes a stop. Returns the exit status once
    /// the server is done.
    fn manage(&mut self) -> Option<i32> {
        let now = Instant::now();
        let due: Vec<Respawn> = {
            let (due, later) = std::mem::take(&mut self.respawns).into_iter().partition(|r| r.at <= now);
            self.respawns = later;
            due
        };
        for r in due {
            let sock = match r.listener {
                Some(l) => Ok(l),
                None => listener::open(self.config.bind, ListenOptions::of(&self.config)),
            };
            let started = sock.map_err(|e| e.to_string()).and_then(|sock| self.spawn(r.index, r.cpu, sock));
            if let Err(e) = started {
                error!("cannot restart shard {}: {e}; retrying in 1s", r.index);
                self.respawns.push(Respawn { at: now + Duration::from_secs(1), listener: None, ..r });
            }
        }
        self.advance_reload();
        let stopping = self.stopping.as_mut()?;
        if self.procs.is_empty() {
            return Some(stopping.code);
        }
        if now >= stopping.deadline && !stopping.killed {
            warn!("Graceful timeout: killing {} shards still running", self.procs.len());
            for p in &self.procs {
                send(p.pid, SIGKILL);
            }
            stopping.killed = true;
        }
        None
    }

    /// Starts a shard process for `index` on `cpu`, serving `sock`.
    fn spawn(&mut self, index: usize, cpu: usize, sock: Socket) -> Result<(), String> {
        let slot = (0..SLOTS).find(|s| self.procs.iter().all(|p| p.slot != *s)).ok_or("no free heartbeat slot")?;
        let hb = self.heartbeats.slot(slot);
        hb.beat();
        hb.pid.store(0, Ordering::Relaxed);
        hb.requests.store(0, Ordering::Relaxed);
        hb.connections.store(0, Ordering::Relaxed);
        hb.state.store(state::SPAWNED, Ordering::Release);
        let listen_fd = sock.as_raw_fd();
        let heartbeat_fd = self.heartbeats.fd();
        let spec = Spec { index, cpu, listen_fd, heartbeat_fd, slot, config: self.config.clone() };
        let spec = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg0(format!("hitcore: shard {index} (cpu {cpu})")).env(SPEC_ENV, spec).stdin(Stdio::null());
        // mimalloc commits its first arena eagerly: 8 MiB of resident memory per shard that a shard
        // never uses (measured: 12.6 MiB RSS at start with it, 5.0 MiB without). An operator's own
        // setting wins.
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            cmd.env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
        }
        // Privileges are dropped in the child before it runs any of our code (std also clears the
        // supplementary groups when a root parent sets a uid).
        if let Some(gid) = self.config.group {
            cmd.gid(gid);
        }
        if let Some(uid) = self.config.user {
            cmd.uid(uid);
        }
        // SAFETY: between fork and exec only async-signal-safe calls: fcntl and prctl.
        unsafe {
            cmd.pre_exec(move || {
                for fd in [listen_fd, heartbeat_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // A shard outlives a killed supervisor by one graceful stop, never longer.
                libc::prctl(libc::PR_SET_PDEATHSIG, SIGTERM);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                hb.state.store(state::FREE, Ordering::Release);
                return Err(format!("cannot execute {}: {e}", self.exe.display()));
            }
        };
        let pid = child.id() as i32;
        hb.pid.store(pid as u32, Ordering::Relaxed);
        self.procs.push(Proc {
            index,
            cpu,
            pid,
            slot,
            listener: sock,
            started: Instant::now(),
            aborted_at: None,
            killed: false,
            ejected: false,
            retiring: false,
        });
        Ok(())
    }

    /// TERM (graceful) or INT/QUIT (quick): stop every shard, kill what is left at the deadline.
    fn begin_stop(&mut self, graceful: bool, code: i32) {
        let grace = self.config.graceful_timeout;
        match &mut self.stopping {
            // A second INT/QUIT during a graceful stop makes it quick.
            Some(s) if !graceful => s.deadline = s.deadline.min(Instant::now() + grace.min(HALT_GRACE)),
            Some(_) => return,
            None => {
                self.stopping = Some(Stopping { deadline: Instant::now() + grace, killed: false, code, reason: None })
            }
        }
        self.respawns.clear();
        self.reload = None;
        for p in &mut self.procs {
            send(p.pid, if graceful { SIGTERM } else { SIGQUIT });
            p.retiring = true;
        }
    }

    /// gunicorn's HaltServer: a shard could not boot, so restarting it would only loop.
    fn halt(&mut self, reason: &str, code: i32) {
        self.begin_stop(false, code);
        if let Some(s) = &mut self.stopping {
            s.code = code;
            s.reason = Some(reason.to_string());
            s.deadline = s.deadline.min(Instant::now() + HALT_GRACE);
        }
    }

    /// HUP: replace every shard, one at a time, each new one booted and accepting before the old one
    /// retires (serves its queue, leaves the reuseport group, finishes, exits).
    fn begin_reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        info!("Hang up: Master");
        let mut old: Vec<&Proc> = self.procs.iter().filter(|p| !p.retiring).collect();
        old.sort_by_key(|p| p.index);
        let queue = old.iter().map(|p| p.pid).collect();
        let current = self.reload.take().and_then(|r| r.current);
        self.reload = Some(Reload { queue, current });
    }

    fn advance_reload(&mut self) {
        let Some(reload) = &mut self.reload else { return };
        if let Some((old, new)) = reload.current {
            let Some(new_proc) = self.procs.iter().find(|p| p.pid == new) else {
                reload.current = None;
                return;
            };
            if self.heartbeats.slot(new_proc.slot).state.load(Ordering::Acquire) != state::BOOTED {
                return;
            }
            if let Some(old_proc) = self.procs.iter_mut().find(|p| p.pid == old) {
                send(old, SIGTERM);
                old_proc.retiring = true;
            }
            reload.current = None;
        }
        while let Some(old) = reload.queue.pop_front() {
            let Some(p) = self.procs.iter().find(|p| p.pid == old && !p.retiring) else { continue };
            let (index, cpu) = (p.index, p.cpu);
            let sock = listener::open(self.config.bind, ListenOptions::of(&self.config));
            match sock.map_err(|e| e.to_string()).and_then(|s| self.spawn(index, cpu, s)) {
                Ok(()) => {
                    let new = self.procs.last().map(|p| p.pid).unwrap_or_default();
                    if let Some(r) = &mut self.reload {
                        r.current = Some((old, new));
                    }
                }
                Err(e) => {
                    error!("Reload stopped: cannot start a replacement for shard {index}: {e}");
                    self.reload = None;
                }
            }
            return;
        }
        info!("Reload complete: every shard replaced");
        self.reload = None;
    }

    /// TTIN: one more shard, on a CPU that has none (or the least used one with --share-cpus).
    fn add_shard(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let mut load: HashMap<usize, usize> = self.config.allowed_cpus.iter().map(|&c| (c, 0)).collect();
        for cpu in self.procs.iter().filter(|p| !p.retiring).map(|p| p.cpu).chain(self.respawns.iter().map(|r| r.cpu)) {
            *load.entry(cpu).or_default() += 1;
        }
        let Some((&cpu, &used)) = self.config.allowed_cpus.iter().map(|c| (c, &load[c])).min_by_key(|(_, n)| **n)
        else {
            return;
        };
        if used > 0 && !self.config.share_cpus {
            warn!(
                "TTIN ignored: every allowed CPU ({}) already runs a shard; start with --share-cpus to allow more",
                format_cpu_list(&self.config.allowed_cpus)
            );
            return;
        }
        let index = self.next_index;
        self.next_index += 1;
        match listener::open(self.config.bind, ListenOptions::of(&self.config)) {
            Ok(sock) => match self.spawn(index, cpu, sock) {
                Ok(()) => info!("Added shard {index} on CPU {cpu}"),
                Err(e) => error!("cannot add a shard: {e}"),
            },
            Err(e) => error!("cannot add a shard: {e}"),
        }
    }

    /// TTOU: one shard fewer, never below one; the oldest goes (as gunicorn).
    fn remove_shard(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let active = self.procs.iter().filter(|p| !p.retiring).count() + self.respawns.len();
        if active <= 1 {
            warn!("TTOU ignored: one shard is the minimum");
            return;
        }
        if let Some(p) = self.procs.iter_mut().filter(|p| !p.retiring).min_by_key(|p| p.started) {
            info!("Retiring shard {} (pid {}) on CPU {}", p.index, p.pid, p.cpu);
            send(p.pid, SIGTERM);
            p.retiring = true;
        }
    }
}
