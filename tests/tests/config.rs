//! Configuration for pods (issue 12 §1) with real processes and the real kubectl:
//! ConfigMaps and Secrets as kubectl creates, lists and describes them, and Secrets kept
//! encrypted in the server's store.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use wasmfleet_tests::{Cluster, ClusterOptions};

/// Runs kubectl, asserting that it fails; returns what it printed on stderr.
fn kubectl_fails(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args);
    assert!(!out.success, "kubectl {args:?} succeeded: {}", out.stdout);
    out.stderr
}

#[test]
fn kubectl_creates_gets_and_describes_config_maps_and_secrets() {
    let cluster = Cluster::start(ClusterOptions { agents: vec![] });
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
