//! TLS to Redis (`rediss://`): the rustls client configuration built from `--redis-tls-ca`,
//! `--redis-tls-cert`, `--redis-tls-key` and `--redis-tls-insecure`.
//!
//! It owns which certificates are trusted and presented, and reads their files. It must not
//! open connections (the handshake is `connect`'s) and must not log. rustls with the ring
//! provider: no OpenSSL in the binary. Without `--redis-tls-ca` the server is verified against
//! the operating system's roots (rustls-native-certs, which reads /etc/ssl/certs here): an
//! operator who adds a private CA with `update-ca-certificates` expects every client on the host
//! to trust it, and a baked-in Mozilla list (webpki-roots) would ignore that and go stale with the
//! binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::redis_url::TlsFiles;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS configuration could not be built. Each names the flag and file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file that cannot be read or holds nothing usable.
    #[error("cannot use '{path}': {reason}")]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system has no root certificates to verify against.
    #[error("no usable root certificates in the system store ({0}); pass --redis-tls-ca FILE")]
    Roots(String),
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("{0}")]
    Config(String),
}

impl TlsError {
    /// The flag an error is about, for the command line's message.
    pub fn flag(&self) -> &'static str {
        match self {
            TlsError::File { flag, .. } => flag,
            TlsError::Roots(_) => "--redis-tls-ca",
            TlsError::Config(_) => "--redis-tls-cert",
        }
    }
}

fn file_error(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { flag, path: path.to_path_buf(), reason: reason.to_string() }
}

/// Reads the files and builds the client configuration. Blocking file I/O: call it at start-up or
/// on a blocking thread, never on the event loop.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if files.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(files.ca.as_deref())?)
    };
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("--redis-tls-cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("--redis-tls-key", key, e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| TlsError::Config(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::Config("--redis-tls-cert needs --redis-tls-key".into())),
        (None, Some(path)) => {
            return Err(file_error("--redis-tls-key", path, "--redis-tls-key needs --redis-tls-cert"));
        }
    };
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; none is an error.
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    // Read first, so a missing or unreadable file says so in the OS's words.
    let pem = std::fs::read(path).map_err(|e| file_error(flag, path, e))?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| file_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates("--redis-tls-ca", path)? {
                store.add(cert).map_err(|e| file_error("--redis-tls-ca", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or("none found".to_string(), |e| e.to_string());
                return Err(TlsError::Roots(why));
            }
        }
    }
    Ok(store)
}

/// The name the server's certificate must carry: the URL's host, a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|_| format!("'{host}' is not a valid TLS server name"))
}

/// `--redis-tls-insecure`: any certificate is accepted, but the handshake's signatures are still
/// checked against it, so the session is at least bound to the key the server presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_flag_and_the_file() {
        let files = TlsFiles { ca: Some("/nonexistent/ca.pem".into()), ..TlsFiles::default() };
        let e = client_config(&files).unwrap_err();
        assert_eq!(e.flag(), "--redis-tls-ca");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("hitcore-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&TlsFiles { ca: Some(empty.clone()), ..TlsFiles::default() }).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e =
            client_config(&TlsFiles { insecure: true, key: Some(empty.clone()), ..TlsFiles::default() }).unwrap_err();
        assert_eq!(e.flag(), "--redis-tls-key");
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn insecure_needs_no_roots_and_names_take_ips() {
        assert!(client_config(&TlsFiles { insecure: true, ..TlsFiles::default() }).is_ok());
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("redis.example"), Ok(ServerName::DnsName(_))));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn files_from_the_previous_release_decode() {
        let old: TlsFiles = serde_json::from_str("{}").unwrap();
        assert_eq!(old, TlsFiles::default());
    }
}
