//! The pod network in the real runtime: `tcp-echo` (a wasm32-wasip2 component using
//! Rust's `std::net`) served and called through the wrapped `wasi:sockets`, over real
//! loopback sockets. Each test uses its own pod IPs, so their aliases never collide.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::net::PodNet;
use wasmfleet_agent::runtime::{ExitReason, LogBuffer, Program, RunSpec, Runtime};
use wasmfleet_protocol::network::{ClusterCidr, PodNetwork, parse_egress};

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/dist")
        .join(format!("{name}.wasm"))
}

async fn tcp_echo(runtime: &Runtime) -> Program {
    let wasm = dist("tcp-echo");
    let bytes = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{}: {e} (run workloads/build first)", wasm.display()));
    let digest = hex::encode(Sha256::digest(&bytes));
    runtime.load(&digest, &wasm).await.expect("tcp-echo loads")
}

fn pod(ip: &str, egress: &str) -> Arc<PodNet> {
    let network = PodNetwork {
        ip: ip.parse().expect("ip"),
        cluster_cidr: ClusterCidr::default().net(),
        ports: vec![],
        egress: parse_egress(egress).expect("rules"),
    };
    let services = wasmfleet_agent::net::ServiceDirectory::new("pi-1", None);
    Arc::new(PodNet::new(&network, "default", services).expect("pod network"))
}

fn spec(net: &Arc<PodNet>, pod_name: &str, args: &[&str]) -> RunSpec {
    RunSpec {
        argv: std::iter::once("tcp-echo")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect(),
        network: Some(net.clone()),
        pod_name: pod_name.to_owned(),
        ..RunSpec::default()
    }
}

/// A container running in the background, stopped when dropped.
struct Running {
    logs: LogBuffer,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start(runtime: &Runtime, program: &Program, spec: RunSpec) -> Running {
    let (logs, stop) = (LogBuffer::new(), CancellationToken::new());
    let (runtime, program) = (runtime.clone(), program.clone());
    let (task_logs, task_stop) = (logs.clone(), stop.clone());
    tokio::spawn(async move { runtime.run(&program, &spec, &task_logs, &task_stop).await });
    Running { logs, stop }
}

/// Waits until the container's log has a line starting with `prefix`.
async fn wait_line(logs: &LogBuffer, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = logs.lines().into_iter().find(|l| l.starts_with(prefix)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no line {prefix:?} in {:?}",
            logs.lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a client container to its end; returns its exit and log lines.
async fn client(
    runtime: &Runtime,
    program: &Program,
    spec: RunSpec,
) -> (i32, ExitReason, Vec<String>) {
    let logs = LogBuffer::new();
    let exit = runtime
        .run(program, &spec, &logs, &CancellationToken::new())
        .await;
    (exit.code, exit.reason, logs.lines())
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_localhost_and_one_port_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = tcp_echo(&runtime).await;
    let web = pod("10.42.201.2", "");

    let server = start(&runtime, &program, spec(&web, "web", &["--port", "7"]));
    wait_line(&server.logs, "listening on 0.0.0.0:7").await;

    let (code, _, lines) = client(
        &runtime,
        &program,
        spec(
            &web,
            "web",
            &["--connect", "127.0.0.1:7", "--send", "hello"],
        ),
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines, ["echo from 127.0.0.1:7: hello"]);

    // A name lookup of localhost and of the pod's own name stays inside the pod.
    let (code, _, lines) = client(
        &runtime,
        &program,
        spec(&web, "web", &["--connect", "web:7", "--send", "by name"]),
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    // The name is the pod's own IP; a peer inside the same pod always shows as localhost.
    assert_eq!(lines, ["echo from 127.0.0.1:7: by name"]);

    // The second container of the pod cannot take the port the first one holds.
    let (code, reason, lines) =
        client(&runtime, &program, spec(&web, "web", &["--port", "7"])).await;
    assert_eq!((code, reason), (1, ExitReason::Error));
    assert!(
        lines[0].starts_with("tcp-echo: cannot listen on 0.0.0.0:7: Address in use"),
        "{lines:?}"
    );

    // Another pod holds the same port on its own address without any conflict.
    let other = pod("10.42.201.3", "");
    let second = start(&runtime, &program, spec(&other, "other", &["--port", "7"]));
    wait_line(&second.logs, "listening on 0.0.0.0:7").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_reaches_another_by_its_pod_ip_and_is_seen_by_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = tcp_echo(&runtime).await;
    let (server_pod, client_pod) = (pod("10.42.202.2", ""), pod("10.42.202.3", ""));

    let server = start(
        &runtime,
        &program,
        spec(&server_pod, "echo", &["--port", "9000"]),
    );
    wait_line(&server.logs, "listening on").await;

    let (code, _, lines) = client(
        &runtime,
        &program,
        spec(
            &client_pod,
            "caller",
            &["--connect", "10.42.202.2:9000", "--send", "hi"],
        ),
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines, ["echo from 10.42.202.2:9000: hi"]);
    // The server sees the caller's pod IP, not a host address.
    let closed = wait_line(&server.logs, "10.42.202.3:").await;
    assert!(closed.ends_with("closed after 3 bytes"), "{closed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_outside_the_cluster_is_denied_at_once_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = tcp_echo(&runtime).await;
    let locked = pod("10.42.203.2", "");

    for target in ["192.0.2.1:80".to_owned(), "example.com:80".to_owned()] {
        let started = Instant::now();
        let (code, _, lines) = client(
            &runtime,
            &program,
            spec(&locked, "p", &["--connect", &target]),
        )
        .await;
        assert_eq!(code, 1, "{lines:?}");
        assert!(
            lines[0].contains(&format!("cannot connect to {target}: Permission denied")),
            "{lines:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a denial must not hang"
        );
    }

    // A host service outside the cluster, on this machine's own (non-loopback) address:
    // reachable once the pod's egress rules list it, and only on the listed port.
    let host_ip = own_address();
    let outside = std::net::TcpListener::bind((host_ip, 0)).expect("bind");
    let port = outside.local_addr().expect("address").port();
    std::thread::spawn(move || echo_once(&outside));
    let target = format!("{host_ip}:{port}");
    let allowed = pod("10.42.203.3", &target);
    let (code, _, lines) = client(
        &runtime,
        &program,
        spec(&allowed, "p", &["--connect", &target, "--send", "out"]),
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines, [format!("echo from {target}: out")]);
    let other_port = format!("{host_ip}:{}", port.wrapping_add(1).max(1));
    let (code, _, lines) = client(
        &runtime,
        &program,
        spec(&allowed, "p", &["--connect", &other_port]),
    )
    .await;
    assert_eq!(code, 1, "{lines:?}");
    assert!(lines[0].contains("Permission denied"), "{lines:?}");
}

/// This machine's address on its default route (no packet is sent).
fn own_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    probe.connect("192.0.2.1:9").expect("a default route");
    probe.local_addr().expect("local address").ip()
}

/// Answers one connection with what it sent.
fn echo_once(listener: &std::net::TcpListener) {
    use std::io::{Read, Write};
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let mut received = Vec::new();
    if stream.read_to_end(&mut received).is_ok() {
        let _ = stream.write_all(&received);
    }
}
