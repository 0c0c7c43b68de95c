//! Precompiled artifacts: a module compiled by the server for one node target (Cranelift
//! native code, or Pulley bytecode for targets without a Cranelift backend), so that small
//! devices need not compile, or even carry a compiler.
//!
//! An agent asks with an [`ArtifactRequest`] (module digest, its target and wasmtime
//! version). The server compiles once per distinct request, stores the artifact as a blob,
//! and answers with an [`ArtifactOffer`]: the artifact's digest and size plus a signature.
//! The agent then pulls the artifact like a module (blob chunks, sha256 check) and loads
//! it only if the signature verifies against its cluster CA.
//!
//! Precompiled code runs natively, so the signature is the whole trust decision. It is an
//! ECDSA P-256 signature by the cluster CA's key over [`signed_message`]: a domain
//! separation prefix (no X.509 structure starts with it, so a signature made here can never
//! pass for a certificate, nor the reverse) followed by every field the agent relies on.

use serde::{Deserialize, Serialize};

use crate::pod::ModuleRef;

/// An agent asks for the artifact of a module for its engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRequest {
    /// sha256 of the module, hex.
    pub module_digest: String,
    /// The agent engine's target (`aarch64-unknown-linux-gnu`, `pulley32`, ...).
    pub target: String,
    /// The agent's wasmtime version; artifacts only load into the same version.
    pub wasmtime_version: String,
}

/// The server's answer to an [`ArtifactRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactOffer {
    /// The request this answers.
    pub request: ArtifactRequest,
    /// The artifact, or why there is none (the agent then compiles, if it can).
    pub outcome: ArtifactOutcome,
}

/// What an [`ArtifactOffer`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactOutcome {
    /// The artifact is ready to pull as a blob.
    Ready {
        /// The artifact blob (its own sha256 and size).
        artifact: ModuleRef,
        /// DER ECDSA P-256 SHA-256 signature of [`signed_message`] by the cluster CA key.
        signature: Vec<u8>,
    },
    /// The server cannot provide one (unknown module, unsupported target or version, or
    /// the module does not compile).
    Unavailable(String),
}

/// Prefix of every signed artifact statement.
pub const SIGNATURE_CONTEXT: &[u8] = b"wasmfleet precompiled artifact v1\0";

/// The largest signature accepted (a DER ECDSA P-256 signature is at most 72 bytes).
pub const MAX_SIGNATURE_LEN: usize = 128;

/// The bytes the server signs and the agent verifies: the artifact with this digest is the
/// server's compilation of that module for that target and wasmtime version.
pub fn signed_message(request: &ArtifactRequest, artifact_digest: &str) -> Vec<u8> {
    let mut message = SIGNATURE_CONTEXT.to_vec();
    for field in [
        request.module_digest.as_str(),
        request.target.as_str(),
        request.wasmtime_version.as_str(),
        artifact_digest,
    ] {
        // Length-prefixed, so no two field lists give the same bytes.
        message.extend_from_slice(&(field.len() as u32).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}

/// Why an artifact's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The trusted CA PEM holds no usable certificate.
    #[error("no usable CA certificate to verify artifacts with: {0}")]
    BadCa(String),
    /// The signature is not the CA's over this statement.
    #[error("the artifact's signature does not verify against the cluster CA")]
    BadSignature,
}

/// Checks that `signature` is the cluster CA's signature (any certificate in `ca_pem`)
/// over [`signed_message`]. Only with the `client` feature.
#[cfg(feature = "client")]
pub fn verify(
    ca_pem: &[u8],
    request: &ArtifactRequest,
    artifact_digest: &str,
    signature: &[u8],
) -> Result<(), VerifyError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    if signature.len() > MAX_SIGNATURE_LEN {
        return Err(VerifyError::BadSignature);
    }
    let certs = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::BadCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(VerifyError::BadCa("no PEM certificate".into()));
    }
    let message = signed_message(request, artifact_digest);
    let verified = certs.iter().any(|der| {
        webpki::EndEntityCert::try_from(der).is_ok_and(|cert| {
            cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, &message, signature)
                .is_ok()
        })
    });
    verified.then_some(()).ok_or(VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn request() -> ArtifactRequest {
        ArtifactRequest {
            module_digest: "ab".repeat(32),
            target: "aarch64-unknown-linux-gnu".into(),
            wasmtime_version: "48.0.8".into(),
        }
    }

    #[test]
    fn requests_and_offers_round_trip() {
        let offer = Message::ArtifactOffer(ArtifactOffer {
            request: request(),
            outcome: ArtifactOutcome::Ready {
                artifact: ModuleRef {
                    digest: "cd".repeat(32),
                    size: 1234,
                },
                signature: vec![1; 71],
            },
        });
        assert_eq!(decode(&encode(&offer)), Ok(offer));
        let ask = Message::ArtifactRequest(request());
        assert_eq!(decode(&encode(&ask)), Ok(ask));
    }

    #[test]
    fn the_signed_message_covers_every_field() {
        let base = signed_message(&request(), "x");
        assert!(base.starts_with(SIGNATURE_CONTEXT));
        let mut other_target = request();
        other_target.target = "pulley32".into();
        let mut other_version = request();
        other_version.wasmtime_version = "49.0.0".into();
        for changed in [
            signed_message(&other_target, "x"),
            signed_message(&other_version, "x"),
            signed_message(&request(), "y"),
        ] {
            assert_ne!(changed, base);
        }
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_message() {
        let mut a = request();
        a.target = "ab".into();
        a.wasmtime_version = "c".into();
        let mut b = request();
        b.target = "a".into();
        b.wasmtime_version = "bc".into();
        assert_ne!(signed_message(&a, "x"), signed_message(&b, "x"));
    }
}
