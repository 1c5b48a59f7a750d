//! Spawning one shard process: [`Arbiter::spawn`], a re-exec of this binary with the listener and
//! the heartbeat region inherited and the hand-off in its environment (the one place a shard's
//! environment is built), and why it can fail ([`SpawnError`]). The table entry it adds is
//! src/supervisor/table.rs's. It must not decide when to spawn or stop anything: the arbiter and
//! [`super::reload`] do.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use signal_hook::consts::signal::SIGTERM;
use socket2::Socket;

use super::arbiter::Arbiter;
use super::notify::SUPERVISOR_ONLY_ENV;
use super::output::Output;
use super::table::{Life, Proc, Purpose};
use crate::handoff::{self, SPEC_ENV, Spec};
use crate::heartbeat::SLOTS;
use crate::listener::ListenError;

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
        self.heartbeats.prepare(slot);
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
                self.heartbeats.free(slot);
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
                self.heartbeats.free(slot);
                return Err(SpawnError::Exec { exe: self.exe.clone(), source });
            }
        };
        let pid = child.id() as i32;
        self.heartbeats.set_pid(slot, pid as u32);
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
