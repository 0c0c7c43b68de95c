//! Configuration for pods (issue 12 §1) with real processes and the real kubectl:
//! ConfigMaps and Secrets as kubectl creates, lists and describes them, Secrets kept
//! encrypted in the server's store, and pods that read them as files (WASI preopened
//! directories) and env values, see a ConfigMap's update in their files, wait while what
//! they need is missing, and a node that cannot receive another node's pods' Secrets.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, QoS};
use wasmfleet_protocol::topic;
use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// Runs kubectl, asserting that it fails; returns what it printed on stderr.
fn kubectl_fails(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args);
    assert!(!out.success, "kubectl {args:?} succeeded: {}", out.stdout);
    out.stderr
}

#[test]
fn kubectl_creates_gets_and_describes_config_maps_and_secrets() {
    let mut cluster = Cluster::start(ClusterOptions { agents: vec![] });
    let file = cluster.dir().join("app.conf");
    fs::write(&file, "level=debug\n").expect("write file");
    let from_file = format!("--from-file={}", file.display());

    let out = cluster.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        &from_file,
    ]);
    assert_eq!(out, "configmap/settings created\n");
    let out = cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret-value",
        "--from-literal=user=admin",
    ]);
    assert_eq!(out, "secret/creds created\n");

    let data = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"app.conf":"level=debug\n","mode":"fast"}"#);
    let password =
        cluster.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password, "czNjcmV0LXZhbHVl"); // base64 of s3cret-value
    let table = cluster.kubectl_ok(&["get", "configmaps,secrets"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r[..3] == ["configmap/settings", "2", r[2]] && r.len() == 3),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.len() == 4 && r[..3] == ["secret/creds", "Opaque", "2"]),
        "{table}"
    );

    // The store file holds the Secret sealed: neither its value nor its base64 is in it.
    let state = fs::read(cluster.dir().join("server/state.redb")).expect("read store");
    for needle in ["s3cret-value", "czNjcmV0LXZhbHVl"] {
        let found = state.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "{needle} in the store file");
    }
    let key = cluster.dir().join("server/secrets-encryption.key");
    let mode = fs::metadata(&key).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A key rotation at a restart reseals every Secret with the new key and drops the old.
    cluster.restart_server_with(&["--rotate-secrets-key"]);
    let keys = fs::read_to_string(&key).expect("key file");
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("key2:"), "{keys}");
    let state = fs::read(cluster.dir().join("server/state.redb")).expect("read store");
    let old_prefix = b"k8s:enc:aesgcm:v1:key1:";
    assert!(!state.windows(old_prefix.len()).any(|w| w == old_prefix));
    let password =
        cluster.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password, "czNjcmV0LXZhbHVl");

    // kubectl describe shows a Secret's sizes, never its values.
    let described = cluster.kubectl_ok(&["describe", "secret", "creds"]);
    assert!(described.contains("password:  12 bytes"), "{described}");
    assert!(!described.contains("s3cret-value"), "{described}");
    let described = cluster.kubectl_ok(&["describe", "configmap", "settings"]);
    assert!(described.contains("level=debug"), "{described}");

    // stringData is folded into data on write and never stored.
    cluster.kubectl_apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\n\
         stringData: {tls.crt: CERT, tls.key: KEY}\n",
    );
    let tls = cluster.kubectl_ok(&["get", "secret", "tls", "-o", "json"]);
    let tls: serde_json::Value = serde_json::from_str(&tls).expect("json");
    assert_eq!(tls["data"]["tls.crt"], "Q0VSVA==");
    assert!(tls.get("stringData").is_none(), "{tls}");

    // Refusals name the field: a bad key, too much data, a change of immutable data.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {a/b: '1'}\n";
    let refused = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(bad));
    assert!(
        refused.stderr.contains("data[a/b]: Invalid value"),
        "{}",
        refused.stderr
    );
    // Request bodies stop at 1 MiB, so only a patch can grow an object past the data limit.
    let half = cluster.dir().join("half");
    fs::write(&half, vec![b'x'; 600 * 1024]).expect("write half");
    let from_half = format!("--from-file={}", half.display());
    cluster.kubectl_ok(&["create", "cm", "large", &from_half]);
    let patch = cluster.dir().join("patch.json");
    let more = serde_json::json!({"data": {"more": "y".repeat(600 * 1024)}});
    fs::write(&patch, more.to_string()).expect("write patch");
    let patch_file = format!("--patch-file={}", patch.display());
    let refused = kubectl_fails(&cluster, &["patch", "cm", "large", &patch_file]);
    assert!(
        refused.contains("data: Too long: may not be more than 1048576 bytes"),
        "{refused}"
    );
    cluster.kubectl_apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: '1'}\n",
    );
    let refused = kubectl_fails(
        &cluster,
        &["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#],
    );
    assert!(
        refused.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{refused}"
    );
    let out = cluster.kubectl_ok(&["label", "cm", "frozen", "tier=gold"]);
    assert_eq!(out, "configmap/frozen labeled\n");
}

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: reader, labels: {app: reader}}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: node-a}
  containers:
    - name: file
      image: exerciser:v1
      args: [cat, /etc/app/app.conf, '200']
      volumeMounts: [{name: conf, mountPath: /etc/app}]
    - name: secret
      image: exerciser:v1
      args: [env, PASSWORD]
      env:
        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - name: listing
      image: exerciser:v1
      args: [ls, /etc/info]
      volumeMounts: [{name: info, mountPath: /etc/info}]
  volumes:
    - {name: conf, configMap: {name: app}}
    - name: info
      projected:
        sources:
          - secret: {name: creds, items: [{key: user, path: user}]}
          - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: waiting}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: exerciser:v1
      args: [env, LEVEL]
      env:
        - {name: LEVEL, valueFrom: {configMapKeyRef: {name: later, key: level}}}
";

fn logs_of(cluster: &Cluster, pod: &str, container: &str) -> String {
    cluster.kubectl(&["logs", pod, "-c", container]).stdout
}

#[test]
fn pods_read_config_maps_and_secrets_as_files_and_env_and_see_updates() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![("node-a".into(), String::new())],
    });
    cluster.push("exerciser", "exerciser:v1");
    cluster.kubectl_apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {app.conf: level=debug}\n",
    );
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret-value",
        "--from-literal=user=admin",
    ]);
    cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(PODS));

    let pod = cluster.wait_pod("reader", "to run its file reader", |p| {
        container_status(p, "file")["state"]["running"].is_object()
    });
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    wait_for("the mounted file and the env value", CONVERGE, || {
        let file = logs_of(&cluster, "reader", "file");
        let secret = logs_of(&cluster, "reader", "secret");
        let listing = logs_of(&cluster, "reader", "listing");
        match (file.as_str(), secret.as_str(), listing.as_str()) {
            ("level=debug\n", "s3cret-value\n", "name\nuser\n") => Ok(()),
            _ => Err(format!(
                "file {file:?}, secret {secret:?}, listing {listing:?}"
            )),
        }
    });

    // A ConfigMap's update reaches the mounted file of the running container.
    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "app",
        "-p",
        r#"{"data":{"app.conf":"level=info"}}"#,
    ]);
    wait_for("the updated file", Duration::from_secs(20), || {
        let file = logs_of(&cluster, "reader", "file");
        match file == "level=debug\nlevel=info\n" {
            true => Ok(()),
            false => Err(file),
        }
    });

    // A missing ConfigMap keeps the container waiting, as Kubernetes says it; it starts
    // once the ConfigMap exists.
    let waiting = cluster.wait_pod("waiting", "to wait for its ConfigMap", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = &container_status(&waiting, "main")["state"]["waiting"]["message"];
    assert_eq!(message, "configmap \"later\" not found");
    cluster.kubectl_ok(&["create", "cm", "later", "--from-literal=level=warn"]);
    cluster.wait_pod("waiting", "to complete", |p| phase(p) == "Succeeded");
    assert_eq!(cluster.kubectl_ok(&["logs", "waiting"]), "warn\n");

    // Another node, with its own credentials, cannot receive node-a's pods (which carry
    // the Secret's values), while the server's identity does: the broker refuses the
    // subscription (the embedded broker) or delivers nothing on it (Mosquitto's MQTT 3.1.1).
    let theirs = topic::down_pod("node-a", "+");
    let server_password = cluster.server_mqtt_password();
    let as_server = ("config-test-server", "wasmfleet-server");
    let server = retained_on(&cluster, as_server, &server_password, &theirs);
    assert!(
        server.leaked,
        "the pod's message, with the Secret, is retained for node-a"
    );
    let password = cluster.allow_node_login("spy");
    // A node logs in under its own name as client id, as agents do.
    let spy = retained_on(&cluster, ("spy", "spy"), &password, &theirs);
    assert!(
        !spy.leaked && spy.received == 0,
        "another node received node-a's pods"
    );
}

/// What a client (client id, user) receives on `filter` within a short bound.
struct Received {
    /// Messages delivered.
    received: usize,
    /// Whether one of them holds the Secret's value.
    leaked: bool,
}

fn retained_on(
    cluster: &Cluster,
    (client_id, user): (&str, &str),
    password: &str,
    filter: &str,
) -> Received {
    let (client, mut connection) =
        wasmfleet_tests::mqtt::connect(cluster.mqtt(), client_id, user, password).expect("connect");
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .expect("subscribe");
    let mut out = Received {
        received: 0,
        leaked: false,
    };
    let mut acked_at = None;
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) => acked_at = Some(Instant::now()),
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                out.received += 1;
                out.leaked |= publish.payload.windows(12).any(|w| w == b"s3cret-value");
            }
            Ok(_) => {}
            Err(err) => panic!("{user}: {err}"),
        }
        // Retained messages follow the SUBACK at once; a second is plenty.
        if acked_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1)) || out.leaked {
            break;
        }
    }
    let _ = client.disconnect();
    out
}
