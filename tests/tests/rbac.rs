//! Users and RBAC with the real kubectl: users with client certificates minted by
//! `wasmfleet user kubeconfig`, refused (403 in kube-apiserver's words) until a binding
//! grants them something; a `view` user lists pods but cannot delete them; a group bound
//! by a RoleBinding to a Role; `kubectl auth can-i` (and `--list`) and `whoami` answer for
//! the real user.

use std::path::PathBuf;
use std::time::Duration;

use wasmfleet_tests::cluster::Clients;
use wasmfleet_tests::{Cluster, ClusterOptions};

/// A kubeconfig for `name` in `groups`, minted by the CLI as the admin.
fn user(cluster: &Cluster, name: &str, groups: &[&str]) -> Clients {
    let path: PathBuf = cluster.dir().join(format!("{name}.kubeconfig"));
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
