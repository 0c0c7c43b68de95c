//! The route table. Every route but the health checks ([`health`]) requires the admin bearer
//! token; unknown paths get a 404 Status, unknown methods a 405 Status, and writes other than
//! DELETE with `dryRun` a 400 (DELETE honours it).

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, put};

use super::kinds::{Namespaces, Nodes, Pods, Resource};
use super::status::ApiError;
use super::{ApiContext, auth, discovery, health, join_tokens, logs, modules, objects};

/// All routes, with authentication.
pub fn build(ctx: ApiContext) -> Router {
    let token: Arc<str> = Arc::clone(&ctx.admin_token);
    let health = health::routes(ctx.clone());
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api))
        .route("/api/v1", get(discovery::api_v1))
        .route("/apis", get(discovery::apis))
        .route("/openapi/v3", get(discovery::openapi_root))
        .route("/openapi/v3/api/v1", get(discovery::openapi_v1))
        .route("/api/v1/namespaces", collection::<Namespaces>())
        .route("/api/v1/namespaces/{name}", item::<Namespaces>())
        .route("/api/v1/nodes", collection::<Nodes>())
        .route("/api/v1/nodes/{name}", item::<Nodes>())
        .route(
            "/api/v1/pods",
            get(objects::list::<Pods>).fallback(method_not_allowed),
        )
        .route("/api/v1/namespaces/{ns}/pods", collection::<Pods>())
        .route("/api/v1/namespaces/{ns}/pods/{name}", item::<Pods>())
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/log",
            get(logs::pod_logs).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/modules",
            get(modules::list).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}",
            put(modules::push).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/jointokens",
            get(join_tokens::list)
                .post(join_tokens::create)
                .fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/jointokens/{id}",
            get(join_tokens::get)
                .delete(join_tokens::delete)
                .fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_dry_run))
        .layer(middleware::from_fn_with_state(token, auth::require_token))
        .with_state(ctx)
        .merge(health)
}

fn collection<R: Resource>() -> MethodRouter<ApiContext> {
    get(objects::list::<R>)
        .post(objects::create::<R>)
        .fallback(method_not_allowed)
}

fn item<R: Resource>() -> MethodRouter<ApiContext> {
    get(objects::get::<R>)
        .put(objects::replace::<R>)
        .patch(objects::patch::<R>)
        .delete(objects::delete::<R>)
        .fallback(method_not_allowed)
}

/// `dryRun` (`kubectl --dry-run=server`) is implemented for DELETE only (in the handler,
/// which also reads it from the `DeleteOptions` body); every other write with it is refused
/// with a 400 before anything runs, so a dry run never writes.
async fn refuse_dry_run(request: Request, next: Next) -> Response {
    let method = request.method();
    if method == Method::GET || method == Method::DELETE {
        return next.run(request).await;
    }
    match objects::dry_run(objects::query_dry_run(request.uri().query())) {
        Ok(false) => next.run(request).await,
        Ok(true) => ApiError::bad_request(
            "dryRun is supported by wasmfleet for DELETE only; nothing was written",
        )
        .into_response(),
        Err(err) => err.into_response(),
    }
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::method_not_allowed()
}

async fn not_found() -> impl IntoResponse {
    ApiError::no_route()
}
