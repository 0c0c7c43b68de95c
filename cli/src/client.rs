//! HTTPS client for the wasmfleet API server.
//!
//! Owns TLS trust (only the kubeconfig's CA, never the system roots), bearer-token auth,
//! and turning HTTP failures into [`ClientError`]s that print like kubectl's messages:
//! a Kubernetes `Status` body becomes `Error from server (Reason): message`, a 401 becomes
//! `You must be logged in to the server (Unauthorized)`, a refused connection names the server.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use wasmfleet_protocol::limits::MAX_OBJECT_BODY;

use crate::kubeconfig::ClusterAccess;

/// How long to wait for a TCP + TLS connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kubernetes `Status` failure returned by the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// HTTP code (`404`, `409`, `422`, ...).
    #[serde(default)]
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig's CA is not usable PEM.
    #[error("invalid certificate-authority in kubeconfig: {0}")]
    BadCa(#[source] reqwest::Error),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(#[source] reqwest::Error),
    /// The server could not be reached (refused, timed out, TLS failure, ...).
    #[error("unable to connect to the server {server}: {}", error_chain(.source))]
    Unreachable {
        /// The server URL.
        server: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// 401: the token is missing or wrong.
    #[error("You must be logged in to the server (Unauthorized)")]
    Unauthorized,
    /// The server answered with a Kubernetes `Status` failure.
    #[error("Error from server ({}): {}", .0.reason, .0.message)]
    Status(Status),
    /// The server answered an error without a `Status` body.
    #[error("the server answered {code}: {body}")]
    Http {
        /// HTTP status code.
        code: u16,
        /// Start of the response body.
        body: String,
    },
    /// A body larger than the server accepts, refused before sending it.
    #[error(
        "the object is {size} bytes as JSON, over the server's limit of {limit} bytes; make it smaller or split it"
    )]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The server's limit ([`MAX_OBJECT_BODY`]).
        limit: usize,
    },
    /// The response body could not be read or decoded.
    #[error("invalid response from the server: {0}")]
    Body(String),
}

impl ClientError {
    /// The Kubernetes reason (`NotFound`, `AlreadyExists`, ...), if the server sent a Status.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Status(status) => Some(&status.reason),
            _ => None,
        }
    }

    /// The HTTP status code of a server-side failure.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Status(status) => Some(status.code),
            Self::Http { code, .. } => Some(*code),
            Self::Unauthorized => Some(401),
            _ => None,
        }
    }

    /// Whether this is a server-side error that kubectl prints without an `error: ` prefix.
    pub fn is_from_server(&self) -> bool {
        matches!(self, Self::Status(_))
    }
}

/// Renders an error and its sources, e.g. `error sending request: connection refused`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A connection to one API server as one user. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    /// Builds a client that trusts only the kubeconfig's CA (or nothing, with
    /// `insecure-skip-tls-verify`).
    pub fn new(access: &ClusterAccess) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("wasmfleet/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &access.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(ClientError::BadCa)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if access.insecure_skip_tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(Self {
            http: builder.build().map_err(ClientError::Setup)?,
            server: access.server.clone(),
            token: access.token.clone(),
        })
    }

    /// The server URL this client talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// GET a JSON object.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        json(self.send(self.request(Method::GET, path)).await?).await
    }

    /// GET a JSON answer in one of the forms `accept` lists (a `Table`, say).
    pub async fn get_accepting(&self, path: &str, accept: &str) -> Result<Value, ClientError> {
        let request = self.request_accepting(Method::GET, path, accept);
        json(self.send(request).await?).await
    }

    /// POST a JSON object to a collection (create).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let request = self.request(Method::POST, path);
        json(self.send(with_object_body(request, body)?).await?).await
    }

    /// PUT a JSON object (replace).
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let request = self.request(Method::PUT, path);
        json(self.send(with_object_body(request, body)?).await?).await
    }

    /// DELETE an object.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        json(self.send(self.request(Method::DELETE, path)).await?).await
    }

    /// PUT a raw body of `len` bytes with a content type, answering JSON.
    pub async fn put_bytes(
        &self,
        path: &str,
        content_type: &str,
        len: u64,
        body: reqwest::Body,
    ) -> Result<Value, ClientError> {
        let request = self
            .request(Method::PUT, path)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(body);
        json(self.send(request).await?).await
    }

    /// GET with query parameters, returning the body as a stream of chunks as they arrive.
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        use futures::TryStreamExt as _;
        let response = self
            .send(self.request(Method::GET, path).query(query))
            .await?;
        Ok(response
            .bytes_stream()
            .map_err(|err| ClientError::Body(error_chain(&err))))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_accepting(method, path, "application/json")
    }

    fn request_accepting(&self, method: Method, path: &str, accept: &str) -> RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.server))
            .header(header::ACCEPT, accept);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; any non-2xx answer becomes an error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|source| {
            if source.is_connect() || source.is_timeout() {
                ClientError::Unreachable {
                    server: self.server.clone(),
                    source,
                }
            } else {
                ClientError::Body(error_chain(&source))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(failure(response).await)
    }
}

async fn json(response: Response) -> Result<Value, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|err| ClientError::Body(error_chain(&err)))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|err| ClientError::Body(err.to_string()))
}

/// Adds a JSON object body to `request` (see [`object_body`]).
fn with_object_body(request: RequestBuilder, body: &Value) -> Result<RequestBuilder, ClientError> {
    Ok(request
        .header(header::CONTENT_TYPE, "application/json")
        .body(object_body(body)?))
}

/// Encodes an object body, refusing one the server would refuse for its size
/// ([`MAX_OBJECT_BODY`], shared with the server).
pub fn object_body(body: &Value) -> Result<Vec<u8>, ClientError> {
    let bytes = serde_json::to_vec(body).map_err(|err| ClientError::Body(err.to_string()))?;
    if bytes.len() > MAX_OBJECT_BODY {
        return Err(ClientError::TooLarge {
            size: bytes.len(),
            limit: MAX_OBJECT_BODY,
        });
    }
    Ok(bytes)
}

/// Decodes an error response: a `Status` body when there is one.
async fn failure(response: Response) -> ClientError {
    let code = response.status();
    let body = response.bytes().await.unwrap_or_default();
    classify(code, &body)
}

/// Turns an error status and body into a [`ClientError`] (pure, for tests).
pub fn classify(code: StatusCode, body: &[u8]) -> ClientError {
    if code == StatusCode::UNAUTHORIZED {
        return ClientError::Unauthorized;
    }
    let status = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|value| value["kind"] == "Status")
        .and_then(|value| serde_json::from_value::<Status>(value).ok());
    match status {
        Some(mut status) => {
            if status.code == 0 {
                status.code = code.as_u16();
            }
            if status.reason.is_empty() {
                status.reason = code
                    .canonical_reason()
                    .unwrap_or("Unknown")
                    .replace(' ', "");
            }
            ClientError::Status(status)
        }
        None => ClientError::Http {
            code: code.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_over_the_servers_limit_is_refused_before_sending() {
        let big = serde_json::json!({"data": "x".repeat(MAX_OBJECT_BODY)});
        let err = object_body(&big).unwrap_err();
        assert!(matches!(err, ClientError::TooLarge { limit, .. } if limit == MAX_OBJECT_BODY));
        assert!(err.to_string().contains("limit of 1048576 bytes"), "{err}");
        assert!(object_body(&serde_json::json!({"data": "x"})).is_ok());
    }

    #[test]
    fn a_status_body_prints_like_kubectl() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"pods \"nope\" not found"}"#;
        let err = classify(StatusCode::NOT_FOUND, body);
        assert_eq!(err.reason(), Some("NotFound"));
        assert_eq!(
            err.to_string(),
            "Error from server (NotFound): pods \"nope\" not found"
        );
        assert!(err.is_from_server());
    }

    #[test]
    fn unauthorized_is_reported_whatever_the_body() {
        let err = classify(StatusCode::UNAUTHORIZED, b"{}");
        assert_eq!(
            err.to_string(),
            "You must be logged in to the server (Unauthorized)"
        );
        assert_eq!(err.code(), Some(401));
    }

    #[test]
    fn a_non_status_body_keeps_the_code_and_text() {
        let err = classify(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(err.to_string(), "the server answered 502: upstream down");
        assert_eq!(err.reason(), None);
    }

    #[test]
    fn a_status_without_reason_gets_the_http_reason() {
        let err = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"kind":"Status","message":"bad"}"#,
        );
        assert_eq!(
            err.to_string(),
            "Error from server (UnprocessableEntity): bad"
        );
        assert_eq!(err.code(), Some(422));
    }

    #[test]
    fn a_bad_ca_is_rejected_when_building_the_client() {
        let access = ClusterAccess {
            server: "https://127.0.0.1:1".to_owned(),
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec()),
            insecure_skip_tls_verify: false,
            token: None,
            namespace: None,
        };
        assert!(matches!(Client::new(&access), Err(ClientError::BadCa(_))));
    }
}
