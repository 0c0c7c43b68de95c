//! The API machinery kubectl relies on, against the real server (no agents): Kubernetes pod
//! defaults, complete `Status` objects, the access and subject reviews behind `kubectl auth`,
//! the log options and paged lists.

#![allow(clippy::unwrap_used)]

mod api_support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use api_support::{Server, data_dir};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// What `kubectl run h --image=hello:v1 --restart=Never -o json --dry-run=client` prints.
fn kubectl_run_pod(name: &str) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": null, "labels": {"run": name}},
        "spec": {
            "containers": [{"name": name, "image": "hello:v1", "resources": {}}],
            "restartPolicy": "Never", "dnsPolicy": "ClusterFirst",
        },
        "status": {},
    })
}

#[tokio::test]
async fn pods_from_ordinary_tools_are_accepted_and_defaulted_like_kubernetes() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;

    let (code, pod) = server.post(PODS, &kubectl_run_pod("h")).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    let spec = &pod["spec"];
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        spec["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );

    // What `kubectl get -o json` of it shows goes back in unchanged (a round trip).
    let mut copy = pod.clone();
    copy["metadata"] = json!({"name": "copy"});
    let (code, body) = server.post(PODS, &copy).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    let mut other_scheduler = kubectl_run_pod("mine");
    other_scheduler["spec"]["schedulerName"] = json!("my-scheduler");
    other_scheduler["spec"]["containers"][0]["tty"] = json!(true);
    let (code, status) = server.post(PODS, &other_scheduler).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["spec.containers[0].tty", "spec.schedulerName"]);
    assert_eq!(status["details"]["kind"], "Pod");
    assert_eq!(status["details"]["name"], "mine");

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "hello:latest"}]}}},
    });
    let (code, created) = server
        .post("/apis/apps/v1/namespaces/default/deployments", &deployment)
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let template = &created["spec"]["template"]["spec"];
    assert_eq!(template["dnsPolicy"], "ClusterFirst");
    assert_eq!(template["containers"][0]["imagePullPolicy"], "Always");
    server.stop().await;
}

#[tokio::test]
async fn every_error_status_has_details() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let (code, status) = server
        .get("/apis/apps/v1/namespaces/default/deployments/nope")
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "deployments.apps \"nope\" not found");
    assert_eq!(
        status["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );
    let (code, status) = server.get("/apis/nothing/v1/things").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["details"], json!({}), "{status}");

    server.post(PODS, &kubectl_run_pod("p")).await;
    for (method, sub, says) in [
        (Method::POST, "exec?command=ls", "wasm pods have no exec"),
        (
            Method::POST,
            "exec?command=tar&command=cf",
            "`kubectl cp` needs",
        ),
        (Method::GET, "attach", "wasm pods have no attach"),
        (Method::POST, "portforward", "port-forward is not supported"),
        (
            Method::PATCH,
            "ephemeralcontainers",
            "no ephemeral containers",
        ),
    ] {
        let request = server.request(method, &format!("{PODS}/p/{sub}"));
        let (code, status) = server.send(request.body("{}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{sub}: {status}");
        assert!(
            status["message"].as_str().unwrap().contains(says),
            "{status}"
        );
        assert!(status["details"].is_object(), "{status}");
    }
    server.stop().await;
}

#[tokio::test]
async fn auth_reviews_answer_for_the_authenticated_admin() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "delete", "resource": "pods"}}});
    let (code, answer) = server
        .post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            &review,
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"]["allowed"], true);
    assert_eq!(answer["spec"], review["spec"]);

    let (code, whoami) = server
        .post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{whoami}");
    assert_eq!(whoami["status"]["userInfo"]["username"], "admin");
    assert_eq!(whoami["status"]["userInfo"]["groups"][0], "system:masters");

    let (_, groups) = server.get("/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"authorization.k8s.io"), "{names:?}");
    assert!(names.contains(&"authentication.k8s.io"), "{names:?}");
    let (code, _) = server
        .get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .await;
    assert_eq!(
        code,
        StatusCode::METHOD_NOT_ALLOWED,
        "reviews are never stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn logs_refuse_bad_options_and_wait_for_a_start() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    server.post(PODS, &kubectl_run_pod("p")).await;
    for (query, says) in [
        (
            "",
            "container \"p\" in pod \"p\" is waiting to start: ContainerCreating",
        ),
        (
            "?timestamps=true&sinceSeconds=60",
            "container \"p\" in pod \"p\" is waiting to start: ContainerCreating",
        ),
        ("?sinceSeconds=0", "sinceSeconds: Invalid value: 0"),
        ("?sinceTime=yesterday", "sinceTime: Invalid value"),
        (
            "?sinceSeconds=5&sinceTime=2026-12-07T00:00:00Z",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
        (
            "?previous=true",
            "previous terminated container \"p\" in pod \"p\" not found",
        ),
        ("?tailLines=all", "tailLines: invalid value"),
    ] {
        let (code, status) = server.get(&format!("{PODS}/p/log{query}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {status}");
        assert!(
            status["message"].as_str().unwrap().starts_with(says),
            "{query}: {status}"
        );
    }
    server.stop().await;
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn continue_token(list: &Value) -> String {
    list["metadata"]["continue"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn paged_lists_show_one_snapshot_and_expire_with_410() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    for name in ["p1", "p2", "p3"] {
        server.post(PODS, &kubectl_run_pod(name)).await;
    }
    let (code, first) = server.get(&format!("{PODS}?limit=1")).await;
    assert_eq!(code, StatusCode::OK, "{first}");
    assert_eq!(names(&first), ["p1"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 2);
    let token = continue_token(&first);

    // Changes after the first page do not show in the later ones.
    let delete = server.request(Method::DELETE, &format!("{PODS}/p2"));
    assert_eq!(server.send(delete).await.0, StatusCode::OK);
    server.post(PODS, &kubectl_run_pod("p4")).await;

    let (_, second) = server
        .get(&format!("{PODS}?limit=1&continue={token}"))
        .await;
    assert_eq!(names(&second), ["p2"], "{second}");
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let (_, last) = server
        .get(&format!(
            "{PODS}?limit=5&continue={}",
            continue_token(&second)
        ))
        .await;
    assert_eq!(names(&last), ["p3"], "{last}");
    assert!(last["metadata"].get("continue").is_none(), "{last}");
    let (_, now) = server.get(PODS).await;
    assert_eq!(names(&now), ["p1", "p3", "p4"]);
    let (_, selected) = server
        .get(&format!("{PODS}?limit=1&labelSelector=run"))
        .await;
    assert_eq!(names(&selected), ["p1"]);
    assert!(selected["metadata"]["continue"].is_string(), "{selected}");
    assert!(
        selected["metadata"].get("remainingItemCount").is_none(),
        "not counted under a selector: {selected}"
    );

    // A token of a revision whose snapshot is gone: 410 Expired, as after etcd compaction.
    let mut old: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
    old["rv"] = json!(2);
    let old = URL_SAFE_NO_PAD.encode(old.to_string());
    let (code, status) = server.get(&format!("{PODS}?limit=1&continue={old}")).await;
    assert_eq!(code, StatusCode::GONE, "{status}");
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("continue parameter is too old"),
        "{status}"
    );
    let (code, status) = server
        .get(&format!("/api/v1/nodes?limit=1&continue={token}"))
        .await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "another list's token: {status}"
    );
    server.stop().await;
}
