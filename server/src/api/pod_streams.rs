//! The pod subresources kubectl opens streams or debug containers on (`exec`, `attach`,
//! `portforward`, `ephemeralcontainers`): a Wasm pod has none of them, so each answers with
//! a `Status` saying why and what to use instead (`kubectl exec`, `cp`, `attach`,
//! `port-forward` and `debug` print it), never a bare 404.
//!
//! `kubectl cp` is `exec` of `tar` in the container, and is told so.

use axum::extract::Query;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::ApiContext;
use super::kinds::Subresource;
use super::status::ApiError;

/// `pods/exec` (and `kubectl cp`).
pub const EXEC: Subresource = Subresource {
    name: "exec",
    kind: "PodExecOptions",
    group_version: None,
    verbs: &["create", "get"],
    route: exec_route,
};

/// `pods/attach`.
pub const ATTACH: Subresource = Subresource {
    name: "attach",
    kind: "PodAttachOptions",
    group_version: None,
    verbs: &["create", "get"],
    route: attach_route,
};

/// `pods/portforward`.
pub const PORT_FORWARD: Subresource = Subresource {
    name: "portforward",
    kind: "PodPortForwardOptions",
    group_version: None,
    verbs: &["create", "get"],
    route: port_forward_route,
};

/// `pods/ephemeralcontainers` (`kubectl debug`).
pub const EPHEMERAL_CONTAINERS: Subresource = Subresource {
    name: "ephemeralcontainers",
    kind: "Pod",
    group_version: None,
    verbs: &["get", "patch", "update"],
    route: ephemeral_route,
};

/// The methods kubectl uses on these subresources (GET and POST upgrade to a stream, PATCH
/// and PUT change ephemeral containers).
fn methods() -> MethodFilter {
    MethodFilter::GET
        .or(MethodFilter::POST)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::PUT)
}

fn exec_route() -> MethodRouter<ApiContext> {
    on(methods(), exec)
}

fn attach_route() -> MethodRouter<ApiContext> {
    on(methods(), || async {
        Err::<(), _>(ApiError::bad_request(ATTACH_MESSAGE))
    })
}

fn port_forward_route() -> MethodRouter<ApiContext> {
    on(methods(), || async {
        Err::<(), _>(ApiError::bad_request(PORT_FORWARD_MESSAGE))
    })
}

fn ephemeral_route() -> MethodRouter<ApiContext> {
    on(methods(), || async {
        Err::<(), _>(ApiError::bad_request(DEBUG_MESSAGE))
    })
}

const EXEC_MESSAGE: &str = "wasm pods have no exec: a WebAssembly container runs one module in a \
     sandbox, with no shell, no other programs and no filesystem to run them from; use \
     `kubectl logs` to see what it prints";
const CP_MESSAGE: &str = "wasm pods have no exec, which `kubectl cp` needs (it runs tar in the \
     container): a WebAssembly container has no filesystem to copy from or to";
const ATTACH_MESSAGE: &str = "wasm pods have no attach: a WebAssembly container's stdin is \
     always empty and it has no terminal; use `kubectl logs -f` to follow its output";
const PORT_FORWARD_MESSAGE: &str = "port-forward is not supported by wasmfleet yet: a pod's \
     sockets live on its node's loopback alias of the pod IP, which the API server cannot \
     reach; connect from another pod to the pod IP (`kubectl get pod -o wide`)";
const DEBUG_MESSAGE: &str = "wasm pods have no ephemeral containers: `kubectl debug` cannot add \
     a container to a running pod; create a new pod with the module to debug instead";

/// `exec`, or `cp` when the command is `tar`.
async fn exec(Query(query): Query<Vec<(String, String)>>) -> Result<(), ApiError> {
    let command = query.iter().find(|(k, _)| k == "command");
    let message = match command.map(|(_, v)| v.as_str()) {
        Some("tar") => CP_MESSAGE,
        _ => EXEC_MESSAGE,
    };
    Err(ApiError::bad_request(message))
}
