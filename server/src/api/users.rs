//! Users beyond the admin token: client certificates signed by the cluster CA.
//!
//! The TLS server asks every client for a certificate and accepts connections without one
//! (kubectl with a token sends none); rustls checks a presented one against the cluster CA
//! (chain, validity, clientAuth). Its subject is the identity, Kubernetes' convention:
//! `CN` the user name, each `O` a group ([`from_certificate`]); the certificates this
//! server signs carry one group at most (rcgen writes one value per attribute type), so
//! further groups are granted through bindings to the user. A node's certificate (the
//! tunnel certificate every agent gets, `identity::certificates`: serverAuth too, SAN = its
//! node name) is the identity `system:node:NAME` in `system:nodes`, as a kubelet's, but only
//! while its Node pins that key ([`authenticate`]): a deleted or re-keyed node's old
//! certificate proves nothing, as on the relay.
//!
//! `POST /apis/wasmfleet.dev/v1/usercertificates` ([`sign`]) certifies a user's key: the
//! client (`wasmfleet user kubeconfig`) keeps its private key and sends the public one; only
//! whoever may `create` `usercertificates` in `wasmfleet.dev` (cluster-admin) may ask.
//! Every signed certificate is recorded ([`crate::identity::user_certificates`]);
//! [`list`] shows the records and [`revoke`] (`POST .../usercertificates/{serial}/revocation`,
//! `create` on the subresource) takes one back: from then on that certificate gets a 401
//! naming its revocation.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::auth::User;
use super::body::{self, MAX_OBJECT_BODY};
use super::status::{ApiError, Cause};
use super::{ApiContext, blocking};
use crate::identity::certificates::{TUNNEL_KEY_ANNOTATION, tunnel_key_sha256};
use crate::identity::user_certificates::{self, RESOURCE};
use crate::informer::Cache;
use crate::store::{ObjectKey, Scope, Store};

/// The group of every node identity.
pub const NODES: &str = "system:nodes";

/// The user name of a node: `system:node:NAME`.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// The identity a (verified) client certificate proves ([`from_certificate`]), or a 401: a
/// node identity only while the Node of that name in `cache` pins the certificate's key; a
/// user identity unless its certificate's record in `cache` is revoked (refused saying so).
pub fn authenticate(cache: &Cache, der: &[u8]) -> Result<User, ApiError> {
    let user = from_certificate(der).ok_or_else(ApiError::unauthorized)?;
    match user.name.strip_prefix("system:node:") {
        Some(node) => node_pinned(cache, node, der)
            .then_some(user)
            .ok_or_else(ApiError::unauthorized),
        None => match revoked(cache, der) {
            Some(why) => Err(ApiError::unauthorized_because(why)),
            None => Ok(user),
        },
    }
}

/// Whether the Node `node` pins the key of the certificate `der`.
fn node_pinned(cache: &Cache, node: &str, der: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    let hash = tunnel_key_sha256(cert.public_key().raw);
    cache
        .get(&ObjectKey::cluster("nodes", node))
        .is_some_and(|pinned| {
            pinned["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION] == hash.as_str()
        })
}

/// Why the user certificate `der` is refused, if its record says it was revoked.
fn revoked(cache: &Cache, der: &[u8]) -> Option<String> {
    let serial = user_certificates::serial_of(der)?;
    let record = cache.get(&ObjectKey::cluster(user_certificates::RESOURCE, &serial))?;
    let at = user_certificates::revocation(&record)?;
    let user = from_certificate(der).map(|u| u.name).unwrap_or_default();
    Some(user_certificates::refusal(&serial, &user, at))
}

/// The identity a (verified) client certificate's subject names, if any.
pub fn from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let server_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.server_auth);
    if server_auth {
        return Some(User::new(&node_user(name), [NODES]));
    }
    let groups: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    Some(User::new(name, groups))
}

/// The longest a user certificate may be valid.
const MAX_DAYS: i64 = 3650;

/// `POST /apis/wasmfleet.dev/v1/usercertificates`: `spec.username`, `spec.groups` (one at
/// most),
/// `spec.publicKey` (base64 of a P-256 SubjectPublicKeyInfo, DER) and `spec.days`
/// (default 365); answered with `status.certificate` and `status.ca` (PEM).
pub async fn sign(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, ApiError> {
    let Some(signer) = ctx.certificates.clone() else {
        return Err(ApiError::unavailable(
            "this server does not sign certificates",
        ));
    };
    let bytes = body::read_limited(&headers, request, MAX_OBJECT_BODY).await?;
    let mut request = body::decode_object(&headers, bytes).await?;
    let (user, groups, spki, days) = parse(&request)?;
    let store = ctx.store.clone();
    let (record, cert, ca) = blocking(move || {
        let der = signer
            .sign_user(
                &user,
                groups.first().map(String::as_str),
                &spki,
                jiff::Span::new().days(days),
            )
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let (serial, record) = user_certificates::record_of(&der, &user, &groups)
            .ok_or_else(|| ApiError::internal(&"the signed certificate does not parse"))?;
        prune_expired(&store)?;
        let record = store.create(&ObjectKey::cluster(RESOURCE, &serial), record)?;
        tracing::info!(user = %user, serial = %serial, "user certificate signed");
        Ok((
            record,
            pem("CERTIFICATE", &der),
            pem("CERTIFICATE", signer.ca_der()),
        ))
    })
    .await?;
    request["metadata"] = record["metadata"].clone();
    request["status"] = json!({"certificate": cert, "ca": ca});
    Ok((StatusCode::CREATED, Json(request)).into_response())
}

/// Deletes the records of certificates that have expired: they prove nothing any more.
fn prune_expired(store: &Store) -> Result<(), ApiError> {
    let now = jiff::Timestamp::now();
    for record in store.list(&Scope::all(RESOURCE))?.items {
        if user_certificates::expired(&record, now)
            && let Some(name) = record["metadata"]["name"].as_str()
        {
            store.delete(&ObjectKey::cluster(RESOURCE, name), None)?;
        }
    }
    Ok(())
}

/// `GET /apis/wasmfleet.dev/v1/usercertificates`: the records of the certificates signed
/// for users (serial, user, groups, expiry), revoked or not.
pub async fn list(State(ctx): State<ApiContext>) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let listing = blocking(move || Ok(store.list(&Scope::all(RESOURCE))?)).await?;
    Ok(Json(json!({
        "apiVersion": "wasmfleet.dev/v1",
        "kind": "UserCertificateList",
        "metadata": {"resourceVersion": listing.revision.to_string()},
        "items": listing.items,
    })))
}

/// `POST /apis/wasmfleet.dev/v1/usercertificates/{serial}/revocation`: revokes the
/// certificate with that serial (hex, as `openssl x509 -serial` prints it), recorded or
/// not. Answered once the authenticator sees it: the next request with it gets a 401.
pub async fn revoke(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<User>,
    Path(serial): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(serial) = user_certificates::parse_serial(&serial) else {
        let cause = Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {serial:?}: a serial number is 1 to 40 hex digits"),
        );
        return Err(ApiError::invalid("UserCertificate", &serial, &[cause]));
    };
    let store = ctx.store.clone();
    let key = ObjectKey::cluster(RESOURCE, &serial);
    let now = jiff::Timestamp::now();
    let revoked = blocking(move || {
        store.upsert_with::<ApiError, _>(&key, |existing| {
            Ok(user_certificates::revoke(
                existing,
                &serial,
                &caller.name,
                now,
            ))
        })
    })
    .await?;
    tracing::info!(serial = %revoked["metadata"]["name"], user = %revoked["spec"]["username"], "user certificate revoked");
    if let Some(cache) = ctx.authorizer.cache() {
        let revision = ctx.store.revision();
        let caught_up = tokio::time::timeout(CACHE_WAIT, cache.wait_for(revision)).await;
        if !matches!(caught_up, Ok(true)) {
            return Err(ApiError::unavailable(
                "the revocation is stored but the authenticator has not seen it yet: it takes effect in a moment",
            ));
        }
    }
    Ok(Json(revoked))
}

/// How long a revocation waits for the authenticator's cache to see it.
const CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type Parsed = (String, Vec<String>, Vec<u8>, i64);

fn parse(request: &Value) -> Result<Parsed, ApiError> {
    let spec = &request["spec"];
    let mut causes = Vec::new();
    let user = spec["username"].as_str().unwrap_or_default().to_owned();
    if user.is_empty() || user.len() > 253 || user.contains(char::is_control) {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.username",
            "Required value: a user name of 1 to 253 printable characters",
        ));
    }
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    if groups
        .iter()
        .any(|g| g.is_empty() || g.contains(char::is_control))
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.groups",
            "Invalid value: groups must be non-empty printable names",
        ));
    }
    if groups.len() > 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.groups",
            format!(
                "Invalid value: {} groups: a user certificate carries one group at most",
                groups.len()
            ),
        ));
    }
    let spki = STANDARD
        .decode(spec["publicKey"].as_str().unwrap_or_default())
        .unwrap_or_default();
    if spki.is_empty() {
        causes.push(crate::api::validation::required("spec.publicKey"));
    }
    let days = spec["days"].as_i64().unwrap_or(365);
    if !(1..=MAX_DAYS).contains(&days) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.days",
            format!("Invalid value: {days}: must be from 1 to {MAX_DAYS}"),
        ));
    }
    match causes.is_empty() {
        true => Ok((user, groups, spki, days)),
        false => Err(ApiError::invalid("UserCertificate", &user, &causes)),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use rcgen::{KeyPair, PublicKeyData};

    use super::*;
    use crate::identity::certificates::NodeCertificates;

    fn signer() -> NodeCertificates {
        let dir = tempfile::tempdir().unwrap();
        let boot = crate::bootstrap::load_or_create(dir.path(), &[]).unwrap();
        NodeCertificates::new(&boot.tls.ca_cert_pem, &boot.tls.ca_key_pem).unwrap()
    }

    #[test]
    fn a_user_certificate_names_the_user_and_its_groups() {
        let key = KeyPair::generate().unwrap();
        let spki = key.subject_public_key_info();
        let day = jiff::Span::new().days(1);
        let der = signer()
            .sign_user("alice", Some("dev"), &spki, day)
            .unwrap();
        let user = from_certificate(&der).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["dev", "system:authenticated"]);
        let der = signer().sign_user("carol", None, &spki, day).unwrap();
        assert_eq!(
            from_certificate(&der).unwrap().groups,
            ["system:authenticated"]
        );
    }

    #[test]
    fn a_node_certificate_is_the_node_identity() {
        let key = KeyPair::generate().unwrap();
        let cert = signer()
            .sign("pi-1", &key.subject_public_key_info())
            .unwrap();
        let user = from_certificate(&cert.cert_der).unwrap();
        assert_eq!(user.name, "system:node:pi-1");
        assert_eq!(user.groups, ["system:nodes", "system:authenticated"]);
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let bad = json!({"spec": {"username": "", "groups": [""], "days": 0}});
        let err = parse(&bad).unwrap_err();
        assert_eq!(
            err.cause_fields(),
            [
                "spec.username",
                "spec.groups",
                "spec.publicKey",
                "spec.days"
            ]
        );
        let two = json!({"spec": {"username": "a", "groups": ["x", "y"], "publicKey": "AAAA"}});
        assert_eq!(parse(&two).unwrap_err().cause_fields(), ["spec.groups"]);
    }
}
