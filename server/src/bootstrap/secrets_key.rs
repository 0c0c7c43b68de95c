//! The key Secrets are encrypted with at rest (`secrets-encryption.key`, like k3s
//! `--secrets-encryption`): 32 random bytes, base64, written 0600 at the first start and
//! read on every later one. Losing it loses every stored Secret; back it up with the
//! store (SECURITY.md).

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use super::{BootstrapError, files};
use crate::store::SecretsCipher;

/// The key file's name in the data directory.
pub const FILE: &str = "secrets-encryption.key";

/// The cipher of the key in `path`, creating the key when the file does not exist.
pub(crate) fn load_or_create(path: &Path) -> Result<Arc<SecretsCipher>, BootstrapError> {
    let io = |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |reason: String| BootstrapError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let base64 = base64::engine::general_purpose::STANDARD;
    let key = match files::read_optional(path).map_err(io)? {
        Some(text) => base64
            .decode(text.trim())
            .map_err(|err| corrupt(err.to_string()))?,
        None => {
            let key = SecretsCipher::generate_key().map_err(|err| corrupt(err.to_string()))?;
            let text = format!("{}\n", base64.encode(key));
            files::write_private(path, text.as_bytes()).map_err(io)?;
            key.to_vec()
        }
    };
    let cipher = SecretsCipher::new(&key).map_err(|err| corrupt(err.to_string()))?;
    Ok(Arc::new(cipher))
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
}
