//! hitcore: a thread-per-core HTTP hit counter on io_uring, backed by Redis.
//!
//! `GET /` increments a Redis counter and answers with its new value. A supervisor process binds one
//! SO_REUSEPORT listener per shard and runs one shard process per CPU; each shard is a single
//! glommio executor pinned to its CPU with its own listener and its own pipelined Redis connection,
//! and shares nothing with the others but its heartbeat slot. See `docs/architecture.md`.
//!
//! # Layout
//! - [`cli`]: flags (clap) and their validation into a [`config::Config`].
//! - [`config`]: the validated configuration, shared by the supervisor and (serialised) the shards.
//! - [`supervisor`]: the arbiter: listeners, shard processes, watchdog, signals, pid file.
//! - [`listener`]: SO_REUSEPORT listening sockets, identical options on all.
//! - [`heartbeat`]: the shared-memory heartbeat slots, the only cross-process state.
//! - [`shard`]: one shard process: executor, accept loop, housekeeping tick, stopping.
//! - [`http`]: request parsing, responses, the per-connection loop, the access log.
//! - [`redis`]: Redis URLs (single node, Sentinel, Cluster), RESP, the coalescing queue, the connect
//!   path (discovery, TLS, ROLE), the pipelined connection task, Sentinel and Cluster routing.
//! - [`logging`]: gunicorn-format error log, reopenable sinks, escaping of client bytes.

#![warn(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod listener;
pub mod logging;
pub mod redis;
pub mod shard;
pub mod supervisor;
