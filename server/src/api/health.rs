//! Health endpoints without authentication, like Kubernetes: `/healthz` and `/livez` (the
//! process serves requests) and `/readyz` (it can do its job: the store can be read and,
//! when the server runs the fleet link, that link is connected to the broker).
//!
//! Each answers `200 ok` in plain text, or 503 naming the failed checks; `?verbose` lists
//! every check (`[+]store ok`, `[-]fleet-link failed`), as kube-apiserver does.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiContext, blocking};
use crate::store::Scope;

/// The unauthenticated health routes.
pub fn routes(ctx: ApiContext) -> Router {
    Router::new()
        .route("/healthz", get(live))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .with_state(ctx)
}

/// One named check and whether it passed.
type Check = (&'static str, bool);

async fn live(Query(query): Query<HashMap<String, String>>) -> Response {
    report("livez", &[("ping", true)], query.contains_key("verbose"))
}

async fn ready(
    State(ctx): State<ApiContext>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let store = ctx.store.clone();
    let store_ok = blocking(move || Ok(store.list(&Scope::all("namespaces"))?))
        .await
        .is_ok();
    let mut checks = vec![("ping", true), ("store", store_ok)];
    if let Some(link) = &ctx.fleet_link {
        checks.push(("fleet-link", link()));
    }
    checks.push(("shutdown", !ctx.shutdown.is_cancelled()));
    report("readyz", &checks, query.contains_key("verbose"))
}

/// Renders checks the way kube-apiserver does: `ok` alone when all pass and `verbose` is
/// not asked for, otherwise one line per check and a verdict.
fn report(endpoint: &str, checks: &[Check], verbose: bool) -> Response {
    let healthy = checks.iter().all(|(_, ok)| *ok);
    if healthy && !verbose {
        return (StatusCode::OK, "ok").into_response();
    }
    let mut text: String = checks
        .iter()
        .map(|(name, ok)| match ok {
            true => format!("[+]{name} ok\n"),
            false => format!("[-]{name} failed\n"),
        })
        .collect();
    let (code, verdict) = match healthy {
        true => (StatusCode::OK, "passed"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
    };
    text.push_str(&format!("{endpoint} check {verdict}\n"));
    (code, text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (u16, String) {
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn healthy_checks_answer_ok_and_verbose_lists_them() {
        let checks = [("ping", true), ("store", true)];
        assert_eq!(
            body(report("readyz", &checks, false)).await,
            (200, "ok".to_owned())
        );
        let (code, text) = body(report("readyz", &checks, true)).await;
        assert_eq!(code, 200);
        assert_eq!(text, "[+]ping ok\n[+]store ok\nreadyz check passed\n");
    }

    #[tokio::test]
    async fn a_failed_check_is_a_503_naming_it() {
        let (code, text) = body(report(
            "readyz",
            &[("ping", true), ("fleet-link", false)],
            false,
        ))
        .await;
        assert_eq!(code, 503);
        assert!(text.contains("[-]fleet-link failed\n"), "{text}");
        assert!(text.ends_with("readyz check failed\n"), "{text}");
    }
}
