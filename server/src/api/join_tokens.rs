//! Join tokens (`wasmfleet.dev/v1`, `JoinToken`): how an admin lets new nodes join with a
//! token limited in time and uses, and revokes it (see [`crate::identity::tokens`]).
//!
//! - `POST /apis/wasmfleet.dev/v1/jointokens`, body `{"spec": {"description": "...",
//!   "ttlSeconds": 3600, "usages": 1}}` (all optional; `ttlSeconds` 0 = never expires,
//!   absent = 24 h) → 201 `JoinToken` whose `status.token` is the token, shown this once;
//! - `GET .../jointokens` → `JoinTokenList`; `GET .../jointokens/{id}` → `JoinToken`;
//! - `DELETE .../jointokens/{id}` → the token no longer admits anyone.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wasmfleet_protocol::limits::MAX_OBJECT_BODY;

use super::status::{ApiError, Cause};
use super::{ApiContext, blocking, body, objects};
use crate::identity::tokens::{self, DEFAULT_TTL, MAX_TOKENS, RESOURCE, TokenSpec};
use crate::store::{ObjectKey, Scope, StoreError};

const KIND: &str = "JoinToken";
/// The longest description kept.
const MAX_DESCRIPTION: usize = 256;
/// The longest TTL accepted: ten years.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// `GET .../jointokens`.
pub async fn list(State(ctx): State<ApiContext>) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let listing = blocking(move || Ok(store.list(&Scope::all(RESOURCE))?)).await?;
    let items: Vec<Value> = listing.items.into_iter().map(tokens::public_view).collect();
    Ok(Json(json!({
        "apiVersion": "wasmfleet.dev/v1",
        "kind": "JoinTokenList",
        "metadata": {"resourceVersion": listing.revision.to_string()},
        "items": items,
    })))
}

/// `GET .../jointokens/{id}`.
pub async fn get(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let key = ObjectKey::cluster(RESOURCE, &id);
    let found = blocking(move || Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?)).await?;
    Ok(Json(tokens::public_view(found)))
}

/// `DELETE .../jointokens/{id}`: revokes the token at once (`dryRun=All` only checks).
pub async fn delete(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let dry_run = objects::dry_run(objects::query_dry_run(query.as_deref()))?;
    let store = ctx.store.clone();
    let key = ObjectKey::cluster(RESOURCE, &id);
    let deleted = blocking(move || {
        if dry_run {
            return Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?);
        }
        Ok(store.delete(&key, None)?)
    })
    .await?;
    if !dry_run {
        tracing::info!(id = %id, "join token deleted");
    }
    Ok(Json(tokens::public_view(deleted)))
}

/// `POST .../jointokens`.
pub async fn create(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read_limited(&headers, request_body, MAX_OBJECT_BODY).await?;
    let request = body::decode_object(&headers, bytes).await?;
    let spec = token_spec(&request)?;
    let (id, secret) = tokens::generate();
    let obj = tokens::new_object(&id, &secret, &spec, jiff::Timestamp::now());
    let store = ctx.store.clone();
    let key = ObjectKey::cluster(RESOURCE, &id);
    let created = blocking(move || {
        if store.list(&Scope::all(RESOURCE))?.items.len() >= MAX_TOKENS {
            return Err(ApiError::conflict(
                RESOURCE,
                key.name.as_str(),
                format!("there are {MAX_TOKENS} join tokens already: delete some first"),
            ));
        }
        Ok(store.create(&key, obj)?)
    })
    .await?;
    tracing::info!(id = %id, usages = ?spec.usages, ttl = ?spec.ttl, "join token created");
    let mut shown = tokens::public_view(created);
    shown["status"]["token"] = format!("{id}.{secret}").into();
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// Reads what the new token allows, refusing anything else with a 422 naming the field.
fn token_spec(request: &Value) -> Result<TokenSpec, ApiError> {
    let mut causes = Vec::new();
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let Some(fields) = spec.as_object() else {
        return Err(invalid(&[Cause::new(
            "FieldValueInvalid",
            "spec",
            "must be an object",
        )]));
    };
    let mut out = TokenSpec {
        ttl: Some(DEFAULT_TTL),
        ..TokenSpec::default()
    };
    for (name, value) in fields {
        let field = format!("spec.{name}");
        match (name.as_str(), value) {
            ("description", Value::String(text)) if text.len() <= MAX_DESCRIPTION => {
                out.description = text.clone();
            }
            ("ttlSeconds", value) => match value.as_u64() {
                Some(0) => out.ttl = None,
                Some(secs) if secs <= MAX_TTL_SECONDS => out.ttl = Some(Duration::from_secs(secs)),
                _ => causes.push(Cause::new(
                    "FieldValueInvalid",
                    field,
                    format!("must be a whole number of seconds from 0 (never expires) to {MAX_TTL_SECONDS}"),
                )),
            },
            ("usages", value) => match value.as_u64() {
                Some(n) if n > 0 => out.usages = Some(n),
                _ => causes.push(Cause::new(
                    "FieldValueInvalid",
                    field,
                    "must be a whole number above 0 (leave it out for any number of nodes)",
                )),
            },
            ("description", _) => causes.push(Cause::new(
                "FieldValueInvalid",
                field,
                format!("must be a string of at most {MAX_DESCRIPTION} bytes"),
            )),
            _ => causes.push(Cause::new(
                "FieldValueNotSupported",
                field,
                "Unsupported value: a join token has description, ttlSeconds and usages",
            )),
        }
    }
    if causes.is_empty() {
        Ok(out)
    } else {
        Err(invalid(&causes))
    }
}

fn invalid(causes: &[Cause]) -> ApiError {
    ApiError::invalid(KIND, "", causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_ttl_usages_and_description() {
        let spec =
            token_spec(&json!({"spec": {"ttlSeconds": 60, "usages": 2, "description": "barn"}}))
                .expect("valid");
        assert_eq!(
            spec,
            TokenSpec {
                description: "barn".into(),
                ttl: Some(Duration::from_secs(60)),
                usages: Some(2)
            }
        );
        assert_eq!(
            token_spec(&json!({})).expect("valid").ttl,
            Some(DEFAULT_TTL)
        );
        assert_eq!(
            token_spec(&json!({"spec": {"ttlSeconds": 0}}))
                .expect("valid")
                .ttl,
            None
        );
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        for (spec, field) in [
            (json!({"usages": 0}), "spec.usages"),
            (json!({"usages": -1}), "spec.usages"),
            (json!({"ttlSeconds": "1h"}), "spec.ttlSeconds"),
            (json!({"description": 7}), "spec.description"),
            (json!({"groups": ["x"]}), "spec.groups"),
        ] {
            let err = token_spec(&json!({ "spec": spec })).expect_err("invalid");
            assert!(err.to_status().to_string().contains(field), "{field}");
        }
    }
}
