//! Redis for one shard: URLs (`url`), RESP encoding and decoding (`resp`), and the pipelined,
//! coalescing connection (`client`). Nothing here knows about HTTP.

pub mod client;
pub mod resp;
pub mod url;
