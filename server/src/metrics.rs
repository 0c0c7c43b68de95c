//! The server's Prometheus metrics, served at `/metrics` in the Prometheus text format
//! (0.0.4, what kube-apiserver serves), behind the same authentication as the API
//! (`kubectl get --raw /metrics`, or a scraper with a bearer token).
//!
//! [`Metrics`] is one cheap handle (clones share the registry) that the API, the fleet
//! link and the scheduler count into as things happen: requests by method and code and
//! their latency, open watches, MQTT messages in and out, scheduling passes and their
//! latency. What the cluster holds (nodes by readiness, pods by phase, the store's
//! revision and writes) is read from the informer's cache and the store at each scrape,
//! so nothing else has to keep those counts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::informer::Cache;
use crate::k8s::conditions::condition_status;
use crate::store::Store;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

/// Labels of a request's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// Labels of MQTT traffic.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// The server's metrics (see the module docs). Clones share everything.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabel, Histogram>,
    watches: Gauge,
    mqtt: Family<DirectionLabel, Counter>,
    scheduling: Histogram,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, with nothing read at scrape time (see [`Metrics::collect_from`]).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "wasmfleet_apiserver_requests",
            "API requests by HTTP method and response code",
            requests.clone(),
        );
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "wasmfleet_apiserver_request_duration_seconds",
            "API request latency by HTTP method, watches and log follows left out",
            latency.clone(),
        );
        let watches = Gauge::default();
        registry.register(
            "wasmfleet_apiserver_watches",
            "Watches open now",
            watches.clone(),
        );
        let mqtt = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "wasmfleet_mqtt_messages",
            "MQTT PUBLISH packets of the server's fleet link, received and sent",
            mqtt.clone(),
        );
        let scheduling = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "wasmfleet_scheduler_pass_duration_seconds",
            "How long one scheduling pass (every pending pod) took",
            scheduling.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                watches,
                mqtt,
                scheduling,
            }),
        }
    }

    /// A set that also reports, at each scrape, what `store` and `cache` hold.
    pub fn collect_from(store: Store, cache: Cache) -> Self {
        let mut metrics = Self::new();
        if let Some(inner) = Arc::get_mut(&mut metrics.inner) {
            inner
                .registry
                .register_collector(Box::new(ClusterCollector { store, cache }));
        }
        metrics
    }

    /// Counts one answered request (its latency too, unless `streamed`: a watch or a log
    /// follow lasts as long as its client wants).
    pub fn request(&self, method: &str, code: u16, elapsed: Duration, streamed: bool) {
        let labels = RequestLabels {
            method: method.to_owned(),
            code: code.to_string(),
        };
        self.inner.requests.get_or_create(&labels).inc();
        if !streamed {
            let method = MethodLabel {
                method: labels.method,
            };
            let latency = self.inner.latency.get_or_create(&method);
            latency.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts an open watch until the returned guard is dropped.
    pub fn watch(&self) -> WatchGuard {
        self.inner.watches.inc();
        WatchGuard(self.inner.watches.clone())
    }

    /// Counts one MQTT message received by the fleet link.
    pub fn mqtt_received(&self) {
        self.mqtt("received");
    }

    /// Counts one MQTT message sent by the fleet link.
    pub fn mqtt_sent(&self) {
        self.mqtt("sent");
    }

    fn mqtt(&self, direction: &'static str) {
        let labels = DirectionLabel { direction };
        self.inner.mqtt.get_or_create(&labels).inc();
    }

    /// Records how long a scheduling pass took.
    pub fn scheduling_pass(&self, elapsed: Duration) {
        self.inner.scheduling.observe(elapsed.as_secs_f64());
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// Counts a watch as open while it lives.
#[derive(Debug)]
pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the cluster holds, read at each scrape.
struct ClusterCollector {
    store: Store,
    cache: Cache,
}

impl fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCollector").finish_non_exhaustive()
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = ClusterCounts::of(&self.cache);
        let help = "Nodes by their Ready condition";
        labelled_gauges(
            &mut encoder,
            "wasmfleet_nodes",
            help,
            "ready",
            &counts.nodes,
        )?;
        let help = "Pods by phase";
        labelled_gauges(&mut encoder, "wasmfleet_pods", help, "phase", &counts.pods)?;
        let revision = ConstGauge::new(i64::try_from(self.store.revision()).unwrap_or(i64::MAX));
        let family = encoder.encode_descriptor(
            "wasmfleet_store_revision",
            "The store's revision (every committed write raises it)",
            None,
            revision.metric_type(),
        )?;
        revision.encode(family)?;
        let writes = ConstCounter::new(self.store.writes());
        let family = encoder.encode_descriptor(
            "wasmfleet_store_writes",
            "Write transactions the store committed since the server started",
            None,
            writes.metric_type(),
        )?;
        writes.encode(family)
    }
}

/// One gauge family with a value per label value.
fn labelled_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, i64)],
) -> Result<(), fmt::Error> {
    let kind = ConstGauge::new(0_i64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, count) in values {
        ConstGauge::new(*count).encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// Nodes by readiness and pods by phase.
#[derive(Debug, Default, PartialEq, Eq)]
struct ClusterCounts {
    nodes: Vec<(&'static str, i64)>,
    pods: Vec<(&'static str, i64)>,
}

/// The pod phases, in Kubernetes' order.
const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

impl ClusterCounts {
    fn of(cache: &Cache) -> Self {
        let nodes = cache.list("nodes");
        let pods = cache.list("pods");
        Self::count(nodes.iter().map(|n| &**n), pods.iter().map(|p| &**p))
    }

    fn count<'a>(
        nodes: impl Iterator<Item = &'a Value>,
        pods: impl Iterator<Item = &'a Value>,
    ) -> Self {
        let mut ready = [("true", 0), ("false", 0), ("unknown", 0)];
        for node in nodes {
            let slot = match condition_status(node, "Ready") {
                Some("True") => 0,
                Some("False") => 1,
                _ => 2,
            };
            ready[slot].1 += 1;
        }
        let mut phases = PHASES.map(|phase| (phase, 0));
        for pod in pods {
            let phase = pod.pointer("/status/phase").and_then(Value::as_str);
            let slot = PHASES.iter().position(|p| Some(*p) == phase).unwrap_or(0);
            phases[slot].1 += 1;
        }
        ClusterCounts {
            nodes: ready.to_vec(),
            pods: phases.to_vec(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_watches_and_mqtt_are_counted_in_prometheus_text() {
        let metrics = Metrics::new();
        metrics.request("GET", 200, Duration::from_millis(3), false);
        metrics.request("GET", 200, Duration::from_millis(5), false);
        metrics.request("GET", 200, Duration::from_secs(60), true);
        metrics.request("POST", 422, Duration::from_millis(1), false);
        let watch = metrics.watch();
        let ended = metrics.watch();
        drop(ended);
        metrics.mqtt_received();
        metrics.mqtt_sent();
        metrics.mqtt_sent();
        metrics.scheduling_pass(Duration::from_micros(300));
        let text = metrics.render().unwrap();
        for line in [
            "# TYPE wasmfleet_apiserver_requests_total counter",
            "wasmfleet_apiserver_requests_total{method=\"GET\",code=\"200\"} 3",
            "wasmfleet_apiserver_requests_total{method=\"POST\",code=\"422\"} 1",
            "wasmfleet_apiserver_request_duration_seconds_count{method=\"GET\"} 2",
            "wasmfleet_apiserver_watches 1",
            "wasmfleet_mqtt_messages_total{direction=\"sent\"} 2",
            "wasmfleet_mqtt_messages_total{direction=\"received\"} 1",
            "wasmfleet_scheduler_pass_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        drop(watch);
    }

    #[test]
    fn nodes_are_counted_by_readiness_and_pods_by_phase() {
        let nodes = [
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            json!({"status": {}}),
        ];
        let pods = [
            json!({"status": {"phase": "Running"}}),
            json!({"status": {"phase": "Running"}}),
            json!({"status": {"phase": "Failed"}}),
            json!({}),
        ];
        let counts = ClusterCounts::count(nodes.iter(), pods.iter());
        assert_eq!(
            counts.nodes,
            [("true", 1), ("false", 0), ("unknown", 2)].to_vec()
        );
        assert_eq!(
            counts.pods,
            [
                ("Pending", 1),
                ("Running", 2),
                ("Succeeded", 0),
                ("Failed", 1),
                ("Unknown", 0)
            ]
            .to_vec()
        );
    }
}
