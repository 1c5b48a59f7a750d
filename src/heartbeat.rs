//! The heartbeat region: the only memory shared between the supervisor and its shards.
//!
//! A memfd the supervisor creates and every shard inherits, holding one cache-line [`Slot`] per
//! shard process. A shard writes its slot from a timer task on its own executor, so the heartbeat
//! stops exactly when the executor stops turning; the supervisor's watchdog reads it. This module
//! must not hold anything but atomics in shared memory: no pointers, no locks, nothing a crashed
//! shard could leave half-written in a way that matters.
//!
//! After the slots the region holds one block of [`METRICS_WORDS`] atomic words per slot, which the
//! shard in the slot counts into (their meaning belongs to `metrics::shm`). A region made by an
//! older supervisor has no such blocks: [`Heartbeats::metrics_words`] then answers `None`.
//!
//! That much is the legacy area, laid out as the previous release does. After it, this release's
//! region has one page per slot (the slot, then its metrics block): a shard of this release maps its
//! own page only, writable, and closes the descriptor ([`Heartbeats::attach_own`]), so a compromised
//! shard cannot forge another's heartbeat, BOOTED state or metrics. The supervisor maps all of it
//! and follows each slot where its shard writes (the page, or the legacy slot for a shard of an
//! older release: the one with the newer beat). Under an older supervisor (a rollback) a shard of
//! this release finds no pages and maps the legacy region whole, as before.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};

/// Slots in the region: shard processes that can exist at once, counting replacements booting
/// beside the shards they replace (HUP) and shards being retired.
pub const SLOTS: usize = 1024;

/// Atomic words of metrics per slot, after the heartbeat slots (1 KiB each; the memfd's pages are
/// only backed once a shard in that slot writes them).
pub const METRICS_WORDS: usize = 128;

/// The heartbeat slots alone: all an older supervisor's region holds.
const HEARTBEAT_BYTES: usize = SLOTS * size_of::<Slot>();
/// The legacy area: slots, then metrics blocks, as the previous release lays them out (its shards,
/// spawned by this supervisor after a rollback, write here).
const LEGACY_BYTES: usize = HEARTBEAT_BYTES + SLOTS * METRICS_WORDS * size_of::<AtomicU64>();
/// One page per slot after the legacy area: the slot at the page's start, its metrics block after
/// it. A shard of this release maps only its own page, writable, and nothing else of the region.
pub const PAGE: usize = 4096;
/// Where the metrics block starts within a slot's page.
const PAGE_METRICS: usize = size_of::<Slot>();
/// The whole region this release creates: the legacy area (page-aligned: 272 pages) and the pages.
const REGION_BYTES: usize = LEGACY_BYTES + SLOTS * PAGE;

/// A slot's lifecycle, in [`Slot::state`].
pub mod state {
    /// Unused.
    pub const FREE: u32 = 0;
    /// The supervisor spawned a shard into it; the shard has not booted yet.
    pub const SPAWNED: u32 = 1;
    /// The shard's executor runs and its listener is live: it can serve.
    pub const BOOTED: u32 = 2;
}

/// What a shard can do, in [`Slot::features`], so a supervisor knows what it may ask of a shard of
/// another release (a shard of a release before a feature leaves its bit 0).
pub mod features {
    /// SIGUSR2 retires the shard leaving its listener open to its successor, which shares it: no
    /// drain, no shutdown, so no listener leaves the reuseport group (docs/supervisor.md).
    pub const HANDOVER: u32 = 1;
}

/// One shard's heartbeat, padded to a cache line so shards never share one.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Slot {
    /// `CLOCK_MONOTONIC` nanoseconds of the last beat (the clock is system-wide, so the supervisor
    /// can compare it with its own reading).
    pub beat_ns: AtomicU64,
    /// See [`state`].
    pub state: AtomicU32,
    /// The shard process using the slot (written by the supervisor), so the watchdog can name it.
    pub pid: AtomicU32,
    /// Requests the shard has answered, for the supervisor's exit report.
    pub requests: AtomicU64,
    /// Connections the shard has accepted.
    pub connections: AtomicU64,
    /// See [`features`]; written by the shard before it reports itself booted.
    pub features: AtomicU32,
}

impl Slot {
    /// Records that the shard is alive now.
    pub fn beat(&self) {
        self.beat_ns.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// Nanoseconds since the last beat.
    pub fn age_ns(&self) -> u64 {
        monotonic_ns().saturating_sub(self.beat_ns.load(Ordering::Relaxed))
    }
}

/// What a mapping holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// The whole region (the supervisor; or a shard of an older supervisor's region, which has no
    /// pages of its own): `paged` when the per-slot pages follow the legacy area.
    Whole { paged: bool },
    /// One shard's own page, and nothing else.
    Own { slot: usize },
}

/// The mapped region, or one shard's page of it.
#[derive(Debug)]
pub struct Heartbeats {
    /// The memfd, kept by the supervisor to pass on; a shard that maps its own page closes it.
    file: Option<File>,
    map: MmapMut,
    view: View,
}

impl Heartbeats {
    /// Creates a zeroed region (supervisor). The fd is close-on-exec; spawning a shard clears that
    /// for the one child that should inherit it.
    pub fn create() -> io::Result<Heartbeats> {
        // SAFETY: memfd_create with a valid NUL-terminated name; the fd is owned by the File below.
        let fd = unsafe { libc::memfd_create(c"hitcore-heartbeats".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(REGION_BYTES as u64)?;
        Self::map(file)
    }

    /// Maps an inherited region whole (a shard of an older supervisor, whose region has no pages).
    ///
    /// # Safety
    /// `fd` must be the heartbeat memfd inherited from the supervisor, owned by nothing else.
    pub unsafe fn attach(fd: RawFd) -> io::Result<Heartbeats> {
        // SAFETY: guaranteed by the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        Self::map(file)
    }

    /// Maps only slot `slot`'s page, writable, and closes the descriptor: the shard then has no way
    /// to write (or read) any other shard's heartbeat or metrics. Falls back to [`Heartbeats::attach`]
    /// when the region has no pages (an older supervisor's).
    ///
    /// # Safety
    /// As [`Heartbeats::attach`].
    pub unsafe fn attach_own(fd: RawFd, slot: usize) -> io::Result<Heartbeats> {
        // SAFETY: guaranteed by the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        if slot >= SLOTS || file.metadata()?.len() < REGION_BYTES as u64 {
            return Self::map(file);
        }
        // SAFETY: the memfd is sized to hold this page (checked above) and only ever accessed
        // through atomics; the offset is a multiple of the page size.
        let map = unsafe { MmapOptions::new().offset((LEGACY_BYTES + slot * PAGE) as u64).len(PAGE).map_mut(&file)? };
        drop(file);
        Ok(Heartbeats { file: None, map, view: View::Own { slot } })
    }

    fn map(file: File) -> io::Result<Heartbeats> {
        let size = file.metadata()?.len();
        if size < HEARTBEAT_BYTES as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "heartbeat region too small"));
        }
        // An older supervisor's region ends after the slots (or after the metrics blocks); this
        // release's carries the pages too.
        let len = [REGION_BYTES, LEGACY_BYTES, HEARTBEAT_BYTES].into_iter().find(|&l| size >= l as u64).unwrap_or(0);
        // SAFETY: the memfd is ours, sized above, and only ever accessed through atomics.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file)? };
        Ok(Heartbeats { file: Some(file), map, view: View::Whole { paged: len == REGION_BYTES } })
    }

    /// The region's fd, for passing to a shard.
    ///
    /// # Panics
    /// In a shard that mapped only its own page (it has no fd left).
    pub fn fd(&self) -> RawFd {
        self.file.as_ref().expect("the supervisor keeps the heartbeat memfd").as_raw_fd()
    }

    /// Whether shards may map their own page only (this release's region).
    pub fn paged(&self) -> bool {
        matches!(self.view, View::Whole { paged: true })
    }

    /// The legacy slot `i` (what a shard of an older release writes).
    fn legacy(&self, i: usize) -> &Slot {
        // SAFETY: the map is page-aligned (so 64-byte aligned), at least SLOTS slots long,
        // zero-initialised (a valid bit pattern for atomics), and lives as long as `self`.
        unsafe { &*(self.map.as_ptr() as *const Slot).add(i) }
    }

    /// Slot `i` in its page (what a shard of this release writes), if the map holds it.
    fn paged_slot(&self, i: usize) -> Option<&Slot> {
        let offset = match self.view {
            View::Whole { paged: true } => LEGACY_BYTES + i * PAGE,
            View::Own { slot } if slot == i => 0,
            _ => return None,
        };
        // SAFETY: the page is within the map (REGION_BYTES long, or this one page), page-aligned,
        // zero-initialised atomics, and lives as long as `self`.
        Some(unsafe { &*(self.map.as_ptr().add(offset) as *const Slot) })
    }

    /// Slot `i`: for a shard, its own; for the supervisor, whichever of the slot's two places the
    /// shard in it writes (the one with the newer beat: its own page for a shard of this release,
    /// the legacy slot for one of an older release; both hold the same until the shard's first
    /// beat).
    ///
    /// # Panics
    /// If `i >= SLOTS`, or, in a shard that mapped its own page only, if `i` is another slot.
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < SLOTS, "heartbeat slot {i} out of range");
        match (self.view, self.paged_slot(i)) {
            (View::Own { .. }, Some(own)) => own,
            (View::Own { slot }, None) => panic!("shard of slot {slot} has no mapping of slot {i}"),
            (View::Whole { .. }, Some(paged)) => {
                let legacy = self.legacy(i);
                let newer = paged.beat_ns.load(Ordering::Relaxed) > legacy.beat_ns.load(Ordering::Relaxed);
                if newer { paged } else { legacy }
            }
            (View::Whole { .. }, None) => self.legacy(i),
        }
    }

    /// Both places of slot `i` (the supervisor resets and frees a slot in both).
    fn both(&self, i: usize) -> impl Iterator<Item = &Slot> {
        std::iter::once(self.legacy(i)).chain(self.paged_slot(i))
    }

    /// Supervisor: readies slot `i` for a shard about to be spawned: beat now (the watchdog's grace
    /// starts here), counters zero, no features, SPAWNED; in both places.
    pub fn prepare(&self, i: usize) {
        assert!(i < SLOTS, "heartbeat slot {i} out of range");
        for s in self.both(i) {
            s.beat();
            s.pid.store(0, Ordering::Relaxed);
            s.requests.store(0, Ordering::Relaxed);
            s.connections.store(0, Ordering::Relaxed);
            s.features.store(0, Ordering::Relaxed);
            s.state.store(state::SPAWNED, Ordering::Release);
        }
    }

    /// Supervisor: records the pid spawned into slot `i`.
    pub fn set_pid(&self, i: usize, pid: u32) {
        for s in self.both(i) {
            s.pid.store(pid, Ordering::Relaxed);
        }
    }

    /// Supervisor: slot `i` is free again (its shard was reaped, or never started).
    pub fn free(&self, i: usize) {
        for s in self.both(i) {
            s.state.store(state::FREE, Ordering::Release);
        }
    }

    /// Slot `i`'s metrics words (in the same place as [`Heartbeats::slot`]), or `None` when the
    /// region (an older supervisor's) has none.
    ///
    /// # Panics
    /// If `i >= SLOTS`, or, in a shard that mapped its own page only, if `i` is another slot.
    pub fn metrics_words(&self, i: usize) -> Option<&[AtomicU64; METRICS_WORDS]> {
        let slot = self.slot(i) as *const Slot as *const u8;
        if std::ptr::eq(slot, self.legacy_ptr(i)) {
            return self.legacy_words(i);
        }
        // SAFETY: `slot` is slot i at the start of its page (see `paged_slot`); the block follows
        // it at a multiple of 8 bytes and ends within the page; zeroed atomics; lives as long as `self`.
        Some(unsafe { &*(slot.add(PAGE_METRICS) as *const [AtomicU64; METRICS_WORDS]) })
    }

    /// Every metrics block of slot `i` (the supervisor clears both when the slot is retired).
    pub fn all_metrics_words(&self, i: usize) -> impl Iterator<Item = &[AtomicU64; METRICS_WORDS]> {
        let paged = self.paged_slot(i).map(|s| {
            // SAFETY: as in `metrics_words`.
            unsafe { &*((s as *const Slot as *const u8).add(PAGE_METRICS) as *const [AtomicU64; METRICS_WORDS]) }
        });
        self.legacy_words(i).into_iter().chain(paged)
    }

    fn legacy_ptr(&self, i: usize) -> *const u8 {
        match self.view {
            View::Whole { .. } => (self.legacy(i) as *const Slot).cast(),
            View::Own { .. } => std::ptr::null(),
        }
    }

    fn legacy_words(&self, i: usize) -> Option<&[AtomicU64; METRICS_WORDS]> {
        assert!(i < SLOTS, "metrics slot {i} out of range");
        if !matches!(self.view, View::Whole { .. }) || self.map.len() < LEGACY_BYTES {
            return None;
        }
        // SAFETY: the map is at least LEGACY_BYTES long (checked above), page-aligned,
        // zero-initialised (valid atomics) and lives as long as `self`; block `i` starts at a
        // multiple of 8 bytes after the slots and ends within the legacy area.
        Some(unsafe { &*(self.map.as_ptr().add(HEARTBEAT_BYTES) as *const [AtomicU64; METRICS_WORDS]).add(i) })
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_cache_lines_and_shared_through_the_fd() {
        assert_eq!(size_of::<Slot>(), 64);
        let hb = Heartbeats::create().unwrap();
        hb.slot(3).beat();
        hb.slot(3).state.store(state::BOOTED, Ordering::Relaxed);
        // A second mapping of the same memfd sees the same memory, as a shard would.
        // SAFETY: dup of a memfd this test owns.
        let dup = unsafe { libc::dup(hb.fd()) };
        // SAFETY: `dup` is a fresh descriptor of the heartbeat memfd, owned by nothing else.
        let other = unsafe { Heartbeats::attach(dup) }.unwrap();
        assert_eq!(other.slot(3).state.load(Ordering::Relaxed), state::BOOTED);
        assert!(other.slot(3).age_ns() < 1_000_000_000);
        assert_eq!(other.slot(4).beat_ns.load(Ordering::Relaxed), 0);
        hb.metrics_words(SLOTS - 1).unwrap()[METRICS_WORDS - 1].store(7, Ordering::Relaxed);
        assert_eq!(other.metrics_words(SLOTS - 1).unwrap()[METRICS_WORDS - 1].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn an_older_supervisors_region_has_no_metrics() {
        let hb = Heartbeats::create().unwrap();
        hb.file.as_ref().unwrap().set_len(HEARTBEAT_BYTES as u64).unwrap();
        // SAFETY: dup of a memfd this test owns.
        let dup = unsafe { libc::dup(hb.fd()) };
        // SAFETY: `dup` is a fresh descriptor of the heartbeat memfd, owned by nothing else.
        let old = unsafe { Heartbeats::attach(dup) }.unwrap();
        assert!(old.metrics_words(0).is_none());
        old.slot(0).beat();
        // A shard of this release under that supervisor maps it whole, as before.
        // SAFETY: as above.
        let shard = unsafe { Heartbeats::attach_own(libc::dup(hb.fd()), 0) }.unwrap();
        assert!(!shard.paged() && shard.slot(0).age_ns() < 1_000_000_000);
    }

    #[test]
    fn a_shard_maps_only_its_own_page_and_the_supervisor_reads_it() {
        let hb = Heartbeats::create().unwrap();
        hb.prepare(5);
        // SAFETY: dup of a memfd this test owns.
        let dup = unsafe { libc::dup(hb.fd()) };
        // SAFETY: `dup` is a fresh descriptor of the heartbeat memfd, owned by nothing else.
        let shard = unsafe { Heartbeats::attach_own(dup, 5) }.unwrap();
        // SAFETY: F_GETFD only reads flags; the descriptor was closed after mapping.
        assert!(unsafe { libc::fcntl(dup, libc::F_GETFD) } < 0, "the shard keeps no descriptor");
        std::thread::sleep(std::time::Duration::from_millis(2));
        shard.slot(5).beat();
        shard.slot(5).state.store(state::BOOTED, Ordering::Release);
        shard.metrics_words(5).unwrap()[3].store(9, Ordering::Relaxed);
        assert_eq!(hb.slot(5).state.load(Ordering::Acquire), state::BOOTED);
        assert_eq!(hb.metrics_words(5).unwrap()[3].load(Ordering::Relaxed), 9);
        assert_eq!(shard.map.len(), PAGE, "one page mapped, nothing else");
        let other = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.slot(4).beat()));
        assert!(other.is_err(), "another shard's slot is not reachable");
        // A shard of the previous release writes the legacy slot: the supervisor follows it there.
        // SAFETY: as above.
        let old = unsafe { Heartbeats::attach(libc::dup(hb.fd())) }.unwrap();
        hb.prepare(6);
        std::thread::sleep(std::time::Duration::from_millis(2));
        old.legacy(6).beat();
        old.legacy(6).state.store(state::BOOTED, Ordering::Release);
        old.legacy_words(6).unwrap()[3].store(4, Ordering::Relaxed);
        assert_eq!(hb.slot(6).state.load(Ordering::Acquire), state::BOOTED);
        assert_eq!(hb.metrics_words(6).unwrap()[3].load(Ordering::Relaxed), 4);
        hb.free(5);
        assert_eq!(hb.slot(5).state.load(Ordering::Acquire), state::FREE);
        assert_eq!(hb.all_metrics_words(5).count(), 2);
    }
}
