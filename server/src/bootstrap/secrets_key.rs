//! The keys Secrets are encrypted with at rest (`secrets-encryption.key`, like k3s
//! `--secrets-encryption`): 32 random bytes, base64, written 0600 at the first start and
//! read on every later one. Losing it loses every stored Secret; back it up with the
//! store (SECURITY.md).
//!
//! The file holds one key per line, `NAME:BASE64`, the current one first (a line without a
//! name is `key1`, as the first release wrote it). `--rotate-secrets-key` ([`rotate`]) puts
//! a new key first and keeps the old ones; the store then reseals every Secret with the new
//! key as it opens, and [`retire_old`] drops the old keys from the file.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use super::{BootstrapError, files};
use crate::store::SecretsCipher;
use crate::store::sealing::{FIRST_KEY, is_key_name};

/// The key file's name in the data directory.
pub const FILE: &str = "secrets-encryption.key";

/// Named keys, the current one first.
type Keys = Vec<(String, Vec<u8>)>;

/// The cipher of the keys in `path`, creating a first key when the file does not exist.
pub(crate) fn load_or_create(path: &Path) -> Result<Arc<SecretsCipher>, BootstrapError> {
    let keys = match read(path)? {
        Some(keys) => keys,
        None => {
            let keys = vec![(FIRST_KEY.to_owned(), new_key(path)?)];
            write(path, &keys)?;
            keys
        }
    };
    cipher(path, &keys)
}

/// Puts a new key first in `path` (`key{N+1}`), keeping the old ones to open what they
/// sealed; returns the cipher of them all.
pub(crate) fn rotate(path: &Path) -> Result<Arc<SecretsCipher>, BootstrapError> {
    let mut keys = read(path)?.unwrap_or_default();
    let next = keys
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("key")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    keys.insert(0, (format!("key{next}"), new_key(path)?));
    write(path, &keys)?;
    tracing::info!(key = %keys[0].0, "rotated the secrets encryption key; Secrets are resealed with it as the store opens");
    cipher(path, &keys)
}

/// Keeps only the current key in `path` (once the store has resealed every Secret with it).
pub(crate) fn retire_old(path: &Path) -> Result<(), BootstrapError> {
    let Some(mut keys) = read(path)? else {
        return Ok(());
    };
    if keys.len() > 1 {
        let retired: Vec<String> = keys.drain(1..).map(|(name, _)| name).collect();
        write(path, &keys)?;
        tracing::info!(
            ?retired,
            "removed the old secrets encryption keys: every Secret is sealed with the current one"
        );
    }
    Ok(())
}

fn read(path: &Path) -> Result<Option<Keys>, BootstrapError> {
    let io = |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    };
    let Some(text) = files::read_optional(path).map_err(io)? else {
        return Ok(None);
    };
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut keys = Keys::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, encoded) = line.split_once(':').unwrap_or((FIRST_KEY, line));
        if !is_key_name(name) || keys.iter().any(|(seen, _)| seen == name) {
            return Err(corrupt(path, format!("bad or repeated key name {name:?}")));
        }
        let key = base64
            .decode(encoded)
            .map_err(|err| corrupt(path, format!("key {name}: {err}")))?;
        keys.push((name.to_owned(), key));
    }
    if keys.is_empty() {
        return Err(corrupt(path, "no key".to_owned()));
    }
    Ok(Some(keys))
}

fn write(path: &Path, keys: &Keys) -> Result<(), BootstrapError> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let text: String = keys
        .iter()
        .map(|(name, key)| format!("{name}:{}\n", base64.encode(key)))
        .collect();
    files::write_private(path, text.as_bytes()).map_err(|source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    })
}

fn new_key(path: &Path) -> Result<Vec<u8>, BootstrapError> {
    SecretsCipher::generate_key()
        .map(|key| key.to_vec())
        .map_err(|err| corrupt(path, err.to_string()))
}

fn cipher(path: &Path, keys: &Keys) -> Result<Arc<SecretsCipher>, BootstrapError> {
    let named: Vec<(&str, &[u8])> = keys
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_slice()))
        .collect();
    SecretsCipher::with_keys(&named)
        .map(Arc::new)
        .map_err(|err| corrupt(path, err.to_string()))
}

fn corrupt(path: &Path, reason: String) -> BootstrapError {
    BootstrapError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_private_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let first = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal("secrets/ns/a", b"x").unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(again.open("secrets/ns/a", &sealed).unwrap(), b"x");
        std::fs::write(&path, "short\n").unwrap();
        assert!(load_or_create(&path).is_err());
    }

    #[test]
    fn a_rotation_adds_a_key_first_and_retiring_keeps_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        // The first release's file: one unnamed key, which is key1.
        let old = SecretsCipher::generate_key().unwrap();
        let base64 = base64::engine::general_purpose::STANDARD;
        std::fs::write(&path, format!("{}\n", base64.encode(old))).unwrap();
        let sealed = load_or_create(&path)
            .unwrap()
            .seal("secrets/ns/a", b"x")
            .unwrap();

        let ring = rotate(&path).unwrap();
        assert_eq!(ring.current(), "key2");
        assert_eq!(ring.open("secrets/ns/a", &sealed).unwrap(), b"x");
        let text = std::fs::read_to_string(&path).unwrap();
        let names: Vec<&str> = text.lines().filter_map(|l| l.split(':').next()).collect();
        assert_eq!(names, ["key2", "key1"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        retire_old(&path).unwrap();
        let only = load_or_create(&path).unwrap();
        assert_eq!(only.current(), "key2");
        assert!(only.open("secrets/ns/a", &sealed).is_err());
        assert_eq!(rotate(&path).unwrap().current(), "key3");
        std::fs::write(&path, "key1:AAAA\nkey1:AAAA\n").unwrap();
        assert!(load_or_create(&path).is_err(), "a repeated name");
    }
}
