//! ServiceAccounts (core/v1) and their TokenRequest subresource.
//!
//! - Each namespace has a `default` account, created by the serviceaccount controller
//!   (`controllers::serviceaccounts`), or by the first pod that needs it before the
//!   controller got there ([`require_for_pod`]).
//! - A new pod runs as `spec.serviceAccountName` (defaulted to `default`); an account that
//!   does not exist refuses the pod with kube-apiserver's 403 (`error looking up service
//!   account NS/NAME: serviceaccount "NAME" not found`). One rule ([`set_account`],
//!   [`require_for_pod`], together [`admit_pod`]) for the API's pods and the workload
//!   controllers' (`controllers::writes::create_pod`, which reports a refusal as the
//!   controller's `FailedCreate` event and retries).
//! - `POST .../serviceaccounts/NAME/token` (`kubectl create token NAME [--duration D]
//!   [--audience A] [--bound-object-kind Pod --bound-object-name P]`): a signed, expiring
//!   JWT for the account ([`crate::identity::service_account_tokens`]), bound to a pod when
//!   asked ([`pod_token`]). Tokens projected into pods' volumes are issued by
//!   [`crate::identity::pod_tokens`].

use axum::Json;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::{Value, json};

use super::{Column, Kind, READ_WRITE, Subresource, name_of};
use crate::api::body::{self, MAX_OBJECT_BODY};
use crate::api::objects::Target;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::api::{ApiContext, blocking, cascade, router};
use crate::identity::service_account_tokens::{
    self as tokens, Claims, KubernetesClaim, ObjectRef, TokenSigner,
};
use crate::k8s::references::DEFAULT_SERVICE_ACCOUNT;
use crate::store::{ObjectKey, Store, StoreError};

/// ServiceAccounts (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    list_kind: "ServiceAccountList",
    short_names: &["sa"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[Subresource {
        name: "token",
        kind: "TokenRequest",
        group_version: Some(("authentication.k8s.io", "v1")),
        verbs: &["create"],
        route: token_route,
    }],
    columns: &[
        Column::new("Name"),
        Column::new("Secrets"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const NAME_ONLY: Shape = Shape::Object(&[("name", Shape::Str)]);
const SERVICE_ACCOUNT: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("secrets", Shape::Ignored),
    ("imagePullSecrets", Shape::List(&NAME_ONLY)),
    ("automountServiceAccountToken", Shape::Bool),
]);

fn admit_create(account: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(account, &SERVICE_ACCOUNT, "", &mut causes);
    validation::check_type_meta(account, KIND.api_version, KIND.kind, &mut causes);
    validation::check_metadata(account, &mut causes);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(KIND.kind, name_of(account), &causes)),
    }
}

fn admit_update(_old: &Value, account: &mut Value) -> Result<(), ApiError> {
    admit_create(account)
}

fn cells(account: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let secrets = account["secrets"].as_array().map_or(0, Vec::len);
    vec![
        text(account, "/metadata/name"),
        secrets.into(),
        age(account, now),
    ]
}

/// The `default` account of `namespace`.
pub fn default_account(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
    })
}

/// Creates the `default` account of `namespace` unless it exists.
pub fn ensure_default(store: &Store, namespace: &str) -> Result<(), StoreError> {
    let key = ObjectKey::namespaced(KIND.plural, namespace, DEFAULT_SERVICE_ACCOUNT);
    match store.create(&key, default_account(namespace)) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The account a pod runs as: `spec.serviceAccountName`, else `default`.
pub fn account_of(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
}

/// Pod admission, pure: the pod runs as `default` unless it names its account
/// (`spec.serviceAccountName`, and the deprecated `spec.serviceAccount` beside it).
pub fn set_account(pod: &mut Value) {
    let account = account_of(pod).to_owned();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), account.clone().into());
        spec.insert("serviceAccount".into(), account.into());
    }
}

/// Pod admission against the store (outside the pod's write): its account must exist. A
/// missing `default` is created (what the controller does for every namespace; a pod in a
/// namespace made a moment ago must not lose the race); any other refuses the pod
/// ([`StoreError::Refused`], the API's 403), as kube-apiserver's ServiceAccount admission.
pub fn require_for_pod(store: &Store, namespace: &str, pod: &Value) -> Result<(), StoreError> {
    let account = account_of(pod);
    let key = ObjectKey::namespaced(KIND.plural, namespace, account);
    if store.get(&key)?.is_some() {
        return Ok(());
    }
    if account == DEFAULT_SERVICE_ACCOUNT {
        return ensure_default(store, namespace);
    }
    // A controller's pod has no name yet: Kubernetes names it by its `generateName`.
    let name = match name_of(pod) {
        "" => pod["metadata"]["generateName"].as_str().unwrap_or_default(),
        name => name,
    };
    Err(StoreError::Refused {
        key: ObjectKey::namespaced("pods", namespace, name),
        reason: format!(
            "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
        ),
    })
}

/// The whole ServiceAccount admission of a new pod in `namespace`: [`set_account`], then
/// [`require_for_pod`].
pub fn admit_pod(store: &Store, namespace: &str, pod: &mut Value) -> Result<(), StoreError> {
    set_account(pod);
    require_for_pod(store, namespace, pod)
}

fn token_route() -> MethodRouter<ApiContext> {
    post(request_token).fallback(router::method_not_allowed)
}

/// A token for `account`, bound to `pod` when given, valid from `now` for `seconds`, for
/// `audiences` (none: the API).
pub fn pod_token(
    signer: &TokenSigner,
    account: &Value,
    pod: Option<&Value>,
    audiences: Vec<String>,
    (now, seconds): (i64, i64),
) -> Result<(String, Claims), tokens::TokenError> {
    let reference = |obj: &Value| ObjectRef {
        name: name_of(obj).to_owned(),
        uid: obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let kubernetes = KubernetesClaim {
        namespace: account["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        serviceaccount: reference(account),
        pod: pod.map(reference),
    };
    let claims = Claims::new(kubernetes, audiences, now, seconds);
    Ok((signer.mint(&claims)?, claims))
}

/// `POST .../serviceaccounts/NAME/token`: the TokenRequest answered with `status.token`
/// and `status.expirationTimestamp`.
async fn request_token(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, ApiError> {
    let Some(signer) = ctx.tokens.clone() else {
        return Err(ApiError::unavailable("this server issues no tokens"));
    };
    let key = Target::from(&params).key(&KIND)?;
    let (namespace, name) = (key.namespace.clone().unwrap_or_default(), key.name.clone());
    let bytes = body::read_limited(&headers, request, MAX_OBJECT_BODY).await?;
    let mut review = body::decode_object(&headers, bytes).await?;
    let (audiences, seconds, bound) = token_spec(&review)?;
    let store = ctx.store.clone();
    let (token, claims) = blocking(move || {
        let account = store
            .get(&key)?
            .ok_or_else(|| ApiError::not_found(KIND.plural, &name))?;
        let pod = match bound {
            Some((pod, uid)) => Some(bound_pod(&store, &namespace, &pod, &uid)?),
            None => None,
        };
        let now = jiff::Timestamp::now().as_second();
        pod_token(&signer, &account, pod.as_ref(), audiences, (now, seconds))
            .map_err(|err| ApiError::internal(&err))
    })
    .await?;
    let expires =
        jiff::Timestamp::from_second(claims.exp).map_or_else(|_| String::new(), |t| t.to_string());
    review["apiVersion"] = "authentication.k8s.io/v1".into();
    review["kind"] = "TokenRequest".into();
    review["spec"]["audiences"] = json!(claims.aud);
    review["spec"]["expirationSeconds"] = json!(seconds);
    review["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok((StatusCode::CREATED, Json(review)).into_response())
}

type TokenSpec = (Vec<String>, i64, Option<(String, String)>);

/// `spec.audiences`, `spec.expirationSeconds` (default an hour, 10 minutes to 48 hours)
/// and `spec.boundObjectRef` (a Pod: name, and uid if given).
fn token_spec(review: &Value) -> Result<TokenSpec, ApiError> {
    let spec = &review["spec"];
    let audiences = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(tokens::DEFAULT_EXPIRATION);
    let mut causes = Vec::new();
    if !(tokens::MIN_EXPIRATION..=tokens::MAX_EXPIRATION).contains(&seconds) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.expirationSeconds",
            format!(
                "Invalid value: {seconds}: must be from {} to {} seconds",
                tokens::MIN_EXPIRATION,
                tokens::MAX_EXPIRATION
            ),
        ));
    }
    let bound = &spec["boundObjectRef"];
    let bound = match bound["kind"].as_str() {
        None | Some("") => None,
        Some("Pod") => Some((
            bound["name"].as_str().unwrap_or_default().to_owned(),
            bound["uid"].as_str().unwrap_or_default().to_owned(),
        )),
        Some(other) => {
            causes.push(validation::not_supported(
                "spec.boundObjectRef.kind",
                &format!("{other:?}"),
                &["Pod"],
            ));
            None
        }
    };
    match causes.is_empty() {
        true => Ok((audiences, seconds, bound)),
        false => Err(ApiError::invalid("TokenRequest", "", &causes)),
    }
}

/// The pod a token is bound to: it must exist (with `uid`, when given).
fn bound_pod(store: &Store, namespace: &str, name: &str, uid: &str) -> Result<Value, ApiError> {
    let pod = store
        .get(&ObjectKey::namespaced("pods", namespace, name))?
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    if !uid.is_empty() && pod["metadata"]["uid"] != uid {
        return Err(ApiError::conflict(
            "pods",
            name,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record"
            ),
        ));
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_request_is_checked_and_defaulted() {
        let (audiences, seconds, bound) = token_spec(&json!({"spec": {}})).unwrap();
        assert!(audiences.is_empty());
        assert_eq!((seconds, bound), (3600, None));
        let asked = json!({"spec": {"audiences": ["x"], "expirationSeconds": 600,
            "boundObjectRef": {"kind": "Pod", "name": "web", "uid": "u"}}});
        let (audiences, seconds, bound) = token_spec(&asked).unwrap();
        assert_eq!(audiences, ["x"]);
        assert_eq!((seconds, bound), (600, Some(("web".into(), "u".into()))));
        let bad = json!({"spec": {"expirationSeconds": 5, "boundObjectRef": {"kind": "Secret"}}});
        assert_eq!(
            token_spec(&bad).unwrap_err().cause_fields(),
            ["spec.expirationSeconds", "spec.boundObjectRef.kind"]
        );
    }

    #[test]
    fn a_pod_bound_token_names_account_and_pod() {
        let signer = TokenSigner::from_pkcs8(&TokenSigner::generate().unwrap()).unwrap();
        let account = json!({"metadata": {"name": "web", "namespace": "a", "uid": "sa-1"}});
        let pod = json!({"metadata": {"name": "web-1", "namespace": "a", "uid": "pod-1"}});
        let (token, claims) =
            pod_token(&signer, &account, Some(&pod), Vec::new(), (1000, 600)).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:a:web");
        assert_eq!(claims.kubernetes.serviceaccount.uid, "sa-1");
        assert_eq!(
            claims.kubernetes.pod.as_ref().map(|p| p.uid.as_str()),
            Some("pod-1")
        );
        assert_eq!(signer.verify(&token, tokens::ISSUER, 1001).unwrap(), claims);
    }

    #[test]
    fn a_new_pod_runs_as_an_account_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        // `default` is made when missing; the pod is given its name.
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}});
        admit_pod(&store, "team", &mut pod).unwrap();
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["serviceAccount"], "default");
        let default = ObjectKey::namespaced("serviceaccounts", "team", "default");
        assert!(store.get(&default).unwrap().is_some());
        // Another account must exist; a controller's pod is named by its generateName.
        let mut pod = json!({"metadata": {"generateName": "web-"},
            "spec": {"serviceAccountName": "missing"}});
        let refused = admit_pod(&store, "team", &mut pod).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "pods \"web-\" is forbidden: error looking up service account team/missing: \
             serviceaccount \"missing\" not found"
        );
        let api = ApiError::from(refused);
        assert_eq!(api.code, StatusCode::FORBIDDEN);
        store
            .create(
                &ObjectKey::namespaced("serviceaccounts", "team", "missing"),
                json!({"metadata": {"name": "missing", "namespace": "team"}}),
            )
            .unwrap();
        assert!(admit_pod(&store, "team", &mut pod).is_ok());
    }

    #[test]
    fn a_pod_runs_as_its_account_or_default() {
        assert_eq!(account_of(&json!({"spec": {}})), "default");
        assert_eq!(
            account_of(&json!({"spec": {"serviceAccountName": "web"}})),
            "web"
        );
    }
}
