//! Just enough of a Kubernetes API client for the benchmark tools: the cluster's CA and
//! admin token from its kubeconfig, plain GETs, POSTs and DELETEs, and streaming watches.

use anyhow::Context;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::Value;

use crate::Cluster;

/// An HTTPS client of one cluster's API, logged in as its admin.
pub struct ApiClient {
    /// The HTTP client, trusting only the cluster CA.
    pub http: reqwest::Client,
    /// The API's base URL (`https://127.0.0.1:PORT`).
    pub base: String,
    /// The admin bearer token.
    pub token: String,
}

impl ApiClient {
    /// A client for `cluster`, from the kubeconfig its server wrote.
    pub fn from_kubeconfig(cluster: &Cluster) -> anyhow::Result<ApiClient> {
        let text = std::fs::read_to_string(cluster.kubeconfig())?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(key)
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
                .with_context(|| format!("{key} in kubeconfig"))
        };
        let ca = base64::engine::general_purpose::STANDARD
            .decode(field("certificate-authority-data:")?)?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .build()?;
        Ok(ApiClient {
            http,
            base: cluster.api_url(),
            token: cluster.admin_token.clone(),
        })
    }

    /// GET `path` (under the base URL), authenticated.
    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
    }

    /// POSTs `body` as JSON to `path`, authenticated.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
    }

    /// DELETEs `path`, authenticated.
    pub async fn delete(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
    }

    /// Follows the watch at `path` (a `?watch=true` URL), calling `on_event` with each
    /// event (`{"type": ..., "object": ...}`) until the stream ends or `on_event` returns
    /// `false`.
    pub async fn watch(
        &self,
        path: &str,
        mut on_event: impl FnMut(Value) -> bool,
    ) -> anyhow::Result<()> {
        let response = self.get(path).await?.error_for_status()?;
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk?);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if !on_event(event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
