//! The `scale` subresource (`autoscaling/v1` `Scale`) of the workload kinds: what `kubectl
//! scale` reads and patches (`{"spec":{"replicas":N}}` as a merge patch). A write changes
//! only the object's `spec.replicas`, through the same read-modify-write, admission, dry run
//! and `managedFields` (`kubectl scale`'s manager owns `spec.replicas` after it, with subresource `scale`) as any
//! update.

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use super::kinds::{Kind, Subresource};
use super::objects::{Target, WriteOptions, modify};
use super::status::{ApiError, Cause};
use super::{ApiContext, blocking, body, router};
use crate::k8s::selectors::Selector;
use crate::store::StoreError;

/// `{kind}/scale`, for the kinds with `spec.replicas`.
pub const SUBRESOURCE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group_version: Some(("autoscaling", "v1")),
    verbs: &["get", "patch", "update"],
    route,
};

fn route() -> MethodRouter<ApiContext> {
    get(read)
        .put(replace)
        .patch(patch)
        .fallback(router::method_not_allowed)
}

/// The `Scale` view of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| Selector::from_label_selector(s).ok())
        .map(|s| s.label_text())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

async fn read(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let key = Target::from(&params).key(kind)?;
    let store = ctx.store.clone();
    let found = blocking(move || Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?)).await?;
    Ok(axum::Json(scale_of(&found)).into_response())
}

async fn replace(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let options = WriteOptions::from_request(kind, &uri, &headers, false)?;
    let bytes = body::read_limited(&headers, body, body::MAX_OBJECT_BODY).await?;
    let scale = body::decode_object(&headers, bytes).await?;
    write(kind, &ctx, &params, options, move |_| Ok(scale)).await
}

async fn patch(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let options = WriteOptions::from_request(kind, &uri, &headers, false)?;
    let bytes = body::read_limited(&headers, body, body::MAX_OBJECT_BODY).await?;
    let patch = body::decode_patch(&headers, bytes).await?;
    write(kind, &ctx, &params, options, move |current| {
        let mut scale = scale_of(current);
        patch.apply(&mut scale)?;
        Ok(scale)
    })
    .await
}

/// Sets `spec.replicas` from the `Scale` that `edit` makes of the stored object.
async fn write<F>(
    kind: &'static Kind,
    ctx: &ApiContext,
    params: &RawPathParams,
    options: WriteOptions,
    edit: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&Value) -> Result<Value, ApiError> + Send + 'static,
{
    let key = Target::from(params).key(kind)?;
    let mut options = options;
    options.writer.subresource = SUBRESOURCE.name.to_owned();
    let updated = modify(ctx, key, kind, options, move |current| {
        let scale = edit(current)?;
        let replicas = replicas_of(&scale, kind)?;
        let mut new = current.clone();
        new["spec"]["replicas"] = replicas.into();
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .filter(|v| !v.is_null())
        {
            new["metadata"]["resourceVersion"] = rv.clone();
        }
        Ok(new)
    })
    .await?;
    Ok(axum::Json(scale_of(&updated)).into_response())
}

fn replicas_of(scale: &Value, kind: &Kind) -> Result<i64, ApiError> {
    let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64);
    match replicas {
        Some(n) if n >= 0 => Ok(n),
        _ => {
            let name = scale
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cause = Cause::new(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: must be an integer greater than or equal to 0",
            );
            Err(ApiError::invalid(kind.kind, name, &[cause]))
        }
    }
}
