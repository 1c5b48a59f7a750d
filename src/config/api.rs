//! The counting API's settings: plain data, validated by `cli` and handed to every shard inside the
//! [`crate::config::Config`] (`crate::api::settings` is this module).
//!
//! It owns the values and their defaults only; it must not read files or parse flags (`cli::api`
//! does) nor act on a request (the rest of `api` does). Every field has a serde default so that a
//! hand-off from a release without the API reads as the defaults (src/handoff.rs).

use serde::{Deserialize, Serialize};

/// `--counter-ttl`'s default: 180 days, about Abacus's six months. A counter nobody hits or reads
/// for that long expires, so that a public instance does not keep every name ever tried.
pub const DEFAULT_COUNTER_TTL: u64 = 180 * 24 * 3600;

/// `--cors-origins`' default: any origin.
pub const DEFAULT_CORS_ORIGINS: &str = "*";

/// Which `/hit`s count (`--api-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Any name counts: a hit on a counter that does not exist creates it at 0 first (Abacus).
    #[default]
    Open,
    /// Only counters that exist (made with `/create`) count; a hit on another answers 404.
    Closed,
}

/// `--rate-limit N/SECS`: at most `requests` API requests per client address in each window of
/// `window` seconds, counted in Redis so the limit holds for every shard and host sharing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u64,
    /// The window, in seconds.
    pub window: u64,
}

impl RateLimit {
    /// Parses `N/SECS` (`30/3`).
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let bad = || format!("'{text}' is not N/SECS, such as 30/3 (30 requests per 3 seconds)");
        let (n, secs) = text.split_once('/').ok_or_else(bad)?;
        let requests: u64 = n.trim().parse().map_err(|_| bad())?;
        let window: u64 = secs.trim().parse().map_err(|_| bad())?;
        if requests == 0 || window == 0 {
            return Err(format!("'{text}': both N and SECS must be at least 1"));
        }
        Ok(RateLimit { requests, window })
    }
}

/// The counting API's settings. Its `Debug` masks the admin token, as `RedisTarget`'s masks the
/// password: a `{:?}` of a configuration must not leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `--api-mode` (default open).
    pub mode: Mode,
    /// `--counter-ttl` in seconds: every hit, read and create keeps the counter for this long after
    /// it, less at most the refresh interval (`counter_ttl / 64`, at most a day: a shard refreshes
    /// a key's TTL once per interval, `crate::redis::keyed`); 0 keeps counters forever. Default
    /// [`DEFAULT_COUNTER_TTL`].
    pub counter_ttl: u64,
    /// `--cors-origins`: the origins allowed to call the API from a browser; `*` (the default)
    /// allows any.
    pub cors_origins: Vec<String>,
    /// The global admin token from `--admin-token-file`, if any: it authorises the admin routes on
    /// every counter, besides each counter's own admin key.
    pub admin_token: Option<String>,
    /// `--api-stream`: serve `/stream` and publish every hit's value for it (default off: one
    /// `PUBLISH` per key per batch is not free, see docs/api.md).
    pub stream: bool,
    /// `--rate-limit` (default none: no limit).
    pub rate_limit: Option<RateLimit>,
    /// `--forwarded-allow-ips`, copied here: whose `X-Forwarded-For` names the client that the
    /// rate limit counts (the PROXY protocol's source comes first, as in the access log).
    pub forwarded_allow_ips: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Open,
            counter_ttl: DEFAULT_COUNTER_TTL,
            cors_origins: vec![DEFAULT_CORS_ORIGINS.into()],
            admin_token: None,
            stream: false,
            rate_limit: None,
            forwarded_allow_ips: super::defaults::DEFAULT_TRUSTED_PEERS.into(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("counter_ttl", &self.counter_ttl)
            .field("cors_origins", &self.cors_origins)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("stream", &self.stream)
            .field("rate_limit", &self.rate_limit)
            .field("forwarded_allow_ips", &self.forwarded_allow_ips)
            .finish()
    }
}

impl Settings {
    /// The TTL to set, if any.
    pub fn ttl(&self) -> Option<u64> {
        (self.counter_ttl > 0).then_some(self.counter_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_as_n_per_secs() {
        assert_eq!(RateLimit::parse("30/3"), Ok(RateLimit { requests: 30, window: 3 }));
        for bad in ["30", "0/3", "3/0", "x/3", "3/-1", ""] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_admin_token() {
        let s = Settings { admin_token: Some("sekrit-token-0123456789".into()), ..Settings::default() };
        let shown = format!("{s:?}");
        assert!(!shown.contains("sekrit") && shown.contains("admin_token: Some(\"***\")"), "{shown}");
    }

    #[test]
    fn a_hand_off_without_the_api_reads_as_the_defaults() {
        let old: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(old, Settings::default());
        let partial: Settings = serde_json::from_str(r#"{"mode":"closed","counter_ttl":5}"#).unwrap();
        assert_eq!((partial.mode, partial.counter_ttl, partial.rate_limit), (Mode::Closed, 5, None));
    }
}
