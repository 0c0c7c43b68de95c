//! What can be delivered to a node: the one home of the per-pod delivery rule.
//!
//! Every pod travels to its node as one retained [`DesiredPod`] message, which must fit
//! [`MAX_MESSAGE_SIZE`]. The same rule decides at admission (with room for what the store
//! and the resolver add later, so an admitted pod is always deliverable) and at publishing
//! (a pod stored before the rule existed is refused there and marked on the object):
//!
//! - at most [`MAX_CONTAINERS_PER_POD`] containers;
//! - the encoded message at most [`MAX_MESSAGE_SIZE`] bytes; at admission at most
//!   [`MAX_MESSAGE_SIZE`] − [`ADMISSION_HEADROOM`], measured with every image resolved to
//!   the largest module reference;
//! - a uid that can name a topic level, and at most [`MAX_INDEXED_PODS`] pods per node
//!   (checked by the planner in [`super::desired`]).

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use wasmfleet_protocol::network::ClusterCidr;
use wasmfleet_protocol::pod::{
    DesiredPod, MAX_INDEXED_PODS, ModuleRef, PodAssignment, ProbeAction,
};
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message, encode};

use super::desired;

/// The most containers a pod may have (Kubernetes has no hard cap; a device runs each as its
/// own sandbox, and every container adds to the pod's one delivery message).
pub const MAX_CONTAINERS_PER_POD: usize = 64;

/// Bytes kept free at admission for what is filled in later: the uid, a generated name, the
/// namespace and the revision.
pub const ADMISSION_HEADROOM: usize = 1024;

/// Why a pod cannot be delivered to its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undeliverable {
    /// Too many containers.
    #[error("Too many: {count}: a pod may have at most {MAX_CONTAINERS_PER_POD} containers")]
    TooManyContainers {
        /// How many the pod has.
        count: usize,
    },
    /// The encoded pod is larger than one message.
    #[error(
        "Too long: the pod's delivery message would be {size} bytes, over the {limit}-byte \
         limit of one message to its node (this field alone is {field_bytes} bytes)"
    )]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit it broke.
        limit: usize,
        /// The path of the largest string in the pod, the likely culprit.
        field: String,
        /// That string's length.
        field_bytes: usize,
    },
    /// The uid cannot name a topic (never for uids the store issues).
    #[error("Invalid value: {0:?}: the pod's uid cannot name its delivery topic")]
    BadUid(String),
    /// The node's index is full.
    #[error("the node already has {MAX_INDEXED_PODS} pods, the most one node can be sent")]
    NodeFull,
}

impl Undeliverable {
    /// The field of the pod the problem is about.
    pub fn field(&self) -> &str {
        match self {
            Undeliverable::TooManyContainers { .. } => "spec.containers",
            Undeliverable::TooLarge { field, .. } => field,
            Undeliverable::BadUid(_) => "metadata.uid",
            Undeliverable::NodeFull => "spec.nodeName",
        }
    }
}

/// The retained payload carrying `pod` at `revision`, or why it cannot be sent.
pub fn encode_pod(revision: u64, pod: &PodAssignment) -> Result<Vec<u8>, Undeliverable> {
    if wasmfleet_protocol::names::validate_uid(&pod.uid).is_err() {
        return Err(Undeliverable::BadUid(pod.uid.clone()));
    }
    encode_within(revision, pod, MAX_MESSAGE_SIZE)
}

/// Admission: refuses a pod (JSON, after validation and defaults) that could not be
/// delivered once stored and resolved.
pub fn admit(pod: &Value) -> Result<(), Undeliverable> {
    let count = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if count > MAX_CONTAINERS_PER_POD {
        return Err(Undeliverable::TooManyContainers { count });
    }
    let Ok(typed) = serde_json::from_value::<Pod>(pod.clone()) else {
        // Validation already refused every shape a Pod cannot have.
        return Ok(());
    };
    let largest = |_: &str| {
        Some(ModuleRef {
            digest: "0".repeat(64),
            size: u64::MAX,
        })
    };
    let Ok(assignment) = desired::assignment(&typed, &largest, ClusterCidr::default()) else {
        return Ok(());
    };
    encode_within(u64::MAX, &assignment, MAX_MESSAGE_SIZE - ADMISSION_HEADROOM).map(drop)
}

/// Encodes `pod`, refusing more containers than allowed or more than `limit` bytes.
fn encode_within(
    revision: u64,
    pod: &PodAssignment,
    limit: usize,
) -> Result<Vec<u8>, Undeliverable> {
    let count = pod.containers.len();
    if count > MAX_CONTAINERS_PER_POD {
        return Err(Undeliverable::TooManyContainers { count });
    }
    let payload = encode(&Message::DesiredPodV3(DesiredPod {
        revision,
        pod: pod.clone(),
    }));
    if payload.len() <= limit {
        return Ok(payload);
    }
    let (field, field_bytes) = largest_field(pod);
    Err(Undeliverable::TooLarge {
        size: payload.len(),
        limit,
        field,
        field_bytes,
    })
}

/// The path (as in the Pod manifest) and length of the longest string in `pod`.
fn largest_field(pod: &PodAssignment) -> (String, usize) {
    let mut best = ("spec.containers".to_owned(), 0);
    let mut consider = |path: &dyn Fn() -> String, len: usize| {
        if len > best.1 {
            best = (path(), len);
        }
    };
    for (c, container) in pod.containers.iter().enumerate() {
        let at = format!("spec.containers[{c}]");
        consider(&|| format!("{at}.image"), container.image.len());
        for (i, arg) in container.command.iter().enumerate() {
            consider(&|| format!("{at}.command[{i}]"), arg.len());
        }
        for (i, arg) in container.args.iter().enumerate() {
            consider(&|| format!("{at}.args[{i}]"), arg.len());
        }
        for (i, (name, value)) in container.env.iter().enumerate() {
            consider(&|| format!("{at}.env[{i}].name"), name.len());
            consider(&|| format!("{at}.env[{i}].value"), value.len());
        }
        let probes = &container.probes;
        let probes = [
            ("startupProbe", &probes.startup),
            ("livenessProbe", &probes.liveness),
            ("readinessProbe", &probes.readiness),
        ];
        for (field, probe) in probes {
            let Some(ProbeAction::HttpGet { path, headers, .. }) =
                probe.as_ref().map(|p| &p.action)
            else {
                continue;
            };
            let get = format!("{at}.{field}.httpGet");
            consider(&|| format!("{get}.path"), path.len());
            for (i, (name, value)) in headers.iter().enumerate() {
                consider(&|| format!("{get}.httpHeaders[{i}].name"), name.len());
                consider(&|| format!("{get}.httpHeaders[{i}].value"), value.len());
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_with(containers: Vec<Value>) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"restartPolicy": "Always", "containers": containers},
        })
    }

    fn container(i: usize, env_value: &str) -> Value {
        json!({"name": format!("c{i}"), "image": "hello:v1",
               "env": [{"name": "BIG", "value": env_value}]})
    }

    #[test]
    fn an_ordinary_pod_is_admitted() {
        assert_eq!(admit(&pod_with(vec![container(0, "hi")])), Ok(()));
    }

    #[test]
    fn probe_headers_that_make_a_pod_too_large_are_named() {
        let headers: Vec<Value> = (0..32)
            .map(|i| json!({"name": format!("X-{i}"), "value": "v".repeat(4096)}))
            .collect();
        let probe = json!({"httpGet": {"port": 80, "httpHeaders": headers}});
        let containers = (0..6)
            .map(|i| {
                let mut c = container(i, "");
                for field in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    c[field] = probe.clone();
                }
                c
            })
            .collect();
        let Err(err) = admit(&pod_with(containers)) else {
            panic!("a pod of 2 MB of probe headers was admitted")
        };
        assert_eq!(
            err.field(),
            "spec.containers[0].startupProbe.httpGet.httpHeaders[0].value"
        );
    }

    #[test]
    fn ten_thousand_containers_are_refused_by_count() {
        let containers = (0..10_000).map(|i| container(i, "")).collect();
        let err = admit(&pod_with(containers)).err();
        assert_eq!(
            err,
            Some(Undeliverable::TooManyContainers { count: 10_000 })
        );
        assert_eq!(
            err.map(|e| e.field().to_owned()).as_deref(),
            Some("spec.containers")
        );
    }

    #[test]
    fn a_600_kb_env_value_is_refused_naming_the_field() {
        let big = "x".repeat(600_000);
        let err = admit(&pod_with(vec![container(0, "a"), container(1, &big)]));
        let Err(err) = err else {
            panic!("a 600 KB env value was admitted")
        };
        assert_eq!(err.field(), "spec.containers[1].env[0].value");
        let text = err.to_string();
        assert!(text.contains("600000 bytes"), "{text}");
        assert!(
            text.contains(&(MAX_MESSAGE_SIZE - ADMISSION_HEADROOM).to_string()),
            "{text}"
        );
    }

    #[test]
    fn an_admitted_pod_at_the_limit_is_deliverable_once_resolved() {
        // Find the largest env value admission accepts, then deliver it with a real uid,
        // a long name and a resolved module: it must still fit.
        let admitted = |n: usize| admit(&pod_with(vec![container(0, &"x".repeat(n))])).is_ok();
        let (mut lo, mut hi) = (0, MAX_MESSAGE_SIZE);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if admitted(mid) { lo = mid } else { hi = mid }
        }
        let value = "x".repeat(lo);
        let mut pod = pod_with(vec![container(0, &value)]);
        pod["metadata"]["name"] = json!("n".repeat(253));
        pod["metadata"]["uid"] = json!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        let typed: Pod = serde_json::from_value(pod).expect("pod");
        let resolved = |_: &str| {
            Some(ModuleRef {
                digest: "ab".repeat(32),
                size: 1 << 40,
            })
        };
        let assignment =
            desired::assignment(&typed, &resolved, ClusterCidr::default()).expect("resolves");
        assert!(encode_pod(u64::MAX, &assignment).is_ok());
    }

    #[test]
    fn a_stored_pod_too_large_for_one_message_is_not_encoded() {
        let typed: Pod = serde_json::from_value(json!({
            "metadata": {"name": "big", "uid": "u-1"},
            "spec": {"containers": [container(0, &"x".repeat(MAX_MESSAGE_SIZE))]},
        }))
        .expect("pod");
        let resolved = |_: &str| {
            Some(ModuleRef {
                digest: "ab".repeat(32),
                size: 1,
            })
        };
        let assignment =
            desired::assignment(&typed, &resolved, ClusterCidr::default()).expect("resolves");
        assert!(matches!(
            encode_pod(1, &assignment),
            Err(Undeliverable::TooLarge {
                limit: MAX_MESSAGE_SIZE,
                ..
            })
        ));
        let mut bad_uid = assignment;
        bad_uid.uid = "a/b".into();
        bad_uid.containers.clear();
        assert_eq!(
            encode_pod(1, &bad_uid),
            Err(Undeliverable::BadUid("a/b".into()))
        );
    }
}
