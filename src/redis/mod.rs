//! Redis for one shard, configured by the URL forms that `config::redis_url` and
//! `config::redis_topology` own (plain data; config imports nothing of this folder): RESP
//! encoding and decoding (`resp`), the table of error replies (`errors`), the coalescing arithmetic and the tickets it completes
//! (`queue`; the counting API's per-key coalescing in `keyed`, its `/stream` subscriber in
//! `subscribe`), dialing a node (`dial`, over `stream`, with `tls`: a leaf every other part uses),
//! the way to a ready session (`connect`), the pipelined connection task (`client`) with its
//! sessions (`session`) and reconnect state machine (`reconnect`), what a topology makes a session
//! follow (`follow`), and Sentinel's and Cluster's own parts (`sentinel/`, `cluster/`). Nothing
//! here knows about HTTP.
//!
//! Imports point one way: `dial` ← `sentinel`, `cluster` ← `connect`, `follow` ← `session` ←
//! `client`, with `shared` (settings and shared state) beneath the last two, and
//! `queue` imports only `resp` and `cluster::ask`'s plain [`cluster::ask::Asked`].

pub mod client;
pub mod cluster;
pub mod connect;
pub mod dial;
pub mod errors;
pub mod follow;
pub mod keyed;
pub mod queue;
pub mod reconnect;
pub mod resp;
pub mod sentinel;
mod session;
mod shared;
pub mod stream;
pub mod subscribe;
pub mod tls;

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
