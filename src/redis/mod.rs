//! Redis for one shard: URLs (`url`), RESP encoding and decoding (`resp`), the coalescing
//! arithmetic (`queue`), the way to a ready session (`connect`, over `stream`, with `tls`), and
//! the pipelined connection task (`client`). Nothing here knows about HTTP.

pub mod client;
pub mod connect;
pub mod queue;
pub mod resp;
pub mod stream;
pub mod tls;
pub mod url;
