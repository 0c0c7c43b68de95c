//! ServiceAccount tokens inside pods and the ServiceAccount admission of every pod (issue
//! 12 §2), with real processes and the real kubectl: a pod's projected token, printed by
//! the pod itself, is the account's identity at the API (`kubectl auth whoami`), is not
//! re-issued when its node is re-planned, and is refused once the pod is gone; a
//! Deployment naming a missing ServiceAccount creates no pods, its ReplicaSet says why
//! (`FailedCreate`, kube-controller-manager's words), and its pods run once the account
//! exists.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use wasmfleet_tests::cluster::{CONVERGE, CliOutput, container_status, phase};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

const READER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  serviceAccountName: robot
  containers:
    - name: main
      image: exerciser:v1
      args: [cat, /var/run/secrets/tokens/api-token, '200']
      volumeMounts: [{name: tokens, mountPath: /var/run/secrets/tokens}]
  volumes:
    - name: tokens
      projected:
        sources:
          - serviceAccountToken: {path: api-token, expirationSeconds: 600}
          - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
";

/// The kubectl output of `args` run with `token` as the bearer token.
fn with_token(cluster: &Cluster, token: &str, args: &[&str]) -> CliOutput {
    let mut full = vec!["--token", token];
    full.extend(args);
    cluster.kubectl(&full)
}

/// The claims of a JWT (not verified: the API does that).
fn claims(token: &str) -> Value {
    let body = token.split('.').nth(1).expect("a JWT");
    let json = URL_SAFE_NO_PAD.decode(body).expect("base64url");
    serde_json::from_slice(&json).expect("claims")
}

#[test]
fn a_pod_reads_its_projected_token_and_is_the_account_at_the_api_until_it_is_gone() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![("node-a".into(), String::new())],
    });
    cluster.push("exerciser", "exerciser:v1");
    cluster.kubectl_ok(&["create", "serviceaccount", "robot"]);
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    cluster.kubectl_apply(READER);

    // The pod prints its token file: one line, the token.
    let token = wait_for("the pod to print its token", CONVERGE, || {
        let printed = cluster.kubectl(&["logs", "reader"]).stdout;
        match printed.lines().collect::<Vec<_>>().as_slice() {
            [token] if token.split('.').count() == 3 => Ok(token.to_string()),
            _ => Err(printed),
        }
    });
    let pod = cluster.pod("reader").expect("the pod");
    let minted = claims(&token);
    assert_eq!(minted["sub"], "system:serviceaccount:default:robot");
    assert_eq!(
        minted["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(minted["kubernetes.io"]["pod"]["name"], "reader");
    assert_eq!(
        minted["kubernetes.io"]["pod"]["uid"],
        pod["metadata"]["uid"]
    );
    let lifetime = minted["exp"].as_i64().zip(minted["iat"].as_i64());
    assert_eq!(lifetime.map(|(exp, iat)| exp - iat), Some(600));

    // The token is the account at the API, with what RBAC grants it.
    let whoami = with_token(&cluster, &token, &["auth", "whoami"]);
    assert!(whoami.success, "{}", whoami.stderr);
    assert!(
        whoami
            .stdout
            .contains("system:serviceaccount:default:robot"),
        "{}",
        whoami.stdout
    );
    wait_for("the token to list pods", Duration::from_secs(10), || {
        let listed = with_token(&cluster, &token, &["get", "pods", "-o", "name"]);
        match listed.success {
            true => Ok(()),
            false => Err(listed.stderr),
        }
    });

    // Re-planning the node (another pod arrives on it) hands out the same token: the
    // reader, which prints the file again whenever it changes, still printed one line.
    cluster.kubectl_ok(&[
        "run",
        "other",
        "--image=exerciser:v1",
        "--restart=Never",
        "--",
        "sleep",
        "100",
    ]);
    cluster.wait_pod("other", "to run beside the reader", |p| {
        container_status(p, "other")["state"]["running"].is_object() || phase(p) == "Succeeded"
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        cluster.kubectl_ok(&["logs", "reader"]),
        format!("{token}\n")
    );

    // Once the pod is gone, its token is refused.
    cluster.kubectl_ok(&["delete", "pod", "reader"]);
    let unauthorized = "error: You must be logged in to the server (Unauthorized)";
    wait_for("the token to be refused", Duration::from_secs(10), || {
        let refused = with_token(&cluster, &token, &["auth", "whoami"]);
        match refused.stderr.trim() == unauthorized {
            true => Ok(()),
            false => Err(format!("{}{}", refused.stdout, refused.stderr)),
        }
    });
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: missing
      containers:
        - {name: main, image: 'exerciser:v1', args: [sleep, '600000']}
";

#[test]
fn a_deployment_naming_a_missing_service_account_runs_once_the_account_exists() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![("node-a".into(), String::new())],
    });
    cluster.push("exerciser", "exerciser:v1");
    cluster.kubectl_apply(DEPLOYMENT);

    // The ReplicaSet is refused its pods, in kube-controller-manager's words.
    let (replica_set, message) = wait_for("a FailedCreate event", CONVERGE, || {
        let listed = cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector=reason=FailedCreate",
            "-o",
            "json",
        ]);
        let events: Value = serde_json::from_str(&listed).map_err(|e| e.to_string())?;
        let event = events["items"].get(0).ok_or(listed.clone())?;
        let name = event["involvedObject"]["name"].as_str().unwrap_or_default();
        assert_eq!(event["involvedObject"]["kind"], "ReplicaSet");
        assert_eq!(event["type"], "Warning");
        Ok((name.to_owned(), event["message"].clone()))
    });
    assert_eq!(
        message,
        format!(
            "Error creating: pods \"{replica_set}-\" is forbidden: error looking up service \
             account default/missing: serviceaccount \"missing\" not found"
        )
    );
    assert_eq!(cluster.kubectl_ok(&["get", "pods", "-o", "name"]), "");
    let described = cluster.kubectl_ok(&["describe", "replicaset", &replica_set]);
    assert!(described.contains("FailedCreate"), "{described}");

    // Created later, the account lets the controller create the pods, which run as it.
    cluster.kubectl_ok(&["create", "serviceaccount", "missing"]);
    wait_for("two running pods", Duration::from_secs(90), || {
        let listed = cluster.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let pods: Value = serde_json::from_str(&listed).map_err(|e| e.to_string())?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let running = items.iter().filter(|p| phase(p) == "Running").count();
        match (items.len(), running) {
            (2, 2) => {
                for pod in &items {
                    assert_eq!(pod["spec"]["serviceAccountName"], "missing");
                }
                Ok(())
            }
            _ => Err(format!("{} pods, {running} running", items.len())),
        }
    });
}
