//! The node's tunnel identity: its own key, and the certificate the cluster CA signs for it.
//!
//! At start the agent loads (or creates, at first start) an ECDSA P-256 key in
//! `<data-dir>/node-tunnel.key` (PKCS#8 PEM, 0600) and reports its public half in every
//! birth ([`wasmfleet_protocol::tunnel::TunnelInfo`]). The server answers each birth with a
//! certificate for that key and the node's name ([`NodeCertificate`]); the agent checks it
//! ([`check`]), keeps it in `<data-dir>/node-tunnel.crt` with the CA in
//! `<data-dir>/node-ca.crt` (PEM), and publishes it as a [`TunnelIdentity`] on a watch
//! ([`TunnelCredentials::identity`]) for the tunnel to present to other agents. At the next
//! start the stored certificate is checked again, so the node has an identity before the
//! server is reachable; one for another key (the key file was replaced) is dropped.
//!
//! Deleting `node-tunnel.key` gives the node a new key at the next start, and the server
//! certifies the new key at the next birth.
//!
//! The checks use rustls-webpki (already in the agent through rustls): the chain to the CA,
//! the validity period, both extended key usages, the SAN DNS name, and the public key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, DnsName, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use wasmfleet_protocol::tunnel::{NodeCertificate, TunnelInfo};

use super::write_private;

/// The node's tunnel key (PKCS#8 PEM) inside the data dir.
pub const TUNNEL_KEY_FILE: &str = "node-tunnel.key";
/// The node's certificate (PEM) inside the data dir.
pub const TUNNEL_CERT_FILE: &str = "node-tunnel.crt";
/// The CA that signed it (PEM) inside the data dir.
pub const TUNNEL_CA_FILE: &str = "node-ca.crt";

/// The largest key or certificate file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A time after every certificate's notAfter (GeneralizedTime ends at year 9999).
const END_OF_TIME: Duration = Duration::from_secs(253_402_300_800);

/// Where the tunnel key, certificate and CA are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelFiles {
    /// The private key ([`TUNNEL_KEY_FILE`]).
    pub key: PathBuf,
    /// The node's certificate ([`TUNNEL_CERT_FILE`]).
    pub cert: PathBuf,
    /// The CA that signed it ([`TUNNEL_CA_FILE`]).
    pub ca: PathBuf,
}

impl TunnelFiles {
    /// The files in the agent's data dir.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            key: data_dir.join(TUNNEL_KEY_FILE),
            cert: data_dir.join(TUNNEL_CERT_FILE),
            ca: data_dir.join(TUNNEL_CA_FILE),
        }
    }
}

/// Why the tunnel key or a stored certificate is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TunnelKeyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file holds no ECDSA P-256 PKCS#8 key (it is left alone: delete it to let the
    /// agent create a new key).
    #[error("{path} holds no usable ECDSA P-256 key ({why}); delete it to create a new one")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Unparsable(String),
    /// The CA certificate does not parse as a trust anchor.
    #[error("the CA certificate does not parse: {0}")]
    UnparsableCa(String),
    /// The CA is not the cluster CA the agent was given (`--cluster-ca-file`, else
    /// `--ca-file`).
    #[error("the CA is not the cluster CA this agent trusts (--cluster-ca-file or --ca-file)")]
    UntrustedCa,
    /// The validity period does not include now.
    #[error("the certificate is not valid now: {0}")]
    NotValidNow(String),
    /// It is not signed by the CA, or not for both serverAuth and clientAuth.
    #[error("the certificate does not verify against the CA: {0}")]
    NotSignedByCa(String),
    /// It does not name this node.
    #[error("the certificate is not for node {0:?}")]
    WrongName(String),
    /// It certifies another key than this node's.
    #[error("the certificate is for another key than this node's tunnel key")]
    WrongKey,
}

/// The node's tunnel key: ECDSA P-256, created once and kept.
#[derive(Clone)]
pub struct TunnelKey {
    pkcs8: Arc<PrivatePkcs8KeyDer<'static>>,
    /// The SubjectPublicKeyInfo (DER) of the key, as the birth reports it.
    spki: Vec<u8>,
}

/// The key is a secret: it never appears in logs.
impl std::fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelKey")
            .field("spki", &hex::encode(&self.spki))
            .finish_non_exhaustive()
    }
}

impl TunnelKey {
    /// Loads the key in `path`, or creates one there (0600, synced, renamed into place)
    /// when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, TunnelKeyError> {
        match read_limited(path)? {
            Some(pem) => Self::from_pem(&pem).map_err(|why| TunnelKeyError::Invalid {
                path: path.to_owned(),
                why,
            }),
            None => Self::create(path),
        }
    }

    /// A fresh key, written to `path`.
    fn create(path: &Path) -> Result<Self, TunnelKeyError> {
        let io = |source| TunnelKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .map_err(|_| io(std::io::Error::other("cannot generate a key")))?;
        let key =
            Self::from_pkcs8(pkcs8.as_ref().to_vec()).map_err(|why| TunnelKeyError::Invalid {
                path: path.to_owned(),
                why,
            })?;
        write_private(path, pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).map_err(io)?;
        tracing::info!(path = %path.display(), "created this node's tunnel key");
        Ok(key)
    }

    fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
        Self::from_pkcs8(der.secret_pkcs8_der().to_vec())
    }

    fn from_pkcs8(der: Vec<u8>) -> Result<Self, String> {
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        let signing =
            rustls::crypto::ring::sign::any_ecdsa_type(&PrivateKeyDer::Pkcs8(pkcs8.clone_key()))
                .map_err(|e| e.to_string())?;
        if signing.algorithm() != rustls::SignatureAlgorithm::ECDSA {
            return Err("not an ECDSA key".into());
        }
        let spki = signing
            .public_key()
            .ok_or("the key has no public key")?
            .as_ref()
            .to_vec();
        // P-256 only: its SubjectPublicKeyInfo is 91 bytes (P-384's is 120).
        if spki.len() != 91 {
            return Err("not a P-256 key".into());
        }
        Ok(Self {
            pkcs8: Arc::new(pkcs8),
            spki,
        })
    }

    /// The SubjectPublicKeyInfo (DER) of the key.
    pub fn public_key(&self) -> &[u8] {
        &self.spki
    }

    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.pkcs8.clone_key())
    }
}

/// The node's checked certificate with its key: what the tunnel presents and trusts.
pub struct TunnelIdentity {
    /// The node name the certificate is for (its SAN DNS name).
    pub node: String,
    /// The node's tunnel key.
    pub key: PrivateKeyDer<'static>,
    /// The node's certificate.
    pub cert: CertificateDer<'static>,
    /// The cluster CA that signed it: the one root other nodes' certificates must chain to.
    pub ca: CertificateDer<'static>,
    /// When the certificate expires (the server renews it at every birth).
    pub not_after: UnixTime,
    certified: Arc<CertifiedKey>,
}

/// The key is a secret: it never appears in logs.
impl std::fmt::Debug for TunnelIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelIdentity")
            .field("node", &self.node)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl TunnelIdentity {
    /// The certificate and key for rustls (ring provider), to present as client or server.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// The roots other nodes' certificates are verified against: the cluster CA alone.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // `check` parsed it as a trust anchor already, so adding it cannot fail.
        if let Err(err) = roots.add(self.ca.clone()) {
            tracing::error!(%err, "the cluster CA of the tunnel identity is unusable");
        }
        roots
    }
}

/// Checks `offered` for `node`'s `key` at `now`: it must parse, chain to its CA (which must
/// be one of `pinned`, when the agent was given any), be valid now for serverAuth and
/// clientAuth, name the node (SAN DNS name) and certify exactly the node's key.
pub fn check(
    node: &str,
    key: &TunnelKey,
    offered: &NodeCertificate,
    pinned: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<TunnelIdentity, CertificateRefusal> {
    let cert = CertificateDer::from(offered.cert_der.clone());
    let ca = CertificateDer::from(offered.ca_der.clone());
    if !pinned.is_empty() && !pinned.contains(&ca) {
        return Err(CertificateRefusal::UntrustedCa);
    }
    let anchor = webpki::anchor_from_trusted_cert(&ca)
        .map_err(|e| CertificateRefusal::UnparsableCa(e.to_string()))?;
    let parsed = webpki::EndEntityCert::try_from(&cert)
        .map_err(|e| CertificateRefusal::Unparsable(e.to_string()))?;
    let anchors = [anchor];
    let verify = |usage: webpki::KeyUsage, at: UnixTime| {
        parsed
            .verify_for_usage(
                &[webpki::ring::ECDSA_P256_SHA256],
                &anchors,
                &[],
                at,
                usage,
                None,
                None,
            )
            .map(|_| ())
    };
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        verify(usage, now).map_err(|err| match err {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                CertificateRefusal::NotValidNow(err.to_string())
            }
            other => CertificateRefusal::NotSignedByCa(other.to_string()),
        })?;
    }
    let name = DnsName::try_from(node.to_owned())
        .map_err(|_| CertificateRefusal::WrongName(node.to_owned()))?;
    parsed
        .verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .map_err(|_| CertificateRefusal::WrongName(node.to_owned()))?;
    if parsed.subject_public_key_info().as_ref() != key.public_key() {
        return Err(CertificateRefusal::WrongKey);
    }
    // webpki does not expose the validity period, but reports notAfter when asked about a
    // time past it; the end entity's validity is the first thing it checks.
    let not_after = match verify(
        webpki::KeyUsage::server_auth(),
        UnixTime::since_unix_epoch(END_OF_TIME),
    ) {
        Err(webpki::Error::CertExpired { not_after, .. }) => not_after,
        other => {
            return Err(CertificateRefusal::NotValidNow(format!(
                "cannot read its expiry: {other:?}"
            )));
        }
    };
    let certified = CertifiedKey::from_der(
        vec![cert.clone()],
        key.private_key(),
        &rustls::crypto::ring::default_provider(),
    )
    .map_err(|_| CertificateRefusal::WrongKey)?;
    Ok(TunnelIdentity {
        node: node.to_owned(),
        key: key.private_key(),
        cert,
        ca,
        not_after,
        certified: Arc::new(certified),
    })
}

/// The node's tunnel key and its current identity. Cheap to clone.
#[derive(Clone)]
pub struct TunnelCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    key: TunnelKey,
    files: TunnelFiles,
    /// The cluster CA(s) the agent was given: a certificate must be signed by one of them.
    pinned: Vec<CertificateDer<'static>>,
    current: watch::Sender<Option<Arc<TunnelIdentity>>>,
    /// Serialises [`TunnelCredentials::accept`]: one writer of the files at a time.
    writing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for TunnelCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelCredentials")
            .field("node", &self.inner.node)
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl TunnelCredentials {
    /// Loads or creates the key, then the stored certificate if it still checks out
    /// (one that does not, for another key say, is dropped). `cluster_ca_pem` is the CA
    /// the agent trusts to sign node certificates; `None` accepts the CA the server sends.
    pub fn load(
        node: &str,
        files: TunnelFiles,
        cluster_ca_pem: Option<&[u8]>,
    ) -> Result<Self, TunnelKeyError> {
        let key = TunnelKey::load_or_create(&files.key)?;
        let pinned: Vec<CertificateDer<'static>> = cluster_ca_pem
            .map(|pem| {
                CertificateDer::pem_slice_iter(pem)
                    .filter_map(Result::ok)
                    .collect()
            })
            .unwrap_or_default();
        let stored = load_stored(node, &key, &files, &pinned);
        let (current, _) = watch::channel(stored.map(Arc::new));
        Ok(Self {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                key,
                files,
                pinned,
                current,
                writing: std::sync::Mutex::new(()),
            }),
        })
    }

    /// What the birth reports: the key's SubjectPublicKeyInfo and the tunnel port.
    pub fn tunnel_info(&self, port: u16) -> TunnelInfo {
        TunnelInfo {
            public_key: self.inner.key.public_key().to_vec(),
            port,
        }
    }

    /// The node's tunnel key.
    pub fn key(&self) -> &TunnelKey {
        &self.inner.key
    }

    /// The current identity: `None` until a certificate has been accepted (from the server,
    /// or stored by an earlier run); changes when the server sends a new one.
    pub fn identity(&self) -> watch::Receiver<Option<Arc<TunnelIdentity>>> {
        self.inner.current.subscribe()
    }

    /// Checks a certificate the server sent; a good one is stored and published, a bad one
    /// is logged and changes nothing. Blocking (writes two small files).
    pub fn accept(&self, offered: &NodeCertificate) -> Result<(), CertificateRefusal> {
        let inner = &self.inner;
        let identity = check(
            &inner.node,
            &inner.key,
            offered,
            &inner.pinned,
            UnixTime::now(),
        )
        .inspect_err(|why| {
            tracing::warn!(node = %inner.node, %why, "refused the node certificate the server sent; keeping the current one");
        })?;
        let unchanged = inner
            .current
            .borrow()
            .as_ref()
            .is_some_and(|held| held.cert == identity.cert && held.ca == identity.ca);
        if unchanged {
            return Ok(());
        }
        let _writing = inner.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // The CA first: a certificate on disk always has its CA next to it.
        let stored = write_private(
            &inner.files.ca,
            pem("CERTIFICATE", &offered.ca_der).as_bytes(),
        )
        .and_then(|()| {
            write_private(
                &inner.files.cert,
                pem("CERTIFICATE", &offered.cert_der).as_bytes(),
            )
        });
        if let Err(err) = stored {
            // Still usable in this run; the server sends it again at the next birth.
            tracing::warn!(path = %inner.files.cert.display(), %err, "cannot store the node certificate");
        }
        tracing::info!(node = %inner.node, not_after = identity.not_after.as_secs(), "node certificate accepted");
        inner.current.send_replace(Some(Arc::new(identity)));
        Ok(())
    }
}

/// The stored certificate, if both files are there and it still checks out for this key.
fn load_stored(
    node: &str,
    key: &TunnelKey,
    files: &TunnelFiles,
    pinned: &[CertificateDer<'static>],
) -> Option<TunnelIdentity> {
    let read = |path: &Path| match read_limited(path) {
        Ok(Some(pem)) => CertificateDer::from_pem_slice(&pem)
            .inspect_err(
                |err| tracing::warn!(path = %path.display(), %err, "unreadable certificate file"),
            )
            .ok(),
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(%err, "cannot read a stored certificate");
            None
        }
    };
    let offered = NodeCertificate {
        cert_der: read(&files.cert)?.to_vec(),
        ca_der: read(&files.ca)?.to_vec(),
    };
    match check(node, key, &offered, pinned, UnixTime::now()) {
        Ok(identity) => Some(identity),
        Err(why) => {
            tracing::warn!(path = %files.cert.display(), %why, "dropping the stored node certificate; the server sends a new one at the next connect");
            for path in [&files.cert, &files.ca] {
                if let Err(err) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), %err, "cannot remove");
                }
            }
            None
        }
    }
}

/// The file's contents, `None` when it does not exist; refuses files over the size limit.
fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, TunnelKeyError> {
    let io = |source| TunnelKeyError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => Err(io(std::io::Error::other(format!(
            "{} bytes is larger than the limit of {MAX_FILE_BYTES}",
            meta.len()
        )))),
        Ok(_) => std::fs::read(path).map(Some).map_err(io),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io(err)),
    }
}

/// `der` as a PEM block with `label`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[path = "certificate_tests.rs"]
mod tests;
