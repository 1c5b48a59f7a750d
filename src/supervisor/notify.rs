//! systemd's notify protocol (`Type=notify`), through the `sd-notify` crate: `READY=1` once every
//! shard serves, `RELOADING=1` (with `MONOTONIC_USEC`) and `READY=1` again around a HUP,
//! `STOPPING=1`, `STATUS=` (shards up, requests served, a failed reload's reason), `MAINPID=` after
//! a USR2 upgrade, and `WATCHDOG=1` every half `WATCHDOG_USEC`, sent from the arbiter loop itself so
//! that a stuck supervisor stops petting and systemd restarts it.
//!
//! It owns the messages and when the watchdog is due. Without `NOTIFY_SOCKET` every call does
//! nothing. It must not decide anything about shards; the arbiter calls it at the moments above.
//! Shards never notify: their environment is stripped of these variables (see `procs`).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::debug;

/// The variables that belong to the supervisor alone; a shard's environment goes without them.
pub const SUPERVISOR_ONLY_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The supervisor's link to systemd.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// How often to pet the watchdog (half of `WATCHDOG_USEC`), if systemd runs one for us.
    watchdog: Option<Duration>,
    next_pet: Instant,
    /// The last `STATUS=` sent, so an unchanged one is not sent again.
    status: String,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. The watchdog is ours when
    /// `WATCHDOG_PID` is unset or names this process or `handed_over_by` (the supervisor that
    /// started this one on USR2, whose pid systemd knew until it was told `MAINPID=`).
    pub fn from_env(handed_over_by: Option<u32>) -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()).filter(|&u| u > 0);
        let pid = std::env::var("WATCHDOG_PID").ok().and_then(|v| v.parse::<u32>().ok());
        let ours = pid.is_none_or(|p| p == std::process::id() || Some(p) == handed_over_by);
        let watchdog = usec.filter(|_| enabled && ours).map(|u| Duration::from_micros(u) / 2);
        Notifier { enabled, watchdog, next_pet: Instant::now(), status: String::new() }
    }

    /// One that says nothing: the old supervisor once it has handed over to a new one.
    pub fn disabled() -> Notifier {
        Notifier { enabled: false, watchdog: None, next_pet: Instant::now(), status: String::new() }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            debug!("cannot notify systemd: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&mut self, status: String) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.status = status;
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd ≥ 253 requires it) and a status line.
    pub fn reloading(&mut self, status: String) {
        let now = NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0));
        self.send(&[NotifyState::Reloading, now, NotifyState::Status(&status)]);
        self.status = status;
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&mut self, status: String) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
        self.status = status;
    }

    /// `MAINPID=pid`: after a USR2 upgrade, the new supervisor is the service's main process.
    pub fn main_pid(&self, pid: u32) {
        self.send(&[NotifyState::MainPid(pid)]);
    }

    /// `STATUS=`, if it changed.
    pub fn status(&mut self, status: String) {
        if status != self.status {
            self.send(&[NotifyState::Status(&status)]);
            self.status = status;
        }
    }

    /// `WATCHDOG=1` if one is due.
    pub fn pet(&mut self, now: Instant) {
        if let Some(every) = self.watchdog {
            if now >= self.next_pet {
                self.send(&[NotifyState::Watchdog]);
                self.next_pet = now + every;
            }
        }
    }

    /// When the arbiter must wake up to pet the watchdog next.
    pub fn next_pet(&self) -> Option<Instant> {
        self.watchdog.map(|_| self.next_pet)
    }
}
