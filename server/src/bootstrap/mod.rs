//! First-start setup of a data directory, and its reload on later starts.
//!
//! Layout of `--data-dir`:
//! - `credentials.json` (0600): [`Credentials`] (admin token, node token, server MQTT password);
//! - `tls/ca.crt`, `tls/ca.key` (0600): the cluster CA, created once;
//! - `tls/server.crt`, `tls/server.key` (0600): the serving certificate of the API and of the
//!   embedded MQTT broker, re-issued every start for `localhost`, `127.0.0.1`, the hostname
//!   and every `--tls-san`. Agents trust `tls/ca.crt` (`--ca-file`);
//! - `node-token` (0600): the node join token, for copying onto agents;
//! - `secrets-encryption.key` (0600): the key Secrets are encrypted with in the store
//!   ([`secrets_key`]), created once;
//! - `admin.kubeconfig` (0600): written by [`write_kubeconfig`] once the API port is known,
//!   on every start (the port may change).

mod credentials;
pub(crate) mod files;
mod kubeconfig;
mod pki;
pub mod secrets_key;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use credentials::Credentials;
pub use kubeconfig::{api_url, render as render_kubeconfig};
pub use pki::TlsMaterial;
pub(crate) use pki::{ca_issuer, set_validity};

/// Setting up the data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating a key or certificate failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// Everything a data directory provides to the server.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The cluster's secrets.
    pub credentials: Credentials,
    /// The TLS material of the API and the embedded broker.
    pub tls: TlsMaterial,
    /// Encrypts Secrets in the store.
    pub secrets_cipher: std::sync::Arc<crate::store::SecretsCipher>,
}

/// Loads the data directory's secrets and TLS material, creating whatever is missing.
/// `extra_sans` are added to the serving certificate's subject alternative names.
pub fn load_or_create(data_dir: &Path, extra_sans: &[String]) -> Result<Bootstrap, BootstrapError> {
    std::fs::create_dir_all(data_dir).map_err(|source| BootstrapError::Io {
        path: data_dir.to_owned(),
        source,
    })?;
    let credentials = Credentials::load_or_create(&data_dir.join("credentials.json"))?;
    write_file(&data_dir.join("node-token"), &credentials.node_token)?;
    let tls = pki::load_or_create(&data_dir.join("tls"), &serving_sans(extra_sans))?;
    let secrets_cipher = secrets_key::load_or_create(&data_dir.join(secrets_key::FILE))?;
    Ok(Bootstrap {
        credentials,
        tls,
        secrets_cipher,
    })
}

/// Puts a new secrets encryption key first in `secrets-encryption.key`; the store reseals
/// every Secret with it as it opens, then [`retire_old_secrets_keys`] drops the old ones.
pub fn rotate_secrets_key(
    data_dir: &Path,
    bootstrap: &mut Bootstrap,
) -> Result<(), BootstrapError> {
    bootstrap.secrets_cipher = secrets_key::rotate(&data_dir.join(secrets_key::FILE))?;
    Ok(())
}

/// Keeps only the current secrets encryption key, once the store has resealed every
/// Secret with it (after it opened).
pub fn retire_old_secrets_keys(data_dir: &Path) -> Result<(), BootstrapError> {
    secrets_key::retire_old(&data_dir.join(secrets_key::FILE))
}

/// Replaces the node join token (in `credentials.json` and `node-token`) with a new one.
pub fn rotate_join_token(data_dir: &Path, bootstrap: &mut Bootstrap) -> Result<(), BootstrapError> {
    let mut credentials = bootstrap.credentials.clone();
    credentials.rotate_node_token();
    credentials.save(&data_dir.join("credentials.json"))?;
    write_file(&data_dir.join("node-token"), &credentials.node_token)?;
    bootstrap.credentials = credentials;
    Ok(())
}

/// Writes `<data-dir>/admin.kubeconfig` for an API listening on `api_addr`.
pub fn write_kubeconfig(
    data_dir: &Path,
    api_addr: SocketAddr,
    bootstrap: &Bootstrap,
) -> Result<PathBuf, BootstrapError> {
    let path = data_dir.join("admin.kubeconfig");
    let text = kubeconfig::render(
        &api_url(api_addr),
        &bootstrap.tls.ca_cert_pem,
        &bootstrap.credentials.admin_token,
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// `localhost`, `127.0.0.1`, `::1`, the machine's hostname, then the extras, without
/// duplicates.
fn serving_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    sans.extend(hostname());
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|san| !san.is_empty() && seen.insert(san.clone()));
    sans
}

/// The machine's hostname, from the kernel (no libc call needed on Linux).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

fn write_file(path: &Path, text: &str) -> Result<(), BootstrapError> {
    files::write_private(path, text.as_bytes()).map_err(|source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotating_the_join_token_replaces_it_on_disk_and_keeps_the_other_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mut boot = load_or_create(dir.path(), &[]).unwrap();
        let before = boot.credentials.clone();
        rotate_join_token(dir.path(), &mut boot).unwrap();
        assert_ne!(boot.credentials.node_token, before.node_token);
        assert_eq!(boot.credentials.admin_token, before.admin_token);
        let file = std::fs::read_to_string(dir.path().join("node-token")).unwrap();
        assert_eq!(file.trim(), boot.credentials.node_token);
        let reloaded = load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(reloaded.credentials, boot.credentials);
    }

    #[test]
    fn a_second_start_reloads_the_same_secrets_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        let second = load_or_create(dir.path(), &["edge.example".into()]).unwrap();
        assert_eq!(first.credentials, second.credentials);
        assert_eq!(first.tls.ca_cert_pem, second.tls.ca_cert_pem);
        let token = std::fs::read_to_string(dir.path().join("node-token")).unwrap();
        assert_eq!(token, first.credentials.node_token);
    }

    #[test]
    fn secrets_are_distinct_and_long() {
        let c = Credentials::generate();
        assert_eq!(c.admin_token.len(), 64);
        assert_ne!(c.admin_token, c.node_token);
        assert_ne!(c.node_token, c.server_mqtt_password);
    }

    #[test]
    fn sans_include_loopback_and_extras_once() {
        let sans = serving_sans(&["localhost".into(), "10.1.2.3".into()]);
        assert_eq!(sans.iter().filter(|s| *s == "localhost").count(), 1);
        assert!(sans.contains(&"127.0.0.1".to_owned()));
        assert!(sans.contains(&"10.1.2.3".to_owned()));
    }

    #[test]
    fn the_kubeconfig_carries_the_bound_port() {
        let dir = tempfile::tempdir().unwrap();
        let boot = load_or_create(dir.path(), &[]).unwrap();
        let path = write_kubeconfig(dir.path(), "0.0.0.0:4321".parse().unwrap(), &boot).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("https://127.0.0.1:4321"), "{text}");
    }
}
