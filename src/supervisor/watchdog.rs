//! The watchdog thread: reads every shard's heartbeat and reports the stale ones to the arbiter.
//!
//! It owns only the reading. It never signals, ejects or spawns: the arbiter's loop does all of that
//! on its own thread, so the shard table has one owner. Keeping the watchdog on a thread of its own
//! means a busy arbiter (spawning, reaping, logging) never delays the detection, and a stall is seen
//! within one check period of the timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::events::Event;
use crate::heartbeat::{Heartbeats, SLOTS, state};

/// Starts the watchdog. It checks every `period` and sends [`Event::Stale`] for each slot whose
/// heartbeat is older than `timeout`, on every check until the arbiter has dealt with it. It ends
/// when the arbiter goes away.
pub fn start(heartbeats: Arc<Heartbeats>, timeout: Duration, period: Duration, events: Sender<Event>) {
    let limit = timeout.as_nanos() as u64;
    let spawned = std::thread::Builder::new().name("hitcore-watchdog".into()).spawn(move || {
        loop {
            std::thread::sleep(period);
            for i in 0..SLOTS {
                let slot = heartbeats.slot(i);
                if slot.state.load(Ordering::Acquire) == state::FREE {
                    continue;
                }
                let age = slot.age_ns();
                if age > limit {
                    let pid = slot.pid.load(Ordering::Relaxed) as i32;
                    if events.send(Event::Stale { slot: i, pid, age: Duration::from_nanos(age) }).is_err() {
                        return;
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the watchdog thread: {e}; stalled shards will not be replaced");
    }
}
