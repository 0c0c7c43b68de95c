//! Shared by the `api*` tests: the real server (`run`) in-process on port 0 with a temp
//! data directory, and a client that trusts its CA and carries its admin token.

#![allow(dead_code, clippy::unwrap_used)]

pub mod kubectl;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wasmfleet_server::config::ServerConfig;

/// A running server and a client that trusts it.
pub struct Server {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, |_| {}).await
    }

    /// Starts with `adjust` applied to the test config.
    pub async fn start_with(dir: &Path, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let endpoints = dir.join("endpoints.json");
        // Left by an earlier start on the same directory; run() rewrites it once serving.
        let _ = std::fs::remove_file(&endpoints);
        let mut config = ServerConfig::with_data_dir(dir);
        config.https_listen = "127.0.0.1:0".parse().unwrap();
        config.mqtt_listen = "127.0.0.1:0".parse().unwrap();
        config.relay_listen = "127.0.0.1:0".parse().unwrap();
        config.no_local_agent = true;
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(wasmfleet_server::run::run(config, shutdown.clone()));
        let text = poll(|| std::fs::read_to_string(&endpoints).ok()).await;
        let endpoints: Value = serde_json::from_str(&text).unwrap();
        let (ca, token) = read_kubeconfig(&dir.join("admin.kubeconfig"));
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        Self {
            shutdown,
            task,
            client,
            base: endpoints["api"].as_str().unwrap().to_owned(),
            token,
            data_dir: dir.to_owned(),
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server did not stop")
            .unwrap()
            .unwrap();
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn merge_patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let request = self
            .request(reqwest::Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        self.send(request).await
    }
}

fn read_kubeconfig(path: &Path) -> (Vec<u8>, String) {
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ca = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .unwrap();
    let token = config["users"][0]["user"]["token"].as_str().unwrap();
    (ca, token.to_owned())
}

pub async fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temp dir (kept alive by the first value) and a data dir inside it.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}
