//! The connection task's lifecycle as a small state machine: never up yet, up, moving to a
//! Cluster slot's new owner, or down since some instant. Each transition is a named method that
//! says what the task should log and do; the backoff between attempts (capped, doubled per
//! failure, jittered) lives here too.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), no logging, no randomness (the caller
//! passes the jitter), so every transition is unit-tested. The task that performs the I/O and
//! writes the log lines is `client`'s.

use std::time::{Duration, Instant};

/// First reconnect delay; doubled per failed attempt up to [`BACKOFF_CAP`], then jittered.
pub const BACKOFF_START: Duration = Duration::from_millis(25);
/// The longest wait between reconnect attempts, so service resumes within about a second of Redis.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// No session has run yet. `last_failure` is the kind of the failure last logged, `since`
    /// when the first attempt failed.
    NeverUp { since: Option<Instant>, last_failure: Option<String> },
    /// A session is running.
    Up,
    /// A Cluster `-MOVED` ended the session; the redirected requests wait to be written first to
    /// the new owner, and the shard stays up meanwhile.
    Moving,
    /// A session ended at `since`. `quiet_for` is a node whose reconnect is not worth a line
    /// (after a WAIT shortfall the same node is usually found again, and the WARNING said why).
    Down { since: Instant, last_failure: Option<String>, quiet_for: Option<String> },
}

/// What a successful connect should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// The first session, or one at a Cluster slot's new owner: `Connected to ...` (INFO).
    Connected,
    /// After being down this long: `Reconnected ... after ...` (INFO).
    Reconnected(Duration),
    /// Back on the node a WAIT shortfall left: a DEBUG line only.
    ReconnectedQuietly,
}

/// What a successful connect means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The log line.
    pub greeting: Greeting,
    /// Whether this counts as a reconnect in the metrics (a session ran before).
    pub counts_as_reconnect: bool,
}

/// What a failed connect means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// A new kind of failure: log it (otherwise DEBUG only).
    pub log: bool,
    /// Requests redirected by `-MOVED` were queued for the node that could not be reached: they
    /// get 503 like the rest, and the shard is down.
    pub fail_redirected: bool,
}

/// How a session ended, as far as the next connect's log line is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// An ordinary end: the reconnect is worth an INFO line.
    Loud,
    /// A WAIT shortfall on `node`: reconnecting to the same node is a DEBUG line.
    QuietFor(String),
}

/// One shard's reconnect state.
#[derive(Debug, Clone)]
pub struct Reconnect {
    link: Link,
    /// The next backoff before jitter.
    delay: Duration,
    /// Whether the WARNING about an unchecked ROLE was written (once per shard).
    role_warned: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { link: Link::NeverUp { since: None, last_failure: None }, delay: BACKOFF_START, role_warned: false }
    }
}

impl Reconnect {
    /// A session with `node` begins at `now`.
    pub fn connected(&mut self, node: &str, now: Instant) -> Connected {
        let (greeting, counts_as_reconnect) = match std::mem::replace(&mut self.link, Link::Up) {
            Link::NeverUp { since: None, .. } => (Greeting::Connected, false),
            Link::NeverUp { since: Some(t), .. } => (Greeting::Reconnected(now.duration_since(t)), false),
            Link::Up | Link::Moving => (Greeting::Connected, true),
            Link::Down { quiet_for: Some(quiet), .. } if quiet == node => (Greeting::ReconnectedQuietly, true),
            Link::Down { since, .. } => (Greeting::Reconnected(now.duration_since(since)), true),
        };
        self.delay = BACKOFF_START;
        Connected { greeting, counts_as_reconnect }
    }

    /// A connect attempt failed at `now` with a failure of kind `kind` (`ConnectError::kind`).
    pub fn failed(&mut self, kind: String, now: Instant) -> Failed {
        let (link, failed) = match std::mem::replace(&mut self.link, Link::Up) {
            Link::NeverUp { since, last_failure } => {
                let log = last_failure.as_deref() != Some(kind.as_str());
                (
                    Link::NeverUp { since: since.or(Some(now)), last_failure: Some(kind) },
                    Failed { log, fail_redirected: false },
                )
            }
            Link::Moving | Link::Up => (
                Link::Down { since: now, last_failure: Some(kind), quiet_for: None },
                Failed { log: true, fail_redirected: true },
            ),
            Link::Down { since, last_failure, quiet_for } => {
                let log = last_failure.as_deref() != Some(kind.as_str());
                (Link::Down { since, last_failure: Some(kind), quiet_for }, Failed { log, fail_redirected: false })
            }
        };
        self.link = link;
        failed
    }

    /// The session ended at `now` (not by a `-MOVED` that is followed).
    pub fn ended(&mut self, how: Ended, now: Instant) {
        let quiet_for = match how {
            Ended::Loud => None,
            Ended::QuietFor(node) => Some(node),
        };
        self.link = Link::Down { since: now, last_failure: None, quiet_for };
    }

    /// The session ended by a `-MOVED` that is followed at once: the next connect goes to the
    /// new owner without a pause.
    pub fn moved(&mut self) {
        self.link = Link::Moving;
    }

    /// Whether the shard is moving to a slot's new owner (connect again at once, no backoff).
    pub fn is_moving(&self) -> bool {
        self.link == Link::Moving
    }

    /// The pause before the next attempt, with `jitter` in [0, 1) taking up to half of it off
    /// (so shards that lost Redis together do not come back in step); doubles the next one.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = self.delay.mul_f64(0.5 + jitter.clamp(0.0, 1.0) * 0.5);
        self.delay = (self.delay * 2).min(BACKOFF_CAP);
        delay
    }

    /// Whether to warn that ROLE could not be checked: once per shard.
    pub fn warn_role_once(&mut self) -> bool {
        !std::mem::replace(&mut self.role_warned, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_session_says_connected_and_is_not_a_reconnect() {
        let mut r = Reconnect::default();
        let c = r.connected("a", Instant::now());
        assert_eq!(c, Connected { greeting: Greeting::Connected, counts_as_reconnect: false });
    }

    #[test]
    fn failures_log_once_per_kind_and_the_reconnect_says_how_long_it_was_down() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        assert!(r.failed("io:a".into(), t0).log);
        assert!(!r.failed("io:a".into(), at(t0, 100)).log, "the same failure again is DEBUG");
        assert!(r.failed("timeout:a".into(), at(t0, 200)).log, "a new kind is logged");
        let c = r.connected("a", at(t0, 1500));
        assert_eq!(c.greeting, Greeting::Reconnected(Duration::from_millis(1500)), "down since the first failure");
        assert!(!c.counts_as_reconnect, "no session ran before");
        r.ended(Ended::Loud, at(t0, 2000));
        assert!(r.failed("io:a".into(), at(t0, 2100)).log, "a new outage logs its first failure");
        let c = r.connected("a", at(t0, 3000));
        assert_eq!(c, Connected { greeting: Greeting::Reconnected(Duration::from_secs(1)), counts_as_reconnect: true });
    }

    #[test]
    fn a_wait_shortfall_reconnect_to_the_same_node_is_quiet() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        r.connected("a", t0);
        r.ended(Ended::QuietFor("a".into()), t0);
        assert_eq!(r.connected("a", t0).greeting, Greeting::ReconnectedQuietly);
        r.ended(Ended::QuietFor("a".into()), t0);
        assert_eq!(r.connected("b", t0).greeting, Greeting::Reconnected(Duration::ZERO), "another node is news");
    }

    #[test]
    fn a_followed_move_connects_at_once_and_an_unreachable_owner_fails_what_was_redirected() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        r.connected("a", t0);
        r.moved();
        assert!(r.is_moving());
        assert_eq!(r.connected("b", t0), Connected { greeting: Greeting::Connected, counts_as_reconnect: true });
        r.moved();
        let f = r.failed("io:b".into(), t0);
        assert!(f.log && f.fail_redirected && !r.is_moving());
        assert!(!r.failed("io:b".into(), t0).fail_redirected, "only once");
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_with_jitter_and_a_session_resets_it() {
        let mut r = Reconnect::default();
        assert_eq!(r.next_delay(1.0), BACKOFF_START);
        assert_eq!(r.next_delay(0.0), BACKOFF_START, "half of 2x");
        let delays: Vec<_> = (0..10).map(|_| r.next_delay(1.0)).collect();
        assert_eq!(delays.last(), Some(&BACKOFF_CAP));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        r.connected("a", Instant::now());
        assert_eq!(r.next_delay(1.0), BACKOFF_START);
    }

    #[test]
    fn the_role_warning_is_given_once() {
        let mut r = Reconnect::default();
        assert!(r.warn_role_once());
        assert!(!r.warn_role_once());
    }
}
