//! A whole cluster of real processes: a server, its broker (embedded or Mosquitto) and
//! agents, driven through the real `wasmfleet` CLI.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::mosquitto::Mosquitto;
use crate::mqtt::MqttEndpoint;
pub use crate::ports::free_port;
use crate::process::Process;
use crate::{bin_dir, wait_for};

/// How long a cluster may take to converge on anything in these tests.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// The server's MQTT password when the broker is Mosquitto (the test writes its passwd).
const SERVER_PASSWORD: &str = "server-secret-for-tests";

/// Where the server keeps its generated credentials (the MQTT password among them).
const CREDENTIALS_FILE: &str = "server/credentials.json";

/// Which agents to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Agent node names with their `--labels` value.
    pub agents: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            agents: vec![("node-a".into(), String::new())],
        }
    }
}

/// Which MQTT broker the cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// The server's embedded broker (it lives and dies with the server).
    Embedded,
    /// A Mosquitto the harness starts.
    Mosquitto,
}

impl Broker {
    /// `WASMFLEET_E2E_BROKER=mosquitto` picks Mosquitto; anything else the embedded broker.
    pub fn from_env() -> Broker {
        match std::env::var("WASMFLEET_E2E_BROKER").as_deref() {
            Ok("mosquitto") => Broker::Mosquitto,
            _ => Broker::Embedded,
        }
    }
}

/// What an agent process runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// This machine: the workspace's own `wasmfleet-agent`.
    Host,
    /// An ARM agent binary (`cross/build`) run under qemu-user by `cross/qemu-run`, as its
    /// own process: `arch` is `aarch64` or `armv7`.
    Emulated {
        /// The `cross/qemu-run` architecture.
        arch: String,
        /// The cross-built agent.
        binary: PathBuf,
    },
}

/// How to start an agent (kept, so it can be started again the same way).
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// Its `--labels` value.
    pub labels: String,
    /// What it runs on.
    pub device: Device,
    /// Flags added after the harness's own.
    pub extra_args: Vec<String>,
    /// The join token to give it instead of the cluster's default one (embedded broker).
    pub join_token: Option<String>,
    /// The network namespace to run in (`ip netns exec`), for partitions; `None`: the host's.
    pub netns: Option<String>,
}

impl AgentLaunch {
    /// A native agent with `labels`.
    pub fn host(labels: &str) -> Self {
        AgentLaunch {
            labels: labels.to_owned(),
            device: Device::Host,
            extra_args: Vec::new(),
            join_token: None,
            netns: None,
        }
    }

    /// An ARM agent: `binary` is a `cross/build` output for `arch` (`aarch64` or `armv7`).
    pub fn emulated(arch: &str, binary: &Path) -> Self {
        AgentLaunch {
            labels: String::new(),
            device: Device::Emulated {
                arch: arch.to_owned(),
                binary: binary.to_owned(),
            },
            extra_args: Vec::new(),
            join_token: None,
            netns: None,
        }
    }
}

/// A running cluster in a temporary directory.
pub struct Cluster {
    server: Process,
    agents: BTreeMap<String, (Process, AgentLaunch)>,
    mosquitto: Option<Mosquitto>,
    https_port: u16,
    mqtt: MqttEndpoint,
    /// Flags the server gets at every start (the broker address's certificate name).
    server_args: Vec<String>,
    node_token: String,
    /// The admin bearer token from the kubeconfig.
    pub admin_token: String,
    /// The pod network of this cluster: each cluster a test process starts gets its own, so
    /// that clusters running side by side never give two pods one IP (pods' sockets live on
    /// host loopback aliases of their IPs, which all clusters on the machine share).
    pub cluster_cidr: ipnet::Ipv4Net,
    /// Dropped last (fields drop in order), so a failing test's processes can still show
    /// the logs they kept in it.
    dir: tempfile::TempDir,
}

/// What a CLI invocation printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Cluster {
    /// Starts a server (with the broker chosen by `WASMFLEET_E2E_BROKER`) and the agents,
    /// and waits until every agent's node is Ready.
    pub fn start(options: ClusterOptions) -> Cluster {
        Cluster::start_with_broker_on(options, Broker::from_env(), IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`Self::start`] with `broker`, listening on `mqtt_host` (with a certificate for
    /// it): an address agents in network namespaces reach, such as a bridge's.
    pub fn start_with_broker_on(
        options: ClusterOptions,
        broker: Broker,
        mqtt_host: IpAddr,
    ) -> Cluster {
        Cluster::start_with_relay_on(options, broker, mqtt_host, None)
    }

    /// Like [`Self::start_with_broker_on`], with the relay listening on `relay_host` (not the
    /// broker's host) when given; the server then names it in the table of peers
    /// (`--relay-address`), so agents find it there.
    pub fn start_with_relay_on(
        options: ClusterOptions,
        broker: Broker,
        mqtt_host: IpAddr,
        relay_host: Option<IpAddr>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let https_port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).port();
        let mosquitto = (broker == Broker::Mosquitto)
            .then(|| Mosquitto::start(&dir.path().join("mosquitto"), mqtt_host, SERVER_PASSWORD));
        // The embedded broker's certificate chains to the cluster CA the server creates.
        let mqtt = match &mosquitto {
            Some(mosquitto) => mosquitto.endpoint.clone(),
            None => MqttEndpoint {
                addr: free_port(mqtt_host),
                ca_file: dir.path().join("server/tls/ca.crt"),
            },
        };
        let cluster_cidr = next_cluster_cidr();
        let mut server_args = vec!["--cluster-cidr".to_owned(), cluster_cidr.to_string()];
        match relay_host {
            // The relay listens where the broker does: agents reach it at the broker's host.
            None => server_args.extend([
                "--relay-listen".to_owned(),
                free_port(mqtt_host).to_string(),
            ]),
            Some(host) => {
                let relay = free_port(host).to_string();
                server_args.extend(["--relay-listen".to_owned(), relay.clone()]);
                server_args.extend(["--relay-address".to_owned(), relay]);
            }
        }
        if !mqtt_host.is_loopback() {
            server_args.extend(["--tls-san".to_owned(), mqtt_host.to_string()]);
        }
        let server = start_server(
            dir.path(),
            https_port,
            &mqtt,
            mosquitto.as_ref(),
            SERVER_PASSWORD,
            &server_args,
        );
        let mut cluster = Cluster {
            server,
            agents: BTreeMap::new(),
            mosquitto,
            https_port,
            mqtt,
            server_args,
            node_token: String::new(),
            admin_token: String::new(),
            cluster_cidr,
            dir,
        };
        cluster.wait_for_endpoints();
        cluster.node_token = read_trimmed(&cluster.dir.path().join("server/node-token"));
        cluster.admin_token = kubeconfig_token(&cluster.kubeconfig());
        if let Some(mosquitto) = &cluster.mosquitto {
            mosquitto.add_user("admin", &cluster.admin_token);
        }
        for (name, labels) in &options.agents {
            cluster.start_agent(name, labels);
        }
        for (name, _) in &options.agents {
            cluster.wait_node_ready(name);
        }
        cluster
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("server/admin.kubeconfig")
    }

    /// The broker agents and the server use, and the CA to trust it with.
    pub fn mqtt(&self) -> &MqttEndpoint {
        &self.mqtt
    }

    /// The node join token.
    pub fn node_token(&self) -> &str {
        &self.node_token
    }

    /// The cluster's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) an agent process for `name`, keeping its data dir.
    pub fn start_agent(&mut self, name: &str, labels: &str) {
        self.launch_agent(name, AgentLaunch::host(labels));
    }

    /// Starts an ARM agent for `name` under qemu-user: `binary` is a `cross/build` output
    /// for `arch` (`aarch64` or `armv7`).
    pub fn start_emulated_agent(&mut self, name: &str, arch: &str, binary: &Path) {
        self.launch_agent(name, AgentLaunch::emulated(arch, binary));
    }

    /// Starts (or restarts) the agent `name` as `launch` says, keeping its data dir.
    pub fn launch_agent(&mut self, name: &str, launch: AgentLaunch) {
        let data_dir = self.agent_dir(name);
        let mut args = vec![
            "--server".to_string(),
            self.mqtt.url(),
            "--ca-file".into(),
            self.mqtt.ca_file.display().to_string(),
            "--node-name".into(),
            name.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--restart-backoff-base-ms".into(),
            "300".into(),
            "--heartbeat-interval-ms".into(),
            "500".into(),
        ];
        match &self.mosquitto {
            // An external broker keeps node identities itself: the operator gives each node
            // a Mosquitto user and writes its password into the node's password file.
            Some(mosquitto) => {
                let password = test_node_password(name);
                std::fs::create_dir_all(&data_dir).expect("agent data dir");
                std::fs::write(data_dir.join("node-password"), &password).expect("node password");
                mosquitto.add_user(name, &password);
            }
            // The embedded broker binds the name to the agent's own password at its first
            // login, which needs the join token.
            None => args.extend([
                "--token".into(),
                launch
                    .join_token
                    .clone()
                    .unwrap_or_else(|| self.node_token.clone()),
            ]),
        }
        if self.mosquitto.is_some() {
            // Mosquitto's CA is not the one that signs precompiled artifacts: the server's is.
            args.extend([
                "--cluster-ca-file".into(),
                self.dir
                    .path()
                    .join("server/tls/ca.crt")
                    .display()
                    .to_string(),
            ]);
        }
        if !launch.labels.is_empty() {
            args.extend(["--labels".into(), launch.labels.clone()]);
        }
        if !launch.extra_args.iter().any(|a| a == "--ingress-port") {
            // Agents on one machine would all want port 80: only a test that asks serves.
            args.extend(["--ingress-port".into(), "0".into()]);
        }
        if !launch
            .extra_args
            .iter()
            .any(|a| a == "--ingress-https-port")
        {
            args.extend(["--ingress-https-port".into(), "0".into()]);
        }
        if !launch.extra_args.iter().any(|a| a == "--tunnel-port") {
            // Agents on one machine would all want the tunnel port; they share the host's
            // loopback, where every pod alias is reachable without a tunnel anyway.
            args.extend(["--tunnel-port".into(), "0".into()]);
        }
        args.extend(launch.extra_args.iter().cloned());
        let (program, args) = match (&launch.device, &launch.netns) {
            (Device::Host, None) => (bin_dir().join("wasmfleet-agent"), args),
            // `ip netns exec` execs the agent: the child's pid is the agent's.
            (Device::Host, Some(netns)) => {
                let mut ip_args = vec!["netns".to_owned(), "exec".into(), netns.clone()];
                ip_args.push(bin_dir().join("wasmfleet-agent").display().to_string());
                ip_args.extend(args);
                (PathBuf::from("ip"), ip_args)
            }
            (Device::Emulated { arch, binary }, _) => {
                let mut qemu_args = vec![arch.clone(), binary.display().to_string()];
                qemu_args.extend(args);
                (crate::repo_root().join("cross/qemu-run"), qemu_args)
            }
        };
        let log = self.dir.path().join(format!("agent-{name}.log"));
        let process = Process::spawn(&format!("agent {name}"), &program, &args, &log);
        self.agents.insert(name.to_owned(), (process, launch));
    }

    /// Starts `wasmfleet-sim` with `agents` hollow agents named `PREFIX-00001`... and
    /// `extra_args`, logging to `sim-PREFIX.log` in the cluster's dir. With Mosquitto each
    /// simulated node gets a user first, all with one password the simulator is given.
    pub fn start_simulator(&self, agents: u32, prefix: &str, extra_args: &[&str]) -> Process {
        let mut args = vec![
            "--agents".to_owned(),
            agents.to_string(),
            "--name-prefix".into(),
            prefix.into(),
            "--server".into(),
            self.mqtt.url(),
            "--ca-file".into(),
            self.mqtt.ca_file.display().to_string(),
            "--heartbeat-interval-ms".into(),
            "500".into(),
        ];
        match &self.mosquitto {
            Some(mosquitto) => {
                let password = test_node_password(prefix);
                let file = self.dir.path().join(format!("sim-{prefix}-password"));
                std::fs::write(&file, &password).expect("write the simulator's node password");
                let names: Vec<String> = (1..=agents).map(|i| format!("{prefix}-{i:05}")).collect();
                mosquitto.add_users(&names, &password);
                args.extend(["--node-password-file".into(), file.display().to_string()]);
            }
            None => args.extend([
                "--token-file".into(),
                self.dir
                    .path()
                    .join("server/node-token")
                    .display()
                    .to_string(),
            ]),
        }
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        Process::spawn(
            &format!("simulator {prefix}"),
            &bin_dir().join("wasmfleet-sim"),
            &args,
            &self.dir.path().join(format!("sim-{prefix}.log")),
        )
    }

    /// Whether the broker is Mosquitto (`WASMFLEET_E2E_BROKER=mosquitto`), not the embedded one.
    pub fn uses_mosquitto(&self) -> bool {
        self.mosquitto.is_some()
    }

    /// The MQTT password agent `name` logs in with (read from its data dir): what a stolen
    /// device, or a buggy agent, can use.
    pub fn node_login(&self, name: &str) -> String {
        let password = read_trimmed(&self.agent_dir(name).join("node-password"));
        match &self.mosquitto {
            Some(_) => password,
            None => format!("{}:{password}", self.node_token),
        }
    }

    /// The data dir of agent `name`.
    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{name}"))
    }

    /// Lets a test client log in as a new node `name` and returns the MQTT password for it:
    /// with the embedded broker the join token and a node password (the first login binds
    /// the name to it), with Mosquitto a user for `name`.
    pub fn allow_node_login(&self, name: &str) -> String {
        let password = test_node_password(name);
        match &self.mosquitto {
            Some(mosquitto) => {
                mosquitto.add_user(name, &password);
                password
            }
            None => format!("{}:{password}", self.node_token),
        }
    }

    /// The password the server's own MQTT identity uses.
    pub fn server_mqtt_password(&self) -> String {
        match self.mosquitto {
            Some(_) => SERVER_PASSWORD.to_owned(),
            None => {
                let text = read_trimmed(&self.dir.path().join(CREDENTIALS_FILE));
                let credentials: Value = serde_json::from_str(&text).expect("credentials.json");
                credentials["server_mqtt_password"]
                    .as_str()
                    .expect("server_mqtt_password in credentials.json")
                    .to_owned()
            }
        }
    }

    /// Kills an agent abruptly (SIGKILL), as a power cut would.
    pub fn kill_agent(&mut self, name: &str) {
        if let Some((process, _)) = self.agents.get_mut(name) {
            process.kill();
        }
    }

    /// Restarts an agent that was killed, on the same device with the same labels and data dir.
    pub fn restart_agent(&mut self, name: &str) {
        let launch = self
            .agents
            .get(name)
            .map(|(_, launch)| launch.clone())
            .unwrap_or_else(|| AgentLaunch::host(""));
        self.kill_agent(name);
        self.launch_agent(name, launch);
    }

    /// Kills the server abruptly (SIGKILL), and with it the embedded broker. Start it again
    /// with [`Self::restart_server`].
    pub fn kill_server(&mut self) {
        self.server.kill();
    }

    /// Kills the external broker abruptly (SIGKILL); does nothing with the embedded one
    /// (it lives and dies with the server).
    pub fn kill_broker(&mut self) {
        if let Some(mosquitto) = self.mosquitto.as_mut() {
            mosquitto.kill();
        }
    }

    /// Starts the external broker again after [`Self::kill_broker`].
    pub fn restart_broker(&mut self) {
        if let Some(mosquitto) = self.mosquitto.as_mut() {
            mosquitto.restart();
        }
    }

    /// Stops the server gracefully and starts it again on the same data dir and ports.
    pub fn restart_server(&mut self) {
        self.restart_server_with(&[]);
    }

    /// Restarts the server like [`Self::restart_server`], with `extra_args` this time only.
    /// Re-reads the node join token (a flag may rotate it).
    pub fn restart_server_with(&mut self, extra_args: &[&str]) {
        self.server.stop();
        let _ = std::fs::remove_file(self.dir.path().join("server/endpoints.json"));
        let mut args = self.server_args.clone();
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        self.server = start_server(
            self.dir.path(),
            self.https_port,
            &self.mqtt,
            self.mosquitto.as_ref(),
            SERVER_PASSWORD,
            &args,
        );
        self.wait_for_endpoints();
        self.node_token = read_trimmed(&self.dir.path().join("server/node-token"));
    }

    /// Whether the server process is still alive.
    pub fn server_is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Whether an agent process is still alive.
    pub fn agent_is_running(&mut self, name: &str) -> bool {
        self.agents
            .get_mut(name)
            .is_some_and(|(process, _)| process.is_running())
    }

    /// The server's process id.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// An agent's process id.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.agents.get(name).and_then(|(process, _)| process.pid())
    }

    /// The API server's base URL.
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }

    /// Everything the server has logged.
    pub fn server_output(&self) -> String {
        self.server.output()
    }

    /// Everything an agent has logged.
    pub fn agent_output(&self, name: &str) -> String {
        self.agents
            .get(name)
            .map(|(process, _)| process.output())
            .unwrap_or_default()
    }

    /// The clients of this cluster, to run from another thread.
    pub fn clients(&self) -> Clients {
        Clients {
            kubeconfig: self.kubeconfig(),
        }
    }

    /// Runs the `wasmfleet` CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_stdin(args, None)
    }

    /// Runs the CLI with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.clients().cli_with_stdin(args, stdin)
    }

    /// Runs the real `kubectl` against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> CliOutput {
        self.kubectl_with_stdin(args, None)
    }

    /// Runs the real `kubectl`, asserting that it succeeds; returns its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.success,
            "kubectl {args:?}: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs the real `kubectl` with `stdin` as its standard input.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.clients().kubectl_with_stdin(args, stdin)
    }

    /// `kubectl apply -f -` with `manifest`, asserting success.
    pub fn kubectl_apply(&self, manifest: &str) {
        let out = self.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(
            out.success,
            "kubectl apply failed: {}{}",
            out.stdout, out.stderr
        );
    }

    /// The `InternalIP` node `name` reports (empty when it reports none).
    pub fn node_internal_ip(&self, name: &str) -> String {
        let jsonpath = "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}";
        self.kubectl_ok(&["get", "node", name, "-o", jsonpath])
            .trim()
            .to_owned()
    }

    /// `wasmfleet apply -f -` with `manifest`, asserting success.
    pub fn apply(&self, manifest: &str) -> CliOutput {
        let out = self.cli_with_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(out.success, "apply failed: {}{}", out.stdout, out.stderr);
        out
    }

    /// `wasmfleet push` of a built guest, asserting success.
    pub fn push(&self, guest: &str, name_tag: &str) {
        let path = crate::guest(guest);
        let out = self.cli(&["push", &path.display().to_string(), name_tag]);
        assert!(out.success, "push failed: {}{}", out.stdout, out.stderr);
    }

    /// A pod as JSON, or `None` when it does not exist.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let out = self.cli(&["get", "pod", name, "-o", "json"]);
        if !out.success {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// A node as JSON, or `None` when it does not exist.
    pub fn node(&self, name: &str) -> Option<Value> {
        let out = self.cli(&["get", "node", name, "-o", "json"]);
        out.success
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// The first line of `pod`'s `container` log that starts with `prefix`, waiting up to a
    /// minute for it.
    pub fn wait_log_line(&self, pod: &str, container: &str, prefix: &str) -> String {
        crate::wait::wait_for(
            &format!("{pod}/{container} to log {prefix:?}"),
            Duration::from_secs(60),
            || {
                let out = self.kubectl(&["logs", pod, "-c", container]);
                out.stdout
                    .lines()
                    .find(|l| l.starts_with(prefix))
                    .map(str::to_owned)
                    .ok_or(format!("{}{}", out.stdout, out.stderr))
            },
        )
    }

    /// Waits until one of `containers` of `pod` has exited with code 1 and returns which
    /// (two containers racing for one port: the loser).
    pub fn wait_failed_container<'a>(&self, pod: &str, containers: &[&'a str]) -> &'a str {
        let failed =
            |p: &Value, c: &str| container_status(p, c)["state"]["terminated"]["exitCode"] == 1;
        let settled = self.wait_pod(pod, "one container failed", |p| {
            containers.iter().any(|c| failed(p, c))
        });
        containers
            .iter()
            .find(|c| failed(&settled, c))
            .copied()
            .expect("the container that failed")
    }

    /// Waits until the pod satisfies `accept`, returning it.
    pub fn wait_pod(&self, name: &str, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        self.wait_pod_within(name, what, CONVERGE, accept)
    }

    /// Waits up to `timeout` until the pod satisfies `accept`, returning it.
    pub fn wait_pod_within(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(&format!("pod {name} {what}"), timeout, || {
            match self.pod(name) {
                Some(pod) if accept(&pod) => Ok(pod),
                Some(pod) => Err(pod["status"].to_string()),
                None => Err("pod not found".into()),
            }
        })
    }

    /// Waits until the node reports `Ready=<status>`.
    pub fn wait_node_condition(&self, name: &str, status: &str) -> Value {
        self.wait_node_condition_within(name, status, CONVERGE)
    }

    /// Waits up to `timeout` until the node reports `Ready=<status>`.
    pub fn wait_node_condition_within(&self, name: &str, status: &str, timeout: Duration) -> Value {
        wait_for(
            &format!("node {name} Ready={status}"),
            timeout,
            || match self.node(name) {
                Some(node) if node_ready(&node) == status => Ok(node),
                Some(node) => Err(node["status"]["conditions"].to_string()),
                None => Err("node not registered".into()),
            },
        )
    }

    /// Waits until the node is Ready.
    pub fn wait_node_ready(&self, name: &str) -> Value {
        self.wait_node_condition(name, "True")
    }

    /// `wasmfleet logs POD`, as text.
    pub fn logs(&self, pod: &str) -> String {
        self.try_logs(pod)
            .unwrap_or_else(|err| panic!("logs failed: {err}"))
    }

    /// `wasmfleet logs POD`, or the CLI's error.
    pub fn try_logs(&self, pod: &str) -> Result<String, String> {
        let out = self.cli(&["logs", pod]);
        if out.success {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        }
    }

    /// Waits for the server's endpoints.json; a server that exits first fails at once, with
    /// what it printed (a port another test took, say), instead of after the timeout.
    fn wait_for_endpoints(&mut self) {
        let path = self.dir.path().join("server/endpoints.json");
        let server = &mut self.server;
        wait_for("the server to write endpoints.json", CONVERGE, || {
            if !server.is_running() {
                panic!("the server exited while starting:\n{}", server.output());
            }
            let text = std::fs::read_to_string(&path).map_err(|err| err.to_string())?;
            serde_json::from_str::<Value>(&text).map_err(|err| err.to_string())
        });
    }
}

/// The `wasmfleet` CLI and `kubectl`, logged in as the cluster's admin.
#[derive(Debug, Clone)]
pub struct Clients {
    kubeconfig: PathBuf,
}

impl Clients {
    /// The clients logged in with another kubeconfig (another user).
    pub fn with_kubeconfig(kubeconfig: PathBuf) -> Clients {
        Clients { kubeconfig }
    }

    /// Runs the real `kubectl`.
    pub fn kubectl(&self, args: &[&str]) -> CliOutput {
        self.kubectl_with_stdin(args, None)
    }

    /// Runs the `wasmfleet` CLI with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.run(&bin_dir().join("wasmfleet"), args, stdin)
    }

    /// Runs the real `kubectl` with `stdin` as its standard input.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.run(Path::new("kubectl"), args, stdin)
    }

    fn run(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let mut child = Command::new(program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", program.display()));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).expect("write CLI stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait for the client");
        CliOutput {
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// The status of a node's Ready condition (`True`, `False`, `Unknown`), or empty.
pub fn node_ready(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|conds| conds.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The pod's phase.
pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// The status of the pod's container `name`.
pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn start_server(
    dir: &Path,
    https_port: u16,
    mqtt: &MqttEndpoint,
    mosquitto: Option<&Mosquitto>,
    server_password: &str,
    extra_args: &[String],
) -> Process {
    let mut args = vec![
        "--data-dir".to_string(),
        dir.join("server").display().to_string(),
        "--https-listen".into(),
        format!("127.0.0.1:{https_port}"),
        "--no-local-agent".into(),
        "--node-monitor-grace-ms".into(),
        "3000".into(),
    ];
    match mosquitto {
        Some(_) => args.extend([
            "--mqtt-url".into(),
            mqtt.url(),
            "--mqtt-ca-file".into(),
            mqtt.ca_file.display().to_string(),
            "--mqtt-password".into(),
            server_password.into(),
        ]),
        None => args.extend(["--mqtt-listen".into(), mqtt.addr.to_string()]),
    }
    args.extend(extra_args.iter().cloned());
    Process::spawn(
        "server",
        &bin_dir().join("wasmfleet-server"),
        &args,
        &dir.join("server.log"),
    )
}

/// The node password the harness gives node `name` when it provisions it itself.
fn test_node_password(name: &str) -> String {
    format!("e2e-node-password-for-{name}")
}

/// A cluster CIDR no other cluster of this test process has: `10.N.0.0/16` with N from 64
/// to 191 (clear of the default cluster and service CIDRs, 10.42 and 10.43).
fn next_cluster_cidr() -> ipnet::Ipv4Net {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 128;
    ipnet::Ipv4Net::new(Ipv4Addr::new(10, 64 + n, 0, 0), 16).expect("a /16 is valid")
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .trim()
        .to_owned()
}

fn kubeconfig_token(path: &Path) -> String {
    read_trimmed(path)
        .lines()
        .find_map(|line| line.trim().strip_prefix("token:"))
        .map(|token| token.trim().trim_matches('"').to_owned())
        .expect("kubeconfig has a user token")
}
