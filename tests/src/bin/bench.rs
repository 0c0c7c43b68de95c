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
//!   create → running.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use wasmfleet_tests::api::ApiClient;
use wasmfleet_tests::cluster::AgentLaunch;
use wasmfleet_tests::{Cluster, ClusterOptions, guest, with_custom_section};

/// The agent's node name.
const NODE: &str = "node-a";

/// What to measure, from the command line.
struct Options {
    pods: usize,
    emulated: Option<(String, PathBuf)>,
    refuse_artifacts: bool,
    serial: usize,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        pods: 100,
        emulated: None,
        refuse_artifacts: false,
        serial: 0,
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
            pods => options.pods = pods.parse().context("the number of pods")?,
        }
    }
    Ok(options)
}

/// A server and one agent, as the options say.
fn start_cluster(options: &Options) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let mut launch = match &options.emulated {
        Some((arch, binary)) => AgentLaunch::emulated(arch, binary),
        None => AgentLaunch::host(""),
    };
    if options.refuse_artifacts {
        let foreign = cluster.dir().join("foreign-ca.crt");
        std::fs::write(&foreign, foreign_ca_pem()?)?;
        launch.extra_args = vec!["--cluster-ca-file".into(), foreign.display().to_string()];
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

    let names = push_distinct_modules(&cluster, pods)?;
    println!("pods: {pods}, module: exerciser (one distinct digest per pod)");
    let cold = runtime.block_on(apply_and_time_first_lines(
        &cluster, &client, &names, "cold",
    ))?;
    report("cold module cache", &cold);
    delete_all(&cluster, &names, "cold")?;
    let warm = runtime.block_on(apply_and_time_first_lines(
        &cluster, &client, &names, "warm",
    ))?;
    report("warm module cache", &warm);
    delete_all(&cluster, &names, "warm")?;
    if options.serial > 0 {
        let (running, first_lines) =
            runtime.block_on(serial_rounds(&client, &names[0], options.serial))?;
        report_as("create -> running, one pod at a time", &running);
        report_as("create -> first log line, one pod at a time", &first_lines);
    }

    print_rss(
        &cluster,
        "idle RSS after the runs (pods deleted, modules cached)",
    )
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

async fn apply_and_time_first_lines(
    cluster: &Cluster,
    client: &ApiClient,
    names: &[String],
    round: &str,
) -> anyhow::Result<Vec<Duration>> {
    let manifest = manifest(names, round);
    let started = Instant::now();
    let out = cluster.cli_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    if !out.success {
        bail!("apply: {}", out.stderr);
    }
    let waits = names.iter().map(|name| {
        let pod = format!("{name}-{round}");
        async move {
            wait_first_log_line(client, &pod)
                .await
                .map(|()| started.elapsed())
        }
    });
    futures::future::join_all(waits).await.into_iter().collect()
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

fn report(what: &str, samples: &[Duration]) {
    report_as(&format!("apply -> first log line, {what}"), samples);
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

/// `rounds` times: creates one pod of module `name` (cached by now), times until its
/// container runs (watched) and until the first line of its followed log, deletes it.
async fn serial_rounds(
    client: &ApiClient,
    name: &str,
    rounds: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let pods = "/api/v1/namespaces/default/pods";
    let (mut running, mut first_lines) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let pod = format!("serial-{round}");
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": format!("{name}:v1"), "args": ["print", "600"]}]},
        });
        let watch = format!("{pods}?watch=true&fieldSelector=metadata.name%3D{pod}");
        let started = Instant::now();
        client.post_json(pods, &body).await?.error_for_status()?;
        client
            .watch(&watch, |event| {
                let statuses = &event["object"]["status"]["containerStatuses"];
                !statuses[0]["state"]["running"].is_object()
            })
            .await?;
        running.push(started.elapsed());
        wait_first_log_line(client, &pod).await?;
        first_lines.push(started.elapsed());
        client
            .delete(&format!("{pods}/{pod}"))
            .await?
            .error_for_status()?;
    }
    Ok((running, first_lines))
}

/// Follows the pod's log until its first line arrives, retrying while it is not running.
async fn wait_first_log_line(client: &ApiClient, pod: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/default/pods/{pod}/log?follow=true");
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let response = client.get(&path).await?;
        if response.status().is_success() {
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                if chunk?.contains(&b'\n') {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("no log line from {pod} within 300 s")
}
