//! ServiceAccount tokens: bound, expiring JWTs (RFC 7519) signed ES256 by a key of the
//! cluster, as Kubernetes' TokenRequest API issues them.
//!
//! The key is ECDSA P-256, generated with ring at first start and kept as PKCS#8 in
//! `<data-dir>/service-account.key` (0600); it never leaves the server. A token's claims:
//! `iss` ([`ISSUER`]), `sub` `system:serviceaccount:NS:NAME`, `aud`, `iat`, `nbf`, `exp`,
//! and `kubernetes.io` {namespace, serviceaccount {name, uid}, pod {name, uid} when bound
//! to a pod}. [`TokenSigner::mint`] signs, [`TokenSigner::verify`] checks signature,
//! issuer, time and audience (pure: the clock is given); whether the account (and pod)
//! still exist with those uids is the API's check (`api::auth`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

/// The issuer of every token, and the audience the API accepts (Kubernetes' default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The default and the shortest lifetime of a requested token, in seconds (Kubernetes:
/// one hour, at least ten minutes).
pub const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for.
pub const MIN_EXPIRATION: i64 = 600;
/// The longest lifetime a TokenRequest may ask for (wasmfleet's cap: 48 hours).
pub const MAX_EXPIRATION: i64 = 48 * 3600;

/// Why a token was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or not ES256.
    #[error("malformed token")]
    Malformed,
    /// The signature is not the cluster key's.
    #[error("invalid signature")]
    Signature,
    /// Another issuer's token.
    #[error("wrong issuer")]
    Issuer,
    /// Past `exp` (or before `nbf`).
    #[error("token has expired")]
    Expired,
    /// Not for this audience.
    #[error("token audience does not match")]
    Audience,
    /// The key file is unusable.
    #[error("service account key: {0}")]
    Key(String),
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    /// The account's namespace.
    pub namespace: String,
    /// The account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
}

/// A name and uid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// What the token is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

impl Claims {
    /// The claims of a token for `kubernetes` (its account and pod), valid from `now` for
    /// `seconds`, for `audiences` (none: the API, [`ISSUER`]).
    pub fn new(
        kubernetes: KubernetesClaim,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
    ) -> Self {
        let aud = if audiences.is_empty() {
            vec![ISSUER.to_owned()]
        } else {
            audiences
        };
        Claims {
            iss: ISSUER.to_owned(),
            sub: crate::api::rbac::service_account_user(
                &kubernetes.namespace,
                &kubernetes.serviceaccount.name,
            ),
            aud,
            iat: now,
            nbf: now,
            exp: now.saturating_add(seconds),
            kubernetes,
        }
    }
}

/// Signs and verifies tokens with the cluster's service account key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
}

/// The key is a secret: it never appears in logs.
impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads `<data_dir>/service-account.key`, creating it at first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TokenError> {
        let path = data_dir.join("service-account.key");
        let bad = |e: &dyn std::fmt::Display| TokenError::Key(format!("{}: {e}", path.display()));
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let fresh = Self::generate()?;
                crate::bootstrap::files::write_private(&path, &fresh).map_err(|e| bad(&e))?;
                fresh
            }
            Err(err) => return Err(bad(&err)),
        };
        Self::from_pkcs8(&pkcs8)
    }

    /// A new P-256 key, PKCS#8 (DER).
    pub fn generate() -> Result<Vec<u8>, TokenError> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| TokenError::Key("cannot generate a key".into()))
    }

    /// A signer for a PKCS#8 P-256 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, TokenError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| TokenError::Key(e.to_string()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        Ok(TokenSigner { key, kid })
    }

    /// The signed token (`header.claims.signature`).
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let claims = serde_json::to_vec(claims).map_err(|_| TokenError::Malformed)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| TokenError::Key("cannot sign".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of `token` if this key signed it for `audience` and it is valid at `now`.
    pub fn verify(&self, token: &str, audience: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(TokenError::Malformed);
        }
        let signed = &token[..token.len() - signature.len() - 1];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(body)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer);
        }
        if now >= claims.exp || now < claims.nbf {
            return Err(TokenError::Expired);
        }
        if !claims.aud.iter().any(|a| a == audience) {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_pkcs8(&TokenSigner::generate().unwrap()).unwrap()
    }

    fn claims(audiences: Vec<String>, now: i64) -> Claims {
        let kubernetes = KubernetesClaim {
            namespace: "default".into(),
            serviceaccount: ObjectRef {
                name: "web".into(),
                uid: "u1".into(),
            },
            pod: Some(ObjectRef {
                name: "web-1".into(),
                uid: "p1".into(),
            }),
        };
        Claims::new(kubernetes, audiences, now, 600)
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let signer = signer();
        let minted = claims(Vec::new(), 1000);
        let token = signer.mint(&minted).unwrap();
        let verified = signer.verify(&token, ISSUER, 1001).unwrap();
        assert_eq!(verified, minted);
        assert_eq!(verified.sub, "system:serviceaccount:default:web");
        assert_eq!(
            (verified.iat, verified.nbf, verified.exp),
            (1000, 1000, 1600)
        );
        let body = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert_eq!(json["kubernetes.io"]["pod"]["name"], "web-1");
        assert_eq!(json["aud"][0], ISSUER);
    }

    #[test]
    fn expired_foreign_tampered_and_other_audience_tokens_are_refused() {
        let signer = signer();
        let token = signer.mint(&claims(Vec::new(), 1000)).unwrap();
        assert_eq!(
            signer.verify(&token, ISSUER, 1600),
            Err(TokenError::Expired)
        );
        assert_eq!(signer.verify(&token, ISSUER, 999), Err(TokenError::Expired));
        assert_eq!(
            signer.verify(&token, "vault", 1001),
            Err(TokenError::Audience)
        );
        let other = signer.mint(&claims(vec!["vault".into()], 1000)).unwrap();
        assert_eq!(
            signer.verify(&other, ISSUER, 1001),
            Err(TokenError::Audience)
        );
        assert!(signer.verify(&other, "vault", 1001).is_ok());
        let stranger = TokenSigner::from_pkcs8(&TokenSigner::generate().unwrap()).unwrap();
        assert_eq!(
            stranger.verify(&token, ISSUER, 1001),
            Err(TokenError::Signature)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        parts[1] = &forged;
        assert_eq!(
            signer.verify(&parts.join("."), ISSUER, 1001),
            Err(TokenError::Signature)
        );
        assert_eq!(signer.verify("a.b", ISSUER, 1), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenSigner::load_or_create(dir.path()).unwrap();
        let token = first.mint(&claims(Vec::new(), 1000)).unwrap();
        let again = TokenSigner::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&token, ISSUER, 1001).is_ok());
    }
}
