//! The supervisor's decisions as plain functions: how long a crash-looping shard waits, which CPU a
//! TTIN shard gets, which shard a TTOU retires, which shards a HUP replaces.
//!
//! It owns only arithmetic over values the arbiter passes in; it must not signal, spawn, log or read
//! the clock, so every rule here is unit-tested without processes or sockets.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A shard that lived less than this before dying counts towards a crash loop.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(5);
/// The longest a crash-looping shard waits before its next start.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// The first wait of a crash loop (the second quick death in a row); each further one doubles it.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);

/// Consecutive quick deaths of one shard index, after one more death of a shard that lived `lived`.
pub fn next_streak(streak: u32, lived: Duration) -> u32 {
    if lived < CRASH_LOOP_WINDOW { streak + 1 } else { 1 }
}

/// How long to wait before restarting a shard index with this streak: at once for a first death,
/// then 0.1 s, 0.2 s, 0.4 s, ... up to [`MAX_RESTART_DELAY`].
pub fn restart_delay(streak: u32) -> Duration {
    match streak {
        0 | 1 => Duration::ZERO,
        n => (FIRST_RESTART_DELAY * 2u32.saturating_pow(n - 2)).min(MAX_RESTART_DELAY),
    }
}

/// TTIN: the allowed CPU with the fewest shards (`busy` lists the CPU of every live or pending
/// shard), the first such in `allowed` order. `None` when every CPU is taken and sharing is off,
/// or no CPU is allowed.
pub fn ttin_cpu(allowed: &[usize], busy: impl IntoIterator<Item = usize>, share_cpus: bool) -> Option<usize> {
    let mut load: HashMap<usize, usize> = allowed.iter().map(|&c| (c, 0)).collect();
    for cpu in busy {
        *load.entry(cpu).or_default() += 1;
    }
    let (&cpu, used) = allowed.iter().map(|c| (c, load[c])).min_by_key(|(_, n)| *n)?;
    (used == 0 || share_cpus).then_some(cpu)
}

/// What a TTOU does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttou {
    /// One shard (counting those waiting to restart) is the minimum: nothing.
    AtMinimum,
    /// Retire this pid: the oldest serving shard.
    Retire(i32),
    /// At most one shard serves and others wait to restart (crash-looping): the shard that goes is
    /// one of those, never the last that accepts (found by the fault schedule: retiring it left
    /// the port refusing connections until a restart's backoff ended).
    CancelRestart,
}

/// TTOU: `serving` lists (pid, start time) of every shard not retiring; `pending` counts the shards
/// waiting to be restarted.
pub fn ttou(serving: &[(i32, Instant)], pending: usize) -> Ttou {
    if serving.len() + pending <= 1 {
        return Ttou::AtMinimum;
    }
    if serving.len() <= 1 {
        return Ttou::CancelRestart;
    }
    serving.iter().min_by_key(|(_, started)| *started).map_or(Ttou::CancelRestart, |&(pid, _)| Ttou::Retire(pid))
}

/// HUP: the pids to replace, one at a time in shard-index order: every shard not already retiring.
/// `procs` lists (index, pid, retiring).
pub fn reload_queue(procs: &[(usize, i32, bool)]) -> VecDeque<i32> {
    let mut old: Vec<&(usize, i32, bool)> = procs.iter().filter(|p| !p.2).collect();
    old.sort_by_key(|p| p.0);
    old.iter().map(|p| p.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_backs_off_doubling_up_to_the_cap() {
        let quick = Duration::from_millis(300);
        let mut streak = 0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            streak = next_streak(streak, quick);
            delays.push(restart_delay(streak).as_millis());
        }
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000]);
        // A shard that lived past the window starts a new streak: restarted at once.
        assert_eq!(next_streak(streak, CRASH_LOOP_WINDOW), 1);
        assert_eq!(restart_delay(1), Duration::ZERO);
        // No overflow however long the loop.
        assert_eq!(restart_delay(u32::MAX), MAX_RESTART_DELAY);
    }

    #[test]
    fn ttin_picks_a_free_cpu_or_the_least_used_when_sharing() {
        assert_eq!(ttin_cpu(&[0, 1, 2], [0, 2], false), Some(1));
        assert_eq!(ttin_cpu(&[0, 1], [0, 1], false), None, "every CPU busy without --share-cpus");
        assert_eq!(ttin_cpu(&[0, 1], [0, 1, 0], true), Some(1), "least used");
        assert_eq!(ttin_cpu(&[0, 1], [0, 1], true), Some(0), "ties go to the first allowed");
        // A CPU outside the allowed set (a shard pinned before a narrower --cpus) is not offered.
        assert_eq!(ttin_cpu(&[1], [5], false), Some(1));
        assert_eq!(ttin_cpu(&[], [], true), None);
    }

    #[test]
    fn ttou_retires_the_oldest_and_never_the_last() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        assert_eq!(ttou(&[(10, later), (11, t0)], 0), Ttou::Retire(11));
        assert_eq!(ttou(&[(10, t0)], 0), Ttou::AtMinimum);
        assert_eq!(ttou(&[], 1), Ttou::AtMinimum);
        // One serving and one waiting to restart: the waiting one goes, never the last that accepts.
        assert_eq!(ttou(&[(10, t0)], 1), Ttou::CancelRestart);
        assert_eq!(ttou(&[], 2), Ttou::CancelRestart);
        assert_eq!(ttou(&[(10, t0), (11, later)], 1), Ttou::Retire(10));
    }

    #[test]
    fn a_reload_replaces_every_serving_shard_in_index_order() {
        let procs = [(2, 102, false), (0, 100, false), (1, 101, true), (3, 103, false)];
        assert_eq!(reload_queue(&procs), [100, 102, 103]);
        assert!(reload_queue(&[]).is_empty());
    }
}
