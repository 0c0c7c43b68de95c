//! A running pod's container gets a new image: only that container restarts, on the new
//! module, and status never names an image that is not running; the events say it as the
//! kubelet does (`Killing` "definition changed", `Pulled`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

const TWO_CONTAINERS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  containers:
    - name: c1
      image: app:v1
      args: [\"--interval-ms\", \"100\"]
    - name: c2
      image: exerciser:v1
      args: [\"sleep\", \"600000\"]
";

fn running_since(pod: &Value, container: &str) -> Value {
    container_status(pod, container)["state"]["running"]["startedAt"].clone()
}

/// Every version of the pod `kubectl get -w -o json` printed.
fn versions(printed: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(printed)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect()
}

#[test]
fn a_new_image_restarts_only_that_container_and_status_names_it_once_it_runs() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("sensor", "app:v1");
    cluster.push("exerciser", "exerciser:v1");
    // The same program built as a component: another module, which takes longer to compile.
    cluster.push("exerciser-p2", "exerciser:v2");
    cluster.kubectl_apply(TWO_CONTAINERS);
    let before = cluster.wait_pod("two", "to run both containers", |p| {
        phase(p) == "Running"
            && running_since(p, "c1").is_string()
            && running_since(p, "c2").is_string()
    });
    let old_id = container_status(&before, "c2")["imageID"].clone();
    let c1_started = running_since(&before, "c1");

    // Every version of the pod from here on, as a watching user sees them.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["get", "pod", "two", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get -w");
    let mut stdout = watch.stdout.take().expect("watch output");
    let reader = std::thread::spawn(move || {
        let mut printed = String::new();
        let _ = stdout.read_to_string(&mut printed);
        printed
    });
    std::thread::sleep(Duration::from_millis(500));

    cluster.kubectl_ok(&["set", "image", "pod/two", "c2=exerciser:v2"]);
    let after = cluster.wait_pod("two", "to run c2 on its new image", |p| {
        let c2 = container_status(p, "c2");
        c2["restartCount"] == 1
            && c2["image"] == "exerciser:v2"
            && c2["state"]["running"].is_object()
    });
    // Give a late status a moment to show up in the watch, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = versions(&reader.join().expect("watch reader"));

    let c1 = container_status(&after, "c1");
    assert_eq!(c1["restartCount"], 0, "c1 was restarted: {c1}");
    assert_eq!(
        running_since(&after, "c1"),
        c1_started,
        "c1 has another run"
    );
    let c2 = container_status(&after, "c2");
    assert_ne!(c2["imageID"], old_id);
    assert_eq!(c2["lastState"]["terminated"]["exitCode"], 137, "{c2}");

    assert!(seen.len() >= 2, "the watch printed {} versions", seen.len());
    assert!(
        seen.iter()
            .any(|p| p["spec"]["containers"][1]["image"] == "exerciser:v2"
                && container_status(p, "c2")["image"] == "exerciser:v1"),
        "no version asks for the new image while the old one runs"
    );
    for pod in &seen {
        let c1 = container_status(pod, "c1");
        assert_eq!(c1["restartCount"], 0, "c1 restarted: {c1}");
        assert_eq!(running_since(pod, "c1"), c1_started, "c1 restarted: {c1}");
        let c2 = container_status(pod, "c2");
        let names_new = c2["image"] == "exerciser:v2" || c2["imageID"] != old_id;
        let runs_new = c2["restartCount"] == 1 && c2["state"]["running"].is_object();
        assert_eq!(
            names_new, runs_new,
            "status names an image that does not run: {c2}"
        );
        if c2["restartCount"] == 0 {
            assert_eq!(c2["imageID"], old_id, "{c2}");
        }
    }
    // As the kubelet says it: the container was killed for its new definition (once, for
    // c2 only), the new module was pulled, and the container started on it.
    wait_for("events for the new module", CONVERGE, || {
        let events = cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=two",
        ]);
        let killed = events
            .lines()
            .filter(|l| l.contains("Killing"))
            .collect::<Vec<_>>();
        match events.contains("Successfully pulled module exerciser:v2") && !killed.is_empty() {
            true => {
                assert_eq!(killed.len(), 1, "{events}");
                assert!(
                    killed[0].ends_with("Container c2 definition changed, will be restarted"),
                    "{events}"
                );
                Ok(())
            }
            false => Err(events),
        }
    });
}
