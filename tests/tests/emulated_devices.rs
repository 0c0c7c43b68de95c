//! Emulated Raspberry-Pi-class devices: an aarch64 agent and an armv7 agent, each a
//! runtime-only `cross/build` binary running under qemu-user as its own process, join an
//! x86_64 server next to a native agent. Pods choose them with a `kubernetes.io/arch` node
//! selector and run the server's signed artifacts (native aarch64 code, Pulley bytecode for
//! armv7): a runtime-only agent cannot compile, so a pod that runs proves the artifact path.
//!
//! Needs the cross-built agents first (`scripts/test` does this):
//!
//! ```text
//! cross/build aarch64 armv7 --runtime-only
//! cargo test -p wasmfleet-tests --features emulated --test emulated_devices
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::{container_status, phase};
use wasmfleet_tests::manifests::{pod, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, repo_root};

/// Emulated CPUs are slow: joining and running get minutes, not seconds.
const EMULATED: Duration = Duration::from_secs(240);

/// An emulated device: node name, `cross/qemu-run` architecture, Kubernetes architecture.
struct Device {
    node: &'static str,
    arch: &'static str,
    kubernetes_arch: &'static str,
}

const DEVICES: [Device; 2] = [
    Device {
        node: "pi-arm64",
        arch: "aarch64",
        kubernetes_arch: "arm64",
    },
    Device {
        node: "pi-armhf",
        arch: "armv7",
        kubernetes_arch: "arm",
    },
];

/// The native agent next to the devices, so a selector has something to tell apart.
const HOST_NODE: &str = "edge-amd64";

/// The runtime-only agent `cross/build ARCH --runtime-only` left in `cross/dist`.
fn cross_built_agent(arch: &str) -> PathBuf {
    let binary = repo_root().join(format!("cross/dist/{arch}-runtime-only/wasmfleet-agent"));
    assert!(
        binary.exists(),
        "{} is missing: run cross/build {arch} --runtime-only",
        binary.display()
    );
    binary
}

fn cluster_with_emulated_devices() -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions {
        agents: vec![(HOST_NODE.into(), String::new())],
    });
    for device in &DEVICES {
        cluster.start_emulated_agent(device.node, device.arch, &cross_built_agent(device.arch));
    }
    for device in &DEVICES {
        cluster.wait_node_condition_within(device.node, "True", EMULATED);
    }
    cluster.push("hello", "hello:v1");
    cluster.push("exerciser", "exerciser:v1");
    cluster
}

fn on_arch(manifest: String, kubernetes_arch: &str) -> String {
    format!("{manifest}  nodeSelector:\n    kubernetes.io/arch: {kubernetes_arch}\n")
}

fn wait_succeeded(cluster: &Cluster, name: &str) -> Value {
    let done = cluster.wait_pod_within(name, "to succeed", EMULATED, |p| {
        phase(p) == "Succeeded" || phase(p) == "Failed"
    });
    assert_eq!(phase(&done), "Succeeded", "{name}: {}", done["status"]);
    assert_eq!(
        container_status(&done, "main")["state"]["terminated"]["exitCode"],
        0
    );
    done
}

#[test]
fn arm_agents_under_qemu_join_with_their_architecture_and_run_the_pods_that_select_it() {
    let cluster = cluster_with_emulated_devices();
    for device in &DEVICES {
        let node = cluster.node(device.node).expect("node registered");
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/arch"],
            device.kubernetes_arch
        );
        assert_eq!(
            node["status"]["nodeInfo"]["architecture"],
            device.kubernetes_arch
        );
    }

    let greeting = "      env:\n        - name: GREETING\n          value: hi from a pi\n";
    for device in &DEVICES {
        let name = format!("hello-{}", device.kubernetes_arch);
        let manifest = pod_with(&name, "hello:v1", &[device.arch], "Never", greeting);
        cluster.apply(&on_arch(manifest, device.kubernetes_arch));
    }
    for device in &DEVICES {
        let name = format!("hello-{}", device.kubernetes_arch);
        let done = wait_succeeded(&cluster, &name);
        assert_eq!(done["spec"]["nodeName"], device.node);
        assert_eq!(
            cluster.logs(&name),
            format!("hello from wasmfleet\n{}\nhi from a pi\n", device.arch)
        );
        let agent = cluster.agent_output(device.node);
        assert!(
            agent.contains("installed the server's signed artifact"),
            "{} ran without the server's artifact:\n{agent}",
            device.node
        );
    }
}

#[test]
fn cpu_bound_work_gives_the_same_result_on_amd64_and_the_emulated_arm64_and_armv7() {
    let cluster = cluster_with_emulated_devices();
    let arches = ["amd64", "arm64", "arm"];
    for arch in arches {
        let manifest = pod(
            &format!("work-{arch}"),
            "exerciser:v1",
            &["work", "2"],
            "Never",
        );
        cluster.apply(&on_arch(manifest, arch));
    }
    let mut results = Vec::new();
    for arch in arches {
        let name = format!("work-{arch}");
        wait_succeeded(&cluster, &name);
        let logs = cluster.logs(&name);
        assert!(logs.starts_with("work 2: "), "{name}: {logs:?}");
        results.push(logs);
    }
    assert_eq!(results[0], results[1], "amd64 and arm64 disagree");
    assert_eq!(results[0], results[2], "amd64 and armv7 (Pulley) disagree");
}
