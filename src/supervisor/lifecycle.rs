//! The supervisor's one lifecycle state, [`Phase`], and the table of what each signal does in each
//! phase ([`route`]): act, queue until the phase ends, or refuse with a log line.
//!
//! It owns the [`Phase`] type and what each phase holds (a reload's queue, an upgrade's child and
//! deadline, a stop's deadline), and the table; the arbiter (src/supervisor/arbiter.rs) holds the
//! one current phase and asks [`route`] before it acts on HUP, TTIN, TTOU or USR2. Nothing here
//! signals, spawns or logs, so the whole table is unit-tested; docs/supervisor.md ("One state, one
//! table") shows the same table. A leaf of the supervisor: it imports no other supervisor module.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;

use crate::listener::SockId;

/// Which phase the supervisor is in, without what the phase holds (that is the arbiter's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// The first shards are booting: no `Ready:` line yet. A boot failure (exit 3) halts; a
    /// supervisor started by USR2 gives up at its first shard death.
    Starting,
    /// Every shard serves; nothing is being replaced.
    Serving,
    /// HUP: shards are being replaced one at a time.
    Reloading,
    /// USR2: a new supervisor is starting (until it reports, exits, or its deadline passes).
    Upgrading,
    /// TERM, INT, QUIT, a halt, or a completed hand-over: shards are stopping, the supervisor exits.
    Draining,
}

/// What a signal does in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Handled now.
    Act,
    /// Kept, in order, and handled when the phase ends in [`PhaseKind::Serving`] (dropped, with a
    /// line, when it ends in [`PhaseKind::Draining`]).
    Queue,
    /// Refused now, with this reason in a WARNING line.
    Refuse(&'static str),
    /// Nothing to do (the server is stopping, or the signal means nothing here).
    Ignore,
}

/// The table. TERM, INT, QUIT and USR1 always act (a stop overrides any phase; USR1 only reopens
/// logs). HUP, TTIN and TTOU change the shards, so they never interleave with a reload or an
/// upgrade: they wait for it to end. USR2 starts a second supervisor, which only makes sense from a
/// steady state.
pub fn route(phase: PhaseKind, sig: i32) -> Route {
    use PhaseKind::*;
    match (sig, phase) {
        (SIGTERM | SIGINT | SIGQUIT, _) => Route::Act,
        (SIGUSR1, Draining) => Route::Ignore,
        (SIGUSR1, _) => Route::Act,
        (_, Draining) => Route::Ignore,
        (SIGHUP | SIGTTIN | SIGTTOU, Serving) => Route::Act,
        (SIGHUP | SIGTTIN | SIGTTOU, Starting | Reloading | Upgrading) => Route::Queue,
        (SIGUSR2, Serving) => Route::Act,
        (SIGUSR2, Starting) => Route::Refuse("shards are still starting; send it again once they serve"),
        (SIGUSR2, Reloading) => Route::Refuse("a reload is replacing shards; send it again once it completes"),
        (SIGUSR2, Upgrading) => Route::Refuse("another USR2 is in progress"),
        _ => Route::Ignore,
    }
}

/// `SIGTERM`, or `signal N` for one without a name.
pub fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

/// A signal's name for log lines, as gunicorn writes it (`hup`, `ttin`).
pub fn short_name(sig: i32) -> String {
    signal_name(sig).trim_start_matches("SIG").to_lowercase()
}

/// The supervisor's lifecycle: exactly one phase at a time, each holding what only it needs
/// (docs/supervisor.md, "One state, one table").
#[derive(Debug)]
pub enum Phase {
    /// The first shards are booting.
    Starting,
    /// Every shard serves.
    Serving,
    /// HUP in progress.
    Reloading(Reload),
    /// USR2 in progress: the new supervisor, its deadline, the listeners passed to it.
    Upgrading(Upgrading),
    /// Stopping; the supervisor exits once every shard has.
    Draining(Stopping),
}

impl Phase {
    /// The phase's name, for [`route`].
    pub fn kind(&self) -> PhaseKind {
        match self {
            Phase::Starting => PhaseKind::Starting,
            Phase::Serving => PhaseKind::Serving,
            Phase::Reloading(_) => PhaseKind::Reloading,
            Phase::Upgrading(_) => PhaseKind::Upgrading,
            Phase::Draining(_) => PhaseKind::Draining,
        }
    }
}

/// A stop in progress.
#[derive(Debug)]
pub struct Stopping {
    pub(super) deadline: Instant,
    pub(super) killed: bool,
    pub(super) code: i32,
    /// Why the server halts on its own, for gunicorn's `Reason:` line.
    pub(super) reason: Option<String>,
}

/// How often the arbiter looks at a reload in progress (a new shard's boot is seen in shared memory).
pub const RELOAD_POLL: Duration = Duration::from_millis(20);

/// A rolling reload (HUP): one shard at a time, the new one booted before the old one is told to
/// retire.
#[derive(Debug, Default)]
pub struct Reload {
    /// Old shard pids still to replace.
    pub(super) queue: VecDeque<i32>,
    /// (old pid, new pid) while the new one boots.
    pub(super) current: Option<(i32, i32)>,
    /// The new one shares the old one's listener: the old one retires with SIGUSR2 (no drain, no
    /// shutdown) instead of TERM.
    pub(super) shared: bool,
}

/// What a reload needs to know of one shard in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardView {
    /// Its index.
    pub index: usize,
    /// Its CPU.
    pub cpu: usize,
    /// Its heartbeat slot says BOOTED.
    pub booted: bool,
    /// Asked to stop already.
    pub retiring: bool,
    /// It can hand its listener over (its release can, and the listener still listens): its
    /// replacement shares it.
    pub can_share: bool,
}

/// What a reload asks the arbiter to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadStep {
    /// Nothing yet: the new shard is booting.
    Wait,
    /// The new shard serves: retire the old one, with USR2 (leaving the listener it shares) or
    /// TERM (draining its own).
    Retire {
        /// The old shard.
        old: i32,
        /// USR2 rather than TERM.
        hand_over: bool,
    },
    /// Start a replacement for `old`, sharing its listener when `share`; then tell the reload with
    /// [`Reload::replacing`].
    Replace {
        /// The old shard.
        old: i32,
        /// Its index.
        index: usize,
        /// Its CPU.
        cpu: usize,
        /// Give the replacement the old shard's own listener.
        share: bool,
    },
    /// Every shard replaced.
    Done,
}

impl Reload {
    /// A reload of these pids, one at a time, in this order.
    pub fn of(queue: VecDeque<i32>) -> Reload {
        Reload { queue, current: None, shared: false }
    }

    /// The next step, given what the table says of a pid (`None`: not in it any more). A new shard
    /// that has left the table ends its turn (the arbiter has seen its exit); an old one already
    /// gone or retiring is skipped.
    pub fn next(&mut self, shard: impl Fn(i32) -> Option<ShardView>) -> ReloadStep {
        if let Some((old, new)) = self.current {
            match shard(new) {
                Some(n) if !n.booted => return ReloadStep::Wait,
                None => {
                    self.current = None;
                    return ReloadStep::Wait;
                }
                Some(_) => {
                    self.current = None;
                    if shard(old).is_some() {
                        return ReloadStep::Retire { old, hand_over: self.shared };
                    }
                }
            }
        }
        while let Some(old) = self.queue.pop_front() {
            let Some(p) = shard(old).filter(|p| !p.retiring) else { continue };
            return ReloadStep::Replace { old, index: p.index, cpu: p.cpu, share: p.can_share };
        }
        ReloadStep::Done
    }

    /// The replacement for `old` was started as `new`, sharing its listener or not.
    pub fn replacing(&mut self, old: i32, new: i32, shared: bool) {
        self.current = Some((old, new));
        self.shared = shared;
    }
}

/// [`Phase::Upgrading`]: a USR2 in progress, in the old supervisor.
#[derive(Debug)]
pub struct Upgrading {
    /// The new supervisor (our child until we exit).
    pub child: u32,
    /// `--upgrade-timeout` after the USR2: the new supervisor must serve by then.
    pub(super) deadline: Instant,
    /// The listeners passed, by the descriptor number the new supervisor knows them by, and their
    /// identity: the shards to hand over are found by identity, never by descriptor number.
    pub(super) passed: Vec<(RawFd, SockId)>,
    /// Set once the upgrade has failed: the new supervisor was told to stop (or stops on its
    /// own), and is killed at this deadline; the phase ends when it has exited.
    pub(super) ending: Option<Ending>,
}

/// A failed upgrade's end: waiting for the new supervisor to exit.
#[derive(Debug)]
pub struct Ending {
    pub(super) kill_at: Instant,
    pub(super) killed: bool,
}

/// What an upgrade's deadlines ask the arbiter to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeDue {
    /// Nothing yet.
    Nothing,
    /// `--upgrade-timeout` passed without an answer: stop the new supervisor (TERM), carry on.
    GiveUp,
    /// `--graceful-timeout` passed since the upgrade failed and the new supervisor still runs: KILL.
    Kill,
}

impl Upgrading {
    /// A USR2 that started `child` now, to serve by `deadline`, passing these listeners.
    pub fn new(child: u32, deadline: Instant, passed: Vec<(RawFd, SockId)>) -> Upgrading {
        Upgrading { child, deadline, passed, ending: None }
    }

    /// The upgrade failed: wait for the new supervisor to exit, until `kill_at`.
    pub fn fail(&mut self, kill_at: Instant) {
        if self.ending.is_none() {
            self.ending = Some(Ending { kill_at, killed: false });
        }
    }

    /// What the deadlines ask for at `now`; each is asked for once.
    pub fn due(&mut self, now: Instant) -> UpgradeDue {
        match &mut self.ending {
            None if now >= self.deadline => UpgradeDue::GiveUp,
            Some(e) if !e.killed && now >= e.kill_at => {
                e.killed = true;
                UpgradeDue::Kill
            }
            _ => UpgradeDue::Nothing,
        }
    }

    /// The next moment the arbiter must look at this upgrade.
    pub fn next_deadline(&self) -> Instant {
        match &self.ending {
            None => self.deadline,
            Some(e) if !e.killed => e.kill_at,
            Some(_) => Instant::now() + std::time::Duration::from_millis(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [PhaseKind; 5] =
        [PhaseKind::Starting, PhaseKind::Serving, PhaseKind::Reloading, PhaseKind::Upgrading, PhaseKind::Draining];

    #[test]
    fn a_reload_replaces_one_shard_at_a_time_and_retires_it_once_the_new_one_boots() {
        use std::cell::RefCell;
        use std::collections::HashMap;
        let view = |index, booted, can_share| ShardView { index, cpu: index, booted, retiring: false, can_share };
        let table = RefCell::new(HashMap::from([(10, view(0, true, true)), (11, view(1, true, false))]));
        let look = |pid| table.borrow().get(&pid).copied();
        let mut reload = Reload::of([10, 11, 12].into());
        assert_eq!(reload.next(look), ReloadStep::Replace { old: 10, index: 0, cpu: 0, share: true });
        reload.replacing(10, 20, true);
        table.borrow_mut().insert(20, view(0, false, false));
        assert_eq!(reload.next(look), ReloadStep::Wait, "the new shard boots");
        table.borrow_mut().get_mut(&20).unwrap().booted = true;
        assert_eq!(reload.next(look), ReloadStep::Retire { old: 10, hand_over: true });
        // Pid 11 cannot hand over: a fresh listener, then TERM.
        assert_eq!(reload.next(look), ReloadStep::Replace { old: 11, index: 1, cpu: 1, share: false });
        reload.replacing(11, 21, false);
        table.borrow_mut().insert(21, view(1, true, false));
        // The old one died meanwhile: nothing to retire; 12 left the table: skipped.
        table.borrow_mut().remove(&11);
        assert_eq!(reload.next(look), ReloadStep::Done);
        // A new shard that left the table (its exit was seen) ends its turn.
        let mut reload = Reload::of([10].into());
        reload.replacing(10, 30, true);
        assert_eq!(reload.next(look), ReloadStep::Wait);
        assert_eq!(reload.next(look), ReloadStep::Replace { old: 10, index: 0, cpu: 0, share: true });
    }

    #[test]
    fn an_upgrade_gives_up_at_its_deadline_then_kills_once() {
        let t0 = Instant::now();
        let mut up = Upgrading::new(7, t0 + Duration::from_secs(60), Vec::new());
        assert_eq!(up.due(t0), UpgradeDue::Nothing);
        assert_eq!(up.due(t0 + Duration::from_secs(60)), UpgradeDue::GiveUp);
        up.fail(t0 + Duration::from_secs(90));
        assert_eq!(up.due(t0 + Duration::from_secs(61)), UpgradeDue::Nothing, "waiting for it to stop");
        assert_eq!(up.due(t0 + Duration::from_secs(90)), UpgradeDue::Kill);
        assert_eq!(up.due(t0 + Duration::from_secs(91)), UpgradeDue::Nothing, "killed once");
        // A failure it reported itself starts the same wait; a second failure keeps the first deadline.
        let mut up = Upgrading::new(8, t0 + Duration::from_secs(60), Vec::new());
        up.fail(t0 + Duration::from_secs(30));
        up.fail(t0 + Duration::from_secs(99));
        assert_eq!(up.due(t0 + Duration::from_secs(30)), UpgradeDue::Kill);
    }

    #[test]
    fn a_stop_acts_in_every_phase() {
        for phase in PHASES {
            for sig in [SIGTERM, SIGINT, SIGQUIT] {
                assert_eq!(route(phase, sig), Route::Act, "{phase:?} {sig}");
            }
        }
    }

    #[test]
    fn nothing_that_changes_shards_interleaves_with_a_reload_or_an_upgrade() {
        for phase in [PhaseKind::Starting, PhaseKind::Reloading, PhaseKind::Upgrading] {
            for sig in [SIGHUP, SIGTTIN, SIGTTOU] {
                assert_eq!(route(phase, sig), Route::Queue, "{phase:?} {sig}");
            }
            assert!(matches!(route(phase, SIGUSR2), Route::Refuse(_)), "{phase:?}");
        }
        for sig in [SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2, SIGUSR1] {
            assert_eq!(route(PhaseKind::Serving, sig), Route::Act);
            assert_eq!(route(PhaseKind::Draining, sig), Route::Ignore);
        }
        assert_eq!(route(PhaseKind::Serving, SIGWINCH), Route::Ignore);
    }
}
