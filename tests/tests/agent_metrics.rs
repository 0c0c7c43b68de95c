//! The agent's own Prometheus `/metrics` (issue 11, `--metrics-listen`): read with the real
//! curl, as a local scraper would, it counts the node's pods, OOM kills, the module cache
//! and the bytes fetched.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use wasmfleet_tests::cluster::{AgentLaunch, CONVERGE, container_status, free_port, phase};
use wasmfleet_tests::manifests::{limits, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, guest, wait_for};

/// `curl http://{address}{path}`: the status code and the body.
fn curl(address: SocketAddr, path: &str) -> Result<(String, String), String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3", "-w", "\n%{http_code}"])
        .arg(format!("http://{address}{path}"))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').ok_or("no status code")?;
    Ok((code.to_owned(), body.to_owned()))
}

/// The samples of a Prometheus text page, by `name{labels}`.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
        .collect()
}

fn scrape(address: SocketAddr) -> Result<HashMap<String, f64>, String> {
    match curl(address, "/metrics")? {
        (code, body) if code == "200" => Ok(samples(&body)),
        (code, body) => Err(format!("{code}: {body}")),
    }
}

#[test]
fn the_agents_metrics_count_its_pods_oom_kills_and_module_fetches() {
    let mut cluster = Cluster::start(ClusterOptions { agents: vec![] });
    let address = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    cluster.launch_agent(
        "node-a",
        AgentLaunch {
            extra_args: vec!["--metrics-listen".into(), address.to_string()],
            ..AgentLaunch::host("")
        },
    );
    cluster.wait_node_ready("node-a");
    let idle = wait_for("the agent's /metrics", CONVERGE, || scrape(address));
    assert_eq!(
        idle["wasmfleet_agent_pods{phase=\"Running\"}"], 0.0,
        "{idle:?}"
    );
    assert_eq!(idle["wasmfleet_agent_module_fetch_bytes_total"], 0.0);
    assert_eq!(idle["wasmfleet_agent_oom_kills_total"], 0.0);

    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(&pod_with(
        "sleeper",
        "exerciser:v1",
        &["sleep", "600000"],
        "Never",
        "",
    ));
    cluster.apply(&pod_with(
        "hog",
        "exerciser:v1",
        &["alloc", "64"],
        "Never",
        &limits("32Mi", "500m"),
    ));
    cluster.wait_pod("sleeper", "to run", |p| phase(p) == "Running");
    cluster.wait_pod("hog", "to be OOMKilled", |p| {
        container_status(p, "main")["state"]["terminated"]["reason"] == "OOMKilled"
    });

    let module_bytes = std::fs::metadata(guest("exerciser"))
        .expect("exerciser.wasm")
        .len() as f64;
    let busy = wait_for("the agent's /metrics to count both pods", CONVERGE, || {
        let now = scrape(address)?;
        match (
            now.get("wasmfleet_agent_pods{phase=\"Running\"}"),
            now.get("wasmfleet_agent_pods{phase=\"Failed\"}"),
        ) {
            (Some(1.0), Some(1.0)) => Ok(now),
            _ => Err(format!("{now:?}")),
        }
    });
    assert_eq!(busy["wasmfleet_agent_oom_kills_total"], 1.0, "{busy:?}");
    assert_eq!(busy["wasmfleet_agent_container_restarts"], 0.0);
    assert!(busy["wasmfleet_agent_module_fetch_bytes_total"] >= module_bytes);
    assert_eq!(busy["wasmfleet_agent_module_cache_modules"], 1.0);
    assert!(busy["wasmfleet_agent_module_cache_bytes"] >= module_bytes);
    assert!(
        busy["wasmfleet_agent_wasm_instances"] >= 1.0,
        "the sleeper's"
    );

    // Only GET /metrics is served.
    assert_eq!(curl(address, "/").map(|(code, _)| code), Ok("404".into()));
    let post = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://{address}/metrics"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
}
