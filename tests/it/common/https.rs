//! HTTPS test kit: a private CA made here (rcgen) that signs server and client certificates on
//! demand, with the validity the test asks for, and a blocking rustls client that reports what the
//! server presented and negotiated.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

/// A private CA and the files it has signed, in a directory removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// A new CA named `name`; its certificate is `DIR/ca.crt`.
    pub fn new(name: &str) -> Pki {
        let dir = super::temp_path(&format!("hitcore-https-{name}"), "");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("hitcore https test CA {name}"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// A file in the directory, as a string for a flag.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// Writes `NAME.crt` and `NAME.key`: an ECDSA P-256 server certificate for 127.0.0.1 whose common
    /// name is `name`, valid from `from` to `until` (years, January 1st).
    pub fn server(&self, name: &str, from: i32, until: i32) -> (String, String) {
        self.leaf(name, name, ExtendedKeyUsagePurpose::ServerAuth, from, until)
    }

    /// As [`Pki::server`], for a client certificate.
    pub fn client(&self, name: &str) -> (String, String) {
        self.leaf(name, name, ExtendedKeyUsagePurpose::ClientAuth, 2020, 2090)
    }

    /// Writes the pair under `file` (`FILE.crt`, `FILE.key`) with common name `name`.
    pub fn leaf(
        &self,
        file: &str,
        name: &str,
        usage: ExtendedKeyUsagePurpose,
        from: i32,
        until: i32,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (crt, pem_key) = (self.path(&format!("{file}.crt")), self.path(&format!("{file}.key")));
        // Written whole then renamed, as a certificate manager does, so a reader never sees half a file.
        for (path, text) in [(&crt, cert.pem()), (&pem_key, key.serialize_pem())] {
            let tmp = format!("{path}.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (crt, pem_key)
    }

    /// A rustls client trusting this CA, offering ALPN http/1.1, presenting `client` (a pair this
    /// CA or another signed) if given. It never resumes a session: each connection's handshake
    /// shows the certificate served now (resumption is tested with `openssl s_client`).
    pub fn client_config(&self, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some((crt, key)) => {
                let chain = CertificateDer::pem_file_iter(crt).unwrap().map(Result::unwrap).collect();
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTPS connection, blocking, with a deadline on every read and write.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects and completes the handshake, or says why not.
    pub fn connect(
        addr: SocketAddr,
        config: &Arc<rustls::ClientConfig>,
        within: Duration,
    ) -> Result<TlsClient, String> {
        let tcp = TcpStream::connect_timeout(&addr, within).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(within)).unwrap();
        tcp.set_write_timeout(Some(within)).unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(TlsClient { stream })
    }

    /// The common name of the certificate the server presented (as rcgen wrote it: the last
    /// printable run of the DER that follows the CN's OID).
    pub fn server_name(&self) -> String {
        let der = self.stream.conn.peer_certificates().unwrap()[0].to_vec();
        common_name(&der)
    }

    /// The ALPN protocol agreed, if any.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The TLS version agreed.
    pub fn version(&self) -> rustls::ProtocolVersion {
        self.stream.conn.protocol_version().unwrap()
    }

    /// Sends `GET /` and returns the response's status and body.
    pub fn get(&mut self) -> Result<(u16, String), String> {
        self.stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .map_or(0, |v| v.parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return Ok((status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string()));
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(format!("closed after {} bytes", buf.len())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// The common name in a DER certificate made by rcgen: the UTF8String after the last CN OID
/// (2.5.4.3), which is the subject's (the issuer's comes first).
fn common_name(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(5).rposition(|w| w == oid).expect("a common name");
    let len = usize::from(der[at + 6]);
    String::from_utf8_lossy(&der[at + 7..at + 7 + len]).to_string()
}
