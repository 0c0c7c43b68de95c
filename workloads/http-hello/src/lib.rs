//! `http-hello`: a `wasi:http/proxy` guest (wasm32-wasip2 component).
//!
//! Not a command: it has no `main`, it exports `wasi:http/incoming-handler` and the host
//! calls `handle` once per request. Every request gets
//!
//! ```text
//! HTTP/1.1 200 OK
//! content-type: text/plain
//! x-request-path: /the/path?and=query
//!
//! hello from wasmfleet
//! ```
//!
//! `x-request-path` echoes the request's path and query (`/` when it has none). Each
//! request is logged as one stdout line, `METHOD PATH` (e.g. `GET /`). When
//! `$MESSAGE` is set, its value is a second body line (so two Deployments of one module,
//! stable and canary, can be told apart). The request body is not read. A host that
//! cannot take the response (the client went away) is not this guest's problem: failures
//! after the status is sent are ignored.
//!
//! Three paths misbehave on purpose, to exercise the host's per-request limits, and answer
//! like `/` if they ever finish: `/spin?ms=N` busy-loops for N ms (never yielding),
//! `/sleep?ms=N` sleeps N ms (blocked in a host call), `/alloc?mib=N` allocates and
//! touches N MiB.

use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(HttpHello);

/// The response header that echoes the request path.
const PATH_HEADER: &str = "x-request-path";

struct HttpHello;

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request_path(request.path_with_query());
        println!("{} {path}", method_name(&request.method()));
        misbehave(&path);
        match response(&path) {
            Ok((response, body)) => {
                ResponseOutparam::set(response_out, Ok(response));
                // Too late for another status: a failed write only cuts the body short.
                let _ = write_body(body);
            }
            Err(error) => ResponseOutparam::set(response_out, Err(error)),
        }
    }
}

/// The method as it appears on the request line.
fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// What a misbehaving path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    Spin(u64),
    Sleep(u64),
    Alloc(usize),
}

/// The misbehaviour `path` asks for, if any.
fn misbehaviour(path: &str) -> Option<Misbehaviour> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let number = |key: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    match route {
        "/spin" => Some(Misbehaviour::Spin(number("ms")?)),
        "/sleep" => Some(Misbehaviour::Sleep(number("ms")?)),
        "/alloc" => Some(Misbehaviour::Alloc(usize::try_from(number("mib")?).ok()?)),
        _ => None,
    }
}

/// Does what a misbehaving path asks for (nothing for other paths).
fn misbehave(path: &str) {
    match misbehaviour(path) {
        Some(Misbehaviour::Spin(ms)) => {
            let start = std::time::Instant::now();
            while start.elapsed().as_millis() < u128::from(ms) {
                std::hint::spin_loop();
            }
        }
        Some(Misbehaviour::Sleep(ms)) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        Some(Misbehaviour::Alloc(mib)) => {
            let held: Vec<Vec<u8>> = (0..mib).map(|_| vec![1u8; 1 << 20]).collect();
            std::hint::black_box(&held);
        }
        None => {}
    }
}

/// The response body: the greeting, then `$MESSAGE` on a line of its own when set.
fn body_text(message: Option<&str>) -> String {
    match message {
        Some(message) if !message.is_empty() => format!("hello from wasmfleet\n{message}\n"),
        _ => "hello from wasmfleet\n".to_owned(),
    }
}

/// The path to echo: the request's path and query, or `/`.
fn request_path(path_with_query: Option<String>) -> String {
    path_with_query
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

/// The response headers, in order.
fn headers(path: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("content-type".to_owned(), b"text/plain".to_vec()),
        (PATH_HEADER.to_owned(), path.as_bytes().to_vec()),
    ]
}

/// A 200 response (the default status) with its headers, and its body to write.
fn response(path: &str) -> Result<(OutgoingResponse, OutgoingBody), ErrorCode> {
    let fields =
        Fields::from_list(&headers(path)).map_err(|_| internal_error("invalid response header"))?;
    let response = OutgoingResponse::new(fields);
    let body = response
        .body()
        .map_err(|()| internal_error("response body already taken"))?;
    Ok((response, body))
}

/// Writes the body ([`body_text`]) and finishes the body (no trailers). `None` when the client is gone.
fn write_body(body: OutgoingBody) -> Option<()> {
    {
        // The stream must be dropped before the body is finished.
        let stream = body.write().ok()?;
        let text = body_text(std::env::var("MESSAGE").ok().as_deref());
        stream.blocking_write_and_flush(text.as_bytes()).ok()?;
    }
    OutgoingBody::finish(body, None).ok()
}

fn internal_error(message: &str) -> ErrorCode {
    ErrorCode::InternalError(Some(message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_path_and_query_of_the_request() {
        assert_eq!(request_path(Some("/a/b?c=d".to_owned())), "/a/b?c=d");
    }

    #[test]
    fn a_request_without_a_path_is_for_the_root() {
        assert_eq!(request_path(None), "/");
        assert_eq!(request_path(Some(String::new())), "/");
    }

    #[test]
    fn answers_in_plain_text_with_the_path_in_a_header() {
        assert_eq!(
            headers("/x"),
            [
                ("content-type".to_owned(), b"text/plain".to_vec()),
                ("x-request-path".to_owned(), b"/x".to_vec()),
            ]
        );
    }

    #[test]
    fn the_body_is_the_greeting_then_the_message() {
        assert_eq!(body_text(None), "hello from wasmfleet\n");
        assert_eq!(body_text(Some("")), "hello from wasmfleet\n");
        assert_eq!(body_text(Some("canary")), "hello from wasmfleet\ncanary\n");
    }

    #[test]
    fn misbehaving_paths_name_their_amount() {
        assert_eq!(misbehaviour("/spin?ms=50"), Some(Misbehaviour::Spin(50)));
        assert_eq!(misbehaviour("/sleep?x=1&ms=7"), Some(Misbehaviour::Sleep(7)));
        assert_eq!(misbehaviour("/alloc?mib=3"), Some(Misbehaviour::Alloc(3)));
        assert_eq!(misbehaviour("/spin"), None);
        assert_eq!(misbehaviour("/"), None);
    }
}
