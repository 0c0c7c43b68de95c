//! Runaway pods (issue 8, item 8): what pods without limits can still do to their device.
//!
//! - memory: the agent's peak resident memory while a pod that names no limits allocates
//!   1,400 MiB (the reported case grew the agent to 1.4 GB), and while a pod with a 2 GiB
//!   limit does so on an agent that keeps all but 256 MiB for the system;
//! - CPU: how long a fixed amount of work takes in a pod alone, beside three pods spinning
//!   with the default limits, and beside three spinning with a 2-core limit (only the node's
//!   allocatable holds those back).
//!
//! Run: `cargo build --release --workspace --bins && target/release/wasmfleet-bench-runaway`
//! (`workloads/build` first). Optional argument: the work units of the timed pod (default
//! 300, about a second of one core).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmfleet_tests::cluster::{AgentLaunch, phase};
use wasmfleet_tests::manifests::{pod, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions};

const NODE: &str = "node-a";
/// How long any one pod may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let work: u64 = match std::env::args().nth(1) {
        Some(units) => units.parse().context("the work units")?,
        None => 300,
    };
    memory("no limits named (the defaults apply)", &[], "")?;
    let reserve = mem_total_bytes()?.saturating_sub(256 << 20);
    memory(
        "limit 2Gi, agent --system-reserved all but 256Mi",
        &["--system-reserved".into(), format!("memory={reserve}")],
        "      resources:\n        limits:\n          memory: 2Gi\n        requests:\n          memory: 16Mi\n",
    )?;
    cpu(work)
}

/// A cluster with one native agent started with `agent_args`.
fn cluster(agent_args: &[String]) -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let mut launch = AgentLaunch::host("");
    launch.extra_args = agent_args.to_vec();
    cluster.launch_agent(NODE, launch);
    cluster.wait_node_ready(NODE);
    cluster.push("exerciser", "exerciser:v1");
    cluster
}

fn memory(case: &str, agent_args: &[String], resources: &str) -> anyhow::Result<()> {
    let cluster = cluster(agent_args);
    let before = status_kib(&cluster, "VmRSS")?;
    cluster.apply(&pod_with(
        "runaway",
        "exerciser:v1",
        &["alloc", "1400"],
        "Never",
        resources,
    ));
    let ended = wait_end(&cluster, "runaway")?;
    let logs = cluster.try_logs("runaway").unwrap_or_default();
    let reached = logs.lines().filter(|l| l.starts_with("allocated")).count();
    let reason = ended["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    println!(
        "memory, {case}: agent RSS {} MiB before, peak {} MiB; the pod got {reached} of 1400 MiB and ended {reason}",
        before / 1024,
        status_kib(&cluster, "VmHWM")? / 1024,
    );
    Ok(())
}

fn cpu(work: u64) -> anyhow::Result<()> {
    let cluster = cluster(&[]);
    let units = work.to_string();
    let alone = timed_work(&cluster, "alone", &units)?;
    println!("cpu: `work {units}` alone: {:.2} s", alone.as_secs_f64());
    for (case, resources) in [
        ("default limits (500m)", String::new()),
        (
            "limit 2 cores (only allocatable)",
            "      resources:\n        limits:\n          cpu: \"2\"\n        requests:\n          cpu: 10m\n"
                .to_owned(),
        ),
    ] {
        let spinners: Vec<String> = (1..=3).map(|i| format!("spin-{i}")).collect();
        for name in &spinners {
            cluster.apply(&pod_with(name, "exerciser:v1", &["spin", "600000"], "Never", &resources));
        }
        for name in &spinners {
            cluster.wait_pod(name, "to spin", |p| phase(p) == "Running");
        }
        let beside = timed_work(&cluster, &format!("beside-{}", case.len()), &units)?;
        println!(
            "cpu: `work {units}` beside three spinners, {case}: {:.2} s ({:+.0}% vs alone)",
            beside.as_secs_f64(),
            (beside.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0
        );
        for name in &spinners {
            let out = cluster.kubectl(&["delete", "pod", name]);
            if !out.success {
                bail!("deleting {name}: {}", out.stderr);
            }
        }
    }
    Ok(())
}

/// Applies a pod doing `work UNITS` and times it from apply to Succeeded (polled every
/// 50 ms, so the figure is within ~0.1 s).
fn timed_work(cluster: &Cluster, name: &str, units: &str) -> anyhow::Result<Duration> {
    let name = format!("work-{name}");
    let started = Instant::now();
    cluster.apply(&pod(&name, "exerciser:v1", &["work", units], "Never"));
    let ended = wait_end(cluster, &name)?;
    if phase(&ended) != "Succeeded" {
        bail!("{name} ended {}", phase(&ended));
    }
    Ok(started.elapsed())
}

fn wait_end(cluster: &Cluster, name: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(pod) = cluster.pod(name)
            && matches!(phase(&pod), "Succeeded" | "Failed")
        {
            return Ok(pod);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name} did not end within {PATIENCE:?}")
}

fn status_kib(cluster: &Cluster, field: &str) -> anyhow::Result<u64> {
    let pid = cluster.agent_pid(NODE).context("agent pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn mem_total_bytes() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("MemTotal in /proc/meminfo")?;
    Ok(kib * 1024)
}
