//! HTTP/1.x for one shard: parsing (`parse`), answers (`response`), the per-connection loop
//! (`conn`), the access log (`access`) and its format (`logformat`), whose client address comes
//! from `X-Forwarded-For` (`forwarded`) or a PROXY protocol header (`proxy`). Nothing here knows
//! about processes or the supervisor.

pub mod access;
pub mod conn;
pub mod forwarded;
pub mod logformat;
pub mod parse;
pub mod proxy;
pub mod response;
