//! The counting API's settings: plain data, validated by `cli` and handed to every shard inside the
//! [`crate::config::Config`].
//!
//! It owns the values and their defaults only; it must not read files or parse flags (`cli::api`
//! does) nor act on a request (the rest of `api` does). Every field has a serde default so that a
//! hand-off from a release without the API reads as the defaults (src/handoff.rs).

use serde::{Deserialize, Serialize};

/// `--counter-ttl`'s default: 180 days, about Abacus's six months. A counter nobody hits or reads
/// for that long expires, so that a public instance does not keep every name ever tried.
pub const DEFAULT_COUNTER_TTL: u64 = 180 * 24 * 3600;

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

/// The counting API's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `--api-mode` (default open).
    pub mode: Mode,
    /// `--counter-ttl` in seconds: every hit, read and create sets the counter to expire this long
    /// after (one `EXPIRE` per key per batch); 0 keeps counters forever. Default
    /// [`DEFAULT_COUNTER_TTL`].
    pub counter_ttl: u64,
    /// `--cors-origins`: the origins allowed to call the API from a browser; `*` (the default)
    /// allows any.
    pub cors_origins: Vec<String>,
    /// The global admin token from `--admin-token-file`, if any: it authorises the admin routes on
    /// every counter, besides each counter's own admin key.
    pub admin_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Open,
            counter_ttl: DEFAULT_COUNTER_TTL,
            cors_origins: vec!["*".into()],
            admin_token: None,
        }
    }
}

impl Settings {
    /// The TTL to set, if any.
    pub fn ttl(&self) -> Option<u64> {
        (self.counter_ttl > 0).then_some(self.counter_ttl)
    }
}
