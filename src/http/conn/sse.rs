//! A connection that has answered `GET /stream/...` (the counting API's Server-Sent Events): from
//! then on it writes one event per new value of its counter until the client leaves, the shard
//! drains, or a write cannot go out within `--write-timeout`.
//!
//! It owns that loop only: the subscription comes from the API's first answer (`crate::api`), the
//! event's bytes from `api::reply::event`, the socket calls from `io`, over plain TCP or TLS alike
//! (`transport`); its quiet-time read deadline lives in the connection's registry entry, which the
//! shard's tick checks. Input the client still sends is read and dropped, so that a closed
//! connection is noticed.

use std::time::{Duration, Instant};

use futures_lite::future;
use tracing::debug;

use super::io::{read_some, write_within};
use super::registry::Entry;
use super::transport::Transport;
use crate::http::context::Context;
use crate::metrics::shm::Meter;
use crate::redis::subscribe::Subscription;

/// How often a quiet stream looks at the shard's draining flag.
const CHECK: Duration = Duration::from_secs(5);
/// A comment line this often keeps proxies from closing a quiet stream as idle.
const KEEP_ALIVE_EVERY: u32 = 3;

/// Counts the stream client for as long as it is connected, whichever way the loop ends.
struct Connected(Meter);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.api_stream_client(false);
    }
}

enum Woken {
    Value(Vec<u8>),
    Read(std::io::Result<usize>),
}

/// Streams `subscription`'s values to the client until one side is done.
pub(super) async fn serve<S: Transport>(ctx: &Context, stream: &mut S, entry: &Entry, subscription: Subscription) {
    ctx.observing.meter.api_stream_client(true);
    let _connected = Connected(ctx.observing.meter);
    let mut quiet = 0u32;
    let mut input = Vec::new();
    loop {
        if ctx.draining.get() {
            return;
        }
        let woken = future::or(async { Woken::Value(subscription.next().await) }, async {
            Woken::Read(read_some(ctx, stream, entry, Instant::now() + CHECK, &mut input).await)
        })
        .await;
        // A read that lost the race to a value left its deadline set.
        entry.clear_deadline();
        input.clear();
        let bytes = match woken {
            Woken::Value(v) => match std::str::from_utf8(&v).ok().and_then(|t| t.parse::<i64>().ok()) {
                Some(value) => {
                    quiet = 0;
                    crate::api::reply::event(value).into_bytes()
                }
                None => continue,
            },
            Woken::Read(Ok(0)) => return,
            Woken::Read(Ok(_)) => continue,
            Woken::Read(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                quiet += 1;
                if quiet % KEEP_ALIVE_EVERY != 0 {
                    continue;
                }
                b": keep-alive\n\n".to_vec()
            }
            Woken::Read(Err(e)) => {
                debug!("stream client's connection ended: {e}");
                return;
            }
        };
        if let Err(e) = write_within(stream, &bytes, ctx.settings.write_timeout).await {
            debug!("stream client's connection ended while writing: {e}");
            return;
        }
    }
}
