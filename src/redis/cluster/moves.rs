//! A Cluster session's `-MOVED` bookkeeping, in one place: which node the session is on, whether
//! a `-MOVED` has stopped its writes (it drains: the replies of what it already wrote come back,
//! each a value or another redirection), where the slot went, and how many moves came in quick
//! succession.
//!
//! A `-MOVED` batch ran nowhere, so after the drain the next connection goes straight to the node
//! named, with the redirected requests written first. Nodes that disagree (mid-resharding) could
//! bounce the same requests between them forever: after [`MAX_RAPID_MOVES`] moves each within a
//! second of the last, the connection task backs off and answers 503 instead.
//!
//! Pure state, no I/O: the session and the connection task call in; `-ASK` is `ask`'s.

use std::time::{Duration, Instant};

use super::slots::Redirect;
use crate::config::redis_topology::HostPort;

/// `-MOVED`s followed at once, each within a second of the last, before backing off (the
/// cluster spec's clients cap redirections similarly; redis-cli allows 16 per command).
pub const MAX_RAPID_MOVES: u32 = 5;
/// Moves closer together than this count as rapid.
const RAPID: Duration = Duration::from_secs(1);

/// A redirection, as the session should treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirection {
    /// `-ASK`: send the batch to this node once (`ask`).
    Ask(HostPort),
    /// `-MOVED`: stop writing and drain; [`Moves::drained`] then says where to go.
    Moved,
    /// Not a redirection hitcore can follow (malformed): fail the batch.
    Unreadable,
}

/// Where the session stands with respect to `-MOVED`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Phase {
    /// Writing as usual.
    #[default]
    Writing,
    /// A `-MOVED` named `.0`: write nothing more, wait for the replies already due.
    Draining(HostPort),
}

/// What the connection task should do once a drained session has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Connect to the new owner at once, writing the redirected requests first.
    Follow(HostPort),
    /// Too many moves in quick succession (how many): answer 503, back off, then go there.
    BackOff(HostPort, u32),
}

impl Verdict {
    /// Where the slot went.
    pub fn to(&self) -> &HostPort {
        match self {
            Verdict::Follow(to) | Verdict::BackOff(to, _) => to,
        }
    }
}

/// One shard's `-MOVED` state.
#[derive(Debug, Default)]
pub struct Moves {
    /// The host the session is connected to, for a redirection that names no host.
    node: String,
    phase: Phase,
    /// Where the next connection goes without asking for the slot map, once taken.
    owner: Option<HostPort>,
    /// Moves in a row, each within [`RAPID`] of the last.
    rapid: u32,
    /// When the last move was followed.
    last: Option<Instant>,
}

impl Moves {
    /// A session with `node` (its host name) begins.
    pub fn connected(&mut self, node: &str) {
        self.node = node.to_string();
        self.phase = Phase::Writing;
    }

    /// What to do with a redirection (`message` without the `-`).
    pub fn redirected(&mut self, message: &[u8]) -> Redirection {
        match Redirect::parse(message, &self.node) {
            Some(Redirect::Ask { to, .. }) => Redirection::Ask(to),
            Some(Redirect::Moved { to, .. }) => {
                self.phase = Phase::Draining(to);
                Redirection::Moved
            }
            None => Redirection::Unreadable,
        }
    }

    /// Whether a `-MOVED` came: write nothing more on this session.
    pub fn draining(&self) -> bool {
        matches!(self.phase, Phase::Draining(_))
    }

    /// The session has every reply in after a `-MOVED` (at `now`): where to go, and whether at once.
    pub fn drained(&mut self, now: Instant) -> Option<Verdict> {
        let Phase::Draining(to) = std::mem::take(&mut self.phase) else { return None };
        self.rapid = if self.last.is_some_and(|t| now.duration_since(t) < RAPID) { self.rapid + 1 } else { 1 };
        self.last = Some(now);
        self.owner = Some(to.clone());
        Some(if self.rapid <= MAX_RAPID_MOVES { Verdict::Follow(to) } else { Verdict::BackOff(to, self.rapid) })
    }

    /// Where the last `-MOVED` sent the slot, for the next connect (taken: a connect after that
    /// asks for the slot map again).
    pub fn take_owner(&mut self) -> Option<HostPort> {
        self.owner.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    #[test]
    fn moved_drains_and_names_the_new_owner_ask_names_the_importing_node() {
        let mut moves = Moves::default();
        moves.connected("10.0.0.1");
        assert!(!moves.draining());
        assert_eq!(moves.redirected(b"ASK 15723 10.0.0.2:7001"), Redirection::Ask(hp("10.0.0.2", 7001)));
        assert!(!moves.draining(), "-ASK leaves the session as it is");
        assert_eq!(moves.redirected(b"MOVED 15723 :7002"), Redirection::Moved);
        assert!(moves.draining());
        let now = Instant::now();
        assert_eq!(moves.drained(now), Some(Verdict::Follow(hp("10.0.0.1", 7002))), "an empty host is the node's");
        assert!(!moves.draining());
        assert_eq!(moves.take_owner(), Some(hp("10.0.0.1", 7002)));
        assert_eq!(moves.take_owner(), None, "taken once");
        assert_eq!(moves.redirected(b"MOVED nonsense"), Redirection::Unreadable);
        moves.redirected(b"MOVED 1 10.0.0.3:7003");
        moves.connected("10.0.0.3");
        assert!(!moves.draining(), "a new session starts clean");
        assert_eq!(moves.drained(now), None);
    }

    #[test]
    fn rapid_moves_back_off_after_the_cap_and_a_pause_resets_the_count() {
        let mut moves = Moves::default();
        let start = Instant::now();
        let mut verdicts = Vec::new();
        for i in 0..MAX_RAPID_MOVES + 1 {
            moves.redirected(b"MOVED 1 10.0.0.2:7001");
            verdicts.push(moves.drained(start + Duration::from_millis(100 * u64::from(i))).unwrap());
        }
        assert!(verdicts[..MAX_RAPID_MOVES as usize].iter().all(|v| matches!(v, Verdict::Follow(_))));
        assert_eq!(verdicts.last(), Some(&Verdict::BackOff(hp("10.0.0.2", 7001), MAX_RAPID_MOVES + 1)));
        moves.redirected(b"MOVED 1 10.0.0.2:7001");
        assert!(matches!(moves.drained(start + Duration::from_secs(5)), Some(Verdict::Follow(_))));
    }
}
