//! HTTP/1.x for one shard: parsing (`parse`), answers (`response`) and their statuses (`status`), the per-connection loop
//! (`conn`) and the access log (`access`). Nothing here knows about processes or the supervisor.

pub mod access;
pub mod conn;
pub mod context;
pub mod parse;
pub mod response;
pub mod status;
