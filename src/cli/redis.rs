//! The Redis flags, a group flattened into [`super::Cli`] in two parts because `--help` lists them
//! in two places: [`RedisFlags`] (which Redis, its credentials, TLS files and the key) validated
//! into [`RedisPart`], and [`ReplyFlags`] (`--redis-timeout`, `--wait-replicas`,
//! `--wait-timeout`, which bound each batch's reply) validated into [`Replies`].
//!
//! It reads the password and TLS files once, so that a missing one stops a start naming its flag;
//! it must not connect (each shard does, from the configuration).

use std::path::PathBuf;
use std::time::Duration;

use super::error::{FlagError, refuse};
use super::secrets;
use super::values::{seconds, seconds_text};
use crate::config::defaults::{DEFAULT_KEY, DEFAULT_REDIS_TIMEOUT, DEFAULT_WAIT_REPLICAS, DEFAULT_WAIT_TIMEOUT_MS};
use crate::config::redis_url::{DEFAULT_URL, Endpoint, RedisTarget};
use crate::redis::tls::{self, TlsFiles};

/// Which Redis, how to reach it, and the key.
#[derive(Debug, clap::Args)]
pub struct RedisFlags {
    /// Redis URL: redis://[user][:password]@host[:port][/db], rediss://... for TLS,
    /// unix:///path?db=N&password=..., redis+sentinel://[user][:password]@host:port[,host:port...]/SERVICE[/db]
    /// or redis+cluster://[user][:password]@host:port[,host:port...] (rediss+... for TLS). The host is
    /// resolved again at every reconnect (also read from REDIS_URL)
    // A value starting with '-' is the value, not a flag clap would refuse by quoting it.
    #[arg(long, hide_env_values = true, allow_hyphen_values = true, value_name = "URL", default_value = DEFAULT_URL)]
    pub redis: String,

    /// File holding the Redis password (one line), so it stays out of URLs, `ps` and the
    /// environment [default: $CREDENTIALS_DIRECTORY/redis-password when systemd passes it]
    #[arg(long = "redis-password-file", value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// rediss://: trust only the CA certificates in this PEM file [default: the system's roots]
    #[arg(long = "redis-tls-ca", value_name = "FILE")]
    pub redis_tls_ca: Option<PathBuf>,

    /// rediss://: present this client certificate chain (PEM) for mutual TLS; needs --redis-tls-key
    #[arg(long = "redis-tls-cert", value_name = "FILE", requires = "redis_tls_key")]
    pub redis_tls_cert: Option<PathBuf>,

    /// rediss://: the private key (PEM) of --redis-tls-cert
    #[arg(long = "redis-tls-key", value_name = "FILE", requires = "redis_tls_cert")]
    pub redis_tls_key: Option<PathBuf>,

    /// rediss://: accept any server certificate (no verification; a WARNING says so at start)
    #[arg(long = "redis-tls-insecure", conflicts_with = "redis_tls_ca")]
    pub redis_tls_insecure: bool,

    /// The sentinels' own password (their requirepass), for redis+sentinel:// URLs; the URL's
    /// credentials are the data nodes'
    #[arg(
        long = "sentinel-password",
        env = "HITCORE_SENTINEL_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "PASSWORD"
    )]
    pub sentinel_password: Option<String>,

    /// File holding the sentinels' password (one line), so it stays out of `ps` and the
    /// environment [default: $CREDENTIALS_DIRECTORY/sentinel-password when systemd passes it and
    /// the URL is redis+sentinel://]
    #[arg(long = "sentinel-password-file", value_name = "FILE", conflicts_with = "sentinel_password")]
    pub sentinel_password_file: Option<PathBuf>,

    /// The Redis key holding the counter
    #[arg(long, value_name = "NAME", default_value = DEFAULT_KEY)]
    pub key: String,
}

/// The Redis part of [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct RedisPart {
    /// The parsed URL, with the passwords read from their files.
    pub redis: RedisTarget,
    /// The `--redis-tls-*` files.
    pub redis_tls: TlsFiles,
    /// `--key`.
    pub key: String,
}

impl RedisFlags {
    /// Parses the URL, reads the password files, and reads the TLS files once when the URL is
    /// `rediss://` (refusing them when it is not).
    pub fn into_redis(self) -> Result<RedisPart, FlagError> {
        let mut redis = RedisTarget::parse(&self.redis).map_err(|e| refuse("--redis", e.to_string()))?;
        if let Some(password) = secrets::redis_password(self.redis_password_file.as_deref(), redis.password.is_some())?
        {
            redis.password = Some(password);
        }
        let redis_tls = TlsFiles {
            ca: self.redis_tls_ca,
            cert: self.redis_tls_cert,
            key: self.redis_tls_key,
            insecure: self.redis_tls_insecure,
        };
        if redis.tls() {
            // Read now so that a missing or unreadable file stops the start, naming it; every
            // shard reads the files again when it connects.
            tls::client_config(&redis_tls).map_err(|e| refuse(e.flag(), e.to_string()))?;
        } else if redis_tls != TlsFiles::default() {
            let flag = if redis_tls.insecure { "--redis-tls-insecure" } else { "--redis-tls-ca" };
            return Err(refuse(flag, "the --redis-tls-* flags apply to rediss:// URLs only"));
        }
        let sentinel = matches!(redis.endpoint, Endpoint::Sentinel { .. });
        redis.sentinel_password =
            secrets::sentinel_password(self.sentinel_password, self.sentinel_password_file.as_deref(), sentinel)?;
        if self.key.is_empty() {
            return Err(refuse("--key", "the key must not be empty"));
        }
        Ok(RedisPart { redis, redis_tls, key: self.key })
    }
}

/// How long a batch's reply may take, and which replicas must acknowledge it.
#[derive(Debug, clap::Args)]
pub struct ReplyFlags {
    /// Seconds a Redis command may wait for its reply; then its requests get 503 and the
    /// connection is rebuilt
    #[arg(long = "redis-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_REDIS_TIMEOUT))]
    pub redis_timeout: Duration,

    /// Replicas that must acknowledge each batch's increment (one WAIT per batch) before it is
    /// answered 200; when fewer do within --wait-timeout, the batch is answered 503
    #[arg(long = "wait-replicas", value_name = "N", default_value_t = DEFAULT_WAIT_REPLICAS)]
    pub wait_replicas: u32,

    /// Milliseconds each batch's WAIT may wait for --wait-replicas acknowledgements
    #[arg(long = "wait-timeout", value_name = "MS", default_value_t = DEFAULT_WAIT_TIMEOUT_MS)]
    pub wait_timeout: u64,
}

/// The reply part of [`crate::config::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replies {
    /// `--redis-timeout`.
    pub redis_timeout: Duration,
    /// `--wait-replicas`.
    pub wait_replicas: u32,
    /// `--wait-timeout`.
    pub wait_timeout: Duration,
}

impl ReplyFlags {
    /// Refuses timeouts of zero, and a WAIT that could not answer before its command times out.
    pub fn into_replies(self) -> Result<Replies, FlagError> {
        if self.redis_timeout.is_zero() {
            return Err(refuse("--redis-timeout", "must be more than 0"));
        }
        let wait_timeout = Duration::from_millis(self.wait_timeout);
        if self.wait_timeout == 0 {
            return Err(refuse("--wait-timeout", "must be at least 1 ms (WAIT with 0 waits forever)"));
        }
        if self.wait_replicas > 0 && wait_timeout >= self.redis_timeout {
            return Err(refuse(
                "--wait-timeout",
                format!(
                    "{} ms is not shorter than --redis-timeout ({:?}): every batch would time out before its WAIT answers",
                    self.wait_timeout, self.redis_timeout
                ),
            ));
        }
        Ok(Replies { redis_timeout: self.redis_timeout, wait_replicas: self.wait_replicas, wait_timeout })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["hitcore"], args].concat()).unwrap()
    }

    #[test]
    fn a_wait_must_answer_before_its_command_times_out() {
        let ok = cli(&["--wait-replicas", "1", "--wait-timeout", "999", "--redis-timeout", "1"]).replies.into_replies();
        assert_eq!(ok.unwrap().wait_timeout, Duration::from_millis(999));
        let late = cli(&["--wait-replicas", "1", "--wait-timeout", "1000", "--redis-timeout", "1"]).replies;
        let err = late.into_replies().unwrap_err();
        assert_eq!(err.flag, "--wait-timeout");
        assert!(err.message.contains("--redis-timeout"), "{err}");
        // Without replicas there is no WAIT, so its timeout does not matter.
        assert!(cli(&["--wait-timeout", "5000"]).replies.into_replies().is_ok());
        assert_eq!(cli(&["--wait-timeout", "0"]).replies.into_replies().unwrap_err().flag, "--wait-timeout");
        assert_eq!(cli(&["--redis-timeout", "0"]).replies.into_replies().unwrap_err().flag, "--redis-timeout");
    }

    #[test]
    fn the_key_and_the_tls_files_are_checked_against_the_url() {
        assert_eq!(cli(&["--key", ""]).redis.into_redis().unwrap_err().flag, "--key");
        let plain = cli(&["--redis-tls-insecure"]).redis.into_redis().unwrap_err();
        assert_eq!((plain.flag, plain.message.contains("rediss://")), ("--redis-tls-insecure", true));
        assert_eq!(cli(&["--redis-tls-ca", "/x.pem"]).redis.into_redis().unwrap_err().flag, "--redis-tls-ca");
        let part = cli(&["--redis", "redis://h:1/2", "--key", "k"]).redis.into_redis().unwrap();
        assert_eq!((part.redis.db, part.key.as_str()), (2, "k"));
    }
}
