//! Redis for one shard: URLs (`url`; `topology` for the Sentinel and Cluster forms), RESP
//! encoding and decoding (`resp`), the coalescing arithmetic (`queue`), the way to a ready session
//! (`connect`, over `stream`, with `tls`), and the pipelined connection task (`client`); the pure
//! facts of Sentinel (`sentinel`) and Cluster (`slots`) routing. Nothing here knows about HTTP.

pub mod client;
pub mod cluster_discovery;
pub mod connect;
pub mod follow;
pub mod queue;
pub mod resp;
pub mod sentinel;
pub mod sentinel_discovery;
pub mod slots;
pub mod stream;
pub mod tls;
pub mod topology;
pub mod url;
