//! Changing the set of shards while serving: HUP's rolling reload, TTIN and TTOU.
//!
//! It owns the three signal handlers and moving a [`Reload`] (the phase's data, in
//! src/supervisor/lifecycle.rs) along. A reload replaces one shard at a
//! time: the new one (the binary now on disk) shares the old one's listener and boots before the
//! old one is told to retire with USR2, leaving the listener to it, so no listener closes during a
//! HUP (docs/supervisor.md, "The rare reset on HUP"). An old shard of a release that cannot hand
//! over gets a replacement on a fresh listener and a TERM instead. It must not reap or respawn: the arbiter does, and tells a
//! reload about exits through [`Arbiter::reload_saw_exit`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use signal_hook::consts::signal::{SIGTERM, SIGUSR2};
use tracing::{error, info, warn};

use super::arbiter::Arbiter;
use super::lifecycle::{Phase, Reload, ReloadStep, ShardView};
use super::policy::{self, Ttou};
use super::procs::SpawnError;
use super::table::{Proc, Purpose};
use crate::heartbeat::state;
use crate::listener;
use crate::process::{format_cpu_list, send_signal as send};

impl Arbiter {
    /// HUP (the lifecycle table lets it through only while serving): replace every shard, one at a
    /// time, each new one booted and accepting before the old one retires (stops accepting,
    /// finishes, exits).
    pub(super) fn begin_reload(&mut self) {
        info!("Hang up: Master");
        if !self.reload_configuration() {
            return;
        }
        let table: Vec<(usize, i32, bool)> = self.procs.iter().map(|p| (p.index, p.pid, p.life.retiring())).collect();
        let queue = policy::reload_queue(&table);
        self.notify.reloading(format!("Reloading: replacing {} shards", queue.len()));
        self.phase = Phase::Reloading(Reload::of(queue));
    }

    /// Called by the arbiter when a shard exits before booting: `None` when it was not this reload's
    /// new shard. The reload stops there: the old shard was not told to retire and keeps serving
    /// (`Some(true)`: nothing more to do), and the next HUP starts over with whatever binary is on
    /// disk then. If the old shard has died meanwhile, the index must not be lost: `Some(false)`,
    /// and the usual restart follows.
    pub(super) fn reload_saw_failure(&mut self, p: &Proc, how: &str, reason: &str) -> Option<bool> {
        let Phase::Reloading(Reload { current: Some((old, new)), .. }) = self.phase else { return None };
        if new != p.pid {
            return None;
        }
        let old_serves = self.procs.iter().any(|q| q.pid == old);
        let after = if old_serves {
            format!("shard {} (pid {old}) and the others keep serving", p.index)
        } else {
            format!("shard {} (pid {old}) exited meanwhile and is restarted", p.index)
        };
        error!(
            "Reload failed: the new shard {} (pid {new}) {how} before it booted: {reason}; {after}; the next HUP \
             tries again",
            p.index
        );
        self.end_reload(Some(format!("last reload failed: the new shard {how} before it booted: {reason}")));
        Some(old_serves)
    }

    /// Loads the configuration again (command line, environment, `-c` file) for the new shards,
    /// and opens or closes the binds after the first to match it (src/supervisor/rebind.rs).
    /// One that no longer loads stops this reload before any shard is touched; settings fixed at
    /// start-up are kept, and named.
    fn reload_configuration(&mut self) -> bool {
        let Some(invocation) = &self.invocation else { return true };
        match invocation.reload() {
            Ok(new) => {
                let (mut config, kept) = self.config.for_reload(new);
                if !kept.is_empty() {
                    warn!("Reload: {} changed; applying that takes a restart, kept as it was", kept.join(", "));
                }
                // The binds after the first are applied before any shard is spawned: the
                // replacements get the new set in their hand-off.
                self.rebind(&mut config);
                super::limits::fit_open_files(config.worker_connections);
                self.config = config;
                true
            }
            Err(e) => {
                let why = format!("last reload refused: the configuration does not load: {}", e.summary());
                error!("{why}; the shards keep serving as they are");
                self.reload_error = Some(why);
                let status = self.status_line();
                self.notify.status(status);
                false
            }
        }
    }

    /// The reload is over: `READY=1` again, with what went wrong if anything did; the signals that
    /// waited for it run now.
    fn end_reload(&mut self, error: Option<String>) {
        self.reload_error = error;
        let status = self.status_line();
        self.notify.ready(status);
        self.serve_on();
    }

    /// Called by the arbiter for every other exit during a reload; true when the reload has dealt
    /// with it: the old shard died while its replacement boots (the replacement takes over), or the
    /// new one died after booting while the old one still serves.
    pub(super) fn reload_saw_exit(&mut self, p: &Proc) -> bool {
        let Phase::Reloading(reload) = &mut self.phase else { return false };
        match reload.current {
            Some((old, new)) if new == p.pid => {
                let old_serves = self.procs.iter().any(|q| q.pid == old);
                self.end_reload(Some(format!("last reload stopped: the new shard (pid {new}) exited")));
                old_serves
            }
            Some((old, _)) if old == p.pid => true,
            _ => false,
        }
    }

    /// Moves the reload along: the steps [`Reload::next`] asks for (retire an old shard whose
    /// replacement serves, start the next replacement, end), until it has to wait.
    pub(super) fn advance_reload(&mut self) {
        loop {
            let Arbiter { phase: Phase::Reloading(reload), procs, heartbeats, .. } = self else { return };
            let step = reload.next(|pid| {
                let p = procs.iter().find(|p| p.pid == pid)?;
                Some(ShardView {
                    index: p.index,
                    cpu: p.cpu,
                    booted: heartbeats.slot(p.slot).state.load(Ordering::Acquire) == state::BOOTED,
                    retiring: p.life.retiring(),
                    // A shard that can hand over shares its listener with its replacement: its
                    // queue is never closed. One of a release before that gets a fresh listener
                    // and a TERM.
                    can_share: p.hands_over(heartbeats) && !p.life.ejected() && listener::is_listening(&p.listener),
                })
            });
            match step {
                ReloadStep::Wait => return,
                ReloadStep::Retire { old, hand_over } => {
                    if let Some(p) = self.procs.iter_mut().find(|p| p.pid == old) {
                        send(old, if hand_over { SIGUSR2 } else { SIGTERM });
                        p.life = p.life.retire();
                    }
                }
                ReloadStep::Replace { old, index, cpu, share } => {
                    let shared = share.then(|| self.procs.iter().find(|p| p.pid == old)?.listener.try_clone().ok());
                    let shared = shared.flatten();
                    let is_shared = shared.is_some();
                    let started = match shared {
                        Some(sock) => self.spawn(index, cpu, sock, Purpose::Replace),
                        None => self.spawn_fresh(index, cpu, Purpose::Replace),
                    };
                    match (started, &mut self.phase) {
                        (Ok(new), Phase::Reloading(r)) => r.replacing(old, new, is_shared),
                        (Ok(_), _) => {}
                        (Err(e), _) => {
                            error!("Reload stopped: cannot start a replacement for shard {index}: {e}");
                            self.end_reload(Some(format!("last reload failed: cannot start a shard: {e}")));
                        }
                    }
                    return;
                }
                ReloadStep::Done => {
                    info!("Reload complete: every shard replaced");
                    self.end_reload(None);
                    return;
                }
            }
        }
    }

    /// Spawns a shard on a fresh listener, bound but not yet listening: it joins the reuseport group
    /// when the shard can accept, so a shard that never boots leaves no queue behind. Returns its pid.
    fn spawn_fresh(&mut self, index: usize, cpu: usize, purpose: Purpose) -> Result<i32, SpawnError> {
        let sock = self.fresh_listener()?;
        self.spawn(index, cpu, sock, purpose)
    }

    /// TTIN: one more shard, on a CPU that has none (or the least used one with --share-cpus).
    pub(super) fn add_shard(&mut self) {
        let busy =
            self.procs.iter().filter(|p| !p.life.retiring()).map(|p| p.cpu).chain(self.respawns.iter().map(|r| r.cpu));
        let Some(cpu) = policy::ttin_cpu(&self.config.allowed_cpus, busy, self.config.share_cpus) else {
            if !self.config.allowed_cpus.is_empty() {
                warn!(
                    "TTIN ignored: every allowed CPU ({}) already runs a shard; start with --share-cpus to allow more",
                    format_cpu_list(&self.config.allowed_cpus)
                );
            }
            return;
        };
        let index = self.next_index;
        self.next_index += 1;
        match self.spawn_fresh(index, cpu, Purpose::Added) {
            Ok(_) => info!("Added shard {index} on CPU {cpu}"),
            Err(e) => error!("cannot add a shard: {e}"),
        }
    }

    /// TTOU: one shard fewer, never below one; the oldest goes (as gunicorn).
    pub(super) fn remove_shard(&mut self) {
        let serving: Vec<(i32, Instant)> =
            self.procs.iter().filter(|p| !p.life.retiring()).map(|p| (p.pid, p.started)).collect();
        match policy::ttou(&serving, self.respawns.len()) {
            Ttou::AtMinimum => warn!("TTOU ignored: one shard is the minimum"),
            Ttou::CancelRestart => {
                // The one due last goes: it has crashed the most recently or the most often.
                let Some(pos) = (0..self.respawns.len()).max_by_key(|&i| self.respawns[i].at) else { return };
                let r = self.respawns.remove(pos);
                info!("Retiring shard {} (waiting to restart after crashing) on CPU {}", r.index, r.cpu);
                self.forget_index_if_gone(r.index);
            }
            Ttou::Retire(oldest) => {
                // The retired shard drains its listener and shuts it down. Right after a reload the
                // oldest may still share its listener with the predecessor it replaced, which is
                // handing over and may not have stopped accepting yet: prefer the oldest shard whose
                // listener nobody else holds (found by the fault schedule: the predecessor's accept
                // saw EINVAL).
                let alone: Vec<(i32, Instant)> = serving
                    .iter()
                    .filter(|(pid, _)| {
                        let Some(pos) = self.procs.iter().position(|p| p.pid == *pid) else { return false };
                        let id = listener::identity(&self.procs[pos].listener);
                        let here = self
                            .procs
                            .iter()
                            .enumerate()
                            .any(|(i, q)| i != pos && listener::identity(&q.listener) == id);
                        // Nor another supervisor's shards (the old one's, handing over after a USR2).
                        !here && !self.owners.is_foreign(id)
                    })
                    .copied()
                    .collect();
                let pid = alone.iter().min_by_key(|(_, started)| *started).map_or(oldest, |(pid, _)| *pid);
                if let Some(p) = self.procs.iter_mut().find(|p| p.pid == pid) {
                    info!("Retiring shard {} (pid {}) on CPU {}", p.index, p.pid, p.cpu);
                    send(p.pid, SIGTERM);
                    p.life = p.life.retire();
                }
            }
        }
    }
}
