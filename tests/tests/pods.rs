//! A pod's life on a real cluster: run to completion, fail, restart, run out of memory,
//! be deleted, wait for a missing module, be refused for an unsupported field.

use std::time::{Duration, Instant};

use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::manifests::{limits, pod, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

fn cluster_with_guests() -> Cluster {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");
    cluster.push("exerciser", "exerciser:v1");
    cluster
}

#[test]
fn hello_runs_to_succeeded_and_its_lines_are_in_the_logs() {
    let cluster = cluster_with_guests();
    let env = "      env:\n        - name: GREETING\n          value: hi there\n";
    cluster.apply(&pod_with(
        "hello",
        "hello:v1",
        &["one", "two"],
        "Never",
        env,
    ));

    let done = cluster.wait_pod("hello", "to succeed", |p| phase(p) == "Succeeded");
    let state = &container_status(&done, "main")["state"]["terminated"];
    assert_eq!(state["exitCode"], 0);
    assert_eq!(state["reason"], "Completed");
    assert_eq!(done["spec"]["nodeName"], "node-a");
    assert_eq!(
        cluster.logs("hello"),
        "hello from wasmfleet\none\ntwo\nhi there\n"
    );
}

#[test]
fn a_container_exiting_3_with_restart_policy_never_ends_failed_with_exit_code_3() {
    let cluster = cluster_with_guests();
    cluster.apply(&pod("exit3", "exerciser:v1", &["exit", "3"], "Never"));

    let failed = cluster.wait_pod("exit3", "to fail", |p| phase(p) == "Failed");
    let main = container_status(&failed, "main");
    assert_eq!(main["state"]["terminated"]["exitCode"], 3);
    assert_eq!(main["state"]["terminated"]["reason"], "Error");
    assert_eq!(main["restartCount"], 0);
}

#[test]
fn on_failure_restarts_a_failing_container_with_a_growing_restart_count() {
    let cluster = cluster_with_guests();
    cluster.apply(&pod("crashy", "exerciser:v1", &["exit", "1"], "OnFailure"));

    let restarted = cluster.wait_pod("crashy", "to restart twice", |p| {
        container_status(p, "main")["restartCount"].as_u64() >= Some(2)
    });
    assert_ne!(phase(&restarted), "Succeeded");
    cluster.wait_pod("crashy", "to show CrashLoopBackOff", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let main = container_status(&restarted, "main");
    assert_eq!(main["lastState"]["terminated"]["exitCode"], 1);
    // The count keeps growing: the agent keeps restarting it with back-off.
    cluster.wait_pod("crashy", "to restart again", |p| {
        container_status(p, "main")["restartCount"].as_u64() > main["restartCount"].as_u64()
    });
}

#[test]
fn a_container_allocating_past_its_memory_limit_is_oom_killed() {
    let cluster = cluster_with_guests();
    cluster.apply(&pod_with(
        "hog",
        "exerciser:v1",
        &["alloc", "64"],
        "Never",
        &limits("32Mi", "1"),
    ));

    let killed = cluster.wait_pod("hog", "to be OOMKilled", |p| phase(p) == "Failed");
    let terminated = &container_status(&killed, "main")["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled");
    assert_eq!(terminated["exitCode"], 137);
}

#[test]
fn deleting_a_running_pod_stops_it_on_the_agent() {
    let cluster = cluster_with_guests();
    cluster.apply(&pod(
        "sleeper",
        "exerciser:v1",
        &["print", "100000"],
        "Never",
    ));
    cluster.wait_pod("sleeper", "to run", |p| phase(p) == "Running");
    wait_for("the sleeper to log", CONVERGE, || {
        let logs = cluster.logs("sleeper");
        if logs.contains("line 2") {
            Ok(())
        } else {
            Err(logs)
        }
    });

    let out = cluster.cli(&["delete", "pod", "sleeper"]);
    assert!(out.success, "{}", out.stderr);
    wait_for(
        "the pod to be gone from the API",
        CONVERGE,
        || match cluster.pod("sleeper") {
            None => Ok(()),
            Some(p) => Err(p["metadata"].to_string()),
        },
    );
    // The agent reports the instance stopped in its log; nothing keeps printing.
    let stopped_at = Instant::now();
    wait_for("the agent to stop the pod", Duration::from_secs(10), || {
        let log = cluster.agent_output("node-a");
        if log.contains("stopped pod default/sleeper") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_pod_whose_module_is_unknown_waits_with_a_clear_reason_until_it_is_pushed() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&pod("later", "hello:v9", &[], "Never"));

    let waiting = cluster.wait_pod("later", "to wait for its module", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ErrModuleNotFound"
    });
    let message = container_status(&waiting, "main")["state"]["waiting"]["message"].to_string();
    assert!(message.contains("hello:v9"), "{message}");

    cluster.push("hello", "hello:v9");
    cluster.wait_pod("later", "to run once the module exists", |p| {
        phase(p) == "Succeeded"
    });
}

#[test]
fn a_manifest_with_an_unsupported_field_is_refused_naming_the_field() {
    let cluster = Cluster::start(ClusterOptions::default());
    let manifest = pod_with(
        "ports",
        "hello:v1",
        &[],
        "Never",
        "      ports:\n        - containerPort: 80\n          hostPort: 80\n",
    );
    let out = cluster.cli_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(!out.success);
    assert!(
        out.stderr.contains("spec.containers[0].ports[0].hostPort"),
        "{}",
        out.stderr
    );
    assert!(
        cluster.pod("ports").is_none(),
        "a refused pod must not be stored"
    );

    let invalid = pod("bad", "hello:v1", &[], "Sometimes");
    let out = cluster.cli_with_stdin(&["apply", "-f", "-"], Some(&invalid));
    assert!(!out.success);
    assert!(out.stderr.contains("spec.restartPolicy"), "{}", out.stderr);
}
