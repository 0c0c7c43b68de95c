//! Serving a `wasi:http/proxy` component (a component exporting
//! `wasi:http/incoming-handler`, what `wasmtime serve` and Spin run) on its container's port.
//!
//! The component is linked once ([`ProxyPre`], pre-instantiated when the program loads);
//! every request gets a fresh instance in a store of its own, built like a command's
//! ([`Sandbox::component_store`]: the container's env, stdout/stderr into its log, the pod's
//! sockets and outgoing HTTP), and limited per request:
//! - memory: the container's `limits.memory` applies to each instance (the store's
//!   limiter, drawing from the node's pool); a request that runs out fails with `500`;
//! - CPU: the container's `limits.cpu` throttles each instance as it would a command;
//! - time: [`HttpLimits::request_timeout`] from the request's arrival to the end of its
//!   response body. Past it the epoch callback interrupts a busy guest and the instance is
//!   dropped (also while it waits in a host call): the client gets `503` if no response
//!   was sent yet, else the connection is cut;
//! - concurrency and size: [`HttpLimits::max_concurrent_requests`] instances at once (more
//!   get `503`) and bodies of at most [`HttpLimits::max_body_bytes`] (the listener,
//!   [`crate::net::http_listener`]).
//!
//! A trap, or a handler that returns without a response, is a `500` naming the failure;
//! the server goes on serving. Stopping the container drains: requests in flight finish.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::budget::NodeBudget;
use super::limits::MemoryLimiter;
use super::logbuf::LogBuffer;
use super::sandbox::{ComponentState, Exit, ExitReason, RunSpec, Sandbox, classify};
use crate::net::http_listener::{Handler, HttpListener, ListenerLimits, RequestBody};

/// Per-request limits of a served component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a request's arrival to the end of its response body.
    pub request_timeout: Duration,
    /// Requests (instances) at once; more get `503`.
    pub max_concurrent_requests: usize,
    /// Bytes of a request body.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 32,
            max_body_bytes: 8 << 20,
        }
    }
}

impl HttpLimits {
    /// What the listener lets in for these limits.
    fn listener(&self) -> ListenerLimits {
        ListenerLimits {
            max_connections: 256,
            max_concurrent_requests: self.max_concurrent_requests,
            max_header_bytes: 64 << 10,
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: Duration::from_secs(10),
            drain: self.request_timeout,
        }
    }
}

/// One served container: what each request's instance is made from.
pub(super) struct Proxy {
    pub engine: Engine,
    pub live: Arc<AtomicUsize>,
    pub budget: NodeBudget,
    pub logs: LogBuffer,
    pub pre: ProxyPre<ComponentState>,
    pub spec: RunSpec,
}

/// Serves `proxy` until `stop` is cancelled (then drains); a container that cannot serve
/// (no port, no pod network, the port taken) ends at once with an error saying why.
pub(super) async fn serve(proxy: Proxy, stop: &CancellationToken) -> Exit {
    let (address, shown) = match listen_address(&proxy.spec) {
        Ok(addresses) => addresses,
        Err(message) => return failed(message),
    };
    let listener = match HttpListener::bind(address, proxy.spec.http_limits.listener()).await {
        Ok(listener) => listener,
        Err(error) => return failed(format!("cannot serve wasi:http on {shown}: {error}")),
    };
    tracing::info!(pod = %proxy.spec.pod_name, %shown, "serving wasi:http");
    listener.serve(Arc::new(proxy), stop).await;
    Exit::killed()
}

/// Where the container listens (the pod's alias) and what the pod calls it (its IP).
fn listen_address(spec: &RunSpec) -> Result<(SocketAddr, SocketAddr), String> {
    let Some(net) = &spec.network else {
        return Err(
            "a wasi:http proxy component needs the pod network, and this pod has \
                    none (its server is older than the pod network)"
                .into(),
        );
    };
    let Some(port) = spec.http_port else {
        return Err(NO_PORT.into());
    };
    let shown = SocketAddr::new(net.ip().into(), port);
    let address = net
        .bind_address(shown)
        .map_err(|refusal| format!("cannot serve on {shown}: {refusal:?}"))?;
    Ok((address, shown))
}

/// Why a proxy component without a port cannot run.
pub const NO_PORT: &str = "the component is a wasi:http proxy (it exports \
    wasi:http/incoming-handler, not wasi:cli/run) and is served on its container's first TCP \
    containerPort, but the container declares none: add `ports: [{containerPort: 8080}]`";

fn failed(message: String) -> Exit {
    Exit {
        code: 1,
        reason: ExitReason::Error,
        message,
    }
}

impl Handler for Proxy {
    type Body = HyperOutgoingBody;
    type BodyError = wasmtime_wasi_http::Error;

    fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        slot: OwnedSemaphorePermit,
    ) -> Pin<Box<dyn Future<Output = Response<Self::Body>> + Send>> {
        Box::pin(self.respond(request, slot))
    }

    fn refuse(&self, status: StatusCode, message: String) -> Response<Self::Body> {
        text(status, message)
    }
}

impl Proxy {
    /// Runs one request in its own instance, within the time limit.
    async fn respond(
        self: Arc<Self>,
        mut request: Request<RequestBody>,
        slot: OwnedSemaphorePermit,
    ) -> Response<HyperOutgoingBody> {
        let deadline = Instant::now() + self.spec.http_limits.request_timeout;
        self.default_host(&mut request);
        let (sender, receiver) = oneshot::channel();
        let this = self.clone();
        let instance = tokio::spawn(async move {
            let _slot = slot;
            let run = this.instance(request, sender, deadline);
            tokio::time::timeout_at(deadline.into(), run).await.ok()
        });
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the component failed the request: {code:?}"),
            ),
            Ok(Err(_no_response)) => match instance.await {
                Ok(Some(exit)) if Instant::now() < deadline => self.no_response(exit),
                Ok(_) => self.timed_out(),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the request's instance failed: {error}"),
                ),
            },
            Err(_elapsed) => {
                instance.abort();
                self.timed_out()
            }
        }
    }

    /// A fresh instance handling `request`; how it ended.
    async fn instance(
        &self,
        request: Request<RequestBody>,
        sender: oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>,
        deadline: Instant,
    ) -> Exit {
        // Requests in flight are never interrupted by a stop: the listener drains them.
        let stop = CancellationToken::new();
        let sandbox = Sandbox {
            engine: &self.engine,
            live: &self.live,
            logs: &self.logs,
            stop: &stop,
            budget: &self.budget,
        };
        let limiter = MemoryLimiter::new(self.spec.memory_limit_bytes, self.budget.memory())
            .counting_into(self.spec.usage.clone());
        let oom = limiter.exceeded_flag();
        let mut store = sandbox.component_store(&self.spec, limiter, Some(deadline));
        let call = self.call(&mut store, request, sender);
        let result = super::usage::metered(&self.spec.usage, call).await;
        classify(result, &oom)
    }

    async fn call(
        &self,
        store: &mut Store<ComponentState>,
        request: Request<RequestBody>,
        sender: oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>,
    ) -> wasmtime::Result<()> {
        let max_body = self.spec.http_limits.max_body_bytes;
        let request = request.map(|body| body.map_err(move |error| body_error(error, max_body)));
        let data = store.data_mut();
        let request = data.http().new_incoming_request(Scheme::Http, request)?;
        let outparam = data.http().new_response_outparam(sender)?;
        let proxy = self.pre.instantiate_async(&mut *store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, request, outparam)
            .await
    }

    /// HTTP/1.0 clients may send no `Host`: the component still sees an authority (the
    /// pod's address), as wasi:http requires one.
    fn default_host(&self, request: &mut Request<RequestBody>) {
        if request.uri().authority().is_some() || request.headers().contains_key(HOST) {
            return;
        }
        if let Ok((_, shown)) = listen_address(&self.spec)
            && let Ok(host) = HeaderValue::from_str(&shown.to_string())
        {
            request.headers_mut().insert(HOST, host);
        }
    }

    /// The answer when the instance ended (in time) without sending a response.
    fn no_response(&self, exit: Exit) -> Response<HyperOutgoingBody> {
        let message = match exit.reason {
            ExitReason::Completed => "the component returned without sending a response".into(),
            _ => format!("the component failed: {}", exit.message),
        };
        tracing::debug!(pod = %self.spec.pod_name, %message, "wasi:http request failed");
        text(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn timed_out(&self) -> Response<HyperOutgoingBody> {
        let limit = self.spec.http_limits.request_timeout;
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request exceeded the container's time limit of {limit:?}"),
        )
    }
}

/// A request body error as wasi:http reports it to the guest.
fn body_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    max_body: usize,
) -> wasmtime_wasi_http::Error {
    if error.is::<LengthLimitError>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body as u64));
    }
    match error.downcast::<hyper::Error>() {
        Ok(error) => wasmtime_wasi_http::Error::Hyper(*error),
        Err(error) => wasmtime_wasi_http::Error::InternalError(Some(error.to_string())),
    }
}

/// A plain-text response from the agent itself.
fn text(status: StatusCode, message: String) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(message + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
