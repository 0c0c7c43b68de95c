//! The pod network measured (issue 10 §7), on real processes:
//!
//! - `tcp [MIB] [ROUNDS]` (64 and 2000): TCP throughput (MIB MiB echoed in 64 KiB lockstep
//!   chunks) and one-byte round trips (ROUNDS) from a `tcp-echo --bench` pod on node-a to
//!   `tcp-echo` servers through ClusterIP Services: on node-a itself, on node-b (a direct
//!   tunnel) and on node-c (behind a NAT-like firewall: the server's relay); against the
//!   same measurement between two host processes over loopback. Three agents in network
//!   namespaces (needs root, `ip`, `nft`).
//! - `http [SECONDS] [CONNECTIONS]` (10 and 16): requests/s and p50/p99 latency of the
//!   `http-hello` wasi:http component served by one agent, through a NodePort and through
//!   the Ingress, with keep-alive connections from this process; and of `wasmtime serve`
//!   running the same component (when `wasmtime` is on PATH:
//!   `cargo install wasmtime-cli --version 48.0.8 --locked`), measured the same way.
//! - `udp [ROUNDS]` (2000): one-byte UDP round trips from this process to `tcp-echo --udp`
//!   pods through node-a's UDP NodePorts: to a pod on node-a, on node-b (a direct tunnel)
//!   and on node-c (the relay); against a UDP echo between two host processes over
//!   loopback. The same three agents in network namespaces.
//! - `rss [PODS]` (100): one agent running PODS `tcp-echo` servers, each with a pod IP and a
//!   listening socket, then its resident memory.
//!
//! Run: `cargo build --release --workspace --bins && target/release/wasmfleet-bench-net MODE`.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmfleet_tests::cluster::{AgentLaunch, Broker};
use wasmfleet_tests::flood::rss_bytes;
use wasmfleet_tests::netns::Network;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(120);
const CHUNK: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    match args.first().map(String::as_str) {
        None | Some("tcp") => tcp(number(1, 64)?, number(2, 2000)?),
        Some("http") => http(number(1, 10)?, number(2, 16)?),
        Some("rss") => rss(number(1, 100)?),
        Some("udp") => udp(number(1, 2000)?),
        Some(other) => bail!("unknown mode {other:?}: tcp, http, udp or rss"),
    }
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let out = cluster.kubectl_with_stdin(args, stdin);
    if !out.success {
        bail!("kubectl {}: {}{}", args.join(" "), out.stdout, out.stderr);
    }
    Ok(out.stdout)
}

/// A `tcp-echo` server pod on `node` behind its own ClusterIP Service `name`.
fn echo_server(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{bench: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: server
    image: tcp-echo:v1
    args: [\"--port\", \"7007\"]
    ports: [{{containerPort: 7007}}]
    readinessProbe:
      tcpSocket: {{port: 7007}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{bench: {name}}}
  ports: [{{port: 80, targetPort: 7007}}]
"
    )
}

/// What one `tcp-echo --bench` run printed.
struct Measured {
    mib_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn parse_bench(log: &str) -> anyhow::Result<Measured> {
    let word_after = |line: &str, word: &str| -> Option<String> {
        let mut words = line.split_whitespace();
        words.find(|w| *w == word)?;
        words.next().map(|w| w.trim_end_matches(',').to_owned())
    };
    let throughput = log
        .lines()
        .find(|l| l.starts_with("throughput:"))
        .context("no throughput line")?;
    let latency = log
        .lines()
        .find(|l| l.starts_with("latency:"))
        .context("no latency line")?;
    let mib_s = throughput
        .rsplit(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("throughput figure")?;
    let us = |word| -> anyhow::Result<u64> {
        word_after(latency, word)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{word} in {latency}"))
    };
    Ok(Measured {
        mib_s,
        p50_us: us("p50")?,
        p99_us: us("p99")?,
    })
}

/// Runs one `tcp-echo --bench` client pod on `node` against `target`.
fn bench_pod(
    cluster: &Cluster,
    name: &str,
    node: &str,
    target: &str,
    bytes: u64,
    rounds: u64,
) -> anyhow::Result<Measured> {
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: main
    image: tcp-echo:v1
    args: [\"--connect\", \"{target}\", \"--bench\", \"{bytes}\", \"{rounds}\"]
"
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&pod))?;
    let finished = cluster.wait_pod_within(name, "to finish", START, |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    let log = kubectl(cluster, &["logs", name], None)?;
    if finished["status"]["phase"] != "Succeeded" {
        bail!("{name} failed: {log}");
    }
    parse_bench(&log)
}

/// The same measurement between two host processes (this one) over loopback.
fn loopback_baseline(bytes: u64, rounds: u64) -> anyhow::Result<Measured> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = listener.accept().await {
                conn.set_nodelay(true).ok();
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.set_nodelay(true)?;
        let chunk = vec![7u8; CHUNK];
        let mut echo = vec![0u8; CHUNK];
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < bytes {
            let n = CHUNK.min(usize::try_from(bytes - sent).unwrap_or(CHUNK));
            conn.write_all(&chunk[..n]).await?;
            conn.read_exact(&mut echo[..n]).await?;
            sent += n as u64;
        }
        let mib_s = sent as f64 / f64::from(1 << 20) / started.elapsed().as_secs_f64();
        let mut trips = Vec::new();
        let mut byte = [1u8];
        for _ in 0..rounds {
            let started = Instant::now();
            conn.write_all(&byte).await?;
            conn.read_exact(&mut byte).await?;
            trips.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        trips.sort_unstable();
        Ok(Measured {
            mib_s,
            p50_us: percentile(&trips, 50),
            p99_us: percentile(&trips, 99),
        })
    })
}

fn percentile(sorted: &[u64], q: usize) -> u64 {
    sorted
        .get((sorted.len() * q / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// Three agents in network namespaces (node-c can only dial out), all Ready; the
/// network lives as long as the returned handle.
fn three_nodes() -> anyhow::Result<(Network, Cluster, Vec<std::net::Ipv4Addr>)> {
    let mut network = Network::create()?;
    let mut cluster = Cluster::start_with_broker_on(
        ClusterOptions { agents: Vec::new() },
        Broker::Embedded,
        IpAddr::V4(network.host_addr()),
    );
    let mut addresses = Vec::new();
    for node in ["node-a", "node-b", "node-c"] {
        let namespace = network.add_namespace(node)?;
        if node == "node-c" {
            namespace.only_dial_out()?;
        }
        let mut launch = AgentLaunch::host("");
        launch.netns = Some(namespace.name.clone());
        launch.extra_args = vec![
            "--node-ip".into(),
            namespace.addr.to_string(),
            "--tunnel-port".into(),
            "10260".into(),
        ];
        cluster.launch_agent(node, launch);
        addresses.push(namespace.addr);
    }
    for node in ["node-a", "node-b", "node-c"] {
        cluster.wait_node_ready(node);
    }
    Ok((network, cluster, addresses))
}

fn tcp(mib: u64, rounds: u64) -> anyhow::Result<()> {
    let bytes = mib << 20;
    let (_network, cluster, _) = three_nodes()?;
    cluster.push("tcp-echo", "tcp-echo:v1");
    for (name, node) in [
        ("echo-a", "node-a"),
        ("echo-b", "node-b"),
        ("echo-c", "node-c"),
    ] {
        kubectl(
            &cluster,
            &["apply", "-f", "-"],
            Some(&echo_server(name, node)),
        )?;
    }
    for name in ["echo-a", "echo-b", "echo-c"] {
        cluster.wait_pod_within(name, "Ready", START, |p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    }
    // A first short run per path opens the tunnels (and warms the module cache).
    for (i, target) in ["echo-a:80", "echo-b:80", "echo-c:80"].iter().enumerate() {
        bench_pod(
            &cluster,
            &format!("warm-{i}"),
            "node-a",
            target,
            1 << 16,
            10,
        )?;
    }
    println!("TCP echo, {mib} MiB in 64 KiB lockstep chunks, then {rounds} one-byte round trips\n");
    println!("| path | throughput | round trip p50 | p99 |");
    println!("|---|---|---|---|");
    let row = |what: &str, m: &Measured| {
        println!(
            "| {what} | {:.1} MiB/s | {} µs | {} µs |",
            m.mib_s, m.p50_us, m.p99_us
        );
    };
    row(
        "host process → host process, loopback",
        &loopback_baseline(bytes, rounds)?,
    );
    let paths = [
        ("pod → ClusterIP → pod, one node", "echo-a:80"),
        (
            "pod → ClusterIP → pod on another node (direct tunnel)",
            "echo-b:80",
        ),
        (
            "pod → ClusterIP → pod on a node behind NAT (relay)",
            "echo-c:80",
        ),
    ];
    for (i, (what, target)) in paths.iter().enumerate() {
        row(
            what,
            &bench_pod(
                &cluster,
                &format!("bench-{i}"),
                "node-a",
                target,
                bytes,
                rounds,
            )?,
        );
    }
    Ok(())
}

/// A `tcp-echo --udp` pod on `node` behind its own UDP NodePort Service `name`.
fn udp_echo_server(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{bench: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: server
    image: tcp-echo:v1
    args: [\"--udp\", \"--port\", \"5353\"]
    ports: [{{containerPort: 5353, protocol: UDP}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{bench: {name}}}
  ports: [{{port: 53, targetPort: 5353, protocol: UDP}}]
"
    )
}

/// One-byte round trips to `to` (after a first answer, within [`START`]): p50, p99 in µs
/// and how many were lost (no answer within a second).
fn udp_round_trips(to: SocketAddr, rounds: u64) -> anyhow::Result<(u64, u64, u64)> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = [0u8; 16];
    wait_for(&format!("an answer from {to}"), START, || {
        socket.send_to(b"w", to).map_err(|e| e.to_string())?;
        socket.recv_from(&mut buf).map_err(|e| e.to_string())
    });
    let mut trips = Vec::new();
    let mut lost = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        socket.send_to(b"x", to)?;
        match socket.recv_from(&mut buf) {
            Ok(_) => trips.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
            Err(_) => lost += 1,
        }
    }
    trips.sort_unstable();
    Ok((percentile(&trips, 50), percentile(&trips, 99), lost))
}

fn udp(rounds: u64) -> anyhow::Result<()> {
    let (_network, cluster, addresses) = three_nodes()?;
    cluster.push("tcp-echo", "tcp-echo:v1");
    let servers = [
        ("udp-a", "node-a"),
        ("udp-b", "node-b"),
        ("udp-c", "node-c"),
    ];
    for (name, node) in servers {
        let manifest = udp_echo_server(name, node);
        kubectl(&cluster, &["apply", "-f", "-"], Some(&manifest))?;
    }
    // The baseline: a UDP echo thread of this process.
    let echo = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let baseline = echo.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    println!("UDP echo, {rounds} one-byte round trips from a host process\n");
    println!("| path | round trip p50 | p99 | lost |");
    println!("|---|---|---|---|");
    let row = |what: &str, (p50, p99, lost): (u64, u64, u64)| {
        println!("| {what} | {p50} µs | {p99} µs | {lost} |");
    };
    row(
        "host process → host process, loopback",
        udp_round_trips(baseline, rounds)?,
    );
    let paths = [
        "host → node-a NodePort → pod on node-a",
        "host → node-a NodePort → pod on node-b (direct tunnel)",
        "host → node-a NodePort → pod on node-c (relay)",
    ];
    for ((name, _), what) in servers.iter().zip(paths) {
        let service = kubectl(&cluster, &["get", "svc", name, "-o", "json"], None)?;
        let service: Value = serde_json::from_str(&service)?;
        let node_port = service["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("a nodePort")?;
        let to = SocketAddr::from((addresses[0], node_port));
        row(what, udp_round_trips(to, rounds)?);
    }
    Ok(())
}

/// Keep-alive HTTP load: `connections` clients for `seconds`; requests/s, p50, p99.
fn load(url: &str, host: Option<&str>, seconds: u64, connections: u64) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::try_from(connections).unwrap_or(16))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let url = Arc::new(url.to_owned());
        let host = host.map(str::to_owned);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, url, host) = (client.clone(), Arc::clone(&url), host.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let mut request = client.get(url.as_str());
                    if let Some(host) = &host {
                        request = request.header("host", host);
                    }
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies
                                .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(0));
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, failed) = task.await?;
            all.extend(latencies);
            errors += failed;
        }
        all.sort_unstable();
        Ok(format!(
            "{:.0} req/s | {:.2} ms | {:.2} ms | {errors}",
            all.len() as f64 / seconds as f64,
            percentile(&all, 50) as f64 / 1000.0,
            percentile(&all, 99) as f64 / 1000.0
        ))
    })
}

const HTTP_HELLO: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: http-hello:v1
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: web.bench
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
";

fn http(seconds: u64, connections: u64) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let ingress_port = wasmfleet_tests::cluster::free_port(IpAddr::from([127, 0, 0, 1])).port();
    let mut launch = AgentLaunch::host("");
    launch.extra_args = vec!["--ingress-port".into(), ingress_port.to_string()];
    cluster.launch_agent("node-a", launch);
    cluster.wait_node_ready("node-a");
    cluster.push("http-hello", "http-hello:v1");
    kubectl(&cluster, &["apply", "-f", "-"], Some(HTTP_HELLO))?;
    let svc: Value = serde_json::from_str(&kubectl(
        &cluster,
        &["get", "svc", "web", "-o", "json"],
        None,
    )?)?;
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .context("nodePort")?;
    let target = format!("127.0.0.1:{node_port}");
    wait_for("the web Service to answer", START, || {
        match answers(&target) {
            true => Ok(()),
            false => Err(format!("{target} does not answer yet")),
        }
    });
    println!(
        "http-hello, {connections} keep-alive connections for {seconds} s each, from this process\n"
    );
    println!("| served by | requests/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|");
    let node_port_row = load(&format!("http://{target}/"), None, seconds, connections)?;
    println!("| wasmfleet agent, NodePort | {node_port_row} |");
    let ingress_row = load(
        &format!("http://127.0.0.1:{ingress_port}/"),
        Some("web.bench"),
        seconds,
        connections,
    )?;
    println!("| wasmfleet agent, Ingress | {ingress_row} |");
    match wasmtime_serve()? {
        Some((mut child, addr)) => {
            let row = load(&format!("http://{addr}/"), None, seconds, connections);
            let _ = child.kill();
            let _ = child.wait();
            println!("| wasmtime serve | {} |", row?);
        }
        None => println!(
            "| wasmtime serve | not measured: `wasmtime` is not on PATH (cargo install wasmtime-cli --version 48.0.8 --locked) | | | |"
        ),
    }
    Ok(())
}

/// Whether `GET /` on `addr` answers 200.
fn answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_ok()
        && conn.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// `wasmtime serve` running http-hello on a free port, once it answers.
fn wasmtime_serve() -> anyhow::Result<Option<(Child, SocketAddr)>> {
    if Command::new("wasmtime").arg("--version").output().is_err() {
        return Ok(None);
    }
    let addr = wasmfleet_tests::cluster::free_port(IpAddr::from([127, 0, 0, 1]));
    let child = Command::new("wasmtime")
        .args(["serve", "-Scli", "--addr", &addr.to_string()])
        .arg(wasmfleet_tests::guest("http-hello"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for("wasmtime serve to answer", START, || {
        match answers(&addr.to_string()) {
            true => Ok(()),
            false => Err("not yet".to_owned()),
        }
    });
    Ok(Some((child, addr)))
}

fn rss(pods: u64) -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![("node-a".into(), String::new())],
    });
    cluster.push("tcp-echo", "tcp-echo:v1");
    let pid = cluster.agent_pid("node-a").context("agent pid")?;
    let before = rss_bytes(pid).context("agent RSS")?;
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: {pods}
  selector:
    matchLabels: {{app: echo}}
  template:
    metadata:
      labels: {{app: echo}}
    spec:
      containers:
      - name: server
        image: tcp-echo:v1
        args: [\"--port\", \"7007\"]
        ports: [{{containerPort: 7007}}]
        resources:
          requests: {{cpu: 1m, memory: 1Mi}}
          limits: {{cpu: 100m, memory: 16Mi}}
"
    );
    kubectl(&cluster, &["apply", "-f", "-"], Some(&deployment))?;
    let started = Instant::now();
    wait_for("every pod Running", START, || {
        let out = kubectl(
            &cluster,
            &[
                "get",
                "deploy",
                "echo",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        match out.trim().parse::<u64>() {
            Ok(n) if n == pods => Ok(()),
            _ => Err(format!("{} of {pods} ready", out.trim())),
        }
    });
    let ready_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    let after = rss_bytes(pid).context("agent RSS")?;
    println!(
        "agent RSS: {:.1} MiB idle, {:.1} MiB with {pods} networked tcp-echo pods (all Ready in {:.1} s)",
        before as f64 / f64::from(1 << 20),
        after as f64 / f64::from(1 << 20),
        ready_in.as_secs_f64()
    );
    Ok(())
}
