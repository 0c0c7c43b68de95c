//! Resources: pods without limits get documented defaults, the agent keeps a reserve for
//! itself, and the node's allocatable holds both in the scheduler and on the device, for
//! all pods together (issue 8, item 8: runaway pods without limits took the device).

use serde_json::{Value, json};
use wasmfleet_tests::cluster::{AgentLaunch, container_status, phase};
use wasmfleet_tests::manifests::{pod, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions};

/// What the kernel says this machine has: the agent reports the same.
fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib * 1024
}

fn terminated_reason(pod: &Value) -> &str {
    container_status(pod, "main")["state"]["terminated"]["reason"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn pods_get_default_limits_and_requests_the_scheduler_counts() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");

    let out = cluster.kubectl_with_stdin(
        &["apply", "-f", "-"],
        Some(&pod("plain", "hello:v1", &[], "Never")),
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let plain = cluster.pod("plain").expect("the pod exists");
    assert_eq!(
        plain["spec"]["containers"][0]["resources"],
        json!({
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "10m", "memory": "16Mi"}
        }),
        "a container that names no resources gets the documented defaults"
    );

    // A request no node's allocatable holds is never placed, and says why.
    let greedy = pod_with(
        "greedy",
        "hello:v1",
        &[],
        "Never",
        "      resources:\n        requests:\n          cpu: \"64\"\n",
    );
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&greedy));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let pending = cluster.wait_pod("greedy", "to be found unschedulable", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    });
    assert_eq!(phase(&pending), "Pending");
    let message = pending["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .map(|c| c["message"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(message.contains("Insufficient cpu"), "{pending}");
    assert_eq!(
        pending["spec"]["containers"][0]["resources"]["limits"]["cpu"], "64",
        "a request above the default limit raises the limit to it"
    );

    // A request above its own limit can never be honoured: refused, naming the field.
    let inverted = pod_with(
        "inverted",
        "hello:v1",
        &[],
        "Never",
        "      resources:\n        limits:\n          memory: 32Mi\n        requests:\n          memory: 64Mi\n",
    );
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&inverted));
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("spec.containers[0].resources.requests.memory")
            && out
                .stderr
                .contains("must be less than or equal to memory limit"),
        "{}",
        out.stderr
    );
    assert!(cluster.pod("inverted").is_none());
}

#[test]
fn the_agent_keeps_its_reserve_and_all_pods_together_stay_within_allocatable() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    // Reserve all but 80 MiB of memory, and a quarter core of CPU, for "the system".
    let reserved_memory = mem_total_bytes() - (80 << 20);
    let mut launch = AgentLaunch::host("");
    launch.extra_args = vec![
        "--system-reserved".into(),
        format!("cpu=250m,memory={reserved_memory}"),
    ];
    cluster.launch_agent("small", launch);
    let node = cluster.wait_node_ready("small");
    assert_eq!(node["status"]["allocatable"]["memory"], "81920Ki", "{node}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let cpu = node["status"]["allocatable"]["cpu"].as_str().unwrap_or("");
    assert_eq!(cpu, format!("{}m", cores * 1000 - 250), "{node}");

    cluster.push("exerciser", "exerciser:v1");
    // Each pod asks for the default 16Mi and may grow to the default 128Mi limit, so the
    // scheduler places both; together they would need 100 MiB of the node's 80.
    cluster.apply(&pod(
        "holder",
        "exerciser:v1",
        &["alloc", "40", "600000"],
        "Never",
    ));
    cluster.wait_pod("holder", "to hold its 40 MiB", |p| {
        phase(p) == "Running" && cluster.logs("holder").contains("done")
    });
    cluster.apply(&pod(
        "greedy",
        "exerciser:v1",
        &["alloc", "60", "600000"],
        "Never",
    ));
    let greedy = cluster.wait_pod("greedy", "to be stopped by the node's budget", |p| {
        phase(p) == "Failed"
    });
    assert_eq!(terminated_reason(&greedy), "OOMKilled", "{greedy}");
    assert!(
        !cluster.logs("greedy").contains("allocated 60 MiB"),
        "the greedy pod got all it asked for"
    );

    // Memory goes back to the node when a pod ends: then 60 MiB fit. (The agent may stop
    // the holder a moment after its object is gone: OnFailure retries until it has.)
    let out = cluster.kubectl(&["delete", "pod", "holder"]);
    assert!(out.success, "{}", out.stderr);
    cluster.apply(&pod("after", "exerciser:v1", &["alloc", "60"], "OnFailure"));
    cluster.wait_pod("after", "to complete once memory is free", |p| {
        phase(p) == "Succeeded"
    });
}
