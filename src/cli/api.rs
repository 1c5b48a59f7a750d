//! The counting API's flags (`--api-mode`, `--counter-ttl`, `--cors-origins`,
//! `--admin-token-file`, `--rate-limit`) and their validation into [`crate::api::settings::Settings`].
//!
//! It owns those flags' names, help and checks, and reads the one file they name (the admin token,
//! once, at start and at each HUP). It must not act on requests. A refusal names the flag and never
//! the token.

use std::path::PathBuf;

use super::error::{FlagError, refuse};
use crate::api::settings::{DEFAULT_CORS_ORIGINS, DEFAULT_COUNTER_TTL, Mode, RateLimit, Settings};

/// The counting API's flags (docs/api.md).
#[derive(Debug, clap::Args)]
pub struct ApiFlags {
    /// Which /hit requests count: open (any name; a new one starts at 0) or closed (only counters
    /// made with /create; /hit on another answers 404)
    #[arg(long = "api-mode", value_enum, value_name = "MODE", default_value_t = Mode::default())]
    pub api_mode: Mode,

    /// Seconds a counter lives after its last hit, read or create, less at most SECS/64 or a day
    /// (a shard refreshes a key's TTL once per that interval); 0 keeps counters forever [default:
    /// 15552000, 180 days]
    #[arg(long = "counter-ttl", value_name = "SECS", default_value_t = DEFAULT_COUNTER_TTL, hide_default_value = true)]
    pub counter_ttl: u64,

    /// Origins allowed to call the API from a browser, comma-separated (scheme://host[:port]), or *
    #[arg(long = "cors-origins", value_name = "LIST", default_value = DEFAULT_CORS_ORIGINS)]
    pub cors_origins: String,

    /// File holding a global admin token (one line): it authorises /set, /reset, /update and
    /// /delete on every counter, besides each counter's own admin key [default: none]
    #[arg(long = "admin-token-file", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// At most N API requests per client address every SECS seconds (e.g. 30/3), for the whole
    /// host: counted in Redis. More get 429 with Retry-After [default: no limit]
    #[arg(long = "rate-limit", value_name = "N/SECS")]
    pub rate_limit: Option<String>,

    /// Serve GET /stream/NAMESPACE/KEY (Server-Sent Events: each new value of the counter, from any
    /// shard or host); every hit then also publishes its value (one PUBLISH per key per batch)
    #[arg(long = "api-stream")]
    pub api_stream: bool,
}

/// The shortest global admin token accepted: a short one could be guessed.
pub const MIN_TOKEN: usize = 16;

impl ApiFlags {
    /// Validates the flags and reads the token file.
    pub fn into_settings(self, forwarded_allow_ips: &str) -> Result<Settings, FlagError> {
        let rate_limit =
            self.rate_limit.as_deref().map(RateLimit::parse).transpose().map_err(|m| refuse("--rate-limit", m))?;
        let cors_origins: Vec<String> =
            self.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
        if cors_origins.is_empty() {
            return Err(refuse("--cors-origins", "give * or at least one origin"));
        }
        for origin in &cors_origins {
            let scheme = origin.starts_with("http://") || origin.starts_with("https://");
            if origin != "*" && (!scheme || origin.ends_with('/') || origin.contains(char::is_whitespace)) {
                return Err(refuse(
                    "--cors-origins",
                    format!("'{origin}' is not an origin such as https://example.com (scheme://host[:port], no path)"),
                ));
            }
        }
        let admin_token = match &self.admin_token_file {
            None => None,
            Some(path) => {
                const FLAG: &str = "--admin-token-file";
                let text = std::fs::read_to_string(path)
                    .map_err(|e| refuse(FLAG, format!("cannot read {}: {e}", path.display())))?;
                let token = text.strip_suffix('\n').unwrap_or(&text);
                let token = token.strip_suffix('\r').unwrap_or(token);
                if token.contains('\n') {
                    return Err(refuse(FLAG, format!("{} has more than one line", path.display())));
                }
                if token.len() < MIN_TOKEN || token.contains(char::is_whitespace) {
                    return Err(refuse(
                        FLAG,
                        format!(
                            "the token in {} must be at least {MIN_TOKEN} characters, without spaces",
                            path.display()
                        ),
                    ));
                }
                Some(token.to_string())
            }
        };
        Ok(Settings {
            mode: self.api_mode,
            counter_ttl: self.counter_ttl,
            cors_origins,
            admin_token,
            stream: self.api_stream,
            rate_limit,
            forwarded_allow_ips: forwarded_allow_ips.to_string(),
        })
    }
}
