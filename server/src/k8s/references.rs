//! The objects a pod refers to: the ConfigMaps and Secrets its environment and volumes read
//! and the ServiceAccount it runs as. One home for this rule: the fleet sends a node only the
//! configuration its pods use, and the node authorizer lets a node read only those objects.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};

/// The ServiceAccount a pod without `spec.serviceAccountName` runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What one pod refers to, by name within the pod's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// ConfigMaps read by `env`, `envFrom` or a volume (also inside `projected`).
    pub config_maps: BTreeSet<String>,
    /// Secrets read by `env`, `envFrom`, a volume (also inside `projected`) or named in
    /// `imagePullSecrets`.
    pub secrets: BTreeSet<String>,
    /// The ServiceAccount the pod runs as.
    pub service_account: String,
}

impl References {
    /// Whether the pod refers to the ConfigMap `name`.
    pub fn uses_config_map(&self, name: &str) -> bool {
        self.config_maps.contains(name)
    }

    /// Whether the pod refers to the Secret `name`.
    pub fn uses_secret(&self, name: &str) -> bool {
        self.secrets.contains(name)
    }
}

/// Everything `pod` refers to. Optional references count too: a node may read an object
/// its pod would use if it existed.
pub fn of(pod: &Pod) -> References {
    let mut refs = References {
        service_account: DEFAULT_SERVICE_ACCOUNT.to_string(),
        ..References::default()
    };
    let Some(spec) = &pod.spec else {
        return refs;
    };
    if let Some(account) = spec
        .service_account_name
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        refs.service_account = account.to_string();
    }
    for container in containers(spec) {
        add_container(&mut refs, container);
    }
    for volume in spec.volumes.iter().flatten() {
        add_volume(&mut refs, volume);
    }
    let pull = spec.image_pull_secrets.iter().flatten();
    refs.secrets.extend(pull.filter_map(|s| non_empty(&s.name)));
    refs
}

/// The pod's init and ordinary containers.
fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    let init = spec.init_containers.iter().flatten();
    init.chain(spec.containers.iter())
}

fn add_container(refs: &mut References, container: &Container) {
    for source in container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value_from.as_ref())
    {
        if let Some(key) = &source.config_map_key_ref {
            refs.config_maps.extend(non_empty(&key.name));
        }
        if let Some(key) = &source.secret_key_ref {
            refs.secrets.extend(non_empty(&key.name));
        }
    }
    for source in container.env_from.iter().flatten() {
        if let Some(map) = &source.config_map_ref {
            refs.config_maps.extend(non_empty(&map.name));
        }
        if let Some(secret) = &source.secret_ref {
            refs.secrets.extend(non_empty(&secret.name));
        }
    }
}

fn add_volume(refs: &mut References, volume: &Volume) {
    if let Some(map) = &volume.config_map {
        refs.config_maps.extend(non_empty(&map.name));
    }
    if let Some(secret) = &volume.secret {
        refs.secrets
            .extend(secret.secret_name.iter().filter_map(|name| non_empty(name)));
    }
    let projected = volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten());
    for source in projected {
        if let Some(map) = &source.config_map {
            refs.config_maps.extend(non_empty(&map.name));
        }
        if let Some(secret) = &source.secret {
            refs.secrets.extend(non_empty(&secret.name));
        }
    }
}

fn non_empty(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn env_env_from_volumes_and_projections_are_all_found() {
        let refs = of(&pod(json!({
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "A", "value": "literal"},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                    {"name": "C", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "envFrom": [{"secretRef": {"name": "s-from"}}]
            }],
            "volumes": [
                {"name": "v1", "configMap": {"name": "cm-vol"}},
                {"name": "v2", "secret": {"secretName": "s-vol"}},
                {"name": "v3", "emptyDir": {}},
                {"name": "v4", "projected": {"sources": [
                    {"configMap": {"name": "cm-proj"}},
                    {"secret": {"name": "s-proj"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}}
            ]
        })));
        assert_eq!(
            refs.config_maps,
            set(&["cm-env", "cm-proj", "cm-vol", "init-cm"])
        );
        assert_eq!(
            refs.secrets,
            set(&["pull", "s-env", "s-from", "s-proj", "s-vol"])
        );
        assert_eq!(refs.service_account, "robot");
        assert!(refs.uses_secret("s-vol") && !refs.uses_secret("cm-vol"));
        assert!(refs.uses_config_map("cm-vol"));
    }

    #[test]
    fn a_plain_pod_refers_to_nothing_but_the_default_account() {
        let refs = of(&pod(json!({"containers": [{"name": "c", "image": "m"}]})));
        assert!(refs.config_maps.is_empty() && refs.secrets.is_empty());
        assert_eq!(refs.service_account, DEFAULT_SERVICE_ACCOUNT);
    }
}
