//! The shard's registry of live connections: what a graceful stop closes and what the connection cap
//! may evict.
//!
//! A connection registers when it starts and gets a [`Registered`] guard whose `Drop` removes its
//! entry, so no way out of a connection's task (an answer, an error, a panic caught by the shard)
//! can leave an entry whose file descriptor is closed, or reused by another socket, behind. It owns
//! the choice of which connection to evict, and each connection's read deadline, which the shard's
//! tick checks for all of them at once ([`Registry::expire_overdue`]) instead of a glommio timer
//! inserted and removed per read that waits; it must not read or write connections' bytes.

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// Candidates looked at per eviction: a connection whose request has arrived unread is skipped.
const CANDIDATES: usize = 4;

/// How often to look again for an evictable connection when the longest waiters were skipped.
pub const EVICT_RECHECK: Duration = Duration::from_millis(100);

/// What the shard knows about a live connection.
#[derive(Debug)]
pub struct Entry {
    fd: RawFd,
    /// True while a connection that has been answered at least once waits for the first byte of
    /// its next request: the only moment it may be closed without cutting a request in half.
    idle: Cell<bool>,
    /// Since when the connection has been waiting for a complete request (from its accept or its
    /// last answer); `None` while a batch of its requests is being answered.
    waiting_since: Cell<Option<Instant>>,
    /// The pending read's deadline (see [`Deadline`]).
    deadline: Cell<Deadline>,
    /// The connection task's waker, woken by the tick when the deadline passes. Kept across reads:
    /// the task's waker does not change, so it is cloned once, not once per read.
    waker: RefCell<Option<Waker>>,
}

/// Where a connection's read stands against its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// No read is waiting (answering a batch, or not reading at all).
    Unset,
    /// A read waits until this instant at the latest.
    At(Instant),
    /// The tick found the deadline passed; the read ends with `TimedOut`.
    Passed,
}

impl Entry {
    /// Gives the reads that follow until [`Entry::clear_deadline`] the deadline `at`. The shard's
    /// tick checks it ([`Registry::expire_overdue`]), so it is kept at most one tick late.
    pub fn set_deadline(&self, at: Instant) {
        self.deadline.set(Deadline::At(at));
    }

    /// No read is waiting any more.
    pub fn clear_deadline(&self) {
        self.deadline.set(Deadline::Unset);
    }

    /// `Ready` once the tick has found the deadline passed; otherwise keeps `cx`'s waker for it.
    pub fn poll_deadline(&self, cx: &Context<'_>) -> Poll<()> {
        if self.deadline.get() == Deadline::Passed {
            return Poll::Ready(());
        }
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Marks the deadline passed and wakes the reader if `now` is at or past it; returns the
    /// deadline still ahead, if any.
    fn expire_if_overdue(&self, now: Instant) -> Option<Instant> {
        let Deadline::At(at) = self.deadline.get() else { return None };
        if at > now {
            return Some(at);
        }
        self.deadline.set(Deadline::Passed);
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
        None
    }

    /// How long the connection has waited for a complete request, if it is waiting.
    pub fn waiting_for(&self, now: Instant) -> Option<Duration> {
        self.waiting_since.get().map(|since| now.saturating_duration_since(since))
    }

    /// Marks the connection as waiting for a request since `since`, or busy answering (`None`).
    pub fn set_waiting(&self, since: Option<Instant>) {
        self.waiting_since.set(since);
    }

    /// Marks whether the connection is idle between requests (see [`Registry::close_idle`]).
    pub fn set_idle(&self, idle: bool) {
        self.idle.set(idle);
    }

    /// Whether bytes from the client wait unread in the socket: a connection that just sent its
    /// request but has not been read yet (a busy shard) must not be taken for an idle one.
    fn has_unread_input(&self) -> bool {
        let mut pending: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; the fd belongs to a live connection (its entry is removed
        // by its guard before the connection's socket is closed).
        let rc = unsafe { libc::ioctl(self.fd, libc::FIONREAD, &mut pending) };
        rc == 0 && pending > 0
    }

    /// Closes a waiting connection outright to free its slot: its pending read ends, and it
    /// closes without an answer, as a timed-out one would.
    fn evict(&self) {
        // SAFETY: the fd belongs to a live connection (see `has_unread_input`).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    /// Closes the connection's read side if it is idle, which ends its wait for a next request
    /// (its read returns end-of-file). A busy connection finishes its batch and answers it with
    /// `Connection: close`, seeing that the shard is draining.
    fn close_if_idle(&self) {
        if self.idle.get() {
            // SAFETY: the fd belongs to a live connection (see `has_unread_input`).
            unsafe { libc::shutdown(self.fd, libc::SHUT_RD) };
        }
    }
}

/// What one look for an evictable connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// One was closed; its slot is about to be free.
    Done,
    /// The longest waiter becomes evictable after this long.
    NotYet(Duration),
    /// Every connection is busy with a request: nothing to evict.
    Nobody,
}

/// The live connections of one shard.
#[derive(Debug, Default)]
pub struct Registry {
    entries: RefCell<Slab<Rc<Entry>>>,
    /// No read deadline can pass before this instant, so the tick need not look before it
    /// (`None`: look at the next tick). See [`Registry::expire_overdue`].
    next_look: Cell<Option<Instant>>,
}

/// A connection's registration; dropping it removes the entry.
#[derive(Debug)]
pub struct Registered<'r> {
    registry: &'r Registry,
    key: usize,
    entry: Rc<Entry>,
}

impl Deref for Registered<'_> {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.entry
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.entries.borrow_mut().remove(self.key);
    }
}

impl Registry {
    /// Registers a connection on `fd`, waiting for its first request from now. Keep the guard for
    /// as long as the socket is open, and drop it before closing the socket.
    pub fn register(&self, fd: RawFd) -> Registered<'_> {
        let entry = Rc::new(Entry {
            fd,
            idle: Cell::new(false),
            waiting_since: Cell::new(Some(Instant::now())),
            deadline: Cell::new(Deadline::Unset),
            waker: RefCell::new(None),
        });
        let key = self.entries.borrow_mut().insert(entry.clone());
        Registered { registry: self, key, entry }
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every idle connection's read side (a graceful stop).
    pub fn close_idle(&self) {
        for (_, entry) in self.entries.borrow().iter() {
            entry.close_if_idle();
        }
    }

    /// Ends every read whose deadline is at or before `now` (it returns `TimedOut`): called by the
    /// shard's housekeeping tick. One pass over the live connections replaces a timer per waiting
    /// read (docs/performance.md, "Deadlines on the tick").
    ///
    /// `shortest` is the shortest time a deadline is ever set ahead of the moment it is computed
    /// (the smaller of `--header-timeout` and a non-zero `--keep-alive`). A read's deadline is
    /// computed and set without a suspension in between, and a deadline carried from one read to
    /// the next (a head arriving in pieces) is set on the entry during the whole wait for each
    /// piece, so every deadline set after a pass is either later than the pass by `shortest` or was
    /// seen by it: the next pass is due at the earlier of the two, and ticks before it only compare
    /// one instant. With many idle connections the tick then walks them once per `shortest`
    /// rather than on every tick.
    pub fn expire_overdue(&self, now: Instant, shortest: Duration) {
        if self.next_look.get().is_some_and(|at| now < at) {
            return;
        }
        let mut next = now + shortest;
        for (_, entry) in self.entries.borrow().iter() {
            if let Some(at) = entry.expire_if_overdue(now) {
                next = next.min(at);
            }
        }
        self.next_look.set(Some(next));
    }

    /// Closes the connection that has waited longest for a complete request, if it has waited at
    /// least `grace` and has nothing unread in its socket (a request that has arrived but that a
    /// busy shard has not read yet is not idleness). A scan of the registry per candidate, a few
    /// candidates at most, and only at the connection cap.
    pub fn evict_longest_waiting(&self, grace: Duration, now: Instant) -> Eviction {
        let entries = self.entries.borrow();
        let mut skipped: [Option<usize>; CANDIDATES] = [None; CANDIDATES];
        for round in 0..CANDIDATES {
            let longest = entries
                .iter()
                .filter(|(key, _)| !skipped.contains(&Some(*key)))
                .filter_map(|(key, e)| e.waiting_for(now).map(|w| (w, key, e)))
                .max_by_key(|(w, _, _)| *w);
            let Some((waited, key, entry)) = longest else {
                return if round == 0 { Eviction::Nobody } else { Eviction::NotYet(EVICT_RECHECK) };
            };
            if waited < grace {
                return Eviction::NotYet(grace - waited);
            }
            if entry.has_unread_input() {
                skipped[round] = Some(key);
                continue;
            }
            entry.evict();
            return Eviction::Done;
        }
        Eviction::NotYet(EVICT_RECHECK)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[test]
    fn the_guard_removes_its_entry_even_when_the_connection_panics() {
        let registry = Registry::default();
        let kept = registry.register(7);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _registered = registry.register(8);
            assert_eq!(registry.len(), 2);
            panic!("a connection task panics");
        }));
        assert!(panicked.is_err());
        assert_eq!(registry.len(), 1, "the panicking connection's entry must be gone");
        drop(kept);
        assert!(registry.is_empty());
    }

    #[test]
    fn eviction_picks_the_longest_waiter_after_the_grace() {
        let registry = Registry::default();
        let (old_server, mut old_client) = UnixStream::pair().unwrap();
        let (new_server, mut new_client) = UnixStream::pair().unwrap();
        let (busy_server, _busy_client) = UnixStream::pair().unwrap();
        let now = Instant::now();
        let old = registry.register(old_server.as_raw_fd());
        old.set_waiting(Some(now - Duration::from_secs(5)));
        let new = registry.register(new_server.as_raw_fd());
        new.set_waiting(Some(now - Duration::from_secs(1)));
        let busy = registry.register(busy_server.as_raw_fd());
        busy.set_waiting(None);

        assert_eq!(
            registry.evict_longest_waiting(Duration::from_secs(10), now),
            Eviction::NotYet(Duration::from_secs(5))
        );
        assert_eq!(registry.evict_longest_waiting(Duration::from_secs(2), now), Eviction::Done);
        let mut buf = [0u8; 1];
        assert_eq!(old_client.read(&mut buf).unwrap(), 0, "the longest waiter is closed");
        // The newer one is untouched: its peer can still write to it.
        new_client.write_all(b"x").unwrap();
    }

    #[test]
    fn a_waiter_whose_request_has_arrived_is_not_evicted() {
        let registry = Registry::default();
        let (server, mut client) = UnixStream::pair().unwrap();
        let now = Instant::now();
        let entry = registry.register(server.as_raw_fd());
        entry.set_waiting(Some(now - Duration::from_secs(5)));
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert_eq!(registry.evict_longest_waiting(Duration::ZERO, now), Eviction::NotYet(EVICT_RECHECK));
        entry.set_waiting(None);
        assert_eq!(registry.evict_longest_waiting(Duration::ZERO, now), Eviction::Nobody);
    }

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_tick_ends_only_reads_whose_deadline_has_passed_and_wakes_them() {
        let registry = Registry::default();
        let now = Instant::now();
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let cx = Context::from_waker(&waker);
        let due = registry.register(7);
        let later = registry.register(8);
        let unset = registry.register(9);
        due.set_deadline(now + Duration::from_secs(2));
        later.set_deadline(now + Duration::from_secs(3));
        for entry in [&due, &later, &unset] {
            assert!(entry.poll_deadline(&cx).is_pending());
        }

        registry.expire_overdue(now + Duration::from_millis(1999), Duration::ZERO);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "nothing is due yet");
        assert!(due.poll_deadline(&cx).is_pending());

        registry.expire_overdue(now + Duration::from_secs(2), Duration::ZERO);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "exactly the due read is woken");
        assert!(due.poll_deadline(&cx).is_ready());
        assert!(later.poll_deadline(&cx).is_pending());
        assert!(unset.poll_deadline(&cx).is_pending(), "a connection not reading never expires");

        // A passed deadline stays passed (the read sees it once it is polled) and wakes only once.
        registry.expire_overdue(now + Duration::from_secs(2), Duration::ZERO);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        // The next read's deadline starts afresh.
        due.clear_deadline();
        due.set_deadline(now + Duration::from_secs(4));
        assert!(due.poll_deadline(&cx).is_pending());
    }

    #[test]
    fn the_tick_looks_again_only_when_a_deadline_can_have_passed() {
        let registry = Registry::default();
        let now = Instant::now();
        let s = Duration::from_secs;
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let cx = Context::from_waker(&waker);
        let idle = registry.register(7);
        idle.set_deadline(now + s(10));
        assert!(idle.poll_deadline(&cx).is_pending());
        registry.expire_overdue(now, s(2));
        // Until now + 2 s no new deadline can be due (each is set at least 2 s ahead), so a tick
        // before then does not look, even at a deadline it would have found passed.
        let early = registry.register(8);
        early.set_deadline(now + s(1));
        assert!(early.poll_deadline(&cx).is_pending());
        registry.expire_overdue(now + s(1), s(2));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
        // From then on it looks, and every deadline is kept at most one tick late.
        registry.expire_overdue(now + s(2), s(2));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(early.poll_deadline(&cx).is_ready());
        // The idle one's next look: 2 s on (no deadline of its own sooner), and then at its own.
        registry.expire_overdue(now + s(3), s(10));
        assert!(idle.poll_deadline(&cx).is_pending());
        registry.expire_overdue(now + s(4), s(10));
        assert!(idle.poll_deadline(&cx).is_pending());
        registry.expire_overdue(now + s(10), s(10));
        assert!(idle.poll_deadline(&cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
    }

    /// Seeded random schedules of reads and ticks: every deadline ends its read at the first tick
    /// at or after it, never at one before, however the ticks that skip their pass fall. The seed is
    /// printed; `HITCORE_TEST_SEED=N` replays one.
    #[test]
    fn random_schedules_keep_every_deadline_at_the_first_tick_after_it() {
        let first = std::env::var("HITCORE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        let seeds = if std::env::var("HITCORE_TEST_SEED").is_ok() { 1 } else { 50 };
        for seed in first..first + seeds {
            eprintln!("registry schedule seed {seed} (HITCORE_TEST_SEED={seed} replays it)");
            random_schedule(seed);
        }
    }

    fn random_schedule(seed: u64) {
        let mut x = seed | 1;
        let mut rand = move |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below.max(1)
        };
        let registry = Registry::default();
        let waker = Waker::from(Arc::new(Wakes(AtomicUsize::new(0))));
        let cx = Context::from_waker(&waker);
        let shortest = Duration::from_millis(1 + rand(3000));
        let mut now = Instant::now();
        let entries: Vec<_> = (0..8).map(|fd| registry.register(fd)).collect();
        // The model: each connection's pending read deadline, if it is reading.
        let mut reading: Vec<Option<Instant>> = vec![None; entries.len()];
        for step in 0..2000 {
            now += Duration::from_millis(rand(shortest.as_millis() as u64 / 2 + 1));
            for (i, entry) in entries.iter().enumerate() {
                match (reading[i], rand(3)) {
                    // A new read: its deadline is computed now, at least `shortest` ahead.
                    (None, 0) => {
                        let at = now + shortest + Duration::from_millis(rand(2 * shortest.as_millis() as u64));
                        entry.set_deadline(at);
                        assert!(entry.poll_deadline(&cx).is_pending());
                        reading[i] = Some(at);
                    }
                    // Its data arrived: the read ends before the deadline.
                    (Some(_), 0) => {
                        entry.clear_deadline();
                        reading[i] = None;
                    }
                    _ => {}
                }
            }
            registry.expire_overdue(now, shortest);
            for (i, entry) in entries.iter().enumerate() {
                let Some(at) = reading[i] else { continue };
                let ended = entry.poll_deadline(&cx).is_ready();
                assert_eq!(ended, at <= now, "seed {seed}, step {step}: deadline {at:?}, tick at {now:?}");
                if ended {
                    entry.clear_deadline();
                    reading[i] = None;
                }
            }
        }
    }

    #[test]
    fn a_graceful_stop_closes_only_idle_connections() {
        let registry = Registry::default();
        let (idle_server, mut idle_client) = UnixStream::pair().unwrap();
        let (busy_server, mut busy_client) = UnixStream::pair().unwrap();
        let idle = registry.register(idle_server.as_raw_fd());
        idle.set_idle(true);
        let _busy = registry.register(busy_server.as_raw_fd());
        registry.close_idle();
        // The idle connection's read side is shut: the server reads end-of-file.
        let mut buf = [0u8; 1];
        assert_eq!((&idle_server).read(&mut buf).unwrap(), 0);
        busy_client.write_all(b"x").unwrap();
        assert_eq!((&busy_server).read(&mut buf).unwrap(), 1);
        let _ = idle_client.write_all(b"");
    }
}
