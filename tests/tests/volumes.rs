//! Volumes beyond configuration (issue 12 §1), with real processes and the real kubectl:
//! an `emptyDir` over its `sizeLimit` gets its pod evicted as Kubernetes words it while a
//! pod under its limit runs on, and `hostPath` volumes reach only the node directories
//! the agent's administrator allows, read-only unless allowed. An `emptyDir` with `medium:
//! Memory` lives on the node's tmpfs, limited by the pod's memory limit.

use std::fs;
use std::time::{Duration, Instant};

use wasmfleet_tests::cluster::{AgentLaunch, container_status, phase};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// How often the test agent checks sizeLimits (the default is the kubelet's 10 s).
const CHECK_MS: &str = "500";

/// How long an eviction may take after the volume went over its limit: two checks and a
/// status report, with room for a loaded machine.
const EVICTION_BOUND: Duration = Duration::from_secs(10);

const SIZED: &str = "
apiVersion: v1
kind: Pod
metadata: {name: filler}
spec:
  restartPolicy: Always
  containers:
    - name: main
      image: exerciser:v1
      args: [write, /scratch/fill, '2097152', '600000']
      volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
    - {name: scratch, emptyDir: {sizeLimit: 1Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: modest}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: exerciser:v1
      args: [write, /scratch/fill, '102400', '600000']
      volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
    - {name: scratch, emptyDir: {sizeLimit: 1Mi}}
";

fn logs_of(cluster: &Cluster, pod: &str) -> String {
    cluster.kubectl(&["logs", pod]).stdout
}

/// A cluster whose one agent, node-a, checks sizeLimits every [`CHECK_MS`], running
/// `manifests` with the exerciser.
fn checking_cluster(manifests: &str) -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions { agents: vec![] });
    cluster.launch_agent(
        "node-a",
        AgentLaunch {
            extra_args: vec!["--volume-check-interval-ms".into(), CHECK_MS.into()],
            ..AgentLaunch::host("")
        },
    );
    cluster.push("exerciser", "exerciser:v1");
    cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifests));
    cluster
}

#[test]
fn an_empty_dir_over_its_size_limit_gets_the_pod_evicted() {
    let mut cluster = checking_cluster(SIZED);

    wait_for("both pods to write", Duration::from_secs(30), || {
        match (logs_of(&cluster, "filler"), logs_of(&cluster, "modest")) {
            (filler, modest)
                if filler.contains("wrote 2097152 bytes")
                    && modest.contains("wrote 102400 bytes") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    });
    let written = Instant::now();
    let evicted = cluster.wait_pod_within("filler", "to be evicted", EVICTION_BOUND, |p| {
        phase(p) == "Failed"
    });
    eprintln!("evicted {:?} after the write", written.elapsed());
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    assert_eq!(
        evicted["status"]["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
    );
    let main = container_status(&evicted, "main");
    assert_eq!(main["state"]["terminated"]["exitCode"], 137, "{main}");
    assert_eq!(main["ready"], false);

    // The Warning event says why.
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=filler,reason=Evicted",
        "-o",
        "jsonpath={.items[*].type}: {.items[*].message}",
    ]);
    assert_eq!(
        events,
        "Warning: Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\"."
    );

    // The pod under its limit runs on, past several more checks.
    std::thread::sleep(Duration::from_millis(4 * 500));
    let modest = cluster.kubectl_ok(&["get", "pod", "modest", "-o", "json"]);
    let modest: serde_json::Value = serde_json::from_str(&modest).expect("json");
    assert_eq!(phase(&modest), "Running", "{modest}");
    assert!(modest["status"]["reason"].is_null(), "{modest}");

    // An evicted pod stays evicted across an agent restart (it restarts `Always`, yet
    // nothing of it runs again), and its volume was freed.
    let scratch = cluster.agent_dir("node-a").join("volumes");
    let uid = evicted["metadata"]["uid"].as_str().expect("uid").to_owned();
    assert!(
        !scratch.join(&uid).exists(),
        "the evicted pod's volume is kept"
    );
    cluster.restart_agent("node-a");
    cluster.wait_pod("modest", "to run again after the restart", |p| {
        container_status(p, "main")["restartCount"] == 1
            && container_status(p, "main")["state"]["running"].is_object()
    });
    let filler = cluster.kubectl_ok(&["get", "pod", "filler", "-o", "json"]);
    let filler: serde_json::Value = serde_json::from_str(&filler).expect("json");
    assert_eq!(phase(&filler), "Failed", "{filler}");
    assert_eq!(filler["status"]["reason"], "Evicted");
    assert_eq!(container_status(&filler, "main")["restartCount"], 0);
}

const HOST_PATHS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: sensor}
spec:
  restartPolicy: Never
  containers:
    - name: read
      image: exerciser:v1
      args: [cat, /sensor/temp]
      volumeMounts: [{name: sensor, mountPath: /sensor}]
    - name: write
      image: exerciser:v1
      args: [write, /sensor/temp, '3']
      volumeMounts: [{name: sensor, mountPath: /sensor}]
    - name: log
      image: exerciser:v1
      args: [write, /data/out, '5']
      volumeMounts: [{name: data, mountPath: /data}]
    - name: pinned
      image: exerciser:v1
      args: [write, /data/pinned, '5']
      volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  volumes:
    - {name: sensor, hostPath: {path: SENSORS/zone0, type: Directory}}
    - {name: data, hostPath: {path: DATA}}
---
apiVersion: v1
kind: Pod
metadata: {name: denied}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: exerciser:v1
      args: [ls, /host]
      volumeMounts: [{name: host, mountPath: /host}]
  volumes:
    - {name: host, hostPath: {path: SECRETS}}
";

#[test]
fn host_paths_reach_only_what_the_agent_allows() {
    let mut cluster = Cluster::start(ClusterOptions { agents: vec![] });
    let host = cluster.dir().join("host");
    let (sensors, data, secrets) = (
        host.join("sensors"),
        host.join("data"),
        host.join("secrets"),
    );
    fs::create_dir_all(sensors.join("zone0")).expect("sensor dir");
    fs::write(sensors.join("zone0/temp"), "42000\n").expect("sensor file");
    fs::create_dir_all(&data).expect("data dir");
    fs::create_dir_all(&secrets).expect("secrets dir");
    cluster.launch_agent(
        "node-a",
        AgentLaunch {
            extra_args: vec![
                "--host-path-allow".into(),
                sensors.display().to_string(),
                "--host-path-allow".into(),
                format!("{}:rw", data.display()),
            ],
            ..AgentLaunch::host("")
        },
    );
    cluster.push("exerciser", "exerciser:v1");
    let pods = HOST_PATHS
        .replace("SENSORS", &sensors.display().to_string())
        .replace("DATA", &data.display().to_string())
        .replace("SECRETS", &secrets.display().to_string());
    cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&pods));

    let done = cluster.wait_pod("sensor", "to finish", |p| phase(p) == "Failed");
    let exit =
        |name: &str| container_status(&done, name)["state"]["terminated"]["exitCode"].clone();
    assert_eq!(
        cluster.kubectl_ok(&["logs", "sensor", "-c", "read"]),
        "42000\n"
    );
    assert_eq!(exit("read"), 0);
    // Read-only: the allowed sensor directory (no `:rw`), and a `readOnly` mount of a
    // writable one.
    assert_eq!(exit("write"), 1, "{done}");
    let said = cluster.kubectl(&["logs", "sensor", "-c", "write"]);
    assert!(
        said.stdout.contains("exerciser: write /sensor/temp"),
        "{said:?}"
    );
    assert_eq!(
        fs::read_to_string(sensors.join("zone0/temp")).expect("temp"),
        "42000\n"
    );
    assert_eq!(exit("pinned"), 1, "{done}");
    assert!(!data.join("pinned").exists());
    assert_eq!(exit("log"), 0, "{done}");
    assert_eq!(fs::read(data.join("out")).expect("written"), b"xxxxx");

    // A path the agent does not allow: the container waits and says why, with an event.
    let denied = cluster.wait_pod("denied", "to be refused its hostPath", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = container_status(&denied, "main")["state"]["waiting"]["message"].clone();
    let expected = format!(
        "volume \"host\": hostPath {:?} is not allowed on this node (its agent allows {}, {}:rw)",
        secrets.display().to_string(),
        sensors.display(),
        data.display()
    );
    assert_eq!(message, expected.as_str());
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=denied,reason=Failed",
        "-o",
        "jsonpath={.items[0].type}",
    ]);
    assert_eq!(events, "Warning");

    // What cannot be honoured is refused by field, and nothing is created.
    for (volume, field) in [
        (
            "{name: v, hostPath: {path: /dev/ttyS0, type: CharDevice}}",
            "spec.volumes[0].hostPath.type",
        ),
        (
            "{name: v, hostPath: {path: sys/class}}",
            "spec.volumes[0].hostPath.path",
        ),
        (
            "{name: v, emptyDir: {medium: HugePages}}",
            "spec.volumes[0].emptyDir.medium",
        ),
        (
            "{name: v, emptyDir: {sizeLimit: lots}}",
            "spec.volumes[0].emptyDir.sizeLimit",
        ),
    ] {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: refused}}\nspec:\n  containers: \
             [{{name: c, image: exerciser:v1, args: [ls, /v], volumeMounts: [{{name: v, mountPath: /v}}]}}]\n  \
             volumes: [{volume}]\n"
        );
        let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&pod));
        assert!(
            !out.success && out.stderr.contains(field),
            "{volume}: {}",
            out.stderr
        );
    }
    assert!(!cluster.kubectl(&["get", "pod", "refused"]).success);
}

const IN_MEMORY: &str = "
apiVersion: v1
kind: Pod
metadata: {name: hoarder}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: exerciser:v1
      args: [write, /ram/fill, '10485760', '600000']
      resources: {limits: {memory: 8Mi}}
      volumeMounts: [{name: ram, mountPath: /ram}]
  volumes:
    - {name: ram, emptyDir: {medium: Memory}}
---
apiVersion: v1
kind: Pod
metadata: {name: cache}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: exerciser:v1
      args: [write, /ram/fill, '102400', '600000']
      resources: {limits: {memory: 64Mi}}
      volumeMounts: [{name: ram, mountPath: /ram}]
  volumes:
    - {name: ram, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
";

/// The directory of pod `uid`'s memory volumes: under the node's tmpfs (`/dev/shm`), in
/// the directory of the agent that runs it.
fn memory_volumes_of(uid: &str) -> Option<std::path::PathBuf> {
    fs::read_dir("/dev/shm")
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("wasmfleet-volumes-")
        })
        .map(|e| e.path().join(uid))
        .find(|dir| dir.exists())
}

#[test]
fn a_memory_empty_dir_lives_on_a_tmpfs_within_the_pods_memory_limit() {
    let cluster = checking_cluster(IN_MEMORY);

    // With no sizeLimit, the pod's memory limit is the volume's (Kubernetes' default).
    let evicted = cluster.wait_pod("hoarder", "to be evicted", |p| phase(p) == "Failed");
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    assert_eq!(
        evicted["status"]["message"],
        "Usage of EmptyDir volume \"ram\" exceeds the limit \"8Mi\". "
    );
    let uid = evicted["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        memory_volumes_of(uid),
        None,
        "the evicted pod's memory is freed"
    );

    // Under its (smaller) sizeLimit, a pod runs on, its files in memory and not on disk.
    wait_for(
        "the cache pod to write",
        Duration::from_secs(30),
        || match logs_of(&cluster, "cache") {
            logs if logs.contains("wrote 102400 bytes") => Ok(()),
            logs => Err(logs),
        },
    );
    let cache = cluster.kubectl_ok(&["get", "pod", "cache", "-o", "json"]);
    let cache: serde_json::Value = serde_json::from_str(&cache).expect("json");
    let uid = cache["metadata"]["uid"].as_str().expect("uid").to_owned();
    let dir = memory_volumes_of(&uid).expect("the cache pod's volume under /dev/shm");
    assert_eq!(
        fs::metadata(dir.join("ram/fill")).expect("file").len(),
        102_400
    );
    let disk = cluster.agent_dir("node-a").join("volumes").join(&uid);
    assert!(!disk.join("ram").exists(), "a memory volume on disk");
    std::thread::sleep(Duration::from_millis(4 * 500));
    let cache = cluster.kubectl_ok(&["get", "pod", "cache", "-o", "json"]);
    let cache: serde_json::Value = serde_json::from_str(&cache).expect("json");
    assert_eq!(phase(&cache), "Running", "{cache}");

    // Deleting the pod frees its memory.
    cluster.kubectl_ok(&["delete", "pod", "cache", "--grace-period=0", "--force"]);
    wait_for(
        "the memory volume to go",
        Duration::from_secs(10),
        || match memory_volumes_of(&uid) {
            None => Ok(()),
            Some(dir) => Err(dir.display().to_string()),
        },
    );
}
