//! Node certificates: the cluster CA certifies each node's tunnel key for its name.
//!
//! An agent reports the SubjectPublicKeyInfo of its ECDSA P-256 tunnel key in every birth
//! ([`wasmfleet_protocol::tunnel::TunnelInfo`]). The fleet answers each birth with a
//! certificate for that key ([`NodeCertificates::sign`]): subject CN and SAN DNS name = the
//! node name, serverAuth and clientAuth, valid for [`VALIDITY_DAYS`]. Births reach the
//! server only on the node's own `up/state` topic, which only the node itself may publish
//! (`broker::auth`, `broker::acl`), so a node can only ever get a certificate for its own
//! name. The CA's key never leaves the server.
//!
//! The same CA certifies users' keys for the API ([`NodeCertificates::sign_user`]: CN = user,
//! O = its group, clientAuth only, no SAN), which is how a user certificate is told from a
//! node's (serverAuth, SAN = CN) when one is presented over HTTPS (`api::users`).
//!
//! The Node records which key was certified, as [`TUNNEL_KEY_ANNOTATION`] (hex SHA-256 of
//! the SubjectPublicKeyInfo), so peers can tell the node's current key from an older one.

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use wasmfleet_protocol::tunnel::NodeCertificate;

use crate::bootstrap;

/// The Node annotation holding the hex SHA-256 of the certified tunnel key's
/// SubjectPublicKeyInfo (DER).
pub const TUNNEL_KEY_ANNOTATION: &str = "wasmfleet.io/tunnel-key-sha256";

/// How long a node certificate is valid (it is renewed at every birth).
pub const VALIDITY_DAYS: i64 = 365;

/// The length of a P-256 public point, uncompressed (`04 || X || Y`).
const P256_POINT_LEN: usize = 65;

/// Why no certificate was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The reported key is not an ECDSA P-256 SubjectPublicKeyInfo.
    #[error("the tunnel key is not an ECDSA P-256 SubjectPublicKeyInfo (DER)")]
    InvalidKey,
    /// The node name cannot be a certificate's DNS name.
    #[error("node name {0:?} cannot be a certificate's DNS name")]
    InvalidName(String),
    /// The CA material is unusable.
    #[error("the cluster CA cannot sign node certificates: {0}")]
    Ca(String),
    /// rcgen failed to sign.
    #[error("cannot sign the node certificate: {0}")]
    Signing(String),
}

/// A node's tunnel key: an ECDSA P-256 public point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPublicKey {
    point: Vec<u8>,
}

impl PublicKeyData for TunnelPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl TunnelPublicKey {
    /// The key of an ECDSA P-256 SubjectPublicKeyInfo (DER), uncompressed point. The encoding
    /// is checked byte for byte (it is unique for P-256); the point itself is not checked to
    /// be on the curve: a certificate for a point off it is one no private key can use.
    pub fn from_spki(spki: &[u8]) -> Result<Self, CertificateError> {
        let point = spki
            .len()
            .checked_sub(P256_POINT_LEN)
            .and_then(|at| spki.get(at..))
            .filter(|point| point.first() == Some(&0x04))
            .ok_or(CertificateError::InvalidKey)?;
        let key = Self {
            point: point.to_vec(),
        };
        if key.subject_public_key_info() == spki {
            Ok(key)
        } else {
            Err(CertificateError::InvalidKey)
        }
    }
}

/// The value of [`TUNNEL_KEY_ANNOTATION`] for a key.
pub fn tunnel_key_sha256(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki))
}

/// Signs node certificates with the cluster CA.
pub struct NodeCertificates {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
}

/// The CA key is a secret: it never appears in logs.
impl std::fmt::Debug for NodeCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificates").finish_non_exhaustive()
    }
}

impl NodeCertificates {
    /// A signer for the cluster CA (`tls/ca.crt` and `tls/ca.key`, PEM).
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, CertificateError> {
        let ca = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| CertificateError::Ca(e.to_string()))?;
        let issuer =
            bootstrap::ca_issuer(ca_key_pem).map_err(|e| CertificateError::Ca(e.to_string()))?;
        Ok(Self {
            issuer,
            ca_der: ca.to_vec(),
        })
    }

    /// The certificate of `node` for its tunnel key `spki`, with the CA's certificate.
    pub fn sign(&self, node: &str, spki: &[u8]) -> Result<NodeCertificate, CertificateError> {
        let key = TunnelPublicKey::from_spki(spki)?;
        let mut params = CertificateParams::new(vec![node.to_owned()])
            .map_err(|_| CertificateError::InvalidName(node.to_owned()))?;
        params.distinguished_name.push(DnType::CommonName, node);
        params.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        bootstrap::set_validity(&mut params, jiff::Span::new().days(VALIDITY_DAYS));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CertificateError::Signing(e.to_string()))?;
        Ok(NodeCertificate {
            cert_der: cert.der().to_vec(),
            ca_der: self.ca_der.clone(),
        })
    }

    /// A client certificate for the API user `user` in `group` (the `O=`/`CN=`
    /// convention of Kubernetes), for the P-256 key `spki`, valid for `validity`; DER.
    /// One group at most: rcgen keeps one value per attribute type, so a second `O` would
    /// silently replace the first.
    pub fn sign_user(
        &self,
        user: &str,
        group: Option<&str>,
        spki: &[u8],
        validity: jiff::Span,
    ) -> Result<Vec<u8>, CertificateError> {
        let key = TunnelPublicKey::from_spki(spki)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.distinguished_name.push(DnType::CommonName, user);
        params.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        bootstrap::set_validity(&mut params, validity);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CertificateError::Signing(e.to_string()))?;
        Ok(cert.der().to_vec())
    }

    /// The CA's certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
