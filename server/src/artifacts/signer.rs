//! Signs artifact statements with the cluster CA's key (ECDSA P-256, SHA-256, DER), which
//! agents already trust: they pin the CA certificate to reach the broker.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use wasmfleet_protocol::artifact::{ArtifactRequest, signed_message};

/// The key could not be used for signing.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the CA key for signing artifacts: {0}")]
pub struct SignerError(String);

/// Holds the CA key.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// A signer from the CA's PKCS#8 PEM key (`tls/ca.key`).
    pub fn from_pem(ca_key_pem: &str) -> Result<Self, SignerError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(ca_key_pem.as_bytes())
            .map_err(|e| SignerError(e.to_string()))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| SignerError(e.to_string()))?;
        Ok(Self { key, rng })
    }

    /// Signs the statement that `artifact_digest` is the compilation `request` asked for.
    pub fn sign(
        &self,
        request: &ArtifactRequest,
        artifact_digest: &str,
    ) -> Result<Vec<u8>, SignerError> {
        let message = signed_message(request, artifact_digest);
        self.key
            .sign(&self.rng, &message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|e| SignerError(e.to_string()))
    }
}
