//! Pod manifests for the end-to-end tests, written as a user would write them.

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
