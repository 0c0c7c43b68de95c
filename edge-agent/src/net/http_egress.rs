//! Outgoing `wasi:http` requests of a pod's components (`wasi:http/outgoing-handler`), sent
//! by the agent through the pod network's rules.
//!
//! Outgoing HTTP never passes through `wasi:sockets` (nor `socket_addr_check`):
//! wasmtime-wasi-http hands every request to [`WasiHttpHooks::send_request`], which
//! [`PodHttpHooks`] implements. The request's authority is resolved and routed by the pod's
//! [`PodNet`] exactly as a socket connect to it would be: names by [`PodNet::lookup`]
//! (Service names answer their ClusterIP; other names reach the host resolver only when an
//! egress rule names them), addresses by [`PodNet::connect_address`] (pods and Services are
//! reachable, anything else only through `wasmfleet.io/egress`), and cluster destinations are
//! dialled from the pod's own alias, so the server sees the caller's pod IP. The authority
//! always comes from the request's URI, never from a `Host` header the guest set.
//!
//! A denied destination fails at once with `HttpRequestDenied`. Plain `http://` only: the
//! agent carries no TLS stack for guests (wasmtime-wasi-http's `default-send-request` would
//! bring rustls and a root store), so `https://` is refused with a message saying so.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{Lookup, PodNet, Refusal};

/// How long a connect may take when the guest sets no timeout of its own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the response head may take when the guest sets no timeout of its own.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a name lookup through the host resolver may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the guest's wasi:http calls see of the pod: its network (`None` for a pod without
/// one, which may send no requests) and its name.
pub struct PodHttpHooks {
    net: Option<Arc<PodNet>>,
    pod_name: String,
}

impl PodHttpHooks {
    /// The hooks of a container of pod `pod_name` on `net`.
    pub fn new(net: Option<Arc<PodNet>>, pod_name: String) -> Self {
        Self { net, pod_name }
    }
}

type BoxedIo = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(http::Response<WasiBody>, BoxedIo), Error>;

impl WasiHttpHooks for PodHttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: BoxedIo,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let net = self.net.clone();
        let pod_name = self.pod_name.clone();
        Box::new(async move {
            let net = net.ok_or(Error::HttpRequestDenied)?;
            send(&net, &pod_name, request, options.unwrap_or_default()).await
        })
    }
}

/// Sends `request` from the pod: resolve, check, connect, HTTP/1.1.
async fn send(
    net: &PodNet,
    pod_name: &str,
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
) -> Sent {
    if request.uri().scheme() == Some(&Scheme::HTTPS) {
        return Err(Error::InternalError(Some(
            "https:// is not supported for outgoing requests from wasmfleet pods (the agent \
             has no TLS client for guests): use http://"
                .into(),
        )));
    }
    let authority = request
        .uri()
        .authority()
        .cloned()
        .ok_or(Error::HttpRequestUriInvalid)?;
    let port = authority.port_u16().unwrap_or(80);
    let target = destination(net, pod_name, authority.host(), port).await?;
    let connect_timeout = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let stream = connect(net, target, connect_timeout).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::from)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Ends when the response is read (or dropped) and the sender is gone.
        let _ = done_tx.send(connection.await);
    });
    *request.uri_mut() = origin_form(request.uri());
    let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let io: BoxedIo = Box::new(async move {
        match done_rx.await {
            Ok(Err(error)) => Err(Error::from(error)),
            Ok(Ok(())) | Err(_) => Ok(()),
        }
    });
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        io,
    ))
}

/// The request target as sent to an origin server: the path and query only.
fn origin_form(uri: &http::Uri) -> http::Uri {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    path.parse().unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// The host address a request to `host:port` goes to, if the pod may send it there.
async fn destination(
    net: &PodNet,
    pod_name: &str,
    host: &str,
    port: u16,
) -> Result<SocketAddr, Error> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match literal.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => resolve(net, pod_name, host, port).await?,
    };
    net.connect_address(SocketAddr::new(ip, port))
        .map_err(refused)
}

/// Resolves a name inside the pod (see [`PodNet::lookup`]); addresses of an allowed host name
/// become reachable, as after a guest's own lookup.
async fn resolve(net: &PodNet, pod_name: &str, host: &str, port: u16) -> Result<IpAddr, Error> {
    let (name, allowed_port) = match net.lookup(host, pod_name).map_err(refused)? {
        Lookup::Local(ip) => return Ok(ip.into()),
        Lookup::Host { name, port } => (name, port),
    };
    let addresses = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((name.as_str(), port)),
    )
    .await
    .map_err(|_| Error::DnsTimeout)?
    .map_err(|error| Error::DnsError {
        rcode: Some(error.to_string()),
        info_code: None,
    })?;
    let ip = addresses
        .map(|address| address.ip())
        .find(IpAddr::is_ipv4)
        .ok_or(Error::DestinationNotFound)?;
    net.learn(ip, allowed_port);
    Ok(ip)
}

/// Connects to the host address `target`: from the pod's alias for cluster destinations,
/// after the same final gate as the pod's sockets.
async fn connect(net: &PodNet, target: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    if !net.allows_host_connect(target) {
        return Err(Error::HttpRequestDenied);
    }
    if !net.services().reach(target) {
        return Err(Error::DestinationUnavailable);
    }
    let socket = TcpSocket::new_v4().map_err(Error::Connect)?;
    if net.is_cluster_destination(target) {
        socket
            .bind(SocketAddr::new(net.alias().into(), 0))
            .map_err(Error::Connect)?;
    }
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(Ok(stream)) => {
            stream.set_nodelay(true).ok();
            Ok(stream)
        }
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(Error::ConnectionRefused)
        }
        Ok(Err(error)) => Err(Error::Connect(error)),
        Err(_) => Err(Error::ConnectionTimeout),
    }
}

/// The wasi:http error for a refusal of the pod network.
fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::Denied => Error::HttpRequestDenied,
        Refusal::NotBindable | Refusal::Ipv6 | Refusal::UdpEgress => Error::DestinationIpProhibited,
        Refusal::NoEndpoints => Error::ConnectionRefused,
        Refusal::Elsewhere | Refusal::Unreachable | Refusal::SocketLimit => {
            Error::DestinationUnavailable
        }
        Refusal::NoSuchName => Error::DnsError {
            rcode: Some("NXDOMAIN".into()),
            info_code: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::net::ServiceDirectory;
    use wasmfleet_protocol::network::{ClusterCidr, PodNetwork, parse_egress};

    fn pod(egress: &str) -> PodNet {
        let network = PodNetwork {
            ip: "10.42.77.5".parse().unwrap(),
            cluster_cidr: ClusterCidr::default().net(),
            ports: vec![],
            egress: parse_egress(egress).unwrap(),
        };
        PodNet::new(&network, "default", ServiceDirectory::new("pi-1", None)).unwrap()
    }

    #[tokio::test]
    async fn cluster_addresses_and_allowed_hosts_are_reachable_the_rest_denied() {
        let net = pod("192.0.2.7:8080");
        let to = |host: &'static str, port| destination(&net, "web", host, port);
        assert_eq!(
            to("10.42.77.9", 80).await.unwrap(),
            "127.42.77.9:80".parse().unwrap()
        );
        assert_eq!(
            to("localhost", 81).await.unwrap(),
            "127.42.77.5:81".parse().unwrap()
        );
        assert!(to("192.0.2.7", 8080).await.is_ok());
        assert!(matches!(
            to("192.0.2.7", 80).await,
            Err(Error::HttpRequestDenied)
        ));
        assert!(matches!(
            to("example.com", 80).await,
            Err(Error::HttpRequestDenied)
        ));
        assert!(matches!(
            to("nosuch", 80).await,
            Err(Error::DnsError { .. })
        ));
    }

    #[tokio::test]
    async fn https_and_pods_without_a_network_are_refused_with_a_reason() {
        let net = pod("");
        let request = http::Request::get("https://10.42.77.9/")
            .body(WasiBody::default())
            .unwrap();
        let Err(Error::InternalError(Some(message))) =
            send(&net, "web", request, RequestOptions::default()).await
        else {
            panic!("https was not refused");
        };
        assert!(message.contains("https://"), "{message}");

        let mut hooks = PodHttpHooks::new(None, "web".into());
        let request = http::Request::get("http://10.42.77.9/")
            .body(WasiBody::default())
            .unwrap();
        let sent = Box::into_pin(hooks.send_request(request, None, Box::new(async { Ok(()) })));
        assert!(matches!(sent.await, Err(Error::HttpRequestDenied)));
    }

    #[test]
    fn requests_go_out_in_origin_form() {
        let uri: http::Uri = "http://web:8080/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let uri: http::Uri = "http://web:8080".parse().unwrap();
        assert_eq!(origin_form(&uri), "/");
    }
}
