//! Users and RBAC with the real kubectl: users with client certificates minted by
//! `wasmfleet user kubeconfig`, refused (403 in kube-apiserver's words) until a binding
//! grants them something; a `view` user lists pods but cannot delete them; a group bound
//! by a RoleBinding to a Role; `kubectl auth can-i` (and `--list`) and `whoami` answer for
//! the real user. ServiceAccounts: a `default` one per namespace, pods refused without
//! their account, `kubectl create token` and requests with it; tokens of another audience,
//! expired or of a deleted account refused (401). A user's certificates revoked with
//! `wasmfleet user revoke`: refused at once (on an open connection too) and after a
//! restart, other users unaffected.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use wasmfleet_tests::cluster::{CliOutput, Clients};
use wasmfleet_tests::{Cluster, ClusterOptions};

/// A kubeconfig for `name` in `groups`, minted by the CLI as the admin.
fn user(cluster: &Cluster, name: &str, groups: &[&str]) -> Clients {
    user_in(cluster, name, &format!("{name}.kubeconfig"), groups)
}

/// A kubeconfig for `name` in `groups`, written to `file` in the cluster's directory.
fn user_in(cluster: &Cluster, name: &str, file: &str, groups: &[&str]) -> Clients {
    let path: PathBuf = cluster.dir().join(file);
    let mut args = vec![
        "user",
        "kubeconfig",
        name,
        "-o",
        path.to_str().unwrap_or_default(),
    ];
    for group in groups {
        args.extend(["--group", group]);
    }
    let out = cluster.cli(&args);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    Clients::with_kubeconfig(path)
}

/// `kubectl auth can-i ARGS` as `clients`, waiting (bounded) until it answers `want`: a
/// new binding reaches the authorizer through the informer's cache, a moment later.
fn can_i(clients: &Clients, args: &[&str], want: &str) {
    let mut full = vec!["auth", "can-i"];
    full.extend(args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = clients.kubectl(&full);
        if out.stdout.trim() == want {
            assert_eq!(out.success, want == "yes", "{}", out.stderr);
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "can-i {args:?}: {}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn users_get_what_their_bindings_grant() {
    let cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    cluster.kubectl_ok(&["run", "x", "--image=hello:v1", "--restart=Never"]);
    let alice = user(&cluster, "alice", &[]);
    let bob = user(&cluster, "bob", &["dev"]);

    // Nothing granted yet: authenticated (whoami works), but no pods.
    let refused = alice.kubectl(&["get", "pods"]);
    assert!(!refused.success);
    assert_eq!(
        refused.stderr.trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let whoami = bob.kubectl(&["auth", "whoami"]);
    assert!(whoami.success, "{}", whoami.stderr);
    assert!(
        whoami.stdout.contains("Username    bob"),
        "{}",
        whoami.stdout
    );
    assert!(
        whoami.stdout.contains("[dev system:authenticated]"),
        "{}",
        whoami.stdout
    );

    // `view` in default: list, not delete, not elsewhere.
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    can_i(&alice, &["list", "pods"], "yes");
    can_i(&alice, &["delete", "pods"], "no");
    can_i(&alice, &["list", "pods", "-n", "kube-system"], "no");
    can_i(&alice, &["get", "secrets"], "no");
    let listed = alice.kubectl(&["get", "pods", "-o", "name"]);
    assert_eq!(listed.stdout, "pod/x\n", "{}", listed.stderr);
    let delete = alice.kubectl(&["delete", "pod", "x"]);
    assert!(!delete.success);
    assert_eq!(
        delete.stderr.trim(),
        r#"Error from server (Forbidden): pods "x" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "default""#
    );
    let rules = alice.kubectl(&["auth", "can-i", "--list"]);
    assert!(rules.success, "{}", rules.stderr);
    assert!(
        rules
            .stdout
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{}",
        rules.stdout
    );

    // A group bound by a RoleBinding to a Role: bob (in dev) may delete pods, alice not.
    cluster.kubectl_ok(&[
        "create",
        "role",
        "deleter",
        "--verb=delete",
        "--resource=pods",
    ]);
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "devs-delete",
        "--role=deleter",
        "--group=dev",
    ]);
    can_i(&bob, &["delete", "pods"], "yes");
    can_i(&bob, &["list", "pods"], "no");
    let deleted = bob.kubectl(&["delete", "pod", "x", "--wait=false"]);
    assert!(deleted.success, "{}", deleted.stderr);
    assert_eq!(deleted.stdout, "pod \"x\" deleted\n");

    // The admin is in system:masters, whatever the bindings say.
    assert_eq!(cluster.kubectl_ok(&["auth", "can-i", "*", "*"]), "yes\n");
    let admins = cluster.kubectl_ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    assert!(admins.contains("ClusterRole/cluster-admin"), "{admins}");
    assert!(admins.contains("system:masters"), "{admins}");
}

/// The kubectl output of `args` run with `token` as the bearer token.
fn with_token(cluster: &Cluster, token: &str, args: &[&str]) -> CliOutput {
    let mut full = vec!["--token", token];
    full.extend(args);
    cluster.kubectl(&full)
}

/// An HTTPS client holding one user's certificate (from its kubeconfig) that keeps its
/// connection open between requests, as kubectl's long-lived clients and SDKs do.
fn kept_client(kubeconfig: &std::path::Path) -> reqwest::Client {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let field = |key: &str| {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        base64::engine::general_purpose::STANDARD
            .decode(value.trim().trim_matches('"'))
            .expect("base64")
    };
    let mut identity = field("client-certificate-data:");
    identity.extend(field("client-key-data:"));
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&field("certificate-authority-data:")).expect("CA"),
        )
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}

/// The `SERIAL` column of `wasmfleet user list` rows of `user`, with their `REVOKED` cell.
fn certificates_of(cluster: &Cluster, user: &str) -> Vec<(String, String)> {
    let out = cluster.cli(&["user", "list"]);
    assert!(out.success, "{}", out.stderr);
    out.stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.get(1) == Some(&user))
        .map(|cells| (cells[0].to_owned(), cells[4].to_owned()))
        .collect()
}

#[test]
fn a_revoked_user_certificate_is_refused_at_once_and_after_a_restart() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let alice = user(&cluster, "alice", &[]);
    let laptop = user_in(&cluster, "alice", "alice-laptop.kubeconfig", &[]);
    let bob = user(&cluster, "bob", &[]);
    cluster.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "viewers",
        "--clusterrole=view",
        "--user=alice",
        "--user=bob",
    ]);
    for clients in [&alice, &laptop, &bob] {
        can_i(clients, &["list", "pods"], "yes");
    }
    assert_eq!(certificates_of(&cluster, "alice").len(), 2);

    // A client whose connection stays open across the revocation.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let kept = kept_client(&cluster.dir().join("alice.kubeconfig"));
    let url = format!("{}/api/v1/namespaces/default/pods", cluster.api_url());
    let get = |client: &reqwest::Client| {
        runtime.block_on(async {
            let response = client.get(&url).send().await.expect("request");
            let code = response.status().as_u16();
            (code, response.text().await.unwrap_or_default())
        })
    };
    assert_eq!(get(&kept).0, 200);

    // Every certificate of alice, at once; bob keeps his.
    let revoked = cluster.cli(&["user", "revoke", "alice"]);
    assert!(revoked.success, "{}", revoked.stderr);
    assert_eq!(revoked.stdout.lines().count(), 2, "{}", revoked.stdout);
    assert!(
        revoked
            .stdout
            .lines()
            .all(|l| l.ends_with(r#"of user "alice" revoked"#)),
        "{}",
        revoked.stdout
    );
    let (code, body) = get(&kept);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains(r#"of user \"alice\" was revoked at"#),
        "{body}"
    );
    for clients in [&alice, &laptop] {
        let refused = clients.kubectl(&["get", "pods"]);
        assert!(!refused.success);
        assert!(
            refused
                .stderr
                .contains("You must be logged in to the server")
                && refused.stderr.contains("was revoked at"),
            "{}",
            refused.stderr
        );
    }
    let listed = bob.kubectl(&["get", "pods"]);
    assert!(listed.success, "{}", listed.stderr);
    let alices = certificates_of(&cluster, "alice");
    assert!(alices.iter().all(|(_, at)| at != "<no>"), "{alices:?}");
    assert!(
        certificates_of(&cluster, "bob")
            .iter()
            .all(|(_, at)| at == "<no>")
    );
    let again = cluster.cli(&["user", "revoke", "alice"]);
    assert!(!again.success);
    assert!(
        again.stderr.contains("no certificate left to revoke"),
        "{}",
        again.stderr
    );

    // Still refused after a restart; bob revoked by serial; a new certificate for alice works.
    cluster.restart_server();
    let refused = alice.kubectl(&["get", "pods"]);
    assert!(
        !refused.success && refused.stderr.contains("was revoked at"),
        "{}",
        refused.stderr
    );
    can_i(&bob, &["list", "pods"], "yes");
    let (serial, _) = certificates_of(&cluster, "bob").remove(0);
    let by_serial = cluster.cli(&["user", "revoke", "--serial", &serial.to_uppercase()]);
    assert!(by_serial.success, "{}", by_serial.stderr);
    assert_eq!(
        by_serial.stdout,
        format!("certificate {serial} of user \"bob\" revoked\n")
    );
    assert!(!bob.kubectl(&["get", "pods"]).success);
    let renewed = user_in(&cluster, "alice", "alice-new.kubeconfig", &[]);
    can_i(&renewed, &["list", "pods"], "yes");

    // A serial that is not one is refused by name, and changes nothing.
    let bad = cluster.cli(&["user", "revoke", "--serial", &"a".repeat(41)]);
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("a serial number is 1 to 40 hex digits"),
        "{}",
        bad.stderr
    );
}

#[test]
fn service_accounts_and_their_tokens() {
    let cluster = Cluster::start(ClusterOptions { agents: Vec::new() });

    // Every namespace gets its `default` account; pods run as it unless they name another,
    // which must exist.
    cluster.kubectl_ok(&["create", "namespace", "team"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cluster
        .kubectl(&["get", "serviceaccount", "default", "-n", "team"])
        .success
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no default account in team"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.kubectl_ok(&["run", "p", "--image=hello:v1", "--restart=Never"]);
    let account = cluster.kubectl_ok(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.serviceAccountName}",
    ]);
    assert_eq!(account, "default");
    let refused = cluster.kubectl(&[
        "run",
        "q",
        "--image=hello:v1",
        r#"--overrides={"spec":{"serviceAccountName":"ghost"}}"#,
    ]);
    assert!(!refused.success);
    assert_eq!(
        refused.stderr.trim(),
        r#"Error from server (Forbidden): pods "q" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#
    );

    // `kubectl create token`, then requests with it, as the account.
    cluster.kubectl_ok(&["create", "serviceaccount", "robot"]);
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    let token = cluster.kubectl_ok(&["create", "token", "robot", "--duration", "10m"]);
    let token = token.trim();
    let whoami = with_token(&cluster, token, &["auth", "whoami"]);
    assert!(whoami.success, "{}", whoami.stderr);
    assert!(
        whoami
            .stdout
            .contains("system:serviceaccount:default:robot"),
        "{}",
        whoami.stdout
    );
    assert!(
        whoami.stdout.contains("system:serviceaccounts:default"),
        "{}",
        whoami.stdout
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = with_token(&cluster, token, &["get", "pods", "-o", "name"]);
        if listed.success {
            assert_eq!(listed.stdout, "pod/p\n");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", listed.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    let delete = with_token(&cluster, token, &["delete", "pod", "p"]);
    assert!(
        delete.stderr.contains(
            r#"User "system:serviceaccount:default:robot" cannot delete resource "pods""#
        ),
        "{}",
        delete.stderr
    );

    // Refused with 401: another audience, a token past its expiry (signed with the
    // cluster's own key), and any token of a deleted account.
    let unauthorized = "error: You must be logged in to the server (Unauthorized)";
    let vault = cluster.kubectl_ok(&["create", "token", "robot", "--audience", "vault"]);
    let refused = with_token(&cluster, vault.trim(), &["get", "pods"]);
    assert_eq!(refused.stderr.trim(), unauthorized);
    let expired = expired_token(&cluster, "robot");
    let refused = with_token(&cluster, &expired, &["get", "pods"]);
    assert_eq!(refused.stderr.trim(), unauthorized);
    cluster.kubectl_ok(&["delete", "serviceaccount", "robot"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = with_token(&cluster, token, &["get", "pods"]);
        if refused.stderr.trim() == unauthorized {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", refused.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A token for the account `name` that expired a minute ago, signed (ES256) with the
/// server's own service account key, claims as the server writes them.
fn expired_token(cluster: &Cluster, name: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let uid = cluster.kubectl_ok(&[
        "get",
        "serviceaccount",
        name,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let pkcs8 = std::fs::read(cluster.dir().join("server/service-account.key")).expect("key");
    let rng = ring::rand::SystemRandom::new();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("key");
    let now = jiff::Timestamp::now().as_second();
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let claims = serde_json::json!({
        "iss": issuer, "sub": format!("system:serviceaccount:default:{name}"), "aud": [issuer],
        "iat": now - 660, "nbf": now - 660, "exp": now - 60,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": name, "uid": uid}},
    });
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(&rng, signed.as_bytes()).expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// kubectl as the node `name`, with its node certificate (what the server signed for its
/// tunnel key) as the client certificate.
fn node_client(cluster: &Cluster, name: &str) -> Clients {
    let dir = cluster.agent_dir(name);
    let (cert, key) = (dir.join("node-tunnel.crt"), dir.join("node-tunnel.key"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cert.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no certificate for {name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ca = cluster.dir().join("server/tls/ca.crt");
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cluster.api_url(), "certificate-authority": ca}}],
        "users": [{"name": name, "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
        "current-context": "c",
    });
    let path = cluster.dir().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    Clients::with_kubeconfig(path)
}

/// The cases of the Kubernetes node authorizer e2e test that apply: a node reads its own
/// pods and what they refer to, 403 (not 404) for another node's; it writes no Node, not
/// even its own (it could approve itself); a deleted node's certificate proves nothing.
#[test]
fn nodes_reach_only_their_own_pods() {
    let agents = ["node-a", "node-b"].map(|n| (n.to_owned(), String::new()));
    let mut cluster = Cluster::start(ClusterOptions {
        agents: agents.to_vec(),
    });
    cluster.kubectl_ok(&[
        "run",
        "on-a",
        "--image=hello:v1",
        "--restart=Never",
        r#"--overrides={"spec":{"nodeName":"node-a"}}"#,
    ]);
    let (a, b) = (
        node_client(&cluster, "node-a"),
        node_client(&cluster, "node-b"),
    );
    let whoami = a.kubectl(&["auth", "whoami"]);
    assert!(
        whoami.stdout.contains("system:node:node-a"),
        "{}{}",
        whoami.stdout,
        whoami.stderr
    );
    assert!(whoami.stdout.contains("system:nodes"), "{}", whoami.stdout);

    let own = a.kubectl(&["get", "pod", "on-a", "-o", "name"]);
    assert_eq!(own.stdout, "pod/on-a\n", "{}", own.stderr);
    let forbidden = |out: CliOutput, says: &str| {
        assert!(!out.success, "{}", out.stdout);
        assert_eq!(
            out.stderr.trim(),
            format!("Error from server (Forbidden): {says}")
        );
    };
    forbidden(
        b.kubectl(&["get", "pod", "on-a"]),
        r#"pods "on-a" is forbidden: User "system:node:node-b" cannot get resource "pods" in API group "" in the namespace "default""#,
    );
    forbidden(
        a.kubectl(&["get", "pod", "nowhere"]),
        r#"pods "nowhere" is forbidden: User "system:node:node-a" cannot get resource "pods" in API group "" in the namespace "default""#,
    );
    forbidden(
        a.kubectl(&["get", "pods"]),
        r#"pods is forbidden: User "system:node:node-a" cannot list resource "pods" in API group "" in the namespace "default""#,
    );
    // The account its pod runs as: node-a may read it, node-b (no pod using it) not.
    let account = a.kubectl(&["get", "serviceaccount", "default", "-o", "name"]);
    assert_eq!(
        account.stdout, "serviceaccount/default\n",
        "{}",
        account.stderr
    );
    forbidden(
        b.kubectl(&["get", "serviceaccount", "default"]),
        r#"serviceaccounts "default" is forbidden: User "system:node:node-b" cannot get resource "serviceaccounts" in API group "" in the namespace "default""#,
    );
    // Nodes are read, never written over HTTPS, not even its own.
    let nodes = a.kubectl(&["get", "nodes", "-o", "name"]);
    assert_eq!(
        nodes.stdout, "node/node-a\nnode/node-b\n",
        "{}",
        nodes.stderr
    );
    forbidden(
        a.kubectl(&["label", "node", "node-a", "checked=yes"]),
        r#"nodes "node-a" is forbidden: User "system:node:node-a" cannot patch resource "nodes" in API group "" at the cluster scope"#,
    );
    forbidden(
        b.kubectl(&["label", "node", "node-a", "checked=no"]),
        r#"nodes "node-a" is forbidden: User "system:node:node-b" cannot patch resource "nodes" in API group "" at the cluster scope"#,
    );

    // Deleting the Node unpins its key: its certificate no longer authenticates (401). Its
    // agent is stopped first: a running one joins again at once (with the join token) and
    // pins its key anew.
    cluster.kill_agent("node-b");
    cluster.kubectl_ok(&["delete", "node", "node-b", "--wait=false"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.kubectl(&["auth", "whoami"]);
        if out.stderr.trim() == "error: You must be logged in to the server (Unauthorized)" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
