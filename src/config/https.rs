//! The HTTPS settings (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`,
//! `--ssl-min-version`) as plain data, in the configuration every shard is handed.
//!
//! It owns the values and the spelling of `--ssl-min-version`; reading the files and building the
//! rustls configuration is `crate::https`'s. It must not read files or name rustls.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// HTTPS on every TCP listener: present when `--certfile` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Https {
    /// `--certfile`: the certificate chain (PEM), the server's own certificate first.
    pub certfile: PathBuf,
    /// `--keyfile`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// `--ca-certs` and `--cert-reqs`: whether clients present certificates (default: not asked).
    #[serde(default)]
    pub clients: ClientCerts,
    /// `--ssl-min-version` (default TLS 1.2).
    #[serde(default)]
    pub min_version: MinVersion,
}

/// Which client certificates are asked for and accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientCerts {
    /// None asked for (no `--ca-certs`).
    #[default]
    None,
    /// `--ca-certs FILE --cert-reqs 1`: asked for, verified against FILE when presented; a client
    /// without one is served too.
    Optional(PathBuf),
    /// `--ca-certs FILE` (`--cert-reqs 2`, the default with `--ca-certs`): a client must present a
    /// certificate that FILE's CAs signed, or the handshake fails.
    Required(PathBuf),
}

/// The oldest TLS version spoken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (rustls speaks nothing older).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinVersion {
    /// `--ssl-min-version`'s values: `TLSv1.2` or `TLSv1.3` as nginx spells them, also `1.2`,
    /// `1.3` and Python's `ssl` module's `TLSv1_2`, `TLSv1_3`, in any case. Written as nginx does.
    pub fn parse(text: &str) -> Result<MinVersion, String> {
        let t = text.to_ascii_lowercase();
        match t.strip_prefix("tlsv").unwrap_or(&t) {
            "1.2" | "1_2" => Ok(MinVersion::Tls12),
            "1.3" | "1_3" => Ok(MinVersion::Tls13),
            _ => Err(format!("'{text}' is not a TLS version hitcore speaks: TLSv1.2 or TLSv1.3")),
        }
    }
}

impl std::fmt::Display for MinVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MinVersion::Tls12 => "TLSv1.2",
            MinVersion::Tls13 => "TLSv1.3",
        })
    }
}
