//! Serving `wasi:http` components in the real runtime: `http-hello` (a `wasi:http/proxy`
//! component, unmodified for `wasmtime serve`) served on its pod's alias over real sockets,
//! with its per-request limits, and `fetch` (a command using `wasi:http/outgoing-handler`)
//! calling it through the pod network. Each test uses its own pod IPs, so their aliases
//! never collide.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::net::{PodNet, ServiceDirectory};
use wasmfleet_agent::runtime::{
    Exit, ExitReason, HttpLimits, LogBuffer, Program, RunSpec, Runtime,
};
use wasmfleet_protocol::network::{ClusterCidr, PodNetwork, parse_egress};

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/dist")
        .join(format!("{name}.wasm"))
}

async fn load(runtime: &Runtime, name: &str) -> Program {
    let wasm = dist(name);
    let bytes = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{}: {e} (run workloads/build first)", wasm.display()));
    let digest = hex::encode(Sha256::digest(&bytes));
    runtime.load(&digest, &wasm).await.expect("module loads")
}

fn pod(ip: &str, egress: &str) -> Arc<PodNet> {
    let network = PodNetwork {
        ip: ip.parse().expect("ip"),
        cluster_cidr: ClusterCidr::default().net(),
        ports: vec![],
        egress: parse_egress(egress).expect("rules"),
    };
    let services = ServiceDirectory::new("pi-1", None);
    Arc::new(PodNet::new(&network, "default", services).expect("pod network"))
}

/// A served container in the background.
struct Served {
    address: String,
    logs: LogBuffer,
    stop: CancellationToken,
    task: JoinHandle<Exit>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn hello_spec(net: &Arc<PodNet>, limits: HttpLimits, memory: Option<u64>) -> RunSpec {
    RunSpec {
        argv: vec!["http-hello".into()],
        env: vec![("MESSAGE".into(), "stable".into())],
        memory_limit_bytes: memory,
        network: Some(net.clone()),
        pod_name: "web".into(),
        http_port: Some(8080),
        http_limits: limits,
        ..RunSpec::default()
    }
}

/// Serves http-hello on `ip`:8080 and waits until it answers.
async fn serve(runtime: &Runtime, ip: &str, limits: HttpLimits, memory: Option<u64>) -> Served {
    let program = load(runtime, "http-hello").await;
    assert!(program.serves_http());
    let net = pod(ip, "");
    let spec = hello_spec(&net, limits, memory);
    let (logs, stop) = (LogBuffer::new(), CancellationToken::new());
    let (runtime, task_logs, task_stop) = (runtime.clone(), logs.clone(), stop.clone());
    let task =
        tokio::spawn(async move { runtime.run(&program, &spec, &task_logs, &task_stop).await });
    let address = format!("{}:8080", net.alias());
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(&address, "GET", "/", 0).await.is_err() {
        assert!(Instant::now() < deadline, "http-hello never answered");
        assert!(!task.is_finished(), "the server ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served {
        address,
        logs,
        stop,
        task,
    }
}

/// One request on its own connection: status and body.
async fn request(
    address: &str,
    method: &str,
    path: &str,
    body: usize,
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", address)
        .body(Full::new(Bytes::from(vec![b'x'; body])))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Sends a request head of 100 KiB; the start of the status line that answers it.
async fn oversized_head(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    // The server may answer and close before it read everything.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = [0; 12];
    stream.read_exact(&mut answer).await.expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn get(served: &Served, path: &str) -> (u16, String) {
    request(&served.address, "GET", path, 0)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Waits until exactly `n` instances are alive.
async fn wait_live(runtime: &Runtime, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.live_instances() != n {
        assert!(
            Instant::now() < deadline,
            "{} instances alive, not {n}",
            runtime.live_instances()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn limits(timeout_ms: u64) -> HttpLimits {
    HttpLimits {
        request_timeout: Duration::from_millis(timeout_ms),
        ..HttpLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_an_instance_with_the_containers_env() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let served = serve(&runtime, "10.42.210.2", limits(5_000), None).await;
    for path in ["/a", "/b?c=d", "/a"] {
        assert_eq!(
            get(&served, path).await,
            (200, "hello from wasmfleet\nstable\n".into())
        );
    }
    // Each instance's stdout goes to the container's log.
    let lines = served.logs.lines();
    let requests: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .skip_while(|l| *l != "GET /a")
        .collect();
    assert_eq!(requests, ["GET /a", "GET /b?c=d", "GET /a"], "{lines:?}");
    // Each request's instance is gone once answered: only the server's listener is left.
    wait_live(&runtime, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_time_limit_gets_503_and_the_next_one_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let served = serve(&runtime, "10.42.210.3", limits(400), None).await;
    for path in ["/spin?ms=60000", "/sleep?ms=60000"] {
        let started = Instant::now();
        let (status, body) = get(&served, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.contains("time limit of 400ms"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(get(&served, "/").await.0, 200, "after {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_limit_applies_to_each_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let served = serve(&runtime, "10.42.210.4", limits(5_000), Some(32 << 20)).await;
    // One request may use most of the limit, again and again: memory is per instance.
    for _ in 0..3 {
        assert_eq!(get(&served, "/alloc?mib=20").await.0, 200);
    }
    let (status, body) = get(&served, "/alloc?mib=64").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit exceeded"), "{body}");
    assert_eq!(get(&served, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_concurrency_and_body_limits_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let limits = HttpLimits {
        request_timeout: Duration::from_secs(3),
        max_concurrent_requests: 1,
        max_body_bytes: 1024,
    };
    let served = serve(&runtime, "10.42.210.5", limits, None).await;
    let (status, body) = request(&served.address, "POST", "/", 4096)
        .await
        .expect("post");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1024 bytes"), "{body}");

    assert_eq!(oversized_head(&served.address).await, "HTTP/1.1 431");

    // Once the slow request's instance exists, it holds the only slot.
    wait_live(&runtime, 0).await;
    let address = served.address.clone();
    let busy = tokio::spawn(async move { request(&address, "GET", "/sleep?ms=1500", 0).await });
    wait_live(&runtime, 1).await;
    let (status, refused) = get(&served, "/").await;
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused.contains("limit of 1 concurrent requests"),
        "{refused}"
    );
    assert_eq!(busy.await.expect("join").expect("slow request").0, 200);
    assert_eq!(get(&served, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_drains_requests_in_flight_then_closes_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let mut served = serve(&runtime, "10.42.210.6", limits(5_000), None).await;
    wait_live(&runtime, 0).await;
    let address = served.address.clone();
    let slow = tokio::spawn(async move { request(&address, "GET", "/sleep?ms=700", 0).await });
    // Stop once the slow request's instance exists.
    wait_live(&runtime, 1).await;
    served.stop.cancel();
    assert_eq!(slow.await.expect("join").expect("drained request").0, 200);
    let exit = (&mut served.task).await.expect("join");
    assert_eq!(exit.reason, ExitReason::Killed);
    assert!(request(&served.address, "GET", "/", 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_without_a_port_ends_saying_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = load(&runtime, "http-hello").await;
    let net = pod("10.42.210.7", "");
    let spec = RunSpec {
        http_port: None,
        ..hello_spec(&net, HttpLimits::default(), None)
    };
    let exit = runtime
        .run(
            &program,
            &spec,
            &LogBuffer::new(),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(exit.reason, ExitReason::Error);
    assert!(exit.message.contains("containerPort"), "{}", exit.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_reaches_a_served_pod_and_is_denied_outside_the_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let _served = serve(&runtime, "10.42.210.8", limits(5_000), None).await;
    let fetch = load(&runtime, "fetch").await;
    assert!(!fetch.serves_http());
    let client = pod("10.42.210.9", "");
    let run = |args: &[&str]| RunSpec {
        argv: std::iter::once("fetch")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect(),
        network: Some(client.clone()),
        pod_name: "client".into(),
        ..RunSpec::default()
    };
    let logs = LogBuffer::new();
    let exit = runtime
        .run(
            &fetch,
            &run(&["http://10.42.210.8:8080/", "2"]),
            &logs,
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(exit.code, 0, "{exit:?} {:?}", logs.lines());
    assert_eq!(
        logs.lines(),
        [
            "200 hello from wasmfleet stable",
            "200 hello from wasmfleet stable"
        ]
    );

    let logs = LogBuffer::new();
    let started = Instant::now();
    let exit = runtime
        .run(
            &fetch,
            &run(&["http://192.0.2.1/", "1"]),
            &logs,
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(exit.code, 1, "{exit:?}");
    let lines = logs.lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: HttpRequestDenied"),
        "{lines:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_ends_the_container_saying_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let net = pod("10.42.210.10", "");
    // Another container of the pod already listens on 8080.
    let _taken = tokio::net::TcpListener::bind(format!("{}:8080", net.alias()))
        .await
        .expect("bind");
    let program = load(&runtime, "http-hello").await;
    let spec = hello_spec(&net, HttpLimits::default(), None);
    let exit = runtime
        .run(
            &program,
            &spec,
            &LogBuffer::new(),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(exit.reason, ExitReason::Error);
    assert!(
        exit.message
            .starts_with("cannot serve wasi:http on 10.42.210.10:8080: Address already in use"),
        "{}",
        exit.message
    );
}
