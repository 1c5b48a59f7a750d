//! When one connection last refreshed each counter's TTL, so that a key hit in batch after batch
//! gets one `EXPIRE` per refresh interval instead of one per batch, in bounded memory. Pure state:
//! the caller passes the clock.
//!
//! It owns the interval rule ([`refresh_interval`]) and the table ([`Refreshed`]); it must not
//! decide what is written (`keyed` does) nor know whether a key exists: a key created by a hit
//! gets its TTL from the `INCRBY` reply, never from this table.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The longest a key's TTL goes unrefreshed: a day. With the default `--counter-ttl` (180 days)
/// `ttl / 64` would be 2.8 days; a day keeps the promise tight in absolute terms while still
/// taking `EXPIRE` out of all but one batch per key per shard per day.
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Keys remembered per generation; the table holds at most twice this. 16,384 holds every key of
/// the 10,000-key benchmark, and at about 100 bytes an entry with short names (a 32-byte slot and
/// the key's `Rc`, which the request that brought it shared) it stays near 3 MB per shard (under
/// 8 MB with the longest names) however many pages a site counts.
/// Losing an entry costs one extra `EXPIRE`, nothing else.
pub const GENERATION_ENTRIES: usize = 16_384;

/// How long a refreshed TTL is trusted: `ttl / 64` or [`MAX_REFRESH_INTERVAL`], whichever is
/// smaller. A counter then expires between `ttl - interval` and `ttl` after its last hit: at most
/// 1/64 (1.6 %) of its life early, and never more than a day early. Below 64 s the interval is
/// zero: every batch refreshes, as before (a rate-limit window, a test's short TTL).
pub fn refresh_interval(ttl: u64) -> Duration {
    Duration::from_secs(ttl / 64).min(MAX_REFRESH_INTERVAL)
}

/// Keys whose TTL this connection set recently, in two generations: new entries go to `young`;
/// when it is full, or older than [`MAX_REFRESH_INTERVAL`] (its entries are stale by then), it
/// becomes `old` and the previous `old` is dropped whole. Lookups see both, so an entry lives at
/// least one generation; memory is bounded by `2 * per_generation` entries with no scan.
#[derive(Debug)]
pub struct Refreshed {
    young: HashMap<Rc<[u8]>, Instant>,
    old: HashMap<Rc<[u8]>, Instant>,
    /// When `young` took its first entry (`None`: empty).
    young_since: Option<Instant>,
    /// Entries per generation; [`GENERATION_ENTRIES`] by default, small in tests.
    per_generation: usize,
}

impl Default for Refreshed {
    fn default() -> Self {
        Refreshed::with_capacity(GENERATION_ENTRIES)
    }
}

impl Refreshed {
    /// A table of at most `2 * per_generation` entries.
    pub fn with_capacity(per_generation: usize) -> Self {
        Refreshed {
            young: HashMap::new(),
            old: HashMap::new(),
            young_since: None,
            per_generation: per_generation.max(1),
        }
    }

    /// Whether `key`'s TTL (`ttl` seconds) must be set now: it was not set by this table within
    /// its [`refresh_interval`]. When it must, `now` is recorded as its refresh.
    pub fn due(&mut self, key: &Rc<[u8]>, ttl: u64, now: Instant) -> bool {
        let interval = refresh_interval(ttl);
        if interval.is_zero() {
            return true;
        }
        let last = self.young.get(&key[..]).or_else(|| self.old.get(&key[..])).copied();
        if last.is_some_and(|at| now.saturating_duration_since(at) < interval) {
            return false;
        }
        self.record(key.clone(), now);
        true
    }

    fn record(&mut self, key: Rc<[u8]>, now: Instant) {
        let aged = self.young_since.is_some_and(|since| now.saturating_duration_since(since) >= MAX_REFRESH_INTERVAL);
        if self.young.len() >= self.per_generation || aged {
            self.old = std::mem::take(&mut self.young);
            self.young_since = None;
        }
        self.young_since.get_or_insert(now);
        self.young.insert(key, now);
    }

    /// Forgets `key`'s refresh (its `EXPIRE` was refused): the next hit on it sets its TTL again.
    pub fn forget_key(&mut self, key: &[u8]) {
        self.young.remove(key);
        self.old.remove(key);
    }

    /// Forgets every refresh: after a connection ends, a refresh may not have run (or a failover
    /// may have lost it), so the next hit on each key sets its TTL again.
    pub fn forget(&mut self) {
        self.young.clear();
        self.old.clear();
        self.young_since = None;
    }

    /// Entries held (both generations).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Rc<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn the_interval_is_a_64th_of_the_ttl_at_most_a_day_and_zero_below_64_seconds() {
        assert_eq!(refresh_interval(63), Duration::ZERO);
        assert_eq!(refresh_interval(6400), Duration::from_secs(100));
        assert_eq!(refresh_interval(180 * 24 * 3600), MAX_REFRESH_INTERVAL);
    }

    #[test]
    fn a_key_is_due_when_unknown_not_within_the_interval_and_again_after_it() {
        let (mut t, k, t0) = (Refreshed::default(), key("K:a:aaa"), Instant::now());
        assert!(t.due(&k, 6400, t0));
        assert!(!t.due(&k, 6400, t0 + Duration::from_secs(99)));
        assert!(t.due(&k, 6400, t0 + Duration::from_secs(100)));
        assert!(!t.due(&k, 6400, t0 + Duration::from_secs(150)), "the refresh at 100 s restarted the interval");
        assert!(t.due(&k, 60, t0), "a TTL under 64 s is refreshed every time");
    }

    #[test]
    fn the_table_holds_at_most_two_generations_and_forgets_the_oldest_whole() {
        let (mut t, t0) = (Refreshed::with_capacity(4), Instant::now());
        let keys: Vec<Rc<[u8]>> = (0..100).map(|i| key(&format!("K:a:{i:03}"))).collect();
        for k in &keys {
            assert!(t.due(k, 6400, t0));
            assert!(t.len() <= 8, "{} entries", t.len());
        }
        // The last generation and the one before it are remembered; older keys are due again.
        assert!(!t.due(&keys[99], 6400, t0) && !t.due(&keys[92], 6400, t0));
        assert!(t.due(&keys[0], 6400, t0));
    }

    #[test]
    fn a_generation_older_than_the_longest_interval_is_dropped_without_pressure() {
        let (mut t, t0) = (Refreshed::with_capacity(1000), Instant::now());
        for i in 0..10 {
            t.due(&key(&format!("K:a:{i:03}")), 180 * 24 * 3600, t0);
        }
        let later = t0 + MAX_REFRESH_INTERVAL * 3;
        t.due(&key("K:a:new"), 180 * 24 * 3600, later);
        t.due(&key("K:a:newer"), 180 * 24 * 3600, later + MAX_REFRESH_INTERVAL);
        assert_eq!(t.len(), 2, "both stale generations are gone");
        t.forget();
        assert_eq!(t.len(), 0);
    }
}
