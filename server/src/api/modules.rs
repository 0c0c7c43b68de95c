//! Module push and listing (`wasmfleet.dev/v1`), backed by the module store.
//!
//! - `PUT /apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}`, body = the wasm bytes
//!   (`application/wasm` or `application/octet-stream`, at most 64 MiB) → 201 `Module`;
//! - `GET /apis/wasmfleet.dev/v1/modules` → `ModuleList`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::status::{ApiError, Cause};
use super::{ApiContext, blocking, body};
use crate::modules::{MAX_MODULE_SIZE, ModuleError, ModuleRecord, ModuleStore};

/// `PUT .../modules/{name}/tags/{tag}`.
pub async fn push(
    State(ctx): State<ApiContext>,
    Path((name, tag)): Path<(String, String)>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let modules = module_store(&ctx)?;
    let media = body::content_type(&headers);
    if !matches!(
        media.as_str(),
        "application/wasm" | "application/octet-stream" | ""
    ) {
        return Err(ApiError::unsupported_media_type(&media));
    }
    let bytes = body::read_limited(&headers, request_body, MAX_MODULE_SIZE).await?;
    let record = blocking(move || {
        modules
            .put(&name, &tag, &bytes)
            .map_err(|err| module_error(err, &name))
    })
    .await?;
    tracing::info!(name = %record.name, tag = %record.tag, digest = %record.digest, "module pushed");
    let mut module = render(&record);
    module["apiVersion"] = "wasmfleet.dev/v1".into();
    module["kind"] = "Module".into();
    Ok((StatusCode::CREATED, Json(module)).into_response())
}

/// `GET .../modules`.
pub async fn list(State(ctx): State<ApiContext>) -> Result<Json<Value>, ApiError> {
    let modules = module_store(&ctx)?;
    let records = blocking(move || modules.list().map_err(|err| ApiError::internal(&err))).await?;
    let items: Vec<Value> = records.iter().map(render).collect();
    Ok(Json(
        json!({"apiVersion": "wasmfleet.dev/v1", "kind": "ModuleList", "items": items}),
    ))
}

fn module_store(ctx: &ApiContext) -> Result<ModuleStore, ApiError> {
    ctx.modules
        .clone()
        .ok_or_else(|| ApiError::unavailable("the module store is not running"))
}

/// A module as the API (and the MQTT front door) shows it.
pub fn render(record: &ModuleRecord) -> Value {
    json!({
        "name": record.name,
        "tag": record.tag,
        "digest": format!("sha256:{}", record.digest),
        "size": record.size,
    })
}

/// Why a module was not stored, as the API (and the MQTT front door) says it.
pub fn module_error(err: ModuleError, name: &str) -> ApiError {
    let invalid = |field: &str, message: String| {
        ApiError::invalid(
            "Module",
            name,
            &[Cause::new("FieldValueInvalid", field, message)],
        )
    };
    match err {
        ModuleError::InvalidName(err) => invalid("metadata.name", err.to_string()),
        ModuleError::InvalidImage(image) => invalid(
            "metadata.name",
            format!("invalid image reference {image:?}"),
        ),
        ModuleError::NotWasm | ModuleError::Invalid(_) => invalid("body", err.to_string()),
        ModuleError::TooLarge { limit, .. } => ApiError::too_large(limit),
        other => ApiError::internal(&other),
    }
}
