//! The arbiter loop: one thread that owns the shard table and the supervisor's one lifecycle
//! [`Phase`], and answers every [`Event`].
//!
//! It owns reaping (logging how each shard ended), respawning with backoff (keeping a crashed
//! shard's listener for its replacement), the WORKER TIMEOUT policy (eject the listener when no one
//! else holds it, SIGABRT, SIGKILL on the next pass), graceful and quick stops, halting on a boot
//! failure, and log reopening. What a signal does in each phase is [`super::lifecycle::route`]'s
//! table; a signal it queues is handled when the phase is back to serving. Rolling reloads and
//! resizing live in [`super::reload`], USR2 in [`super::upgrade`], who holds a listener in
//! [`super::owners`], the arithmetic in [`super::policy`]. It must not block: every wait is the
//! loop's own timeout.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;
use socket2::Socket;
use tracing::{error, info, warn};

use super::events::Event;
use super::handover::Handover;
use super::lifecycle::{Phase, RELOAD_POLL, Route, Stopping, route, short_name};
use super::notify::Notifier;
use super::owners::Owners;
use super::pidfile::Pidfile;
use super::table::{Proc, Purpose};
use crate::config::Config;
use crate::heartbeat::{Heartbeats, state};
use crate::listener::shared::Shared;
use crate::listener::{self, ListenError, ListenOptions};
use crate::metrics::collect::Collector;
use crate::process::{BOOT_ERROR, send_signal as send};

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

/// What the arbiter is built from: everything start-up prepared (src/supervisor/startup.rs).
#[derive(Debug)]
pub struct Parts {
    /// The configuration, with `bind` holding the real port.
    pub config: Config,
    /// This binary, for spawning shards.
    pub exe: PathBuf,
    /// The heartbeat region.
    pub heartbeats: Arc<Heartbeats>,
    /// The metrics collector the shards' counters are folded into when they exit.
    pub collector: Arc<Collector>,
    /// The watchdog's check period.
    pub check_period: Duration,
    /// systemd, when it runs us as `Type=notify`.
    pub notify: Notifier,
    /// For threads the arbiter starts itself (the USR2 report reader).
    pub events: Sender<Event>,
    /// Started by an old supervisor's USR2: how to tell it that this one serves.
    pub handover: Option<Handover>,
    /// The listeners every shard shares.
    pub shared: Shared,
    /// How this supervisor was configured, for HUP.
    pub invocation: Option<crate::cli::Invocation>,
    /// `-p`.
    pub pidfile: Option<Pidfile>,
}

/// The supervisor's state, owned by the arbiter thread.
#[derive(Debug)]
pub struct Arbiter {
    pub(super) config: Config,
    pub(super) exe: PathBuf,
    pub(super) heartbeats: Arc<Heartbeats>,
    pub(super) collector: Arc<Collector>,
    pub(super) procs: Vec<Proc>,
    pub(super) respawns: Vec<Respawn>,
    /// Consecutive quick deaths per shard index; an index leaves it when it leaves for good.
    pub(super) streaks: HashMap<usize, u32>,
    pub(super) next_index: usize,
    /// See [`Phase`].
    pub(super) phase: Phase,
    /// HUP, TTIN and TTOU that arrived during a reload, an upgrade or the first start, in order.
    queued: VecDeque<i32>,
    /// The watchdog's check period: SIGKILL follows SIGABRT after one more of these.
    pub(super) check_period: Duration,
    /// systemd, when it runs us as `Type=notify`.
    pub(super) notify: Notifier,
    /// Requests answered by shards that have exited, for `STATUS=`.
    pub(super) served_by_gone: u64,
    /// Why the last reload or upgrade failed, until one succeeds (shown in `STATUS=`).
    pub(super) reload_error: Option<String>,
    /// For threads the arbiter starts itself (the USR2 report reader).
    pub(super) events: Sender<Event>,
    /// Started by an old supervisor's USR2: how to tell it that this one serves.
    pub(super) handover: Option<Handover>,
    /// The listeners every shard shares (unix sockets, inherited ones, later `-b` addresses).
    pub(super) shared: Shared,
    /// Which listeners another supervisor's processes hold too.
    pub(super) owners: Owners,
    /// How this supervisor was configured, for HUP to load the configuration again.
    pub(super) invocation: Option<crate::cli::Invocation>,
    /// `-p`: removed when the arbiter is dropped.
    pub(super) pidfile: Option<Pidfile>,
}

impl Arbiter {
    /// The arbiter, complete: no shards yet, in [`Phase::Starting`].
    pub fn new(parts: Parts) -> Arbiter {
        let owners = match &parts.handover {
            Some(h) => {
                Owners::inherited_from(h.parent, h.listeners.iter().filter_map(|l| listener::identity(&l.socket)))
            }
            None => Owners::default(),
        };
        Arbiter {
            next_index: parts.config.cpus.len(),
            exe: parts.exe,
            heartbeats: parts.heartbeats,
            collector: parts.collector,
            procs: Vec::new(),
            respawns: Vec::new(),
            streaks: HashMap::new(),
            phase: Phase::Starting,
            queued: VecDeque::new(),
            check_period: parts.check_period,
            notify: parts.notify,
            served_by_gone: 0,
            reload_error: None,
            events: parts.events,
            handover: parts.handover,
            shared: parts.shared,
            owners,
            invocation: parts.invocation,
            pidfile: parts.pidfile,
            config: parts.config,
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

    /// Whether the server is stopping.
    pub(super) fn draining(&self) -> bool {
        matches!(self.phase, Phase::Draining(_))
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
            if matches!(self.phase, Phase::Serving | Phase::Upgrading(_)) {
                let status = self.status_line();
                self.notify.status(status);
            }
            if let Some(code) = code {
                let reason = match &self.phase {
                    Phase::Draining(s) => s.reason.clone(),
                    _ => None,
                };
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
        match &self.phase {
            Phase::Draining(s) => wake = wake.min(s.deadline),
            Phase::Upgrading(u) => wake = wake.min(u.next_deadline()),
            Phase::Reloading(_) => wake = wake.min(now + RELOAD_POLL),
            Phase::Starting | Phase::Serving => {}
        }
        if let Some(pet) = self.notify.next_pet() {
            wake = wake.min(pet);
        }
        if self.procs.iter().any(|p| !p.booted) {
            wake = wake.min(now + RELOAD_POLL);
        }
        wake.saturating_duration_since(now).max(Duration::from_millis(1))
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(SIGCHLD) => {}
            Event::Signal(sig) => {
                info!("Handling signal: {}", short_name(sig));
                match route(self.phase.kind(), sig) {
                    Route::Act => self.act(sig),
                    Route::Queue => {
                        info!("{} queued: {}", short_name(sig).to_uppercase(), self.busy_with());
                        self.queued.push_back(sig);
                    }
                    Route::Refuse(why) => warn!("{} ignored: {why}", short_name(sig).to_uppercase()),
                    Route::Ignore => {}
                }
            }
            Event::Stale { slot, pid, age } => self.murder(slot, pid, age),
            Event::Upgrade(news) => self.upgrade_news(news),
        }
    }

    /// What the supervisor is busy with, for the line that says a signal waits for it.
    fn busy_with(&self) -> &'static str {
        match self.phase {
            Phase::Starting => "handled once the first shards serve",
            Phase::Reloading(_) => "handled once the reload completes",
            Phase::Upgrading(_) => "handled if the USR2 fails (the new supervisor handles its own signals)",
            Phase::Serving | Phase::Draining(_) => "",
        }
    }

    fn act(&mut self, sig: i32) {
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

    /// Back to serving after the first start, a reload or a failed upgrade: the signals that
    /// waited run now, in order, until one starts another phase.
    pub(super) fn serve_on(&mut self) {
        self.phase = Phase::Serving;
        while matches!(self.phase, Phase::Serving) {
            let Some(sig) = self.queued.pop_front() else { return };
            info!("Handling queued signal: {}", short_name(sig));
            self.act(sig);
        }
    }

    /// The signals that waited for the phase to end, taken.
    pub(super) fn take_queued(&mut self) -> Vec<i32> {
        self.queued.drain(..).collect()
    }

    /// Whether `sock` may be shut down: nobody else, here (a shard other than the one at `except`
    /// in the table, a pending restart) or in another supervisor, holds it.
    pub(super) fn may_shut_down(&mut self, sock: &Socket, except: Option<usize>) -> bool {
        let others = self.procs.iter().enumerate().filter(|(i, _)| Some(*i) != except).map(|(_, q)| &q.listener);
        let others = others.chain(self.respawns.iter().filter_map(|r| r.listener.as_ref()));
        self.owners.may_shut_down(sock, others, self.config.main_listener_shared())
    }

    /// Notes the shards that have booted since the last look. A replacement's listener joins the
    /// reuseport group now at the latest (a shard of this release listens by itself; one of an older
    /// release expects a listening socket and retries its accept until it is); so do the shared
    /// binds a HUP added, once a shard serving them has booted. Once every shard of the first start
    /// has booted, the server is ready.
    fn check_boots(&mut self) {
        let options = ListenOptions::of(&self.config);
        let mut any = false;
        for p in self.procs.iter_mut().filter(|p| !p.booted) {
            if self.heartbeats.slot(p.slot).state.load(Ordering::Acquire) != state::BOOTED {
                continue;
            }
            p.booted = true;
            any = true;
            // Not for a shard asked to stop: it may have shut its listener down already, and
            // listening again would put a queue nobody serves back in the group.
            if !p.life.retiring() && !p.life.ejected() && !listener::is_listening(&p.listener) {
                if let Err(e) = listener::listen(&p.listener, options) {
                    error!("cannot listen for shard {} (pid {}): {e}", p.index, p.pid);
                }
            }
        }
        if any {
            self.shared.listen_served(options.backlog);
        }
        let all_booted = self.respawns.is_empty() && self.procs.iter().all(|p| p.booted);
        if matches!(self.phase, Phase::Starting) && all_booted {
            info!("Ready: {} shards serving", self.procs.len());
            self.report_ready();
            let status = self.status_line();
            self.notify.ready(status);
            self.serve_on();
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

    /// Starts due respawns, moves a reload or an upgrade along, and finishes a stop. Returns the
    /// exit status once the server is done.
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
        self.check_upgrade(now);
        let Phase::Draining(stopping) = &mut self.phase else { return None };
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
        match &mut self.phase {
            // A second INT/QUIT during a graceful stop makes it quick.
            Phase::Draining(s) if !graceful => {
                s.deadline = s.deadline.min(Instant::now() + grace.min(HALT_GRACE));
                return;
            }
            Phase::Draining(_) => return,
            _ => {}
        }
        let previous = std::mem::replace(
            &mut self.phase,
            Phase::Draining(Stopping { deadline: Instant::now() + grace, killed: false, code, reason: None }),
        );
        if let Phase::Upgrading(up) = previous {
            // It would otherwise start serving on its own once this one is gone.
            warn!("USR2 abandoned: stopping the new supervisor (pid {})", up.child);
            send(up.child as i32, SIGTERM);
        }
        if !self.queued.is_empty() {
            info!("Stopping: {} queued signals dropped", self.queued.len());
            self.queued.clear();
        }
        self.respawns.clear();
        self.notify.stopping(format!("Stopping: {} shards", self.procs.len()));
        for pos in 0..self.procs.len() {
            let p = &self.procs[pos];
            // One already retiring gracefully (HUP, TTOU, a USR2 hand-over) carries on as it was
            // told: a TERM would make a shard that hands its listener over close it after all.
            if graceful && p.life.retiring() {
                continue;
            }
            // A graceful stop drains and shuts the listener down; one another supervisor's shards
            // hold too is left to them: that shard hands over (USR2) instead.
            let foreign = self.owners.is_foreign(listener::identity(&p.listener));
            let sig = match (graceful, foreign) {
                (false, _) => SIGQUIT,
                (true, true) if p.hands_over(&self.heartbeats) => SIGUSR2,
                (true, true) => SIGQUIT,
                (true, false) => SIGTERM,
            };
            send(p.pid, sig);
            let p = &mut self.procs[pos];
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
    pub(super) fn halt(&mut self, reason: &str, code: i32) {
        self.begin_stop(false, code);
        self.notify.stopping(format!("Stopping: {reason}"));
        self.report_failed(reason);
        if let Phase::Draining(s) = &mut self.phase {
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
