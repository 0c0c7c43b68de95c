//! Who makes a request (authentication) and whether they may (authorization), for every
//! request but the health checks.
//!
//! - [`User`]: an authenticated identity: the admin (the bearer token of
//!   `admin.kubeconfig`, in `system:masters`), the subject of a client certificate of the
//!   cluster CA ([`super::users`]), or a ServiceAccount by its token
//!   (`system:serviceaccount:NS:NAME` in `system:serviceaccounts` and
//!   `system:serviceaccounts:NS`; refused once expired, for another audience, or when its
//!   account or bound pod is gone); every identity is also in `system:authenticated`.
//! - [`Attributes`]: what a request would do ([`super::request_info`] reads them from the
//!   method and path; access reviews and the MQTT front door build them too).
//! - [`Authorizer`]: `system:masters` may do everything; a node what the node authorizer
//!   ([`super::node_authorizer`]) allows for it; everyone else (and a node where that has
//!   no opinion) what RBAC ([`super::rbac`]) grants through the Roles, ClusterRoles and
//!   bindings in the informer's cache.
//! - [`guard`]: the middleware: 401 without a valid credential, 403 (in kube-apiserver's
//!   words, [`forbidden`]) when the authorizer says no; otherwise the [`User`] goes into
//!   the request's extensions, so handlers (`kubectl auth whoami`, `kubectl auth can-i`)
//!   answer for the identity that really made the request.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::node_authorizer::{self, NodeGraph, Verdict};
use super::rbac::{self, Decision, Policy, PolicyRule};
use super::request_info;
use super::status::ApiError;
use crate::identity::service_account_tokens::{Claims, ISSUER, ObjectRef, TokenSigner};
use crate::informer::Cache;
use crate::store::ObjectKey;

/// The group whose members may do everything, whatever RBAC says.
pub const MASTERS: &str = "system:masters";
/// The group of every authenticated identity.
pub const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (`admin`, `alice`, `system:serviceaccount:default:web`).
    pub name: String,
    /// A unique id, when the credential has one (a ServiceAccount's uid).
    pub uid: String,
    /// Its groups (`system:authenticated` included).
    pub groups: Vec<String>,
}

impl User {
    /// The cluster admin: whoever holds the admin token (`admin.kubeconfig`).
    pub fn admin() -> User {
        User::new("admin", [MASTERS])
    }

    /// A user in `groups` and in `system:authenticated`.
    pub fn new<'a>(name: &str, groups: impl IntoIterator<Item = &'a str>) -> User {
        let mut groups: Vec<String> = groups.into_iter().map(str::to_owned).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        User {
            name: name.to_owned(),
            uid: String::new(),
            groups,
        }
    }

    /// Whether the user is in `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// What a request would do (a `SubjectAccessReview`'s attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The verb (`create`, `get`, `list`, `watch`, ...; for a non-resource URL the
    /// lower-case HTTP method).
    pub verb: String,
    /// Whether it is about a resource (else about the non-resource [`Self::path`]).
    pub resource_request: bool,
    /// The API group of a resource request (`""` for the core group).
    pub group: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`log`, `status`, `token`), empty for the object itself.
    pub subresource: String,
    /// The namespace, empty for every namespace or cluster-scoped resources.
    pub namespace: String,
    /// The object's name, empty for a collection.
    pub name: String,
    /// The request path (what a non-resource rule matches).
    pub path: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.to_owned(),
            resource_request: true,
            group: group.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..Attributes::default()
        }
    }
}

/// Decides what identities may do: `system:masters` everything, others what RBAC grants.
#[derive(Clone, Default)]
pub struct Authorizer {
    /// Where the Roles, ClusterRoles and bindings are read; `None`: only `system:masters`
    /// may do anything.
    cache: Option<Cache>,
}

impl Authorizer {
    /// An authorizer reading RBAC objects from `cache` (which must follow the four RBAC
    /// resources).
    pub fn new(cache: Cache) -> Self {
        Authorizer { cache: Some(cache) }
    }

    /// The cache the authorizer reads (token logins check accounts and pods in it).
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// Whether `user` may do what `attributes` describe, and why.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Decision {
        if user.is_master() {
            return Decision {
                allowed: true,
                reason: format!("{} is in {MASTERS}", user.name),
            };
        }
        let Some(cache) = &self.cache else {
            return Decision {
                allowed: false,
                reason: String::new(),
            };
        };
        if let Some(node) = node_authorizer::node_of(user) {
            match node_authorizer::authorize(&CachedPolicy(cache), node, attributes) {
                Verdict::Allow => {
                    return Decision {
                        allowed: true,
                        reason: format!("node authorizer: allowed for node {node:?}"),
                    };
                }
                Verdict::Deny => {
                    return Decision {
                        allowed: false,
                        reason: String::new(),
                    };
                }
                Verdict::NoOpinion => {}
            }
        }
        rbac::authorize(&CachedPolicy(cache), user, attributes)
    }

    /// Every rule `user` holds in `namespace` (`kubectl auth can-i --list`).
    pub fn rules(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        if user.is_master() {
            return vec![
                PolicyRule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: vec!["*".into()],
                    non_resource_urls: vec!["*".into()],
                    ..PolicyRule::default()
                },
            ];
        }
        match &self.cache {
            Some(cache) => rbac::rules_for(&CachedPolicy(cache), user, namespace),
            None => Vec::new(),
        }
    }

    /// `Ok` if `user` may do what `attributes` describe, else the 403 kube-apiserver gives.
    pub fn check(&self, user: &User, attributes: &Attributes) -> Result<(), ApiError> {
        match self.authorize(user, attributes).allowed {
            true => Ok(()),
            false => Err(forbidden(user, attributes)),
        }
    }
}

impl NodeGraph for CachedPolicy<'_> {
    fn pods_on_node(&self, node: &str) -> Vec<Arc<Value>> {
        self.0.pods_on_node(node)
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.0.get(&ObjectKey::namespaced("pods", namespace, name))
    }
}

/// The RBAC objects (and, for the node authorizer, the pods) in the informer's cache.
struct CachedPolicy<'a>(&'a Cache);

impl Policy for CachedPolicy<'_> {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.0.list("clusterrolebindings")
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.0.in_namespace("rolebindings", namespace)
    }

    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.0.get(&ObjectKey::cluster("clusterroles", name))
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.0.get(&ObjectKey::namespaced("roles", namespace, name))
    }
}

/// The 403 of a request the authorizer refused, word for word kube-apiserver's:
/// `pods "web" is forbidden: User "alice" cannot delete resource "pods" in API group ""
/// in the namespace "default"`.
pub fn forbidden(user: &User, attributes: &Attributes) -> ApiError {
    let who = format!("User {:?} cannot {}", user.name, attributes.verb);
    if !attributes.resource_request {
        let why = format!("{who} path {:?}", attributes.path);
        return ApiError::forbidden_request("", "", "", &why);
    }
    let resource = match attributes.subresource.as_str() {
        "" => attributes.resource.clone(),
        sub => format!("{}/{sub}", attributes.resource),
    };
    let scope = match attributes.namespace.as_str() {
        "" => "at the cluster scope".to_owned(),
        ns => format!("in the namespace {ns:?}"),
    };
    let why = format!(
        "{who} resource {resource:?} in API group {:?} {scope}",
        attributes.group
    );
    ApiError::forbidden_request(
        &attributes.group,
        &attributes.resource,
        &attributes.name,
        &why,
    )
}

/// What the middleware needs.
pub struct Guard {
    /// The admin's bearer token.
    pub admin_token: Arc<str>,
    /// Who may do what.
    pub authorizer: Authorizer,
    /// Verifies ServiceAccount tokens; `None`: only the admin token is a bearer token.
    pub tokens: Option<Arc<TokenSigner>>,
}

/// Authenticates the request (401 without a valid credential), authorizes what it asks
/// (403), and passes it on with its [`User`] in the extensions.
pub async fn guard(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let user = match authenticate(&guard, &request) {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    let attributes = request_info::attributes(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    if let Err(refused) = guard.authorizer.check(&user, &attributes) {
        return refused.into_response();
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// The identity the request's credential proves: a bearer token, else a client
/// certificate (already verified against the cluster CA by the TLS layer); a 401 without.
fn authenticate(guard: &Guard, request: &Request) -> Result<User, ApiError> {
    let bearer = request.headers().get(header::AUTHORIZATION).is_some();
    if !bearer {
        let tls = request.extensions().get::<Arc<axum_server::tls::TlsInfo>>();
        let cache = guard.authorizer.cache();
        let (Some(der), Some(cache)) = (tls.and_then(|t| t.peer_certificates.first()), cache)
        else {
            return Err(ApiError::unauthorized());
        };
        return super::users::authenticate(cache, der);
    }
    bearer_user(guard, request).ok_or_else(ApiError::unauthorized)
}

/// The identity a bearer token proves: the admin's, or a ServiceAccount's.
fn bearer_user(guard: &Guard, request: &Request) -> Option<User> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)?;
    if constant_time_eq(presented.as_bytes(), guard.admin_token.as_bytes()) {
        return Some(User::admin());
    }
    let claims = guard
        .tokens
        .as_ref()?
        .verify(presented, ISSUER, jiff::Timestamp::now().as_second())
        .ok()?;
    service_account_user(guard.authorizer.cache()?, &claims)
}

/// The identity of a valid ServiceAccount token, if its account (and the pod it is bound
/// to) still exist with the uids it names: deleting either revokes the token.
fn service_account_user(cache: &Cache, claims: &Claims) -> Option<User> {
    let claim = &claims.kubernetes;
    let namespace = claim.namespace.as_str();
    let same = |resource: &str, reference: &ObjectRef| {
        let key = ObjectKey::namespaced(resource, namespace, &reference.name);
        cache
            .get(&key)
            .is_some_and(|obj| obj["metadata"]["uid"] == reference.uid.as_str())
    };
    if !same("serviceaccounts", &claim.serviceaccount)
        || claim.pod.as_ref().is_some_and(|pod| !same("pods", pod))
    {
        return None;
    }
    let in_namespace = format!("system:serviceaccounts:{namespace}");
    let mut user = User::new(
        &claims.sub,
        ["system:serviceaccounts", in_namespace.as_str()],
    );
    user.uid = claim.serviceaccount.uid.clone();
    Some(user)
}

/// Equality whose time does not depend on where the inputs differ (only on their length,
/// which for our fixed-length tokens gives nothing away).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_may_do_everything_and_others_nothing_without_rbac() {
        let create_pods = Attributes::resource("create", "", "pods", "default", "");
        let authorizer = Authorizer::default();
        assert!(authorizer.authorize(&User::admin(), &create_pods).allowed);
        let nobody = User::new("nobody", []);
        assert!(!authorizer.authorize(&nobody, &create_pods).allowed);
        assert_eq!(nobody.groups, ["system:authenticated"]);
    }

    #[test]
    fn refusals_read_like_kube_apiserver() {
        let alice = User::new("alice", ["dev"]);
        let delete = Attributes::resource("delete", "", "pods", "default", "x");
        let err = forbidden(&alice, &delete);
        assert_eq!(err.code, axum::http::StatusCode::FORBIDDEN);
        assert_eq!(
            err.message,
            r#"pods "x" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "default""#
        );
        let list = Attributes::resource("list", "apps", "deployments", "", "");
        assert_eq!(
            forbidden(&alice, &list).message,
            r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
        let mut log = Attributes::resource("get", "", "pods", "a", "web");
        log.subresource = "log".into();
        assert_eq!(
            forbidden(&alice, &log).message,
            r#"pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "a""#
        );
        let path = Attributes {
            verb: "get".into(),
            path: "/version".into(),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden(&alice, &path).message,
            r#"forbidden: User "alice" cannot get path "/version""#
        );
    }

    #[test]
    fn equal_tokens_match_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
