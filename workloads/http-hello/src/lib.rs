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
//! `x-request-path` echoes the request's path and query (`/` when it has none). The
//! request body is not read. A host that cannot take the response (the client went
//! away) is not this guest's problem: failures after the status is sent are ignored.

use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(HttpHello);

/// The body of every response.
const BODY: &[u8] = b"hello from wasmfleet\n";
/// The response header that echoes the request path.
const PATH_HEADER: &str = "x-request-path";

struct HttpHello;

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request_path(request.path_with_query());
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

/// Writes [`BODY`] and finishes the body (no trailers). `None` when the client is gone.
fn write_body(body: OutgoingBody) -> Option<()> {
    {
        // The stream must be dropped before the body is finished.
        let stream = body.write().ok()?;
        stream.blocking_write_and_flush(BODY).ok()?;
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
    fn the_body_is_the_greeting_on_one_line() {
        assert_eq!(BODY, b"hello from wasmfleet\n");
    }
}
