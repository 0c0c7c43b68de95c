//! A pod's configuration resolved for its node (pure): `env[].valueFrom` and `envFrom` into
//! literal values, and its `configMap`, `secret`, `downwardAPI`, `projected` and `emptyDir`
//! volumes into the files (or empty directories) its containers mount. The node receives
//! ConfigMaps and Secrets only this way, inside the pods bound to it that use them
//! (`k8s::references` names which ones a pod uses). A projected `serviceAccountToken` is a
//! file too: the token a [`TokenSource`] issues for the pod (`identity::pod_tokens`).
//!
//! What is missing and not `optional` (a ConfigMap, a Secret, a key) keeps the containers
//! that need it from starting: [`Missing`] carries Kubernetes' message, and the pod waits
//! with `CreateContainerConfigError` until the object appears.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, EnvVar, KeyToPath, ObjectFieldSelector, Pod,
    ServiceAccountTokenProjection, Volume,
};
use wasmfleet_protocol::pod::PodConfig;
use wasmfleet_protocol::pod::volumes::{
    HostPath, Mount, SizeLimit, Volume as WireVolume, VolumeFile, VolumeSource,
};
use wasmfleet_protocol::quantity;

use crate::identity::pod_tokens::TokenProjection;

/// The `emptyDir` medium kept in memory (on a tmpfs of the node).
const MEMORY: &str = "Memory";

/// The pod's memory limit, as Kubernetes counts a memory-backed `emptyDir` against it: the
/// sum of its containers' `limits.memory` when every one has a limit (else the node's
/// memory bounds it, which the agent does not measure: no limit), with its quantity as
/// written when one container sets it all.
fn pod_memory_limit(containers: &[Container]) -> Option<(u64, String)> {
    let limits: Option<Vec<&str>> = containers
        .iter()
        .map(|c| {
            let limits = c.resources.as_ref()?.limits.as_ref()?;
            limits.get("memory").map(|q| q.0.as_str())
        })
        .collect();
    let limits = limits?;
    let bytes = limits.iter().try_fold(0u64, |sum, q| {
        sum.checked_add(quantity::memory_bytes(q).ok()?)
    })?;
    match limits.as_slice() {
        [one] => Some((bytes, (*one).to_owned())),
        _ => Some((bytes, quantity::format_memory(bytes))),
    }
}

/// The waiting reason of a container whose configuration is missing.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// The permission bits of a volume file when the pod names none (Kubernetes' 0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// Looks up a ConfigMap's or Secret's data in the pod's namespace: `("configmaps", name)`
/// or `("secrets", name)` → key → bytes (a Secret's already decoded); `None` when the
/// object does not exist.
pub type Lookup<'a> = dyn Fn(&str, &str) -> Option<BTreeMap<String, Vec<u8>>> + 'a;

/// Like [`Lookup`] in any namespace: `(resource, namespace, name)`.
pub type NamespacedLookup<'a> = dyn Fn(&str, &str, &str) -> Option<BTreeMap<String, Vec<u8>>> + 'a;

/// Issues the ServiceAccount token a projected volume asks for: the token, or why there is
/// none (the message the containers that mount it wait with).
pub type TokenSource<'a> = dyn Fn(&TokenProjection) -> Result<String, String> + 'a;

/// Where a pod's configuration comes from, in any namespace.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// ConfigMaps' and Secrets' data.
    pub objects: &'a NamespacedLookup<'a>,
    /// ServiceAccount tokens.
    pub tokens: &'a TokenSource<'a>,
}

/// A container that cannot start for want of configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The container.
    pub container: String,
    /// What is missing, as Kubernetes says it (`configmap "app" not found`).
    pub message: String,
}

/// What a pod's node is sent besides its containers' literal fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Each container's environment, by container name, in order.
    pub env: BTreeMap<String, Vec<(String, String)>>,
    /// Its volumes and mounts.
    pub config: PodConfig,
}

/// Resolves `pod`'s environment and volumes, or names the containers that cannot start;
/// `lookup` finds ConfigMaps and Secrets in the pod's namespace, `tokens` issues tokens.
pub fn resolve(
    pod: &Pod,
    lookup: &Lookup<'_>,
    tokens: &TokenSource<'_>,
) -> Result<Resolved, Vec<Missing>> {
    let mut resolved = Resolved::default();
    let mut missing = Vec::new();
    let Some(spec) = &pod.spec else {
        return Ok(resolved);
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for container in &spec.containers {
        match env(pod, namespace, container, lookup) {
            Ok(env) => {
                resolved.env.insert(container.name.clone(), env);
            }
            Err(message) => missing.push(Missing {
                container: container.name.clone(),
                message,
            }),
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(empty_dir) = &volume.empty_dir {
            let in_memory = empty_dir.medium.as_deref() == Some(MEMORY);
            if in_memory {
                resolved.config.memory_volumes.push(volume.name.clone());
            }
            let limits = [
                empty_dir.size_limit.as_ref().and_then(|limit| {
                    let bytes = quantity::memory_bytes(&limit.0).ok()?;
                    Some((bytes, limit.0.clone()))
                }),
                in_memory
                    .then(|| pod_memory_limit(&spec.containers))
                    .flatten(),
            ];
            if let Some((bytes, quantity)) = limits.into_iter().flatten().min_by_key(|l| l.0) {
                resolved.config.size_limits.push(SizeLimit {
                    volume: volume.name.clone(),
                    bytes,
                    quantity,
                });
            }
        }
        match volume_source(pod, namespace, volume, (lookup, tokens)) {
            Ok(source) => resolved.config.volumes.push(WireVolume {
                name: volume.name.clone(),
                source,
            }),
            Err(message) => {
                let users = spec.containers.iter().filter(|c| mounts(c, &volume.name));
                missing.extend(users.map(|c| Missing {
                    container: c.name.clone(),
                    message: message.clone(),
                }));
            }
        }
    }
    resolved.config.mounts =
        spec.containers
            .iter()
            .flat_map(|c| c.volume_mounts.iter().flatten().map(move |m| (c, m)))
            .map(|(container, mount)| {
                let files =
                    resolved.config.volumes.iter().any(|v| {
                        v.name == mount.name && matches!(v.source, VolumeSource::Files(_))
                    });
                Mount {
                    container: container.name.clone(),
                    volume: mount.name.clone(),
                    mount_path: mount.mount_path.clone(),
                    sub_path: mount.sub_path.clone().unwrap_or_default(),
                    // Files the server projects are read-only, as in Kubernetes.
                    read_only: files || mount.read_only == Some(true),
                }
            })
            .collect();
    match missing.is_empty() {
        true => Ok(resolved),
        false => Err(missing),
    }
}

fn mounts(container: &Container, volume: &str) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == volume)
}

/// The container's environment: `envFrom` first, then `env` (which overrides it).
fn env(
    pod: &Pod,
    namespace: &str,
    container: &Container,
    lookup: &Lookup<'_>,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| match vars.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => vars.push((name, value)),
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (resource, name, optional) = match (&source.config_map_ref, &source.secret_ref) {
            (Some(map), _) => ("configmaps", map.name.as_str(), map.optional),
            (None, Some(secret)) => ("secrets", secret.name.as_str(), secret.optional),
            (None, None) => continue,
        };
        match lookup(resource, name) {
            Some(data) => {
                for (key, value) in data {
                    set(format!("{prefix}{key}"), text(value));
                }
            }
            None if optional == Some(true) => {}
            None => return Err(not_found(resource, name)),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(pod, namespace, var, lookup)? {
            set(var.name.clone(), value);
        }
    }
    Ok(vars)
}

/// One `env` entry's value; `None` for an optional reference that is missing.
fn env_value(
    pod: &Pod,
    namespace: &str,
    var: &EnvVar,
    lookup: &Lookup<'_>,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    let key_ref = match (&from.config_map_key_ref, &from.secret_key_ref) {
        (Some(k), _) => Some(("configmaps", &k.name, &k.key, k.optional)),
        (None, Some(k)) => Some(("secrets", &k.name, &k.key, k.optional)),
        (None, None) => None,
    };
    if let Some((resource, name, key, optional)) = key_ref {
        let optional = optional == Some(true);
        return match lookup(resource, name) {
            None if optional => Ok(None),
            None => Err(not_found(resource, name)),
            Some(mut data) => match data.remove(key) {
                Some(value) => Ok(Some(text(value))),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {key} in {} {namespace}/{name}",
                    kind_name(resource)
                )),
            },
        };
    }
    match &from.field_ref {
        Some(field) => Ok(Some(field_value(pod, field).unwrap_or_default())),
        None => Ok(Some(String::new())),
    }
}

/// The downward API's value of `field` (admission allows only the paths handled here).
fn field_value(pod: &Pod, field: &ObjectFieldSelector) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let keyed = |prefix: &str| {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        rest.strip_suffix("']").map(str::to_owned)
    };
    let map_lines = |map: Option<&BTreeMap<String, String>>| {
        let lines = map.into_iter().flatten();
        lines
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone()?,
        "metadata.labels" => map_lines(meta.labels.as_ref()),
        "metadata.annotations" => map_lines(meta.annotations.as_ref()),
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| crate::k8s::references::DEFAULT_SERVICE_ACCOUNT.into()),
        "status.podIP" => pod.status.as_ref()?.pod_ip.clone()?,
        _ => {
            if let Some(key) = keyed("metadata.labels") {
                meta.labels.as_ref()?.get(&key)?.clone()
            } else if let Some(key) = keyed("metadata.annotations") {
                meta.annotations.as_ref()?.get(&key)?.clone()
            } else {
                return None;
            }
        }
    })
}

fn volume_source(
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    (lookup, tokens): (&Lookup<'_>, &TokenSource<'_>),
) -> Result<VolumeSource, String> {
    let mut files = Vec::new();
    let keyed = |source: Keyed<'_>, mode: u32, files: &mut Vec<VolumeFile>| {
        source.files(mode, namespace, lookup, files)
    };
    if let Some(map) = &volume.config_map {
        keyed(
            Keyed::config_map(&map.name, &map.items, map.optional),
            mode_of(map.default_mode),
            &mut files,
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or("");
        let source = Keyed::secret(name, &secret.items, secret.optional);
        keyed(source, mode_of(secret.default_mode), &mut files)?;
    } else if let Some(downward) = &volume.downward_api {
        let mode = mode_of(downward.default_mode);
        downward_files(pod, downward.items.iter().flatten(), mode, &mut files);
    } else if let Some(projected) = &volume.projected {
        let mode = mode_of(projected.default_mode);
        for source in projected.sources.iter().flatten() {
            if let Some(map) = &source.config_map {
                keyed(
                    Keyed::config_map(&map.name, &map.items, map.optional),
                    mode,
                    &mut files,
                )?;
            }
            if let Some(secret) = &source.secret {
                keyed(
                    Keyed::secret(&secret.name, &secret.items, secret.optional),
                    mode,
                    &mut files,
                )?;
            }
            if let Some(downward) = &source.downward_api {
                downward_files(pod, downward.items.iter().flatten(), mode, &mut files);
            }
            if let Some(token) = &source.service_account_token {
                let projection = token_projection(pod, namespace, &volume.name, token);
                files.push(VolumeFile {
                    path: token.path.clone(),
                    mode,
                    data: tokens(&projection)?.into_bytes(),
                });
            }
        }
    } else if let Some(host_path) = &volume.host_path {
        return Ok(VolumeSource::HostPath(HostPath {
            path: host_path.path.clone(),
            must_be_directory: host_path.type_.as_deref() == Some("Directory"),
        }));
    } else {
        // `emptyDir` (admission refuses every other type).
        return Ok(VolumeSource::EmptyDir);
    }
    Ok(VolumeSource::Files(files))
}

/// The token `source` asks for in `volume` of `pod`.
fn token_projection(
    pod: &Pod,
    namespace: &str,
    volume: &str,
    source: &ServiceAccountTokenProjection,
) -> TokenProjection {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let node = spec
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let account = spec
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or(crate::k8s::references::DEFAULT_SERVICE_ACCOUNT);
    let name = meta.name.as_deref().unwrap_or_default();
    let uid = meta.uid.as_deref().unwrap_or_default();
    TokenProjection::new((namespace, name, uid), (node, account, volume), source)
}

fn mode_of(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(DEFAULT_MODE, |m| m & 0o777)
}

/// A ConfigMap or Secret a volume takes files from.
struct Keyed<'a> {
    resource: &'static str,
    name: &'a str,
    /// The keys chosen, with their paths; `None`: every key, named after it.
    items: Option<&'a [KeyToPath]>,
    optional: Option<bool>,
}

impl<'a> Keyed<'a> {
    fn config_map(
        name: &'a str,
        items: &'a Option<Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Self {
        Self::new("configmaps", name, items, optional)
    }

    fn secret(name: &'a str, items: &'a Option<Vec<KeyToPath>>, optional: Option<bool>) -> Self {
        Self::new("secrets", name, items, optional)
    }

    fn new(
        resource: &'static str,
        name: &'a str,
        items: &'a Option<Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Self {
        Self {
            resource,
            name,
            items: items.as_deref(),
            optional,
        }
    }

    /// Adds its files (mode `mode` unless an item says otherwise) to `files`.
    fn files(
        &self,
        mode: u32,
        namespace: &str,
        lookup: &Lookup<'_>,
        files: &mut Vec<VolumeFile>,
    ) -> Result<(), String> {
        let (resource, name, optional) = (self.resource, self.name, self.optional);
        let Some(mut data) = lookup(resource, name) else {
            return match optional {
                Some(true) => Ok(()),
                _ => Err(not_found(resource, name)),
            };
        };
        let Some(items) = self.items else {
            files.extend(
                data.into_iter()
                    .map(|(path, data)| VolumeFile { path, mode, data }),
            );
            return Ok(());
        };
        for item in items {
            match data.remove(&item.key) {
                Some(bytes) => files.push(VolumeFile {
                    path: item.path.clone(),
                    mode: item.mode.map_or(mode, |m| mode_of(Some(m))),
                    data: bytes,
                }),
                None if optional == Some(true) => {}
                None => {
                    return Err(format!(
                        "couldn't find key {} in {} {namespace}/{name}",
                        item.key,
                        kind_name(resource)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn downward_files<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    mode: u32,
    files: &mut Vec<VolumeFile>,
) {
    for item in items {
        let value = item.field_ref.as_ref().and_then(|f| field_value(pod, f));
        files.push(VolumeFile {
            path: item.path.clone(),
            mode: item.mode.map_or(mode, |m| mode_of(Some(m))),
            data: value.unwrap_or_default().into_bytes(),
        });
    }
}

fn kind_name(resource: &str) -> &'static str {
    match resource {
        "secrets" => "Secret",
        _ => "ConfigMap",
    }
}

fn not_found(resource: &str, name: &str) -> String {
    match resource {
        "secrets" => format!("secret \"{name}\" not found"),
        _ => format!("configmap \"{name}\" not found"),
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The data of a stored ConfigMap or Secret as bytes by key (`data` as text or, for a
/// Secret, base64; a ConfigMap's `binaryData` base64).
pub fn data_of(resource: &str, object: &serde_json::Value) -> BTreeMap<String, Vec<u8>> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let entries = |field: &str| {
        object
            .get(field)
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?)))
    };
    let mut data = BTreeMap::new();
    if resource == "secrets" {
        for (key, value) in entries("data") {
            data.insert(key, base64.decode(value).unwrap_or_default());
        }
    } else {
        for (key, value) in entries("data") {
            data.insert(key, value.as_bytes().to_vec());
        }
        for (key, value) in entries("binaryData") {
            data.insert(key, base64.decode(value).unwrap_or_default());
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"}},
            "spec": spec,
            "status": {"podIP": "10.42.0.7"},
        }))
        .unwrap()
    }

    fn lookup(resource: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let entries: &[(&str, &[u8])] = match (resource, name) {
            ("configmaps", "app") => &[("mode", b"fast"), ("app.conf", b"level=debug\n")],
            ("secrets", "creds") => &[("password", b"s3cret"), ("user", b"admin")],
            _ => return None,
        };
        Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        )
    }

    fn no_tokens(_: &TokenProjection) -> Result<String, String> {
        Err("no tokens here".into())
    }

    #[test]
    fn env_values_come_from_config_maps_secrets_and_the_downward_api() {
        let pod = pod(json!({"nodeName": "pi-1", "containers": [{"name": "c",
        "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "APP_"}],
        "env": [
            {"name": "APP_mode", "value": "slow"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "NONE", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}
        ]}]}));
        let resolved = resolve(&pod, &lookup, &no_tokens).unwrap();
        let env: Vec<(&str, &str)> = resolved.env["c"]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("APP_app.conf", "level=debug\n"),
                ("APP_mode", "slow"),
                ("PASSWORD", "s3cret"),
                ("POD", "web"),
                ("TIER", "front"),
                ("NODE", "pi-1"),
                ("IP", "10.42.0.7"),
                ("SA", "default"),
            ]
        );
    }

    #[test]
    fn a_missing_object_or_key_names_what_is_missing_like_kubernetes() {
        let pod = pod(json!({"containers": [
            {"name": "a", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]},
            {"name": "b", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]},
            {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
            {"name": "d"}
        ], "volumes": [{"name": "v", "secret": {"secretName": "absent"}}]}));
        let missing = resolve(&pod, &lookup, &no_tokens).unwrap_err();
        let said: Vec<(&str, &str)> = missing
            .iter()
            .map(|m| (m.container.as_str(), m.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                ("a", "configmap \"nope\" not found"),
                ("b", "couldn't find key token in Secret shop/creds"),
                ("c", "secret \"absent\" not found"),
            ]
        );
    }

    #[test]
    fn a_memory_empty_dir_is_limited_by_the_pods_memory_limit() {
        let limited = |memory: &str| json!({"resources": {"limits": {"memory": memory}}});
        let spec = |containers: serde_json::Value| {
            json!({"containers": containers, "volumes": [
                {"name": "ram", "emptyDir": {"medium": "Memory"}},
                {"name": "small", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {"name": "disk", "emptyDir": {}}
            ]})
        };
        let limits = |containers| {
            let config = resolve(&pod(spec(containers)), &lookup, &no_tokens)
                .unwrap()
                .config;
            assert_eq!(config.memory_volumes, ["ram", "small", "big"]);
            config
                .size_limits
                .into_iter()
                .map(|l| (l.volume, l.bytes, l.quantity))
                .collect::<Vec<_>>()
        };
        let mut one = limited("64Mi");
        one["name"] = "a".into();
        assert_eq!(
            limits(json!([one])),
            [
                ("ram".into(), 64 << 20, "64Mi".into()),
                ("small".into(), 1 << 20, "1Mi".into()),
                ("big".into(), 64 << 20, "64Mi".into()),
            ]
        );
        let (mut a, mut b) = (limited("1Mi"), limited("1024Ki"));
        a["name"] = "a".into();
        b["name"] = "b".into();
        assert_eq!(
            limits(json!([a, b]))[0],
            ("ram".into(), 2 << 20, "2048Ki".into())
        );
        // A container without a limit: only the node's memory bounds the pod.
        assert_eq!(
            limits(json!([a, {"name": "b"}])),
            [
                ("small".into(), 1 << 20, "1Mi".into()),
                ("big".into(), 1 << 30, "1Gi".into()),
            ]
        );
    }

    #[test]
    fn volumes_project_keys_items_modes_and_downward_fields_into_files() {
        let pod = pod(json!({"containers": [{"name": "c", "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/app"},
            {"name": "scratch", "mountPath": "/tmp", "subPath": "work"}
        ]}],
        "volumes": [
            {"name": "conf", "projected": {"defaultMode": 0o600, "sources": [
                {"configMap": {"name": "app", "items": [{"key": "app.conf", "path": "conf/app.conf"}]}},
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "user", "mode": 0o400}]}},
                {"secret": {"name": "absent", "optional": true}},
                {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ]}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "dev", "hostPath": {"path": "/sys/class/thermal", "type": "Directory"}}
        ]}));
        let config = resolve(&pod, &lookup, &no_tokens).unwrap().config;
        assert_eq!(
            config.size_limits,
            [SizeLimit {
                volume: "scratch".into(),
                bytes: 1 << 20,
                quantity: "1Mi".into(),
            }]
        );
        assert_eq!(
            config.volumes[2].source,
            VolumeSource::HostPath(HostPath {
                path: "/sys/class/thermal".into(),
                must_be_directory: true,
            })
        );
        let VolumeSource::Files(files) = &config.volumes[0].source else {
            panic!("{config:?}");
        };
        let files: Vec<(&str, u32, &[u8])> = files
            .iter()
            .map(|f| (f.path.as_str(), f.mode, f.data.as_slice()))
            .collect();
        assert_eq!(
            files,
            [
                ("conf/app.conf", 0o600, &b"level=debug\n"[..]),
                ("user", 0o400, b"admin"),
                ("labels", 0o600, b"app=\"web\"\ntier=\"front\"\n"),
            ]
        );
        assert_eq!(config.volumes[1].source, VolumeSource::EmptyDir);
        assert_eq!(
            config.mounts,
            [
                Mount {
                    container: "c".into(),
                    volume: "conf".into(),
                    mount_path: "/etc/app".into(),
                    sub_path: String::new(),
                    read_only: true,
                },
                Mount {
                    container: "c".into(),
                    volume: "scratch".into(),
                    mount_path: "/tmp".into(),
                    sub_path: "work".into(),
                    read_only: false,
                },
            ]
        );
    }

    #[test]
    fn a_projected_token_is_a_file_of_the_token_issued_for_the_pod() {
        let pod = pod(json!({"nodeName": "pi-1", "serviceAccountName": "robot",
        "containers": [{"name": "c", "volumeMounts": [{"name": "tok", "mountPath": "/var/run/tok"}]}],
        "volumes": [{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}}]}));
        let issue = |p: &TokenProjection| {
            Ok(format!(
                "{}/{}/{}/{}/{}/{}/{}/{}",
                p.namespace, p.pod, p.pod_uid, p.node, p.account, p.volume, p.audience, p.seconds
            ))
        };
        let config = resolve(&pod, &lookup, &issue).unwrap().config;
        let VolumeSource::Files(files) = &config.volumes[0].source else {
            panic!("{config:?}");
        };
        assert_eq!(files[0].path, "token");
        assert_eq!(
            String::from_utf8_lossy(&files[0].data),
            "shop/web/u-1/pi-1/robot/tok/vault/600"
        );
        assert_eq!(files[1].data, b"shop");
        assert!(config.mounts[0].read_only);
        // A token that cannot be issued keeps the mounting containers waiting.
        let missing = resolve(&pod, &lookup, &no_tokens).unwrap_err();
        assert_eq!(missing[0].message, "no tokens here");
    }

    #[test]
    fn secret_data_is_decoded_and_binary_config_data_too() {
        let secret = json!({"data": {"a": "czNjcmV0"}});
        assert_eq!(data_of("secrets", &secret)["a"], b"s3cret");
        let map = json!({"data": {"a": "text"}, "binaryData": {"b": "AAEC"}});
        let data = data_of("configmaps", &map);
        assert_eq!(
            (data["a"].as_slice(), data["b"].as_slice()),
            (&b"text"[..], &[0u8, 1, 2][..])
        );
    }
}
