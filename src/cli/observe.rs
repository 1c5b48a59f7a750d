//! The observability flags (`--metrics-bind`, `--health-path`, `--access-logformat`,
//! `--forwarded-allow-ips`, `--proxy-protocol`, `--proxy-allow-from`, `--log-format`), a group
//! flattened into [`super::Cli`], with its own validation into [`crate::config::Observe`].
//!
//! It must not open sockets; it only checks that each value can be used.

use super::error::{FlagError, refuse};
use crate::bind::Bind;

/// Observability flags, kept together (docs/observability.md).
#[derive(Debug, clap::Args)]
pub struct ObserveFlags {
    /// Serve Prometheus metrics at http://ADDRESS/metrics from the supervisor [default: off]
    #[arg(long = "metrics-bind", value_name = "ADDRESS")]
    pub metrics_bind: Option<String>,

    /// Path of the health check: 200 while this shard's Redis connection works, else 503; never counts
    #[arg(long = "health-path", value_name = "PATH", default_value = crate::config::defaults::DEFAULT_HEALTH_PATH)]
    pub health_path: String,

    /// Access log line, in gunicorn's atoms (%(h)s, %(r)s, %({header}i)s, ...)
    #[arg(long = "access-logformat", value_name = "FORMAT", default_value = crate::config::defaults::DEFAULT_ACCESS_LOG_FORMAT)]
    pub access_logformat: String,

    /// Proxies whose X-Forwarded-For names the client in the access log: addresses, networks, or *
    /// (also read from FORWARDED_ALLOW_IPS, as gunicorn does, below HITCORE_FORWARDED_ALLOW_IPS and the file)
    #[arg(long = "forwarded-allow-ips", value_name = "LIST",
          default_value = crate::config::defaults::DEFAULT_TRUSTED_PEERS)]
    pub forwarded_allow_ips: String,

    /// Every connection starts with a PROXY protocol v1 or v2 header (from a load balancer);
    /// connections without a valid one are closed
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,

    /// Error and access logs as gunicorn's text lines, or as one JSON object per line (the access
    /// log's keyed by the --access-logformat atoms' names: h, r, s, ...)
    #[arg(long = "log-format", value_enum, ignore_case = true, value_name = "FORMAT", default_value_t = crate::logjson::LogFormat::default())]
    pub log_format: crate::logjson::LogFormat,

    /// With --proxy-protocol, the peers whose PROXY header is believed (addresses, networks, or *);
    /// a connection from any other peer is closed unread, with a rate-limited WARNING
    #[arg(long = "proxy-allow-from", value_name = "LIST", default_value = crate::config::defaults::DEFAULT_TRUSTED_PEERS)]
    pub proxy_allow_from: String,
}

impl ObserveFlags {
    /// Validates the group into the configuration's `Observe` part.
    pub fn into_observe(self) -> Result<crate::config::Observe, FlagError> {
        let metrics_bind = match &self.metrics_bind {
            None => None,
            Some(text) => {
                if !text.contains(':') {
                    return Err(refuse("--metrics-bind", format!("'{text}' needs a port: HOST:PORT or :PORT")));
                }
                match Bind::parse(text).map_err(|m| refuse("--metrics-bind", m))? {
                    Bind::Tcp(addr) => Some(addr),
                    other => return Err(refuse("--metrics-bind", format!("{other}: a TCP address is needed"))),
                }
            }
        };
        let path = &self.health_path;
        if !path.starts_with('/')
            || path == "/"
            || path.contains(['?', '#'])
            || path.bytes().any(|b| b <= b' ' || b >= 0x7f)
        {
            return Err(refuse(
                "--health-path",
                format!("'{path}' must be a path such as /healthz: starting with /, not / itself, no query"),
            ));
        }
        crate::http::logformat::Format::compile(&self.access_logformat).map_err(|m| refuse("--access-logformat", m))?;
        crate::http::forwarded::Trust::parse(&self.forwarded_allow_ips)
            .map_err(|m| refuse("--forwarded-allow-ips", m))?;
        crate::http::forwarded::Trust::parse(&self.proxy_allow_from).map_err(|m| refuse("--proxy-allow-from", m))?;
        Ok(crate::config::Observe {
            metrics_bind,
            health_path: self.health_path,
            access_log_format: self.access_logformat,
            forwarded_allow_ips: self.forwarded_allow_ips,
            proxy_protocol: self.proxy_protocol,
            log_format: self.log_format,
            proxy_allow_from: self.proxy_allow_from,
        })
    }
}
