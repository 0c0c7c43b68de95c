//! A container's probes as the agent runs them ([`wasmfleet_protocol::pod::probe`]), from
//! its stored spec: named ports resolved to the container's `containerPort`s, Kubernetes'
//! defaults filled where a pod stored before defaulting lacks them. Admission
//! (`api::probes`) refused everything else, so a probe that still does not convert (a
//! named port the container does not declare) is left out.

use k8s_openapi::api::core::v1::{Container, Probe as KubeProbe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmfleet_protocol::pod::probe::{
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_PERIOD_SECONDS, DEFAULT_SUCCESS_THRESHOLD,
    DEFAULT_TIMEOUT_SECONDS,
};
use wasmfleet_protocol::pod::{Probe, ProbeAction, Probes};

/// The probes of `container`.
pub fn of(container: &Container) -> Probes {
    let convert = |probe: &Option<KubeProbe>| probe.as_ref().and_then(|p| probe_of(container, p));
    Probes {
        startup: convert(&container.startup_probe),
        liveness: convert(&container.liveness_probe),
        readiness: convert(&container.readiness_probe),
    }
}

fn probe_of(container: &Container, probe: &KubeProbe) -> Option<Probe> {
    let action = if let Some(tcp) = &probe.tcp_socket {
        ProbeAction::TcpSocket {
            port: port(container, &tcp.port)?,
        }
    } else {
        let http = probe.http_get.as_ref()?;
        ProbeAction::HttpGet {
            port: port(container, &http.port)?,
            path: http.path.clone().unwrap_or_else(|| "/".into()),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    };
    let seconds = |value: Option<i32>, default: u32| {
        value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default)
    };
    Some(Probe {
        action,
        initial_delay_seconds: seconds(probe.initial_delay_seconds, 0),
        period_seconds: seconds(probe.period_seconds, DEFAULT_PERIOD_SECONDS).max(1),
        timeout_seconds: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS).max(1),
        success_threshold: seconds(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD).max(1),
        failure_threshold: seconds(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD).max(1),
    })
}

/// A port number, or the number of the container's `containerPort` of that name.
fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("a container")
    }

    #[test]
    fn named_ports_resolve_and_missing_timings_get_kubernetes_defaults() {
        let c = container(json!({
            "name": "web", "image": "web:v1",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "http", "path": "/ready",
                "httpHeaders": [{"name": "X-A", "value": "b"}]}, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 7}, "failureThreshold": 1},
        }));
        let probes = of(&c);
        assert_eq!(probes.startup, None);
        let readiness = probes.readiness.expect("readiness");
        assert_eq!(
            readiness.action,
            ProbeAction::HttpGet {
                port: 8080,
                path: "/ready".into(),
                headers: vec![("X-A".into(), "b".into())]
            }
        );
        assert_eq!(
            (readiness.period_seconds, readiness.timeout_seconds),
            (2, 1)
        );
        assert_eq!(
            (readiness.success_threshold, readiness.failure_threshold),
            (1, 3)
        );
        let liveness = probes.liveness.expect("liveness");
        assert_eq!(liveness.action, ProbeAction::TcpSocket { port: 7 });
        assert_eq!(
            (liveness.period_seconds, liveness.failure_threshold),
            (10, 1)
        );
    }

    #[test]
    fn a_named_port_the_container_does_not_declare_leaves_the_probe_out() {
        let c = container(json!({"name": "web", "image": "web:v1",
            "livenessProbe": {"tcpSocket": {"port": "nope"}}}));
        assert!(of(&c).is_empty());
    }
}
