//! The open-files limit a shard needs: one descriptor per connection it may hold
//! (`--worker-connections`), plus its listeners, Redis connection, logs and io_uring. Shards inherit
//! the supervisor's limits, so the supervisor raises its soft `RLIMIT_NOFILE` to fit (never above
//! the hard limit, which only root or the service manager may raise) at start and on every HUP that
//! loads a larger `--worker-connections`, and warns once when it cannot. It must not touch any
//! other limit: `RLIMIT_MEMLOCK` is glommio's to check, and a shard reports it (docs/supervisor.md).

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::warn;

/// Descriptors a shard holds besides its connections: listeners, Redis, logs, the heartbeat memfd,
/// io_uring rings and eventfds, with room for binds added on HUP.
pub const SHARD_OVERHEAD: u64 = 64;

/// What the soft limit should become for `worker_connections` per shard, given the current soft
/// and hard limits: unchanged when it fits already, else as much as the hard limit allows.
/// The second value is true when even that falls short.
pub fn wanted(soft: u64, hard: u64, worker_connections: usize) -> (u64, bool) {
    let need = (worker_connections as u64).saturating_add(SHARD_OVERHEAD);
    if soft >= need {
        return (soft, false);
    }
    let raised = need.min(hard);
    (raised.max(soft), raised < need)
}

/// Raises this process's soft open-files limit for `worker_connections` per shard (its shards,
/// spawned afterwards, inherit it), and logs a WARNING naming the flag and the limit when the hard
/// limit is too low.
pub fn fit_open_files(worker_connections: usize) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            warn!("cannot read the open-files limit (RLIMIT_NOFILE): {e}");
            return;
        }
    };
    let (new_soft, short) = wanted(soft, hard, worker_connections);
    if new_soft != soft {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, new_soft, hard) {
            warn!("cannot raise the open-files limit from {soft} to {new_soft}: {e}");
            return;
        }
    }
    if short {
        warn!(
            "the open-files limit ({new_soft}, hard limit {hard}) is below --worker-connections ({worker_connections}) \
             + {SHARD_OVERHEAD}: a shard cannot accept beyond it (EMFILE) and new connections wait in the \
             kernel's queue; raise it (ulimit -Hn, LimitNOFILE=) or lower --worker-connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_fits_is_left_alone() {
        assert_eq!(wanted(20_000, 20_000, 10_000), (20_000, false));
        assert_eq!(wanted(1_048_576, 1_048_576, 10_000), (1_048_576, false));
    }

    #[test]
    fn a_low_soft_limit_is_raised_to_what_is_needed_within_the_hard_one() {
        assert_eq!(wanted(1024, 1_048_576, 10_000), (10_064, false));
        assert_eq!(wanted(1024, 4096, 10_000), (4096, true), "only up to the hard limit, and short");
        assert_eq!(wanted(1024, 1024, 10_000), (1024, true));
        assert_eq!(wanted(1024, 1_048_576, 100), (1024, false), "1024 fits 100 connections");
    }

    #[test]
    fn it_never_lowers_a_limit_or_overflows() {
        assert_eq!(wanted(u64::MAX, u64::MAX, usize::MAX), (u64::MAX, false));
        assert_eq!(wanted(5000, 4096, 10_000), (5000, true));
    }
}
