//! The supervisor's one lifecycle state, [`Phase`], and the table of what each signal does in each
//! phase ([`route`]): act, queue until the phase ends, or refuse with a log line.
//!
//! It owns only the table and the phase's names: which phase the supervisor is in, and what a
//! phase holds, is the arbiter's (src/supervisor/arbiter.rs), which asks [`route`] before it acts
//! on HUP, TTIN, TTOU or USR2. Nothing here signals, spawns or logs, so the whole table is
//! unit-tested; docs/supervisor.md ("One state, one table") shows the same table.

use signal_hook::consts::signal::*;

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

/// A signal's name for log lines, as gunicorn writes it (`hup`, `ttin`).
pub fn short_name(sig: i32) -> String {
    super::arbiter::signal_name(sig).trim_start_matches("SIG").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [PhaseKind; 5] =
        [PhaseKind::Starting, PhaseKind::Serving, PhaseKind::Reloading, PhaseKind::Upgrading, PhaseKind::Draining];

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
