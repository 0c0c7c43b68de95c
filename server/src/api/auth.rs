//! Bearer-token authentication for every request, and the authorizer.
//!
//! The one identity today is the admin (the token of `admin.kubeconfig`); the middleware
//! puts the authenticated [`User`] into the request's extensions, so handlers (the
//! `SelfSubjectReview` of `kubectl auth whoami`, the access reviews of `kubectl auth can-i`)
//! answer for the identity that really made the request, and [`authorize`] is the one
//! place that decides what an identity may do.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::status::ApiError;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (`admin`).
    pub name: &'static str,
    /// Its groups.
    pub groups: &'static [&'static str],
}

/// The cluster admin: whoever holds the admin token (`admin.kubeconfig`).
pub const ADMIN: User = User {
    name: "admin",
    groups: &["system:masters", "system:authenticated"],
};

/// What a request would do (a `SubjectAccessReview`'s attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The verb (`create`, `get`, ...; for a non-resource URL the HTTP verb).
    pub verb: String,
    /// The API group of a resource request.
    pub group: String,
    /// The resource (`pods`), empty for a non-resource URL.
    pub resource: String,
    /// The namespace, empty for every namespace or cluster-scoped resources.
    pub namespace: String,
    /// A non-resource URL (`/healthz`).
    pub path: String,
}

/// Whether `user` may do what `attributes` describe, and why. The admin (`system:masters`)
/// may do everything.
/// (Every identity is either the admin or unknown today, so the attributes do not matter
/// yet.)
pub fn authorize(user: &User, _attributes: &Attributes) -> (bool, String) {
    if user.groups.contains(&"system:masters") {
        (
            true,
            format!("{} is the cluster admin (system:masters)", user.name),
        )
    } else {
        (false, format!("{} has no permissions", user.name))
    }
}

/// Passes requests carrying `Authorization: Bearer <admin token>` (adding the [`ADMIN`]
/// [`User`] to their extensions); 401 for the rest.
pub async fn require_token(
    State(token): State<Arc<str>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
            request.extensions_mut().insert(ADMIN);
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Equality whose time does not depend on where the inputs differ (only on their length,
/// which for our fixed-length tokens gives nothing away).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_may_do_everything_and_others_nothing() {
        let create_pods = Attributes {
            verb: "create".into(),
            resource: "pods".into(),
            ..Attributes::default()
        };
        assert!(authorize(&ADMIN, &create_pods).0);
        let nobody = User {
            name: "nobody",
            groups: &["system:authenticated"],
        };
        assert!(!authorize(&nobody, &create_pods).0);
    }

    #[test]
    fn equal_tokens_match_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
