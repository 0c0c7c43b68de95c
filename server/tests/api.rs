//! The HTTPS API end to end: the real server (`run`) in-process on port 0 with a temp data
//! directory, spoken to over TLS with the CA and token from the kubeconfig it writes.

#![allow(clippy::unwrap_used)]

mod api_support;

use std::time::Duration;

use api_support::{Server, data_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "hello:latest", "args": ["print", "1"]}]},
    })
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn requests_without_the_admin_token_are_unauthorized() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let anonymous = server.client.get(format!("{}{PODS}", server.base));
    let (status, body) = server.send(anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["kind"], "Status");
    let wrong = server
        .client
        .get(format!("{}/version", server.base))
        .bearer_auth("not-the-token");
    assert_eq!(server.send(wrong).await.0, StatusCode::UNAUTHORIZED);
    let (status, version) = server.get("/version").await;
    assert_eq!(
        (status, version["minor"].as_str()),
        (StatusCode::OK, Some("32"))
    );
    server.stop().await;
}

#[tokio::test]
async fn pods_are_created_read_listed_patched_replaced_and_deleted() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;

    let (status, created) = server.post(PODS, &pod("web", json!({"app": "web"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(created["status"]["phase"], "Pending");
    assert!(created["metadata"]["uid"].as_str().is_some());

    let (status, duplicate) = server.post(PODS, &pod("web", json!({}))).await;
    assert_eq!(
        (status, duplicate["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );

    let (status, got) = server.get(&format!("{PODS}/web")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);

    let (status, list) = server.get("/api/v1/pods").await;
    assert_eq!(
        (status, list["kind"].as_str()),
        (StatusCode::OK, Some("PodList"))
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());

    let (status, patched) = server
        .merge_patch(
            &format!("{PODS}/web"),
            &json!({"metadata": {"labels": {"tier": "edge"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"app": "web", "tier": "edge"})
    );

    let mut stale = created.clone();
    stale["spec"]["containers"][0]["image"] = json!("hello:v2");
    let put = server
        .request(reqwest::Method::PUT, &format!("{PODS}/web"))
        .json(&stale);
    let (status, conflict) = server.send(put).await;
    assert_eq!(
        (status, conflict["reason"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );

    let (_, current) = server.get(&format!("{PODS}/web")).await;
    let mut changed_args = current.clone();
    changed_args["spec"]["containers"][0]["args"] = json!(["exit", "1"]);
    let put = server
        .request(reqwest::Method::PUT, &format!("{PODS}/web"))
        .json(&changed_args);
    assert_eq!(server.send(put).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    let smp = server
        .request(reqwest::Method::PATCH, &format!("{PODS}/web"))
        .header("content-type", "application/strategic-merge-patch+json")
        .body(
            json!({"spec": {"$setElementOrder/containers": [{"name": "main"}],
                   "containers": [{"name": "main", "image": "hello:v2"}]}})
            .to_string(),
        );
    let (status, new_image) = server.send(smp).await;
    assert_eq!(status, StatusCode::OK, "{new_image}");
    assert_eq!(new_image["spec"]["containers"][0]["image"], "hello:v2");
    assert_eq!(
        new_image["spec"]["containers"][0]["args"],
        json!(["print", "1"])
    );

    let delete = server.request(reqwest::Method::DELETE, &format!("{PODS}/web"));
    assert_eq!(server.send(delete).await.0, StatusCode::OK);
    let (status, missing) = server.get(&format!("{PODS}/web")).await;
    assert_eq!(
        (status, missing["reason"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_statuses_that_say_why() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;

    let mut ported = pod("web", json!({}));
    ported["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}]);
    let (status, invalid) = server.post(PODS, &ported).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        invalid["details"]["causes"][0]["field"],
        "spec.containers[0].ports[0].hostPort"
    );
    assert!(
        invalid["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers[0].ports[0].hostPort")
    );

    let huge = json!({"metadata": {"name": "big", "annotations": {"a": "x".repeat(2 << 20)}}});
    let (status, _) = server.post(PODS, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let protobuf = server
        .request(reqwest::Method::POST, PODS)
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(b"k8s\0".to_vec());
    assert_eq!(
        server.send(protobuf).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let (status, _) = server
        .post("/api/v1/namespaces/nope/pods", &pod("web", json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let wrong_method = server.request(reqwest::Method::DELETE, "/api/v1/pods");
    assert_eq!(
        server.send(wrong_method).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    server.stop().await;
}

#[tokio::test]
async fn selectors_filter_lists() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        let (status, _) = server.post(PODS, &pod(name, json!({"app": app}))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let names = |list: Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, web) = server.get(&format!("{PODS}?labelSelector=app%3Dweb")).await;
    assert_eq!(names(web), ["a", "b"]);
    let (_, not_web) = server
        .get(&format!("{PODS}?labelSelector=app!%3Dweb,app"))
        .await;
    assert_eq!(names(not_web), ["c"]);
    let (_, by_name) = server
        .get("/api/v1/pods?fieldSelector=metadata.name%3Db")
        .await;
    assert_eq!(names(by_name), ["b"]);
    let (_, unbound) = server
        .get("/api/v1/pods?fieldSelector=spec.nodeName%3D")
        .await;
    assert_eq!(names(unbound).len(), 3);
    let (status, _) = server
        .get("/api/v1/pods?fieldSelector=spec.image%3Dx")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_later_events() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    server.post(PODS, &pod("before", json!({}))).await;
    let (_, list) = server.get(PODS).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut response = server
        .request(
            reqwest::Method::GET,
            &format!("{PODS}?watch=true&resourceVersion={rv}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.post(PODS, &pod("after", json!({}))).await;
    let delete = server.request(reqwest::Method::DELETE, &format!("{PODS}/after"));
    server.send(delete).await;

    let mut seen = Vec::new();
    let mut buffer = String::new();
    while !seen.contains(&("DELETED".to_owned(), "after".to_owned())) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("no watch event")
            .unwrap()
            .expect("the watch ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some((line, rest)) = buffer.split_once('\n') {
            let event: Value = serde_json::from_str(line).unwrap();
            let name = event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned();
            seen.push((event["type"].as_str().unwrap().to_owned(), name));
            buffer = rest.to_owned();
        }
    }
    assert_eq!(seen[0], ("ADDED".to_owned(), "after".to_owned()));
    // Replay starts after the listed revision: no ADDED for what the list already had.
    assert!(!seen.contains(&("ADDED".to_owned(), "before".to_owned())));

    let from_scratch = server
        .request(
            reqwest::Method::GET,
            &format!("{PODS}?watch=true&resourceVersion=0&timeoutSeconds=1"),
        )
        .send()
        .await
        .unwrap();
    let text = from_scratch.text().await.unwrap();
    assert!(text.contains(r#""name":"before""#), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart_on_the_same_data_dir() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let (_, created) = server.post(PODS, &pod("keep", json!({}))).await;
    let token = server.token.clone();
    server.stop().await;

    let server = Server::start(&path).await;
    assert_eq!(server.token, token, "the admin token is reloaded");
    let (status, kept) = server.get(&format!("{PODS}/keep")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept["metadata"]["uid"], created["metadata"]["uid"]);
    let (status, namespaces) = server.get("/api/v1/namespaces").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = namespaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ns| ns["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-system"],
        "built-in namespaces, not doubled"
    );
    server.stop().await;
}

#[tokio::test]
async fn modules_are_pushed_and_listed() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    let push = |body: &'static [u8], content_type: &str| {
        server
            .request(
                reqwest::Method::PUT,
                "/apis/wasmfleet.dev/v1/modules/hello/tags/v1",
            )
            .header("content-type", content_type)
            .body(body)
    };
    let (status, module) = server
        .send(push(b"\0asm\x01\0\0\0", "application/wasm"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{module}");
    assert_eq!(module["kind"], "Module");
    assert!(module["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(module["size"], 8);

    let (status, _) = server.send(push(b"not wasm", "application/wasm")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = server.send(push(b"\0asm", "text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, list) = server.get("/apis/wasmfleet.dev/v1/modules").await;
    assert_eq!(
        (status, list["kind"].as_str()),
        (StatusCode::OK, Some("ModuleList"))
    );
    assert_eq!(list["items"][0]["name"], "hello");
    assert_eq!(list["items"][0]["digest"], module["digest"]);
    server.stop().await;
}

#[tokio::test]
async fn logs_of_an_unscheduled_pod_are_a_clear_error() {
    let (_dir, path) = data_dir();
    let server = Server::start(&path).await;
    server.post(PODS, &pod("web", json!({}))).await;
    let (status, body) = server.get(&format!("{PODS}/web/log")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("not scheduled"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_gets_a_410_error_event() {
    let (_dir, path) = data_dir();
    let server = Server::start_with(&path, |config| config.event_retention = 5).await;
    for i in 0..20 {
        let (status, _) = server.post(PODS, &pod(&format!("p{i}"), json!({}))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let response = server
        .request(
            reqwest::Method::GET,
            &format!("{PODS}?watch=true&resourceVersion=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the expired watch did not end")
        .unwrap();
    let event: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    server.stop().await;
}
