//! The supervisor's side of the metrics: reading every slot's block and keeping counts monotonic.
//!
//! A slot is reused by the next shard spawned into it, and a finished shard's counters must not
//! vanish from a Prometheus counter. So when the arbiter reaps a shard it calls
//! [`Collector::retire`], which adds the slot's counters to the collector's own totals and zeroes
//! the block, under the same lock a scrape reads under: every count is seen exactly once, either in
//! a live block or in the totals. Gauges (open connections, Redis up) die with their shard. The
//! collector also owns the supervisor's own counters (restarts, WORKER TIMEOUTs). It must not write
//! a live shard's block, and never blocks a shard: shards take no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::shm::{LAYOUT, word};
use crate::heartbeat::{Heartbeats, METRICS_WORDS, SLOTS, state};

/// One live shard's block, as read.
#[derive(Debug, Clone)]
pub struct Live {
    /// The shard's index.
    pub shard: u64,
    /// Whether it has booted (serves).
    pub booted: bool,
    /// Its words (see `shm::word`).
    pub words: [u64; METRICS_WORDS],
}

/// Everything a scrape shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Shards running now that count (a shard of an older release does not), booting ones too.
    pub live: Vec<Live>,
    /// Shards booted and serving, counting or not.
    pub booted: usize,
    /// Counters of every shard that has exited, summed.
    pub retired: [u64; METRICS_WORDS],
    /// Responses of exited shards, by shard index.
    pub retired_responses: BTreeMap<u64, u64>,
    /// Shards restarted after a crash, a stall or a failed boot.
    pub restarts: u64,
    /// WORKER TIMEOUTs.
    pub worker_timeouts: u64,
}

/// Reads and folds the metrics blocks of the heartbeat region.
#[derive(Debug)]
pub struct Collector {
    heartbeats: Arc<Heartbeats>,
    /// Totals of retired shards; held while folding and while reading.
    retired: Mutex<Retired>,
    restarts: AtomicU64,
    worker_timeouts: AtomicU64,
}

#[derive(Debug)]
struct Retired {
    words: [u64; METRICS_WORDS],
    responses: BTreeMap<u64, u64>,
}

/// The sum of a block's status words: its responses.
pub fn responses(words: &[u64; METRICS_WORDS]) -> u64 {
    let api = &words[word::API_STATUS..word::API_STATUS + crate::metrics::shm::API_STATUSES.len()];
    words[word::STATUS..word::UNAVAILABLE].iter().chain(api).sum()
}

impl Collector {
    /// A collector over `heartbeats`' metrics blocks.
    pub fn new(heartbeats: Arc<Heartbeats>) -> Arc<Collector> {
        Arc::new(Collector {
            heartbeats,
            retired: Mutex::new(Retired { words: [0; METRICS_WORDS], responses: BTreeMap::new() }),
            restarts: AtomicU64::new(0),
            worker_timeouts: AtomicU64::new(0),
        })
    }

    /// Folds the counters of the shard that used `slot` (now exited) into the totals and clears
    /// the block for the slot's next shard. Call after reaping, before the slot is reused.
    pub fn retire(&self, slot: usize) {
        let Some(block) = self.heartbeats.metrics_words(slot) else { return };
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        if block[word::LAYOUT].load(Ordering::Acquire) == LAYOUT {
            let words: [u64; METRICS_WORDS] = std::array::from_fn(|i| block[i].load(Ordering::Relaxed));
            for (i, v) in words.iter().enumerate().skip(word::STATUS) {
                if !word::GAUGES.contains(&i) {
                    retired.words[i] = retired.words[i].wrapping_add(*v);
                }
            }
            *retired.responses.entry(words[word::SHARD]).or_default() += responses(&words);
        }
        // Both of the slot's blocks (src/heartbeat.rs): the next shard may write either.
        for block in self.heartbeats.all_metrics_words(slot) {
            for w in block {
                w.store(0, Ordering::Relaxed);
            }
        }
    }

    /// A shard is being started again after it exited unasked.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The watchdog's WORKER TIMEOUT fired.
    pub fn worker_timeout(&self) {
        self.worker_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every live block and the totals, consistently with [`Collector::retire`].
    pub fn snapshot(&self) -> Snapshot {
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let mut live = Vec::new();
        let mut booted = 0;
        for slot in 0..SLOTS {
            let hb = self.heartbeats.slot(slot);
            let st = hb.state.load(Ordering::Acquire);
            if st == state::FREE {
                continue;
            }
            booted += usize::from(st == state::BOOTED);
            let Some(block) = self.heartbeats.metrics_words(slot) else { continue };
            if block[word::LAYOUT].load(Ordering::Acquire) != LAYOUT {
                continue;
            }
            let words: [u64; METRICS_WORDS] = std::array::from_fn(|i| block[i].load(Ordering::Relaxed));
            live.push(Live { shard: words[word::SHARD], booted: st == state::BOOTED, words });
        }
        Snapshot {
            live,
            booted,
            retired: retired.words,
            retired_responses: retired.responses.clone(),
            restarts: self.restarts.load(Ordering::Relaxed),
            worker_timeouts: self.worker_timeouts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::shm::Meter;

    fn meter(hb: &Arc<Heartbeats>, slot: usize, shard: usize) -> Meter {
        hb.slot(slot).state.store(state::BOOTED, Ordering::Release);
        let words = hb.metrics_words(slot).unwrap();
        let words: &'static [AtomicU64; METRICS_WORDS] = unsafe_static(words);
        Meter::attach(words, shard)
    }

    fn unsafe_static(words: &[AtomicU64; METRICS_WORDS]) -> &'static [AtomicU64; METRICS_WORDS] {
        let ptr: *const [AtomicU64; METRICS_WORDS] = words;
        // SAFETY: every test below keeps the region mapped (an Arc it holds) until it returns, and
        // no Meter outlives the test.
        unsafe { &*ptr }
    }

    #[test]
    fn a_reused_slot_keeps_its_counters_monotonic() {
        let hb = Arc::new(Heartbeats::create().unwrap());
        let c = Collector::new(hb.clone());
        let first = meter(&hb, 2, 0);
        first.response(200, 1000);
        first.response(503, 1000);
        first.opened();
        let s = c.snapshot();
        assert_eq!(s.live.len(), 1);
        assert_eq!(responses(&s.live[0].words), 2);
        // The shard exits; the slot goes to its replacement.
        c.retire(2);
        hb.slot(2).state.store(state::FREE, Ordering::Release);
        let s = c.snapshot();
        assert!(s.live.is_empty());
        assert_eq!(responses(&s.retired), 2);
        assert_eq!(s.retired[word::OPEN], 0, "gauges are not carried over");
        assert_eq!(s.retired_responses[&0], 2);
        let second = meter(&hb, 2, 0);
        second.response(200, 1000);
        let s = c.snapshot();
        assert_eq!(responses(&s.live[0].words) + responses(&s.retired), 3);
    }
}
