//! Server-side apply, `kubectl diff`, server dry runs and `kubectl explain`, with the real
//! `kubectl` (v1.32) against the real server (see `api_support`).
//!
//! Needs `kubectl` (and `diff`) on `PATH`; without them the tests fail.

#![allow(clippy::unwrap_used)]

mod api_support;

use api_support::kubectl::{Kubectl, require_kubectl, stderr};
use api_support::{Server, data_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: edge}
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

const ITEM: &str = "/apis/apps/v1/namespaces/default/deployments/web";

async fn live(server: &Server) -> Value {
    let (code, obj) = server.get(ITEM).await;
    assert_eq!(code, StatusCode::OK, "{obj}");
    obj
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
            (text("manager"), text("operation"))
        })
        .collect()
}

fn pair(manager: &str, operation: &str) -> (String, String) {
    (manager.to_owned(), operation.to_owned())
}

/// `apply --server-side`: create, a changed re-apply (a dropped label goes), `scale` then a
/// conflicting apply (409 naming the field and manager, nothing changed), `--force-conflicts`,
/// `--dry-run=server`, and an apply that changes the immutable selector (422).
#[tokio::test]
async fn kubectl_applies_server_side_with_managers_conflicts_and_force() {
    require_kubectl();
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };
    let k = &kubectl;
    let ssa = |file: String| async move { k.ok(&["apply", "--server-side", "-f", &file]).await };

    let out = ssa(kubectl.manifest(DEPLOYMENT)).await;
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let obj = live(&server).await;
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(managers(&obj), [pair("kubectl", "Apply")]);
    let entry = &obj["metadata"]["managedFields"][0];
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert!(
        entry["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{entry}"
    );
    assert_eq!(
        obj["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults still apply"
    );

    let changed = DEPLOYMENT
        .replace("hello:v1", "hello:v2")
        .replace("{app: web, tier: edge}", "{app: web}");
    let out = ssa(kubectl.manifest(&changed)).await;
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let obj = live(&server).await;
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "hello:v2"
    );
    assert_eq!(
        obj["metadata"]["labels"],
        json!({"app": "web"}),
        "a label kubectl applied before and now leaves out is removed"
    );

    kubectl.ok(&["scale", "deploy/web", "--replicas=5"]).await;
    let obj = live(&server).await;
    assert_eq!(
        managers(&obj),
        [pair("kubectl", "Apply"), pair("kubectl", "Update")]
    );
    assert_eq!(obj["metadata"]["managedFields"][1]["subresource"], "scale");
    let three = changed.replace("replicas: 2", "replicas: 3");
    let file = kubectl.manifest(&three);
    let err = kubectl
        .fails(&["apply", "--server-side", "-f", &file])
        .await;
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#
        ),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "kubectl explains: {err}");
    assert_eq!(live(&server).await["spec"]["replicas"], 5);

    let dry = kubectl
        .ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            &file,
        ])
        .await;
    assert_eq!(
        dry.trim(),
        "deployment.apps/web serverside-applied (server dry run)"
    );
    let before = live(&server).await;
    assert_eq!(before["spec"]["replicas"], 5, "a dry run writes nothing");

    kubectl
        .ok(&["apply", "--server-side", "--force-conflicts", "-f", &file])
        .await;
    let obj = live(&server).await;
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(
        managers(&obj),
        [pair("kubectl", "Apply")],
        "the forced field left the scale entry, which owned nothing else"
    );

    let moved = three.replace(
        "matchLabels: {app: web}",
        "matchLabels: {app: web, tier: edge}",
    );
    let moved = moved.replace(
        "labels: {app: web}\n    spec",
        "labels: {app: web, tier: edge}\n    spec",
    );
    let file = kubectl.manifest(&moved);
    let err = kubectl
        .fails(&["apply", "--server-side", "-f", &file])
        .await;
    assert!(
        err.contains("spec.selector: Invalid value") && err.contains("immutable"),
        "{err}"
    );
    assert_eq!(
        live(&server).await["spec"]["selector"],
        obj["spec"]["selector"]
    );
    server.stop().await;
}

/// `kubectl diff`: exit 0 and nothing printed when the file matches, exit 1 and the changed
/// field when it does not, and the object is not touched (a server dry run).
#[tokio::test]
async fn kubectl_diff_shows_the_change_and_writes_nothing() {
    require_kubectl();
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };
    let out = kubectl.apply(DEPLOYMENT).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = live(&server).await;

    let file = kubectl.manifest(DEPLOYMENT);
    let same = kubectl.run(&["diff", "-f", &file]).await;
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    assert!(
        same.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    let file = kubectl.manifest(&DEPLOYMENT.replace("hello:v1", "hello:v2"));
    // The server-side diff applies as `kubectl`, whose fields the client-side apply's
    // manager owns: it has to force, as with kube-apiserver.
    let server_side = ["diff", "--server-side", "--force-conflicts", "-f", &file];
    for args in [&["diff", "-f", &file][..], &server_side] {
        let changed = kubectl.run(args).await;
        let shown = String::from_utf8_lossy(&changed.stdout);
        assert_eq!(
            changed.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&changed)
        );
        let line = |sign: char, image: &str| {
            shown
                .lines()
                .any(|l| l.starts_with(sign) && l.ends_with(&format!("image: {image}")))
        };
        assert!(
            line('-', "hello:v1") && line('+', "hello:v2"),
            "{args:?}: {shown}"
        );
    }
    let after = live(&server).await;
    assert_eq!(after, before, "diff wrote nothing");

    // A new object is a dry-run create.
    let file = kubectl.manifest(&DEPLOYMENT.replace("name: web\n", "name: other\n"));
    let new = kubectl.run(&["diff", "-f", &file]).await;
    let shown = String::from_utf8_lossy(&new.stdout);
    assert_eq!(new.status.code(), Some(1), "{}", stderr(&new));
    assert!(shown.lines().any(|l| l == "+  name: other"), "{shown}");
    let (code, _) = server
        .get("/apis/apps/v1/namespaces/default/deployments/other")
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "diff created nothing");
    server.stop().await;
}

/// One valid object of every served kind, for the dry-run checks.
fn objects() -> Vec<(&'static str, Value)> {
    let meta = |name: &str| json!({"name": name, "labels": {"app": "dry"}});
    let template = json!({
        "metadata": {"labels": {"app": "dry"}},
        "spec": {"containers": [{"name": "c", "image": "hello:v1"}]},
    });
    let mut job_template = template.clone();
    job_template["spec"]["restartPolicy"] = json!("Never");
    let selector = json!({"matchLabels": {"app": "dry"}});
    vec![
        (
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta("dry")}),
        ),
        (
            "/api/v1/nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": meta("dry")}),
        ),
        (
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("dry"),
            "spec": template["spec"]}),
        ),
        (
            "/api/v1/namespaces/default/events",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("dry"),
            "involvedObject": {"kind": "Pod", "name": "dry", "namespace": "default"},
            "reason": "Tested", "message": "a dry run"}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta("dry"), "spec": {"selector": selector, "template": template}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": meta("dry"), "spec": {"replicas": 0, "selector": selector, "template": template}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/daemonsets",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": meta("dry"), "spec": {"selector": selector, "template": template}}),
        ),
        (
            "/apis/batch/v1/namespaces/default/jobs",
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": meta("dry"), "spec": {"suspend": true, "template": job_template}}),
        ),
        (
            "/apis/batch/v1/namespaces/default/cronjobs",
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": meta("dry"), "spec": {"schedule": "0 0 1 1 *", "suspend": true,
                "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
        (
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            json!({"apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget", "metadata": meta("dry"),
            "spec": {"minAvailable": 1, "selector": selector}}),
        ),
    ]
}

/// For every kind: a dry-run apply creates nothing, a real apply creates (201) and
/// re-applies (200), and dry-run merge patches, applies and PUTs answer the change but store
/// nothing.
#[tokio::test]
async fn every_kind_takes_server_side_apply_and_dry_runs_of_every_write() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let apply = |path: String, body: &Value, query: &str| {
        let request = server
            .request(Method::PATCH, &format!("{path}?fieldManager=test{query}"))
            .header("content-type", "application/apply-patch+yaml")
            .body(serde_yaml_ng::to_string(body).unwrap());
        server.send(request)
    };
    for (collection, obj) in objects() {
        let item = format!("{collection}/dry");
        let (code, answer) = apply(item.clone(), &obj, "&dryRun=All").await;
        assert_eq!(code, StatusCode::CREATED, "{item}: {answer}");
        assert_eq!(server.get(&item).await.0, StatusCode::NOT_FOUND, "{item}");

        let (code, created) = apply(item.clone(), &obj, "").await;
        assert_eq!(code, StatusCode::CREATED, "{item}: {created}");
        assert_eq!(created["metadata"]["managedFields"][0]["manager"], "test");
        let (code, again) = apply(item.clone(), &obj, "").await;
        assert_eq!(code, StatusCode::OK, "{item}: {again}");
        let stored = server.get(&item).await.1;

        let labelled = json!({"metadata": {"labels": {"dry": "run"}}});
        let request = server
            .request(Method::PATCH, &format!("{item}?dryRun=All"))
            .header("content-type", "application/merge-patch+json")
            .body(labelled.to_string());
        let (code, answer) = server.send(request).await;
        assert_eq!(code, StatusCode::OK, "{item}: {answer}");
        assert_eq!(answer["metadata"]["labels"]["dry"], "run", "{item}");

        let mut more = obj.clone();
        more["metadata"]["labels"]["dry"] = json!("apply");
        let (code, answer) = apply(item.clone(), &more, "&dryRun=All").await;
        assert_eq!(code, StatusCode::OK, "{item}: {answer}");
        assert_eq!(answer["metadata"]["labels"]["dry"], "apply", "{item}");

        let mut replaced = stored.clone();
        replaced["metadata"]["labels"]["dry"] = json!("put");
        let request = server
            .request(Method::PUT, &format!("{item}?dryRun=All"))
            .json(&replaced);
        let (code, answer) = server.send(request).await;
        assert_eq!(code, StatusCode::OK, "{item}: {answer}");
        assert_eq!(answer["metadata"]["labels"]["dry"], "put", "{item}");

        assert_eq!(server.get(&item).await.1, stored, "{item}: a dry run wrote");
    }
    server.stop().await;
}

/// What the server refuses, by name, and leaves unchanged.
#[tokio::test]
async fn bad_apply_requests_are_refused_with_the_reason() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let send = |query: &str, body: &str| {
        let request = server
            .request(Method::PATCH, &format!("{ITEM}{query}"))
            .header("content-type", "application/apply-patch+yaml")
            .body(body.to_owned());
        server.send(request)
    };
    let (code, status) = send("", DEPLOYMENT).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"].as_str().unwrap().contains("fieldManager"),
        "{status}"
    );
    let (code, status) = send("?fieldManager=t", "spec: [unclosed").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"].as_str().unwrap().contains("YAML"),
        "{status}"
    );
    let (code, status) = send(
        "?fieldManager=t",
        &DEPLOYMENT.replace("kind: Deployment", "kind: Job"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("kind: Invalid value"),
        "{status}"
    );
    let (code, status) = send(
        "?fieldManager=t",
        &DEPLOYMENT.replace("kind: Deployment\n", ""),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("kind: Required value"),
        "{status}"
    );
    let (code, status) = send(
        "?fieldManager=t",
        &DEPLOYMENT.replace("name: web", "name: other"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, _) = send("?fieldManager=t&dryRun=Some", DEPLOYMENT).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        server.get(ITEM).await.0,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    let (code, status) = send(
        "?fieldManager=t",
        &DEPLOYMENT.replace("replicas: 2", "replicas: -1"),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");

    let (code, _) = send("?fieldManager=t", DEPLOYMENT).await;
    assert_eq!(code, StatusCode::CREATED);
    let request = server
        .request(Method::PATCH, &format!("{ITEM}/scale?fieldManager=t"))
        .header("content-type", "application/apply-patch+yaml")
        .body("spec: {replicas: 1}");
    let (code, _) = server.send(request).await;
    assert_eq!(
        code,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "apply on scale is not served"
    );
    let request = server
        .request(Method::PATCH, &format!("{ITEM}?force=true"))
        .header("content-type", "application/merge-patch+json")
        .body("{}");
    let (code, status) = server.send(request).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    server.stop().await;
}

/// `kubectl explain` reads the OpenAPI v3 documents: every kind and the fields asked for,
/// with upstream descriptions.
#[tokio::test]
async fn kubectl_explains_every_kind_and_field() {
    require_kubectl();
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };
    let strategy = kubectl.ok(&["explain", "deployment.spec.strategy"]).await;
    for expected in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "The deployment strategy to use to replace existing pods with new ones.",
        "<RollingUpdateDeployment>",
    ] {
        assert!(
            strategy.contains(expected),
            "{expected:?} missing:\n{strategy}"
        );
    }
    let pod = kubectl.ok(&["explain", "pod"]).await;
    assert!(pod.contains("Pod is a collection of containers"), "{pod}");
    let cron = kubectl.ok(&["explain", "cronjob.spec"]).await;
    let schedule = cron
        .lines()
        .find(|l| l.trim_start().starts_with("schedule"));
    assert!(
        schedule.is_some_and(|l| l.contains("<string> -required-")),
        "{cron}"
    );
    for name in [
        "namespace",
        "node",
        "event",
        "replicaset",
        "daemonset",
        "job",
        "poddisruptionbudget",
    ] {
        let out = kubectl.ok(&["explain", name]).await;
        assert!(
            out.contains("DESCRIPTION:") && out.contains("FIELDS:"),
            "{name}: {out}"
        );
    }
    let out = kubectl.apply(DEPLOYMENT).await;
    assert!(
        out.status.success(),
        "client-side apply still works: {}",
        stderr(&out)
    );
    server.stop().await;
}
