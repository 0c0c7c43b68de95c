//! TLS for Ingresses and Gateways (issue 10 §4) with the real kubectl and curl against a
//! real server and agents: a `kubernetes.io/tls` Secret for two hosts serves each by SNI on
//! the agent's HTTPS port, plain HTTP for them answers 308 to HTTPS, a Gateway HTTPS
//! listener serves the same Secret, a renewed Secret serves the new certificate, a missing
//! Secret is an Event while the other hosts keep theirs, and a node that does not serve
//! ingress traffic never receives the key (subscribing as that node).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, QoS};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_tests::cluster::{AgentLaunch, free_port};
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(60);

/// Two Deployments told apart by `$MESSAGE`, a Service each, on the node that serves
/// ingress traffic.
const BACKENDS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      nodeSelector: {svccontroller.k3s.cattle.io/enablelb: \"true\"}
      containers:
      - name: web
        image: tcp-echo:v1
        args: [\"--port\", \"8080\", \"--http\"]
        env: [{name: MESSAGE, value: shop}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      nodeSelector: {svccontroller.k3s.cattle.io/enablelb: \"true\"}
      containers:
      - name: web
        image: tcp-echo:v1
        args: [\"--port\", \"8080\", \"--http\"]
        env: [{name: MESSAGE, value: api}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: shop
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: http}]
";

/// One Ingress, two hosts, one TLS Secret for both; a second Ingress whose Secret does
/// not exist.
const INGRESSES: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
spec:
  tls:
  - hosts: [shop.example.com, api.example.com]
    secretName: shop-tls
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
  - host: api.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"
spec:
  tls:
  - hosts: [broken.example.com]
    secretName: missing-tls
  rules:
  - host: broken.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
";

/// A Gateway with an HTTPS listener on `port` for shop.example.com, and its route.
fn gateway(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
spec:
  gatewayClassName: wasmfleet
  listeners:
  - name: https
    protocol: HTTPS
    port: {port}
    hostname: shop.example.com
    tls:
      mode: Terminate
      certificateRefs: [{{kind: Secret, name: shop-tls}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs: [{{name: web}}]
  rules:
  - backendRefs: [{{name: api, port: 80}}]
"
    )
}

/// A self-signed certificate for `hosts` (its own CA for curl) and its key: the PEM files
/// written in `dir` under `name`, and the key's DER.
fn certificate(dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let issued = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, issued.cert.pem()).expect("write the certificate");
    std::fs::write(&key, issued.signing_key.serialize_pem()).expect("write the key");
    (crt, key, issued.signing_key.serialize_der())
}

/// `curl` of `url` with `args`: its status code, body and stderr.
fn curl(url: &str, args: &[&str]) -> (String, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\\n%{http_code} %{redirect_url}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (status.trim().to_owned(), body.trim().to_owned(), stderr)
}

/// HTTPS to `host` on 127.0.0.1:`port`, trusting `ca` only.
fn https(host: &str, port: u16, ca: &Path) -> (String, String, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let ca = ca.display().to_string();
    curl(
        &format!("https://{host}:{port}/"),
        &["--cacert", &ca, "--resolve", &resolve],
    )
}

fn wait_https(host: &str, port: u16, ca: &Path, want: &str) {
    wait_for(
        &format!("https://{host}:{port}/ to answer {want}"),
        START,
        || {
            let (status, body, err) = https(host, port, ca);
            (status == "200" && body == want)
                .then_some(())
                .ok_or(format!("{status} {body:?} {err}"))
        },
    );
}

/// A kept-alive HTTPS connection to `host` on 127.0.0.1:`port` that takes any certificate
/// (the test compares it itself).
struct KeptAlive {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    host: String,
}

impl KeptAlive {
    fn open(host: &str, port: u16) -> KeptAlive {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("a name");
        let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        KeptAlive {
            stream: rustls::StreamOwned::new(connection, tcp),
            host: host.to_owned(),
        }
    }

    /// One GET `/` on the connection: the response's status line and body.
    fn get(&mut self) -> (String, String) {
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream
            .write_all(request.as_bytes())
            .expect("send a request");
        self.stream.flush().expect("send a request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .expect("a content-length");
                if body.len() >= length {
                    let status = head.lines().next().unwrap_or_default().to_owned();
                    return (status, body.trim().to_owned());
                }
            }
            let n = self.stream.read(&mut chunk).expect("read a response");
            assert!(n > 0, "the connection was closed: {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The certificate the server presented at the handshake.
    fn certificate(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().expect("a certificate")[0].to_vec()
    }
}

/// Accepts every server certificate (signatures still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The private scalar of a PKCS#8 EC key (what must never leave the serving nodes).
fn scalar(der: &[u8]) -> Vec<u8> {
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an EC private key");
    der[at + 5..at + 37].to_vec()
}

/// What `client_id` logged in as `user` receives retained on `filters` within a second
/// after subscribing: how many messages, and whether one holds `secret`.
fn retained_on(
    cluster: &Cluster,
    (client_id, user, password): (&str, &str, &str),
    filters: &[String],
    secret: &[u8],
) -> (usize, bool) {
    let (client, mut connection) =
        wasmfleet_tests::mqtt::connect(cluster.mqtt(), client_id, user, password).expect("connect");
    for filter in filters {
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .expect("subscribe");
    }
    let (mut received, mut leaked, mut acks, mut acked_at) = (0, false, 0, None);
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                acks += 1;
                if acks == filters.len() {
                    acked_at = Some(Instant::now());
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                received += 1;
                leaked |= publish.payload.windows(secret.len()).any(|w| w == secret);
            }
            Ok(_) => {}
            Err(err) => panic!("{user}: {err}"),
        }
        if acked_at.is_some_and(|at: Instant| at.elapsed() > Duration::from_secs(1)) {
            break;
        }
    }
    let _ = client.disconnect();
    (received, leaked)
}

#[test]
fn ingress_and_gateway_tls_serve_by_sni_redirect_renew_and_keep_keys_on_serving_nodes() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (http_port, https_port) = (free_port(localhost).port(), free_port(localhost).port());
    // node-a serves LoadBalancers (and so ingress traffic); node-b does not.
    let mut launch = AgentLaunch::host("svccontroller.k3s.cattle.io/enablelb=true");
    launch.extra_args = vec![
        "--ingress-port".into(),
        http_port.to_string(),
        "--ingress-https-port".into(),
        https_port.to_string(),
    ];
    cluster.launch_agent("node-a", launch);
    cluster.start_agent("node-b", "");
    cluster.wait_node_ready("node-b");
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.kubectl_apply(BACKENDS);
    let dir = cluster.dir().to_owned();
    let hosts = ["shop.example.com", "api.example.com"];
    let (crt, key, key_der) = certificate(&dir, "first", &hosts);
    let (crt_arg, key_arg) = (
        format!("--cert={}", crt.display()),
        format!("--key={}", key.display()),
    );
    cluster.kubectl_ok(&["create", "secret", "tls", "shop-tls", &crt_arg, &key_arg]);
    cluster.kubectl_apply(INGRESSES);

    // Each host by SNI, with the Secret's certificate (curl trusts nothing else).
    wait_https("shop.example.com", https_port, &crt, "shop");
    wait_https("api.example.com", https_port, &crt, "api");
    // Plain HTTP for a TLS host is redirected to HTTPS with 308.
    let http = format!("http://127.0.0.1:{http_port}/path?q=1");
    let (status, _, err) = curl(&http, &["-H", "Host: shop.example.com"]);
    assert_eq!(
        status,
        format!("308 https://shop.example.com:{https_port}/path?q=1"),
        "{err}"
    );
    // ssl-redirect "false" keeps plain HTTP; its missing Secret is an Event, and its host
    // gets the default certificate (which curl does not trust) while the others keep theirs.
    let (status, body, _) = curl(&http, &["-H", "Host: broken.example.com"]);
    assert_eq!((status.as_str(), body.as_str()), ("200", "shop"));
    wait_for("the missing Secret's Event", START, || {
        let events = cluster.kubectl_ok(&["get", "events"]);
        let row = events
            .lines()
            .find(|l| l.contains("InvalidCertificateRef") && l.contains("ingress/broken"));
        row.is_some_and(|row| row.contains("Secret default/missing-tls: not found"))
            .then_some(())
            .ok_or(events)
    });
    let (status, _, err) = https("broken.example.com", https_port, &crt);
    assert_eq!(status, "000", "the default certificate is not the Secret's");
    assert!(err.contains("certificate"), "{err}");
    let resolve = format!("broken.example.com:{https_port}:127.0.0.1");
    let (status, body, err) = curl(
        &format!("https://broken.example.com:{https_port}/"),
        &["-k", "--resolve", &resolve],
    );
    assert_eq!((status.as_str(), body.as_str()), ("200", "shop"), "{err}");
    wait_https("shop.example.com", https_port, &crt, "shop");

    // A Gateway HTTPS listener serves the same Secret on its own port.
    let gateway_port = free_port(localhost).port();
    cluster.kubectl_apply(&gateway(gateway_port));
    wait_https("shop.example.com", gateway_port, &crt, "api");

    // The key reached node-a (the server's identity sees it retained there) and never
    // node-b: logged in as node-b, its own topic holds nothing and what every node reads
    // holds no key.
    let secret = scalar(&key_der);
    let server_password = cluster.server_mqtt_password();
    let server = (
        "ingress-tls-test",
        "wasmfleet-server",
        server_password.as_str(),
    );
    let node_a = [topic::down("node-a", Down::Tls)];
    assert_eq!(retained_on(&cluster, server, &node_a, &secret), (1, true));
    cluster.kill_agent("node-b");
    let password = cluster.node_login("node-b");
    let filters = [
        topic::node_down_filter("node-b"),
        topic::ROUTES.to_owned(),
        topic::SERVICES.to_owned(),
        topic::PEERS.to_owned(),
    ];
    let (_, leaked) = retained_on(&cluster, ("node-b", "node-b", &password), &filters, &secret);
    assert!(!leaked, "node-b received the key");
    let mine = [topic::down("node-b", Down::Tls)];
    let (received, _) = retained_on(&cluster, ("node-b", "node-b", &password), &mine, &secret);
    assert_eq!(received, 0, "node-b has no certificates retained");

    // A renewed Secret (a new key) serves new connections on both listeners, while a
    // connection opened before keeps its certificate and goes on serving requests.
    let mut kept = KeptAlive::open("api.example.com", https_port);
    assert_eq!(kept.get(), ("HTTP/1.1 200 OK".to_owned(), "api".to_owned()));
    let first_der = std::fs::read_to_string(&crt).expect("read the certificate");
    let (crt2, key2, _) = certificate(&dir, "second", &hosts);
    let renewed = cluster.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "shop-tls",
        &format!("--cert={}", crt2.display()),
        &format!("--key={}", key2.display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    cluster.kubectl_apply(&renewed);
    // (The kept connection sends a request at every try: an idle one is closed after the
    // ingress's 10 s request-head timeout.)
    let deadline = Instant::now() + START;
    loop {
        assert_eq!(kept.get(), ("HTTP/1.1 200 OK".to_owned(), "api".to_owned()));
        if https("api.example.com", https_port, &crt2).0 == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(kept.get(), ("HTTP/1.1 200 OK".to_owned(), "api".to_owned()));
    wait_https("shop.example.com", gateway_port, &crt2, "api");
    let (status, _, _) = https("shop.example.com", https_port, &crt);
    assert_eq!(status, "000", "the old certificate is no longer served");
    assert!(
        first_der.contains(&pem_body(&kept.certificate())),
        "the open connection keeps the first certificate"
    );
}

/// The base64 of `der` as a PEM file's lines hold it (the first line's worth).
fn pem_body(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text[..64].to_owned()
}
