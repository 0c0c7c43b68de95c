//! The certificates and private keys the ingress terminates TLS with (Ingress `spec.tls`
//! and Gateway `HTTPS` listeners).
//!
//! Unlike the route table, which every node reads, these carry private keys: the server
//! sends an [`IngressCertificates`] only to the nodes that serve ingress traffic, retained
//! on each one's own down topic ([`crate::topic::Down::Tls`]), and clears it on the others.
//! The server has checked every certificate (a `kubernetes.io/tls` Secret whose PEM parses
//! and whose key matches its certificate) before it sends it; a host without a usable one
//! is served with [`IngressCertificates::default`], as ingress-nginx serves its "fake
//! certificate".
//!
//! [`IngressCertificates::select`] is the SNI choice, pure: an exact host, then a
//! `*.` wildcard, then a certificate for any host of the port, then the default.

use serde::{Deserialize, Serialize};

/// What one node serves HTTPS with, at the server's revision.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressCertificates {
    /// The store revision it was built at.
    pub revision: u64,
    /// The certificate for a name no other one covers (self-signed by the server).
    pub default: TlsCertificate,
    /// The certificates of the served Ingresses and Gateway listeners, oldest object first.
    pub certificates: Vec<TlsCertificate>,
}

/// One certificate chain and its key, and where it applies.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    /// The listener port it serves ([`crate::routes::INGRESS_PORT`] for Ingresses).
    pub port: u16,
    /// The lower-case server names it serves (`*.example.com` covers one label); empty:
    /// every name on the port that no other certificate names.
    pub hosts: Vec<String>,
    /// The chain, leaf first, each certificate DER.
    pub chain: Vec<Vec<u8>>,
    /// The private key, DER.
    pub key: Vec<u8>,
    /// How [`Self::key`] is encoded.
    pub key_format: KeyFormat,
    /// Where it came from (`Secret default/shop-tls`), for logs.
    pub source: String,
}

/// The encodings of a private key a `tls.key` may hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyFormat {
    /// PKCS#8 (`BEGIN PRIVATE KEY`).
    #[default]
    Pkcs8,
    /// PKCS#1 RSA (`BEGIN RSA PRIVATE KEY`).
    Pkcs1,
    /// SEC1 EC (`BEGIN EC PRIVATE KEY`).
    Sec1,
}

/// Keys never appear in logs.
impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("port", &self.port)
            .field("hosts", &self.hosts)
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl std::fmt::Debug for IngressCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressCertificates")
            .field("revision", &self.revision)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl IngressCertificates {
    /// The certificate for a handshake naming `sni` on a listener that serves the routes
    /// of `ports` (in precedence order): the first exact name, else the first wildcard,
    /// else the first certificate for any name, trying each port in turn; else the
    /// default.
    pub fn select(&self, ports: &[u16], sni: Option<&str>) -> &TlsCertificate {
        let sni = sni.map(str::to_ascii_lowercase);
        let wildcard = sni
            .as_deref()
            .and_then(|name| name.split_once('.'))
            .map(|(_, parent)| format!("*.{parent}"));
        let rank = |cert: &TlsCertificate| -> Option<u8> {
            if let Some(name) = &sni
                && cert.hosts.contains(name)
            {
                return Some(0);
            }
            if let Some(wild) = &wildcard
                && cert.hosts.contains(wild)
            {
                return Some(1);
            }
            cert.hosts.is_empty().then_some(2)
        };
        (0..=2)
            .flat_map(|wanted| ports.iter().map(move |port| (wanted, *port)))
            .find_map(|(wanted, port)| {
                self.certificates
                    .iter()
                    .find(|c| c.port == port && rank(c) == Some(wanted))
            })
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(port: u16, hosts: &[&str], source: &str) -> TlsCertificate {
        TlsCertificate {
            port,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            source: source.into(),
            ..TlsCertificate::default()
        }
    }

    fn bundle() -> IngressCertificates {
        IngressCertificates {
            revision: 1,
            default: cert(0, &[], "default"),
            certificates: vec![
                cert(0, &["a.example.com", "b.example.com"], "ab"),
                cert(0, &["*.example.com"], "wild"),
                cert(8443, &["a.example.com"], "gateway-a"),
                cert(8443, &[], "gateway-any"),
            ],
        }
    }

    fn pick(ports: &[u16], sni: Option<&str>) -> String {
        bundle().select(ports, sni).source.clone()
    }

    #[test]
    fn sni_picks_the_exact_name_then_a_wildcard_then_the_default() {
        assert_eq!(pick(&[0], Some("a.example.com")), "ab");
        assert_eq!(pick(&[0], Some("B.Example.com")), "ab");
        assert_eq!(pick(&[0], Some("c.example.com")), "wild");
        assert_eq!(pick(&[0], Some("c.d.example.com")), "default");
        assert_eq!(pick(&[0], Some("other.org")), "default");
        assert_eq!(pick(&[0], None), "default");
    }

    #[test]
    fn a_listener_tries_its_own_port_before_the_ingress_certificates() {
        assert_eq!(pick(&[8443, 0], Some("a.example.com")), "gateway-a");
        assert_eq!(
            pick(&[8443, 0], Some("b.example.com")),
            "ab",
            "an exact name on the ingress port beats a catch-all of the listener"
        );
        assert_eq!(pick(&[8443, 0], Some("other.org")), "gateway-any");
        assert_eq!(pick(&[8443], None), "gateway-any");
    }

    #[test]
    fn keys_never_appear_in_debug_output() {
        let mut secret = cert(0, &["a"], "s");
        secret.key = b"very-secret-key".to_vec();
        assert!(!format!("{secret:?}").contains("very"));
        assert!(!format!("{secret:?}").contains("118, 101"));
    }
}
