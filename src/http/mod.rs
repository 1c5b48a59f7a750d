//! HTTP/1.x for one shard: parsing (`parse`), answers (`response`), the per-connection loop
//! (`conn`) and the access log (`access`). Nothing here knows about processes or the supervisor.

pub mod access;
pub mod conn;
pub mod parse;
pub mod response;
