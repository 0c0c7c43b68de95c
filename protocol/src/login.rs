//! How a node logs in to the broker: one MQTT password that carries the node's own
//! credential and, while the node may still have to join, the cluster's join token.
//!
//! Every node has a **node password**: a random secret its agent creates at first start and
//! keeps in its data dir (like k3s' `/etc/rancher/node/password`). The first login under a
//! node name binds the name to that password; from then on only that password logs in under
//! the name. The **join token** only bootstraps: it is needed for the first login, and is
//! ignored afterwards (so rotating it never locks out nodes that already joined).
//!
//! On the wire (username = client id = node name):
//! - `{join token}:{node password}` from an agent that has a join token;
//! - `{node password}` alone from an agent without one (a node that already joined, or one
//!   whose identity an external broker such as Mosquitto keeps: its password file then
//!   holds the node password).
//!
//! Node passwords never contain `:`, so the last `:` separates the two parts.

/// The shortest node password accepted (they are 64 hex characters when generated).
pub const MIN_NODE_PASSWORD_LEN: usize = 16;
/// The longest node password accepted.
pub const MAX_NODE_PASSWORD_LEN: usize = 256;

/// Why a node password is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNodePassword {
    /// Too short or too long.
    #[error(
        "a node password must be {MIN_NODE_PASSWORD_LEN} to {MAX_NODE_PASSWORD_LEN} characters, not {0}"
    )]
    Length(usize),
    /// A character outside printable ASCII, or `:`.
    #[error("a node password may only hold printable ASCII characters other than ':' and space")]
    Character,
}

/// Checks a node password's shape (not its value).
pub fn validate_node_password(password: &str) -> Result<(), InvalidNodePassword> {
    let len = password.len();
    if !(MIN_NODE_PASSWORD_LEN..=MAX_NODE_PASSWORD_LEN).contains(&len) {
        return Err(InvalidNodePassword::Length(len));
    }
    if password.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        Ok(())
    } else {
        Err(InvalidNodePassword::Character)
    }
}

/// What a node presents when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLogin<'a> {
    /// The join token, if the agent has one.
    pub join_token: Option<&'a str>,
    /// The node's own password.
    pub node_password: &'a str,
}

impl<'a> NodeLogin<'a> {
    /// Splits an MQTT password into its parts.
    pub fn parse(password: &'a str) -> Self {
        match password.rsplit_once(':') {
            Some((token, node_password)) => NodeLogin {
                join_token: Some(token),
                node_password,
            },
            None => NodeLogin {
                join_token: None,
                node_password: password,
            },
        }
    }

    /// The MQTT password for these parts.
    pub fn to_password(&self) -> String {
        match self.join_token {
            Some(token) => format!("{token}:{}", self.node_password),
            None => self.node_password.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_round_trips_with_and_without_a_join_token() {
        for login in [
            NodeLogin {
                join_token: Some("abc123"),
                node_password: "0123456789abcdef0123",
            },
            NodeLogin {
                join_token: None,
                node_password: "0123456789abcdef0123",
            },
        ] {
            assert_eq!(NodeLogin::parse(&login.to_password()), login);
        }
    }

    #[test]
    fn the_last_colon_separates_the_token_from_the_node_password() {
        let login = NodeLogin::parse("weird:token:0123456789abcdef");
        assert_eq!(login.join_token, Some("weird:token"));
        assert_eq!(login.node_password, "0123456789abcdef");
    }

    #[test]
    fn node_passwords_have_a_bounded_length_and_no_separator() {
        assert!(validate_node_password(&"a".repeat(64)).is_ok());
        assert_eq!(
            validate_node_password("short"),
            Err(InvalidNodePassword::Length(5))
        );
        assert!(validate_node_password(&"a".repeat(MAX_NODE_PASSWORD_LEN + 1)).is_err());
        assert_eq!(
            validate_node_password("0123456789:abcdef"),
            Err(InvalidNodePassword::Character)
        );
        assert_eq!(
            validate_node_password("0123456789 abcdef"),
            Err(InvalidNodePassword::Character)
        );
    }
}
