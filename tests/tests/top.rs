//! `kubectl top` (issue 11, `metrics.k8s.io`): the real kubectl shows the CPU and memory
//! an agent reports for its pods and its node, a deleted pod drops out, `kubectl get
//! podmetrics -w` follows new reports, and a server restart keeps the last reports. The agent reports every second here
//! (`--usage-interval 1`) instead of every 15 s.

use wasmfleet_tests::cluster::{AgentLaunch, CONVERGE, Clients, phase};
use wasmfleet_tests::manifests::{limits, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// MiB the allocator takes and holds.
const ALLOCATED_MIB: u64 = 48;

/// The rows of a `kubectl top ... --no-headers` table, split into columns.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .filter(|row: &Vec<String>| !row.is_empty())
        .collect()
}

/// `250m` → 250, `2` (cores) → 2000.
fn millicores(cpu: &str) -> u64 {
    match cpu.strip_suffix('m') {
        Some(millis) => millis.parse().expect("millicores"),
        None => cpu.parse::<u64>().expect("cores") * 1000,
    }
}

/// `50Mi` → 50 (kubectl prints memory in Mi).
fn mebibytes(memory: &str) -> u64 {
    memory
        .strip_suffix("Mi")
        .expect("memory in Mi")
        .parse()
        .expect("number")
}

fn top(cluster: &Cluster, args: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let mut full = vec!["top"];
    full.extend_from_slice(args);
    full.push("--no-headers");
    let out = cluster.kubectl(&full);
    if out.success {
        Ok(rows(&out.stdout))
    } else {
        Err(out.stderr)
    }
}

/// A user bound to the default `view` role in the default namespace.
fn viewer(cluster: &Cluster) -> Clients {
    let path = cluster.dir().join("viewer.kubeconfig");
    let path_text = path.display().to_string();
    let minted = cluster.cli(&["user", "kubeconfig", "viewer", "-o", &path_text]);
    assert!(minted.success, "{minted:?}");
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        "--user=viewer",
    ]);
    Clients::with_kubeconfig(path)
}

#[test]
fn kubectl_top_shows_what_the_pods_and_the_node_use() {
    let mut cluster = Cluster::start(ClusterOptions { agents: vec![] });
    cluster.launch_agent(
        "node-a",
        AgentLaunch {
            extra_args: vec!["--usage-interval".into(), "1".into()],
            ..AgentLaunch::host("")
        },
    );
    cluster.wait_node_ready("node-a");

    // A node without pods is shown too (its first report goes after one interval).
    let nodes = wait_for("kubectl top node to show node-a", CONVERGE, || {
        top(&cluster, &["node"])
    });
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert_eq!(node[0], "node-a", "{node:?}");
    assert!(mebibytes(&node[3]) > 0, "the host's working set: {node:?}");
    assert!(node[2].ends_with('%') && node[4].ends_with('%'), "{node:?}");

    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(&pod_with(
        "burner",
        "exerciser:v1",
        &["spin", "600000"],
        "Never",
        &limits("64Mi", "500m"),
    ));
    cluster.apply(&pod_with(
        "allocator",
        "exerciser:v1",
        &["alloc", &ALLOCATED_MIB.to_string(), "600000"],
        "Never",
        &limits("128Mi", "100m"),
    ));
    for name in ["burner", "allocator"] {
        cluster.wait_pod(name, "to run", |p| phase(p) == "Running");
    }

    let pods = wait_for("kubectl top pod to list both pods", CONVERGE, || {
        let rows = top(&cluster, &["pod"])?;
        let find = |name: &str| rows.iter().find(|row| row[0] == name).cloned();
        match (find("burner"), find("allocator")) {
            // A first window may end just after the burner started: wait for a whole one.
            (Some(burner), Some(allocator))
                if millicores(&burner[1]) >= 100 && mebibytes(&allocator[2]) >= ALLOCATED_MIB =>
            {
                Ok((burner, allocator))
            }
            _ => Err(format!("{rows:?}")),
        }
    });
    let (burner, allocator) = pods;
    // The spinner never yields, so it uses its whole limit of half a core (and no more,
    // give or take where the throttle's 100 ms windows fall in the second measured).
    assert!(
        millicores(&burner[1]) <= 700,
        "the burner's CPU: {burner:?}"
    );
    assert!(
        mebibytes(&allocator[2]) <= 128,
        "no more than its limit: {allocator:?}"
    );

    // Per container, and by label across all namespaces.
    let containers = top(&cluster, &["pod", "burner", "--containers"]).expect("top --containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(&containers[0][..2], ["burner", "main"], "{containers:?}");
    let labelled = top(&cluster, &["pod", "-A", "-l", "test=e2e"]).expect("top -A -l");
    let names: Vec<&str> = labelled.iter().map(|row| row[1].as_str()).collect();
    assert!(
        names.contains(&"burner") && names.contains(&"allocator"),
        "{labelled:?}"
    );
    // `kubectl get` prints metrics-server's columns.
    let table = cluster.kubectl_ok(&["get", "podmetrics", "burner"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CPU", "MEMORY", "WINDOW"], "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(
        row[1].ends_with('n') && row[2].ends_with("Ki") && row[3].ends_with('s'),
        "{table}"
    );
    let none = top(&cluster, &["pod", "-l", "test=nothing"]);
    assert_eq!(none, Ok(vec![]), "no pod matches the selector");

    // The default `view` role reads pods' metrics (bound in one namespace: not the nodes').
    let viewer = viewer(&cluster);
    // (The binding reaches the authorizer through the informer: wait for it.)
    wait_for(
        "the viewer to see the allocator's metrics",
        CONVERGE,
        || {
            let seen = viewer.kubectl(&["top", "pod", "allocator", "--no-headers"]);
            match seen.success && seen.stdout.starts_with("allocator") {
                true => Ok(()),
                false => Err(format!("{seen:?}")),
            }
        },
    );
    let refused = viewer.kubectl(&["top", "node"]);
    assert!(
        !refused.success && refused.stderr.contains("forbidden"),
        "{refused:?}"
    );

    // The burner's CPU shows on the node's line too.
    let node = &top(&cluster, &["node", "node-a"]).expect("top node")[0];
    assert!(millicores(&node[1]) >= 100, "{node:?}");

    // A deleted pod disappears.
    cluster.kubectl_ok(&["delete", "pod", "burner"]);
    wait_for("the deleted pod to leave kubectl top", CONVERGE, || {
        let rows = top(&cluster, &["pod"])?;
        let names: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
        match names.as_slice() {
            ["allocator"] => Ok(()),
            _ => Err(format!("{rows:?}")),
        }
    });
    let gone = cluster.kubectl(&["top", "pod", "burner"]);
    assert!(
        !gone.success && gone.stderr.contains("not found"),
        "{gone:?}"
    );

    // `kubectl get podmetrics -w`: the row again with every new report (each second here).
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "get",
            "podmetrics",
            "allocator",
            "-w",
            "--output-watch-events",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl get -w");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let _ = watch.kill();
    let watched = watch.wait_with_output().expect("kubectl get -w");
    let printed = String::from_utf8_lossy(&watched.stdout);
    let events: Vec<Vec<&str>> = printed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        events.first().map(Vec::as_slice),
        Some(&["EVENT", "NAME", "CPU", "MEMORY", "WINDOW"][..]),
        "{printed}{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert_eq!(
        events.get(1).map(|e| &e[..2]),
        Some(&["ADDED", "allocator"][..])
    );
    let modified = events
        .iter()
        .filter(|e| e[..2] == ["MODIFIED", "allocator"])
        .count();
    assert!(modified >= 1, "no newer report watched: {printed}");

    // Across a server restart the last reports are kept: with the agent stopped (so no
    // report can come after the restart), `top` still answers from them.
    cluster.kill_agent("node-a");
    let before = top(&cluster, &["pod", "allocator"]).expect("top before the restart");
    cluster.restart_server();
    let after = top(&cluster, &["pod", "allocator"]).expect("top right after the restart");
    assert_eq!(after, before, "the same report, with its own timestamp");
    let node = top(&cluster, &["node", "node-a"]).expect("top node after the restart");
    assert_eq!(node[0][0], "node-a", "{node:?}");
}
