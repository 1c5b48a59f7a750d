//! Redis Sentinel (`redis+sentinel://`): the pure protocol facts (`events`), asking the sentinels
//! for the primary at every connect (`discovery`), and the failover subscriptions (`watch`).
//!
//! Nothing here knows about the data connection's queue or session; the session only races
//! [`watch::Switch`], and `connect` only calls [`discovery::SentinelDiscovery`].

pub mod discovery;
pub mod events;
pub mod watch;
