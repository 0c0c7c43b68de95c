//! Join tokens an admin creates (`wasmfleet token create`): limited in time and in uses,
//! revoked at once by deleting them, beside the cluster's default token (`node-token`).
//!
//! A token looks like a Kubernetes bootstrap token, `{id}.{secret}` (6 and 16 characters
//! of `[a-z0-9]`). It is stored as a `JoinToken` object (`wasmfleet.dev/v1`, resource
//! `jointokens`, named by its id) holding the SHA-256 of the secret, never the secret: the
//! secret is shown once, when the token is created. Using a token (a node's first login) is
//! one store transaction that checks the secret, the expiration and the uses left and
//! counts the use, so a single-use token admits exactly one node however many try at once.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::constant_time_eq;
use crate::k8s::time::rfc3339;
use crate::store::{ObjectKey, Store, StoreError};

/// The store resource of join tokens.
pub const RESOURCE: &str = "jointokens";

/// How long a token lives when its creator names no TTL (as `kubeadm token create`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The most tokens that may exist at once (expired ones count until deleted).
pub const MAX_TOKENS: usize = 1000;

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a new token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSpec {
    /// What the token is for (shown in lists).
    pub description: String,
    /// How long it may be used; `None` for ever.
    pub ttl: Option<Duration>,
    /// How many nodes it may admit; `None` for any number.
    pub usages: Option<u64>,
}

/// Why a token does not admit a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not of the `{id}.{secret}` form.
    #[error("not a join token")]
    Malformed,
    /// No token with that id (never created, or deleted).
    #[error("join token {0:?} does not exist (deleted or never created)")]
    Unknown(String),
    /// The id exists with another secret.
    #[error("join token {0:?}: wrong secret")]
    WrongSecret(String),
    /// Past its expiration.
    #[error("join token {0:?} expired at {1}")]
    Expired(String, String),
    /// It admitted as many nodes as it may.
    #[error("join token {0:?} is used up ({1} uses)")]
    UsedUp(String, u64),
    /// The store failed.
    #[error("cannot read join tokens: {0}")]
    Store(String),
}

impl From<StoreError> for TokenRefusal {
    fn from(err: StoreError) -> Self {
        TokenRefusal::Store(err.to_string())
    }
}

/// Splits `{id}.{secret}`, checking the shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| ALPHABET.contains(&b));
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

/// A new random token: `(id, secret)`.
pub fn generate() -> (String, String) {
    let random = |len: usize| -> String {
        (0..len)
            .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
            .collect()
    };
    (random(ID_LEN), random(SECRET_LEN))
}

/// The stored object of a new token (what the API shows, plus the secret's hash).
pub fn new_object(id: &str, secret: &str, spec: &TokenSpec, now: jiff::Timestamp) -> Value {
    let mut token_spec = json!({"description": spec.description});
    if let Some(ttl) = spec.ttl {
        let expires = now
            .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        token_spec["expiration"] = rfc3339(expires).into();
    }
    if let Some(usages) = spec.usages {
        token_spec["usages"] = usages.into();
    }
    json!({
        "apiVersion": "wasmfleet.dev/v1",
        "kind": "JoinToken",
        "metadata": {"name": id},
        "spec": token_spec,
        "status": {"used": 0, "secretHash": secret_hash(secret)},
    })
}

/// The object as the API shows it: without the secret's hash.
pub fn public_view(mut obj: Value) -> Value {
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("secretHash");
    }
    obj
}

/// Uses `token` once at `now`, or says why it cannot be used (nothing is written then).
pub fn consume(store: &Store, token: &str, now: jiff::Timestamp) -> Result<(), TokenRefusal> {
    let (id, secret) = parse(token).ok_or(TokenRefusal::Malformed)?;
    let key = ObjectKey::cluster(RESOURCE, id);
    store
        .update_with(&key, |obj| check_and_count(obj, id, secret, now))
        .map(|_| ())
        .map_err(|err| match err {
            TokenRefusal::Store(_) if matches!(store.get(&key), Ok(None)) => {
                TokenRefusal::Unknown(id.to_owned())
            }
            other => other,
        })
}

/// The checks of one use, and the count, on the stored object.
fn check_and_count(
    obj: &mut Value,
    id: &str,
    secret: &str,
    now: jiff::Timestamp,
) -> Result<(), TokenRefusal> {
    let stored_hash = obj
        .pointer("/status/secretHash")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !constant_time_eq(stored_hash.as_bytes(), secret_hash(secret).as_bytes()) {
        return Err(TokenRefusal::WrongSecret(id.to_owned()));
    }
    if let Some(expiration) = obj.pointer("/spec/expiration").and_then(Value::as_str) {
        let expired = expiration
            .parse::<jiff::Timestamp>()
            .map_or(true, |at| at <= now);
        if expired {
            return Err(TokenRefusal::Expired(id.to_owned(), expiration.to_owned()));
        }
    }
    let used = obj
        .pointer("/status/used")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if let Some(usages) = obj.pointer("/spec/usages").and_then(Value::as_u64)
        && used >= usages
    {
        return Err(TokenRefusal::UsedUp(id.to_owned(), usages));
    }
    obj["status"]["used"] = (used + 1).into();
    Ok(())
}

fn secret_hash(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("s.redb")).expect("store");
        (dir, store)
    }

    fn create(store: &Store, spec: &TokenSpec, now: jiff::Timestamp) -> String {
        let (id, secret) = generate();
        store
            .create(
                &ObjectKey::cluster(RESOURCE, &id),
                new_object(&id, &secret, spec, now),
            )
            .expect("create");
        format!("{id}.{secret}")
    }

    #[test]
    fn generated_tokens_have_the_bootstrap_token_shape() {
        let (id, secret) = generate();
        let token = format!("{id}.{secret}");
        assert_eq!(parse(&token), Some((id.as_str(), secret.as_str())));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_single_use_token_admits_exactly_one_node() {
        let (_dir, store) = store();
        let now = jiff::Timestamp::now();
        let spec = TokenSpec {
            usages: Some(1),
            ..TokenSpec::default()
        };
        let token = create(&store, &spec, now);
        assert_eq!(consume(&store, &token, now), Ok(()));
        let (id, _) = parse(&token).expect("shape");
        assert!(matches!(consume(&store, &token, now), Err(TokenRefusal::UsedUp(i, 1)) if i == id));
    }

    #[test]
    fn an_expired_token_admits_nobody() {
        let (_dir, store) = store();
        let now = jiff::Timestamp::now();
        let spec = TokenSpec {
            ttl: Some(Duration::from_secs(60)),
            ..TokenSpec::default()
        };
        let token = create(&store, &spec, now);
        assert_eq!(consume(&store, &token, now), Ok(()));
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(61))
            .expect("time");
        assert!(matches!(
            consume(&store, &token, later),
            Err(TokenRefusal::Expired(..))
        ));
    }

    #[test]
    fn a_wrong_secret_or_a_deleted_token_admits_nobody_and_writes_nothing() {
        let (_dir, store) = store();
        let now = jiff::Timestamp::now();
        let token = create(&store, &TokenSpec::default(), now);
        let (id, _) = parse(&token).expect("shape");
        let forged = format!("{id}.{}", "0".repeat(SECRET_LEN));
        let revision = store.revision();
        assert!(matches!(
            consume(&store, &forged, now),
            Err(TokenRefusal::WrongSecret(_))
        ));
        assert_eq!(store.revision(), revision, "a refusal writes nothing");
        store
            .delete(&ObjectKey::cluster(RESOURCE, id), None)
            .expect("delete");
        assert!(matches!(
            consume(&store, &token, now),
            Err(TokenRefusal::Unknown(_))
        ));
        assert_eq!(
            consume(&store, "not-a-token", now),
            Err(TokenRefusal::Malformed)
        );
    }

    #[test]
    fn the_api_never_shows_the_secret_hash() {
        let obj = new_object(
            "abcdef",
            "0123456789abcdef",
            &TokenSpec::default(),
            jiff::Timestamp::now(),
        );
        let shown = public_view(obj);
        assert!(!shown.to_string().contains("sha256"), "{shown}");
        assert_eq!(shown["status"]["used"], 0);
    }
}
