//! Secrets encrypted at rest (like k3s `--secrets-encryption`): the store seals the JSON of
//! every object of a sealed resource (`secrets`) with AES-256-GCM before it reaches redb,
//! in the objects table and in the event log alike, and opens it on every read. The rest of
//! the server never sees the difference.
//!
//! A sealed value is [`PREFIX`] with the name of the key that sealed it
//! (`k8s:enc:aesgcm:v1:key1:`, as Kubernetes' encryption config names its prefixes), a
//! random 96-bit nonce, then the ciphertext with its tag; the object's store key is the
//! associated data, so a sealed value moved under another key does not open. A value
//! without the prefix is plain JSON (written before encryption was on) and is read as such.
//!
//! The cipher holds a keyring: the current key seals, every key opens what it sealed. After
//! a key rotation ([`crate::bootstrap::secrets_key`]) the keyring holds the new key and the
//! old ones until [`super::Store::open_with`] has resealed, at start, every value that is
//! plain or sealed with another key than the current one.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The resources whose objects are sealed.
pub const SEALED_RESOURCES: &[&str] = &["secrets"];

/// What every sealed value starts with; the key's name and a `:` follow.
pub const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// The name of the first key (and of a key file's unnamed key).
pub const FIRST_KEY: &str = "key1";

/// The length of the key file's key.
pub const KEY_LEN: usize = 32;

/// Sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not 32 bytes.
    #[error("the secrets encryption key must be {KEY_LEN} bytes")]
    BadKey,
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
    /// The value is too short, was sealed with another key or under another object key.
    #[error("the value does not open with this key (tampered with, or another key)")]
    Unopenable,
    /// The value is sealed but the store has no key.
    #[error("the value is encrypted and the store has no secrets encryption key")]
    NoKey,
}

/// AES-256-GCM with the cluster's secrets keys: the first seals, each opens its own.
pub struct SecretsCipher {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for SecretsCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsCipher(..)")
    }
}

impl SecretsCipher {
    /// A cipher with this one 32-byte key, named [`FIRST_KEY`].
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        Self::with_keys(&[(FIRST_KEY, key)])
    }

    /// A cipher with these named 32-byte keys; the first one seals. Names are what
    /// [`is_key_name`] allows.
    pub fn with_keys(keys: &[(&str, &[u8])]) -> Result<Self, SealError> {
        let keys = keys
            .iter()
            .map(|(name, key)| {
                let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::BadKey)?;
                match is_key_name(name) {
                    true => Ok(((*name).to_owned(), LessSafeKey::new(key))),
                    false => Err(SealError::BadKey),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SealError::BadKey);
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The name of the key that seals.
    pub fn current(&self) -> &str {
        self.keys.first().map_or(FIRST_KEY, |(name, _)| name)
    }

    /// Whether `bytes` is sealed with the current key (else it is plain, or sealed with an
    /// older key, and is resealed at the next start).
    pub fn is_current(&self, bytes: &[u8]) -> bool {
        key_name(bytes) == Some(self.current())
    }

    /// A new random key, for the key file.
    pub fn generate_key() -> Result<[u8; KEY_LEN], SealError> {
        let mut key = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(key)
    }

    /// Seals `plain`, bound to the store key `raw_key`.
    pub fn seal(&self, raw_key: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let (name, key) = self.keys.first().ok_or(SealError::BadKey)?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(raw_key.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SealError::Unopenable)?;
        Ok([PREFIX, name.as_bytes(), b":", &nonce, &sealed].concat())
    }

    /// Opens what [`Self::seal`] sealed under `raw_key` (the prefix included).
    pub fn open(&self, raw_key: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let name = key_name(sealed).ok_or(SealError::Unopenable)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(own, _)| own == name)
            .ok_or(SealError::Unopenable)?;
        let rest = &sealed[PREFIX.len() + name.len() + 1..];
        if rest.len() < NONCE_LEN {
            return Err(SealError::Unopenable);
        }
        let (nonce, cipher) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unopenable)?;
        let mut buffer = cipher.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(raw_key.as_bytes()), &mut buffer)
            .map_err(|_| SealError::Unopenable)?;
        Ok(plain.to_vec())
    }
}

/// Whether values under the store key `raw_key` are sealed.
pub fn is_sealed_key(raw_key: &str) -> bool {
    raw_key
        .split_once('/')
        .is_some_and(|(resource, _)| SEALED_RESOURCES.contains(&resource))
}

/// Whether `bytes` is a sealed value (else it is plain JSON).
pub fn is_sealed_value(bytes: &[u8]) -> bool {
    key_name(bytes).is_some()
}

/// The name of the key that sealed `bytes`, if it is sealed.
fn key_name(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(PREFIX)?;
    let end = rest
        .iter()
        .take(MAX_KEY_NAME + 1)
        .position(|b| *b == b':')?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|name| is_key_name(name))
}

/// The longest key name.
const MAX_KEY_NAME: usize = 32;

/// Whether `name` may name a key: 1 to 32 ASCII letters and digits.
pub fn is_key_name(name: &str) -> bool {
    (1..=MAX_KEY_NAME).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> SecretsCipher {
        SecretsCipher::new(&SecretsCipher::generate_key().unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_under_its_store_key() {
        let cipher = cipher();
        let plain = br#"{"data":{"password":"czNjcmV0"}}"#;
        let sealed = cipher.seal("secrets/default/a", plain).unwrap();
        assert!(is_sealed_value(&sealed));
        assert!(!sealed.windows(8).any(|w| w == b"czNjcmV0"));
        assert_eq!(cipher.open("secrets/default/a", &sealed).unwrap(), plain);
        assert!(cipher.open("secrets/default/b", &sealed).is_err());
        assert!(self::cipher().open("secrets/default/a", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(cipher.open("secrets/default/a", &tampered).is_err());
        assert!(cipher.open("secrets/default/a", PREFIX).is_err());
        assert!(
            cipher
                .open("secrets/default/a", b"k8s:enc:aesgcm:v1:key1:")
                .is_err()
        );
    }

    #[test]
    fn after_a_rotation_the_new_key_seals_and_the_old_one_still_opens() {
        let (old, new) = (
            SecretsCipher::generate_key().unwrap(),
            SecretsCipher::generate_key().unwrap(),
        );
        let before = SecretsCipher::new(&old).unwrap();
        let sealed_before = before.seal("secrets/ns/a", b"x").unwrap();
        assert!(sealed_before.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        let ring = SecretsCipher::with_keys(&[("key2", &new), ("key1", &old)]).unwrap();
        assert_eq!(ring.open("secrets/ns/a", &sealed_before).unwrap(), b"x");
        assert!(!ring.is_current(&sealed_before));
        let sealed_after = ring.seal("secrets/ns/a", b"y").unwrap();
        assert!(sealed_after.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        assert!(ring.is_current(&sealed_after));
        let only_new = SecretsCipher::with_keys(&[("key2", &new)]).unwrap();
        assert_eq!(only_new.open("secrets/ns/a", &sealed_after).unwrap(), b"y");
        assert!(only_new.open("secrets/ns/a", &sealed_before).is_err());
        assert!(SecretsCipher::with_keys(&[("key:1", &new)]).is_err());
        assert!(SecretsCipher::with_keys(&[]).is_err());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let cipher = cipher();
        let a = cipher.seal("secrets/ns/x", b"same").unwrap();
        let b = cipher.seal("secrets/ns/x", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn only_secrets_are_sealed_and_keys_must_be_32_bytes() {
        assert!(is_sealed_key("secrets/default/a"));
        assert!(!is_sealed_key("configmaps/default/a"));
        assert!(!is_sealed_key("secretsx/default/a"));
        assert!(SecretsCipher::new(&[0; 16]).is_err());
    }
}
