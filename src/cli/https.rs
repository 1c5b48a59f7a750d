//! The HTTPS flags (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`, `--ssl-min-version`,
//! gunicorn's names where gunicorn has one) and their validation into [`Https`].
//!
//! It owns these flags' definitions, how they combine, and reading their files once (through
//! [`crate::https::server_config`]) so that a missing, unreadable, mismatched or expired
//! certificate stops a start, fails `--check-config` and is refused by HUP. It must not touch the
//! other flags; `Cli::into_config` calls it with what it needs to know about them.

use std::path::PathBuf;
use std::time::SystemTime;

use super::error::{FlagError, refuse};
use crate::bind::Bind;
use crate::https::{self, ClientCerts, Https, MinVersion};

/// HTTPS on every TCP address (`-b`), kept together (docs/deploy.md, "HTTPS").
#[derive(Debug, clap::Args)]
pub struct HttpsFlags {
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first) on every TCP
    /// address; unix: addresses stay plain HTTP. Needs --keyfile. Read again by each new shard, so
    /// HUP serves a renewed certificate [default: plain HTTP]
    #[arg(long = "certfile", value_name = "FILE", requires = "keyfile")]
    pub certfile: Option<PathBuf>,

    /// The private key (PEM) of --certfile; shards read it, so it must be readable by --user
    #[arg(long = "keyfile", value_name = "FILE", requires = "certfile")]
    pub keyfile: Option<PathBuf>,

    /// Ask HTTPS clients for a certificate signed by one of the CAs in this PEM file, and verify it
    /// [default: clients are not asked]
    #[arg(long = "ca-certs", value_name = "FILE")]
    pub ca_certs: Option<PathBuf>,

    /// With --ca-certs: 2 requires a client certificate, 1 verifies one when presented, 0 asks for
    /// none (gunicorn's values) [default: 2 with --ca-certs]
    #[arg(long = "cert-reqs", value_name = "N", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub cert_reqs: Option<u8>,

    /// The oldest TLS version spoken over HTTPS: TLSv1.2 or TLSv1.3 (also 1.2, 1.3, TLSv1_2, TLSv1_3;
    /// rustls speaks nothing older)
    #[arg(long = "ssl-min-version", value_name = "VERSION", value_parser = MinVersion::parse,
          default_value_t = MinVersion::default())]
    pub ssl_min_version: MinVersion,
}

impl HttpsFlags {
    /// The HTTPS settings, or `None` for plain HTTP; every file is read once here to refuse a bad
    /// one. `binds`: every address given; `proxy_protocol`: `--proxy-protocol`.
    pub fn into_https(self, binds: &[Bind], proxy_protocol: bool) -> Result<Option<Https>, FlagError> {
        let (Some(certfile), Some(keyfile)) = (self.certfile, self.keyfile) else {
            if self.ca_certs.is_some() {
                return Err(refuse("--ca-certs", "client certificates need HTTPS: pass --certfile and --keyfile"));
            }
            if self.cert_reqs.is_some() {
                return Err(refuse("--cert-reqs", "client certificates need HTTPS: pass --certfile and --keyfile"));
            }
            if self.ssl_min_version != MinVersion::default() {
                return Err(refuse("--ssl-min-version", "applies to HTTPS only: pass --certfile and --keyfile"));
            }
            return Ok(None);
        };
        let clients = match (self.ca_certs, self.cert_reqs) {
            (None, None | Some(0)) => ClientCerts::None,
            (None, Some(_)) => return Err(refuse("--cert-reqs", "1 and 2 need --ca-certs, the CAs to verify with")),
            (Some(_), Some(0)) => {
                return Err(refuse("--cert-reqs", "0 asks for no client certificate, so --ca-certs would be unused"));
            }
            (Some(ca), Some(1)) => ClientCerts::Optional(ca),
            (Some(ca), _) => ClientCerts::Required(ca),
        };
        if !binds.iter().any(|b| !matches!(b, Bind::Unix(_))) {
            return Err(refuse("--certfile", "HTTPS is served on TCP addresses, and every -b is a unix: socket"));
        }
        if proxy_protocol {
            return Err(refuse("--proxy-protocol", "not supported together with HTTPS (--certfile) yet"));
        }
        let https = Https { certfile, keyfile, clients, min_version: self.ssl_min_version };
        https::server_config(&https, SystemTime::now(), None).map_err(|e| refuse(e.flag, e.to_string()))?;
        Ok(Some(https))
    }
}
