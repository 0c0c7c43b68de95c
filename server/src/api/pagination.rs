//! `limit` and `continue` on lists: the query parameters and the continue token.
//!
//! The token is base64url (no padding) of `{"rv": REVISION, "start": KEY}`: the revision
//! the first page was read at and the store key of the last object looked at. Pages of one
//! list read one consistent snapshot at that revision ([`crate::store::Store::list_page`]);
//! when it is no longer kept the list answers 410 Expired, as kube-apiserver does after
//! etcd compacted the revision. A token is only good for the list it came from: its key
//! must fall in the list's scope.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::status::ApiError;
use crate::store::{ObjectKey, PageRequest, Scope};

/// The largest `limit` honoured (larger ones are read as this).
pub const MAX_LIMIT: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Token {
    rv: u64,
    start: String,
}

/// The continue token for the page after `key` of a list read at `revision`.
pub fn encode(revision: u64, key: &str) -> String {
    let token = Token {
        rv: revision,
        start: key.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// The page a list asks for: `limit` (0 or absent: everything) and `continue`; 400 naming
/// the parameter when either is malformed or the token is not from a list of `scope`.
pub fn request(query: &HashMap<String, String>, scope: &Scope) -> Result<PageRequest, ApiError> {
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "limit: invalid value {text:?}: must be a non-negative integer"
            ))
        })?,
    };
    let resume = match query.get("continue").map(String::as_str) {
        None | Some("") => None,
        Some(token) => Some(decode(token, scope)?),
    };
    Ok(PageRequest {
        limit: limit.min(MAX_LIMIT),
        resume,
    })
}

fn decode(token: &str, scope: &Scope) -> Result<(u64, String), ApiError> {
    let invalid =
        || ApiError::bad_request("continue: invalid value: not a continue token of this list");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let token: Token = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let key = ObjectKey::decode(&token.start).ok_or_else(invalid)?;
    if !scope.contains(&key) {
        return Err(invalid());
    }
    Ok((token.rv, token.start))
}

/// The 410 for a token whose snapshot is gone.
pub fn expired() -> ApiError {
    ApiError::expired(
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter.",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_token_round_trips_within_its_scope() {
        let scope = Scope::namespace("pods", "default");
        let token = encode(42, "pods/default/web-1");
        let page = request(&query(&[("limit", "2"), ("continue", &token)]), &scope).unwrap();
        assert_eq!(page.limit, 2);
        assert_eq!(page.resume, Some((42, "pods/default/web-1".to_owned())));
        let all = request(&query(&[("continue", &token)]), &Scope::all("pods")).unwrap();
        assert_eq!(all.resume.unwrap().0, 42);
    }

    #[test]
    fn bad_tokens_and_limits_are_refused_by_name() {
        let pods = Scope::namespace("pods", "default");
        for (name, value) in [
            ("continue", "not base64!"),
            ("continue", &URL_SAFE_NO_PAD.encode(b"{}")),
            ("continue", &encode(1, "pods/other/web")),
            ("continue", &encode(1, "nodes/pi")),
            ("limit", "-1"),
            ("limit", "ten"),
        ] {
            let err = request(&query(&[(name, value)]), &pods).unwrap_err();
            assert_eq!(err.code.as_u16(), 400);
            assert!(err.message.starts_with(name), "{}", err.message);
        }
    }

    #[test]
    fn no_limit_means_everything_and_huge_limits_are_capped() {
        let pods = Scope::all("pods");
        assert_eq!(request(&query(&[]), &pods).unwrap(), PageRequest::default());
        assert_eq!(request(&query(&[("limit", "0")]), &pods).unwrap().limit, 0);
        let huge = request(&query(&[("limit", "99999999")]), &pods).unwrap();
        assert_eq!(huge.limit, MAX_LIMIT);
    }
}
