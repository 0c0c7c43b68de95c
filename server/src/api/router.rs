//! The route table. Every route but the health checks ([`health`]) is authenticated and
//! authorized ([`auth::guard`]); unknown paths get a 404 Status, unknown methods a 405
//! Status, and `dryRun` on the writes that do not implement it (module pushes, join tokens,
//! user certificates and their revocations, evictions) a 400. Every request is counted into the [`crate::metrics`] that `/metrics`
//! renders.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Router};

use super::kinds::{self, Kind};
use super::status::ApiError;
use super::{
    ApiContext, auth, discovery, health, join_tokens, metrics_api, modules, objects, users,
};

/// All routes, with authentication.
pub fn build(ctx: ApiContext) -> Router {
    let guard = Arc::new(auth::Guard {
        admin_token: Arc::clone(&ctx.admin_token),
        authorizer: ctx.authorizer.clone(),
        tokens: ctx.tokens.clone(),
    });
    let health = health::routes(ctx.clone());
    kinds::ALL
        .iter()
        .fold(discovery::routes(), |router, kind| add_kind(router, kind))
        .merge(metrics_api::routes())
        .route(
            "/apis/wasmfleet.dev/v1/modules",
            get(modules::list).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}",
            put(modules::push).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/usercertificates",
            get(users::list)
                .post(users::sign)
                .fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/usercertificates/{serial}/revocation",
            post(users::revoke).fallback(method_not_allowed),
        )
        .route(
            "/apis/wasmfleet.dev/v1/jointokens",
            get(join_tokens::list)
                .post(join_tokens::create)
                .fallback(method_not_allowed),
        )
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route(
            "/apis/wasmfleet.dev/v1/jointokens/{id}",
            get(join_tokens::get)
                .delete(join_tokens::delete)
                .fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_dry_run))
        .layer(middleware::from_fn_with_state(guard, auth::guard))
        .with_state(ctx.clone())
        .merge(health)
        .layer(middleware::from_fn_with_state(ctx, count))
}

/// Counts every request, with its answer's code and (unless it streams) its latency.
async fn count(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let query = request.uri().query().unwrap_or("");
    let streamed = query
        .split('&')
        .any(|pair| matches!(pair, "watch=true" | "watch=1" | "follow=true" | "follow=1"));
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16();
    ctx.metrics
        .request(&method, code, started.elapsed(), streamed);
    response
}

/// `GET /metrics`: the server's metrics in the Prometheus text format.
async fn metrics(State(ctx): State<ApiContext>) -> Response {
    match ctx.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(err) => ApiError::internal(&err).into_response(),
    }
}

/// The routes of one kind: its collection (and, if namespaced, the list across
/// namespaces), its items and its subresources, each handler told the kind.
fn add_kind(router: Router<ApiContext>, kind: &'static Kind) -> Router<ApiContext> {
    let with_kind =
        |route: MethodRouter<ApiContext>| route.fallback(method_not_allowed).layer(Extension(kind));
    if kinds::reviews::is_review(kind) {
        return router.route(
            &kind.collection_path(),
            with_kind(post(kinds::reviews::create)),
        );
    }
    let item_path = kind.item_path();
    let mut router = router
        .route(
            &kind.collection_path(),
            with_kind(get(objects::list).post(objects::create)),
        )
        .route(
            &item_path,
            with_kind(
                get(objects::get)
                    .put(objects::replace)
                    .patch(objects::patch)
                    .delete(objects::delete),
            ),
        );
    if kind.namespaced {
        router = router.route(&kind.all_path(), with_kind(get(objects::list)));
    }
    for sub in kind.subresources {
        router = router.route(
            &format!("{item_path}/{}", sub.name),
            with_kind((sub.route)()),
        );
    }
    router
}

/// `dryRun` (`kubectl --dry-run=server`) is implemented by the kinds' create, update, patch
/// and delete (and `scale`); every other write with it (module pushes, join tokens but
/// their DELETE, evictions) is refused with a 400 before anything runs, so a dry run
/// never writes.
async fn refuse_dry_run(request: Request, next: Next) -> Response {
    let method = request.method();
    let path = request.uri().path();
    let implemented = !(path.starts_with("/apis/wasmfleet.dev/") || path.ends_with("/eviction"));
    if method == Method::GET || method == Method::DELETE || implemented {
        return next.run(request).await;
    }
    match objects::dry_run(objects::query_dry_run(request.uri().query())) {
        Ok(false) => next.run(request).await,
        Ok(true) => ApiError::bad_request(
            "dryRun is not supported by wasmfleet for module pushes, join tokens, user certificates and evictions; nothing was written",
        )
        .into_response(),
        Err(err) => err.into_response(),
    }
}

/// 405 with a Status body.
pub async fn method_not_allowed() -> impl IntoResponse {
    ApiError::method_not_allowed()
}

async fn not_found() -> impl IntoResponse {
    ApiError::no_route()
}
