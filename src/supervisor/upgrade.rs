//! USR2: the supervisor upgrades itself, as gunicorn and nginx do, without a failed request.
//!
//! The old supervisor starts the binary now on disk with its own arguments, its listeners inherited
//! and an [`Upgrade`] hand-off in `HITCORE_UPGRADE`. The new supervisor takes the address from the
//! inherited listeners (no probe: the address is in use by design), opens one listener of its own
//! per shard in the same reuseport group (bound, listening only once its shard can accept), takes
//! over the pid file, and starts its shards. Once every one of them serves it writes `READY` on the
//! report pipe and tells systemd `MAINPID=` and `READY=1`; the old supervisor then tells systemd
//! `MAINPID=` too (it is still the main process systemd listens to), stops talking to systemd,
//! drains its shards as on TERM and exits. If the new one cannot start, it writes `FAILED <why>` (or
//! just exits), and the old one logs it and carries on.
//!
//! The new supervisor is a child of the old one until the old one exits; then the kernel reparents
//! it (to init, or to the nearest subreaper: systemd). systemd follows it through `MAINPID=`, and a
//! pid-file based manager through the rewritten pid file. A manager that watches its direct child
//! (supervisord, a container's entry point, a shell) sees that child exit and must not be used with
//! USR2: use HUP there, which replaces every shard with the binary on disk too.
//!
//! It owns the old supervisor's side of the hand-over (starting the new one, its report, the
//! deadline, the end of a failed upgrade); the new supervisor's side is src/supervisor/handover.rs,
//! and what the phase holds is [`Upgrading`] (src/supervisor/lifecycle.rs). It must not touch
//! shards other than through the arbiter's table.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use signal_hook::consts::signal::{SIGKILL, SIGTERM, SIGUSR2};

use tracing::{error, info, warn};

use super::arbiter::Arbiter;
use super::events::{Event, UpgradeNews};
use super::lifecycle::{Phase, UpgradeDue, Upgrading, short_name};
use super::notify::Notifier;
use crate::handoff::{self, Inherited, UPGRADE_ENV, Upgrade};
use crate::listener::{self, SockId};
use crate::process::send_signal as send;

impl Arbiter {
    /// USR2 in the old supervisor (the lifecycle table lets it through only while serving): start
    /// the new one.
    pub(super) fn begin_upgrade(&mut self) {
        // The hand-over passes per-shard TCP listeners only; shared ones (unix:, fd://, systemd's,
        // later -b addresses) are not handed over yet, and a new supervisor would refuse them.
        if self.shared.main.is_some() || !self.shared.extras.is_empty() {
            warn!(
                "USR2 ignored: unix:, fd:// and several -b listeners are not handed over yet; HUP replaces every shard"
            );
            return;
        }
        match self.start_new_supervisor() {
            Ok(up) => {
                info!(
                    "USR2: started a new supervisor (pid {}) from {}; it takes over once its shards serve (within \
                     {}s, --upgrade-timeout)",
                    up.child,
                    self.exe.display(),
                    self.config.upgrade_timeout.as_secs_f64()
                );
                self.owners.pass(up.passed.iter().map(|(_, id)| *id));
                self.phase = Phase::Upgrading(up);
            }
            Err(e) => error!(
                "USR2 failed: cannot start a new supervisor from {}: {e}; this one carries on",
                self.exe.display()
            ),
        }
    }

    fn start_new_supervisor(&mut self) -> std::io::Result<Upgrading> {
        let events = self.events.clone();
        let mut ends = [0; 2];
        // SAFETY: pipe2 with a valid two-int array; both ends are owned below.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read, write) = unsafe { (File::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let passing: Vec<&super::table::Proc> =
            self.procs.iter().filter(|p| !p.life.retiring() && listener::is_listening(&p.listener)).collect();
        let listeners: Vec<Inherited> = passing
            .iter()
            .map(|p| Inherited {
                fd: p.listener.as_raw_fd(),
                addr: self.config.bind.to_string(),
                shared: p.hands_over(&self.heartbeats),
            })
            .collect();
        let passed: Vec<(RawFd, SockId)> =
            passing.iter().filter_map(|p| Some((p.listener.as_raw_fd(), listener::identity(&p.listener)?))).collect();
        // The secret variables go in a sealed memfd, not in the new supervisor's environment.
        let secrets = handoff::seal_secrets()?;
        let secrets_fd = secrets.as_ref().map(|s| s.fd.as_raw_fd());
        let upgrade = Upgrade {
            version: handoff::VERSION,
            parent: std::process::id(),
            report_fd: write.as_raw_fd(),
            listeners,
            secrets_fd,
        };
        let mut keep: Vec<RawFd> = upgrade.listeners.iter().map(|l| l.fd).collect();
        keep.push(write.as_raw_fd());
        keep.extend(secrets_fd);
        let text = serde_json::to_string(&upgrade).map_err(std::io::Error::other)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(std::env::args_os().skip(1)).env(UPGRADE_ENV, text).stdin(Stdio::null());
        for var in handoff::secret_env() {
            cmd.env_remove(var);
        }
        // SAFETY: only fcntl, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(write);
        drop(secrets);
        std::thread::Builder::new().name("hitcore-upgrade".into()).spawn(move || {
            let mut said = String::new();
            let _ = (&read).read_to_string(&mut said);
            let news = match said.trim_end() {
                s if s == "READY" || s.starts_with("READY ") => {
                    UpgradeNews::Ready(s["READY".len()..].split(',').filter_map(|fd| fd.trim().parse().ok()).collect())
                }
                s => match s.strip_prefix("FAILED ") {
                    Some(why) => UpgradeNews::Failed(why.to_string()),
                    None => UpgradeNews::Gone,
                },
            };
            let _ = events.send(Event::Upgrade(news));
        })?;
        Ok(Upgrading::new(child.id(), Instant::now() + self.config.upgrade_timeout, passed))
    }

    /// The new supervisor's report, in the old one.
    pub(super) fn upgrade_news(&mut self, news: UpgradeNews) {
        let Phase::Upgrading(up) = &mut self.phase else { return };
        if up.ending.is_some() {
            return;
        }
        let pid = up.child;
        match news {
            UpgradeNews::Ready(adopted) => {
                let Phase::Upgrading(up) = std::mem::replace(&mut self.phase, Phase::Serving) else { return };
                info!("USR2: the new supervisor (pid {pid}) serves; handing over and stopping this one's shards");
                self.notify.main_pid(pid);
                // From now on the new supervisor speaks to systemd: no STOPPING=1 from here.
                self.notify = Notifier::disabled();
                // The adopted listeners, by identity: their shards here stop accepting and leave
                // the queue to the new supervisor's shards (and none of them is ever shut down from
                // here). The others are ours alone again and retire as on TERM.
                let adopted: Vec<SockId> =
                    up.passed.iter().filter(|(fd, _)| adopted.contains(fd)).map(|(_, id)| *id).collect();
                self.owners.reclaim();
                self.owners.pass(adopted.iter().copied());
                for p in self.procs.iter_mut().filter(|p| !p.life.retiring()) {
                    if listener::identity(&p.listener).is_some_and(|id| adopted.contains(&id)) {
                        send(p.pid, SIGUSR2);
                        p.life = p.life.retire();
                    }
                }
                // HUP, TTIN and TTOU that waited for the upgrade are the new supervisor's now.
                for sig in self.take_queued() {
                    info!("Passing the queued {} to the new supervisor (pid {pid})", short_name(sig).to_uppercase());
                    send(pid as i32, sig);
                }
                self.begin_stop(true, 0);
            }
            UpgradeNews::Failed(why) => {
                error!("USR2 failed: the new supervisor (pid {pid}) could not start: {why}; this one carries on");
                self.upgrade_failed(format!("last USR2 failed: {why}"), false);
            }
            UpgradeNews::Gone => {
                error!(
                    "USR2 failed: the new supervisor (pid {pid}) exited before its shards served (its own lines \
                     say why); this one carries on"
                );
                self.upgrade_failed("last USR2 failed: the new supervisor exited before it served".into(), false);
            }
        }
    }

    /// The upgrade failed: wait for the new supervisor to exit (stopping it if `stop`), killing it
    /// after `--graceful-timeout`; [`Arbiter::upgrade_child_exited`] ends the phase.
    fn upgrade_failed(&mut self, why: String, stop: bool) {
        let grace = self.config.graceful_timeout;
        let Phase::Upgrading(up) = &mut self.phase else { return };
        if stop {
            send(up.child as i32, SIGTERM);
        }
        up.fail(Instant::now() + grace);
        self.reload_error = Some(why);
    }

    /// The deadlines of an upgrade in progress: `--upgrade-timeout` for the new supervisor to
    /// serve, then `--graceful-timeout` for it to stop.
    pub(super) fn check_upgrade(&mut self, now: Instant) {
        let Phase::Upgrading(up) = &mut self.phase else { return };
        let pid = up.child;
        match up.due(now) {
            UpgradeDue::GiveUp => {
                error!(
                    "USR2 failed: the new supervisor (pid {pid}) did not serve within {}s (--upgrade-timeout); \
                     stopping it, this one carries on",
                    self.config.upgrade_timeout.as_secs_f64()
                );
                self.upgrade_failed(format!("last USR2 failed: no answer within --upgrade-timeout (pid {pid})"), true);
            }
            UpgradeDue::Kill => {
                warn!("USR2: the new supervisor (pid {pid}) is still running; killing it");
                send(pid as i32, SIGKILL);
            }
            UpgradeDue::Nothing => {}
        }
    }

    /// A child that is not a shard exited: if it is the upgrade's new supervisor, the upgrade is
    /// over (it never reported READY, or it would be this one draining): the pid file names this
    /// supervisor again, every listener is ours alone again, and the queued signals run.
    pub(super) fn upgrade_child_exited(&mut self, pid: i32, how: &str) {
        let Phase::Upgrading(up) = &self.phase else { return };
        if up.child as i32 != pid {
            return;
        }
        if up.ending.is_none() {
            error!("USR2 failed: the new supervisor (pid {pid}) {how} before it served; this one carries on");
            self.reload_error = Some(format!("last USR2 failed: the new supervisor {how}"));
        } else {
            info!("USR2: the new supervisor (pid {pid}) {how}; this one serves on");
        }
        if let Some(pidfile) = &self.pidfile {
            pidfile.restore();
        }
        self.owners.reclaim();
        let status = self.status_line();
        self.notify.status(status);
        self.serve_on();
    }

    /// In the new supervisor: its shards serve, so the old one may go.
    pub(super) fn report_ready(&mut self) {
        if let Some(handover) = self.handover.take() {
            info!("Took over from the old supervisor (pid {})", handover.parent);
            if let Some(pidfile) = &mut self.pidfile {
                pidfile.keep();
            }
            let adopted: Vec<String> = handover.adopted.iter().map(|fd| fd.to_string()).collect();
            handover.report(&format!("READY {}", adopted.join(",")));
            self.notify.main_pid(std::process::id());
        }
    }

    /// In the new supervisor: it gives up, so the old one carries on.
    pub(super) fn report_failed(&mut self, why: &str) {
        if let Some(handover) = self.handover.take() {
            handover.report(&format!("FAILED {why}"));
        }
    }
}
