//! The ingress's certificates: what the HTTPS listeners of [`super::ingress`] terminate TLS
//! with, chosen per handshake by SNI ([`IngressCertificates::select`]).
//!
//! The server sends them only to nodes that serve ingress traffic, on the node's own
//! `down/tls`; the link hands each message to [`IngressTls::replace`] (a cleared one to
//! [`IngressTls::clear`]: this node serves no HTTPS). They are kept in memory only, never
//! in the agent's state: after a restart the node serves HTTPS again once the broker has
//! replayed the retained message. A handshake reads the current set, so a renewed Secret
//! serves new connections while open ones keep theirs.

use std::sync::{Arc, RwLock};

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wasmfleet_protocol::ingress_tls::{IngressCertificates, KeyFormat, TlsCertificate};

/// The certificates this node serves HTTPS with, shared by the link and the listeners.
#[derive(Debug, Clone, Default)]
pub struct IngressTls {
    current: Arc<RwLock<Option<Arc<Loaded>>>>,
}

/// A set of certificates with their keys loaded for rustls.
#[derive(Debug)]
struct Loaded {
    certificates: IngressCertificates,
    /// `certificates.certificates`' keys, in order (`None`: unusable here).
    keys: Vec<Option<Arc<CertifiedKey>>>,
    default: Arc<CertifiedKey>,
}

impl IngressTls {
    /// Serves `certificates` from the next handshake on. A default certificate that does
    /// not load keeps the current set (and says why); another unusable one is left out.
    pub fn replace(&self, certificates: IngressCertificates) {
        let default = match certified_key(&certificates.default) {
            Ok(key) => key,
            Err(err) => {
                tracing::error!(%err, "the ingress's default certificate does not load; keeping the current ones");
                return;
            }
        };
        let keys = certificates
            .certificates
            .iter()
            .map(|cert| {
                certified_key(cert)
                    .inspect_err(|err| {
                        tracing::warn!(source = %cert.source, %err, "an ingress certificate does not load; its hosts get the default one");
                    })
                    .ok()
            })
            .collect();
        tracing::info!(
            certificates = certificates.certificates.len(),
            revision = certificates.revision,
            "ingress certificates received"
        );
        *self.write() = Some(Arc::new(Loaded {
            certificates,
            keys,
            default,
        }));
    }

    /// Forgets every certificate: this node serves no HTTPS.
    pub fn clear(&self) {
        if self.write().take().is_some() {
            tracing::info!("this node no longer serves HTTPS for Ingresses and Gateways");
        }
    }

    /// Whether the node has certificates (and so serves HTTPS).
    pub fn is_serving(&self) -> bool {
        self.current().is_some()
    }

    /// A rustls resolver for a listener that serves the routes of `ports` (in precedence
    /// order).
    pub fn resolver(&self, ports: Vec<u16>) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver {
            tls: self.clone(),
            ports,
        })
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Loaded>>> {
        self.current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Chooses a certificate per handshake from the node's current set.
#[derive(Debug)]
struct Resolver {
    tls: IngressTls,
    ports: Vec<u16>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.tls.current()?;
        let chosen = loaded.certificates.select(&self.ports, hello.server_name());
        let index = loaded
            .certificates
            .certificates
            .iter()
            .position(|c| std::ptr::eq(c, chosen));
        let key = index.and_then(|i| loaded.keys.get(i).cloned().flatten());
        Some(key.unwrap_or_else(|| Arc::clone(&loaded.default)))
    }
}

/// `cert`'s chain and key, ready for rustls (the key must match the certificate).
fn certified_key(cert: &TlsCertificate) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let chain = cert
        .chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let der = cert.key.clone();
    let key = match cert.key_format {
        KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
    };
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map(Arc::new)
}
