//! Redis for one shard: URLs (`url`; `topology` for the Sentinel and Cluster forms), RESP
//! encoding and decoding (`resp`), the coalescing arithmetic (`queue`; the counting API's per-key
//! coalescing in `keyed`, the `/stream` subscriber in `subscribe`), the way to a ready session
//! (`connect`, over `stream`, with `tls`), and the pipelined connection task (`client`); the pure
//! facts of Sentinel (`sentinel`) and Cluster (`slots`) routing. Nothing here knows about HTTP.

pub mod client;
pub mod cluster_discovery;
pub mod connect;
pub mod follow;
pub mod keyed;
pub mod queue;
pub mod resp;
pub mod sentinel;
pub mod sentinel_discovery;
pub mod slots;
pub mod stream;
pub mod subscribe;
pub mod tls;
pub mod topology;
pub mod url;

use tracing::warn;

use crate::config::Config;

/// The Redis settings worth a WARNING when the supervisor starts (once, not per shard).
pub fn warn_at_start(config: &Config) {
    if config.redis.tls() && config.redis_tls.insecure {
        warn!(
            "--redis-tls-insecure: the Redis server's certificate is not verified; anyone on the path to {} can \
             impersonate it and read the password",
            config.redis
        );
    }
}
