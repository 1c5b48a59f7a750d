//! Redis for one shard: URLs (`url`), RESP encoding and decoding (`resp`), the coalescing
//! arithmetic (`queue`) and the pipelined, reconnecting connection (`client`). Nothing here knows
//! about HTTP.

pub mod client;
pub mod queue;
pub mod resp;
pub mod url;
