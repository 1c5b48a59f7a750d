//! A shard's stopping state: the signals that arrived (one word the handlers set bits in) and the
//! one [`Phase`] a booted shard is in (serving, draining, handing over), which the accept loops wait
//! on. It owns no socket and does no I/O: the shard acts on the phase (src/shard.rs).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Poll, Waker};

/// The signals that arrived, one bit each in one word, set by the handlers and read by the tick
/// (and by [`StopSignal::follow`]). Clones share the word.
#[derive(Debug, Default, Clone)]
pub(super) struct Signals {
    pending: Arc<AtomicU32>,
}

/// The bits of [`Signals`].
pub(super) mod sig {
    /// TERM or HUP: retire, draining the listener.
    pub const RETIRE: u32 = 1;
    /// QUIT or INT: exit at once.
    pub const QUIT: u32 = 2;
    /// USR1: reopen the logs (cleared once done).
    pub const USR1: u32 = 4;
    /// USR2: retire, leaving the listener to the successor that shares it.
    pub const HAND_OVER: u32 = 8;
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
        let s = Signals::default();
        let table = [
            (SIGTERM, sig::RETIRE),
            (SIGHUP, sig::RETIRE),
            (SIGQUIT, sig::QUIT),
            (SIGINT, sig::QUIT),
            (SIGUSR1, sig::USR1),
            (SIGUSR2, sig::HAND_OVER),
        ];
        for (signal, bit) in table {
            let pending = s.pending.clone();
            // SAFETY: the handler does one atomic fetch_or, which is async-signal-safe, and
            // touches nothing else.
            unsafe { signal_hook::low_level::register(signal, move || _ = pending.fetch_or(bit, Ordering::Relaxed)) }?;
        }
        Ok(s)
    }

    /// Whether `bit` was set.
    pub(super) fn has(&self, bit: u32) -> bool {
        self.pending.load(Ordering::Relaxed) & bit != 0
    }

    /// Whether `bit` was set, clearing it.
    pub(super) fn take(&self, bit: u32) -> bool {
        self.pending.fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }
}

/// Where a booted shard is in its life: one state instead of loose flags. It only moves forward,
/// but for a TERM after a hand-over, which makes it drain after all (the server is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Phase {
    /// Accepting.
    #[default]
    Serving,
    /// TERM or HUP: serve what is queued, shut the listener down, finish, exit.
    Draining,
    /// USR2: stop accepting, leave the listener to the successor sharing it, finish, exit.
    HandingOver,
}

/// A graceful stop request that the accept loops can wait for.
#[derive(Debug, Default)]
pub(super) struct StopSignal {
    /// See [`Phase`].
    pub(super) phase: Cell<Phase>,
    /// Every task waiting: one accept loop per listener, and whatever else waits on a stop.
    wakers: RefCell<Vec<Waker>>,
    /// The signals that arrived, which [`StopSignal::follow`] turns into a phase.
    signals: Signals,
}

impl StopSignal {
    /// A stop that follows `signals` (at each [`StopSignal::follow`]).
    pub(super) fn new(signals: Signals) -> StopSignal {
        StopSignal { signals, ..StopSignal::default() }
    }

    /// Moves to the phase the signals that arrived ask for. The tick calls it; so does an accept
    /// loop whose `accept` failed, since the failure may be the signal's doing: a shard told to hand
    /// its listener over (USR2) is no longer counted as serving it, so its supervisor may retire the
    /// sibling that shares it, whose drain shuts the listener down (EINVAL here) before the next
    /// tick would have read the USR2. A TERM after a hand-over still takes the listener out: the
    /// server is stopping.
    pub(super) fn follow(&self) {
        let phase = self.phase.get();
        if self.signals.has(sig::RETIRE) && phase != Phase::Draining {
            self.request(Phase::Draining);
        } else if self.signals.has(sig::HAND_OVER) && phase == Phase::Serving {
            self.request(Phase::HandingOver);
        }
    }

    /// Whether a stop of either kind was asked for.
    pub(super) fn requested(&self) -> bool {
        self.phase.get() != Phase::Serving
    }

    /// Moves to `phase`, waking every waiter on the first stop.
    pub(super) fn request(&self, phase: Phase) {
        let was = self.phase.replace(phase);
        if was == Phase::Serving {
            for w in self.wakers.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Resolves once a stop is requested.
    pub(super) async fn wait(&self) {
        poll_fn(|cx| {
            if self.requested() {
                Poll::Ready(())
            } else {
                let mut wakers = self.wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_after_a_hand_over_drains_and_bits_clear_on_take() {
        let stop = StopSignal::default();
        assert!(!stop.requested());
        stop.request(Phase::HandingOver);
        assert!(stop.requested());
        stop.request(Phase::Draining);
        assert_eq!(stop.phase.get(), Phase::Draining);
        let signals = Signals::default();
        signals.pending.fetch_or(sig::USR1 | sig::RETIRE, Ordering::Relaxed);
        assert!(signals.take(sig::USR1) && !signals.take(sig::USR1));
        assert!(signals.has(sig::RETIRE) && !signals.has(sig::QUIT));
    }

    #[test]
    fn follow_turns_the_bits_into_a_phase_that_only_moves_forward() {
        let signals = Signals::default();
        let stop = StopSignal::new(signals.clone());
        stop.follow();
        assert_eq!(stop.phase.get(), Phase::Serving, "no signal, no stop");
        signals.pending.fetch_or(sig::USR1, Ordering::Relaxed);
        stop.follow();
        assert_eq!(stop.phase.get(), Phase::Serving, "USR1 only reopens logs");
        signals.pending.fetch_or(sig::HAND_OVER, Ordering::Relaxed);
        stop.follow();
        assert_eq!(stop.phase.get(), Phase::HandingOver);
        signals.pending.fetch_or(sig::RETIRE, Ordering::Relaxed);
        stop.follow();
        assert_eq!(stop.phase.get(), Phase::Draining, "a TERM after a hand-over drains");
        signals.pending.fetch_and(!sig::RETIRE, Ordering::Relaxed);
        stop.follow();
        assert_eq!(stop.phase.get(), Phase::Draining, "never back to handing over");
    }
}
