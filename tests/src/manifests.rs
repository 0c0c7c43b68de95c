//! Pod manifests for the end-to-end tests, written as a user would write them.

/// A pod that never restarts, with `containers` (a YAML list indented by 2 spaces).
pub fn pod_of(name: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
{containers}"
    )
}

/// A one-container pod running `image` with `args`.
pub fn pod(name: &str, image: &str, args: &[&str], restart_policy: &str) -> String {
    pod_with(name, image, args, restart_policy, "")
}

/// A one-container pod with extra container-level YAML (indented by 6 spaces), such as
/// `resources:` or `env:`.
pub fn pod_with(
    name: &str,
    image: &str,
    args: &[&str],
    restart_policy: &str,
    container_extra: &str,
) -> String {
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    test: e2e
spec:
  restartPolicy: {restart_policy}
  containers:
    - name: main
      image: {image}
      args: [{args}]
{container_extra}"
    )
}

/// Container YAML that sets memory and cpu limits.
pub fn limits(memory: &str, cpu: &str) -> String {
    format!("      resources:\n        limits:\n          memory: {memory}\n          cpu: {cpu}\n")
}

/// A one-container pod with extra labels and, when `node` is set, a node selector on the
/// node's `kubernetes.io/hostname`.
pub fn pod_labelled(
    name: &str,
    labels: &[(&str, &str)],
    node: Option<&str>,
    image: &str,
    args: &[&str],
    restart_policy: &str,
) -> String {
    let mut manifest = pod(name, image, args, restart_policy);
    let extra: String = labels
        .iter()
        .map(|(key, value)| format!("    {key}: \"{value}\"\n"))
        .collect();
    manifest = manifest.replacen("    test: e2e\n", &format!("    test: e2e\n{extra}"), 1);
    if let Some(node) = node {
        manifest = manifest.replacen(
            "spec:\n",
            &format!("spec:\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n"),
            1,
        );
    }
    manifest
}
