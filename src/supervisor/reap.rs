//! How shards leave: gunicorn's `murder_workers` (WORKER TIMEOUT: eject the listener when nobody
//! else holds it, SIGABRT, then SIGKILL) and `reap_workers` (collect every exit, say how it ended,
//! and decide: restart with backoff, report a boot failure in one ERROR line, halt at first start,
//! or, in a supervisor started by USR2, give the take-over up).
//!
//! It owns those decisions, over the arbiter's table; it must not start shards (restarts are
//! queued for the arbiter's `manage`) or change the phase except through the arbiter's own stop.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;
use tracing::{debug, error, info, warn};

use super::arbiter::{Arbiter, Respawn};
use super::lifecycle::{Phase, signal_name};
use super::policy;
use super::table::{Life, Proc, Purpose};
use crate::heartbeat::state;
use crate::listener;
use crate::process::{BOOT_ERROR, send_signal as send};

impl Arbiter {
    /// gunicorn's `murder_workers`: the first pass logs WORKER TIMEOUT, ejects the listener (when no
    /// one else holds it and another shard serves) and sends SIGABRT; a later pass, if the shard is still there, SIGKILL.
    pub(super) fn murder(&mut self, slot: usize, pid: i32, age: Duration) {
        let period = self.check_period;
        let Some(pos) = self.procs.iter().position(|p| p.slot == slot && p.pid == pid) else { return };
        let sock = self.procs[pos].listener.try_clone().ok();
        // Ejected, its queue moves to the shards that serve; when none does, it stays for the
        // replacement (which adopts the listener), rather than every client being refused.
        let others_serve = self.another_shard_serves(self.procs[pos].index);
        let may_eject = others_serve && sock.is_some_and(|sock| self.may_shut_down(&sock, Some(pos)));
        let p = &mut self.procs[pos];
        match p.life {
            Life::Serving | Life::Retiring => {
                error!(critical = true, "WORKER TIMEOUT (pid:{pid})");
                self.collector.worker_timeout();
                debug!("shard {} heartbeat is {:.1}s old", p.index, age.as_secs_f64());
                // A listener someone else holds stays: they accept from it, and this shard no longer does.
                if may_eject {
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

    /// Collects every exited shard (and a USR2's new supervisor), logs how it ended, and decides
    /// what follows.
    pub(super) fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let how = if libc::WIFSIGNALED(status) {
                format!("was sent {}", signal_name(libc::WTERMSIG(status)))
            } else {
                format!("exited with code {}", libc::WEXITSTATUS(status))
            };
            let Some(pos) = self.procs.iter().position(|p| p.pid == pid) else {
                self.upgrade_child_exited(pid, &how);
                continue;
            };
            let mut p = self.procs.remove(pos);
            if matches!(self.phase, Phase::Draining(_)) {
                // The server is stopping and this process will exit soon, relay threads and all:
                // let the shard's last lines ("served N requests", "Worker exiting") through first.
                p.output.flush(Duration::from_millis(500));
            }
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
            self.collector.retire(p.slot);
            self.heartbeats.free(p.slot);
            let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            let signaled = libc::WIFSIGNALED(status);
            let unexpected = !p.booted && !self.draining() && !p.life.retiring();
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
            // A supervisor started by USR2 gives up at its first shard death before serving,
            // whatever the cause: the old supervisor still serves, and a crash loop here could only
            // disturb it.
            if unexpected && self.handover.is_some() && matches!(self.phase, Phase::Starting) {
                self.give_up_takeover(&p, &how);
                continue;
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
        if matches!(self.phase, Phase::Starting) && exit_code == Some(BOOT_ERROR) {
            error!("Worker (pid:{pid}) {how}: {reason}");
            self.halt("Worker failed to boot.", BOOT_ERROR);
            return false;
        }
        if let Some(handled) = self.reload_saw_failure(p, how, &reason) {
            return !handled;
        }
        if p.purpose == Purpose::Added {
            error!("TTIN failed: the new shard {} (pid {pid}) {how} before it booted: {reason}", p.index);
            self.forget_index_if_gone(p.index);
            return false;
        }
        error!("Shard {} (pid {pid}) {how} before it booted: {reason}", p.index);
        true
    }

    /// In a supervisor started by USR2: a shard died before every shard served. One ERROR line
    /// (and `STATUS=`) says why; `FAILED` goes to the old supervisor, which carries on; this one
    /// stops its shards without touching the listeners it shares with the old ones, and exits 1.
    fn give_up_takeover(&mut self, p: &Proc, how: &str) {
        let reason = p.output.reason(Duration::from_millis(500));
        let parent = self.handover.as_ref().map_or(0, |h| h.parent);
        let why = format!(
            "shard {} (pid {}) {how} before it booted{}",
            p.index,
            p.pid,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
        error!("USR2 take-over abandoned: {why}; the old supervisor (pid {parent}) carries on");
        self.notify.stopping(format!("Stopping: USR2 take-over abandoned: {why}"));
        self.report_failed(&format!("its {why}"));
        self.begin_stop(false, 1);
    }

    /// Whether a booted shard of another index accepts on a listener of its own, so that a queue
    /// taken out of the group has somewhere to go.
    fn another_shard_serves(&self, index: usize) -> bool {
        self.procs.iter().any(|q| {
            q.index != index
                && q.booted
                && !q.life.retiring()
                && !q.life.ejected()
                && listener::is_listening(&q.listener)
        })
    }

    fn after_exit(&mut self, p: Proc) {
        if self.reload_saw_exit(&p) {
            return;
        }
        if self.draining() || p.life.retiring() {
            self.forget_index_if_gone(p.index);
            return;
        }
        if self.procs.iter().any(|q| q.index == p.index && !q.life.retiring()) {
            return;
        }
        let streak = self.streaks.entry(p.index).or_insert(0);
        *streak = policy::next_streak(*streak, p.started.elapsed());
        let delay = policy::restart_delay(*streak);
        let streak = *streak;
        // Still listening unless WORKER TIMEOUT ejected it; its queue goes to the replacement.
        let mut keep = listener::is_listening(&p.listener);
        if delay >= Duration::from_secs(1) {
            warn!(
                "Shard {} keeps crashing ({} times in a row); restarting it in {:.1}s",
                p.index,
                streak,
                delay.as_secs_f64()
            );
            // Clients should not wait that long on a queue nobody accepts from: a listener that is
            // this shard's alone leaves the group, and its queue moves to the shards that serve.
            // One someone else holds (the other shards of a shared bind, another supervisor's
            // shards) stays for them: this copy is only closed. But when no other shard serves,
            // leaving the group would refuse every client until the restart: the listener stays,
            // and they wait for it (at most MAX_RESTART_DELAY) instead.
            if keep && !self.another_shard_serves(p.index) {
                info!("No other shard serves: shard {}'s listener stays for its restart", p.index);
            } else {
                if keep && self.may_shut_down(&p.listener, None) {
                    listener::eject(&p.listener);
                }
                keep = false;
            }
        }
        let listener = keep.then_some(p.listener);
        self.collector.restarted();
        self.respawns.push(Respawn { index: p.index, cpu: p.cpu, at: Instant::now() + delay, listener });
    }
}
