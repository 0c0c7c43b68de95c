//! Measures what BENCHMARKS.md records, on real release binaries:
//!
//! - time from `wasmfleet apply` to each pod's first log line, for 100 pods, with a cold
//!   module cache (every pod has its own module, never seen by the agent) and a warm one
//!   (the same modules again, already fetched and compiled), as p50/p99;
//! - the idle resident memory of the server and of the agent.
//!
//! Run: `cargo build --release --workspace --bins && target/release/wasmfleet-bench`
//! (`workloads/build` first). Arguments, all optional:
//!
//! - the number of pods (default 100);
//! - `--emulated ARCH BINARY`: the agent is a `cross/build` binary for `ARCH` (`aarch64`,
//!   `armv7`) under qemu-user instead of the native one (its RSS then includes qemu's);
//! - `--refuse-artifacts`: the agent trusts another CA as the artifact signer, so it refuses
//!   the server's precompiled artifacts and compiles every module itself;
//! - `--serial N`: afterwards, N rounds of one pod at a time (module cached): created through
//!   the API, watched until its container runs, then its log followed to the first line, as
//!   `kubectl run` then `kubectl logs -f` would; p50/p99 of create → first line, and of
//!   create → running; then where that time went, step by step, from the server's and the
//!   agent's debug logs ([`wasmfleet_tests::timeline`]).
//! - `--density N`: instead of all the above, N long-running pods (the exerciser sleeping)
//!   on one agent: the time until all run, the agent's RSS growth per pod (guests included),
//!   and the agent's CPU while they idle.
//! - `--keep-logs DIR`: copies the server's and the agent's logs into `DIR` at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use jiff::Timestamp;
use wasmfleet_tests::api::ApiClient;
use wasmfleet_tests::cluster::AgentLaunch;
use wasmfleet_tests::timeline::{Source, Step, Timeline};
use wasmfleet_tests::{Cluster, ClusterOptions, guest, with_custom_section};

/// The agent's node name.
const NODE: &str = "node-a";

/// Where the agent serves its metrics in `--density` runs.
const METRICS: &str = "127.0.0.1:19101";

/// What to measure, from the command line.
struct Options {
    pods: usize,
    emulated: Option<(String, PathBuf)>,
    refuse_artifacts: bool,
    serial: usize,
    keep_logs: Option<PathBuf>,
    density: usize,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        pods: 100,
        emulated: None,
        refuse_artifacts: false,
        serial: 0,
        keep_logs: None,
        density: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--emulated" => {
                let (Some(arch), Some(binary)) = (args.next(), args.next()) else {
                    bail!("usage: --emulated aarch64|armv7 BINARY");
                };
                options.emulated = Some((arch, PathBuf::from(binary)));
            }
            "--refuse-artifacts" => options.refuse_artifacts = true,
            "--serial" => {
                let rounds = args.next().context("usage: --serial ROUNDS")?;
                options.serial = rounds.parse().context("the number of serial rounds")?;
            }
            "--density" => {
                let pods = args.next().context("usage: --density PODS")?;
                options.density = pods.parse().context("the number of pods")?;
            }
            "--keep-logs" => {
                let dir = args.next().context("usage: --keep-logs DIR")?;
                options.keep_logs = Some(PathBuf::from(dir));
            }
            pods => options.pods = pods.parse().context("the number of pods")?,
        }
    }
    Ok(options)
}

/// A server and one agent, as the options say.
fn start_cluster(options: &Options) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    if options.density > 250 {
        // A node's default /24 holds 253 pod IPs; a /22 holds 1,021.
        cluster.restart_server_with(&["--node-cidr-mask-size", "22"]);
    }
    let mut launch = match &options.emulated {
        Some((arch, binary)) => AgentLaunch::emulated(arch, binary),
        None => AgentLaunch::host(""),
    };
    if options.density > 0 {
        launch.extra_args.extend([
            "--max-pods".to_owned(),
            (options.density + 10).to_string(),
            "--metrics-listen".to_owned(),
            METRICS.to_owned(),
        ]);
    }
    if options.refuse_artifacts {
        let foreign = cluster.dir().join("foreign-ca.crt");
        std::fs::write(&foreign, foreign_ca_pem()?)?;
        launch
            .extra_args
            .extend(["--cluster-ca-file".into(), foreign.display().to_string()]);
    }
    println!(
        "agent: {}, artifacts: {}",
        options
            .emulated
            .as_ref()
            .map_or("native".to_owned(), |(arch, _)| format!(
                "{arch} under qemu-user"
            )),
        if options.refuse_artifacts {
            "refused (the agent compiles)"
        } else {
            "from the server"
        }
    );
    cluster.launch_agent(NODE, launch);
    cluster.wait_node_condition_within(NODE, "True", Duration::from_secs(300));
    Ok(cluster)
}

/// A CA nobody signs artifacts with.
fn foreign_ca_pem() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}

fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let pods = options.pods;
    let cluster = start_cluster(&options)?;
    let client = ApiClient::from_kubeconfig(&cluster)?;
    let runtime = tokio::runtime::Runtime::new()?;
    print_rss(&cluster, "idle RSS, fresh cluster")?;
    if options.density > 0 {
        let names = push_distinct_modules(&cluster, 1)?;
        return runtime.block_on(density(&cluster, &client, &names[0], options.density));
    }

    let names = push_distinct_modules(&cluster, pods)?;
    println!("pods: {pods}, module: exerciser (one distinct digest per pod)");
    let cold = apply_and_time_first_lines(&runtime, &cluster, &client, &names, "cold")?;
    report("cold module cache", &cold);
    let timeline = || Timeline::read(cluster.dir(), NODE);
    delete_all(&cluster, &names, "cold")?;
    let warm = apply_and_time_first_lines(&runtime, &cluster, &client, &names, "warm")?;
    report("warm module cache", &warm);
    print_breakdown(&timeline()?, &warm);
    delete_all(&cluster, &names, "warm")?;
    if options.serial > 0 {
        let rounds = runtime.block_on(serial_rounds(&client, &names[0], options.serial))?;
        let running: Vec<_> = rounds.iter().filter_map(Sample::to_running).collect();
        let first_lines: Vec<_> = rounds.iter().map(Sample::to_first_line).collect();
        report_as("create -> running, one pod at a time", &running);
        report_as("create -> first log line, one pod at a time", &first_lines);
        print_breakdown(&timeline()?, &rounds);
    }

    print_rss(
        &cluster,
        "idle RSS after the runs (pods deleted, modules cached)",
    )?;
    if let Some(dir) = &options.keep_logs {
        keep_logs(&cluster, dir)?;
    }
    Ok(())
}

/// Copies the cluster's process logs into `dir`.
fn keep_logs(cluster: &Cluster, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(cluster.dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::copy(&path, dir.join(path.file_name().context("a file name")?))?;
        }
    }
    println!("logs kept in {}", dir.display());
    Ok(())
}

fn print_rss(cluster: &Cluster, what: &str) -> anyhow::Result<()> {
    // Let start-up or deletions settle before reading.
    std::thread::sleep(Duration::from_secs(5));
    let server = rss_kib(cluster.server_pid().context("server pid")?)?;
    let agent = rss_kib(cluster.agent_pid(NODE).context("agent pid")?)?;
    println!(
        "{what}: server {} MiB, agent {} MiB",
        server / 1024,
        agent / 1024
    );
    Ok(())
}

/// Pushes `count` copies of the exerciser that differ only in a custom section, so each has
/// its own digest and the agent must fetch and compile every one.
fn push_distinct_modules(cluster: &Cluster, count: usize) -> anyhow::Result<Vec<String>> {
    let base = std::fs::read(guest("exerciser"))?;
    let dir = cluster.dir().join("bench-modules");
    std::fs::create_dir_all(&dir)?;
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("bench-{i}");
        let path = dir.join(format!("{name}.wasm"));
        std::fs::write(&path, with_custom_section(&base, &name))?;
        let out = cluster.cli(&["push", &path.display().to_string(), &format!("{name}:v1")]);
        if !out.success {
            bail!("push {name}: {}", out.stderr);
        }
        names.push(name);
    }
    Ok(names)
}

fn manifest(names: &[String], round: &str) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{round}\nspec:\n  restartPolicy: Never\n  \
                 containers:\n    - name: main\n      image: {name}:v1\n      args: [\"print\", \"600\"]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Applies one pod per module in `names` with `wasmfleet apply` and times, per pod, until
/// its first log line, watching and following while the apply still runs.
fn apply_and_time_first_lines(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    client: &ApiClient,
    names: &[String],
    round: &str,
) -> anyhow::Result<Vec<Sample>> {
    let pods = "/api/v1/namespaces/default/pods";
    let from = runtime.block_on(async {
        let list: serde_json::Value = client.get(pods).await?.error_for_status()?.json().await?;
        anyhow::Ok(
            list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .to_owned(),
        )
    })?;
    let manifest = manifest(names, round);
    std::thread::scope(|scope| {
        let created = Timestamp::now();
        let apply = scope.spawn(|| cluster.cli_with_stdin(&["apply", "-f", "-"], Some(&manifest)));
        let samples = runtime.block_on(first_lines(client, names, round, &from, created));
        let out = apply
            .join()
            .map_err(|_| anyhow::anyhow!("the apply thread panicked"))?;
        if !out.success {
            bail!("apply: {}", out.stderr);
        }
        samples
    })
}

/// Watches the pods of `names` from resource version `from` and follows each one's log
/// once it runs, as `kubectl wait` and `kubectl logs -f` would.
async fn first_lines(
    client: &ApiClient,
    names: &[String],
    round: &str,
    from: &str,
    created: Timestamp,
) -> anyhow::Result<Vec<Sample>> {
    let pods = "/api/v1/namespaces/default/pods";
    // One watch tells each pod's waiter when its container runs (with the uid).
    let mut started = HashMap::new();
    let mut waits = Vec::new();
    for name in names {
        let pod = format!("{name}-{round}");
        let (tx, rx) = tokio::sync::oneshot::channel::<(Timestamp, String)>();
        started.insert(pod.clone(), tx);
        waits.push(async move {
            let (running, uid) = rx.await.context("the watch ended first")?;
            let line = first_log_line(client, &pod, "&timestamps=true").await?;
            anyhow::Ok(Sample {
                uid,
                created,
                running: Some(running),
                printed: printed_at(&line)?,
                first_line: Timestamp::now(),
                pod,
            })
        });
    }
    let path = format!("{pods}?watch=true&resourceVersion={from}");
    let watch = client.watch(&path, |event| {
        let pod = &event["object"];
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        if pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
            && let Some(tx) = started.remove(name)
        {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
            let _ = tx.send((Timestamp::now(), uid));
        }
        !started.is_empty()
    });
    let (watched, samples) = tokio::join!(watch, futures::future::join_all(waits));
    watched?;
    samples.into_iter().collect()
}

fn delete_all(cluster: &Cluster, names: &[String], round: &str) -> anyhow::Result<()> {
    for name in names {
        let out = cluster.cli(&["delete", "pod", &format!("{name}-{round}")]);
        if !out.success {
            bail!("delete: {}", out.stderr);
        }
    }
    Ok(())
}

fn report(what: &str, samples: &[Sample]) {
    let first_lines: Vec<_> = samples.iter().map(Sample::to_first_line).collect();
    report_as(&format!("apply -> first log line, {what}"), &first_lines);
}

fn report_as(what: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{what}: p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        sorted[sorted.len() - 1]
    );
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// The steps of one pod's start, in the order they happen: from the create to the first
/// log line in the hands of a client that followed the log once the pod ran.
const POD_START: &[Step] = &[
    step("scheduled", Source::Server, "pod scheduled", true),
    step(
        "desired index published",
        Source::Server,
        "desired index published",
        false,
    ),
    step(
        "agent applies the desired pods",
        Source::Agent,
        "applying desired pods",
        false,
    ),
    step(
        "container started",
        Source::Agent,
        "container started",
        true,
    ),
    step("status report sent", Source::Agent, "status report", false),
    step(
        "status report applied",
        Source::Server,
        "status report applied",
        false,
    ),
];

/// The log request's steps, after the client saw the pod running.
const LOG_REQUEST: &[Step] = &[
    step(
        "log request sent",
        Source::Server,
        "sending a log request",
        true,
    ),
    step(
        "log request received",
        Source::Agent,
        "log request received",
        true,
    ),
    step("log lines sent", Source::Agent, "log lines sent", false),
    step(
        "first log chunk received",
        Source::Server,
        "first log chunk received",
        false,
    ),
];

const fn step(label: &'static str, log: Source, words: &'static str, names_pod: bool) -> Step {
    Step {
        label,
        log,
        words,
        names_pod,
    }
}

/// One pod's times, as the client saw them.
struct Sample {
    pod: String,
    uid: String,
    created: Timestamp,
    /// When a watch showed its container running (serial rounds only).
    running: Option<Timestamp>,
    /// When the guest wrote its first line (the line's own timestamp).
    printed: Timestamp,
    first_line: Timestamp,
}

impl Sample {
    fn to_running(&self) -> Option<Duration> {
        Some(since(self.created, self.running?))
    }

    fn to_first_line(&self) -> Duration {
        since(self.created, self.first_line)
    }
}

/// When the guest wrote a line of a log read with `timestamps=true`.
fn printed_at(line: &str) -> anyhow::Result<Timestamp> {
    line.split_once(' ')
        .and_then(|(at, _)| at.parse().ok())
        .context("a timestamped log line")
}

fn since(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// `rounds` times: creates one pod of module `name` (cached by now), times until its
/// container runs (watched) and until the first line of its followed log, deletes it.
async fn serial_rounds(
    client: &ApiClient,
    name: &str,
    rounds: usize,
) -> anyhow::Result<Vec<Sample>> {
    let pods = "/api/v1/namespaces/default/pods";
    let mut done = Vec::new();
    for round in 0..rounds {
        let pod = format!("serial-{round:04}");
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": format!("{name}:v1"), "args": ["print", "600"]}]},
        });
        let watch = format!("{pods}?watch=true&fieldSelector=metadata.name%3D{pod}");
        let created = Timestamp::now();
        let response = client.post_json(pods, &body).await?.error_for_status()?;
        let object: serde_json::Value = response.json().await?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        client
            .watch(&watch, |event| {
                let statuses = &event["object"]["status"]["containerStatuses"];
                !statuses[0]["state"]["running"].is_object()
            })
            .await?;
        let running = Timestamp::now();
        let line = first_log_line(client, &pod, "&timestamps=true").await?;
        let first_line = Timestamp::now();
        let printed = printed_at(&line)?;
        client
            .delete(&format!("{pods}/{pod}"))
            .await?
            .error_for_status()?;
        done.push(Sample {
            pod,
            uid,
            created,
            running: Some(running),
            printed,
            first_line,
        });
        // The deletion's own publishing stays out of the next round.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(done)
}

/// Where the rounds' time went, step by step from the logs: the median time of each step
/// after the create, and after the step before.
fn print_breakdown(timeline: &Timeline, rounds: &[Sample]) {
    let mut rows: Vec<(&str, Vec<Duration>)> = POD_START
        .iter()
        .map(|step| step.label)
        .chain([
            "the guest prints its first line",
            "client sees the pod running (watch)",
        ])
        .chain(LOG_REQUEST.iter().map(|step| step.label))
        .chain(["client reads the first line"])
        .map(|label| (label, Vec::new()))
        .collect();
    for round in rounds {
        let names = [format!(" default/{} ", round.pod), round.uid.clone()];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let start = timeline.trace(round.created, POD_START, &names);
        let logs = timeline.trace(round.running.unwrap_or(round.printed), LOG_REQUEST, &names);
        let times = start
            .into_iter()
            .chain([Some(round.printed), round.running])
            .chain(logs)
            .chain([Some(round.first_line)]);
        for ((_, samples), at) in rows.iter_mut().zip(times) {
            samples.extend(at.map(|at| since(round.created, at)));
        }
    }
    println!("  where the time goes (median ms after the create; the step's own share):");
    let mut previous = Duration::ZERO;
    for (label, samples) in rows {
        let seen = samples.len();
        let at = median(samples);
        println!(
            "    {:>7.1}  {:>+7.1}  {label} ({seen} of {} pods)",
            ms(at),
            ms(at.saturating_sub(previous)),
            rounds.len()
        );
        previous = at;
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The pod's first log line, followed with the extra `query`, retrying while the pod is not
/// running.
async fn first_log_line(client: &ApiClient, pod: &str, query: &str) -> anyhow::Result<String> {
    let path = format!("/api/v1/namespaces/default/pods/{pod}/log?follow=true{query}");
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let response = client.get(&path).await?;
        if response.status().is_success() {
            let mut body = response.bytes_stream();
            let mut text = Vec::new();
            while let Some(chunk) = body.next().await {
                text.extend_from_slice(&chunk?);
                if let Some(end) = text.iter().position(|b| *b == b'\n') {
                    return Ok(String::from_utf8_lossy(&text[..end]).into_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("no log line from {pod} within 300 s")
}

/// `pods` pods of module `name` sleeping on the one agent: how long until all run, how
/// much the agent's RSS grows per pod, and its CPU while they idle.
async fn density(
    cluster: &Cluster,
    client: &ApiClient,
    name: &str,
    pods: usize,
) -> anyhow::Result<()> {
    let agent = cluster.agent_pid(NODE).context("agent pid")?;
    let idle = rss_kib(agent)?;
    let path = "/api/v1/namespaces/default/pods";
    let list: serde_json::Value = client.get(path).await?.error_for_status()?.json().await?;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let started = Instant::now();
    let creates = (0..pods).map(|i| {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("dense-{i:05}")},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": format!("{name}:v1"), "args": ["sleep", "86400000"],
                "resources": {"requests": {"cpu": "1m", "memory": "2Mi"},
                              "limits": {"memory": "8Mi"}}}]},
        });
        async move { client.post_json(path, &body).await?.error_for_status() }
    });
    let created: Vec<_> = futures::stream::iter(creates)
        .buffer_unordered(16)
        .collect()
        .await;
    for result in created {
        result?;
    }
    let all_created = started.elapsed();
    let mut running = std::collections::HashSet::new();
    client
        .watch(
            &format!("{path}?watch=true&resourceVersion={from}"),
            |event| {
                let pod = &event["object"];
                if pod["status"]["containerStatuses"][0]["state"]["running"].is_object() {
                    running.insert(pod["metadata"]["name"].as_str().unwrap_or("").to_owned());
                }
                running.len() < pods
            },
        )
        .await?;
    let all_running = started.elapsed();
    println!("{pods} pods: all created in {all_created:.2?}, all running after {all_running:.2?}");
    // Let start-up settle (the heap trimmer waits for 2 s of quiet) before reading.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let busy = rss_kib(agent)?;
    let metrics = reqwest::get(format!("http://{METRICS}/metrics"))
        .await?
        .text()
        .await?;
    let linear_kib = metric_sum(&metrics, "wasmfleet_agent_linear_memory_bytes") / 1024.0;
    // Granted linear memory is mostly untouched (not resident), so the growth per pod is
    // the bound that counts: the agent's own share plus what the guests touched.
    let per_pod = (busy as f64 - idle as f64) / pods as f64;
    println!(
        "agent RSS: {} MiB idle, {} MiB with the pods: {per_pod:.0} KiB per pod, guests' \
         touched memory included (their granted linear memory: {:.0} MiB, mostly not resident)",
        idle / 1024,
        busy / 1024,
        linear_kib / 1024.0
    );
    let window = Duration::from_secs(30);
    let before = cpu_ticks(agent)?;
    tokio::time::sleep(window).await;
    let ticks = cpu_ticks(agent)? - before;
    // Linux counts CPU time in ticks of 1/100 s.
    let percent = ticks as f64 / window.as_secs_f64();
    println!("agent CPU while the pods idle: {percent:.1} % of one core ({window:?} window)");
    println!(
        "server RSS with them: {} MiB",
        rss_kib(cluster.server_pid().context("server pid")?)? / 1024
    );
    Ok(())
}

/// The sum of a metric's samples in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The process's user plus system CPU time, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .context("a /proc/PID/stat field")?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}
