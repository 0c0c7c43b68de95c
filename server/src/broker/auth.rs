//! Who may connect to the embedded broker, and which topics each identity may use.
//!
//! This is the one seam for broker authentication and authorization: [`Authenticator`]
//! turns CONNECT credentials into an [`Identity`], and [`may_publish`] / [`may_subscribe`]
//! are the pure topic rules. [`BrokerAuth`] adapts both to mqtt5's `AuthProvider`.
//! Nodes log in with their own node password, bound to their name at their first login
//! (which needs the join token): see [`crate::identity`].
//!
//! Identities (the username decides which rule applies):
//! - `wasmfleet-server` + the server password: [`Identity::Server`], everything under `wf/v1/`;
//! - `admin` + the admin token: [`Identity::Admin`], uses the front door only: publishes
//!   module uploads and manifests (`wf/v1/apply`, `wf/v1/apply/{client id}`) and
//!   subscribes only to its own result topic `wf/v1/apply/result/{its client id}`;
//! - any other DNS-1123 name + that node's password (plus the join token at its first
//!   login), with client id equal to the name: [`Identity::Node`], publishes only its own `up/` topics and subscribes only to its own
//!   `down/` topics and the server's presence. (So no node can be named `admin` or
//!   `wasmfleet-server`.)

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use mqtt5::broker::auth::{AuthProvider, AuthResult};
use mqtt5::packet::connect::ConnectPacket;
use mqtt5::protocol::v5::reason_codes::ReasonCode;
use wasmfleet_protocol::{names, topic};

use super::BrokerCredentials;
use crate::identity::{Admission, IdentityError, NodeIdentities, constant_time_eq};

/// The username the server's own MQTT client connects with.
pub const SERVER_USERNAME: &str = "wasmfleet-server";
/// The username of the administrator (module uploads over MQTT).
pub const ADMIN_USERNAME: &str = "admin";

/// An authenticated MQTT client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The control plane itself.
    Server,
    /// An edge agent, by node name.
    Node(String),
    /// A human or CI pushing modules.
    Admin,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No username or no password.
    #[error("anonymous clients are not allowed")]
    Anonymous,
    /// The password does not match the username.
    #[error("bad username or password")]
    BadCredentials,
    /// A node's client id differs from its username (node name).
    #[error("client id {client_id:?} must equal the node name {node:?}")]
    ClientIdMismatch {
        /// The client id sent.
        client_id: String,
        /// The username (node name) sent.
        node: String,
    },
    /// A node login the node identities refused.
    #[error(transparent)]
    Node(#[from] IdentityError),
    /// The check itself failed to run.
    #[error("cannot check the credentials: {0}")]
    Unavailable(String),
}

impl Identity {
    /// The user id mqtt5 carries for the connection; unambiguous, parsed back by
    /// [`Identity::from_user_id`].
    pub fn user_id(&self) -> String {
        match self {
            Identity::Server => "server".to_owned(),
            Identity::Admin => "admin".to_owned(),
            Identity::Node(name) => format!("node:{name}"),
        }
    }

    /// Parses a user id written by [`Identity::user_id`].
    pub fn from_user_id(user_id: &str) -> Option<Identity> {
        match user_id {
            "server" => Some(Identity::Server),
            "admin" => Some(Identity::Admin),
            other => other
                .strip_prefix("node:")
                .filter(|name| names::validate_node_name(name).is_ok())
                .map(|name| Identity::Node(name.to_owned())),
        }
    }
}

/// Checks CONNECT credentials against the cluster's secrets.
#[derive(Clone)]
pub struct Authenticator {
    credentials: BrokerCredentials,
    nodes: NodeIdentities,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for these secrets, checking node logins against `nodes`.
    pub fn new(credentials: BrokerCredentials, nodes: NodeIdentities) -> Self {
        Self { credentials, nodes }
    }

    /// Decides who a client is from its CONNECT fields. Blocking: a node's first login
    /// writes its binding to the store.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Identity, AuthError> {
        let (Some(username), Some(password)) = (username, password) else {
            return Err(AuthError::Anonymous);
        };
        let check = |secret: &str, identity: Identity| {
            if constant_time_eq(secret.as_bytes(), password) && !secret.is_empty() {
                Ok(identity)
            } else {
                Err(AuthError::BadCredentials)
            }
        };
        match username {
            SERVER_USERNAME => check(&self.credentials.server_mqtt_password, Identity::Server),
            ADMIN_USERNAME => check(&self.credentials.admin_token, Identity::Admin),
            node => {
                if names::validate_node_name(node).is_err() {
                    return Err(AuthError::BadCredentials);
                }
                if client_id != node {
                    return Err(AuthError::ClientIdMismatch {
                        client_id: client_id.to_owned(),
                        node: node.to_owned(),
                    });
                }
                let admission = self.nodes.admit(node, password)?;
                if admission == Admission::Joined {
                    tracing::info!(%node, "node joined with the join token; its name is now bound to its node password");
                }
                Ok(Identity::Node(node.into()))
            }
        }
    }
}

fn server_scope() -> String {
    format!("{}/", topic::PREFIX)
}

fn node_up_scope(node: &str) -> String {
    format!("{}/n/{node}/up/", topic::PREFIX)
}

fn node_down_scope(node: &str) -> String {
    format!("{}/n/{node}/down/", topic::PREFIX)
}

/// Whether an admin client may publish to `topic_name`: any front door topic (malformed
/// module topics too: the front door answers them). A request may name any client id as
/// the one whose result topic gets the answer (the subscriber, often another connection of
/// the same user, since one client id cannot be connected twice); what keeps answers
/// private is that only that client id may read them ([`may_subscribe`]).
fn admin_may_publish(topic_name: &str) -> bool {
    topic::parse_front_door(topic_name).is_some()
}

/// Whether `identity` may publish to `topic_name` (a concrete topic, no wildcards).
pub fn may_publish(identity: &Identity, topic_name: &str) -> bool {
    if topic_name.contains(['+', '#']) {
        return false;
    }
    match identity {
        Identity::Server => topic_name.starts_with(&server_scope()),
        Identity::Node(name) => topic_name.starts_with(&node_up_scope(name)),
        Identity::Admin => admin_may_publish(topic_name),
    }
}

/// Whether `identity`, connected as `client_id`, may subscribe to `filter`.
///
/// A filter is allowed when its literal prefix already confines it to the identity's
/// scope; wildcards after that prefix cannot escape it. The admin may only read its own
/// result topic (no wildcards), so one client never sees another's answers.
pub fn may_subscribe(identity: &Identity, client_id: &str, filter: &str) -> bool {
    if filter.starts_with('$') {
        return false;
    }
    match identity {
        Identity::Server => within(filter, &server_scope()),
        Identity::Node(name) => {
            filter == topic::SERVER_STATE
                || filter == topic::SERVICES
                || filter == topic::ROUTES
                || filter == topic::PEERS
                || within(filter, &node_down_scope(name))
        }
        Identity::Admin => {
            topic::valid_client_id(client_id) && filter == topic::result_topic(client_id)
        }
    }
}

/// True when `filter` begins with `scope` (which ends in `/`) and the part of the filter
/// that forms the scope contains no wildcard.
fn within(filter: &str, scope: &str) -> bool {
    filter.starts_with(scope) && filter.len() > scope.len()
}

/// mqtt5's view of [`Authenticator`] and the topic rules.
#[derive(Debug, Clone)]
pub struct BrokerAuth {
    authenticator: Authenticator,
}

impl BrokerAuth {
    /// Wraps an authenticator for the broker.
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

fn identity_of(user_id: Option<&str>) -> Option<Identity> {
    user_id.and_then(Identity::from_user_id)
}

/// The answer to a CONNECT, logged.
fn connect_result(
    client_id: &str,
    client_addr: SocketAddr,
    outcome: Result<Identity, AuthError>,
) -> AuthResult {
    match outcome {
        Ok(identity) => {
            tracing::debug!(client_id, ?identity, "mqtt client authenticated");
            AuthResult::success_with_user(identity.user_id())
        }
        Err(err) => {
            tracing::warn!(client_id, %client_addr, %err, "mqtt connect refused");
            let code = match err {
                AuthError::ClientIdMismatch { .. } => ReasonCode::ClientIdentifierNotValid,
                AuthError::Anonymous
                | AuthError::BadCredentials
                | AuthError::Node(IdentityError::Malformed | IdentityError::NotThisNode(_)) => {
                    ReasonCode::BadUsernameOrPassword
                }
                AuthError::Node(IdentityError::NotJoined(_) | IdentityError::TokenRefused(..)) => {
                    ReasonCode::NotAuthorized
                }
                AuthError::Node(IdentityError::Unavailable(_)) | AuthError::Unavailable(_) => {
                    ReasonCode::ServerUnavailable
                }
            };
            AuthResult::fail_with_reason(code, err.to_string())
        }
    }
}

impl AuthProvider for BrokerAuth {
    fn authenticate<'a>(
        &'a self,
        connect: &'a ConnectPacket,
        client_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = mqtt5::Result<AuthResult>> + Send + 'a>> {
        let authenticator = self.authenticator.clone();
        let (client_id, username, password) = (
            connect.client_id.clone(),
            connect.username.clone(),
            connect.password.clone(),
        );
        Box::pin(async move {
            // A node's first login writes to the store: keep it off the async workers.
            let outcome = tokio::task::spawn_blocking(move || {
                authenticator.authenticate(&client_id, username.as_deref(), password.as_deref())
            })
            .await
            .unwrap_or_else(|err| Err(AuthError::Unavailable(err.to_string())));
            Ok(connect_result(&connect.client_id, client_addr, outcome))
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic_name: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = identity_of(user_id).is_some_and(|id| may_publish(&id, topic_name));
        if !allowed {
            tracing::warn!(client_id, topic = topic_name, "mqtt publish denied");
        }
        Box::pin(async move { allowed })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic_filter: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed =
            identity_of(user_id).is_some_and(|id| may_subscribe(&id, client_id, topic_filter));
        if !allowed {
            tracing::warn!(client_id, filter = topic_filter, "mqtt subscribe denied");
        }
        Box::pin(async move { allowed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::topic::{Down, Up, down, up};

    const NODE_LOGIN: &[u8] = b"node-secret:0123456789abcdef0123";
    /// The client id where the rule does not depend on it.
    const ANY_CLIENT: &str = "some-client";

    fn authenticator() -> Authenticator {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(dir.path().join("s.redb")).expect("store");
        // redb keeps the file open; the directory may go.
        drop(dir);
        Authenticator::new(
            BrokerCredentials {
                admin_token: "admin-secret".into(),
                server_mqtt_password: "server-secret".into(),
            },
            NodeIdentities::new(store, "node-secret"),
        )
    }

    fn node(name: &str) -> Identity {
        Identity::Node(name.into())
    }

    #[test]
    fn each_username_with_its_secret_gets_its_identity() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate("x", Some(SERVER_USERNAME), Some(b"server-secret")),
            Ok(Identity::Server)
        );
        assert_eq!(
            auth.authenticate("cli", Some(ADMIN_USERNAME), Some(b"admin-secret")),
            Ok(Identity::Admin)
        );
        assert_eq!(
            auth.authenticate("pi-1", Some("pi-1"), Some(NODE_LOGIN)),
            Ok(node("pi-1"))
        );
    }

    #[test]
    fn anonymous_clients_are_refused() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate("pi-1", None, None),
            Err(AuthError::Anonymous)
        );
        assert_eq!(
            auth.authenticate("pi-1", Some("pi-1"), None),
            Err(AuthError::Anonymous)
        );
    }

    #[test]
    fn a_secret_of_another_identity_is_refused() {
        let auth = authenticator();
        for (user, pass) in [
            (SERVER_USERNAME, "node-secret"),
            (ADMIN_USERNAME, "server-secret"),
            ("pi-1", "admin-secret:0123456789abcdef0123"),
            ("pi-1", ""),
            ("Bad_Name", "node-secret:0123456789abcdef0123"),
        ] {
            assert!(
                auth.authenticate(user, Some(user), Some(pass.as_bytes()))
                    .is_err(),
                "{user}/{pass}"
            );
        }
    }

    #[test]
    fn a_node_must_use_its_name_as_client_id() {
        assert!(matches!(
            authenticator().authenticate("pi-2", Some("pi-1"), Some(NODE_LOGIN)),
            Err(AuthError::ClientIdMismatch { .. })
        ));
    }

    #[test]
    fn user_ids_round_trip_to_identities() {
        for id in [Identity::Server, Identity::Admin, node("pi-1")] {
            assert_eq!(Identity::from_user_id(&id.user_id()), Some(id));
        }
        assert_eq!(Identity::from_user_id("node:a/b"), None);
        assert_eq!(Identity::from_user_id("pi-1"), None);
    }

    #[test]
    fn a_node_publishes_only_its_own_up_topics() {
        let me = node("pi-1");
        assert!(may_publish(&me, &up("pi-1", Up::Status)));
        assert!(may_publish(&me, &up("pi-1", Up::State)));
        assert!(may_publish(&me, &up("pi-1", Up::Usage)));
        assert!(!may_publish(&me, &up("pi-2", Up::Usage)));
        assert!(!may_publish(&me, &up("pi-2", Up::Status)));
        assert!(!may_publish(&me, &down("pi-1", Down::Desired)));
        assert!(!may_publish(&me, topic::SERVER_STATE));
        assert!(!may_publish(&me, "wf/v1/modules/evil/v1"));
        assert!(!may_publish(&node("pi-1"), "wf/v1/n/pi-10/up/status"));
    }

    #[test]
    fn a_node_subscribes_only_to_its_own_down_topics_and_server_state() {
        let me = node("pi-1");
        assert!(may_subscribe(
            &me,
            ANY_CLIENT,
            &topic::node_down_filter("pi-1")
        ));
        assert!(may_subscribe(&me, ANY_CLIENT, &down("pi-1", Down::Desired)));
        assert!(may_subscribe(&me, ANY_CLIENT, topic::SERVER_STATE));
        assert!(may_subscribe(&me, ANY_CLIENT, topic::SERVICES));
        assert!(may_subscribe(&me, ANY_CLIENT, topic::ROUTES));
        assert!(may_subscribe(&me, ANY_CLIENT, topic::PEERS));
        for filter in [
            "#",
            "wf/#",
            "wf/v1/#",
            "wf/v1/n/+/down/#",
            "wf/v1/n/pi-2/down/#",
            "wf/v1/n/pi-1/up/#",
            "wf/v1/n/pi-1/down/",
            "$SYS/#",
            "$share/g/wf/v1/n/pi-1/down/#",
        ] {
            assert!(!may_subscribe(&me, ANY_CLIENT, filter), "{filter}");
        }
    }

    #[test]
    fn the_server_may_use_everything_under_the_prefix_only() {
        let server = Identity::Server;
        assert!(may_subscribe(&server, ANY_CLIENT, topic::ALL_NODES_UP));
        assert!(may_subscribe(
            &server,
            ANY_CLIENT,
            topic::ALL_MODULE_UPLOADS
        ));
        assert!(may_publish(&server, &down("pi-1", Down::Desired)));
        assert!(may_publish(&server, topic::SERVER_STATE));
        assert!(!may_subscribe(&server, ANY_CLIENT, "#"));
        assert!(!may_subscribe(&server, ANY_CLIENT, "$SYS/#"));
        assert!(!may_publish(&server, "other/topic"));
    }

    #[test]
    fn the_admin_may_only_use_the_front_door() {
        let admin = Identity::Admin;
        assert!(may_publish(&admin, &topic::module_upload("hello", "v1")));
        assert!(may_publish(&admin, "wf/v1/modules/hello"));
        assert!(may_publish(&admin, topic::APPLY));
        assert!(may_publish(&admin, &topic::apply_as("dev")));
        assert!(may_publish(&admin, &topic::apply_as("other")));
        assert!(may_publish(&admin, "wf/v1/modules/hello/v1/other"));
        assert!(!may_publish(&admin, "wf/v1/apply/a/b"));
        assert!(!may_publish(&admin, &topic::result_topic("dev")));
        assert!(!may_publish(&admin, &down("pi-1", Down::Desired)));
        assert!(!may_subscribe(&admin, "dev", "wf/v1/modules/#"));
    }

    #[test]
    fn an_admin_client_reads_only_its_own_results() {
        let admin = Identity::Admin;
        assert!(may_subscribe(&admin, "dev", &topic::result_topic("dev")));
        for filter in [
            topic::result_topic("other"),
            "wf/v1/apply/result/+".to_owned(),
            "wf/v1/apply/result/#".to_owned(),
            "wf/v1/apply/#".to_owned(),
            topic::APPLY.to_owned(),
        ] {
            assert!(!may_subscribe(&admin, "dev", &filter), "{filter}");
        }
        assert!(!may_subscribe(
            &node("dev"),
            "dev",
            &topic::result_topic("dev")
        ));
    }

    #[test]
    fn wildcards_are_never_publishable() {
        assert!(!may_publish(&Identity::Server, "wf/v1/n/+/down/desired"));
        assert!(!may_publish(&node("pi-1"), "wf/v1/n/pi-1/up/#"));
    }
}
