//! Node identity: which node password each node name is bound to.
//!
//! A node's first login, which needs the join token, binds its name to the SHA-256 of its
//! node password (see [`wasmfleet_protocol::login`]). The binding is the annotation
//! [`NODE_PASSWORD_HASH_ANNOTATION`] of the Node object, created as a stub when the node is
//! new (its birth fills in the rest). From then on only that node password logs in under the
//! name: the join token alone can neither log in as the node nor kick its agent off, because
//! the broker refuses the CONNECT before any session takeover.
//!
//! Deleting the Node object forgets the binding (as k3s forgets a deleted node's password):
//! the device, re-flashed or not, may then join under the name again with the join token.
//!
//! Node certificates ([`certificates`]): the cluster CA certifies each node's tunnel key
//! for its name at every birth; the Node records the key's hash. Deleting the Node forgets
//! that too.
//!
//! ServiceAccount tokens ([`service_account_tokens`]): bound, expiring JWTs signed by the
//! cluster's service account key, which the API accepts as the account. Pod tokens
//! ([`pod_tokens`]): the tokens projected into pods' volumes, bound to the pod, reused
//! until their refresh time.
//!
//! User certificates ([`user_certificates`]): the record of each certificate the CA signs
//! for a user, and its revocation, which the API honours on the next request.
//!
//! Join tokens: the cluster's default token (`<data-dir>/node-token`, replaced by
//! `--rotate-join-token`) and the tokens an admin creates, limited in time and uses and
//! revocable at once ([`tokens`]). Either admits a new node name.
//!
//! With approval required (`--node-approval`), a name bound by the join token is tainted
//! [`UNAPPROVED_TAINT`]`:NoSchedule`: the node runs nothing the scheduler places until an
//! admin removes the taint (`kubectl taint node NAME node.wasmfleet.io/unapproved:NoSchedule-`).

pub mod certificates;
pub mod pod_tokens;
pub mod service_account_tokens;
pub mod tokens;
pub mod user_certificates;

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wasmfleet_protocol::login::{NodeLogin, validate_node_password};

use crate::controllers::node_lifecycle::add_taint;
use crate::k8s::time::now_rfc3339;
use crate::store::{ObjectKey, Store, StoreError};

/// The taint of a node that joined while approval is required, until an admin removes it.
pub const UNAPPROVED_TAINT: &str = "node.wasmfleet.io/unapproved";

/// The Node annotation holding `sha256:{hex}` of the node's password.
pub const NODE_PASSWORD_HASH_ANNOTATION: &str = "wasmfleet.io/node-password-hash";

/// Why a node login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The password is not UTF-8 or holds no well-formed node password.
    #[error("the password is not a node password")]
    Malformed,
    /// The node name is bound to another node password.
    #[error(
        "node {0:?} has joined with another node password: only that node may log in under its name \
         (delete the Node to let a new device join under it)"
    )]
    NotThisNode(String),
    /// A node that has not joined did not present the join token.
    #[error("node {0:?} has not joined: its first login needs the cluster's join token")]
    NotJoined(String),
    /// A node that has not joined presented a created join token that cannot be used.
    #[error("node {0:?} has not joined: {1}")]
    TokenRefused(String, tokens::TokenRefusal),
    /// The bindings could not be read or written.
    #[error("cannot check node credentials: {0}")]
    Unavailable(String),
}

/// How a node login was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The name was bound to this password already.
    Known,
    /// The join token was valid and the name is now bound to this password.
    Joined,
}

/// Checks node logins against the bindings in the store and binds new nodes.
#[derive(Clone)]
pub struct NodeIdentities {
    store: Store,
    join_token: Arc<str>,
    approval: bool,
}

impl std::fmt::Debug for NodeIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentities").finish_non_exhaustive()
    }
}

impl NodeIdentities {
    /// Identities kept in `store`; `join_token` admits new nodes.
    pub fn new(store: Store, join_token: &str) -> Self {
        Self {
            store,
            join_token: Arc::from(join_token),
            approval: false,
        }
    }

    /// Whether nodes that join wait for an admin's approval ([`UNAPPROVED_TAINT`]).
    pub fn requiring_approval(mut self, approval: bool) -> Self {
        self.approval = approval;
        self
    }

    /// Admits `node` if `password` carries its node password, or the join token and a node
    /// password for a name that is not bound yet (then binds it). Blocking (a store write).
    pub fn admit(&self, node: &str, password: &[u8]) -> Result<Admission, IdentityError> {
        let password = std::str::from_utf8(password).map_err(|_| IdentityError::Malformed)?;
        let login = NodeLogin::parse(password);
        validate_node_password(login.node_password).map_err(|_| IdentityError::Malformed)?;
        let hash = password_hash(login.node_password);
        let key = ObjectKey::cluster("nodes", node);
        let stored = self.store.get(&key).map_err(store_error)?;
        if let Some(bound) = stored.as_ref().and_then(bound_hash) {
            return check_bound(node, bound, &hash).map(|()| Admission::Known);
        }
        self.check_join_token(node, login.join_token)?;
        self.bind(&key, node, &hash)
    }

    /// Accepts the default join token, or uses up one use of a created one.
    fn check_join_token(&self, node: &str, token: Option<&str>) -> Result<(), IdentityError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(IdentityError::NotJoined(node.to_owned()));
        };
        if !self.join_token.is_empty()
            && constant_time_eq(token.as_bytes(), self.join_token.as_bytes())
        {
            return Ok(());
        }
        match tokens::consume(&self.store, token, jiff::Timestamp::now()) {
            Ok(()) => Ok(()),
            Err(tokens::TokenRefusal::Malformed) => Err(IdentityError::NotJoined(node.to_owned())),
            Err(refusal) => Err(IdentityError::TokenRefused(node.to_owned(), refusal)),
        }
    }

    /// Binds the name in one transaction; a concurrent first login may have won meanwhile.
    fn bind(&self, key: &ObjectKey, node: &str, hash: &str) -> Result<Admission, IdentityError> {
        let mut admission = Admission::Joined;
        self.store
            .upsert_with(key, |existing| {
                if let Some(bound) = existing.and_then(bound_hash) {
                    check_bound(node, bound, hash)?;
                    admission = Admission::Known;
                    return Ok::<Value, IdentityError>(existing.cloned().unwrap_or(Value::Null));
                }
                let mut obj = with_binding(existing, node, hash);
                if self.approval {
                    add_taint(&mut obj, UNAPPROVED_TAINT, "NoSchedule", &now_rfc3339());
                }
                Ok(obj)
            })
            .map(|_| admission)
    }
}

/// `sha256:{hex}` of a node password. Node passwords are high-entropy random secrets, so a
/// plain hash (no stretching) is enough to keep them out of the store.
pub fn password_hash(node_password: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(node_password.as_bytes()))
    )
}

/// The node password hash a Node object is bound to.
pub fn bound_hash(node: &Value) -> Option<&str> {
    node.pointer("/metadata/annotations")?
        .get(NODE_PASSWORD_HASH_ANNOTATION)?
        .as_str()
}

fn check_bound(node: &str, bound: &str, presented: &str) -> Result<(), IdentityError> {
    if constant_time_eq(bound.as_bytes(), presented.as_bytes()) {
        Ok(())
    } else {
        Err(IdentityError::NotThisNode(node.to_owned()))
    }
}

/// The Node object (a stub when new) with its binding.
fn with_binding(existing: Option<&Value>, node: &str, hash: &str) -> Value {
    let mut obj = existing.cloned().unwrap_or_else(
        || json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}, "spec": {}}),
    );
    if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        if let Some(map) = annotations.as_object_mut() {
            map.insert(NODE_PASSWORD_HASH_ANNOTATION.into(), hash.into());
        }
    }
    obj
}

fn store_error(err: StoreError) -> IdentityError {
    IdentityError::Unavailable(err.to_string())
}

impl From<StoreError> for IdentityError {
    fn from(err: StoreError) -> Self {
        store_error(err)
    }
}

/// Compares secrets without leaking the position of the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn identities() -> (tempfile::TempDir, NodeIdentities) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("s.redb")).expect("store");
        (dir, NodeIdentities::new(store, "join"))
    }

    fn login(token: Option<&str>, pw: &str) -> Vec<u8> {
        NodeLogin {
            join_token: token,
            node_password: pw,
        }
        .to_password()
        .into_bytes()
    }

    #[test]
    fn the_first_login_with_the_join_token_binds_the_name_to_the_node_password() {
        let (_dir, ids) = identities();
        assert_eq!(
            ids.admit("pi-1", &login(Some("join"), PW)),
            Ok(Admission::Joined)
        );
        let node = ids
            .store
            .get(&ObjectKey::cluster("nodes", "pi-1"))
            .expect("get")
            .expect("stub node");
        assert_eq!(bound_hash(&node), Some(password_hash(PW).as_str()));
        assert!(
            !node.to_string().contains(PW),
            "the password itself is never stored"
        );
        assert_eq!(ids.admit("pi-1", &login(None, PW)), Ok(Admission::Known));
        assert_eq!(
            ids.admit("pi-1", &login(Some("join"), PW)),
            Ok(Admission::Known)
        );
    }

    #[test]
    fn the_join_token_cannot_log_in_as_a_node_that_joined_with_another_password() {
        let (_dir, ids) = identities();
        ids.admit("pi-1", &login(Some("join"), PW)).expect("join");
        assert_eq!(
            ids.admit("pi-1", &login(Some("join"), OTHER)),
            Err(IdentityError::NotThisNode("pi-1".into()))
        );
        assert_eq!(
            ids.admit("pi-1", b"join"),
            Err(IdentityError::Malformed),
            "the bare join token (an old agent) is not a node password"
        );
    }

    #[test]
    fn a_new_node_needs_the_right_join_token() {
        let (_dir, ids) = identities();
        for password in [
            login(None, PW),
            login(Some("wrong"), PW),
            login(Some(""), PW),
        ] {
            assert_eq!(
                ids.admit("pi-2", &password),
                Err(IdentityError::NotJoined("pi-2".into()))
            );
        }
        assert!(
            matches!(
                ids.store.get(&ObjectKey::cluster("nodes", "pi-2")),
                Ok(None)
            ),
            "a refused login writes nothing"
        );
    }

    #[test]
    fn with_approval_required_a_joining_node_is_tainted_and_a_known_one_is_left_alone() {
        let (_dir, ids) = identities();
        let ids = ids.requiring_approval(true);
        ids.admit("pi-1", &login(Some("join"), PW)).expect("join");
        let key = ObjectKey::cluster("nodes", "pi-1");
        let node = ids.store.get(&key).expect("get").expect("node");
        let taints = node["spec"]["taints"].as_array().expect("taints");
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0]["key"], UNAPPROVED_TAINT);
        assert_eq!(taints[0]["effect"], "NoSchedule");
        // The admin approves; later logins do not taint it again.
        ids.store
            .update_with(&key, |obj: &mut Value| {
                obj["spec"] = json!({});
                Ok::<(), StoreError>(())
            })
            .expect("approve");
        assert_eq!(
            ids.admit("pi-1", &login(Some("join"), PW)),
            Ok(Admission::Known)
        );
        let node = ids.store.get(&key).expect("get").expect("node");
        assert!(node["spec"].get("taints").is_none());
    }

    #[test]
    fn deleting_the_node_lets_it_join_again() {
        let (_dir, ids) = identities();
        ids.admit("pi-1", &login(Some("join"), PW)).expect("join");
        ids.store
            .delete(&ObjectKey::cluster("nodes", "pi-1"), None)
            .expect("delete");
        assert_eq!(
            ids.admit("pi-1", &login(Some("join"), OTHER)),
            Ok(Admission::Joined)
        );
    }

    #[test]
    fn an_existing_node_without_a_binding_keeps_its_labels_when_bound() {
        let (_dir, ids) = identities();
        let key = ObjectKey::cluster("nodes", "pi-3");
        ids.store
            .create(
                &key,
                json!({"metadata": {"name": "pi-3", "labels": {"site": "barn"}}}),
            )
            .expect("create");
        ids.admit("pi-3", &login(Some("join"), PW)).expect("join");
        let node = ids.store.get(&key).expect("get").expect("node");
        assert_eq!(node["metadata"]["labels"]["site"], "barn");
        assert!(bound_hash(&node).is_some());
    }
}
