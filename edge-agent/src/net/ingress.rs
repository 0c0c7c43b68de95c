//! The ingress: the agent's HTTP reverse proxy for Ingresses and Gateways (the ingress and
//! gateway controllers' data plane, like the Traefik k3s ships).
//!
//! It listens on the node's ingress port (`--ingress-port`, 80 by default) and on each
//! port a served Gateway has a listener on, on all addresses (Gateway ports open and close
//! as the route table changes; on the ingress port a Gateway listener's routes come before
//! the Ingresses'), picks a backend per request from the server's table of HTTP routes
//! ([`RouteTable::select`]: host, path, then an ingress-nginx canary by header (value, else
//! [`super::header_patterns`], else `always`/`never`), cookie or weight, else the route's
//! weights), an endpoint of that backend's Service on any node
//! from the table of Services (as a ClusterIP connect would), and forwards the request
//! over HTTP/1.1 to the endpoint pod's loopback alias, with `X-Forwarded-For`,
//! `X-Forwarded-Host` and `X-Forwarded-Proto`.
//!
//! TLS: while the server has sent the node certificates ([`super::ingress_tls`]), it also
//! serves the HTTPS ingress port (`--ingress-https-port`, 443 by default) and the Gateways'
//! `HTTPS` listener ports, choosing the certificate by SNI at each handshake; a plain
//! request for an Ingress TLS host is answered with a 308 to HTTPS (ingress-nginx's
//! `ssl-redirect`, unless its Ingress says `"false"`).
//!
//! Every refusal is an answer: 404 when no route matches, 500 when the route gives every
//! backend weight 0, 503 when the Service has no ready endpoint, 502 when the endpoint
//! (or the tunnel to its node) does not answer. Request
//! heads must arrive within [`HEADER_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections
//! are served at once (more wait in the listen backlog). On shutdown the listener closes
//! and connections finish their request in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::network::loopback_alias;
use wasmfleet_protocol::routes::{INGRESS_PORT, Request as RouteRequest, RouteTable, Selection};

use super::header_patterns::HeaderPatterns;
use super::services::ServiceDirectory;

/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// How often a port the agent could not listen on is tried again.
const RETRY_BIND: Duration = Duration::from_secs(5);

/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

type Body = BoxBody<Bytes, hyper::Error>;

/// The agent's own ingress ports (`--ingress-port`, `--ingress-https-port`; 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressPorts {
    /// Plain HTTP for Ingresses.
    pub http: u16,
    /// HTTPS for Ingresses (served only while the node has certificates).
    pub https: u16,
}

/// Whether a port speaks plain HTTP or terminates TLS first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Tls,
}

/// Serves Ingress traffic on the agent's ingress ports and each Gateway listener's port of
/// the route table, opening and closing Gateway ports as the table changes, until
/// `shutdown`. TLS ports (the HTTPS ingress port, Gateway `HTTPS` listeners) are served
/// only while the server has sent this node certificates. A port it cannot listen on is
/// logged once and tried again every [`RETRY_BIND`] and on every change; the rest is served
/// meanwhile.
pub async fn serve(
    ports: IngressPorts,
    directory: ServiceDirectory,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let patterns = Arc::new(HeaderPatterns::default());
    let mut open: BTreeMap<u16, (Mode, CancellationToken)> = BTreeMap::new();
    let mut failed: BTreeSet<u16> = BTreeSet::new();
    let mut changes = directory.subscribe();
    loop {
        let wanted = wanted_ports(&directory.routes(), ports, directory.tls().is_serving());
        open.retain(|port, (mode, stop)| {
            let keep = wanted.get(port) == Some(mode);
            if !keep {
                stop.cancel();
            }
            keep
        });
        failed.retain(|port| wanted.contains_key(port));
        for (port, mode) in wanted {
            if open.contains_key(&port) {
                continue;
            }
            let Some(listener) = bind(port, !failed.contains(&port)).await else {
                failed.insert(port);
                continue;
            };
            failed.remove(&port);
            let stop = shutdown.child_token();
            let ingress = port == ports.http || port == ports.https;
            let tls = match mode {
                Mode::Plain => None,
                Mode::Tls => {
                    let mut routed = vec![port];
                    if ingress {
                        routed.push(INGRESS_PORT);
                    }
                    match acceptor(&directory, routed) {
                        Ok(acceptor) => Some(acceptor),
                        Err(err) => {
                            tracing::error!(port, %err, "cannot set up TLS; not serving the port");
                            continue;
                        }
                    }
                }
            };
            let server = Server {
                port,
                ingress,
                https_port: ports.https,
                tls,
                patterns: Arc::clone(&patterns),
                directory: directory.clone(),
                slots: Arc::clone(&slots),
                tracker: tracker.clone(),
            };
            tracker.spawn(server.accept(listener, stop.clone()));
            open.insert(port, (mode, stop));
        }
        let retry = async {
            match failed.is_empty() {
                true => std::future::pending().await,
                false => tokio::time::sleep(RETRY_BIND).await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = retry => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Pure: every port to serve and how: the route table's Gateway listener ports (TLS for
/// its `https_ports`), then the agent's own ports, which win a port both name; TLS ports
/// only when the node `has_certificates`.
fn wanted_ports(
    routes: &RouteTable,
    ports: IngressPorts,
    has_certificates: bool,
) -> BTreeMap<u16, Mode> {
    let mut wanted: BTreeMap<u16, Mode> = routes
        .listeners
        .iter()
        .map(|l| l.port)
        .filter(|port| *port != INGRESS_PORT)
        .map(|port| match routes.tls.https_ports.contains(&port) {
            true => (port, Mode::Tls),
            false => (port, Mode::Plain),
        })
        .collect();
    if ports.https != 0 {
        wanted.insert(ports.https, Mode::Tls);
    }
    if ports.http != 0 {
        wanted.insert(ports.http, Mode::Plain);
    }
    if !has_certificates {
        wanted.retain(|_, mode| *mode == Mode::Plain);
    }
    wanted
}

/// A TLS acceptor whose certificate is chosen per handshake among the node's current
/// ones for the routes of `ports`; HTTP/1.1 only.
fn acceptor(directory: &ServiceDirectory, ports: Vec<u16>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(directory.tls().resolver(ports));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Listens on `port` on all addresses; `None` when it cannot (logged as an error the
/// `first` time, then at debug level).
async fn bind(port: u16, first: bool) -> Option<TcpListener> {
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    match TcpListener::bind(address).await {
        Ok(listener) => {
            tracing::info!(%address, "serving Ingress and Gateway traffic");
            Some(listener)
        }
        Err(err) if first => {
            tracing::error!(
                %address, %err,
                "cannot listen for Ingress or Gateway traffic; this node does not serve \
                 that port until it can (ports below 1024 need root or \
                 CAP_NET_BIND_SERVICE; see --ingress-port)"
            );
            None
        }
        Err(err) => {
            tracing::debug!(%address, %err, "still cannot listen for Ingress or Gateway traffic");
            None
        }
    }
}

/// One listening port.
struct Server {
    port: u16,
    /// One of the agent's ingress ports: Ingresses' routes apply too.
    ingress: bool,
    /// The agent's HTTPS ingress port (0: none), where plain requests for TLS hosts are
    /// redirected.
    https_port: u16,
    /// Terminates TLS first (`None`: plain HTTP).
    tls: Option<TlsAcceptor>,
    /// The canaries' header patterns, compiled.
    patterns: Arc<HeaderPatterns>,
    directory: ServiceDirectory,
    slots: Arc<Semaphore>,
    /// Where connections (to clients and to endpoints) run, so shutdown waits for them.
    tracker: TaskTracker,
}

impl Server {
    /// Accepts connections until `stop`.
    async fn accept(self, listener: TcpListener, stop: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let Ok(slot) = Arc::clone(&this.slots).acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Small writes (a response head, then its body) must not wait for ACKs.
                    stream.set_nodelay(true).ok();
                    let connection =
                        accepted_connection(stream, peer, Arc::clone(&this), stop.clone());
                    this.tracker.spawn(async move {
                        connection.await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    tracing::warn!(port = this.port, %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Serves one accepted connection, after a TLS handshake (within [`HEADER_TIMEOUT`]) on a
/// TLS port.
async fn accepted_connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    shutdown: CancellationToken,
) {
    let Some(tls) = server.tls.clone() else {
        return connection(stream, peer, server, shutdown).await;
    };
    let handshake = tokio::select! {
        () = shutdown.cancelled() => return,
        handshake = tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => connection(stream, peer, server, shutdown).await,
        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves one client connection (keep-alive included) until it ends or `shutdown`.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    server: Arc<Server>,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let server = Arc::clone(&server);
        async move { Ok::<_, Infallible>(handle(request, peer, &server).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => finished(result, peer),
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            finished(connection.await, peer);
        }
    }
}

fn finished(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "Ingress connection ended with an error");
    }
}

/// Routes and forwards one request.
async fn handle(request: Request<Incoming>, peer: SocketAddr, server: &Server) -> Response<Body> {
    let directory = &server.directory;
    let routes = directory.routes();
    let host = host_of(&request).to_owned();
    let backend = {
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let cookie = |name: &str| cookie(headers, name);
        let mut route_request = RouteRequest {
            port: server.port,
            host: &host,
            path: request.uri().path(),
            header: &header,
            cookie: &cookie,
            matches: &|pattern, value| server.patterns.matches(pattern, value),
        };
        let mut roll = |n| rand::random_range(0..n);
        let mut selection = routes.select(&route_request, &mut roll);
        if selection == Selection::NoRoute && server.ingress {
            route_request.port = INGRESS_PORT;
            selection = routes.select(&route_request, &mut roll);
        }
        match selection {
            Selection::Backend(_, route)
                if route_request.port == INGRESS_PORT
                    && server.tls.is_none()
                    && server.https_port != 0
                    && routes.tls.redirects(&host, route) =>
            {
                return redirect_to_https(&host, server.https_port, request.uri());
            }
            Selection::Backend(backend, _) => backend.clone(),
            Selection::NoRoute => {
                return answer(
                    StatusCode::NOT_FOUND,
                    "no Ingress rule or HTTPRoute matches this host and path",
                );
            }
            Selection::NoBackend(route) => {
                let why = format!(
                    "{} gives this request no backend (none, or all of weight 0)",
                    route.source
                );
                return answer(StatusCode::INTERNAL_SERVER_ERROR, &why);
            }
        }
    };
    let client = match peer.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let service = format!("{}/{}:{}", backend.namespace, backend.service, backend.port);
    let endpoint =
        directory.route_to_service(client, &backend.namespace, &backend.service, backend.port);
    let Ok((pod_ip, port)) = endpoint else {
        let why = format!("Service {service} has no ready endpoint");
        return answer(StatusCode::SERVICE_UNAVAILABLE, &why);
    };
    let target = SocketAddr::from((loopback_alias(pod_ip), port));
    if !directory.reach(target) {
        let why = format!("Service {service}: cannot open a tunnel to the endpoint's node");
        return answer(StatusCode::BAD_GATEWAY, &why);
    }
    let scheme = match server.tls {
        Some(_) => "https",
        None => "http",
    };
    match forward(request, (peer, scheme), &host, target, &server.tracker).await {
        Ok(response) => response,
        Err(why) => {
            tracing::debug!(%service, %target, %why, "Ingress backend failed");
            answer(
                StatusCode::BAD_GATEWAY,
                &format!("Service {service}: {why}"),
            )
        }
    }
}

/// Sends `request` to the endpoint at `target` and returns its response.
async fn forward(
    mut request: Request<Incoming>,
    (peer, scheme): (SocketAddr, &str),
    host: &str,
    target: SocketAddr,
    tracker: &TaskTracker,
) -> Result<Response<Body>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| "the endpoint did not accept the connection in time".to_owned())?
        .map_err(|err| format!("cannot connect to the endpoint: {err}"))?;
    stream.set_nodelay(true).ok();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake with the endpoint failed: {err}"))?;
    tracker.spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "connection to an Ingress endpoint ended with an error");
        }
    });
    forwarded_headers(request.headers_mut(), peer, host, scheme);
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("the endpoint did not answer: {err}"))?;
    // Hop-by-hop both ways: an endpoint's `Connection: close` ends its own connection, not
    // the client's kept-alive one.
    for name in HOP_BY_HOP {
        response.headers_mut().remove(name);
    }
    Ok(response.map(BodyExt::boxed))
}

/// Drops hop-by-hop headers and says who the request came from, and over what (`http`
/// or `https`).
fn forwarded_headers(headers: &mut hyper::HeaderMap, peer: SocketAddr, host: &str, scheme: &str) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let client = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client,
    };
    for (name, value) in [
        ("x-forwarded-for", forwarded_for.as_str()),
        ("x-forwarded-host", host),
        ("x-forwarded-proto", scheme),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// ingress-nginx's `ssl-redirect`: a 308 to the same host, path and query over HTTPS on
/// `https_port` (named in the URL unless it is 443).
fn redirect_to_https(host: &str, https_port: u16, uri: &hyper::Uri) -> Response<Body> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let port = match https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{name}{port}{path}");
    let mut response = answer(StatusCode::PERMANENT_REDIRECT, &location);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The request's host: its `Host` header, else its URI's authority.
fn host_of<B>(request: &Request<B>) -> &str {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A plain-text answer from the ingress itself.
fn answer(status: StatusCode, why: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{why}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let mut headers = hyper::HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; canary=always"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, "canary"), Some("always"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn forwarded_headers_name_the_client_and_drop_hop_by_hop_ones() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        let peer: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        forwarded_headers(&mut headers, peer, "shop.example.com", "http");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        assert_eq!(headers["x-forwarded-host"], "shop.example.com");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(headers.get("connection").is_none());
    }

    #[test]
    fn tls_ports_are_served_only_with_certificates_and_the_agents_own_ports_win() {
        use wasmfleet_protocol::routes::{Listener, TlsRoutes};
        let listener = |port| Listener {
            port,
            hosts: vec![],
        };
        let routes = RouteTable {
            revision: 1,
            listeners: vec![
                listener(INGRESS_PORT),
                listener(8080),
                listener(8443),
                listener(80),
            ],
            tls: TlsRoutes {
                https_ports: vec![8443, 80],
                ..TlsRoutes::default()
            },
            canary_patterns: vec![],
        };
        let ports = IngressPorts {
            http: 80,
            https: 443,
        };
        let with = wanted_ports(&routes, ports, true);
        let expected = [
            (80, Mode::Plain),
            (443, Mode::Tls),
            (8080, Mode::Plain),
            (8443, Mode::Tls),
        ];
        assert_eq!(with.into_iter().collect::<Vec<_>>(), expected);
        let without = wanted_ports(&routes, ports, false);
        assert_eq!(
            without.into_iter().collect::<Vec<_>>(),
            [(80, Mode::Plain), (8080, Mode::Plain)]
        );
    }

    #[test]
    fn a_redirect_keeps_host_path_and_query_and_names_a_port_other_than_443() {
        let uri: hyper::Uri = "/a/b?q=1".parse().unwrap();
        let response = redirect_to_https("shop.example.com:8080", 8443, &uri);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://shop.example.com:8443/a/b?q=1"
        );
        let response = redirect_to_https("shop.example.com", 443, &uri);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://shop.example.com/a/b?q=1"
        );
    }
}
