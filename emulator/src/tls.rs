//! HTTPS for the in-cluster configuration: a CA made at start-up (P-256), and a serving
//! certificate it signs for the names a pod reaches the API server by (`kubernetes.default.svc`
//! and its shorter forms, `localhost`, 127.0.0.1). The certificates are written by hand in DER:
//! the handful of fields a client checks, with the crates already in the lockfile (p256 signs,
//! rustls serves), no certificate-generation crate.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names of the serving certificate: what `KUBERNETES_SERVICE_HOST` or a kubeconfig may say.
pub const DNS_NAMES: &[&str] = &[
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "kubernetes.default",
    "kubernetes",
    "localhost",
];

pub struct Certificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Certificates {
    pub fn generate() -> Certificates {
        let ca_key = SigningKey::random(&mut rand_core::OsRng);
        let key = SigningKey::random(&mut rand_core::OsRng);
        let ca_name = "kube-emulator-ca";
        let ca = certificate((&ca_key, ca_name), (&ca_key, ca_name), &ca_extensions());
        let cert = certificate(
            (&ca_key, ca_name),
            (&key, "kube-apiserver"),
            &serving_extensions(),
        );
        let key_der = p256::SecretKey::from(&key)
            .to_pkcs8_der()
            .expect("a P-256 key encodes")
            .as_bytes()
            .to_vec();
        Certificates {
            ca_pem: pem("CERTIFICATE", &ca),
            cert_pem: pem("CERTIFICATE", &cert),
            key_pem: pem("PRIVATE KEY", &key_der),
            cert_der: cert,
            key_der,
        }
    }

    /// `ca.crt` (what a pod's service-account volume holds), `tls.crt` and `tls.key` (for a
    /// test proxy that stands where the API server stands).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), &self.ca_pem)?;
        std::fs::write(dir.join("tls.crt"), &self.cert_pem)?;
        std::fs::write(dir.join("tls.key"), &self.key_pem)
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .expect("the generated key matches its certificate");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// An X.509 v3 certificate for `subject`'s key, signed by `issuer`'s (ECDSA with SHA-256).
fn certificate(
    issuer: (&SigningKey, &str),
    subject: (&SigningKey, &str),
    extensions: &[u8],
) -> Vec<u8> {
    let ((issuer, issuer_cn), (subject, cn)) = (issuer, subject);
    let now = jiff::Timestamp::now().as_second();
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x40; // and no leading zero byte to strip
    let spki = p256::PublicKey::from(subject.verifying_key())
        .to_public_key_der()
        .expect("a P-256 key encodes");
    let tbs = seq(&[
        &tlv(0xa0, &int(&[2])), // v3
        &int(&serial),
        &ECDSA_SHA256,
        &name(issuer_cn),
        &seq(&[&utc_time(now - 3600), &utc_time(now + 365 * 86400)]),
        &name(cn),
        spki.as_bytes(),
        &tlv(0xa3, &seq(&[extensions])),
    ]);
    let signature: Signature = issuer.sign(&tbs);
    seq(&[
        &tbs,
        &ECDSA_SHA256,
        &bit_string(signature.to_der().as_bytes()),
    ])
}

fn ca_extensions() -> Vec<u8> {
    [
        extension(&OID_BASIC_CONSTRAINTS, true, &seq(&[&[0x01, 0x01, 0xff]])),
        // keyCertSign, cRLSign
        extension(&OID_KEY_USAGE, true, &[0x03, 0x02, 0x01, 0x06]),
    ]
    .concat()
}

fn serving_extensions() -> Vec<u8> {
    let mut names: Vec<Vec<u8>> = DNS_NAMES.iter().map(|n| tlv(0x82, n.as_bytes())).collect();
    names.push(tlv(0x87, &[127, 0, 0, 1]));
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    [
        extension(&OID_BASIC_CONSTRAINTS, true, &seq(&[])),
        // digitalSignature
        extension(&OID_KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]),
        extension(&OID_EXT_KEY_USAGE, false, &seq(&[&OID_SERVER_AUTH])),
        extension(&OID_SUBJECT_ALT_NAME, false, &seq(&names)),
    ]
    .concat()
}

// DER: tag, length, value.
const ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const OID_COMMON_NAME: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
const OID_BASIC_CONSTRAINTS: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x13];
const OID_KEY_USAGE: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];
const OID_SERVER_AUTH: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn int(bytes: &[u8]) -> Vec<u8> {
    tlv(0x02, bytes)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], bytes].concat())
}

fn name(cn: &str) -> Vec<u8> {
    let attribute = seq(&[&OID_COMMON_NAME, &tlv(0x0c, cn.as_bytes())]);
    seq(&[&tlv(0x31, &attribute)])
}

fn utc_time(unix: i64) -> Vec<u8> {
    let time = jiff::Timestamp::from_second(unix)
        .expect("in range")
        .strftime("%y%m%d%H%M%SZ")
        .to_string();
    tlv(0x17, time.as_bytes())
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let critical: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    seq(&[oid, critical, &tlv(0x04, value)])
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_long_form_past_127_bytes() {
        assert_eq!(tlv(0x04, &[0; 5])[..2], [0x04, 5]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }

    /// A TLS handshake in memory, the client trusting only `ca`'s CA (as kube-rs does with a
    /// pod's ca.crt): whether it accepts `server`'s certificate for `name`.
    fn client_accepts(server: &Certificates, ca: &Certificates, name: &str) -> bool {
        use rustls::pki_types::ServerName;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let base64: String = ca
            .ca_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        roots
            .add(CertificateDer::from(STANDARD.decode(base64).unwrap()))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let acceptor = server.acceptor();
        let mut server = rustls::ServerConnection::new(acceptor.config().clone()).unwrap();
        for _ in 0..10 {
            let mut buffer = Vec::new();
            client.write_tls(&mut buffer).unwrap();
            if server.read_tls(&mut buffer.as_slice()).is_err()
                || server.process_new_packets().is_err()
            {
                return false;
            }
            buffer.clear();
            server.write_tls(&mut buffer).unwrap();
            if client.read_tls(&mut buffer.as_slice()).is_err()
                || client.process_new_packets().is_err()
            {
                return false;
            }
            if !client.is_handshaking() {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_client_trusting_the_written_ca_accepts_the_in_cluster_names_and_no_other() {
        let certificates = Certificates::generate();
        for name in [
            "127.0.0.1",
            "kubernetes.default.svc",
            "kubernetes",
            "localhost",
        ] {
            assert!(client_accepts(&certificates, &certificates, name), "{name}");
        }
        assert!(!client_accepts(&certificates, &certificates, "example.com"));
        assert!(!client_accepts(&certificates, &certificates, "127.0.0.2"));
        // Another emulator's CA does not vouch for this one's certificate.
        let other = Certificates::generate();
        assert!(!client_accepts(&certificates, &other, "127.0.0.1"));
    }
}
