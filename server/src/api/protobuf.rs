//! The Kubernetes protobuf encoding of the objects kubectl's `create` generators send
//! (`kubectl create namespace|configmap|secret|deployment|job|cronjob|role|clusterrole|
//! rolebinding|clusterrolebinding|serviceaccount|token`): they always POST protobuf and
//! never retry as JSON after a 415.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw}, where raw is the typed message. The typed messages are decoded by
//! field number from the tables below (taken from `k8s.io/api` and `k8s.io/apimachinery`'s
//! `generated.proto`) into the JSON the rest of the API admits. Fields the tables name but
//! wasmfleet does not support decode to a marker object, so admission refuses them *by
//! name*; zero values of plain (non-pointer) Go fields, which the Go encoder always writes,
//! are dropped as JSON's `omitempty` would. Kinds without a table are refused (415), and so
//! is anything malformed (400).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

/// How a field's payload decodes.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// `map<string, string>` entries.
    Map,
    /// `map<string, Quantity>` entries.
    QuantityMap,
    /// A `resource.Quantity` (`sizeLimit`), a string in JSON.
    Quantity,
    /// `map<string, bytes>` entries, base64 in JSON (a Secret's `data`).
    BytesMap,
    IntOrString,
    /// `meta.v1.Time`: seconds since the epoch, as RFC 3339.
    Time,
    Msg(&'static [FieldDef]),
    /// A message whose fields JSON inlines into the enclosing object (Go's
    /// `json:",inline"`, such as a probe's handler).
    Inline(&'static [FieldDef]),
    /// A field wasmfleet does not support: decoded as a marker so admission names it.
    Unsupported,
}

/// One field of a message: number, JSON name, type, repeated, and whether a zero value is
/// meaningful (a Go pointer field, such as `replicas: 0`).
struct FieldDef(u32, &'static str, Ty, Rep, Zero);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rep {
    One,
    Many,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Drop,
    Keep,
}

use Rep::{Many, One};
use Ty::{
    Bool, BytesMap, Inline, Int, IntOrString, Map as StrMap, Msg, Quantity, QuantityMap, Str, Time,
    Unsupported,
};
use Zero::{Drop, Keep};

const OWNER_REFERENCE: &[FieldDef] = &[
    FieldDef(5, "apiVersion", Str, One, Drop),
    FieldDef(1, "kind", Str, One, Drop),
    FieldDef(3, "name", Str, One, Drop),
    FieldDef(4, "uid", Str, One, Drop),
    FieldDef(6, "controller", Bool, One, Keep),
    FieldDef(7, "blockOwnerDeletion", Bool, One, Keep),
];

const OBJECT_META: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "generateName", Str, One, Drop),
    FieldDef(3, "namespace", Str, One, Drop),
    FieldDef(4, "selfLink", Str, One, Drop),
    FieldDef(5, "uid", Str, One, Drop),
    FieldDef(6, "resourceVersion", Str, One, Drop),
    FieldDef(7, "generation", Int, One, Drop),
    FieldDef(8, "creationTimestamp", Time, One, Drop),
    FieldDef(9, "deletionTimestamp", Time, One, Drop),
    FieldDef(10, "deletionGracePeriodSeconds", Int, One, Keep),
    FieldDef(11, "labels", StrMap, One, Drop),
    FieldDef(12, "annotations", StrMap, One, Drop),
    FieldDef(13, "ownerReferences", Msg(OWNER_REFERENCE), Many, Drop),
    FieldDef(14, "finalizers", Str, Many, Drop),
    FieldDef(17, "managedFields", Unsupported, Many, Drop),
];

const SELECTOR_REQUIREMENT: &[FieldDef] = &[
    FieldDef(1, "key", Str, One, Drop),
    FieldDef(2, "operator", Str, One, Drop),
    FieldDef(3, "values", Str, Many, Drop),
];

const LABEL_SELECTOR: &[FieldDef] = &[
    FieldDef(1, "matchLabels", StrMap, One, Drop),
    FieldDef(2, "matchExpressions", Msg(SELECTOR_REQUIREMENT), Many, Drop),
];

const LOCAL_OBJECT_REFERENCE: &[FieldDef] = &[FieldDef(1, "name", Str, One, Drop)];

/// `ConfigMapKeySelector` and `SecretKeySelector`.
const KEY_SELECTOR: &[FieldDef] = &[
    FieldDef(1, "reference", Inline(LOCAL_OBJECT_REFERENCE), One, Drop),
    FieldDef(2, "key", Str, One, Drop),
    FieldDef(3, "optional", Bool, One, Keep),
];

const OBJECT_FIELD_SELECTOR: &[FieldDef] = &[
    FieldDef(1, "apiVersion", Str, One, Drop),
    FieldDef(2, "fieldPath", Str, One, Drop),
];

const ENV_VAR_SOURCE: &[FieldDef] = &[
    FieldDef(1, "fieldRef", Msg(OBJECT_FIELD_SELECTOR), One, Drop),
    FieldDef(2, "resourceFieldRef", Unsupported, One, Drop),
    FieldDef(3, "configMapKeyRef", Msg(KEY_SELECTOR), One, Drop),
    FieldDef(4, "secretKeyRef", Msg(KEY_SELECTOR), One, Drop),
];

const ENV_VAR: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "value", Str, One, Drop),
    FieldDef(3, "valueFrom", Msg(ENV_VAR_SOURCE), One, Drop),
];

/// `ConfigMapEnvSource` and `SecretEnvSource`.
const ENV_SOURCE: &[FieldDef] = &[
    FieldDef(1, "reference", Inline(LOCAL_OBJECT_REFERENCE), One, Drop),
    FieldDef(2, "optional", Bool, One, Keep),
];

const ENV_FROM: &[FieldDef] = &[
    FieldDef(1, "prefix", Str, One, Drop),
    FieldDef(2, "configMapRef", Msg(ENV_SOURCE), One, Drop),
    FieldDef(3, "secretRef", Msg(ENV_SOURCE), One, Drop),
];

const VOLUME_MOUNT: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "readOnly", Bool, One, Drop),
    FieldDef(3, "mountPath", Str, One, Drop),
    FieldDef(4, "subPath", Str, One, Drop),
    FieldDef(5, "mountPropagation", Unsupported, One, Drop),
    FieldDef(6, "subPathExpr", Unsupported, One, Drop),
    FieldDef(7, "recursiveReadOnly", Unsupported, One, Drop),
];

const KEY_TO_PATH: &[FieldDef] = &[
    FieldDef(1, "key", Str, One, Drop),
    FieldDef(2, "path", Str, One, Drop),
    FieldDef(3, "mode", Int, One, Keep),
];

const CONFIG_MAP_VOLUME: &[FieldDef] = &[
    FieldDef(1, "reference", Inline(LOCAL_OBJECT_REFERENCE), One, Drop),
    FieldDef(2, "items", Msg(KEY_TO_PATH), Many, Drop),
    FieldDef(3, "defaultMode", Int, One, Keep),
    FieldDef(4, "optional", Bool, One, Keep),
];

const SECRET_VOLUME: &[FieldDef] = &[
    FieldDef(1, "secretName", Str, One, Drop),
    FieldDef(2, "items", Msg(KEY_TO_PATH), Many, Drop),
    FieldDef(3, "defaultMode", Int, One, Keep),
    FieldDef(4, "optional", Bool, One, Keep),
];

const HOST_PATH_VOLUME: &[FieldDef] = &[
    FieldDef(1, "path", Str, One, Drop),
    FieldDef(2, "type", Str, One, Drop),
];

const EMPTY_DIR_VOLUME: &[FieldDef] = &[
    FieldDef(1, "medium", Str, One, Drop),
    FieldDef(2, "sizeLimit", Quantity, One, Drop),
];

const DOWNWARD_API_FILE: &[FieldDef] = &[
    FieldDef(1, "path", Str, One, Drop),
    FieldDef(2, "fieldRef", Msg(OBJECT_FIELD_SELECTOR), One, Drop),
    FieldDef(3, "resourceFieldRef", Unsupported, One, Drop),
    FieldDef(4, "mode", Int, One, Keep),
];

const DOWNWARD_API_VOLUME: &[FieldDef] = &[
    FieldDef(1, "items", Msg(DOWNWARD_API_FILE), Many, Drop),
    FieldDef(2, "defaultMode", Int, One, Keep),
];

/// `ConfigMapProjection` and `SecretProjection`.
const KEYS_PROJECTION: &[FieldDef] = &[
    FieldDef(1, "reference", Inline(LOCAL_OBJECT_REFERENCE), One, Drop),
    FieldDef(2, "items", Msg(KEY_TO_PATH), Many, Drop),
    FieldDef(4, "optional", Bool, One, Keep),
];

const TOKEN_PROJECTION: &[FieldDef] = &[
    FieldDef(1, "audience", Str, One, Drop),
    FieldDef(2, "expirationSeconds", Int, One, Keep),
    FieldDef(3, "path", Str, One, Drop),
];

const VOLUME_PROJECTION: &[FieldDef] = &[
    FieldDef(1, "secret", Msg(KEYS_PROJECTION), One, Keep),
    FieldDef(
        2,
        "downwardAPI",
        Msg(&[FieldDef(1, "items", Msg(DOWNWARD_API_FILE), Many, Drop)]),
        One,
        Keep,
    ),
    FieldDef(3, "configMap", Msg(KEYS_PROJECTION), One, Keep),
    FieldDef(4, "serviceAccountToken", Msg(TOKEN_PROJECTION), One, Keep),
    FieldDef(5, "clusterTrustBundle", Unsupported, One, Drop),
];

const PROJECTED_VOLUME: &[FieldDef] = &[
    FieldDef(1, "sources", Msg(VOLUME_PROJECTION), Many, Drop),
    FieldDef(2, "defaultMode", Int, One, Keep),
];

/// `VolumeSource`: the types a Wasm pod can have, and every other one as the marker
/// (an empty source message is kept: `emptyDir: {}` is a volume).
const VOLUME_SOURCE: &[FieldDef] = &[
    FieldDef(1, "hostPath", Msg(HOST_PATH_VOLUME), One, Keep),
    FieldDef(2, "emptyDir", Msg(EMPTY_DIR_VOLUME), One, Keep),
    FieldDef(3, "gcePersistentDisk", Unsupported, One, Drop),
    FieldDef(4, "awsElasticBlockStore", Unsupported, One, Drop),
    FieldDef(5, "gitRepo", Unsupported, One, Drop),
    FieldDef(6, "secret", Msg(SECRET_VOLUME), One, Keep),
    FieldDef(7, "nfs", Unsupported, One, Drop),
    FieldDef(8, "iscsi", Unsupported, One, Drop),
    FieldDef(9, "glusterfs", Unsupported, One, Drop),
    FieldDef(10, "persistentVolumeClaim", Unsupported, One, Drop),
    FieldDef(11, "rbd", Unsupported, One, Drop),
    FieldDef(12, "flexVolume", Unsupported, One, Drop),
    FieldDef(13, "cinder", Unsupported, One, Drop),
    FieldDef(14, "cephfs", Unsupported, One, Drop),
    FieldDef(15, "flocker", Unsupported, One, Drop),
    FieldDef(16, "downwardAPI", Msg(DOWNWARD_API_VOLUME), One, Keep),
    FieldDef(17, "fc", Unsupported, One, Drop),
    FieldDef(18, "azureFile", Unsupported, One, Drop),
    FieldDef(19, "configMap", Msg(CONFIG_MAP_VOLUME), One, Keep),
    FieldDef(20, "vsphereVolume", Unsupported, One, Drop),
    FieldDef(21, "quobyte", Unsupported, One, Drop),
    FieldDef(22, "azureDisk", Unsupported, One, Drop),
    FieldDef(23, "photonPersistentDisk", Unsupported, One, Drop),
    FieldDef(24, "portworxVolume", Unsupported, One, Drop),
    FieldDef(25, "scaleIO", Unsupported, One, Drop),
    FieldDef(26, "projected", Msg(PROJECTED_VOLUME), One, Keep),
    FieldDef(27, "storageos", Unsupported, One, Drop),
    FieldDef(28, "csi", Unsupported, One, Drop),
    FieldDef(29, "ephemeral", Unsupported, One, Drop),
    FieldDef(30, "image", Unsupported, One, Drop),
];

const VOLUME: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "volumeSource", Inline(VOLUME_SOURCE), One, Drop),
];

const RESOURCES: &[FieldDef] = &[
    FieldDef(1, "limits", QuantityMap, One, Drop),
    FieldDef(2, "requests", QuantityMap, One, Drop),
    FieldDef(3, "claims", Unsupported, Many, Drop),
];

const HTTP_HEADER: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "value", Str, One, Drop),
];

const HTTP_GET_ACTION: &[FieldDef] = &[
    FieldDef(1, "path", Str, One, Drop),
    FieldDef(2, "port", IntOrString, One, Drop),
    FieldDef(3, "host", Str, One, Drop),
    FieldDef(4, "scheme", Str, One, Drop),
    FieldDef(5, "httpHeaders", Msg(HTTP_HEADER), Many, Drop),
];

const TCP_SOCKET_ACTION: &[FieldDef] = &[
    FieldDef(1, "port", IntOrString, One, Drop),
    FieldDef(2, "host", Str, One, Drop),
];

/// `exec` and `grpc` decode to the marker; admission says why they are refused.
const PROBE_HANDLER: &[FieldDef] = &[
    FieldDef(1, "exec", Unsupported, One, Drop),
    FieldDef(2, "httpGet", Msg(HTTP_GET_ACTION), One, Drop),
    FieldDef(3, "tcpSocket", Msg(TCP_SOCKET_ACTION), One, Drop),
    FieldDef(4, "grpc", Unsupported, One, Drop),
];

const PROBE: &[FieldDef] = &[
    FieldDef(1, "handler", Inline(PROBE_HANDLER), One, Drop),
    FieldDef(2, "initialDelaySeconds", Int, One, Drop),
    FieldDef(3, "timeoutSeconds", Int, One, Drop),
    FieldDef(4, "periodSeconds", Int, One, Drop),
    FieldDef(5, "successThreshold", Int, One, Drop),
    FieldDef(6, "failureThreshold", Int, One, Drop),
    FieldDef(7, "terminationGracePeriodSeconds", Unsupported, One, Drop),
];

const CONTAINER_PORT: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "hostPort", Int, One, Drop),
    FieldDef(3, "containerPort", Int, One, Drop),
    FieldDef(4, "protocol", Str, One, Drop),
    FieldDef(5, "hostIP", Str, One, Drop),
];

const CONTAINER: &[FieldDef] = &[
    FieldDef(1, "name", Str, One, Drop),
    FieldDef(2, "image", Str, One, Drop),
    FieldDef(3, "command", Str, Many, Drop),
    FieldDef(4, "args", Str, Many, Drop),
    FieldDef(5, "workingDir", Unsupported, One, Drop),
    FieldDef(6, "ports", Msg(CONTAINER_PORT), Many, Drop),
    FieldDef(19, "envFrom", Msg(ENV_FROM), Many, Drop),
    FieldDef(7, "env", Msg(ENV_VAR), Many, Drop),
    FieldDef(8, "resources", Msg(RESOURCES), One, Drop),
    FieldDef(23, "resizePolicy", Unsupported, Many, Drop),
    FieldDef(24, "restartPolicy", Unsupported, One, Drop),
    FieldDef(9, "volumeMounts", Msg(VOLUME_MOUNT), Many, Drop),
    FieldDef(21, "volumeDevices", Unsupported, Many, Drop),
    FieldDef(10, "livenessProbe", Msg(PROBE), One, Drop),
    FieldDef(11, "readinessProbe", Msg(PROBE), One, Drop),
    FieldDef(22, "startupProbe", Msg(PROBE), One, Drop),
    FieldDef(12, "lifecycle", Unsupported, One, Drop),
    FieldDef(13, "terminationMessagePath", Str, One, Drop),
    FieldDef(20, "terminationMessagePolicy", Str, One, Drop),
    FieldDef(14, "imagePullPolicy", Str, One, Drop),
    FieldDef(15, "securityContext", Unsupported, One, Drop),
    FieldDef(16, "stdin", Bool, One, Drop),
    FieldDef(17, "stdinOnce", Bool, One, Drop),
    FieldDef(18, "tty", Bool, One, Drop),
];

const TOLERATION: &[FieldDef] = &[
    FieldDef(1, "key", Str, One, Drop),
    FieldDef(2, "operator", Str, One, Drop),
    FieldDef(3, "value", Str, One, Drop),
    FieldDef(4, "effect", Str, One, Drop),
    FieldDef(5, "tolerationSeconds", Int, One, Keep),
];

const POD_SPEC: &[FieldDef] = &[
    FieldDef(1, "volumes", Msg(VOLUME), Many, Drop),
    FieldDef(20, "initContainers", Unsupported, Many, Drop),
    FieldDef(2, "containers", Msg(CONTAINER), Many, Drop),
    FieldDef(3, "restartPolicy", Str, One, Drop),
    FieldDef(4, "terminationGracePeriodSeconds", Int, One, Keep),
    FieldDef(5, "activeDeadlineSeconds", Unsupported, One, Drop),
    FieldDef(6, "dnsPolicy", Str, One, Drop),
    FieldDef(7, "nodeSelector", StrMap, One, Drop),
    FieldDef(8, "serviceAccountName", Str, One, Drop),
    FieldDef(9, "serviceAccount", Str, One, Drop),
    FieldDef(10, "nodeName", Str, One, Drop),
    FieldDef(11, "hostNetwork", Unsupported, One, Drop),
    FieldDef(12, "hostPID", Unsupported, One, Drop),
    FieldDef(13, "hostIPC", Unsupported, One, Drop),
    FieldDef(14, "securityContext", Unsupported, One, Drop),
    FieldDef(15, "imagePullSecrets", Unsupported, Many, Drop),
    FieldDef(16, "hostname", Unsupported, One, Drop),
    FieldDef(17, "subdomain", Unsupported, One, Drop),
    FieldDef(18, "affinity", Unsupported, One, Drop),
    FieldDef(19, "schedulerName", Str, One, Drop),
    FieldDef(21, "automountServiceAccountToken", Bool, One, Keep),
    FieldDef(22, "tolerations", Msg(TOLERATION), Many, Drop),
    FieldDef(24, "priorityClassName", Str, One, Drop),
    FieldDef(25, "priority", Int, One, Keep),
    FieldDef(30, "enableServiceLinks", Bool, One, Keep),
    FieldDef(31, "preemptionPolicy", Str, One, Drop),
];

const POD_TEMPLATE: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "spec", Msg(POD_SPEC), One, Drop),
];

const ROLLING_UPDATE: &[FieldDef] = &[
    FieldDef(1, "maxUnavailable", IntOrString, One, Keep),
    FieldDef(2, "maxSurge", IntOrString, One, Keep),
];

const STRATEGY: &[FieldDef] = &[
    FieldDef(1, "type", Str, One, Drop),
    FieldDef(2, "rollingUpdate", Msg(ROLLING_UPDATE), One, Drop),
];

const DEPLOYMENT_SPEC: &[FieldDef] = &[
    FieldDef(1, "replicas", Int, One, Keep),
    FieldDef(2, "selector", Msg(LABEL_SELECTOR), One, Drop),
    FieldDef(3, "template", Msg(POD_TEMPLATE), One, Drop),
    FieldDef(4, "strategy", Msg(STRATEGY), One, Drop),
    FieldDef(5, "minReadySeconds", Int, One, Drop),
    FieldDef(6, "revisionHistoryLimit", Int, One, Keep),
    FieldDef(7, "paused", Bool, One, Drop),
    FieldDef(9, "progressDeadlineSeconds", Int, One, Keep),
];

const JOB_SPEC: &[FieldDef] = &[
    FieldDef(1, "parallelism", Int, One, Keep),
    FieldDef(2, "completions", Int, One, Keep),
    FieldDef(3, "activeDeadlineSeconds", Int, One, Keep),
    FieldDef(11, "podFailurePolicy", Unsupported, One, Drop),
    FieldDef(16, "successPolicy", Unsupported, One, Drop),
    FieldDef(7, "backoffLimit", Int, One, Keep),
    FieldDef(12, "backoffLimitPerIndex", Unsupported, One, Drop),
    FieldDef(13, "maxFailedIndexes", Unsupported, One, Drop),
    FieldDef(4, "selector", Msg(LABEL_SELECTOR), One, Drop),
    FieldDef(5, "manualSelector", Bool, One, Keep),
    FieldDef(6, "template", Msg(POD_TEMPLATE), One, Drop),
    FieldDef(8, "ttlSecondsAfterFinished", Int, One, Keep),
    FieldDef(9, "completionMode", Str, One, Drop),
    FieldDef(10, "suspend", Bool, One, Keep),
    FieldDef(14, "podReplacementPolicy", Unsupported, One, Drop),
    FieldDef(15, "managedBy", Unsupported, One, Drop),
];

const JOB_TEMPLATE: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "spec", Msg(JOB_SPEC), One, Drop),
];

const CRON_JOB_SPEC: &[FieldDef] = &[
    FieldDef(1, "schedule", Str, One, Drop),
    FieldDef(8, "timeZone", Str, One, Drop),
    FieldDef(2, "startingDeadlineSeconds", Int, One, Keep),
    FieldDef(3, "concurrencyPolicy", Str, One, Drop),
    FieldDef(4, "suspend", Bool, One, Keep),
    FieldDef(5, "jobTemplate", Msg(JOB_TEMPLATE), One, Drop),
    FieldDef(6, "successfulJobsHistoryLimit", Int, One, Keep),
    FieldDef(7, "failedJobsHistoryLimit", Int, One, Keep),
];

/// `{1: metadata, 2: spec, 3: status}`, the shape of every top-level kind here.
macro_rules! object {
    ($spec:expr) => {
        &[
            FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
            FieldDef(2, "spec", Msg($spec), One, Drop),
            // The server owns status: whatever the client sent is dropped.
        ]
    };
}

const NAMESPACE_SPEC: &[FieldDef] = &[FieldDef(1, "finalizers", Str, Many, Drop)];

const RESOURCE_ATTRIBUTES: &[FieldDef] = &[
    FieldDef(1, "namespace", Str, One, Drop),
    FieldDef(2, "verb", Str, One, Drop),
    FieldDef(3, "group", Str, One, Drop),
    FieldDef(4, "version", Str, One, Drop),
    FieldDef(5, "resource", Str, One, Drop),
    FieldDef(6, "subresource", Str, One, Drop),
    FieldDef(7, "name", Str, One, Drop),
];

const NON_RESOURCE_ATTRIBUTES: &[FieldDef] = &[
    FieldDef(1, "path", Str, One, Drop),
    FieldDef(2, "verb", Str, One, Drop),
];

/// `kubectl auth can-i`'s SelfSubjectAccessReview spec.
const ACCESS_REVIEW_SPEC: &[FieldDef] = &[
    FieldDef(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES), One, Drop),
    FieldDef(
        2,
        "nonResourceAttributes",
        Msg(NON_RESOURCE_ATTRIBUTES),
        One,
        Drop,
    ),
];

/// `kubectl auth can-i --list`'s SelfSubjectRulesReview spec.
const RULES_REVIEW_SPEC: &[FieldDef] = &[FieldDef(1, "namespace", Str, One, Drop)];

/// `kubectl create configmap`: {1: metadata, 2: data, 3: binaryData, 4: immutable}.
const CONFIG_MAP: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "data", StrMap, One, Drop),
    FieldDef(3, "binaryData", BytesMap, One, Drop),
    FieldDef(4, "immutable", Bool, One, Keep),
];

/// `kubectl create secret`: {1: metadata, 2: data, 3: type, 4: stringData, 5: immutable}.
const SECRET: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "data", BytesMap, One, Drop),
    FieldDef(3, "type", Str, One, Drop),
    FieldDef(4, "stringData", StrMap, One, Drop),
    FieldDef(5, "immutable", Bool, One, Keep),
];

/// `rbac/v1` PolicyRule (`kubectl create role|clusterrole`).
const POLICY_RULE: &[FieldDef] = &[
    FieldDef(1, "verbs", Str, Many, Drop),
    FieldDef(2, "apiGroups", Str, Many, Drop),
    FieldDef(3, "resources", Str, Many, Drop),
    FieldDef(4, "resourceNames", Str, Many, Drop),
    FieldDef(5, "nonResourceURLs", Str, Many, Drop),
];

const RBAC_SUBJECT: &[FieldDef] = &[
    FieldDef(1, "kind", Str, One, Drop),
    FieldDef(2, "apiGroup", Str, One, Drop),
    FieldDef(3, "name", Str, One, Drop),
    FieldDef(4, "namespace", Str, One, Drop),
];

const ROLE_REF: &[FieldDef] = &[
    FieldDef(1, "apiGroup", Str, One, Drop),
    FieldDef(2, "kind", Str, One, Drop),
    FieldDef(3, "name", Str, One, Drop),
];

/// Role and ClusterRole (`rules` at 2, not a spec; `aggregationRule` at 3, refused).
const ROLE: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "rules", Msg(POLICY_RULE), Many, Drop),
    FieldDef(3, "aggregationRule", Unsupported, One, Drop),
];

/// RoleBinding and ClusterRoleBinding (`kubectl create rolebinding|clusterrolebinding`).
const ROLE_BINDING: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "subjects", Msg(RBAC_SUBJECT), Many, Drop),
    FieldDef(3, "roleRef", Msg(ROLE_REF), One, Drop),
];

/// `kubectl create serviceaccount`.
const SERVICE_ACCOUNT: &[FieldDef] = &[
    FieldDef(1, "metadata", Msg(OBJECT_META), One, Drop),
    FieldDef(2, "secrets", Unsupported, Many, Drop),
    FieldDef(
        3,
        "imagePullSecrets",
        Msg(LOCAL_OBJECT_REFERENCE),
        Many,
        Drop,
    ),
    FieldDef(4, "automountServiceAccountToken", Bool, One, Keep),
];

const BOUND_OBJECT_REFERENCE: &[FieldDef] = &[
    FieldDef(1, "kind", Str, One, Drop),
    FieldDef(2, "apiVersion", Str, One, Drop),
    FieldDef(3, "name", Str, One, Drop),
    FieldDef(4, "uid", Str, One, Drop),
];

/// `kubectl create token`'s TokenRequest spec.
const TOKEN_REQUEST_SPEC: &[FieldDef] = &[
    FieldDef(1, "audiences", Str, Many, Drop),
    FieldDef(3, "boundObjectRef", Msg(BOUND_OBJECT_REFERENCE), One, Drop),
    FieldDef(4, "expirationSeconds", Int, One, Keep),
];

/// The kinds decoded, with their apiVersion and message table.
const KINDS: &[(&str, &str, &[FieldDef])] = &[
    ("v1", "Namespace", object!(NAMESPACE_SPEC)),
    ("v1", "ConfigMap", CONFIG_MAP),
    ("v1", "Secret", SECRET),
    ("apps/v1", "Deployment", object!(DEPLOYMENT_SPEC)),
    ("batch/v1", "Job", object!(JOB_SPEC)),
    ("batch/v1", "CronJob", object!(CRON_JOB_SPEC)),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    (
        "authentication.k8s.io/v1",
        "TokenRequest",
        object!(TOKEN_REQUEST_SPEC),
    ),
    ("rbac.authorization.k8s.io/v1", "Role", ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", ROLE_BINDING),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        ROLE_BINDING,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        object!(ACCESS_REVIEW_SPEC),
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        object!(RULES_REVIEW_SPEC),
    ),
    // Its field 2 is `status`, which the client leaves empty.
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        object!(&[]),
    ),
];

/// A protobuf field: its number and payload.
enum Wire<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
    Fixed,
}

/// Decodes a protobuf object body into its JSON form: 415 for a kind without a table,
/// 400 when it is malformed.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let malformed = || ApiError::bad_request("invalid protobuf body");
    let unknown = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for field in fields(unknown).ok_or_else(malformed)? {
        match field {
            Wire::Bytes(1, type_meta) => {
                for f in fields(type_meta).ok_or_else(malformed)? {
                    match f {
                        Wire::Bytes(1, v) => api_version = text(v).ok_or_else(malformed)?,
                        Wire::Bytes(2, v) => kind = text(v).ok_or_else(malformed)?,
                        _ => {}
                    }
                }
            }
            Wire::Bytes(2, bytes) => raw = Some(bytes),
            _ => {}
        }
    }
    let Some((api_version, kind, table)) = KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
    else {
        return Err(ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf for {api_version} {kind} (send JSON or YAML, as `kubectl apply -f` does)"
        )));
    };
    let mut object = message(raw.unwrap_or_default(), table).ok_or_else(malformed)?;
    object.insert("apiVersion".into(), (*api_version).into());
    object.insert("kind".into(), (*kind).into());
    Ok(Value::Object(object))
}

/// Decodes one message by its table.
fn message(bytes: &[u8], table: &[FieldDef]) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for field in fields(bytes)? {
        let (number, payload) = match field {
            Wire::Varint(n, v) => (n, Payload::Varint(v)),
            Wire::Bytes(n, b) => (n, Payload::Bytes(b)),
            Wire::Fixed => continue,
        };
        let Some(FieldDef(_, name, ty, rep, zero)) = table.iter().find(|f| f.0 == number) else {
            continue; // a field newer than the table: not set by kubectl's generators
        };
        if let (Inline(inner), Payload::Bytes(bytes)) = (ty, &payload) {
            out.extend(message(bytes, inner)?);
            continue;
        }
        let value = value(payload, *ty)?;
        if value.is_null() || (*zero == Drop && *rep == One && is_zero(&value)) {
            continue;
        }
        match rep {
            Many => {
                let list = out.entry(*name).or_insert_with(|| json!([]));
                list.as_array_mut()?.push(value);
            }
            One if matches!(ty, StrMap | QuantityMap | BytesMap) => {
                let map = out.entry(*name).or_insert_with(|| json!({}));
                if let (Some(map), Value::Object(entry)) = (map.as_object_mut(), value) {
                    map.extend(entry);
                }
            }
            One => {
                out.insert((*name).into(), value);
            }
        }
    }
    Some(out)
}

enum Payload<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn value(payload: Payload<'_>, ty: Ty) -> Option<Value> {
    Some(match (ty, payload) {
        (Str, Payload::Bytes(b)) => text(b)?.into(),
        (Int, Payload::Varint(v)) => (v as i64).into(),
        (Bool, Payload::Varint(v)) => (v != 0).into(),
        (StrMap, Payload::Bytes(b)) => {
            let (key, value) = map_entry(b)?;
            json!({ key: text(value.unwrap_or_default())? })
        }
        (BytesMap, Payload::Bytes(b)) => {
            let (key, value) = map_entry(b)?;
            json!({ key: base64::engine::general_purpose::STANDARD.encode(value.unwrap_or_default()) })
        }
        (QuantityMap, Payload::Bytes(b)) => {
            let (key, value) = map_entry(b)?;
            let quantity = message(
                value.unwrap_or_default(),
                &[FieldDef(1, "q", Str, One, Drop)],
            )?;
            json!({ key: quantity.get("q").cloned().unwrap_or(json!("0")) })
        }
        (Quantity, Payload::Bytes(b)) => {
            let quantity = message(b, &[FieldDef(1, "q", Str, One, Drop)])?;
            quantity.get("q").cloned().unwrap_or(json!("0"))
        }
        (IntOrString, Payload::Bytes(b)) => int_or_string(b)?,
        (Time, Payload::Bytes(b)) => time(b)?,
        (Msg(table), Payload::Bytes(b)) => Value::Object(message(b, table)?),
        // A Go zero value (false, 0, "", an empty struct) is the field left unset.
        (Unsupported, Payload::Varint(0)) => Value::Null,
        (Unsupported, Payload::Bytes([])) => Value::Null,
        (Unsupported, _) => json!({"unsupported": true}),
        _ => return None,
    })
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

fn int_or_string(bytes: &[u8]) -> Option<Value> {
    let (mut kind, mut int, mut text_value) = (0, 0_i64, String::new());
    for field in fields(bytes)? {
        match field {
            Wire::Varint(1, v) => kind = v,
            Wire::Varint(2, v) => int = i64::from(v as i32),
            Wire::Bytes(3, v) => text_value = text(v)?,
            _ => {}
        }
    }
    Some(if kind == 1 {
        text_value.into()
    } else {
        int.into()
    })
}

fn time(bytes: &[u8]) -> Option<Value> {
    let mut seconds = 0_i64;
    for field in fields(bytes)? {
        if let Wire::Varint(1, v) = field {
            seconds = v as i64;
        }
    }
    if seconds == 0 {
        return Some(Value::Null);
    }
    let at = jiff::Timestamp::from_second(seconds).ok()?;
    Some(crate::k8s::time::rfc3339(at).into())
}

fn map_entry(bytes: &[u8]) -> Option<(String, Option<&[u8]>)> {
    let (mut key, mut value) = (String::new(), None);
    for field in fields(bytes)? {
        match field {
            Wire::Bytes(1, k) => key = text(k)?,
            Wire::Bytes(2, v) => value = Some(v),
            _ => {}
        }
    }
    Some((key, value))
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// Splits a message into its fields; `None` if it is malformed.
fn fields(mut bytes: &[u8]) -> Option<Vec<Wire<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let number = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => out.push(Wire::Varint(number, varint(&mut bytes)?)),
            1 => {
                bytes = bytes.get(8..)?;
                out.push(Wire::Fixed);
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (payload, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                bytes = rest;
                out.push(Wire::Bytes(number, payload));
            }
            5 => {
                bytes = bytes.get(4..)?;
                out.push(Wire::Fixed);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tag or length as a varint (values below 2^14 are enough here).
    fn varint(value: usize) -> Vec<u8> {
        match value {
            0..128 => vec![u8::try_from(value).unwrap()],
            _ => vec![
                u8::try_from(value % 128 + 128).unwrap(),
                u8::try_from(value / 128).unwrap(),
            ],
        }
    }

    fn field(number: usize, payload: &[u8]) -> Vec<u8> {
        [
            varint(number << 3 | 2),
            varint(payload.len()),
            payload.to_vec(),
        ]
        .concat()
    }

    fn varint_field(number: usize, value: u8) -> Vec<u8> {
        [varint(number << 3), vec![value]].concat()
    }

    fn object(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    fn namespace(kind: &str) -> Vec<u8> {
        let label = [field(1, b"team"), field(2, b"edge")].concat();
        let meta = [field(1, b"x"), field(11, &label), field(4, b"")].concat();
        object("v1", kind, &field(1, &meta))
    }

    #[test]
    fn a_protobuf_namespace_decodes_with_name_and_labels() {
        let ns = decode(&namespace("Namespace")).unwrap();
        assert_eq!(ns["metadata"]["name"], "x");
        assert_eq!(ns["metadata"]["labels"]["team"], "edge");
        assert!(
            ns["metadata"].get("selfLink").is_none(),
            "empty strings are dropped"
        );
    }

    /// What `kubectl create deployment web --image=app:v1 --replicas=0` sends, in part.
    #[test]
    fn a_deployment_keeps_a_zero_replica_count_and_names_unsupported_fields() {
        let container = [
            field(1, b"web"),
            field(2, b"app:v1"),
            varint_field(16, 0),
            field(8, b""),
        ]
        .concat();
        let port = [varint_field(3, 80), field(4, b"TCP")].concat();
        let container = [container, field(6, &port), field(14, b"IfNotPresent")].concat();
        let pod_spec = [
            field(2, &container),
            varint_field(11, 1),
            field(6, b"ClusterFirst"),
            varint_field(30, 1),
        ]
        .concat();
        let template = [
            field(
                1,
                &field(11, &[field(1, b"app"), field(2, b"web")].concat()),
            ),
            field(2, &pod_spec),
        ]
        .concat();
        let spec = [varint_field(1, 0), field(3, &template), field(4, b"")].concat();
        let raw = [field(1, &field(1, b"web")), field(2, &spec), field(3, b"")].concat();
        let d = decode(&object("apps/v1", "Deployment", &raw)).unwrap();
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["spec"]["replicas"], 0, "a pointer field keeps its zero");
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "app:v1");
        assert!(container.get("stdin").is_none(), "false is a Go zero value");
        assert_eq!(container["resources"], json!({}));
        assert_eq!(
            container["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(d["spec"]["template"]["spec"]["enableServiceLinks"], true);
        assert_eq!(
            d["spec"]["template"]["spec"]["hostNetwork"],
            json!({"unsupported": true})
        );
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert!(d.get("status").is_none());
    }

    #[test]
    fn int_or_string_and_quantities_decode() {
        let surge = [varint_field(1, 1), field(3, b"25%")].concat();
        let unavailable = [varint_field(1, 0), varint_field(2, 2)].concat();
        let rolling = [field(1, &unavailable), field(2, &surge)].concat();
        let decoded = message(&rolling, ROLLING_UPDATE).unwrap();
        assert_eq!(decoded["maxSurge"], "25%");
        assert_eq!(decoded["maxUnavailable"], 2);
        let limit = [field(1, b"memory"), field(2, &field(1, b"64Mi"))].concat();
        let resources = message(&field(1, &limit), RESOURCES).unwrap();
        assert_eq!(resources["limits"]["memory"], "64Mi");
    }

    /// What `kubectl auth can-i delete pods` sends.
    #[test]
    fn an_access_review_decodes_with_its_attributes() {
        let attributes = [field(1, b"default"), field(2, b"delete"), field(5, b"pods")].concat();
        let raw = [field(1, b""), field(2, &field(1, &attributes))].concat();
        let review = decode(&object(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            review["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "delete", "resource": "pods"})
        );
    }

    #[test]
    fn a_probe_inlines_its_handler_and_marks_exec() {
        let port = [varint_field(1, 1), field(3, b"http")].concat();
        let header = [field(1, b"X-Probe"), field(2, b"1")].concat();
        let get = [field(1, b"/healthz"), field(2, &port), field(5, &header)].concat();
        let probe = [
            field(1, &field(2, &get)),
            varint_field(4, 2),
            varint_field(2, 0),
        ]
        .concat();
        let decoded = message(&probe, PROBE).unwrap();
        assert_eq!(
            Value::Object(decoded),
            json!({"httpGet": {"path": "/healthz", "port": "http",
                   "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "periodSeconds": 2})
        );
        let exec = message(&field(1, &field(1, &field(1, b"true"))), PROBE).unwrap();
        assert_eq!(exec["exec"], json!({"unsupported": true}));
    }

    #[test]
    fn env_sources_mounts_and_volumes_decode_and_other_volume_types_are_marked() {
        let reference = field(1, b"app");
        let key_ref = [field(1, &reference), field(2, b"mode")].concat();
        let env = [field(1, b"MODE"), field(3, &field(3, &key_ref))].concat();
        let env_from = [field(1, b"X_"), field(3, &field(1, &field(1, b"creds")))].concat();
        let mount = [field(1, b"conf"), varint_field(2, 1), field(3, b"/etc/app")].concat();
        let container = [
            field(1, b"c"),
            field(7, &env),
            field(19, &env_from),
            field(9, &mount),
        ]
        .concat();
        let config_map = [field(1, &reference), varint_field(3, 0o44)].concat();
        let volumes = [
            field(
                1,
                &[field(1, b"conf"), field(2, &field(19, &config_map))].concat(),
            ),
            field(1, &[field(1, b"tmp"), field(2, &field(2, b""))].concat()),
            field(
                1,
                &[field(1, b"host"), field(2, &field(1, &field(1, b"/etc")))].concat(),
            ),
            field(
                1,
                &[
                    field(1, b"scratch"),
                    field(2, &field(2, &field(2, &field(1, b"1Mi")))),
                ]
                .concat(),
            ),
            field(
                1,
                &[field(1, b"share"), field(2, &field(7, &field(1, b"srv")))].concat(),
            ),
        ]
        .concat();
        let spec = message(&[field(2, &container), volumes].concat(), POD_SPEC).unwrap();
        assert_eq!(
            Value::Object(spec),
            json!({
                "containers": [{"name": "c",
                    "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}}],
                    "envFrom": [{"prefix": "X_", "secretRef": {"name": "creds"}}],
                    "volumeMounts": [{"name": "conf", "readOnly": true, "mountPath": "/etc/app"}]}],
                "volumes": [
                    {"name": "conf", "configMap": {"name": "app", "defaultMode": 36}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": "/etc"}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                    {"name": "share", "nfs": {"unsupported": true}}
                ]
            })
        );
    }

    #[test]
    fn a_secret_keeps_its_bytes_as_base64_and_its_string_data() {
        let meta = field(1, &field(1, b"s"));
        let bytes = field(2, &[field(1, b"bin"), field(2, &[0, 1, 2])].concat());
        let text = field(4, &[field(1, b"user"), field(2, b"admin")].concat());
        let raw = [meta, bytes, field(3, b"Opaque"), text].concat();
        let secret = decode(&object("v1", "Secret", &raw)).unwrap();
        assert_eq!(
            secret,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"bin": "AAEC"}, "type": "Opaque", "stringData": {"user": "admin"}})
        );
    }

    #[test]
    fn other_kinds_are_unsupported_and_garbage_is_refused() {
        let refused = decode(&namespace("LimitRange")).unwrap_err();
        assert_eq!(refused.code, axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        for garbage in [&b"k8s\0\x0a\xff"[..], b"{}", b"k8s\0\x0f"] {
            assert!(decode(garbage).is_err());
        }
    }
}
