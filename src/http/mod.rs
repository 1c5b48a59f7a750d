//! HTTP/1.x for one shard: parsing (`parse`), answers (`response`) and their statuses (`status`),
//! the per-connection loop (`conn`) and what it may use of its shard (`context`), the access log
//! (`access`) and its format (`logformat`), whose client address comes from `X-Forwarded-For`
//! (`forwarded`) or a PROXY protocol header (`proxy`), and the health check (`health`). Nothing here
//! knows about processes or the supervisor.

pub mod access;
pub mod conn;
pub mod context;
pub mod forwarded;
pub mod health;
pub mod logformat;
pub mod parse;
pub mod proxy;
pub mod response;
pub mod status;
