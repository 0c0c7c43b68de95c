//! The shared secrets of a cluster: the admin token (HTTPS API and MQTT `admin`), the node
//! join token, and the server's own MQTT password.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BootstrapError, files};

/// The cluster's secrets, created on first start and reloaded afterwards.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Bearer token for the HTTPS API (written into `admin.kubeconfig`); also the MQTT
    /// password of the `admin` user.
    pub admin_token: String,
    /// The token nodes join with (MQTT password of every node; written to `node-token`).
    pub node_token: String,
    /// The MQTT password of the `wasmfleet-server` user.
    pub server_mqtt_password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Fresh random secrets (256 bits each, hex).
    pub fn generate() -> Self {
        Self {
            admin_token: random_token(),
            node_token: random_token(),
            server_mqtt_password: random_token(),
        }
    }

    /// Loads `path`, or generates and saves new credentials when it does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, BootstrapError> {
        let io = |source| BootstrapError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(text) = files::read_optional(path).map_err(io)? {
            return serde_json::from_str(&text).map_err(|err| BootstrapError::Corrupt {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
        let credentials = Self::generate();
        credentials.save(path)?;
        Ok(credentials)
    }

    /// A new random join token. Nodes that joined log in with their own passwords and are
    /// not affected; the old token no longer admits new nodes.
    pub(crate) fn rotate_node_token(&mut self) {
        self.node_token = random_token();
    }

    /// Writes the credentials to `path` (0600).
    pub(crate) fn save(&self, path: &Path) -> Result<(), BootstrapError> {
        let text = serde_json::to_vec_pretty(self).map_err(|err| BootstrapError::Corrupt {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        files::write_private(path, &text).map_err(|source| BootstrapError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
