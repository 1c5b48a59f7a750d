//! The new supervisor's side of a USR2 hand-over: reading `HITCORE_UPGRADE`, owning the inherited
//! listeners and the report pipe, and writing `READY` or `FAILED` on it.
//!
//! A leaf of the supervisor (the old supervisor's side is src/supervisor/upgrade.rs); it must not
//! touch shards or the arbiter.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use socket2::Socket;

use crate::handoff::{self, UPGRADE_ENV};

/// The new supervisor's side of a USR2 hand-over.
#[derive(Debug)]
pub struct Handover {
    /// The old supervisor.
    pub parent: u32,
    report: File,
    /// The inherited listeners (their address is where the new shards listen).
    pub listeners: Vec<InheritedSocket>,
    /// Those of them given to this supervisor's shards, by their descriptor number.
    pub adopted: Vec<RawFd>,
}

/// One inherited listener, owned.
#[derive(Debug)]
pub struct InheritedSocket {
    /// Its descriptor number, as the old supervisor knows it.
    pub fd: RawFd,
    /// The socket.
    pub socket: Socket,
    /// Its old shard can hand it over: a new shard may share it.
    pub shared: bool,
}

impl Handover {
    /// Reads `HITCORE_UPGRADE` (and removes it, so no child of ours sees it). `None` at a plain
    /// start.
    pub fn from_env() -> Option<Result<Handover, String>> {
        let text = std::env::var_os(UPGRADE_ENV)?;
        // SAFETY: called at start-up from the main thread, before any other thread of ours runs.
        unsafe { std::env::remove_var(UPGRADE_ENV) };
        let upgrade = match handoff::decode_upgrade(&text.to_string_lossy()) {
            Ok(u) => u,
            Err(e) => return Some(Err(e)),
        };
        let valid = |fd: RawFd| {
            // SAFETY: F_GETFD only reads the descriptor's flags; a bad fd is an error, nothing more.
            fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
        };
        if !valid(upgrade.report_fd) || upgrade.listeners.iter().any(|l| !valid(l.fd)) {
            return Some(Err(format!("{UPGRADE_ENV} names descriptors this process did not inherit")));
        }
        // SAFETY: the old supervisor passed these descriptors to this process alone; each is owned
        // once, here. `File`/`Socket` do not set close-on-exec, so it is set below: shards must not
        // inherit them (the old supervisor waits for the report pipe to close).
        let report = unsafe { File::from_raw_fd(upgrade.report_fd) };
        let listeners: Vec<InheritedSocket> = upgrade
            .listeners
            .iter()
            .map(|l| {
                // SAFETY: as above: inherited, owned once, here.
                let socket = unsafe { Socket::from_raw_fd(l.fd) };
                InheritedSocket { fd: l.fd, socket, shared: l.shared }
            })
            .collect();
        for fd in std::iter::once(report.as_raw_fd()).chain(listeners.iter().map(|l| l.fd)) {
            // SAFETY: fcntl on a descriptor owned above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        Some(Ok(Handover { parent: upgrade.parent, report, listeners, adopted: Vec::new() }))
    }

    /// Writes the report line and closes the pipe.
    pub fn report(self, line: &str) {
        let mut report = self.report;
        let _ = report.write_all(format!("{line}\n").as_bytes());
    }
}
