//! The Kubernetes verbs on any served [`Kind`]: list (and watch), get, create, update (PUT),
//! patch and delete. Kind-specific rules come from the kind's admission hooks.
//!
//! Dry run: every write honours `dryRun=All` (query, or the `DeleteOptions` body of a
//! DELETE): it is checked, admitted and answered as the real write would be, through a
//! [`Store::dry_run`](crate::store::Store::dry_run) handle that never commits.
//!
//! Admission of updates and patches runs inside the store's read-modify-write transaction,
//! so validation always sees the object it replaces. Every create, update and patch records
//! its field manager in `metadata.managedFields`; a PATCH with
//! `application/apply-patch+yaml` is a server-side apply ([`super::apply`]).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, RawPathParams, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::apply::{self, Writer};
use super::body::{self, MAX_OBJECT_BODY, Patch};
use super::cascade::Propagation;
use super::kinds::{Allocation, Kind, name_of, stamp_type};
use super::kinds::{namespaces, serviceaccounts};
use super::status::ApiError;
use super::{ApiContext, blocking, pagination, table, watch};
use crate::k8s::selectors::Selector;
use crate::store::{ObjectKey, Preconditions, Scope, Store, StoreError, resource_version};

/// The `ns` and `name` path parameters, where the route has them.
pub(super) struct Target {
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    pub(super) fn from(params: &RawPathParams) -> Self {
        let mut target = Target {
            namespace: None,
            name: None,
        };
        for (key, value) in params {
            match key {
                "ns" => target.namespace = Some(value.to_owned()),
                "name" => target.name = Some(value.to_owned()),
                _ => {}
            }
        }
        target
    }

    pub(super) fn key(&self, kind: &Kind) -> Result<ObjectKey, ApiError> {
        let name = self.name.as_deref().unwrap_or_default();
        match (&self.namespace, kind.namespaced) {
            (Some(ns), true) => Ok(ObjectKey::namespaced(kind.plural, ns, name)),
            (None, false) => Ok(ObjectKey::cluster(kind.plural, name)),
            _ => Err(ApiError::no_route()),
        }
    }
}

/// GET on a collection: a list, or a watch with `?watch=true`.
pub async fn list(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from(&params);
    let scope = match &target.namespace {
        Some(ns) => Scope::namespace(kind.plural, ns),
        None => Scope::all(kind.plural),
    };
    let selector = Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)?;
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        let as_table = table::wants_table(&headers);
        return watch::serve(&ctx, kind, scope, selector, &query, as_table).await;
    }
    let page_request = pagination::request(&query, &scope)?;
    let unfiltered = selector.is_empty();
    let store = ctx.store.clone();
    let page = blocking(move || {
        store
            .list_page(&scope, &page_request, |obj| selector.matches(obj))
            .map_err(|err| match err {
                StoreError::Gone { .. } => pagination::expired(),
                other => other.into(),
            })
    })
    .await?;
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(last) = &page.next {
        metadata["continue"] = pagination::encode(page.revision, last).into();
        // As kube-apiserver: only when it counts what the next pages hold.
        if unfiltered {
            metadata["remainingItemCount"] = page.remaining.into();
        }
    }
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|mut obj| {
            stamp_type(&mut obj, kind);
            obj
        })
        .collect();
    if table::wants_table(&headers) {
        let now = jiff::Timestamp::now();
        let mut table = table::render(kind, &items, None, now);
        table["metadata"] = metadata;
        return Ok(axum::Json(table).into_response());
    }
    let list = json!({
        "kind": kind.list_kind,
        "apiVersion": kind.api_version,
        "metadata": metadata,
        "items": items,
    });
    Ok(axum::Json(list).into_response())
}

/// GET on one object.
pub async fn get(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = Target::from(&params).key(kind)?;
    let store = ctx.store.clone();
    let found = blocking(move || Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?)).await?;
    if table::wants_table(&headers) {
        let revision = resource_version(&found).map(str::to_owned);
        let table = table::render(kind, &[found], revision.as_deref(), jiff::Timestamp::now());
        return Ok(axum::Json(table).into_response());
    }
    Ok(respond(StatusCode::OK, found, kind))
}

/// What a write request says about itself: dry run, and who writes (for managedFields).
pub(super) struct WriteOptions {
    /// `dryRun=All`: check and answer, write nothing.
    pub dry_run: bool,
    /// The field manager, the kind's `apiVersion` and the time.
    pub writer: Writer,
}

impl WriteOptions {
    /// Reads `dryRun` and `fieldManager` (the User-Agent's product when absent; an apply
    /// must name one).
    pub fn from_request(
        kind: &Kind,
        uri: &Uri,
        headers: &HeaderMap,
        apply: bool,
    ) -> Result<Self, ApiError> {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(Self {
            dry_run: dry_run(query_dry_run(uri.query()))?,
            writer: Writer {
                manager: apply::manager_of(uri.query(), user_agent, apply)?,
                api_version: kind.api_version.to_owned(),
                time: crate::k8s::time::now_rfc3339(),
                subresource: String::new(),
            },
        })
    }
}

/// POST on a collection.
pub async fn create(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = Target::from(&params);
    let options = WriteOptions::from_request(kind, &uri, &headers, false)?;
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let mut obj = body::decode_object(&headers, bytes).await?;
    place_in_namespace(&mut obj, target.namespace.as_deref())?;
    assign_generated_name(&mut obj);
    admit_new(kind, &mut obj)?;
    apply::record_update(None, &mut obj, &options.writer);
    let key = Target {
        namespace: target.namespace,
        name: Some(name_of(&obj).to_owned()),
    }
    .key(kind)?;
    let store = ctx.store.dry_run(options.dry_run);
    let cidr = ctx.service_cidr;
    let created = blocking(move || {
        if let Some(ns) = &key.namespace {
            namespaces::require(&store, ns)?;
            if kind.plural == "pods" {
                serviceaccounts::require_for_pod(&store, ns, &obj)?;
            }
        }
        store.upsert_with(&key, |current| {
            if current.is_some() {
                return Err(StoreError::AlreadyExists(key.clone()).into());
            }
            allocate(&store, cidr, kind, None, &mut obj)?;
            Ok::<_, ApiError>(obj)
        })
    })
    .await?;
    Ok(respond(StatusCode::CREATED, created, kind))
}

/// Admission of a new object: the server's deletion mark cleared, the kind's checks and
/// defaults, `apiVersion` and `kind` set.
fn admit_new(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    keep_deletion_mark(&Value::Null, obj);
    (kind.admit_create)(obj)?;
    stamp_type(obj, kind);
    Ok(())
}

/// PUT on one object: a full replacement, conditional on `metadata.resourceVersion` when
/// the body carries one.
pub async fn replace(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = Target::from(&params);
    let key = target.key(kind)?;
    let options = WriteOptions::from_request(kind, &uri, &headers, false)?;
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let mut new = body::decode_object(&headers, bytes).await?;
    place_in_namespace(&mut new, target.namespace.as_deref())?;
    if name_of(&new) != key.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({:?}) does not match the name on the URL ({:?})",
            name_of(&new),
            key.name
        )));
    }
    let updated = modify(&ctx, key, kind, options, move |_| Ok(new)).await?;
    Ok(respond(StatusCode::OK, updated, kind))
}

/// PATCH on one object: merge, strategic merge or JSON patch (see [`body`]), or a
/// server-side apply ([`server_side_apply`]).
pub async fn patch(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = Target::from(&params);
    let key = target.key(kind)?;
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let patch = body::decode_patch(&headers, bytes).await?;
    let is_apply = matches!(patch, Patch::Apply(_));
    let options = WriteOptions::from_request(kind, &uri, &headers, is_apply)?;
    let force = apply::force_of(uri.query(), is_apply)?;
    if let Patch::Apply(applied) = patch {
        return server_side_apply(&ctx, kind, &target, applied, options, force).await;
    }
    let updated = modify(&ctx, key, kind, options, move |current| {
        let mut patched = current.clone();
        patch.apply(&mut patched)?;
        Ok(patched)
    })
    .await?;
    Ok(respond(StatusCode::OK, updated, kind))
}

/// A server-side apply of `applied` to the object at `target`: created (201) when missing,
/// else merged (200), then admitted like any create or update.
async fn server_side_apply(
    ctx: &ApiContext,
    kind: &'static Kind,
    target: &Target,
    mut applied: Value,
    options: WriteOptions,
    force: bool,
) -> Result<Response, ApiError> {
    let key = target.key(kind)?;
    check_applied_type(kind, &applied)?;
    place_in_namespace(&mut applied, target.namespace.as_deref())?;
    match name_of(&applied) {
        name if name == key.name => {}
        "" => applied["metadata"]["name"] = key.name.clone().into(),
        other => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({other:?}) does not match the name on the URL ({:?})",
                key.name
            )));
        }
    }
    let store = ctx.store.dry_run(options.dry_run);
    let cidr = ctx.service_cidr;
    let (outcome, obj) = blocking(move || {
        let writer = &options.writer;
        apply_in_store(&store, cidr, kind, &key, &applied, writer, force)
    })
    .await?;
    let code = match outcome {
        Applied::Created => StatusCode::CREATED,
        Applied::Configured | Applied::Unchanged => StatusCode::OK,
    };
    Ok(respond(code, obj, kind))
}

/// What a server-side apply did to the object (the words `kubectl apply` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// The apply changed nothing (nothing was written).
    Unchanged,
}

impl Applied {
    /// `created`, `configured` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// A server-side apply of `applied` (named, placed in its namespace) to `key` in one store
/// transaction, admitted like any create or update. Blocking; the HTTP handler and the
/// MQTT front door both call it.
pub fn apply_in_store(
    store: &Store,
    service_cidr: Ipv4Net,
    kind: &'static Kind,
    key: &ObjectKey,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<(Applied, Value), ApiError> {
    if let (None, Some(ns)) = (store.get(key)?, &key.namespace) {
        namespaces::require(store, ns)?;
        if kind.plural == "pods" {
            serviceaccounts::require_for_pod(store, ns, applied)?;
        }
    }
    // The version the apply merged into, read in the write's own transaction.
    let mut before: Option<Option<String>> = None;
    let obj = store.upsert_with(key, |current| -> Result<Value, ApiError> {
        before = Some(current.and_then(resource_version).map(str::to_owned));
        let mut new = apply::apply(current, applied, writer, force, kind.plural)?;
        match current {
            Some(current) => admit_change(key, kind, current, &mut new)?,
            None => admit_new(kind, &mut new)?,
        }
        allocate(store, service_cidr, kind, current, &mut new)?;
        Ok(new)
    })?;
    let outcome = match before.flatten() {
        None => Applied::Created,
        Some(rv) if Some(rv.as_str()) == resource_version(&obj) => Applied::Unchanged,
        Some(_) => Applied::Configured,
    };
    Ok((outcome, obj))
}

/// An apply configuration must say what it is (kube-apiserver refuses it otherwise).
fn check_applied_type(kind: &Kind, applied: &Value) -> Result<(), ApiError> {
    for (field, expected) in [("apiVersion", kind.api_version), ("kind", kind.kind)] {
        match applied[field].as_str() {
            Some(given) if given == expected => {}
            None | Some("") => {
                return Err(ApiError::bad_request(format!(
                    "{field}: Required value: an apply configuration must set {field} ({expected:?} here)"
                )));
            }
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "{field}: Invalid value: {given:?}: this is the {} endpoint of {}",
                    kind.plural, kind.api_version
                )));
            }
        }
    }
    Ok(())
}

/// The largest `DeleteOptions` body read.
const MAX_DELETE_OPTIONS: usize = 64 * 1024;

/// Whether a request asks for a dry run (`dryRun=All`, from the query or a
/// `DeleteOptions` body). Any other value is refused, as Kubernetes does.
pub fn dry_run<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<bool, ApiError> {
    let mut dry = false;
    for value in values {
        match value {
            "All" => dry = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: unsupported value {other:?}: the only supported value is \"All\""
                )));
            }
        }
    }
    Ok(dry)
}

/// The `dryRun` values in a raw query string.
pub fn query_dry_run(query: Option<&str>) -> impl Iterator<Item = &str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("dryRun="))
}

/// What DELETE honours of its `DeleteOptions` (body or query).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `dryRun=All`: check and answer, write nothing.
    pub dry_run: bool,
    /// `preconditions` (`uid`, `resourceVersion`).
    pub preconditions: Preconditions,
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `gracePeriodSeconds` (pods: see [`crate::k8s::termination`]).
    pub grace_period_seconds: Option<i64>,
}

/// The `DeleteOptions` of a DELETE: its JSON body (possibly empty) and its query.
pub(super) fn delete_options(query: Option<&str>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request(format!("invalid DeleteOptions body: {err}")))?
    };
    let body_dry_run: Vec<&str> = match parsed.get("dryRun") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ApiError::bad_request("dryRun: must be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("dryRun: must be a list of strings")),
    };
    let dry_run = dry_run(query_dry_run(query).chain(body_dry_run))?;
    let precondition = |field: &str| {
        parsed
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let preconditions = Preconditions {
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    };
    let from_query = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("propagationPolicy="));
    let propagation = Propagation::parse(parsed["propagationPolicy"].as_str().or(from_query))?;
    Ok(DeleteOptions {
        dry_run,
        preconditions,
        propagation,
        grace_period_seconds: grace_period(query, &parsed)?,
    })
}

/// `gracePeriodSeconds` from the body, else the query; anything but an integer is a 400.
fn grace_period(query: Option<&str>, parsed: &Value) -> Result<Option<i64>, ApiError> {
    let invalid = || ApiError::bad_request("gracePeriodSeconds: must be an integer");
    match parsed.get("gracePeriodSeconds") {
        None | Some(Value::Null) => {}
        Some(value) => return value.as_i64().map(Some).ok_or_else(invalid),
    }
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("gracePeriodSeconds="))
        .map(|value| value.parse::<i64>().map_err(|_| invalid()))
        .transpose()
}

/// DELETE on one object; returns its last state. Honours `dryRun=All` (query or
/// `DeleteOptions` body: everything is checked and answered as a real delete would be, and
/// nothing is written) and `preconditions.resourceVersion`.
pub async fn delete(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = Target::from(&params).key(kind)?;
    let bytes = body::read_limited(&headers, body, MAX_DELETE_OPTIONS).await?;
    let options = delete_options(uri.query(), &bytes)?;
    let store = ctx.store.clone();
    let deleted = blocking(move || (kind.delete)(&store, &key, &options)).await?;
    Ok(respond(StatusCode::OK, deleted, kind))
}

/// Read-modify-write: `edit` builds the new object from the stored one; the new object must
/// keep its identity, carry the stored resourceVersion if any, and pass admission. The
/// writer's changes are recorded in `managedFields`; a dry run writes nothing.
pub(super) async fn modify<F>(
    ctx: &ApiContext,
    key: ObjectKey,
    kind: &'static Kind,
    options: WriteOptions,
    edit: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(&Value) -> Result<Value, ApiError> + Send + 'static,
{
    let store = ctx.store.dry_run(options.dry_run);
    let cidr = ctx.service_cidr;
    blocking(move || {
        store.update_with(&key, |current: &mut Value| {
            let mut new = edit(current)?;
            admit_change(&key, kind, current, &mut new)?;
            allocate(&store, cidr, kind, Some(current), &mut new)?;
            apply::record_update(Some(current), &mut new, &options.writer);
            *current = new;
            Ok::<_, ApiError>(())
        })
    })
    .await
}

/// Runs the kind's allocation hook, if it has one, inside the write (see
/// [`Kind::allocate`]).
fn allocate(
    store: &Store,
    service_cidr: Ipv4Net,
    kind: &Kind,
    current: Option<&Value>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    match kind.allocate {
        Some(hook) => hook(
            &Allocation {
                store,
                service_cidr,
            },
            current,
            obj,
        ),
        None => Ok(()),
    }
}

/// Admission of a change of `current` to `new`: the resourceVersion precondition, the
/// name, the kind's checks, the server's deletion mark, `apiVersion` and `kind`.
fn admit_change(
    key: &ObjectKey,
    kind: &Kind,
    current: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if let Some(expected) = resource_version(new)
        && Some(expected) != resource_version(current)
    {
        return Err(StoreError::Conflict {
            key: key.clone(),
            expected: expected.to_owned(),
            actual: resource_version(current).unwrap_or_default().to_owned(),
        }
        .into());
    }
    let meta_name = name_of(new).to_owned();
    if !meta_name.is_empty() && meta_name != key.name {
        return Err(ApiError::bad_request("metadata.name cannot be changed"));
    }
    (kind.admit_update)(current, new)?;
    keep_deletion_mark(current, new);
    stamp_type(new, kind);
    Ok(())
}

/// `metadata.deletionTimestamp` is the server's: a client can neither set nor clear it.
fn keep_deletion_mark(old: &Value, new: &mut Value) {
    let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match old.pointer("/metadata/deletionTimestamp") {
        Some(mark) => meta.insert("deletionTimestamp".into(), mark.clone()),
        None => meta.remove("deletionTimestamp"),
    };
}

/// Puts `obj` into the request's namespace; a different namespace in the body is an error.
fn place_in_namespace(obj: &mut Value, namespace: Option<&str>) -> Result<(), ApiError> {
    let Some(namespace) = namespace else {
        return Ok(());
    };
    let given = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    if given.is_some_and(|given| !given.is_empty() && given != namespace) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(map) = obj.as_object_mut() {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("namespace".into(), namespace.into());
        }
    }
    Ok(())
}

/// `metadata.generateName` + 5 random characters, when there is no name.
fn assign_generated_name(obj: &mut Value) {
    if !name_of(obj).is_empty() {
        return;
    }
    let Some(prefix) = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
    else {
        return;
    };
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), crate::k8s::names::generate(&prefix).into());
    }
}

fn respond(code: StatusCode, mut obj: Value, kind: &Kind) -> Response {
    stamp_type(&mut obj, kind);
    (code, axum::Json(obj)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_comes_from_the_query_or_the_delete_options_body() {
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#;
        assert!(delete_options(None, body).is_ok_and(|o| o.dry_run));
        assert!(delete_options(Some("dryRun=All"), b"").is_ok_and(|o| o.dry_run));
        assert!(delete_options(Some("pretty=true"), b" \n").is_ok_and(|o| !o.dry_run));
        assert!(delete_options(None, br#"{"dryRun":[]}"#).is_ok_and(|o| !o.dry_run));
    }

    #[test]
    fn bad_dry_run_values_and_bodies_are_refused() {
        for (query, body) in [
            (Some("dryRun=Some"), &b""[..]),
            (None, br#"{"dryRun":["None"]}"#),
            (None, br#"{"dryRun":"All"}"#),
            (None, br#"{"dryRun":[1]}"#),
            (None, b"{not json"),
        ] {
            assert!(delete_options(query, body).is_err(), "{query:?} {body:?}");
        }
    }

    #[test]
    fn the_propagation_policy_comes_from_the_body_or_the_query() {
        let body = br#"{"kind":"DeleteOptions","propagationPolicy":"Foreground"}"#;
        let options = delete_options(None, body).ok();
        assert_eq!(
            options.map(|o| o.propagation),
            Some(Propagation::Foreground)
        );
        let options = delete_options(Some("propagationPolicy=Orphan"), b"").ok();
        assert_eq!(options.map(|o| o.propagation), Some(Propagation::Orphan));
        assert!(delete_options(None, br#"{"propagationPolicy":"Later"}"#).is_err());
    }

    #[test]
    fn uid_and_resource_version_preconditions_are_read() {
        let body = br#"{"preconditions":{"uid":"u-1","resourceVersion":"42"}}"#;
        assert_eq!(
            delete_options(None, body).ok(),
            Some(DeleteOptions {
                dry_run: false,
                preconditions: Preconditions {
                    uid: Some("u-1".into()),
                    resource_version: Some("42".into()),
                },
                propagation: Propagation::Background,
                grace_period_seconds: None,
            })
        );
    }

    #[test]
    fn the_grace_period_comes_from_the_body_or_the_query() {
        let body = br#"{"kind":"DeleteOptions","gracePeriodSeconds":0}"#;
        let options = delete_options(None, body).ok();
        assert_eq!(options.map(|o| o.grace_period_seconds), Some(Some(0)));
        let options = delete_options(Some("gracePeriodSeconds=7"), b"").ok();
        assert_eq!(options.map(|o| o.grace_period_seconds), Some(Some(7)));
        assert!(delete_options(None, br#"{"gracePeriodSeconds":"soon"}"#).is_err());
        assert!(delete_options(Some("gracePeriodSeconds=x"), b"").is_err());
    }
}
