//! hitcore: a thread-per-core HTTP hit counter on io_uring, backed by Redis.
//!
//! `GET /` increments a Redis counter and answers with its new value. A supervisor process binds one
//! SO_REUSEPORT listener per shard and runs one shard process per CPU; each shard is a single
//! glommio executor (placed by the kernel on the allowed CPUs, or pinned to one with `--pin`) with its own listener and its own pipelined Redis connection,
//! and shares nothing with the others but its heartbeat slot. See `docs/architecture.md`.
//!
//! # Layout
//! - [`cli`]: flags (clap), `HITCORE_*` variables and the `-c` TOML file, layered and validated into a
//!   [`config::Config`]; `--check-config`; [`cli::Invocation::reload`] for HUP.
//! - [`bind`]: what `-b` names (TCP, `unix:PATH`, `fd://N`, systemd's sockets), as plain data.
//! - [`config`]: the validated configuration, plain data shared by the supervisor and (serialised)
//!   the shards, with the Redis URL forms, the request-head limits and every flag's default
//!   (`config::defaults`, read by clap and serde alike); it imports nothing of
//!   `redis/` or `http/`.
//! - [`handoff`]: the versioned, tolerant supervisor → shard hand-off (a sealed memfd named by
//!   `HITCORE_SHARD`) and USR2's, with the secrets kept out of every child's environment.
//! - [`supervisor`]: the arbiter: listeners, shard processes, watchdog, signals (HUP reloads, USR2
//!   upgrades), pid file, systemd notify, the open-files limit the shards inherit.
//! - [`listener`]: SO_REUSEPORT listening sockets, identical options on all.
//! - [`heartbeat`]: the shared-memory heartbeat slots, the only cross-process state.
//! - [`metrics`]: per-shard counters in the heartbeat region, summed and served by the supervisor.
//! - [`process`]: process helpers the supervisor and shards share (boot-error status, process
//!   name, CPU lists): a leaf.
//! - [`shard`]: one shard process: executor, accept loop, housekeeping tick, stopping.
//! - [`http`]: request parsing (`parse/`: heads, bodies), statuses and responses, the context a
//!   connection is handed by its shard, the per-connection loop and registry (`conn/`), the access log.
//! - [`redis`]: Redis URLs (single node, Sentinel, Cluster), RESP, the coalescing queue and its
//!   tickets (`queue/`), dialing (`dial`, a leaf), the connect path (discovery, TLS, ROLE), the
//!   pipelined connection task with its sessions and reconnect state machine, what a topology
//!   makes a session follow, Sentinel (`sentinel/`) and Cluster (`cluster/`) routing; the
//!   counting API's per-key coalescing (`keyed/`), the ops and answer tickets it trades with the
//!   API (`keyed/op`) and its bounded table of TTL refreshes (`keyed/refresh`).
//! - `testhook` (the `test-hooks` feature, tests only): a shard's boot that crashes or stalls on request, for the
//!   fault-schedule test.
//! - [`https`]: the rustls server configuration built from the HTTPS settings' files (`--certfile`,
//!   `--keyfile`, `--ca-certs`, `--ssl-min-version`; the settings are `config::https`), shared
//!   session tickets; the handshake is in `http/conn/`.
//! - [`api`]: the counting API (CountAPI/Abacus parity): `/hit`, `/get`, `/create`, `/info`, the
//!   admin routes and `/stream` on named counters; routes, names, auth, JSON, its Redis rounds (docs/api.md).
//! - [`logging`]: gunicorn-format error log, reopenable sinks, escaping of client bytes.
//! - [`logjson`]: `--log-format json`: JSON string escaping and the error log's JSON object.
//! - [`uring`]: the start-up check that io_uring is usable here (seccomp, sysctl, kernel, memlock).
//! - [`executor`]: a shard's glommio executor, its io_uring ring depth and receive buffer ring
//!   sized from `--worker-connections`, with glommio's default depth where the kernel refuses.
//! - `vendored` (tests only): runs the unit tests of hitcore's own code in the vendored glommio
//!   that glommio's test target cannot build (patch 10's buffer ring).
//! - `vendored_wakeups` (tests only): a real glommio executor woken from another thread and by
//!   its timers, across the vendored patches 11-13 (no `membarrier`, the sleep's timer kept, no
//!   parking with runnable tasks).
//! - [`badge`]: shields-style SVG badges of a counter's value from Abacus's query parameters, sized
//!   by Verdana 11 px's real advance widths (pure: no I/O; the API routes call it).

#![warn(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod badge;
pub mod bind;
pub mod cli;
pub mod config;
pub mod executor;
pub mod handoff;
pub mod heartbeat;
pub mod http;
pub mod https;
pub mod listener;
pub mod logging;
pub mod logjson;
pub mod metrics;
pub mod process;
pub mod redis;
pub mod shard;
pub mod supervisor;
#[cfg(feature = "test-hooks")]
pub mod testhook;
pub mod uring;
#[cfg(test)]
mod vendored;
#[cfg(test)]
mod vendored_wakeups;
