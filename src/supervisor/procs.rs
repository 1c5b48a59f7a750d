//! One shard process as the supervisor sees it: its [`Life`], its listener copy, and spawning it.
//!
//! It owns the process table's entry type and [`Arbiter::spawn`] (a re-exec of this binary with the
//! listener and the heartbeat region inherited and the hand-off in its environment). It must not
//! decide when to spawn or stop anything: the arbiter and [`super::reload`] do.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use signal_hook::consts::signal::SIGTERM;
use socket2::Socket;

use super::arbiter::Arbiter;
use super::notify::SUPERVISOR_ONLY_ENV;
use super::output::Output;
use crate::handoff::{self, SPEC_ENV, Spec};
use crate::heartbeat::{SLOTS, state};
use crate::listener::ListenError;

/// Where a shard process is in its life, as far as the supervisor is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Booting or serving: replaced if it dies.
    Serving,
    /// Asked to stop (TERM, HUP, TTOU): not replaced when it exits.
    Retiring,
    /// WORKER TIMEOUT ejected its listener and sent SIGABRT `at`; the next pass sends SIGKILL.
    /// `retiring` keeps whether it had been asked to stop before (or since).
    Aborted {
        /// When SIGABRT was sent.
        at: Instant,
        /// Not replaced when it exits.
        retiring: bool,
    },
    /// SIGKILL sent after the abort; only its exit is left to see.
    Killed {
        /// Not replaced when it exits.
        retiring: bool,
    },
}

impl Life {
    /// Whether it was asked to stop, so that it is not replaced when it exits.
    pub fn retiring(self) -> bool {
        match self {
            Life::Serving => false,
            Life::Retiring => true,
            Life::Aborted { retiring, .. } | Life::Killed { retiring } => retiring,
        }
    }

    /// Whether its listener was taken out of the reuseport group (WORKER TIMEOUT): a replacement
    /// then needs a fresh one.
    pub fn ejected(self) -> bool {
        matches!(self, Life::Aborted { .. } | Life::Killed { .. })
    }

    /// The same life, asked to stop.
    pub fn retire(self) -> Life {
        match self {
            Life::Serving | Life::Retiring => Life::Retiring,
            Life::Aborted { at, .. } => Life::Aborted { at, retiring: true },
            Life::Killed { .. } => Life::Killed { retiring: true },
        }
    }
}

/// Why a shard process was started: what its failure to boot means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// One of the shards of the first start: a boot failure (exit 3) halts the server.
    First,
    /// A restart after a crash: a boot failure counts as a quick death (backoff).
    Restart,
    /// A HUP replacement: a boot failure stops the reload, the old shard keeps serving.
    Replace,
    /// A TTIN shard: a boot failure is logged and not retried.
    Added,
}

/// One shard process.
#[derive(Debug)]
pub struct Proc {
    /// The logical shard (stable across restarts; a replacement takes the same index).
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Its pid.
    pub pid: i32,
    /// Its heartbeat slot.
    pub slot: usize,
    /// The supervisor's copy of the shard's listener, handed to the shard's replacement after a
    /// crash so that the connections queued on it are served rather than reset.
    pub listener: Socket,
    /// When it was spawned.
    pub started: Instant,
    /// See [`Life`].
    pub life: Life,
    /// See [`Purpose`].
    pub purpose: Purpose,
    /// Its heartbeat slot has said BOOTED.
    pub booted: bool,
    /// Its stderr, relayed.
    pub output: Arc<Output>,
}

/// Whether two descriptors are the same socket (a HUP replacement shares its predecessor's).
pub fn same_socket(a: &Socket, b: &Socket) -> bool {
    let id = |s: &Socket| {
        // SAFETY: fstat on an open descriptor with a valid, zeroed stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        (unsafe { libc::fstat(s.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    id(a).is_some_and(|x| Some(x) == id(b))
}

/// Why a shard process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Every heartbeat slot is in use.
    #[error("no free heartbeat slot")]
    NoSlot,
    /// Its listener could not be created.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The hand-off could not be encoded or written to its memfd.
    #[error("cannot write the shard's hand-off: {0}")]
    Handoff(std::io::Error),
    /// The session-ticket secret's memfd could not be made.
    #[error("cannot make the TLS session-ticket secret: {0}")]
    Tickets(std::io::Error),
    /// fork or exec failed.
    #[error("cannot execute {}: {source}", exe.display())]
    Exec {
        /// The binary.
        exe: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Arbiter {
    /// Starts a shard process for `index` on `cpu`, serving `sock`, and returns its pid.
    pub fn spawn(&mut self, index: usize, cpu: usize, sock: Socket, purpose: Purpose) -> Result<i32, SpawnError> {
        // HTTPS: the session-ticket secret, inherited like the listeners, so that every shard
        // resumes the others' sessions.
        let ticket_fd = match self.config.https {
            Some(_) => Some(crate::https::tickets::secret_fd().map_err(SpawnError::Tickets)?),
            None => None,
        };
        let slot = (0..SLOTS).find(|s| self.procs.iter().all(|p| p.slot != *s)).ok_or(SpawnError::NoSlot)?;
        let hb = self.heartbeats.slot(slot);
        hb.beat();
        hb.pid.store(0, Ordering::Relaxed);
        hb.requests.store(0, Ordering::Relaxed);
        hb.connections.store(0, Ordering::Relaxed);
        hb.features.store(0, Ordering::Relaxed);
        hb.state.store(state::SPAWNED, Ordering::Release);
        let listen_fd = sock.as_raw_fd();
        let heartbeat_fd = self.heartbeats.fd();
        let extra_fds: Vec<RawFd> = self.shared.extras.iter().map(|s| s.as_raw_fd()).collect();
        let spec = Spec {
            version: handoff::VERSION,
            index,
            cpu,
            listen_fd,
            extra_fds: extra_fds.clone(),
            heartbeat_fd,
            ticket_fd,
            slot,
            config: self.config.clone(),
        };
        // In a sealed memfd the shard inherits, not in its environment: the spec holds passwords.
        let sealed = match handoff::seal(&spec) {
            Ok(s) => s,
            Err(e) => {
                hb.state.store(state::FREE, Ordering::Release);
                return Err(SpawnError::Handoff(e));
            }
        };
        let spec_fd = sealed.fd.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.arg0(format!("hitcore: shard {index} (cpu {cpu})")).env(SPEC_ENV, &sealed.env).stdin(Stdio::null());
        for var in handoff::secret_env() {
            cmd.env_remove(var);
        }
        // Relayed (see `output`), so that a shard that cannot boot can be quoted.
        cmd.stderr(Stdio::piped());
        for var in SUPERVISOR_ONLY_ENV {
            cmd.env_remove(var);
        }
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
                for &fd in [listen_fd, heartbeat_fd, spec_fd].iter().chain(&extra_fds).chain(&ticket_fd) {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // A shard outlives a killed supervisor by one graceful stop, never longer.
                libc::prctl(libc::PR_SET_PDEATHSIG, SIGTERM);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                hb.state.store(state::FREE, Ordering::Release);
                return Err(SpawnError::Exec { exe: self.exe.clone(), source });
            }
        };
        let pid = child.id() as i32;
        hb.pid.store(pid as u32, Ordering::Relaxed);
        let output = match child.stderr.take() {
            Some(stderr) => Output::relay(stderr, format!("hitcore-stderr{index}")),
            None => Arc::new(Output::default()),
        };
        self.procs.push(Proc {
            index,
            cpu,
            pid,
            slot,
            listener: sock,
            started: Instant::now(),
            life: Life::Serving,
            purpose,
            booted: false,
            output,
        });
        Ok(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicated_socket_is_the_same_socket() {
        use socket2::{Domain, Type};
        let a = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let b = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        assert!(same_socket(&a, &a.try_clone().unwrap()));
        assert!(!same_socket(&a, &b));
    }

    #[test]
    fn a_lifecycle_remembers_retiring_through_a_timeout() {
        let at = Instant::now();
        assert!(!Life::Serving.retiring() && !Life::Serving.ejected());
        assert!(Life::Serving.retire().retiring());
        // A timed-out serving shard is replaced; one that was retiring is not.
        let aborted = Life::Aborted { at, retiring: false };
        assert!(aborted.ejected() && !aborted.retiring());
        assert_eq!(aborted.retire(), Life::Aborted { at, retiring: true });
        assert!(Life::Killed { retiring: false }.retire().retiring());
        assert!(Life::Killed { retiring: true }.ejected());
    }
}
