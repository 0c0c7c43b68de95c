//! The kubelet's prober for one run of a container: a task per probe, on the pod's task
//! tracker, that stops with the run (or the pod). Each try connects to the pod's address
//! (the agent is a host process: it dials the pod's loopback alias `127.b.c.d` directly)
//! within `timeoutSeconds`: a TCP connect, or an HTTP/1.1 GET whose status must be
//! 200..=399. Outcomes go through the pure [`Machine`](super::probing::Machine); its
//! actions set the container's readiness, report events, and kill the run on a failed
//! liveness or startup verdict (the container task then records the exit and applies the
//! restart policy and back-off).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::network::loopback_alias;
use wasmfleet_protocol::pod::probe::{MAX_EVENT_DETAIL, PodEvent, PodEventKind};
use wasmfleet_protocol::pod::{Probe, ProbeAction, ProbeKind};

use super::manager::Shared;
use super::pod::Pod;
use super::probing::{Action, Machine, Outcome};

/// The most response bytes read for the status line and headers of an HTTP probe.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The probes of one run of a container.
pub struct RunProbes {
    machine: Mutex<Machine>,
    killed_by: Mutex<Option<ProbeKind>>,
}

impl RunProbes {
    /// The probe whose failure killed the run, if one did.
    pub fn killed_by(&self) -> Option<ProbeKind> {
        *lock(&self.killed_by)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single assignment or a pure transition.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts probing container `index` of `pod` for the run that `run` stops; `None` when
/// the container has no probes. Cancelling `run` ends the probes; a failed liveness or
/// startup verdict cancels it.
pub fn start(
    pod: &Arc<Pod>,
    index: usize,
    run: &CancellationToken,
    shared: &Arc<Shared>,
) -> Option<Arc<RunProbes>> {
    let spec = pod.assignment.containers.get(index)?;
    if spec.probes.is_empty() {
        return None;
    }
    let probes = Arc::new(RunProbes {
        machine: Mutex::new(Machine::new(&spec.probes)),
        killed_by: Mutex::new(None),
    });
    let pod_ip = pod.assignment.network.as_ref().map(|n| n.ip);
    let started = Instant::now();
    let kinds = [
        (ProbeKind::Startup, &spec.probes.startup),
        (ProbeKind::Liveness, &spec.probes.liveness),
        (ProbeKind::Readiness, &spec.probes.readiness),
    ];
    for (kind, probe) in kinds {
        let Some(probe) = probe.clone() else { continue };
        let worker = Worker {
            pod: pod.clone(),
            index,
            kind,
            probe,
            pod_ip,
            probes: probes.clone(),
            run: run.clone(),
            shared: shared.clone(),
            started,
        };
        shared.tracker.spawn(worker.run());
    }
    Some(probes)
}

/// One probe of one run.
struct Worker {
    pod: Arc<Pod>,
    index: usize,
    kind: ProbeKind,
    probe: Probe,
    pod_ip: Option<Ipv4Addr>,
    probes: Arc<RunProbes>,
    run: CancellationToken,
    shared: Arc<Shared>,
    started: Instant,
}

impl Worker {
    async fn run(self) {
        let period = Duration::from_secs(self.probe.period_seconds.max(1).into());
        let initial_delay = Duration::from_secs(self.probe.initial_delay_seconds.into());
        loop {
            let since_start = self.started.elapsed();
            let due = lock(&self.probes.machine).due(self.kind, since_start);
            if due {
                let tried = tokio::select! {
                    () = self.run.cancelled() => return,
                    outcome = self.try_once() => outcome,
                };
                let actions = lock(&self.probes.machine).record(self.kind, &tried);
                self.act(actions);
            }
            let wait = if since_start < initial_delay {
                initial_delay - since_start
            } else {
                period
            };
            tokio::select! {
                () = self.run.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn try_once(&self) -> Outcome {
        let Some(ip) = self.pod_ip else {
            return Outcome::Failure("the pod has no IP to probe".into());
        };
        let timeout = Duration::from_secs(self.probe.timeout_seconds.max(1).into());
        let port = self.probe.action.port();
        let target = SocketAddr::V4(SocketAddrV4::new(loopback_alias(ip), port));
        let shown = format!("{ip}:{port}");
        let attempt = async {
            match &self.probe.action {
                ProbeAction::TcpSocket { .. } => tcp(target, &shown).await,
                ProbeAction::HttpGet { path, headers, .. } => {
                    http_get(target, &shown, path, headers).await
                }
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failure(format!(
                "probe of {shown} timed out after {}s",
                timeout.as_secs()
            )),
        }
    }

    fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SetReady(ready) => self.pod.set_probe_ready(self.index, ready),
                Action::SetStarted => self.pod.set_probe_started(self.index),
                Action::Event(kind, detail) => self.report(kind, detail),
                Action::Restart(kind) => {
                    tracing::info!(
                        uid = self.pod.uid(),
                        container = self.index,
                        ?kind,
                        "probe failed its threshold; restarting the container"
                    );
                    *lock(&self.probes.killed_by) = Some(kind);
                    self.run.cancel();
                }
            }
        }
    }

    fn report(&self, kind: PodEventKind, mut detail: String) {
        let Some(spec) = self.pod.assignment.containers.get(self.index) else {
            return;
        };
        if detail.len() > MAX_EVENT_DETAIL {
            let mut cut = MAX_EVENT_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        self.shared.events.report(PodEvent {
            uid: self.pod.uid().to_owned(),
            container: spec.name.clone(),
            kind,
            detail,
        });
    }
}

/// A TCP connect that must be accepted.
async fn tcp(target: SocketAddr, shown: &str) -> Outcome {
    match TcpStream::connect(target).await {
        Ok(_) => Outcome::Success,
        Err(err) => Outcome::Failure(format!("dial tcp {shown}: {err}")),
    }
}

/// An HTTP/1.1 GET; success is a status in 200..=399.
async fn http_get(
    target: SocketAddr,
    shown: &str,
    path: &str,
    headers: &[(String, String)],
) -> Outcome {
    let mut stream = match TcpStream::connect(target).await {
        Ok(stream) => stream,
        Err(err) => {
            return Outcome::Failure(format!(
                "Get \"http://{shown}{path}\": dial tcp {shown}: {err}"
            ));
        }
    };
    let request = request(shown, path, headers);
    if let Err(err) = stream.write_all(request.as_bytes()).await {
        return Outcome::Failure(format!("Get \"http://{shown}{path}\": {err}"));
    }
    match read_status(&mut stream).await {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(why) => Outcome::Failure(format!("Get \"http://{shown}{path}\": {why}")),
    }
}

/// The request the kubelet sends: its `Host`, `User-Agent` and `Accept` unless the probe
/// names its own.
fn request(host: &str, path: &str, headers: &[(String, String)]) -> String {
    let named = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let path = if path.is_empty() { "/" } else { path };
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in [
        ("Host", host),
        ("User-Agent", "kube-probe/1.32"),
        ("Accept", "*/*"),
    ] {
        if !named(name) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// Reads the response head (at most [`MAX_RESPONSE_HEAD`] bytes) and returns its status.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut buffer)
            .await
            .map_err(|err| err.to_string())?;
        if n == 0 {
            return Err("the connection closed before a response".into());
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(code) = parse_status(&head)? {
            return Ok(code);
        }
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(format!("no response head within {MAX_RESPONSE_HEAD} bytes"));
        }
    }
}

/// The status of a complete response head, `None` while it is incomplete.
fn parse_status(head: &[u8]) -> Result<Option<u16>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(err) => Err(format!("malformed HTTP response: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_kubelets_unless_the_probe_overrides_a_header() {
        let plain = request("10.42.0.5:80", "/healthz", &[]);
        assert_eq!(
            plain,
            "GET /healthz HTTP/1.1\r\nHost: 10.42.0.5:80\r\nUser-Agent: kube-probe/1.32\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        let custom = request("10.42.0.5:80", "/", &[("host".into(), "web.local".into())]);
        assert!(custom.contains("host: web.local\r\n") && !custom.contains("Host: 10.42"));
    }

    #[test]
    fn a_status_is_read_from_a_complete_head_only() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Ok(None));
        assert_eq!(
            parse_status(b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n"),
            Ok(Some(204))
        );
        assert!(parse_status(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
