//! HTTPS: the rustls server configuration built from the HTTPS settings' files (`--certfile`,
//! `--keyfile`, `--ca-certs`, `--cert-reqs`, `--ssl-min-version`; the settings themselves are plain
//! data in `config::https`, re-exported here).
//!
//! It owns which certificate is served, which client certificates are accepted, which TLS versions
//! and ALPN protocols are spoken, how sessions resume, and every check made on the files (missing,
//! unreadable, not PEM, a key that does not match the certificate, expired or not yet valid). The
//! same [`server_config`] refuses a bad file at start, at `--check-config` and on HUP (the
//! supervisor builds it once and drops it) and builds what each shard serves with, so the three
//! cannot disagree. It must not open sockets or log: the handshake is the connection's
//! (`http/conn/tls.rs`), the refusal is the caller's to print. Messages name the flag, the file and
//! why, never a byte of the key.
//!
//! - [`tickets`]: session tickets every shard of a supervisor can open.
//! - [`validity`]: the certificate's validity period, read from its DER bytes.

pub mod tickets;
pub mod validity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

pub use crate::config::https::{ClientCerts, Https, MinVersion};

/// The one application protocol spoken, offered in ALPN so that clients that ask get an answer.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// TLS 1.2 sessions each shard remembers for resumption by session ID (TLS 1.3 resumes with
/// tickets, which need no memory here). About 200 bytes each.
const SESSION_CACHE: usize = 4096;

/// A file that cannot be served with, naming the flag, the file and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot use '{}': {reason}", path.display())]
pub struct HttpsError {
    /// The flag that named the file.
    pub flag: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it (never its contents).
    pub reason: String,
}

fn refuse(flag: &'static str, path: &Path, reason: impl ToString) -> HttpsError {
    HttpsError { flag, path: path.to_path_buf(), reason: reason.to_string() }
}

/// Reads the files and builds the server configuration, refusing a certificate that is not valid
/// at `now`. `tickets`: the secret the supervisor shares with its shards, so that any shard resumes
/// another's sessions (`None`: a key of this process's own). Blocking file I/O: call it at
/// start-up, never on a running event loop.
pub fn server_config(
    https: &Https,
    now: SystemTime,
    tickets: Option<&[u8; tickets::SECRET_LEN]>,
) -> Result<Arc<ServerConfig>, HttpsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match https.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| refuse("--ssl-min-version", &https.certfile, e))?;
    let chain = certificates("--certfile", &https.certfile)?;
    check_period(&https.certfile, &chain[0], now)?;
    let key = private_key(&https.keyfile)?;
    let verifier = match &https.clients {
        ClientCerts::None => WebPkiClientVerifier::no_client_auth(),
        ClientCerts::Optional(ca) | ClientCerts::Required(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("--ca-certs", ca)? {
                roots.add(cert).map_err(|e| refuse("--ca-certs", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match &https.clients {
                ClientCerts::Optional(_) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            verifier.build().map_err(|e| refuse("--ca-certs", ca, e))?
        }
    };
    let mut config = builder.with_client_cert_verifier(verifier).with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            let cert = https.certfile.display();
            refuse("--keyfile", &https.keyfile, format!("it is not the private key of the certificate in {cert}"))
        }
        other => refuse("--keyfile", &https.keyfile, other),
    })?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    // TLS 1.3 tickets, and TLS 1.2 ones for the clients that ask.
    config.ticketer = match tickets {
        Some(secret) => Arc::new(tickets::SharedTickets::new(secret)),
        None => rustls::crypto::ring::Ticketer::new().map_err(|e| refuse("--certfile", &https.certfile, e))?,
    };
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; none is an error.
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpsError> {
    // Read first, so that a missing or unreadable file says so in the OS's words.
    let pem = std::fs::read(path).map_err(|e| refuse(flag, path, e))?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| refuse(flag, path, e))?;
    if certs.is_empty() {
        return Err(refuse(flag, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The private key in a PEM file. PEM errors are reworded: some quote a line of the file, and
/// nothing of a key file may reach a log.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpsError> {
    let pem = std::fs::read(path).map_err(|e| refuse("--keyfile", path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)",
            _ => "its PEM is malformed",
        };
        refuse("--keyfile", path, why)
    })
}

/// Refuses a certificate outside its validity period at `now`.
fn check_period(path: &Path, cert: &CertificateDer<'_>, now: SystemTime) -> Result<(), HttpsError> {
    let Some(period) = validity::period(cert) else {
        return Err(refuse("--certfile", path, "its first certificate is not a valid X.509 certificate"));
    };
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    if now > period.not_after {
        return Err(refuse(
            "--certfile",
            path,
            format!("the certificate expired on {}", validity::format(period.not_after)),
        ));
    }
    if now < period.not_before {
        let from = validity::format(period.not_before);
        return Err(refuse("--certfile", path, format!("the certificate is not valid before {from}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
