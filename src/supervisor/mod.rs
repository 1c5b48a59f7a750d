//! The supervisor, hitcore's arbiter: it binds, spawns one process per shard, watches them, and
//! answers signals the way gunicorn's arbiter does.
//!
//! This file only wires the parts together: [`startup`] (pid file, binding, the heartbeat region,
//! signal forwarding), [`procs`] (one shard process: its lifecycle and spawning it), [`reap`] (WORKER TIMEOUT and
//! exits: restart, report, halt, give up a take-over), [`arbiter`]
//! (the event loop and the one lifecycle phase: reaping, respawning with backoff, WORKER TIMEOUT,
//! stopping), [`lifecycle`] (what each signal does in each phase), [`owners`] (who holds each
//! listener, by socket identity), [`reload`] (HUP,
//! TTIN, TTOU), [`rebind`] (the binds a HUP adds or removes), [`upgrade`] (USR2), [`output`] (each shard's stderr, relayed and quoted when it fails to boot), [`notify`] (systemd), [`limits`] (the open-files limit shards inherit) and [`policy`] (the decisions, as plain functions). It never touches request bytes
//! or Redis, and runs no glommio executor. One thread owns all state: signals and the watchdog
//! reach it as [`Event`]s on one channel.

mod arbiter;
mod lifecycle;
mod limits;
mod notify;
mod output;
mod owners;
pub mod pidfile;
mod policy;
mod procs;
mod reap;
mod rebind;
mod reload;
mod startup;
mod upgrade;
pub mod watchdog;

use std::time::Duration;

use tracing::{error, info};

use crate::cli::Invocation;
use crate::config::Config;
use crate::process::set_process_name;

/// What wakes the arbiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived (SIGCHLD included).
    Signal(i32),
    /// The watchdog found this slot's heartbeat older than `--timeout`.
    Stale {
        /// The heartbeat slot.
        slot: usize,
        /// The pid the slot belonged to when it was read.
        pid: i32,
        /// How old the heartbeat was.
        age: Duration,
    },
    /// USR2: the new supervisor reported (or closed its report pipe).
    Upgrade(upgrade::UpgradeNews),
}

/// Runs the server: binds, spawns the shards, supervises them until told to stop. Returns the exit
/// status: 0 after a requested stop, 1 when start-up fails, 3 when a shard fails to boot.
///
/// With `invocation`, HUP loads the configuration again from the same command line, the environment
/// and the `-c` file, and the new shards get what changed ([`Config::for_reload`]); a configuration
/// that no longer loads is refused and the shards keep serving.
pub fn run(config: Config, invocation: Option<Invocation>) -> i32 {
    set_process_name("hitcore-master");
    info!("Starting hitcore {}", env!("CARGO_PKG_VERSION"));
    let mut handover = match upgrade::Handover::from_env() {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            error!("{e}");
            return 1;
        }
    };
    let started = match startup::start(config, handover.as_mut()) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            if let Some(h) = handover {
                h.report(&format!("FAILED {e}"));
            }
            return 1;
        }
    };
    let notify = notify::Notifier::from_env(handover.as_ref().map(|h| h.parent));
    // Threads that feed the arbiter start here, each with its own sender of `started.events`.
    if !started.config.timeout.is_zero() {
        let (heartbeats, events) = (started.heartbeats.clone(), started.events.clone());
        watchdog::start(heartbeats, started.config.timeout, started.check_period, events);
    }
    let mut arbiter = arbiter::Arbiter::new(arbiter::Parts {
        config: started.config,
        exe: started.exe,
        heartbeats: started.heartbeats,
        collector: started.collector,
        check_period: started.check_period,
        notify,
        events: started.events,
        handover,
        shared: started.shared,
        invocation,
        pidfile: started.pidfile,
    });
    arbiter.spawn_first(started.listeners);
    let code = arbiter.supervise(started.inbox);
    arbiter.shared.remove_paths();
    // The pid file goes (or, after a USR2 that never completed, goes back to the old pid) once
    // every shard has exited.
    drop(arbiter);
    code
}
