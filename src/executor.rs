//! A shard's glommio executor, built from its configuration: how large its io_uring rings and
//! its receive buffer ring are, from its connection limit (`--worker-connections`), and the two
//! tuning variables (`HITCORE_SPIN_US`, `HITCORE_PREEMPT_US`). It must not know what a
//! connection does; the shard runs its tasks on what this builds.
//!
//! Why the sizes (measured, docs/performance.md, *10,000 connections*): each keep-alive
//! connection reads through one multishot receive that takes a buffer from the shard's ring per
//! arrival and holds it until its task copies the bytes out. With 5,000 busy connections a
//! shard, glommio's default 256 buffers ran out within a loop turn (`ENOBUFS`), and its completion
//! queue (twice the ring depth of 128) filled, which also ends multishot receives: 0.63-0.79
//! `recvfrom` per request (each receive that ended costs a `recv` and a new receive), against
//! none at 500 connections. Buffers and completion slots for half the connection limit took that
//! to 0. A kernel that counts ring memory against `RLIMIT_MEMLOCK` (before 5.12) may refuse the
//! deeper rings: the shard then says so and builds glommio's default depth instead.

use std::time::Duration;

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use tracing::warn;

/// glommio's own ring depth, the fallback.
const DEFAULT_RING_DEPTH: usize = 128;
/// glommio's registered I/O memory, used only for its file I/O, which hitcore does not do. Its
/// default (10 MiB, pinned in every ring) made up most of a shard's resident memory; the minimum
/// leaves a shard at 4 MiB (measured: 14.3 MiB RSS at start before, see docs/performance.md).
const IO_MEMORY: usize = 64 * 1024;

/// The fewest buffers and the least ring depth: glommio's own defaults' order of size.
const MIN_BUFFERS: usize = 256;
/// The most buffers: 4,096 x 2 KiB = 8 MiB a shard at most (touched as the kernel fills them).
const MAX_BUFFERS: usize = 4096;
/// Bytes per receive buffer: a typical request head, browser headers included, fits one; a
/// larger one spans several completions (tests/it/multishot.rs reads a 9 KB head).
pub const BUFFER_SIZE: u32 = 2048;

/// A shard's io_uring sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Submission queue entries of each ring (`LocalExecutorBuilder::ring_depth`); the kernel
    /// gives the completion queue twice as many.
    pub ring_depth: usize,
    /// Buffers in the receive buffer ring (`glommio::net::size_recv_buffer_ring`).
    pub buffers: u16,
}

/// Sizes for a shard that holds at most `worker_connections` connections: buffers for half of
/// them arriving in one loop turn (a power of two, as the kernel requires), between 256 and
/// 4,096, and a ring that many deep, so the completion queue holds twice that.
pub fn for_connections(worker_connections: usize) -> Sizes {
    let n = (worker_connections / 2).next_power_of_two().clamp(MIN_BUFFERS, MAX_BUFFERS);
    Sizes { ring_depth: n, buffers: n as u16 }
}

/// Builds the executor of shard `name` for `worker_connections` on `placement`. `Err` says why
/// glommio could not start one (with the depth glommio itself uses, after a deeper one failed).
pub fn build(name: &str, placement: Placement, worker_connections: usize) -> Result<LocalExecutor, String> {
    let sizes = for_connections(worker_connections);
    glommio::net::size_recv_buffer_ring(sizes.buffers, BUFFER_SIZE);
    let make = |depth: usize| {
        LocalExecutorBuilder::new(placement.clone())
            .name(name)
            .io_memory(IO_MEMORY)
            .ring_depth(depth)
            // Both left at their measured defaults (docs/performance.md: spinning 50 µs before
            // parking made no difference here); the variables let an operator measure on their own
            // hardware without a rebuild.
            .spin_before_park(Duration::from_micros(variable("HITCORE_SPIN_US", 0)))
            .preempt_timer(Duration::from_micros(variable("HITCORE_PREEMPT_US", 100_000)))
            .make()
    };
    #[cfg(feature = "test-hooks")]
    let refused = crate::testhook::refuse_deep_rings() && sizes.ring_depth > DEFAULT_RING_DEPTH;
    #[cfg(not(feature = "test-hooks"))]
    let refused = false;
    let first = if refused {
        Err("refused by HITCORE_TEST_REFUSE_DEEP_RINGS".to_string())
    } else {
        make(sizes.ring_depth).map_err(|e| e.to_string())
    };
    match first {
        Ok(executor) => Ok(executor),
        Err(e) if sizes.ring_depth > DEFAULT_RING_DEPTH => {
            warn!(
                "io_uring rings {} deep were refused ({e}); using {DEFAULT_RING_DEPTH} (more `recv` calls with \
                 thousands of busy connections; a larger `ulimit -l` allows the deeper rings)",
                sizes.ring_depth
            );
            make(DEFAULT_RING_DEPTH).map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    }
}

fn variable(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_connections_rounded_up_to_a_power_of_two_within_bounds() {
        assert_eq!(for_connections(0), Sizes { ring_depth: 256, buffers: 256 });
        assert_eq!(for_connections(500), Sizes { ring_depth: 256, buffers: 256 });
        assert_eq!(for_connections(1000), Sizes { ring_depth: 512, buffers: 512 });
        assert_eq!(for_connections(2000), Sizes { ring_depth: 1024, buffers: 1024 });
        // The default (10,000) and anything above: the cap.
        assert_eq!(for_connections(10_000), Sizes { ring_depth: 4096, buffers: 4096 });
        assert_eq!(for_connections(usize::MAX / 4), Sizes { ring_depth: 4096, buffers: 4096 });
        for wc in [1, 3, 511, 513, 4097, 8191, 65_535] {
            let s = for_connections(wc);
            assert!(s.buffers.is_power_of_two() && (256..=4096).contains(&s.buffers), "{wc}: {s:?}");
            assert!(usize::from(s.buffers) >= (wc / 2).min(4096), "{wc}: {s:?}");
        }
    }
}
