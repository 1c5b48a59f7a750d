//! The shard table's entry: one shard process as the supervisor sees it ([`Proc`]), where it is in
//! its life ([`Life`]) and why it was started ([`Purpose`]).
//!
//! Plain data over the process and its listener copy; spawning it is src/supervisor/procs.rs's,
//! deciding anything about it the arbiter's. It must not signal or spawn.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use socket2::Socket;

use super::output::Output;
use crate::heartbeat::{Heartbeats, features};

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

impl Proc {
    /// Whether it advertised (in its heartbeat slot) that SIGUSR2 retires it leaving its listener
    /// open: a shard of a release before that would die of the signal.
    pub fn hands_over(&self, heartbeats: &Heartbeats) -> bool {
        heartbeats.slot(self.slot).features.load(Ordering::Relaxed) & features::HANDOVER != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
