//! The load of a failover test and its judgement: a few client threads against hitcore, bounded in
//! time and count, that record (time, status, value) for every answer; then the duplicates among
//! the 200 values, the values above the final counter, and the longest stretch with no 200.
//!
//! It owns no process: it talks HTTP to the hitcore the test started, through the parent
//! module's one-request client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::topology::poll;
use super::{Outcome, one_request};

/// Load against hitcore that is bounded by itself: `threads` clients, each one request per fresh
/// connection, until [`TimedLoad::finish`], `max_time`, or a cap on requests, whichever comes
/// first. Every answer is kept with the moment it arrived. Dropping it (a failed assertion) stops
/// the clients too, so no thread outlives its test.
pub struct TimedLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    /// When the load started.
    pub started: Instant,
    handles: Vec<std::thread::JoinHandle<Vec<(Instant, Outcome)>>>,
}

/// At most this many requests per load thread.
const MAX_REQUESTS_PER_THREAD: usize = 100_000;

impl TimedLoad {
    /// Starts the clients.
    pub fn start(addr: SocketAddr, threads: usize, max_time: Duration) -> TimedLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let handles = (0..threads)
            .map(|_| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < max_time
                        && seen.len() < MAX_REQUESTS_PER_THREAD
                    {
                        let outcome = one_request(addr);
                        match outcome {
                            Outcome::Answered { status: 200, .. } => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            // Nothing listens or it is failing fast: do not spin on it.
                            Outcome::Refused | Outcome::Answered { .. } => std::thread::sleep(Duration::from_millis(2)),
                            Outcome::Failed(_) => {}
                        }
                        seen.push((Instant::now(), outcome));
                    }
                    seen
                })
            })
            .collect();
        TimedLoad { stop, ok, started, handles }
    }

    /// 200s so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more 200s than now have arrived (proof that service goes on), failing at `within`.
    pub fn wait_for_200s(&self, n: usize, within: Duration) {
        let from = self.ok();
        poll(&format!("{n} more answers 200"), within, || {
            let now = self.ok();
            if now >= from + n { Ok(()) } else { Err(format!("{} of {n}", now - from)) }
        });
    }

    /// Stops the clients and returns every outcome in time order.
    pub fn finish(mut self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<_> = std::mem::take(&mut self.handles).into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }
}

impl Drop for TimedLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// What a failover run came to.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Answers by status (0 for a connection that got no response at all).
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no complete response, with why.
    pub failed: Vec<String>,
    /// Values answered 200 more than once, each once.
    pub duplicates: Vec<i64>,
    /// Values answered 200 that are above the final counter: handed out by a node whose writes
    /// were then discarded (and the new primary will hand them out again).
    pub above_final: Vec<i64>,
    /// The longest time between two 200s (or between the start of the load and the first one).
    pub longest_without_200: Duration,
    /// The final counter the values were judged against.
    pub final_counter: i64,
}

impl Verdict {
    /// Judges a run's outcomes against the counter on the primary at the end.
    pub fn judge(started: Instant, outcomes: &[(Instant, Outcome)], final_counter: i64) -> Verdict {
        let mut v = Verdict { final_counter, ..Verdict::default() };
        let mut values = Vec::new();
        let mut last_200 = started;
        for (t, o) in outcomes {
            match o {
                Outcome::Answered { status, value } => {
                    *v.statuses.entry(*status).or_default() += 1;
                    if *status == 200 {
                        v.longest_without_200 = v.longest_without_200.max(t.saturating_duration_since(last_200));
                        last_200 = *t;
                        values.extend(*value);
                    }
                }
                Outcome::Refused => *v.statuses.entry(0).or_default() += 1,
                Outcome::Failed(why) => v.failed.push(why.clone()),
            }
        }
        if let Some((end, _)) = outcomes.last() {
            v.longest_without_200 = v.longest_without_200.max(end.saturating_duration_since(last_200));
        }
        values.sort_unstable();
        for w in values.windows(2) {
            if w[0] == w[1] && v.duplicates.last() != Some(&w[0]) {
                v.duplicates.push(w[0]);
            }
        }
        v.above_final = values.iter().copied().filter(|&x| x > final_counter).collect();
        v
    }

    /// Requests answered 200.
    pub fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// One line for the test output (and the failover table).
    pub fn summary(&self) -> String {
        let shown = |v: &[i64]| {
            let mut s: Vec<String> = v.iter().take(10).map(i64::to_string).collect();
            if v.len() > 10 {
                s.push(format!("... {} in all", v.len()));
            }
            s.join(" ")
        };
        format!(
            "statuses {:?}, {} failed, {} duplicate values [{}], {} values above the final counter {} [{}], \
             longest stretch without a 200: {:.2}s",
            self.statuses,
            self.failed.len(),
            self.duplicates.len(),
            shown(&self.duplicates),
            self.above_final.len(),
            self.final_counter,
            shown(&self.above_final),
            self.longest_without_200.as_secs_f64()
        )
    }
}
