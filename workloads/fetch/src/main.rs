//! `fetch URL COUNT [--header NAME:VALUE]...`: a `wasi:http` client (wasm32-wasip2 command).
//!
//! Sends COUNT `GET` requests to URL through `wasi:http/outgoing-handler` and prints one line
//! per request: `STATUS BODY` (the body's trailing newlines dropped, the others turned into
//! spaces), or `error: REASON` when the request failed (a host that refuses it prints
//! `error: HttpRequestDenied ...`). Exits 1 at the end if any request failed, 2 on bad
//! arguments (usage on stderr).

use std::process::ExitCode;

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

const USAGE: &str = "usage: fetch URL COUNT [--header NAME:VALUE]...";
/// The most body bytes kept per response (the rest is read and dropped).
const MAX_BODY: usize = 64 * 1024;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    authority: String,
    path: String,
}

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    target: Target,
    count: u32,
    headers: Vec<(String, String)>,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("fetch: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for _ in 0..args.count {
        match get(&args) {
            Ok((status, body)) => println!("{status} {}", one_line(&body)),
            Err(reason) => {
                println!("error: {reason}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let url = args.next().ok_or("missing URL")?;
    let target = parse_url(&url)?;
    let count = args.next().ok_or("missing COUNT")?;
    let count = count
        .parse()
        .map_err(|_| format!("COUNT must be a number, not {count:?}"))?;
    let mut headers = Vec::new();
    while let Some(flag) = args.next() {
        if flag != "--header" {
            return Err(format!("unknown argument {flag:?}"));
        }
        let header = args.next().ok_or("--header needs NAME:VALUE")?;
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?} is not NAME:VALUE"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Args {
        target,
        count,
        headers,
    })
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("URL {url:?} must start with http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok(Target {
        https,
        authority: authority.to_owned(),
        path,
    })
}

/// The body on one line: trailing line breaks dropped, the others turned into spaces.
fn one_line(body: &str) -> String {
    body.trim_end_matches(['\n', '\r'])
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
}

/// Sends one GET; the status and body, or why it failed.
fn get(args: &Args) -> Result<(u16, String), String> {
    let request = request(args)?;
    let future = outgoing_handler::handle(request, None).map_err(describe)?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response already taken")?
        .map_err(describe)?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body already taken")?;
    let bytes = read_body(&body)?;
    drop(response);
    let _trailers = IncomingBody::finish(body);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn request(args: &Args) -> Result<OutgoingRequest, String> {
    let fields = Fields::new();
    for (name, value) in &args.headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name:?}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = if args.target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let invalid = |what: &str| format!("invalid {what}");
    request
        .set_method(&Method::Get)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&args.target.authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(&args.target.path))
        .map_err(|()| invalid("path"))?;
    Ok(request)
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, String> {
    let stream = body.stream().map_err(|()| "body stream already taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(16 * 1024) {
            Ok(chunk) => {
                let room = MAX_BODY.saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the body: {}", e.to_debug_string()));
            }
        }
    }
}

/// A failed request's reason, as the host's error code says it.
fn describe(error: ErrorCode) -> String {
    match error {
        ErrorCode::HttpRequestDenied => {
            "HttpRequestDenied (the host refused the request: not allowed by the pod's egress \
             policy)"
                .to_owned()
        }
        ErrorCode::InternalError(Some(message)) => message,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_url_count_and_headers() {
        let parsed = args(&["http://web:8080/a?b=c", "3", "--header", "x-canary: always"]);
        assert_eq!(
            parsed,
            Ok(Args {
                target: Target {
                    https: false,
                    authority: "web:8080".into(),
                    path: "/a?b=c".into(),
                },
                count: 3,
                headers: vec![("x-canary".into(), "always".into())],
            })
        );
    }

    #[test]
    fn a_url_without_a_path_asks_for_the_root() {
        let target = parse_url("https://example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((target.https, target.path.as_str()), (true, "/"));
        assert_eq!(parse_url("http://h?q").map(|t| t.path), Ok("/?q".into()));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(args(&[]).is_err());
        assert!(args(&["ftp://x", "1"]).is_err());
        assert!(args(&["http://", "1"]).is_err());
        assert!(args(&["http://x", "many"]).is_err());
        assert!(args(&["http://x", "1", "--header", "novalue"]).is_err());
        assert!(args(&["http://x", "1", "--what"]).is_err());
    }

    #[test]
    fn the_body_goes_on_one_line() {
        assert_eq!(one_line("hello\nstable\n"), "hello stable");
        assert_eq!(one_line("a\r\nb\r\n"), "a b");
        assert_eq!(one_line(""), "");
    }
}
