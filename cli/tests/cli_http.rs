//! Runs the real `wasmfleet` binary against a small HTTPS server (axum over rustls, its own
//! CA from rcgen) that answers the Kubernetes paths the CLI uses, keeping pods in memory.
//! It checks what goes over the wire (paths, bodies, resourceVersions, tokens, query
//! parameters) and what the user sees (stdout, stderr, exit codes). The end-to-end suite
//! runs the same binary against the real server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::Notify;

const TOKEN: &str = "s3cret-admin-token";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TIMEOUT: Duration = Duration::from_secs(20);

// === fake API server ===

#[derive(Default)]
struct Fake {
    pods: Mutex<BTreeMap<(String, String), Value>>,
    deployments: Mutex<Vec<(String, Value)>>,
    /// Every request: method, path, Accept header.
    requests: Mutex<Vec<(String, String, String)>>,
    /// List a group `broken.example/v1` that has no resource list.
    broken_group: std::sync::atomic::AtomicBool,
    revision: Mutex<u64>,
    puts: Mutex<Vec<Value>>,
    log_queries: Mutex<Vec<BTreeMap<String, String>>>,
    pushed: Mutex<Vec<(String, String, String, Bytes)>>,
    release_log: Notify,
}

type Shared = Arc<Fake>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": reason, "message": message, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

fn next_revision(fake: &Fake) -> String {
    let mut revision = lock(&fake.revision);
    *revision += 1;
    revision.to_string()
}

async fn record(State(fake): State<Shared>, request: Request, next: Next) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let entry = (
        request.method().to_string(),
        request.uri().path().to_owned(),
        accept,
    );
    lock(&fake.requests).push(entry);
    next.run(request).await
}

/// The requests made to `path`, each with its Accept header.
fn accepts_of(fake: &Fake, path: &str) -> Vec<String> {
    lock(&fake.requests)
        .iter()
        .filter(|(method, p, _)| method == "GET" && p == path)
        .map(|(_, _, accept)| accept.clone())
        .collect()
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

/// A Table as a Kubernetes server answers it; the AGE cells are the server's own text
/// (`5m`), not something a client could compute from the objects.
fn table(columns: &[(&str, u8)], rows: Vec<(Vec<Value>, &Value)>) -> Response {
    let columns: Vec<Value> = columns
        .iter()
        .map(|(name, priority)| json!({"name": name, "type": "string", "priority": priority}))
        .collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, object)| {
            json!({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"]}})
        })
        .collect();
    axum::Json(json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                      "metadata": {"resourceVersion": "99"},
                      "columnDefinitions": columns, "rows": rows}))
    .into_response()
}

const POD_COLUMNS: [(&str, u8); 7] = [
    ("Name", 0),
    ("Ready", 0),
    ("Status", 0),
    ("Restarts", 0),
    ("Age", 0),
    ("IP", 1),
    ("Node", 1),
];

fn pod_cells(pod: &Value) -> Vec<Value> {
    let m = &pod["metadata"];
    vec![
        m["name"].clone(),
        json!("1/1"),
        pod["status"]["phase"].clone(),
        json!(0),
        json!("5m"),
        pod["status"]["podIP"].clone(),
        pod["spec"]["nodeName"].clone(),
    ]
}

async fn api_versions() -> Response {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"]})).into_response()
}

async fn core_resources() -> Response {
    axum::Json(json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"]},
        {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod"},
        {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "shortNames": ["no"]},
        {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "shortNames": ["ns"]}]}))
    .into_response()
}

async fn api_groups(State(fake): State<Shared>) -> Response {
    let group = |name: &str| {
        json!({"name": name, "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
               "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"}})
    };
    let mut groups = vec![group("apps")];
    if fake.broken_group.load(std::sync::atomic::Ordering::SeqCst) {
        groups.insert(0, group("broken.example"));
    }
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        .into_response()
}

async fn apps_resources() -> Response {
    axum::Json(json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"]},
        {"name": "deployments/scale", "singularName": "", "namespaced": true, "kind": "Scale"}]}))
    .into_response()
}

async fn create_deployment(
    State(fake): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    axum::Json(deployment): axum::Json<Value>,
) -> Response {
    lock(&fake.deployments).push((ns, deployment.clone()));
    (StatusCode::CREATED, axum::Json(deployment)).into_response()
}

async fn list_deployments(
    State(fake): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let items: Vec<Value> = lock(&fake.deployments)
        .iter()
        .filter(|(d_ns, _)| *d_ns == ns)
        .map(|(_, d)| d.clone())
        .collect();
    if !wants_table(&headers) {
        return axum::Json(
            json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "items": items}),
        )
        .into_response();
    }
    let columns = [
        ("Name", 0),
        ("Ready", 0),
        ("Up-to-date", 0),
        ("Available", 0),
        ("Age", 0),
    ];
    let rows = items
        .iter()
        .map(|d| {
            (
                vec![
                    d["metadata"]["name"].clone(),
                    json!("0/2"),
                    json!(0),
                    json!(0),
                    json!("7s"),
                ],
                d,
            )
        })
        .collect();
    table(&columns, rows)
}

async fn require_token(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == expected.as_bytes());
    if authorized {
        next.run(request).await
    } else {
        status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }
}

async fn create_pod(
    State(fake): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    axum::Json(mut pod): axum::Json<Value>,
) -> Response {
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if pod["spec"]["containers"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        let message = format!("Pod {name:?} is invalid: spec.containers: Required value");
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message);
    }
    let key = (ns.clone(), name.clone());
    if lock(&fake.pods).contains_key(&key) {
        let message = format!("pods {name:?} already exists");
        return status(StatusCode::CONFLICT, "AlreadyExists", &message);
    }
    pod["metadata"]["namespace"] = json!(ns);
    pod["metadata"]["resourceVersion"] = json!(next_revision(&fake));
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    pod["metadata"]["creationTimestamp"] = json!("2026-11-27T12:00:00Z");
    pod["spec"]["nodeName"] = json!("pi-1");
    pod["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    pod["status"] = json!({"phase": "Running", "podIP": "10.42.0.7", "containerStatuses": [
        {"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    lock(&fake.pods).insert(key, pod.clone());
    (StatusCode::CREATED, axum::Json(pod)).into_response()
}

async fn list_pods(
    State(fake): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let items: Vec<Value> = lock(&fake.pods)
        .iter()
        .filter(|((pod_ns, _), _)| *pod_ns == ns)
        .map(|(_, pod)| pod.clone())
        .collect();
    pod_list(items, &headers)
}

async fn list_all_pods(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    pod_list(lock(&fake.pods).values().cloned().collect(), &headers)
}

fn pod_list(items: Vec<Value>, headers: &HeaderMap) -> Response {
    if wants_table(headers) {
        return table(
            &POD_COLUMNS,
            items.iter().map(|pod| (pod_cells(pod), pod)).collect(),
        );
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "99"}, "items": items}))
        .into_response()
}

async fn get_pod(
    State(fake): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match lock(&fake.pods).get(&(ns, name.clone())) {
        Some(pod) if wants_table(&headers) => table(&POD_COLUMNS, vec![(pod_cells(pod), pod)]),
        Some(pod) => axum::Json(pod.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods {name:?} not found"),
        ),
    }
}

async fn replace_pod(
    State(fake): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    axum::Json(mut pod): axum::Json<Value>,
) -> Response {
    lock(&fake.puts).push(pod.clone());
    let key = (ns, name.clone());
    let live_version = lock(&fake.pods)
        .get(&key)
        .map(|live| live["metadata"]["resourceVersion"].clone());
    match live_version {
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods {name:?} not found"),
        ),
        Some(version) if version != pod["metadata"]["resourceVersion"] => status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        Some(_) => {
            pod["metadata"]["resourceVersion"] = json!(next_revision(&fake));
            lock(&fake.pods).insert(key, pod.clone());
            axum::Json(pod).into_response()
        }
    }
}

async fn delete_pod(
    State(fake): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    match lock(&fake.pods).remove(&(ns, name.clone())) {
        Some(pod) => axum::Json(pod).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods {name:?} not found"),
        ),
    }
}

/// Sends `line 1`, then waits until the test has seen it before sending `line 2`: the CLI
/// can only pass the test by forwarding chunks as they arrive.
async fn pod_log(
    State(fake): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    lock(&fake.log_queries).push(query);
    let first = futures::stream::once(async { Ok::<_, std::io::Error>("line 1\n") });
    let rest = futures::stream::once(async move {
        fake.release_log.notified().await;
        Ok("line 2\n")
    });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

async fn push_module(
    State(fake): State<Shared>,
    UrlPath((name, tag)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let size = body.len();
    lock(&fake.pushed).push((name.clone(), tag.clone(), content_type, body));
    let record = json!({"apiVersion": "wasmfleet.dev/v1", "kind": "Module", "name": name, "tag": tag,
                        "digest": DIGEST, "size": size});
    (StatusCode::CREATED, axum::Json(record)).into_response()
}

async fn list_modules() -> Response {
    axum::Json(
        json!({"apiVersion": "wasmfleet.dev/v1", "kind": "ModuleList", "items": [
        {"name": "hello", "tag": "v1", "digest": DIGEST, "size": 46889}]}),
    )
    .into_response()
}

async fn list_nodes() -> Response {
    axum::Json(json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "5"}, "items": [{
        "metadata": {"name": "pi-1", "creationTimestamp": "2026-11-27T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "true"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kubeletVersion": "v0.1.0", "architecture": "arm64",
                                "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0"}}}]}))
    .into_response()
}

fn router(fake: Shared) -> Router {
    Router::new()
        .route("/api", get(api_versions))
        .route("/api/v1", get(core_resources))
        .route("/apis", get(api_groups))
        .route("/apis/apps/v1", get(apps_resources))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(list_pods).post(create_pod),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_pod).put(replace_pod).delete(delete_pod),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/pods", get(list_all_pods))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/apis/wasmfleet.dev/v1/modules", get(list_modules))
        .route(
            "/apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}",
            put(push_module),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(require_token))
        .layer(middleware::from_fn_with_state(fake.clone(), record))
        .with_state(fake)
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.der().clone(),
        server_key: server_key.serialize_der(),
    }
}

struct Server {
    addr: SocketAddr,
    ca_pem: String,
    fake: Shared,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn start_server() -> Server {
    let pki = pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_cert],
            rustls::pki_types::PrivatePkcs8KeyDer::from(pki.server_key).into(),
        )
        .expect("server tls config");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let fake = Shared::default();
    let handle = axum_server::Handle::new();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    let server = axum_server::from_tcp_rustls(listener, config)
        .expect("server")
        .handle(handle.clone())
        .serve(router(fake.clone()).into_make_service());
    tokio::spawn(server);
    Server {
        addr,
        ca_pem: pki.ca_pem,
        fake,
        handle,
    }
}

// === running the CLI ===

struct Env {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn kubeconfig_text(server: &str, ca_pem: &str, token: &str, namespace: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin@wasmfleet\n\
         clusters:\n- name: wasmfleet\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: admin\n  user:\n    token: {token}\n\
         contexts:\n- name: admin@wasmfleet\n  context:\n    cluster: wasmfleet\n    user: admin\n    namespace: {namespace}\n"
    )
}

fn env_for(server: &Server, token: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let url = format!("https://{}", server.addr);
    std::fs::write(
        &kubeconfig,
        kubeconfig_text(&url, &server.ca_pem, token, "default"),
    )
    .expect("write kubeconfig");
    Env { dir, kubeconfig }
}

impl Env {
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmfleet"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output();
        tokio::time::timeout(TIMEOUT, output)
            .await
            .expect("wasmfleet hung")
            .expect("wasmfleet runs")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "failed: {output:?}\nstderr: {}",
        stderr(output)
    );
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: hello:v1
    args: [alice]
";

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_then_reports_unchanged_then_configures_with_the_live_version() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let file = env.write("pod.yaml", POD);
    let file = file.to_str().expect("utf-8 path");

    let created = env.run(&["apply", "-f", file]).await;
    assert_success(&created);
    assert_eq!(stdout(&created), "pod/hello created\n");

    let again = env.run(&["apply", "-f", file]).await;
    assert_success(&again);
    assert_eq!(stdout(&again), "pod/hello unchanged\n");
    assert!(lock(&server.fake.puts).is_empty(), "unchanged must not PUT");

    env.write("pod.yaml", POD.replace("hello:v1", "hello:v2"));
    let changed = env.run(&["apply", "-f", file]).await;
    assert_success(&changed);
    assert_eq!(stdout(&changed), "pod/hello configured\n");
    let puts = lock(&server.fake.puts).clone();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0]["metadata"]["resourceVersion"], "1");
    assert_eq!(puts[0]["spec"]["containers"][0]["image"], "hello:v2");
    assert_eq!(
        puts[0]["spec"]["nodeName"], "pi-1",
        "server-set fields are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reads_a_json_list_from_stdin_and_reports_server_errors() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "good", "namespace": "edge"},
         "spec": {"containers": [{"name": "c", "image": "hello:v1"}]}}]});
    let mut child = env
        .command(&["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, list.to_string().as_bytes())
        .await
        .expect("write stdin");
    drop(stdin);
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("hung")
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "Error from server (Invalid): error when creating \"STDIN\": Pod \"bad\" is invalid: spec.containers: Required value\n"
    );
    assert_eq!(
        stdout(&output),
        "pod/good created\n",
        "later objects are still applied"
    );
    assert!(lock(&server.fake.pods).contains_key(&("edge".to_owned(), "good".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_tables_json_yaml_and_not_found() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let file = env.write("pod.yaml", POD);
    assert_success(
        &env.run(&["apply", "-f", file.to_str().expect("utf-8")])
            .await,
    );

    let table = env.run(&["get", "pods"]).await;
    assert_success(&table);
    let text = stdout(&table);
    let mut lines = text.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"])
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(row[..4], ["hello", "1/1", "Running", "0"]);

    let wide = env.run(&["get", "po", "-o", "wide", "-A"]).await;
    assert_success(&wide);
    let text = stdout(&wide);
    assert!(text.starts_with("NAMESPACE   NAME"), "{text}");
    assert!(
        text.contains("10.42.0.7") && text.contains("pi-1"),
        "{text}"
    );

    let json_out = env.run(&["get", "pod", "hello", "-o", "json"]).await;
    assert_success(&json_out);
    let pod: Value = serde_json::from_str(&stdout(&json_out)).expect("json");
    assert_eq!(pod["metadata"]["uid"], "uid-hello");

    let yaml_out = env
        .run(&["-n", "default", "get", "pods", "hello", "-o", "yaml"])
        .await;
    assert_success(&yaml_out);
    assert!(
        stdout(&yaml_out).contains("name: hello\n"),
        "{}",
        stdout(&yaml_out)
    );

    let missing = env.run(&["get", "pod", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );

    let empty = env.run(&["get", "pods", "-n", "edge"]).await;
    assert_success(&empty);
    assert_eq!(stdout(&empty), "");
    assert_eq!(stderr(&empty), "No resources found in edge namespace.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_asks_for_the_servers_table_and_prints_its_columns() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let labelled = POD.replace(
        "  name: hello\n",
        "  name: hello\n  labels: {tier: edge, app: hello}\n",
    );
    let file = env.write("pod.yaml", labelled);
    assert_success(
        &env.run(&["apply", "-f", file.to_str().expect("utf-8")])
            .await,
    );

    let plain = env.run(&["get", "pods"]).await;
    assert_success(&plain);
    // AGE is the server's cell ("5m"), not computed from the pod's creationTimestamp.
    assert_eq!(
        stdout(&plain),
        "NAME    READY   STATUS    RESTARTS   AGE\nhello   1/1     Running   0          5m\n"
    );
    let decorated = env
        .run(&["get", "po", "-o", "wide", "-A", "--show-labels"])
        .await;
    assert_success(&decorated);
    assert_eq!(
        stdout(&decorated),
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP          NODE   LABELS\n\
         default     hello   1/1     Running   0          5m    10.42.0.7   pi-1   app=hello,tier=edge\n"
    );
    let one = env.run(&["get", "pod", "hello", "--no-headers"]).await;
    assert_success(&one);
    assert_eq!(stdout(&one), "hello   1/1   Running   0     5m\n");

    let kubectl_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    assert_eq!(
        accepts_of(&server.fake, "/api/v1/namespaces/default/pods"),
        [kubectl_accept]
    );
    assert_eq!(accepts_of(&server.fake, "/api/v1/pods"), [kubectl_accept]);
    assert_eq!(
        accepts_of(&server.fake, "/api/v1/namespaces/default/pods/hello"),
        [kubectl_accept]
    );
    // One discovery per command: apply and the three gets.
    assert_eq!(accepts_of(&server.fake, "/api").len(), 4);
    assert_eq!(accepts_of(&server.fake, "/apis/apps/v1").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tables_gets_name_and_age_and_modules_keep_their_listing() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    // The fake's node list ignores `as=Table` and answers a NodeList, as an old server would.
    let nodes = env.run(&["get", "nodes", "-o", "wide"]).await;
    assert_success(&nodes);
    let text = stdout(&nodes);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "NAME   AGE");
    assert!(
        lines[1].starts_with("pi-1   ") && lines[1].ends_with('d'),
        "{text}"
    );

    let modules = env.run(&["get", "modules"]).await;
    assert_success(&modules);
    assert_eq!(
        stdout(&modules),
        format!(
            "NAME    TAG   DIGEST{}SIZE\nhello   v1    {DIGEST}   45.79 KiB\n",
            " ".repeat(DIGEST.len() - 3)
        )
    );
    assert!(
        accepts_of(&server.fake, "/api").len() == 1,
        "modules are a fixed path: no discovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resource_is_applied_and_listed_through_discovery() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let deployment =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n";
    let file = env.write("deploy.yaml", deployment);
    let applied = env
        .run(&["apply", "-f", file.to_str().expect("utf-8")])
        .await;
    assert_success(&applied);
    assert_eq!(stdout(&applied), "deployment.apps/web created\n");
    let created = lock(&server.fake.deployments).clone();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].0, "default");
    assert_eq!(created[0].1["metadata"]["namespace"], "default");

    let listed = env.run(&["get", "deploy"]).await;
    assert_success(&listed);
    assert_eq!(
        stdout(&listed),
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    0/2     0            0           7s\n"
    );
    let names = env.run(&["get", "deployments.apps", "-o", "name"]).await;
    assert_success(&names);
    assert_eq!(stdout(&names), "deployment.apps/web\n");

    let job = env.write(
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n",
    );
    let refused = env
        .run(&["apply", "-f", job.to_str().expect("utf-8")])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        format!(
            "error: unable to recognize {:?}: no matches for kind \"Job\" in version \"batch/v1\"\n",
            job.display().to_string()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_a_resource_list_is_named_and_skipped() {
    let server = start_server().await;
    server
        .fake
        .broken_group
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let env = env_for(&server, TOKEN);
    let file = env.write("pod.yaml", POD);
    assert_success(
        &env.run(&["apply", "-f", file.to_str().expect("utf-8")])
            .await,
    );
    let output = env.run(&["get", "deploy"]).await;
    assert_success(&output);
    assert_eq!(
        stderr(&output),
        "warning: couldn't get resource list for broken.example/v1: the server answered 404: \n\
         No resources found in default namespace.\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resource_is_refused_like_kubectl() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    for args in [&["get", "foo"][..], &["delete", "foo", "x"][..]] {
        let output = env.run(args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&output),
            "error: the server doesn't have a resource type \"foo\"\n"
        );
    }
    assert!(
        lock(&server.fake.requests)
            .iter()
            .all(|(_, path, _)| path.starts_with("/api")),
        "only discovery was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_name_and_by_file() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let file = env.write("pod.yaml", POD);
    let file = file.to_str().expect("utf-8");
    assert_success(&env.run(&["apply", "-f", file]).await);

    let deleted = env.run(&["delete", "pod", "hello"]).await;
    assert_success(&deleted);
    assert_eq!(stdout(&deleted), "pod \"hello\" deleted\n");

    let again = env.run(&["delete", "-f", file]).await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        "Error from server (NotFound): pods \"hello\" not found\n"
    );

    let ignored = env
        .run(&["delete", "po", "hello", "--ignore-not-found"])
        .await;
    assert_success(&ignored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_each_chunk_as_it_arrives() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let mut child = env
        .command(&["logs", "hello", "-f", "-c", "c", "--tail", "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("first line in time");
    assert_eq!(first.expect("read").as_deref(), Some("line 1"));
    // Only now does the server send the rest.
    server.fake.release_log.notify_one();
    let second = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("second line in time");
    assert_eq!(second.expect("read").as_deref(), Some("line 2"));
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success());
    let queries = lock(&server.fake.log_queries).clone();
    let expected: BTreeMap<String, String> =
        [("container", "c"), ("follow", "true"), ("tailLines", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(queries, [expected]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_streams_the_file_and_prints_the_digest() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    // Over the progress threshold, so the streaming and progress code paths both run.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.resize(3 * 1024 * 1024 / 2, 0x2a);
    let file = env.write("big.wasm", &module);

    let output = env
        .run(&["push", file.to_str().expect("utf-8"), "big:v2"])
        .await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        format!("pushed big:v2 {DIGEST} (1.50 MiB)\n")
    );
    assert_eq!(
        stderr(&output),
        "",
        "no progress bar when stderr is not a terminal"
    );
    let pushed = lock(&server.fake.pushed).clone();
    assert_eq!(pushed.len(), 1);
    let (name, tag, content_type, body) = &pushed[0];
    assert_eq!(
        (name.as_str(), tag.as_str(), content_type.as_str()),
        ("big", "v2", "application/wasm")
    );
    assert!(body[..] == module[..], "the server got the exact bytes");

    let not_wasm = env.write("notes.txt", "hello");
    let refused = env
        .run(&["push", not_wasm.to_str().expect("utf-8"), "x:v1"])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("is not a wasm module or component"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_reported_as_unauthorized() {
    let server = start_server().await;
    let env = env_for(&server, "wrong-token");
    let output = env.run(&["get", "pods"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: You must be logged in to the server (Unauthorized)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_another_ca_is_not_trusted() {
    let server = start_server().await;
    let other_ca = pki().ca_pem;
    let env = env_for(&server, TOKEN);
    let url = format!("https://{}", server.addr);
    std::fs::write(
        &env.kubeconfig,
        kubeconfig_text(&url, &other_ca, TOKEN, "default"),
    )
    .expect("write");
    let output = env.run(&["get", "pods"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!("error: unable to connect to the server {url}")),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("config");
    let url = format!("https://{addr}");
    std::fs::write(
        &kubeconfig,
        kubeconfig_text(&url, &pki().ca_pem, TOKEN, "default"),
    )
    .expect("write");
    let env = Env { dir, kubeconfig };
    let output = env.run(&["get", "nodes"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!("error: unable to connect to the server {url}")),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubeconfig_the_error_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmfleet"))
        .args(["get", "pods"])
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: no kubeconfig found"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_env_is_used_when_no_flag_is_given() {
    let server = start_server().await;
    let env = env_for(&server, TOKEN);
    let list = env.kubeconfig.display().to_string() + ":/does/not/exist";
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmfleet"))
        .args(["get", "ns", "-o", "name"])
        .env("KUBECONFIG", list)
        .env("HOME", Path::new("/nonexistent"))
        .output()
        .await
        .expect("runs");
    // The fake server lists namespaces in discovery but has no route for them: the 404
    // proves the request got there.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("error: the server answered 404"),
        "{}",
        stderr(&output)
    );
}
