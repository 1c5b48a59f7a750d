//! The counting API (CountAPI/Abacus parity): `/hit`, `/get`, `/create`, `/info` and the admin
//! routes `/set`, `/reset`, `/update`, `/delete`, on counters named `{namespace}/{key}` and kept
//! in Redis under Abacus's keys (`K:{namespace}:{key}`, `A:{namespace}:{key}`). See docs/api.md.
//!
//! The connection loop (`crate::http::conn`) hands each request head whose path is the API's to
//! [`route::parse`], registers the batch's calls with [`serve::run`] next to the seed counter's
//! increments, and writes each answer with [`Api::write`]; that is the whole hook. `GET /` never
//! comes here.
//!
//! - [`settings`]: the flags' values (plain data, in the `Config`).
//! - [`names`]: what a name may be, `:HOST:`/`:PATH:`, the Redis keys.
//! - [`route`]: head bytes to a [`route::Call`], bad input answered at once.
//! - [`auth`]: tokens, constant-time comparison, random admin keys and names.
//! - [`serve`]: the Redis rounds of a batch and the answers they give.
//! - [`json`], [`reply`]: the bodies and the bytes on the wire (CORS, JSONP).
//!
//! It must not read sockets or own connections (`http::conn` does) nor encode Redis commands'
//! coalescing (`redis::keyed` does).

pub mod auth;
pub mod json;
pub mod names;
pub mod reply;
pub mod route;
pub mod serve;
/// The counting API's settings, kept with the rest of the plain configuration.
pub use crate::config::api as settings;

use std::net::IpAddr;

use crate::http::forwarded::Trust;
use crate::http::parse::Fields;
use crate::http::response::{HttpDate, Persist};
use reply::{Cors, Dress, Reply};
use route::{Call, Step};

/// What a shard's connections need of the API: its settings and the rules built from them.
#[derive(Debug, Clone)]
pub struct Api {
    /// The settings.
    pub settings: settings::Settings,
    /// `--cors-origins`, ready to apply.
    pub cors: Cors,
    /// `--forwarded-allow-ips`, for the client address the rate limit counts.
    pub trust: Trust,
}

impl Default for Api {
    fn default() -> Self {
        Api::new(settings::Settings::default())
    }
}

impl Api {
    /// The API of a shard configured with `settings`.
    pub fn new(settings: settings::Settings) -> Api {
        let cors = Cors::new(&settings.cors_origins);
        // Validated by `cli`; an unreadable list from a hand-off trusts nobody.
        let trust = Trust::parse(&settings.forwarded_allow_ips).unwrap_or_default();
        Api { settings, cors, trust }
    }

    /// The API's reading of a request head from `peer` (the PROXY protocol's source when there
    /// was one), with its parts where the HTTP parser found them (`fields`), or `None` when its
    /// path is none of the API's.
    pub fn call(&self, head: &[u8], fields: &Fields, peer: Option<IpAddr>) -> Option<Call> {
        let mut call = route::parse(head, fields)?;
        if call.route == route::Route::Stream && !self.settings.stream && matches!(call.step, Step::Request(_)) {
            call.step = Step::Done(Reply::error(404, "Streaming is off: start hitcore with --api-stream"));
        }
        call.client = peer.map(|p| self.trust.client(p, call.forwarded_for.as_deref()));
        Some(call)
    }

    /// Appends `call`'s answer (its step must be `Done`; anything else is a 500). Returns its
    /// status and body length.
    pub fn write(&self, out: &mut Vec<u8>, call: &Call, persist: Persist, date: &HttpDate) -> (u16, usize) {
        let fallback;
        let reply = match &call.step {
            Step::Done(reply) => reply,
            Step::Request(_) => {
                fallback = Reply::error(500, "The request was not run");
                &fallback
            }
        };
        let dress = Dress {
            cors: &self.cors,
            origin: call.origin.as_deref(),
            callback: call.callback.as_deref(),
            head_only: call.head_only,
            badge: call.badge.as_ref(),
        };
        (reply.status, reply::write(out, reply, dress, persist, date))
    }
}
