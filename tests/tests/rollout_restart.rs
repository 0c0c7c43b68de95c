//! Issue 9 §5: a server killed (SIGKILL) in the middle of a Deployment's rolling update
//! resumes the rollout after it starts again on the same data dir, never running more pods
//! than `replicas + maxSurge` and never creating a pod twice. Driven with the real kubectl
//! against a real server and agent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::Clients;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const REPLICAS: usize = 4;
const MAX_SURGE: usize = 1;
/// Each new pod must stay ready this long before the rollout moves on: several seconds of
/// rollout left when the server is killed.
const MIN_READY_SECONDS: u32 = 2;
const ROLLOUT: Duration = Duration::from_secs(60);

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {REPLICAS}
  minReadySeconds: {MIN_READY_SECONDS}
  selector:
    matchLabels: {{app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: {MAX_SURGE}, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
        args: [\"sleep\", \"600000\"]
"
    )
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    cluster.kubectl_ok(args)
}

fn items(json: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
}

fn list(cluster: &Cluster, what: &str) -> Vec<Value> {
    items(&kubectl(
        cluster,
        &["get", what, "-l", "app=web", "-o", "json"],
    ))
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn image(obj: &Value) -> &str {
    obj["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

fn revision(obj: &Value) -> &str {
    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or_default()
}

/// The names of the non-terminating pods of `web`, as one `kubectl get` saw them.
type Sample = Vec<String>;

/// Lists the Deployment's pods with kubectl over and over until stopped, keeping every
/// answer (calls made while the server is down fail and are skipped).
struct PodSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl PodSampler {
    fn start(clients: Clients) -> PodSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let args = ["get", "pods", "-l", "app=web", "-o", "json"];
                let out = clients.kubectl_with_stdin(&args, None);
                if out.success {
                    let live = items(&out.stdout)
                        .iter()
                        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
                        .map(name)
                        .collect();
                    samples.push(live);
                } else {
                    // The server is down: do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            samples
        });
        PodSampler { stop, thread }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

/// The pod names of the `SuccessfulCreate` events recorded on ReplicaSet `rs`.
fn created_pods(cluster: &Cluster, rs: &str) -> Vec<String> {
    items(&kubectl(cluster, &["get", "events", "-o", "json"]))
        .iter()
        .filter(|e| e["reason"] == "SuccessfulCreate" && e["involvedObject"]["name"] == rs)
        .flat_map(|e| {
            let count = e["count"].as_u64().unwrap_or(1);
            let pod = e["message"]
                .as_str()
                .and_then(|m| m.strip_prefix("Created pod: "))
                .unwrap_or_default()
                .to_owned();
            std::iter::repeat_n(pod, usize::try_from(count).unwrap_or(usize::MAX))
        })
        .collect()
}

#[test]
fn a_server_killed_mid_rollout_resumes_it_without_extra_pods() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");
    cluster.push("exerciser", "app:v2");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&deployment("app:v1")));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    kubectl(
        &cluster,
        &["rollout", "status", "deploy/web", "--timeout=60s"],
    );
    let first: BTreeSet<String> = list(&cluster, "pods").iter().map(name).collect();
    assert_eq!(first.len(), REPLICAS, "{first:?}");

    let sampler = PodSampler::start(cluster.clients());
    kubectl(&cluster, &["set", "image", "deploy/web", "web=app:v2"]);
    // Kill once the new ReplicaSet has moved past its first pod (which needed
    // minReadySeconds) while the old one still has pods: the middle of the rollout.
    let (old_rs, new_rs) = wait_for("the rollout to be half way", ROLLOUT, || {
        let sets = list(&cluster, "replicasets");
        let replicas = |image_name: &str| {
            sets.iter()
                .find(|rs| image(rs) == image_name)
                .map(|rs| (name(rs), rs["spec"]["replicas"].as_u64().unwrap_or(0)))
        };
        match (replicas("app:v1"), replicas("app:v2")) {
            (Some((old, old_n)), Some((new, new_n))) if new_n >= 2 && old_n >= 1 => Ok((old, new)),
            other => Err(format!("{other:?}")),
        }
    });
    cluster.kill_server();
    cluster.restart_server();

    let done = kubectl(
        &cluster,
        &["rollout", "status", "deploy/web", "--timeout=60s"],
    );
    assert!(done.contains("successfully rolled out"), "{done}");
    let pods = wait_for("only the new pods to be left", ROLLOUT, || {
        let pods = list(&cluster, "pods");
        let all_new = pods.iter().all(|p| {
            p["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .is_some_and(|hash| new_rs.ends_with(hash))
                && p["status"]["phase"] == "Running"
        });
        (all_new && pods.len() == REPLICAS)
            .then_some(pods.clone())
            .ok_or(format!("{} pods: {:?}", pods.len(), pods.iter().map(name)))
    });
    let samples = sampler.finish();

    // Never more than replicas + maxSurge pods at any observed moment.
    let crowded: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.len() > REPLICAS + MAX_SURGE)
        .collect();
    assert!(crowded.is_empty(), "too many pods at once: {crowded:?}");
    assert!(samples.len() > 5, "the sampler saw the rollout");

    // Exactly the old and the new ReplicaSet, with their revisions.
    let sets = list(&cluster, "replicasets");
    let mut summary: Vec<(String, String, u64)> = sets
        .iter()
        .map(|rs| {
            (
                name(rs),
                revision(rs).to_owned(),
                rs["spec"]["replicas"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    summary.sort();
    let mut expected = vec![
        (old_rs.clone(), "1".to_owned(), 0),
        (new_rs.clone(), "2".to_owned(), REPLICAS as u64),
    ];
    expected.sort();
    assert_eq!(summary, expected, "the ReplicaSets after the rollout");
    let deploy: Value =
        serde_json::from_str(&kubectl(&cluster, &["get", "deploy", "web", "-o", "json"]))
            .expect("the Deployment as JSON");
    assert_eq!(revision(&deploy), "2");

    // No pod created twice: each ReplicaSet created at most what it needed (the kill may
    // land between a pod's creation and its event, so the new one's may be one short), and
    // the sampler saw no pod beyond those.
    let old_created = created_pods(&cluster, &old_rs);
    let new_created = created_pods(&cluster, &new_rs);
    assert_eq!(old_created.len(), REPLICAS, "old: {old_created:?}");
    assert!(
        new_created.len() <= REPLICAS,
        "the new ReplicaSet created extra pods: {new_created:?}"
    );
    let seen: BTreeSet<&String> = samples.iter().flatten().collect();
    assert!(
        seen.len() <= 2 * REPLICAS,
        "pods seen during the rollout: {seen:?}"
    );
    let left: BTreeSet<String> = pods.iter().map(name).collect();
    assert!(left.is_disjoint(&first), "old pods left: {left:?}");
}
