//! The node's own credentials: its node password (its login at the server, here) and its
//! tunnel key and certificate ([`certificate`], how other nodes know it).
//!
//! At first start the agent creates a random node password (256 bits, hex) in
//! `<data-dir>/node-password` (mode 0600) and presents it at every login; the server binds
//! the node name to it at the first login, which needs the join token (see
//! [`wasmfleet_protocol::login`]). Losing the file means the node cannot log in under its
//! name again until an admin deletes the Node (`kubectl delete node NAME`), after which it
//! joins anew with the join token.
//!
//! With an external broker that keeps node identities itself (Mosquitto's password file),
//! the operator writes the node password there and into this file, and gives no join token.

pub mod certificate;

use std::io::Write;
use std::path::{Path, PathBuf};

use wasmfleet_protocol::login::{InvalidNodePassword, NodeLogin, validate_node_password};

/// The file name of the node password inside the data dir.
pub const NODE_PASSWORD_FILE: &str = "node-password";

/// The largest node password file read.
const MAX_FILE_BYTES: u64 = 4096;

/// Why the node's credential is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("node password file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something that is not a node password.
    #[error("node password file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: InvalidNodePassword,
    },
    /// No file and no join token: the node cannot join.
    #[error(
        "no node password at {0} and no join token: a node joins with the join token \
         (--token, WASMFLEET_TOKEN or --token-file); it then keeps its own password in that file"
    )]
    CannotJoin(PathBuf),
}

/// The MQTT password the agent logs in with: its node password, preceded by the join token
/// when it has one. Creates the node password on first use (only with a join token: a node
/// without one cannot join, so a fresh password would be useless).
pub fn mqtt_password(path: &Path, join_token: &str) -> Result<String, IdentityError> {
    let join_token = Some(join_token.trim()).filter(|t| !t.is_empty());
    let node_password = match read(path)? {
        Some(password) => password,
        None if join_token.is_some() => create(path)?,
        None => return Err(IdentityError::CannotJoin(path.to_owned())),
    };
    Ok(NodeLogin {
        join_token,
        node_password: &node_password,
    }
    .to_password())
}

/// Reads and checks the node password, `None` when the file does not exist.
pub fn read(path: &Path) -> Result<Option<String>, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io(err)),
    };
    if len > MAX_FILE_BYTES {
        return Err(io(std::io::Error::other(format!(
            "{len} bytes is larger than the limit of {MAX_FILE_BYTES}"
        ))));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let password = text.trim().to_owned();
    validate_node_password(&password).map_err(|source| IdentityError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(password))
}

/// Writes a fresh random node password (0600, synced, then renamed into place).
fn create(path: &Path) -> Result<String, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    let password = hex::encode(rand::random::<[u8; 32]>());
    write_private(path, password.as_bytes()).map_err(io)?;
    tracing::info!(path = %path.display(), "created this node's password (its identity at the server)");
    Ok(password)
}

/// Writes `contents` to `path` readable by the agent's user only (0600), synced, then
/// renamed into place, so a crash never leaves a half-written file under the name.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = private_file(&tmp)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_with_a_token_creates_a_private_password_that_later_starts_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NODE_PASSWORD_FILE);
        let first = mqtt_password(&path, "tok").expect("created");
        let (token, password) = first.split_once(':').expect("token:password");
        assert_eq!(token, "tok");
        assert_eq!(password.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(mqtt_password(&path, "tok").expect("again"), first);
        assert_eq!(mqtt_password(&path, "").expect("no token"), password);
    }

    #[test]
    fn without_a_token_or_a_password_file_the_node_cannot_join() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NODE_PASSWORD_FILE);
        assert!(matches!(
            mqtt_password(&path, " "),
            Err(IdentityError::CannotJoin(_))
        ));
        assert!(!path.exists());
    }

    #[test]
    fn a_malformed_password_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NODE_PASSWORD_FILE);
        std::fs::write(&path, "short").expect("write");
        assert!(matches!(
            mqtt_password(&path, "tok"),
            Err(IdentityError::Invalid { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "short");
    }
}
