//! Metrics: shards count into shared memory, the supervisor adds them up and serves Prometheus text.
//!
//! - [`shm`]: the layout of a slot's metrics words and the shard's writer ([`shm::Meter`]): relaxed
//!   loads and stores, one writer per slot, nothing else on the hot path.
//! - [`collect`]: the supervisor's reader, which folds a finished shard's counters into totals so
//!   that counters stay monotonic when a slot is reused.
//! - [`encode`]: the Prometheus text format.
//! - [`server`]: `--metrics-bind`, a blocking listener thread in the supervisor.
//!
//! Nothing here runs on a shard's event loop but [`shm::Meter`]'s stores.

pub mod collect;
pub mod encode;
pub mod server;
pub mod shm;
