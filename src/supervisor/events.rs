//! What reaches the arbiter loop from other threads: [`Event`]s on one channel (signals, the
//! watchdog's stale slots, the USR2 report reader's [`UpgradeNews`]).
//!
//! A leaf of the supervisor: plain data, imported by the threads that send and the loop that
//! receives; it must not import any other supervisor module.

use std::os::fd::RawFd;
use std::time::Duration;

/// What wakes the arbiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived (SIGCHLD included).
    Signal(i32),
    /// The watchdog found this slot's heartbeat older than `--timeout`.
    Stale {
        /// The heartbeat slot.
        slot: usize,
        /// The pid the slot belonged to when it was read.
        pid: i32,
        /// How old the heartbeat was.
        age: Duration,
    },
    /// USR2: the new supervisor reported (or closed its report pipe).
    Upgrade(UpgradeNews),
}

/// What the new supervisor said, read by the old one when the report pipe closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeNews {
    /// Its shards serve: hand over. It adopted these of the inherited listeners (by the descriptor
    /// numbers the old supervisor passed them as): their shards retire leaving them open (USR2).
    Ready(Vec<RawFd>),
    /// It could not start, and says why.
    Failed(String),
    /// It exited without a word (a start-up error before it could report, or not a hitcore).
    Gone,
}
