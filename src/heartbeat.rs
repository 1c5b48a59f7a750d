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
/// The whole region this release creates.
const REGION_BYTES: usize = HEARTBEAT_BYTES + SLOTS * METRICS_WORDS * size_of::<AtomicU64>();

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

/// The mapped region.
#[derive(Debug)]
pub struct Heartbeats {
    file: File,
    map: MmapMut,
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

    /// Maps an inherited region (shard).
    ///
    /// # Safety
    /// `fd` must be the heartbeat memfd inherited from the supervisor, owned by nothing else.
    pub unsafe fn attach(fd: RawFd) -> io::Result<Heartbeats> {
        // SAFETY: guaranteed by the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        Self::map(file)
    }

    fn map(file: File) -> io::Result<Heartbeats> {
        let size = file.metadata()?.len();
        if size < HEARTBEAT_BYTES as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "heartbeat region too small"));
        }
        // An older supervisor's region ends after the slots; this release's carries metrics too.
        let len = if size >= REGION_BYTES as u64 { REGION_BYTES } else { HEARTBEAT_BYTES };
        // SAFETY: the memfd is ours, sized above, and only ever accessed through atomics.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file)? };
        Ok(Heartbeats { file, map })
    }

    /// The region's fd, for passing to a shard.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Slot `i`.
    ///
    /// # Panics
    /// If `i >= SLOTS`.
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < SLOTS, "heartbeat slot {i} out of range");
        // SAFETY: the map is page-aligned (so 64-byte aligned), SLOTS slots long, zero-initialised
        // (a valid bit pattern for atomics), and lives as long as `self`.
        unsafe { &*(self.map.as_ptr() as *const Slot).add(i) }
    }

    /// Slot `i`'s metrics words, or `None` when the region (an older supervisor's) has none.
    ///
    /// # Panics
    /// If `i >= SLOTS`.
    pub fn metrics_words(&self, i: usize) -> Option<&[AtomicU64; METRICS_WORDS]> {
        assert!(i < SLOTS, "metrics slot {i} out of range");
        if self.map.len() < REGION_BYTES {
            return None;
        }
        // SAFETY: the map is REGION_BYTES long (checked above), page-aligned, zero-initialised
        // (valid atomics) and lives as long as `self`; block `i` starts at a multiple of 8 bytes
        // after the slots and ends within the map.
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
        hb.file.set_len(HEARTBEAT_BYTES as u64).unwrap();
        // SAFETY: dup of a memfd this test owns.
        let dup = unsafe { libc::dup(hb.fd()) };
        // SAFETY: `dup` is a fresh descriptor of the heartbeat memfd, owned by nothing else.
        let old = unsafe { Heartbeats::attach(dup) }.unwrap();
        assert!(old.metrics_words(0).is_none());
        old.slot(0).beat();
    }
}
