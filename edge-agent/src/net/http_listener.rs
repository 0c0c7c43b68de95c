//! An HTTP/1.1 listener on a pod's own address, for containers that serve `wasi:http`.
//!
//! [`HttpListener::bind`] binds the pod's loopback alias on the container's port (so other
//! pods reach it at `http://<podIP>:<port>/`, Services route to it and `httpGet` probes
//! dial it, like any socket the pod listens on); [`HttpListener::serve`] accepts until its
//! stop token is cancelled and hands each request to a [`Handler`]. What comes from
//! outside is bounded here, before any guest runs:
//! - at most [`ListenerLimits::max_connections`] open connections (accepting waits for a
//!   free slot) and [`ListenerLimits::max_concurrent_requests`] requests being handled
//!   (beyond: `503` at once);
//! - request heads of at most [`ListenerLimits::max_header_bytes`] (hyper answers `431`),
//!   read within [`ListenerLimits::header_read_timeout`] (slow clients are dropped);
//! - bodies of at most [`ListenerLimits::max_body_bytes`]: a larger `Content-Length` is a
//!   `413` at once, a longer chunked body fails the guest's read.
//!
//! Stopping drains: no new connections, idle keep-alive connections close, requests in
//! flight finish (each is bounded by its handler's time limit), for at most
//! [`ListenerLimits::drain`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Limited;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request body as handlers get it: cut off past the body limit.
pub type RequestBody = Limited<Incoming>;

/// What one listener lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Open connections at once.
    pub max_connections: usize,
    /// Requests being handled at once (each one a guest instance).
    pub max_concurrent_requests: usize,
    /// Bytes of a request head (request line and headers).
    pub max_header_bytes: usize,
    /// Bytes of a request body.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub drain: Duration,
}

/// Answers the requests of one listener.
pub trait Handler: Send + Sync + 'static {
    /// The response body type.
    type Body: Body<Data = Bytes, Error = Self::BodyError> + Send + 'static;
    /// The response body's error type.
    type BodyError: Into<Box<dyn std::error::Error + Send + Sync>>;

    /// Answers `request`; `slot` is one of the listener's concurrent request slots, to be
    /// held until the request's work is over (the response body written).
    fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        slot: OwnedSemaphorePermit,
    ) -> Pin<Box<dyn Future<Output = Response<Self::Body>> + Send>>;

    /// A plain-text response the listener answers itself (limits).
    fn refuse(&self, status: StatusCode, message: String) -> Response<Self::Body>;
}

/// A bound listener, not serving yet.
pub struct HttpListener {
    listener: TcpListener,
    limits: ListenerLimits,
}

impl HttpListener {
    /// Binds `address` (the pod's alias and the container's port).
    pub async fn bind(address: SocketAddr, limits: ListenerLimits) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self { listener, limits })
    }

    /// Serves requests with `handler` until `stop` is cancelled, then drains.
    pub async fn serve<H: Handler>(self, handler: Arc<H>, stop: &CancellationToken) {
        let limits = self.limits;
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let requests = Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1)));
        while let Some((stream, slot)) = self.accept(&slots, stop).await {
            let connection = Connection {
                handler: handler.clone(),
                requests: requests.clone(),
                limits,
            };
            connections.spawn(connection.run(stream, slot, stop.clone()));
        }
        drop(self.listener);
        connections.close();
        if tokio::time::timeout(limits.drain, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(drain = ?limits.drain, "HTTP requests still in flight after the drain period");
        }
    }

    /// The next connection with its slot, or `None` once stopped.
    async fn accept(
        &self,
        slots: &Arc<Semaphore>,
        stop: &CancellationToken,
    ) -> Option<(TcpStream, OwnedSemaphorePermit)> {
        loop {
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => return None,
                slot = slots.clone().acquire_owned() => slot.ok()?,
            };
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    // Small writes (a response head, then its body) must not wait for ACKs.
                    stream.set_nodelay(true).ok();
                    return Some((stream, slot));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// One accepted connection.
struct Connection<H> {
    handler: Arc<H>,
    requests: Arc<Semaphore>,
    limits: ListenerLimits,
}

impl<H: Handler> Connection<H> {
    async fn run(self, stream: TcpStream, _slot: OwnedSemaphorePermit, stop: CancellationToken) {
        let limits = self.limits;
        let this = Arc::new(self);
        let service = service_fn(move |request| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.dispatch(request).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes);
        let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "HTTP connection ended with an error");
        }
    }

    async fn dispatch(&self, request: Request<Incoming>) -> Response<H::Body> {
        let limits = &self.limits;
        let Ok(slot) = self.requests.clone().try_acquire_owned() else {
            return self.handler.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "over the limit of {} concurrent requests",
                    limits.max_concurrent_requests
                ),
            );
        };
        if declared_length(&request).is_some_and(|length| length > limits.max_body_bytes as u64) {
            return self.handler.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over the limit of {} bytes",
                    limits.max_body_bytes
                ),
            );
        }
        let request = request.map(|body| Limited::new(body, limits.max_body_bytes));
        self.handler.clone().handle(request, slot).await
    }
}

/// The request's `Content-Length`, if it declares a valid one.
fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
