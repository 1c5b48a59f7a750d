//! Redis for one shard: URLs (`url`; `topology` for the Sentinel and Cluster forms), RESP
//! encoding and decoding (`resp`), the pipelined, coalescing connection (`client`), and the pure
//! facts of Sentinel (`sentinel`) and Cluster (`slots`) routing. Nothing here knows about HTTP.

pub mod client;
pub mod resp;
pub mod sentinel;
pub mod slots;
pub mod topology;
pub mod url;
