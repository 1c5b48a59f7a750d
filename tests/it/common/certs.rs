//! Certificates for the TLS topologies, made in the test with rcgen: a private CA and one
//! certificate for IP 127.0.0.1 that every node serves.

use super::topology::TlsFiles;

/// PEM files made here (rcgen): a private CA and one certificate for IP 127.0.0.1 that every
/// node serves, in a directory removed on drop.
pub struct Certs {
    dir: std::path::PathBuf,
    /// The files, for the topology's nodes and for `--redis-tls-ca`.
    pub files: TlsFiles,
}

impl Certs {
    /// Makes the CA and the certificate.
    pub fn make() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
        let dir = super::temp_path("hitcore-topology-tls", "");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "hitcore topology test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "redis");
        leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
        std::fs::write(path("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(path("node.crt"), cert.pem()).unwrap();
        std::fs::write(path("node.key"), key.serialize_pem()).unwrap();
        let files = TlsFiles { ca: path("ca.crt"), cert: path("node.crt"), key: path("node.key") };
        Certs { dir, files }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
