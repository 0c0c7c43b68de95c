//! Services (issue 10 §2) with the real kubectl against a real server and agent: a
//! ClusterIP Service in front of a Deployment, reached by name and by its virtual IP from
//! another pod; its EndpointSlices and Endpoints following the pods; a headless Service;
//! an ExternalName under the egress policy; and the refusals.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::Value;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(60);

const BACKENDS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
      - name: server
        image: tcp-echo:v1
        args: [\"--port\", \"7007\"]
        ports: [{name: echo, containerPort: 7007}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports:
  - port: 80
    targetPort: echo
---
apiVersion: v1
kind: Service
metadata:
  name: echo-headless
spec:
  clusterIP: None
  selector: {app: echo}
  ports:
  - port: 7007
---
apiVersion: v1
kind: Service
metadata:
  name: outside
spec:
  type: ExternalName
  externalName: example.com
";

/// A pod whose one container runs `tcp-echo` with `args`.
fn client(name: &str, args: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: tcp-echo:v1
    args: {args}
"
    )
}

/// The first log line of `pod` that starts with `prefix`.
fn wait_log(cluster: &Cluster, pod: &str, prefix: &str) -> String {
    wait_for(&format!("{pod} to log {prefix:?}"), START, || {
        let out = cluster.kubectl(&["logs", pod]);
        out.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .ok_or(format!("{}{}", out.stdout, out.stderr))
    })
}

fn get_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl prints JSON")
}

/// The echo Deployment's pods that are Ready: (name, pod IP).
fn ready_backends(cluster: &Cluster) -> BTreeSet<(String, String)> {
    let pods = get_json(cluster, &["pods", "-l", "app=echo"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_owned();
            Some((name, p["status"]["podIP"].as_str()?.to_owned()))
        })
        .collect()
}

/// Waits until the ready endpoints of the Service's EndpointSlices are `want` (pod name
/// and address).
fn wait_slice_endpoints(cluster: &Cluster, want: &BTreeSet<(String, String)>) {
    wait_for("the EndpointSlice to list the ready pods", START, || {
        let slices = get_json(
            cluster,
            &["endpointslices", "-l", "kubernetes.io/service-name=echo"],
        );
        let ready: BTreeSet<(String, String)> = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| {
                let name = e["targetRef"]["name"].as_str()?.to_owned();
                Some((name, e["addresses"][0].as_str()?.to_owned()))
            })
            .collect();
        (ready == *want).then_some(()).ok_or(format!("{ready:?}"))
    });
}

#[test]
fn a_service_reaches_its_ready_pods_by_name_and_cluster_ip() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.kubectl_apply(BACKENDS);

    // The Service got a virtual IP from the service CIDR, and kubectl prints it.
    let svc = get_json(&cluster, &["service", "echo"]);
    let vip: Ipv4Addr = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("a ClusterIP");
    let cidr: Ipv4Net = "10.43.0.0/16".parse().expect("cidr");
    assert!(cidr.contains(&vip), "{vip}");
    assert_eq!(svc["spec"]["clusterIPs"][0], vip.to_string());
    let table = cluster.kubectl_ok(&["get", "svc"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("echo "))
        .expect("a row for echo");
    assert!(
        row.contains("ClusterIP") && row.contains(&vip.to_string()) && row.contains("80/TCP"),
        "{table}"
    );
    assert!(table.contains("example.com"), "ExternalName shown: {table}");

    // Its EndpointSlice and Endpoints list both pods once they are Ready.
    let backends = wait_for("two ready backends", START, || {
        let ready = ready_backends(&cluster);
        (ready.len() == 2)
            .then_some(ready.clone())
            .ok_or(format!("{ready:?}"))
    });
    wait_slice_endpoints(&cluster, &backends);
    let ips: BTreeSet<String> = backends.iter().map(|(_, ip)| ip.clone()).collect();
    let endpoints = cluster.kubectl_ok(&["get", "endpoints", "echo"]);
    for ip in &ips {
        assert!(endpoints.contains(&format!("{ip}:7007")), "{endpoints}");
    }

    // A pod reaches the Service by its short name, its full name and its ClusterIP: it sees
    // the ClusterIP as its peer, and one of the backends serves it (on the named target
    // port), seeing the caller's pod IP.
    for (pod, target) in [
        ("by-name", "echo:80".to_owned()),
        ("by-fqdn", "echo.default.svc.cluster.local:80".to_owned()),
        ("by-ip", format!("{vip}:80")),
    ] {
        let args = format!("[\"--connect\", \"{target}\", \"--send\", \"{pod}\"]");
        cluster.kubectl_apply(&client(pod, &args));
        let line = wait_log(&cluster, pod, "echo from");
        assert_eq!(line, format!("echo from {vip}:80: {pod}"));
        let caller = get_json(&cluster, &["pod", pod]);
        let caller_ip = caller["status"]["podIP"]
            .as_str()
            .expect("a pod IP")
            .to_owned();
        wait_for(&format!("a backend to serve {pod}"), START, || {
            let served = cluster.kubectl_ok(&["logs", "-l", "app=echo", "--tail=-1"]);
            served
                .lines()
                .any(|l| l.starts_with(&format!("{caller_ip}:")))
                .then_some(())
                .ok_or(served)
        });
    }

    // A headless Service's name resolves to a pod IP.
    cluster.kubectl_apply(&client(
        "headless",
        "[\"--connect\", \"echo-headless:7007\"]",
    ));
    let line = wait_log(&cluster, "headless", "echo from");
    assert!(
        ips.iter()
            .any(|ip| line.starts_with(&format!("echo from {ip}:7007"))),
        "{line}"
    );

    // An ExternalName is an alias that the egress policy still governs: denied, at once.
    cluster.kubectl_apply(&client("external", "[\"--connect\", \"outside:80\"]"));
    let line = wait_log(&cluster, "external", "tcp-echo:");
    assert!(line.contains("Permission denied"), "{line}");

    // A deleted backend leaves the endpoints; its replacement joins them.
    let (victim, _) = backends.iter().next().expect("a backend").clone();
    cluster.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let after = wait_for("the replacement to be ready", START, || {
        let ready = ready_backends(&cluster);
        (ready.len() == 2 && ready.iter().all(|(name, _)| *name != victim))
            .then_some(ready.clone())
            .ok_or(format!("{ready:?}"))
    });
    wait_slice_endpoints(&cluster, &after);

    // Deleting the Service removes its EndpointSlices and Endpoints.
    cluster.kubectl_ok(&["delete", "service", "echo"]);
    wait_for("the endpoints to go with the Service", START, || {
        let slices = cluster.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=echo",
            "-o",
            "name",
        ]);
        let endpoints = cluster.kubectl(&["get", "endpoints", "echo"]);
        (slices.trim().is_empty() && !endpoints.success)
            .then_some(())
            .ok_or(format!("{slices}{}", endpoints.stdout))
    });
}

#[test]
fn services_that_cannot_be_honoured_are_refused_by_field() {
    let cluster = Cluster::start(ClusterOptions::default());
    let refused = |manifest: &str, field: &str| {
        let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(!out.success, "accepted: {manifest}");
        assert!(out.stderr.contains(field), "{field}: {}", out.stderr);
    };
    let svc = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
    };
    refused(
        &svc("np", "  ports: [{port: 80, nodePort: 30080}]\n"),
        "spec.ports[0].nodePort",
    );
    refused(
        &svc(
            "sctp",
            "  type: LoadBalancer\n  ports: [{port: 53, protocol: SCTP}]\n",
        ),
        "spec.ports[0].protocol",
    );

    // A requested ClusterIP is honoured once; a second Service cannot take it, and it
    // cannot change.
    cluster.kubectl_apply(&svc(
        "fixed",
        "  clusterIP: 10.43.9.9\n  ports: [{port: 80}]\n",
    ));
    refused(
        &svc("twin", "  clusterIP: 10.43.9.9\n  ports: [{port: 80}]\n"),
        "provided IP is already allocated",
    );
    refused(
        &svc("fixed", "  clusterIP: 10.43.9.10\n  ports: [{port: 80}]\n"),
        "may not change once set",
    );
    refused(
        &svc("away", "  clusterIP: 10.99.0.1\n  ports: [{port: 80}]\n"),
        "not in the valid range",
    );

    // `kubectl expose` makes a Service from a Deployment's selector, with a fresh IP.
    cluster.kubectl_apply(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: tcp-echo:v1
",
    );
    cluster.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "7007",
    ]);
    let exposed = get_json(&cluster, &["service", "web"]);
    assert_eq!(exposed["spec"]["selector"]["app"], "web");
    assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 7007);
    let ip = exposed["spec"]["clusterIP"].as_str().expect("an IP");
    assert_ne!(ip, "10.43.9.9");
    assert!(ip.starts_with("10.43."), "{ip}");
}
