//! The MQTT front door with the real Mosquitto clients (`mosquitto_rr` for MQTT 5,
//! `mosquitto_pub` / `mosquitto_sub` for MQTT 3.1.1): manifests applied and answered per
//! object, modules stored with their digest (large ones sent in parts), every refusal
//! answered, and one client's answers unreadable by another. Runs against the embedded broker, and against Mosquitto
//! (with the ACL the server prints) with `WASMFLEET_E2E_BROKER=mosquitto`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use wasmfleet_protocol::topic;
use wasmfleet_tests::{Cluster, ClusterOptions, guest};

const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: front
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: front
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: hello:v1
";

/// A pod whose memory limit is below one wasm page: a 422 naming the field.
const INVALID: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: too-small
spec:
  containers:
  - name: c
    image: hello:v1
    resources:
      limits: {memory: 1Ki}
";

/// The Mosquitto command line tools, logged in as the admin.
struct Clients<'a> {
    cluster: &'a Cluster,
}

impl Clients<'_> {
    /// Host, port, CA and the admin's credentials, for MQTT `version`.
    fn login(&self, tool: &str, version: &str, client_id: &str) -> Command {
        let mqtt = self.cluster.mqtt();
        let mut command = Command::new(tool);
        command
            .args(["-h", &mqtt.addr.ip().to_string()])
            .args(["-p", &mqtt.addr.port().to_string()])
            .args(["--cafile", &mqtt.ca_file.display().to_string()])
            .args(["-u", "admin", "-P", &self.cluster.admin_token])
            .args(["-V", version, "-i", client_id, "-q", "1"]);
        command
    }

    /// `mosquitto_rr` (MQTT 5): publishes `text` to `topic_name` with the client's result
    /// topic as response topic and returns the answer. (`mosquitto_rr` 2.0.11 sends an empty
    /// payload for `-f` and `-s`, so the text goes in `-m`.)
    fn rr(&self, client_id: &str, topic_name: &str, text: &str) -> Value {
        let out = self
            .login("mosquitto_rr", "5", client_id)
            .args(["-t", topic_name, "-e", &topic::result_topic(client_id)])
            .args(["-m", text, "-W", "10"])
            .output()
            .expect("mosquitto_rr runs (Debian package mosquitto-clients)");
        answer(&out)
    }

    /// `mosquitto_pub` and `mosquitto_sub`: `client_id` subscribes to its result topic in a
    /// persistent session, a second connection (`{client_id}-pub`) publishes `file` (with
    /// `extra` flags, e.g. `-r`), then `client_id` reads the queued answer. With MQTT 5 the
    /// publish names the result topic as its response topic; with 3.1.1 the topic must
    /// name the client.
    fn request(
        &self,
        version: &str,
        client_id: &str,
        topic_name: &str,
        file: &Path,
        extra: &[&str],
    ) -> Value {
        let result = topic::result_topic(client_id);
        let subscribed = self
            .login("mosquitto_sub", version, client_id)
            .args(["-c", "-t", &result, "-E"])
            .output()
            .expect("mosquitto_sub runs");
        assert!(subscribed.status.success(), "{}", text(&subscribed.stderr));
        let mut publish = self.login("mosquitto_pub", version, &format!("{client_id}-pub"));
        publish.args(["-t", topic_name, "-f", &file.display().to_string()]);
        if version == "5" {
            publish.args(["-D", "publish", "response-topic", &result]);
        }
        let published = publish.args(extra).output().expect("mosquitto_pub runs");
        assert!(published.status.success(), "{}", text(&published.stderr));
        let out = self
            .login("mosquitto_sub", version, client_id)
            .args(["-c", "-t", &result, "-C", "1", "-W", "10"])
            .output()
            .expect("mosquitto_sub runs");
        answer(&out)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn answer(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "no answer: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("the answer is JSON ({err}): {}", text(&out.stdout)))
}

fn message(answer: &Value) -> &str {
    answer["message"].as_str().unwrap_or_default()
}

fn write(cluster: &Cluster, name: &str, contents: &[u8]) -> std::path::PathBuf {
    let path = cluster.dir().join(name);
    std::fs::write(&path, contents).expect("write the payload");
    path
}

#[test]
fn manifests_published_over_mqtt_5_are_applied_and_answered_per_object() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = Clients { cluster: &cluster };

    let first = clients.rr("dev5", topic::APPLY, APP);
    assert_eq!(
        message(&first),
        "namespace/front created\ndeployment.apps/web created",
        "{first}"
    );
    assert_eq!(first["ok"], true);
    let managers = cluster.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "front",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "wasmfleet-mqtt");

    let again = clients.rr("dev5", topic::APPLY, APP);
    assert_eq!(
        message(&again),
        "namespace/front unchanged\ndeployment.apps/web unchanged",
        "{again}"
    );

    let changed = APP.replace("replicas: 1", "replicas: 2");
    let third = clients.rr("dev5", topic::APPLY, &changed);
    assert_eq!(
        message(&third),
        "namespace/front unchanged\ndeployment.apps/web configured",
        "{third}"
    );
}

#[test]
fn an_invalid_manifest_gets_kubectls_error_and_creates_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = Clients { cluster: &cluster };

    let refused = clients.rr("dev5", topic::APPLY, INVALID);
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["results"][0]["status"]["code"], 422, "{refused}");
    let kubectl = cluster.kubectl_with_stdin(&["apply", "--server-side", "-f", "-"], Some(INVALID));
    assert!(!kubectl.success);
    assert_eq!(message(&refused), kubectl.stderr.trim(), "{refused}");
    let pods = cluster.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(pods.trim(), "");

    // A payload that is not a manifest at all: refused as a whole, the link keeps going.
    let unreadable = clients.rr("dev5", topic::APPLY, "kind: [unclosed");
    assert!(
        message(&unreadable).starts_with("error: error parsing"),
        "{unreadable}"
    );
    let big = write(&cluster, "big.yaml", &vec![b'#'; 5 * 1024 * 1024]);
    let too_big = clients.request("5", "dev5", topic::APPLY, &big, &[]);
    assert_eq!(too_big["status"]["code"], 413, "{too_big}");
}

#[test]
fn modules_published_over_mqtt_are_stored_with_their_digest_or_refused_with_the_reason() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = Clients { cluster: &cluster };
    let hello = guest("hello");

    let stored = clients.request(
        "5",
        "mods",
        &topic::module_upload("hello", "v1"),
        &hello,
        &[],
    );
    assert_eq!(stored["ok"], true, "{stored}");
    let listing = cluster.cli(&["get", "modules", "-o", "json"]);
    let modules: Value = serde_json::from_str(&listing.stdout).expect("module list");
    assert_eq!(modules["items"][0]["digest"], stored["module"]["digest"]);
    assert!(
        message(&stored).starts_with("module hello:v1 stored (sha256:"),
        "{stored}"
    );

    // A module larger than one MQTT packet goes in parts, in any order (here over 3.1.1,
    // answered on the client's result topic): each is answered with the progress, the
    // last with the module, joined in order (the same digest as in one piece).
    let bytes = std::fs::read(&hello).expect("read the guest");
    let third = bytes.len().div_ceil(3);
    let parts: Vec<_> = bytes.chunks(third).collect();
    for (index, expected) in [
        (2, "module hello:parts: part 2 of 3 received (1 of 3 parts"),
        (3, "module hello:parts: part 3 of 3 received (2 of 3 parts"),
        (1, "module hello:parts stored (sha256:"),
    ] {
        let file = write(&cluster, &format!("part{index}"), parts[index - 1]);
        let part = topic::Part {
            index: index as u32,
            count: 3,
        };
        let topic_name = format!(
            "{}/mods311",
            topic::module_part_upload("hello", "parts", part)
        );
        let answer = clients.request("mqttv311", "mods311", &topic_name, &file, &[]);
        assert_eq!(answer["ok"], true, "{answer}");
        assert!(message(&answer).starts_with(expected), "{answer}");
        if index == 1 {
            assert_eq!(answer["module"]["digest"], stored["module"]["digest"]);
        }
    }

    let not_wasm = write(&cluster, "not.wasm", b"hello, world");
    for (topic_name, file, expected) in [
        (
            "wf/v1/modules/Hello/v1",
            &hello,
            "invalid module name \"Hello\"",
        ),
        ("wf/v1/modules/hello", &hello, "missing tag"),
        (
            "wf/v1/modules/hello/v2",
            &not_wasm,
            "not a WebAssembly module",
        ),
        (
            "wf/v1/modules/hello/v2/part/4/3",
            &hello,
            "invalid part 4/3",
        ),
    ] {
        let refused = clients.request("5", "mods", topic_name, file, &[]);
        assert_eq!(refused["ok"], false, "{refused}");
        assert!(
            message(&refused).contains(expected),
            "{topic_name}: {refused}"
        );
    }
}

#[test]
fn mqtt_311_clients_are_answered_on_their_own_result_topic_only() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = Clients { cluster: &cluster };
    let app = write(&cluster, "app.yaml", APP.as_bytes());
    // Another client subscribes to dev311's result topic in a persistent session: the
    // embedded broker refuses the subscription, Mosquitto's ACL never delivers to it.
    let result = topic::result_topic("dev311");
    let snoop = |extra: &[&str]| {
        clients
            .login("mosquitto_sub", "mqttv311", "intruder")
            .args(["-c", "-t", &result])
            .args(extra)
            .output()
            .expect("mosquitto_sub runs")
    };
    snoop(&["-E"]);

    let applied = clients.request("mqttv311", "dev311", &topic::apply_as("dev311"), &app, &[]);
    assert_eq!(
        message(&applied),
        "namespace/front created\ndeployment.apps/web created",
        "{applied}"
    );

    // A retained module upload would be stored again at every reconnect: refused, cleared.
    let retained = clients.request(
        "mqttv311",
        "dev311",
        "wf/v1/modules/hello/v1/dev311",
        &guest("hello"),
        &["-r"],
    );
    assert!(message(&retained).contains("retained"), "{retained}");
    let listing = cluster.cli(&["get", "modules"]);
    assert!(!listing.stdout.contains("hello"), "{}", listing.stdout);

    // Both answers were delivered to dev311 before this: anything the intruder's session
    // had received would be handed over at once.
    let snooped = snoop(&["-C", "1", "-W", "2"]);
    assert_eq!(text(&snooped.stdout), "", "{}", text(&snooped.stderr));
}

#[test]
fn every_publish_is_answered_and_a_client_over_its_rate_gets_429() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = Clients { cluster: &cluster };
    let result = topic::result_topic("flood");
    let subscribed = clients
        .login("mosquitto_sub", "mqttv311", "flood")
        .args(["-c", "-t", &result, "-E"])
        .output()
        .expect("mosquitto_sub runs");
    assert!(subscribed.status.success(), "{}", text(&subscribed.stderr));
    // 60 unreadable manifests at once (`-l`: one publish per line): far more than the
    // burst of 20 the server takes from one client.
    let lines = write(&cluster, "flood.txt", "kind: [\n".repeat(60).as_bytes());
    let published = clients
        .login("mosquitto_pub", "mqttv311", "flood-pub")
        .args(["-t", &topic::apply_as("flood"), "-l"])
        .stdin(std::fs::File::open(&lines).expect("open the lines"))
        .output()
        .expect("mosquitto_pub runs");
    assert!(published.status.success(), "{}", text(&published.stderr));
    let out = clients
        .login("mosquitto_sub", "mqttv311", "flood")
        .args(["-c", "-t", &result, "-C", "60", "-W", "15"])
        .output()
        .expect("mosquitto_sub runs");
    let answers: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each answer is JSON"))
        .collect();
    assert_eq!(answers.len(), 60, "{}", text(&out.stderr));
    let count = |pick: &dyn Fn(&Value) -> bool| answers.iter().filter(|a| pick(a)).count();
    let limited = count(&|a| a["status"]["code"] == 429);
    let busy = count(&|a| a["status"]["code"] == 503);
    let parsed = count(&|a| message(a).starts_with("error: error parsing"));
    assert!(
        limited > 0 && parsed > 0,
        "{limited} limited, {parsed} parsed"
    );
    assert_eq!(limited + busy + parsed, 60, "{limited} + {busy} + {parsed}");
}
