//! The supervisor, hitcore's arbiter: it binds, spawns one process per shard, watches them, and
//! answers signals the way gunicorn's arbiter does.
//!
//! This file only wires the parts together: [`startup`] (pid file, binding, the heartbeat region,
//! signal forwarding), [`arbiter`] (the event loop; it holds the shard table and the one lifecycle
//! phase), [`lifecycle`] (the phases, what each holds, and what each signal does in each), [`events`]
//! (what reaches the loop), [`table`] (one shard process as the supervisor sees it), [`procs`]
//! (spawning one), [`reap`] (WORKER TIMEOUT and exits: restart, report, halt, give up a take-over),
//! [`owners`] (who holds each listener, by socket identity), [`reload`] (HUP, TTIN, TTOU), [`rebind`]
//! (the binds a HUP adds or removes), [`upgrade`] (USR2, the old supervisor's side), [`handover`]
//! (the new supervisor's side), [`output`] (each shard's stderr, relayed and quoted when it fails to
//! boot), [`notify`] (systemd), [`limits`] (the open-files limit shards inherit) and [`policy`] (the
//! decisions, as plain functions). Imports point one way: the files that act on the arbiter import
//! it; it imports only the data files (events, lifecycle, table, handover, owners, pidfile, notify).
//! It never touches request bytes
//! or Redis, and runs no glommio executor. One thread owns all state: signals and the watchdog
//! reach it as [`Event`]s on one channel.

mod arbiter;
mod events;
mod handover;
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
mod table;
mod upgrade;
pub mod watchdog;

use tracing::{error, info};

pub use self::events::Event;
use crate::cli::Invocation;
use crate::config::Config;
use crate::process::set_process_name;

/// Runs the server: binds, spawns the shards, supervises them until told to stop. Returns the exit
/// status: 0 after a requested stop, 1 when start-up fails, 3 when a shard fails to boot.
///
/// With `invocation`, HUP loads the configuration again from the same command line, the environment
/// and the `-c` file, and the new shards get what changed ([`Config::for_reload`]); a configuration
/// that no longer loads is refused and the shards keep serving.
pub fn run(config: Config, invocation: Option<Invocation>) -> i32 {
    set_process_name("hitcore-master");
    info!("Starting hitcore {}", env!("CARGO_PKG_VERSION"));
    let mut handover = match handover::Handover::from_env() {
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
