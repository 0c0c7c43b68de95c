//! Container probes at admission: what `startupProbe`, `livenessProbe` and
//! `readinessProbe` may hold ([`PROBE`], checked by [`check`]) and the defaults Kubernetes
//! gives them ([`apply_defaults`]). Pure functions over JSON.
//!
//! A Wasm pod has no processes to `exec` and no gRPC health service in its runtime, so
//! those handlers are refused by name; `tcpSocket` and `httpGet` (plain HTTP) probe the
//! pod's own IP, so `host` is refused too. A port is a number or the name of one of the
//! container's `containerPort`s; a number need not be declared (Kubernetes probes the pod
//! IP whatever the pod declares).

use serde_json::{Map, Value};
use wasmfleet_protocol::pod::probe::{
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_PERIOD_SECONDS, DEFAULT_SUCCESS_THRESHOLD,
    DEFAULT_TIMEOUT_SECONDS,
};

use super::status::Cause;
use super::validation::{Shape, is_port_name};

/// The probe fields of a container, as Kubernetes names them.
pub const FIELDS: [&str; 3] = ["startupProbe", "livenessProbe", "readinessProbe"];

/// The longest `httpGet.path`.
pub const MAX_PATH_BYTES: usize = 2048;
/// The most `httpGet.httpHeaders`.
pub const MAX_HEADERS: usize = 32;
/// The longest header name or value.
pub const MAX_HEADER_BYTES: usize = 4096;

const HTTP_HEADER: Shape = Shape::Object(&[("name", Shape::Str), ("value", Shape::Str)]);
const TCP_SOCKET: Shape = Shape::Object(&[("port", Shape::IntOrString), ("host", Shape::Str)]);
const HTTP_GET: Shape = Shape::Object(&[
    ("port", Shape::IntOrString),
    ("path", Shape::Str),
    ("scheme", Shape::Str),
    ("host", Shape::Str),
    ("httpHeaders", Shape::List(&HTTP_HEADER)),
]);

/// What a probe may hold (`exec` and `grpc` are let through the shape check so that
/// [`check`] can say why they are refused).
pub const PROBE: Shape = Shape::Object(&[
    ("tcpSocket", TCP_SOCKET),
    ("httpGet", HTTP_GET),
    ("exec", Shape::Ignored),
    ("grpc", Shape::Ignored),
    ("initialDelaySeconds", Shape::Int),
    ("periodSeconds", Shape::Int),
    ("timeoutSeconds", Shape::Int),
    ("successThreshold", Shape::Int),
    ("failureThreshold", Shape::Int),
]);

/// Checks the probes of `container` (at `path`, `spec.containers[i]`); the shapes were
/// checked already.
pub fn check(container: &Value, path: &str, causes: &mut Vec<Cause>) {
    for field in FIELDS {
        if let Some(probe) = container.get(field).filter(|p| p.is_object()) {
            check_probe(container, probe, field, &format!("{path}.{field}"), causes);
        }
    }
}

fn check_probe(container: &Value, probe: &Value, field: &str, path: &str, causes: &mut Vec<Cause>) {
    for (handler, why) in [
        ("exec", "a Wasm pod has no processes to exec"),
        (
            "grpc",
            "wasmfleet probes pods over tcpSocket and httpGet only",
        ),
    ] {
        if probe.get(handler).is_some_and(|h| !h.is_null()) {
            causes.push(Cause::new(
                "FieldValueNotSupported",
                format!("{path}.{handler}"),
                format!("Unsupported value: {why}: use tcpSocket or httpGet"),
            ));
        }
    }
    let handlers: Vec<&str> = ["tcpSocket", "httpGet", "exec", "grpc"]
        .into_iter()
        .filter(|h| probe.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => causes.push(Cause::new(
            "FieldValueRequired",
            path,
            "Required value: must specify a handler type (tcpSocket or httpGet)",
        )),
        [_] => {}
        [_, second, ..] => causes.push(Cause::new(
            "FieldValueForbidden",
            format!("{path}.{second}"),
            "Forbidden: may not specify more than 1 handler type",
        )),
    }
    if let Some(tcp) = probe.get("tcpSocket").filter(|v| v.is_object()) {
        check_target(container, tcp, &format!("{path}.tcpSocket"), causes);
    }
    if let Some(http) = probe.get("httpGet").filter(|v| v.is_object()) {
        let at = format!("{path}.httpGet");
        check_target(container, http, &at, causes);
        check_http(http, &at, causes);
    }
    check_timings(probe, field, path, causes);
}

/// `port` (required, a number or a declared name) and no `host`.
fn check_target(container: &Value, target: &Value, path: &str, causes: &mut Vec<Cause>) {
    if target.get("host").is_some_and(|h| !h.is_null()) {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{path}.host"),
            "Unsupported value: probes connect to the pod's own IP",
        ));
    }
    let invalid =
        |message: String| Cause::new("FieldValueInvalid", format!("{path}.port"), message);
    match target.get("port") {
        None | Some(Value::Null) => {
            causes.push(super::validation::required(&format!("{path}.port")))
        }
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1..=65535) => {}
            _ => causes.push(invalid(format!(
                "Invalid value: {n}: must be between 1 and 65535, inclusive"
            ))),
        },
        Some(Value::String(name)) if !is_port_name(name) => causes.push(invalid(format!(
            "Invalid value: {name:?}: must be a port number or an IANA service name"
        ))),
        Some(Value::String(name)) if !declares_port(container, name) => {
            causes.push(invalid(format!(
                "Invalid value: {name:?}: the container declares no containerPort of that name"
            )))
        }
        Some(_) => {}
    }
}

fn declares_port(container: &Value, name: &str) -> bool {
    container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// `scheme` (HTTP only), `path` and `httpHeaders`: nothing that could break the request.
fn check_http(http: &Value, path: &str, causes: &mut Vec<Cause>) {
    match http.get("scheme").and_then(Value::as_str) {
        None | Some("HTTP") => {}
        Some("HTTPS") => causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{path}.scheme"),
            "Unsupported value: \"HTTPS\": wasmfleet probes speak plain HTTP only so far",
        )),
        Some(other) => causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{path}.scheme"),
            format!("Unsupported value: {other:?}: supported values: \"HTTP\""),
        )),
    }
    if let Some(target) = http.get("path").and_then(Value::as_str) {
        let printable = target.bytes().all(|b| b.is_ascii_graphic());
        if !target.is_empty() && (!target.starts_with('/') || !printable) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.path"),
                format!("Invalid value: {target:?}: must start with '/' and hold no spaces or control characters"),
            ));
        } else if target.len() > MAX_PATH_BYTES {
            causes.push(too_long(&format!("{path}.path"), MAX_PATH_BYTES));
        }
    }
    check_headers(
        http.get("httpHeaders"),
        &format!("{path}.httpHeaders"),
        causes,
    );
}

fn check_headers(headers: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let list = headers
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if list.len() > MAX_HEADERS {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!(
                "Too many: {}: must have at most {MAX_HEADERS} items",
                list.len()
            ),
        ));
        return;
    }
    for (i, header) in list.iter().enumerate() {
        let name = header.get("name").and_then(Value::as_str).unwrap_or("");
        let value = header.get("value").and_then(Value::as_str).unwrap_or("");
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}[{i}].name"),
                format!("Invalid value: {name:?}: must be an HTTP header name"),
            ));
        } else if name.len() > MAX_HEADER_BYTES {
            causes.push(too_long(&format!("{path}[{i}].name"), MAX_HEADER_BYTES));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}[{i}].value"),
                "Invalid value: must not hold control characters",
            ));
        } else if value.len() > MAX_HEADER_BYTES {
            causes.push(too_long(&format!("{path}[{i}].value"), MAX_HEADER_BYTES));
        }
    }
}

fn too_long(path: &str, limit: usize) -> Cause {
    Cause::new(
        "FieldValueTooLong",
        path,
        format!("Too long: must have at most {limit} bytes"),
    )
}

/// The timings: within Kubernetes' ranges, and `successThreshold` 1 for liveness and
/// startup probes.
fn check_timings(probe: &Value, field: &str, path: &str, causes: &mut Vec<Cause>) {
    let max = i64::from(i32::MAX);
    for (name, min) in [
        ("initialDelaySeconds", 0),
        ("periodSeconds", 1),
        ("timeoutSeconds", 1),
        ("successThreshold", 1),
        ("failureThreshold", 1),
    ] {
        let Some(n) = probe.get(name).and_then(Value::as_i64) else {
            continue;
        };
        if !(min..=max).contains(&n) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.{name}"),
                format!("Invalid value: {n}: must be between {min} and {max}, inclusive"),
            ));
        } else if name == "successThreshold" && field != "readinessProbe" && n != 1 {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.{name}"),
                format!("Invalid value: {n}: must be 1"),
            ));
        }
    }
}

/// Fills Kubernetes' probe defaults into every probe of `container`.
pub fn apply_defaults(container: &mut Value) {
    let Some(container) = container.as_object_mut() else {
        return;
    };
    for field in FIELDS {
        if let Some(Value::Object(probe)) = container.get_mut(field) {
            default_probe(probe);
        }
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    for (name, value) in [
        ("periodSeconds", DEFAULT_PERIOD_SECONDS),
        ("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
        ("successThreshold", DEFAULT_SUCCESS_THRESHOLD),
        ("failureThreshold", DEFAULT_FAILURE_THRESHOLD),
    ] {
        probe.entry(name).or_insert_with(|| value.into());
    }
    if let Some(Value::Object(http)) = probe.get_mut("httpGet") {
        http.entry("path").or_insert_with(|| "/".into());
        http.entry("scheme").or_insert_with(|| "HTTP".into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn causes(container: Value) -> Vec<(String, String)> {
        let mut causes = Vec::new();
        check(&container, "spec.containers[0]", &mut causes);
        causes.into_iter().map(|c| (c.field, c.message)).collect()
    }

    fn fields(container: Value) -> Vec<String> {
        causes(container).into_iter().map(|(f, _)| f).collect()
    }

    fn with(field: &str, probe: Value) -> Value {
        json!({"name": "web", "image": "web:v1",
               "ports": [{"name": "http", "containerPort": 8080}],
               field: probe})
    }

    #[test]
    fn tcp_and_http_probes_on_numbers_and_declared_names_are_valid() {
        assert!(fields(with("livenessProbe", json!({"tcpSocket": {"port": 9}}))).is_empty());
        let http = json!({"httpGet": {"port": "http", "path": "/healthz?x=1", "scheme": "HTTP",
            "httpHeaders": [{"name": "X-Probe", "value": "yes please"}]},
            "initialDelaySeconds": 0, "periodSeconds": 1, "successThreshold": 2});
        assert!(fields(with("readinessProbe", http)).is_empty());
    }

    #[test]
    fn exec_grpc_and_https_are_refused_by_name() {
        let exec = causes(with(
            "livenessProbe",
            json!({"exec": {"command": ["true"]}}),
        ));
        assert_eq!(exec[0].0, "spec.containers[0].livenessProbe.exec");
        assert!(exec[0].1.contains("no processes to exec"), "{exec:?}");
        assert_eq!(
            fields(with("startupProbe", json!({"grpc": {"port": 9}}))),
            ["spec.containers[0].startupProbe.grpc"]
        );
        let https = causes(with(
            "readinessProbe",
            json!({"httpGet": {"port": 80, "scheme": "HTTPS"}}),
        ));
        assert_eq!(
            https[0].0,
            "spec.containers[0].readinessProbe.httpGet.scheme"
        );
        assert!(https[0].1.contains("HTTPS"));
    }

    #[test]
    fn handlers_ports_hosts_and_timings_are_checked() {
        let at = |s: &str| format!("spec.containers[0].livenessProbe{s}");
        assert_eq!(
            fields(with("livenessProbe", json!({"periodSeconds": 1}))),
            [at("")]
        );
        assert_eq!(
            fields(with(
                "livenessProbe",
                json!({"tcpSocket": {"port": 1}, "httpGet": {"port": 1}})
            )),
            [at(".httpGet")]
        );
        assert_eq!(
            fields(with("livenessProbe", json!({"tcpSocket": {"port": 0}}))),
            [at(".tcpSocket.port")]
        );
        assert_eq!(
            fields(with(
                "livenessProbe",
                json!({"tcpSocket": {"port": "metrics"}})
            )),
            [at(".tcpSocket.port")]
        );
        assert_eq!(
            fields(with(
                "livenessProbe",
                json!({"tcpSocket": {"port": 1, "host": "10.0.0.1"}})
            )),
            [at(".tcpSocket.host")]
        );
        assert_eq!(
            fields(with(
                "livenessProbe",
                json!({"tcpSocket": {"port": 1}, "successThreshold": 2, "periodSeconds": 0})
            )),
            [at(".periodSeconds"), at(".successThreshold")]
        );
    }

    #[test]
    fn paths_and_headers_that_could_break_the_request_are_refused() {
        let at = |s: &str| format!("spec.containers[0].readinessProbe.httpGet{s}");
        let probe = |http: Value| with("readinessProbe", json!({"httpGet": http}));
        assert_eq!(
            fields(probe(json!({"port": 1, "path": "/a b"}))),
            [at(".path")]
        );
        assert_eq!(
            fields(probe(
                json!({"port": 1, "path": format!("/{}", "a".repeat(MAX_PATH_BYTES))})
            )),
            [at(".path")]
        );
        assert_eq!(
            fields(probe(
                json!({"port": 1, "httpHeaders": [{"name": "Bad Name", "value": "v\r\nX: y"}]})
            )),
            [at(".httpHeaders[0].name"), at(".httpHeaders[0].value")]
        );
        let many: Vec<Value> = (0..=MAX_HEADERS)
            .map(|_| json!({"name": "A", "value": "b"}))
            .collect();
        assert_eq!(
            fields(probe(json!({"port": 1, "httpHeaders": many}))),
            [at(".httpHeaders")]
        );
    }

    #[test]
    fn defaults_are_kubernetes_ones_and_keep_what_was_given() {
        let mut container = with(
            "livenessProbe",
            json!({"httpGet": {"port": 80}, "periodSeconds": 1}),
        );
        apply_defaults(&mut container);
        assert_eq!(
            container["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "periodSeconds": 1,
                   "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
        );
    }
}
