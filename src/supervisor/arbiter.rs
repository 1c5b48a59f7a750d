//! The arbiter loop: one thread that owns the shard table and answers every [`Event`].
//!
//! It owns reaping (logging how each shard ended), respawning with backoff (keeping a crashed
//! shard's listener for its replacement), the WORKER TIMEOUT policy (eject the listener, SIGABRT,
//! SIGKILL on the next pass), graceful and quick stops, halting on a boot failure, and log
//! reopening. Rolling reloads and resizing live in [`super::reload`]; the arithmetic behind them in
//! [`super::policy`]. It must not block: every wait is the loop's own timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;
use socket2::Socket;
use tracing::{debug, error, info, warn};

use super::Event;
use super::notify::Notifier;
use super::pidfile::Pidfile;
use super::policy;
use super::procs::{Life, Proc, Purpose, same_socket};
use super::reload::{RELOAD_POLL, Reload};
use super::upgrade::Handover;
use crate::config::Config;
use crate::heartbeat::{Heartbeats, state};
use crate::listener::shared::Shared;
use crate::listener::{self, ListenError, ListenOptions};
use crate::shard::BOOT_ERROR;

/// How long a halt (boot failure) waits for the other shards before killing them.
const HALT_GRACE: Duration = Duration::from_secs(2);

/// A shard to start once its backoff delay is over.
#[derive(Debug)]
pub struct Respawn {
    /// The shard index.
    pub index: usize,
    /// Its CPU.
    pub cpu: usize,
    /// When to start it.
    pub at: Instant,
    /// The listener to hand over, when the old one is still good (connections queued on it are
    /// then served by the new shard instead of being reset).
    pub listener: Option<Socket>,
}

/// A stop in progress.
#[derive(Debug)]
pub struct Stopping {
    deadline: Instant,
    killed: bool,
    code: i32,
    /// Why the server halts on its own, for gunicorn's `Reason:` line.
    reason: Option<String>,
}

/// The supervisor's state, owned by the arbiter thread.
#[derive(Debug)]
pub struct Arbiter {
    pub(super) config: Config,
    pub(super) exe: PathBuf,
    pub(super) heartbeats: Arc<Heartbeats>,
    pub(super) procs: Vec<Proc>,
    pub(super) respawns: Vec<Respawn>,
    /// Consecutive quick deaths per shard index; an index leaves it when it leaves for good.
    pub(super) streaks: HashMap<usize, u32>,
    pub(super) next_index: usize,
    pub(super) reload: Option<Reload>,
    pub(super) stopping: Option<Stopping>,
    /// The watchdog's check period: SIGKILL follows SIGABRT after one more of these.
    check_period: Duration,
    /// Every shard of the first start has booted. Until then a boot failure halts the server;
    /// after, it never does (the old shards, or the others, keep serving).
    pub(super) ready: bool,
    /// systemd, when it runs us as `Type=notify`.
    pub(super) notify: Notifier,
    /// Requests answered by shards that have exited, for `STATUS=`.
    served_by_gone: u64,
    /// Why the last reload failed, until one succeeds (shown in `STATUS=`).
    pub(super) reload_error: Option<String>,
    /// For threads the arbiter starts itself (the USR2 report reader).
    pub(super) events: Option<Sender<Event>>,
    /// USR2 in progress: the new supervisor's pid, until it reports.
    pub(super) upgrade: Option<i32>,
    /// Started by an old supervisor's USR2: how to tell it that this one serves.
    pub(super) handover: Option<Handover>,
    /// The listeners every shard shares (unix sockets, inherited ones, later `-b` addresses).
    pub(super) shared: Shared,
    /// How this supervisor was configured, for HUP to load the configuration again.
    pub(super) invocation: Option<crate::cli::Invocation>,
    /// `-p`: removed when the arbiter is dropped.
    pub(super) pidfile: Option<Pidfile>,
}

/// Sends `sig` to a shard.
pub fn send(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

/// `SIGTERM`, or `signal N` for one without a name.
pub fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

impl Arbiter {
    /// An arbiter with no shards yet.
    pub fn new(
        config: Config,
        exe: PathBuf,
        heartbeats: Arc<Heartbeats>,
        check_period: Duration,
        notify: Notifier,
    ) -> Arbiter {
        Arbiter {
            exe,
            heartbeats,
            procs: Vec::new(),
            respawns: Vec::new(),
            streaks: HashMap::new(),
            next_index: config.cpus.len(),
            reload: None,
            stopping: None,
            check_period,
            ready: false,
            notify,
            served_by_gone: 0,
            reload_error: None,
            events: None,
            upgrade: None,
            handover: None,
            shared: Shared::default(),
            invocation: None,
            pidfile: None,
            config,
        }
    }

    /// Spawns the first shards, one per listener; a shard that cannot be started halts the server.
    pub fn spawn_first(&mut self, listeners: Vec<Socket>) {
        let cpus = self.config.cpus.clone();
        for (index, (cpu, sock)) in cpus.into_iter().zip(listeners).enumerate() {
            if let Err(e) = self.spawn(index, cpu, sock, Purpose::First) {
                error!("cannot start shard {index}: {e}");
                self.halt("Worker failed to boot.", BOOT_ERROR);
                break;
            }
        }
    }

    /// The arbiter loop: wait for an event or the next due chore, handle it, reap, manage.
    pub fn supervise(&mut self, inbox: Receiver<Event>) -> i32 {
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
            let code = self.manage();
            let now = Instant::now();
            self.notify.pet(now);
            if self.ready && self.stopping.is_none() && self.reload.is_none() {
                let status = self.status_line();
                self.notify.status(status);
            }
            if let Some(code) = code {
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
        if let Some(pet) = self.notify.next_pet() {
            wake = wake.min(pet);
        }
        if self.reload.is_some() || self.procs.iter().any(|p| !p.booted) {
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
                    SIGUSR2 => self.begin_upgrade(),
                    _ => {}
                }
            }
            Event::Stale { slot, pid, age } => self.murder(slot, pid, age),
            Event::Upgrade(news) => self.upgrade_news(news),
        }
    }

    /// gunicorn's `murder_workers`: the first pass logs WORKER TIMEOUT, ejects the listener and sends
    /// SIGABRT; a later pass, if the shard is still there, sends SIGKILL.
    fn murder(&mut self, slot: usize, pid: i32, age: Duration) {
        let period = self.check_period;
        let Some(pos) = self.procs.iter().position(|p| p.slot == slot && p.pid == pid) else { return };
        // A listener shared with another shard (a HUP replacement and its predecessor) stays: the
        // other one serves its queue.
        let shared =
            self.procs.iter().enumerate().any(|(i, q)| i != pos && same_socket(&q.listener, &self.procs[pos].listener));
        let p = &mut self.procs[pos];
        match p.life {
            Life::Serving | Life::Retiring => {
                error!(critical = true, "WORKER TIMEOUT (pid:{pid})");
                crate::metrics::collect::on_worker_timeout();
                debug!("shard {} heartbeat is {:.1}s old", p.index, age.as_secs_f64());
                // A shared listener stays: the other shards accept from it, and this one no longer does.
                if !shared && !self.config.main_listener_shared() {
                    listener::eject(&p.listener);
                }
                send(pid, SIGABRT);
                p.life = Life::Aborted { at: Instant::now(), retiring: p.life.retiring() };
            }
            Life::Aborted { at, retiring } if at.elapsed() >= period => {
                send(pid, SIGKILL);
                p.life = Life::Killed { retiring };
            }
            Life::Aborted { .. } | Life::Killed { .. } => {}
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
            let mut p = self.procs.remove(pos);
            let slot = self.heartbeats.slot(p.slot);
            p.booted |= slot.state.load(Ordering::Acquire) == state::BOOTED;
            debug!(
                "shard {} (pid {pid}) answered {} requests on {} connections",
                p.index,
                slot.requests.load(Ordering::Relaxed),
                slot.connections.load(Ordering::Relaxed)
            );
            self.served_by_gone += slot.requests.load(Ordering::Relaxed);
            // Counters move to the metrics totals before the slot can be reused (and while a scrape
            // that skips free slots would still see them in the block).
            crate::metrics::collect::on_reaped(p.slot);
            slot.state.store(state::FREE, Ordering::Release);
            let how = if libc::WIFSIGNALED(status) {
                format!("was sent {}", signal_name(libc::WTERMSIG(status)))
            } else {
                format!("exited with code {}", libc::WEXITSTATUS(status))
            };
            let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            let signaled = libc::WIFSIGNALED(status);
            let unexpected = !p.booted && self.stopping.is_none() && !p.life.retiring();
            // A shard that exited on its own before it booted is reported once, with its reason, by
            // `boot_failed`; one killed by a signal gets gunicorn's line first.
            if signaled {
                match libc::WTERMSIG(status) {
                    SIGKILL => error!("Worker (pid:{pid}) {how}! Perhaps out of memory?"),
                    SIGTERM => info!("Worker (pid:{pid}) {how}!"),
                    _ => warn!("Worker (pid:{pid}) {how}!"),
                }
            } else if exit_code != Some(0) && !unexpected {
                error!("Worker (pid:{pid}) {how}");
            }
            let quoted = !signaled || matches!(p.purpose, Purpose::Replace | Purpose::Added);
            if unexpected && quoted && !self.boot_failed(&p, &how, exit_code) {
                continue;
            }
            self.after_exit(p);
        }
    }

    /// A shard exited before it booted, not asked to: says why, in one ERROR line quoting the shard's
    /// own last words, and decides what it means. At first start an exit 3 halts the server (as
    /// gunicorn); later it never does: a failed HUP replacement leaves the old shard serving, a
    /// failed TTIN shard is not retried, a failed restart backs off. Returns whether the exit goes
    /// on to the usual restart decision.
    fn boot_failed(&mut self, p: &Proc, how: &str, exit_code: Option<i32>) -> bool {
        let reason = p.output.reason(Duration::from_millis(500)).unwrap_or_else(|| {
            "it wrote nothing on stderr (with --error-logfile its own lines are in that file)".into()
        });
        let pid = p.pid;
        if !self.ready && exit_code == Some(BOOT_ERROR) {
            error!("Worker (pid:{pid}) {how}: {reason}");
            self.halt("Worker failed to boot.", BOOT_ERROR);
            return false;
        }
        if self.reload_saw_failure(p, how, &reason) {
            return false;
        }
        if p.purpose == Purpose::Added {
            error!("TTIN failed: the new shard {} (pid {pid}) {how} before it booted: {reason}", p.index);
            self.forget_index_if_gone(p.index);
            return false;
        }
        error!("Shard {} (pid {pid}) {how} before it booted: {reason}", p.index);
        true
    }

    fn after_exit(&mut self, p: Proc) {
        if self.reload_saw_exit(&p) {
            return;
        }
        if self.stopping.is_some() || p.life.retiring() {
            self.forget_index_if_gone(p.index);
            return;
        }
        if self.procs.iter().any(|q| q.index == p.index && !q.life.retiring()) {
            return;
        }
        let streak = self.streaks.entry(p.index).or_insert(0);
        *streak = policy::next_streak(*streak, p.started.elapsed());
        let delay = policy::restart_delay(*streak);
        // Still listening unless WORKER TIMEOUT ejected it (a listener shared with another shard is
        // never ejected, and its queue goes to the replacement).
        let mut keep = listener::is_listening(&p.listener);
        if delay >= Duration::from_secs(1) {
            warn!(
                "Shard {} keeps crashing ({} times in a row); restarting it in {:.1}s",
                p.index,
                streak,
                delay.as_secs_f64()
            );
            // Clients should not wait that long on a queue nobody accepts from.
            if keep {
                if !self.config.main_listener_shared() {
                    listener::eject(&p.listener);
                }
                keep = false;
            }
        }
        let listener = keep.then_some(p.listener);
        crate::metrics::collect::on_restart();
        self.respawns.push(Respawn { index: p.index, cpu: p.cpu, at: Instant::now() + delay, listener });
    }

    /// Notes the shards that have booted since the last look. A replacement's listener joins the
    /// reuseport group now at the latest (a shard of this release listens by itself; one of an older
    /// release expects a listening socket and retries its accept until it is). Once every shard of
    /// the first start has booted, the server is ready.
    fn check_boots(&mut self) {
        for p in self.procs.iter_mut().filter(|p| !p.booted) {
            if self.heartbeats.slot(p.slot).state.load(Ordering::Acquire) != state::BOOTED {
                continue;
            }
            p.booted = true;
            // Not for a shard asked to stop: it may have shut its listener down already, and
            // listening again would put a queue nobody serves back in the group.
            if !p.life.retiring() && !p.life.ejected() && !listener::is_listening(&p.listener) {
                if let Err(e) = listener::listen(&p.listener, ListenOptions::of(&self.config)) {
                    error!("cannot listen for shard {} (pid {}): {e}", p.index, p.pid);
                }
            }
        }
        if !self.ready && self.stopping.is_none() && self.respawns.is_empty() && self.procs.iter().all(|p| p.booted) {
            self.ready = true;
            info!("Ready: {} shards serving", self.procs.len());
            self.report_ready();
            let status = self.status_line();
            self.notify.ready(status);
        }
    }

    /// A shard index with no process and no restart pending has left for good (TTOU): its crash
    /// streak goes with it, so the table stays as small as the shard count.
    pub(super) fn forget_index_if_gone(&mut self, index: usize) {
        let present = self.procs.iter().any(|q| q.index == index) || self.respawns.iter().any(|r| r.index == index);
        if !present {
            self.streaks.remove(&index);
        }
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
                None => self.fresh_listener(),
            };
            let started = sock.map_err(Into::into).and_then(|sock| self.spawn(r.index, r.cpu, sock, Purpose::Restart));
            if let Err(e) = started {
                error!("cannot restart shard {}: {e}; retrying in 1s", r.index);
                self.respawns.push(Respawn { at: now + Duration::from_secs(1), listener: None, ..r });
            }
        }
        self.check_boots();
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

    /// TERM (graceful) or INT/QUIT (quick): stop every shard, kill what is left at the deadline.
    pub(super) fn begin_stop(&mut self, graceful: bool, code: i32) {
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
        if let Some(pid) = self.upgrade.take() {
            // It would otherwise start serving on its own once this one is gone.
            warn!("USR2 abandoned: stopping the new supervisor (pid {pid})");
            send(pid, SIGTERM);
        }
        self.notify.stopping(format!("Stopping: {} shards", self.procs.len()));
        for p in &mut self.procs {
            // One already retiring gracefully (HUP, TTOU, a USR2 hand-over) carries on as it was
            // told: a TERM would make a shard that hands its listener over close it after all.
            if graceful && p.life.retiring() {
                continue;
            }
            send(p.pid, if graceful { SIGTERM } else { SIGQUIT });
            p.life = p.life.retire();
        }
    }

    /// What `STATUS=` says while serving: shards up, requests served, a failed reload's reason.
    pub(super) fn status_line(&self) -> String {
        let up = self.procs.iter().filter(|p| p.booted && !p.life.retiring()).count();
        let served = self.served_by_gone
            + self.procs.iter().map(|p| self.heartbeats.slot(p.slot).requests.load(Ordering::Relaxed)).sum::<u64>();
        let mut line = format!("{up} shards serving, {served} requests served");
        if let Some(e) = &self.reload_error {
            line.push_str("; ");
            line.push_str(e);
        }
        line
    }

    /// gunicorn's HaltServer: a shard could not boot, so restarting it would only loop.
    fn halt(&mut self, reason: &str, code: i32) {
        self.begin_stop(false, code);
        self.notify.stopping(format!("Stopping: {reason}"));
        self.report_failed(reason);
        if let Some(s) = &mut self.stopping {
            s.code = code;
            s.reason = Some(reason.to_string());
            s.deadline = s.deadline.min(Instant::now() + HALT_GRACE);
        }
    }
}

impl Arbiter {
    /// A listener for a shard that gets none kept for it: a new one in the reuseport group, bound
    /// but not listening (it listens once its shard can accept), or a copy of the shared main
    /// listener.
    pub(super) fn fresh_listener(&self) -> Result<socket2::Socket, ListenError> {
        match self.shared.main_copy() {
            Some(copy) => copy.map_err(|source| ListenError::Io { addr: self.config.bind, step: "dup", source }),
            None => listener::bind(self.config.bind, ListenOptions::of(&self.config)),
        }
    }
}
