//! The real `kubectl` (v1.32) against the real server: apply, get, an image update, the
//! 422s wasmfleet promises, label, and delete.
//!
//! Needs `kubectl` on `PATH` (the development machines and the CI image have it; scripts/test
//! checks for it up front). Without it the test fails: a skipped check is not a passed one.

#![allow(clippy::unwrap_used)]

mod api_support;

use api_support::kubectl::{Kubectl, stderr};
use api_support::{Server, data_dir};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: hello:latest
    args: ["print", "3"]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
"#;

#[tokio::test]
async fn kubectl_applies_gets_updates_and_deletes_pods() {
    api_support::kubectl::require_kubectl();
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };

    let out = kubectl.apply(POD).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let names = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(names.trim(), "pod/hello");

    let out = kubectl
        .apply(&POD.replace("hello:latest", "hello:v2"))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let image = kubectl
        .ok(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "hello:v2");

    let out = kubectl
        .apply(&POD.replace(r#"["print", "3"]"#, r#"["exit", "1"]"#))
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));

    let ported = POD.replace("name: hello\n", "name: ported\n").replace(
        "    args:",
        "    ports: [{containerPort: 80, hostPort: 80}]\n    args:",
    );
    let out = kubectl.apply(&ported).await;
    assert!(
        stderr(&out).contains("spec.containers[0].ports[0].hostPort: Unsupported value"),
        "{}",
        stderr(&out)
    );

    kubectl.ok(&["label", "pod", "hello", "tier=edge"]).await;
    let labelled = kubectl
        .ok(&["get", "pods", "-l", "tier=edge", "-o", "name"])
        .await;
    assert_eq!(labelled.trim(), "pod/hello");

    let missing = kubectl.fails(&["get", "pod", "nope"]).await;
    assert!(missing.contains("NotFound"), "{missing}");

    kubectl.ok(&["delete", "pod", "hello"]).await;
    let names = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(names.trim(), "");
    server.stop().await;
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: hello:v1
"#;

/// The apps/v1 kinds through the kind registry: discovery (`api-resources`, short names),
/// apply with server-side validation, the server's Table columns, `scale` through the
/// `scale` subresource, and the 422s naming the field.
#[tokio::test]
async fn kubectl_discovers_applies_scales_and_validates_deployments() {
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };

    let resources = kubectl.ok(&["api-resources", "--no-headers"]).await;
    for (name, short, version, kind) in [
        ("deployments", "deploy", "apps/v1", "Deployment"),
        ("replicasets", "rs", "apps/v1", "ReplicaSet"),
        ("pods", "po", "v1", "Pod"),
        ("nodes", "no", "v1", "Node"),
        ("namespaces", "ns", "v1", "Namespace"),
    ] {
        let row = resources
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from api-resources:\n{resources}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..4], [short, version, cells[3]], "{row}");
        assert_eq!(cells.last(), Some(&kind), "{row}");
    }

    let out = kubectl.apply(DEPLOYMENT).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = kubectl.ok(&["get", "deploy", "-o", "wide"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    // No agent: the pods are created but none is ever ready or available (UP-TO-DATE
    // depends on how far the controllers got).
    assert_eq!(row[..2], ["web", "0/2"]);
    assert_eq!(row[3], "0");
    assert_eq!(row[5..], ["web", "hello:v1", "app=web"]);

    kubectl
        .ok(&["scale", "deployment/web", "--replicas=5"])
        .await;
    let replicas = kubectl
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas, "5");
    let strategy = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.strategy.rollingUpdate.maxSurge}",
        ])
        .await;
    assert_eq!(strategy, "25%");

    let mismatched = DEPLOYMENT
        .replace("name: web\nspec", "name: bad\nspec")
        .replace("labels: {app: web}", "labels: {app: api}");
    let out = kubectl.apply(&mismatched).await;
    assert!(
        stderr(&out).contains("spec.template.metadata.labels: Invalid value"),
        "{}",
        stderr(&out)
    );
    let negative = DEPLOYMENT
        .replace("name: web\nspec", "name: neg\nspec")
        .replace("replicas: 2", "replicas: -1");
    let out = kubectl.apply(&negative).await;
    assert!(stderr(&out).contains("spec.replicas"), "{}", stderr(&out));
    let scaled_down = kubectl
        .fails(&["scale", "deploy/web", "--replicas=-1"])
        .await;
    assert!(!scaled_down.is_empty());
    let moved = DEPLOYMENT
        .replace(
            "matchLabels: {app: web}",
            "matchLabels: {app: web, tier: edge}",
        )
        .replace(
            "labels: {app: web}\n    spec",
            "labels: {app: web, tier: edge}\n    spec",
        );
    let out = kubectl.apply(&moved).await;
    assert!(
        stderr(&out).contains("spec.selector: Invalid value") && stderr(&out).contains("immutable"),
        "{}",
        stderr(&out)
    );
    let names = kubectl.ok(&["get", "deploy", "-o", "name"]).await;
    assert_eq!(names.trim(), "deployment.apps/web");
    kubectl.ok(&["delete", "deploy", "web"]).await;
    server.stop().await;
}
