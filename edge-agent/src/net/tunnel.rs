//! The tunnel between two agents: one mutually authenticated TLS connection per pair of
//! nodes, carrying HTTP/2, in which every TCP connection from a pod to a pod on the other
//! node is one `CONNECT` stream (RFC 9113 §8.5), multiplexed with the others and flow
//! controlled on its own.
//!
//! The side that dialed (directly or through the relay) is the HTTP/2 client ([`Link`]);
//! the other serves streams ([`serve`]). A stream names its destination as its authority
//! (`10.42.1.7:8080`, a pod IP of the serving node) and its source pod IP in
//! [`SOURCE_HEADER`]; the serving side connects from the source's loopback alias, so the
//! destination pod sees the real peer pod IP, as on a flat pod network. A destination
//! outside the serving node's own pod range, or a source outside the dialing node's, is
//! refused: a peer reaches only pods, never the node's other ports.
//!
//! A UDP flow is an extended `CONNECT` stream (RFC 8441) of protocol [`CONNECT_UDP`]
//! (RFC 9298's name) with the same authority and source header; the serving side sends
//! from a UDP socket on the source's alias, connected to the pod, and the stream carries
//! the datagrams both ways as frames ([`super::datagrams`]). A peer that does not know
//! UDP flows never enabled extended `CONNECT`, so such a stream fails at once there
//! (taken for a closed tunnel: dialed once more, then the flow is refused).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::Ipv4Net;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::network::loopback_alias;

/// The extended `CONNECT` protocol of a stream that carries a UDP flow.
pub const CONNECT_UDP: &str = "connect-udp";

/// The request header naming the pod IP a stream comes from.
pub const SOURCE_HEADER: &str = "wasmfleet-source";

/// How long the serving side waits for a pod to accept a stream's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Streams one tunnel carries at once.
const MAX_STREAMS: u32 = 1024;

/// How often an idle tunnel is pinged, and how long a ping may go unanswered before the
/// tunnel counts as dead (a peer that vanished without closing).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The tunnel is gone (the peer closed it, or it stopped answering).
    #[error("the tunnel to the peer is closed: {0}")]
    Closed(#[source] hyper::Error),
    /// The peer answered, but did not connect the stream.
    #[error("the peer refused the stream: {0}")]
    Refused(String),
}

/// The client side of a tunnel: opens streams to the peer's pods.
#[derive(Clone)]
pub struct Link {
    send: SendRequest<Empty<Bytes>>,
}

impl Link {
    /// Starts HTTP/2 on an authenticated connection; the connection is driven by a task on
    /// `tracker` until it closes or `stop`.
    pub async fn handshake<S>(
        io: S,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Self, hyper::Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await?;
        tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                result = connection => if let Err(err) = result {
                    tracing::debug!(%err, "tunnel closed");
                },
            }
        });
        Ok(Self { send })
    }

    /// Whether the tunnel can still carry streams.
    pub fn is_open(&self) -> bool {
        !self.send.is_closed()
    }

    /// Opens a stream to `destination` (a pod on the peer) from the pod `source`.
    pub async fn open(
        &self,
        destination: SocketAddrV4,
        source: Option<Ipv4Addr>,
    ) -> Result<TokioIo<Upgraded>, StreamError> {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(destination.to_string());
        self.send(request, source).await
    }

    /// Opens a stream that carries a UDP flow to `destination` (a pod on the peer) from
    /// the pod `source`, as frames of [`super::datagrams`].
    pub async fn open_datagrams(
        &self,
        destination: SocketAddrV4,
        source: Ipv4Addr,
    ) -> Result<TokioIo<Upgraded>, StreamError> {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://{destination}/"))
            .extension(hyper::ext::Protocol::from_static(CONNECT_UDP));
        self.send(request, Some(source)).await
    }

    async fn send(
        &self,
        mut request: http::request::Builder,
        source: Option<Ipv4Addr>,
    ) -> Result<TokioIo<Upgraded>, StreamError> {
        if let Some(source) = source {
            request = request.header(SOURCE_HEADER, source.to_string());
        }
        let request = request
            .body(Empty::new())
            .map_err(|err| StreamError::Refused(err.to_string()))?;
        let mut send = self.send.clone();
        send.ready().await.map_err(StreamError::Closed)?;
        let response = send
            .send_request(request)
            .await
            .map_err(StreamError::Closed)?;
        if response.status() != StatusCode::OK {
            let reason = response
                .headers()
                .get(REASON_HEADER)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| response.status().to_string(), str::to_owned);
            return Err(StreamError::Refused(reason));
        }
        hyper::upgrade::on(response)
            .await
            .map(TokioIo::new)
            .map_err(StreamError::Closed)
    }
}

/// The response header that says why a stream was refused.
const REASON_HEADER: &str = "wasmfleet-reason";

/// Whose streams a served tunnel carries.
#[derive(Debug, Clone)]
pub struct Served {
    /// The dialing peer's name (for logs).
    pub peer: String,
    /// The dialing peer's pod range: sources must be in it.
    pub peer_pods: Ipv4Net,
    /// This node's pod range: destinations must be in it.
    pub own_pods: Ipv4Net,
}

/// Serves the streams of one authenticated tunnel until the peer closes it or `stop`.
pub async fn serve<S>(io: S, served: Served, tracker: TaskTracker, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let peer = served.peer.clone();
    let cut = stop.clone();
    let service = hyper::service::service_fn(move |request| {
        let served = served.clone();
        let tracker = tracker.clone();
        let stop = stop.clone();
        async move { Ok::<_, std::convert::Infallible>(stream(request, &served, &tracker, stop).await) }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .enable_connect_protocol()
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        closed = connection => if let Err(err) = closed {
            tracing::debug!(%peer, %err, "tunnel from peer closed");
        },
        () = cut.cancelled() => tracing::debug!(%peer, "tunnel from peer cut"),
    }
}

/// Connects one stream to the pod it names, then copies both ways on `tracker`.
async fn stream(
    mut request: Request<Incoming>,
    served: &Served,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Response<Empty<Bytes>> {
    let target = match destination(&request, served) {
        Ok(target) => target,
        Err(reason) => return refusal(StatusCode::FORBIDDEN, &reason),
    };
    let source = request
        .headers()
        .get(SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .filter(|ip| served.peer_pods.contains(ip));
    let udp = request
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|protocol| protocol.as_str() == CONNECT_UDP);
    match udp {
        None => {}
        Some(true) => return datagram_stream(request, target, source, tracker, stop).await,
        Some(false) => return refusal(StatusCode::BAD_REQUEST, "unknown stream protocol"),
    }
    let pod = match connect(target, source).await {
        Ok(pod) => pod,
        Err(err) => return refusal(StatusCode::BAD_GATEWAY, &err.to_string()),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tracker.spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        splice(TokioIo::new(upgraded), pod, stop).await;
    });
    Response::new(Empty::new())
}

/// Connects one UDP flow to the pod it names, from the source pod's alias, then carries
/// its datagrams on `tracker`.
async fn datagram_stream(
    mut request: Request<Incoming>,
    target: SocketAddrV4,
    source: Option<Ipv4Addr>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Response<Empty<Bytes>> {
    let Some(source) = source else {
        return refusal(
            StatusCode::FORBIDDEN,
            "a UDP flow names a source pod of the peer",
        );
    };
    let socket = match udp_connect(target, source).await {
        Ok(socket) => socket,
        Err(err) => return refusal(StatusCode::BAD_GATEWAY, &err.to_string()),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tracker.spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let local = super::datagrams::Local::Connected(&socket);
        super::datagrams::carry(TokioIo::new(upgraded), local, stop).await;
    });
    Response::new(Empty::new())
}

/// A UDP socket on `source`'s alias connected to a pod of this node.
async fn udp_connect(target: SocketAddrV4, source: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(loopback_alias(source).into(), 0)).await?;
    let alias = SocketAddr::new(loopback_alias(*target.ip()).into(), target.port());
    socket.connect(alias).await?;
    Ok(socket)
}

/// The pod address a stream asks for, if this node may connect it.
fn destination(request: &Request<Incoming>, served: &Served) -> Result<SocketAddrV4, String> {
    if request.method() != Method::CONNECT {
        return Err(format!("{} is not a tunnel stream", request.method()));
    }
    let authority = request
        .uri()
        .authority()
        .ok_or("a stream names its destination")?;
    let target: SocketAddrV4 = authority
        .as_str()
        .parse()
        .map_err(|_| format!("{authority} is not a pod address"))?;
    if !served.own_pods.contains(target.ip()) {
        return Err(format!("{} is not a pod of this node", target.ip()));
    }
    Ok(target)
}

/// Connects to a pod of this node from `source`'s alias (the pod IP its peer will see).
async fn connect(target: SocketAddrV4, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(loopback_alias(source).into(), 0))?;
    }
    let alias = SocketAddr::new(loopback_alias(*target.ip()).into(), target.port());
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(alias))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn refusal(status: StatusCode, reason: &str) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(reason) {
        response.headers_mut().insert(REASON_HEADER, value);
    }
    response
}

/// Copies both ways between two connections until both are done or `stop`.
pub async fn splice<A, B>(mut a: A, mut b: B, stop: CancellationToken)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::select! {
        () = stop.cancelled() => {}
        result = tokio::io::copy_bidirectional(&mut a, &mut b) => if let Err(err) = result {
            tracing::trace!(%err, "spliced connection ended");
        },
    }
}
