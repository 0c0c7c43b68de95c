//! The Kubernetes verbs on any served [`Kind`]: list (and watch), get, create, update (PUT),
//! patch and delete. Kind-specific rules come from the kind's admission hooks.
//!
//! Admission of updates and patches runs inside the store's read-modify-write transaction,
//! so validation always sees the object it replaces.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, RawPathParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body::{self, MAX_OBJECT_BODY};
use super::kinds::{Kind, Resource, name_of, stamp_type};
use super::selectors::Selector;
use super::status::{ApiError, success};
use super::{ApiContext, blocking, namespaces, table, watch};
use crate::store::{ObjectKey, Scope, StoreError, resource_version};

/// The `ns` and `name` path parameters, where the route has them.
struct Target {
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    fn from(params: &RawPathParams) -> Self {
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

    fn key(&self, kind: &Kind) -> Result<ObjectKey, ApiError> {
        let name = self.name.as_deref().unwrap_or_default();
        match (&self.namespace, kind.namespaced) {
            (Some(ns), true) => Ok(ObjectKey::namespaced(kind.plural, ns, name)),
            (None, false) => Ok(ObjectKey::cluster(kind.plural, name)),
            _ => Err(ApiError::no_route()),
        }
    }
}

/// GET on a collection: a list, or a watch with `?watch=true`.
pub async fn list<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = R::KIND;
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
    let store = ctx.store.clone();
    let listing = blocking(move || Ok(store.list(&scope)?)).await?;
    let items: Vec<Value> = listing
        .items
        .into_iter()
        .filter(|obj| selector.matches(obj))
        .map(|mut obj| {
            stamp_type(&mut obj, kind);
            obj
        })
        .collect();
    let revision = listing.revision.to_string();
    if table::wants_table(&headers) {
        let now = jiff::Timestamp::now();
        return Ok(axum::Json(table::render(kind, &items, Some(&revision), now)).into_response());
    }
    let list = json!({
        "kind": kind.list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": revision},
        "items": items,
    });
    Ok(axum::Json(list).into_response())
}

/// GET on one object.
pub async fn get<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = Target::from(&params).key(R::KIND)?;
    let store = ctx.store.clone();
    let found = blocking(move || Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?)).await?;
    if table::wants_table(&headers) {
        let revision = resource_version(&found).map(str::to_owned);
        let table = table::render(
            R::KIND,
            &[found],
            revision.as_deref(),
            jiff::Timestamp::now(),
        );
        return Ok(axum::Json(table).into_response());
    }
    Ok(respond(StatusCode::OK, found, R::KIND))
}

/// POST on a collection.
pub async fn create<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = R::KIND;
    let target = Target::from(&params);
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let mut obj = body::decode_object(&headers, bytes).await?;
    place_in_namespace(&mut obj, target.namespace.as_deref())?;
    assign_generated_name(&mut obj);
    (kind.admit_create)(&mut obj)?;
    stamp_type(&mut obj, kind);
    let key = Target {
        namespace: target.namespace,
        name: Some(name_of(&obj).to_owned()),
    }
    .key(kind)?;
    let store = ctx.store.clone();
    let created = blocking(move || {
        if let Some(ns) = &key.namespace {
            namespaces::require(&store, ns)?;
        }
        Ok(store.create(&key, obj)?)
    })
    .await?;
    Ok(respond(StatusCode::CREATED, created, kind))
}

/// PUT on one object: a full replacement, conditional on `metadata.resourceVersion` when
/// the body carries one.
pub async fn replace<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = R::KIND;
    let target = Target::from(&params);
    let key = target.key(kind)?;
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
    let updated = modify(&ctx, key, kind, move |_| Ok(new)).await?;
    Ok(respond(StatusCode::OK, updated, kind))
}

/// PATCH on one object (merge, strategic merge or JSON patch; see [`body`]).
pub async fn patch<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = R::KIND;
    let key = Target::from(&params).key(kind)?;
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let patch = body::decode_patch(&headers, bytes).await?;
    let updated = modify(&ctx, key, kind, move |current| {
        let mut patched = current.clone();
        patch.apply(&mut patched)?;
        Ok(patched)
    })
    .await?;
    Ok(respond(StatusCode::OK, updated, kind))
}

/// DELETE on one object; returns its last state.
pub async fn delete<R: Resource>(
    State(ctx): State<ApiContext>,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let kind = R::KIND;
    let key = Target::from(&params).key(kind)?;
    let store = ctx.store.clone();
    let is_namespace = std::ptr::eq(kind, &super::kinds::NAMESPACES);
    let deleted = blocking(move || {
        if is_namespace {
            namespaces::check_deletable(&store, &key.name)?;
        }
        Ok(store.delete(&key, None)?)
    })
    .await?;
    if is_namespace {
        return Ok(axum::Json(success(kind.plural, name_of(&deleted))).into_response());
    }
    Ok(respond(StatusCode::OK, deleted, kind))
}

/// Read-modify-write: `edit` builds the new object from the stored one; the new object must
/// keep its identity, carry the stored resourceVersion if any, and pass admission.
async fn modify<F>(
    ctx: &ApiContext,
    key: ObjectKey,
    kind: &'static Kind,
    edit: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(&Value) -> Result<Value, ApiError> + Send + 'static,
{
    let store = ctx.store.clone();
    blocking(move || {
        store.update_with(&key, |current: &mut Value| {
            let mut new = edit(current)?;
            if let Some(expected) = resource_version(&new)
                && Some(expected) != resource_version(current)
            {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: expected.to_owned(),
                    actual: resource_version(current).unwrap_or_default().to_owned(),
                }
                .into());
            }
            let meta_name = name_of(&new).to_owned();
            if !meta_name.is_empty() && meta_name != key.name {
                return Err(ApiError::bad_request("metadata.name cannot be changed"));
            }
            (kind.admit_update)(current, &mut new)?;
            stamp_type(&mut new, kind);
            *current = new;
            Ok::<_, ApiError>(())
        })
    })
    .await
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
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), format!("{prefix}{suffix}").into());
    }
}

fn respond(code: StatusCode, mut obj: Value, kind: &Kind) -> Response {
    stamp_type(&mut obj, kind);
    (code, axum::Json(obj)).into_response()
}
