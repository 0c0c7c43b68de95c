//! The one message the front door answers every publish with: JSON on one line, printable
//! by `mosquitto_sub` / `mosquitto_rr`, whose `message` is what kubectl would print.
//!
//! ```json
//! {"ok":true,"message":"namespace/demo created\ndeployment.apps/web unchanged",
//!  "results":[{"object":"namespace/demo","result":"created"},
//!             {"object":"deployment.apps/web","namespace":"demo","result":"unchanged"}]}
//! {"ok":false,"message":"Error from server (Invalid): Pod \"bad\" is invalid: ...",
//!  "results":[{"object":"pod/bad","namespace":"default","result":"error","status":{...}}]}
//! {"ok":true,"message":"module hello:v1 stored (sha256:..., 1234 bytes)",
//!  "module":{"name":"hello","tag":"v1","digest":"sha256:...","size":1234}}
//! {"ok":true,"message":"module big:v1: part 1 of 3 received (1 of 3 parts, 8388608 bytes so far)",
//!  "part":{"index":1,"count":3,"received":1}}
//! {"ok":false,"message":"module hello:v1 refused: ...","status":{...}}
//! ```
//!
//! `status` is the Kubernetes `Status` an HTTPS client would get (code, reason, details).
//! Answers are at most [`MAX_ANSWER_BYTES`]: beyond, the per-object results are left out
//! and the message is cut.

use serde_json::{Value, json};

use crate::api::objects::Applied;
use crate::api::status::ApiError;

/// The largest answer, well within what the server may publish (512 KiB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What happened to one object of an apply.
#[derive(Debug, Clone)]
pub struct ObjectResult {
    /// `kind[.group]/name`.
    pub object: String,
    /// Its namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// What the apply did, or why it failed.
    pub outcome: Result<Applied, ApiError>,
}

/// An answer, before it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Whether everything asked for was done.
    pub ok: bool,
    /// The JSON body (with `ok` and `message`).
    body: Value,
}

/// What kubectl prints for a failed request: `The Kind "name" is invalid: field: message`
/// (one `* field: message` line per cause when there are several) for a 422 with causes,
/// else `Error from server (Reason): message`.
pub fn error_line(err: &ApiError) -> String {
    let details = err.details.as_ref();
    let causes: Vec<String> = details
        .and_then(|d| d["causes"].as_array())
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            format!("{}: {}", text("field"), text("message"))
        })
        .collect();
    let (Some(details), "Invalid", false) = (details, err.reason, causes.is_empty()) else {
        return format!("Error from server ({}): {}", err.reason, err.message);
    };
    let text = |key: &str| details[key].as_str().unwrap_or_default().to_owned();
    let prefix = format!("The {} {:?} is invalid: ", text("kind"), text("name"));
    match causes.as_slice() {
        [one] => format!("{prefix}{one}"),
        many => format!("{prefix}\n* {}", many.join("\n* ")),
    }
}

impl Answer {
    /// The answer to an apply, one line per object.
    pub fn applied(results: &[ObjectResult]) -> Self {
        let lines: Vec<String> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(applied) => format!("{} {}", r.object, applied.as_str()),
                Err(err) => error_line(err),
            })
            .collect();
        let items: Vec<Value> = results.iter().map(object_json).collect();
        let ok = results.iter().all(|r| r.outcome.is_ok());
        Self {
            ok,
            body: json!({"ok": ok, "message": lines.join("\n"), "results": items}),
        }
    }

    /// A refusal of the whole request before anything was done (`message` as kubectl would
    /// print it), with the `Status` when there is one.
    pub fn refused(message: impl Into<String>, status: Option<&ApiError>) -> Self {
        let mut body = json!({"ok": false, "message": message.into()});
        if let Some(err) = status {
            body["status"] = err.to_status();
        }
        Self { ok: false, body }
    }

    /// A refusal that is an API error (`Error from server (...)` and its `Status`).
    pub fn api_error(err: &ApiError) -> Self {
        Self::refused(error_line(err), Some(err))
    }

    /// A stored module.
    pub fn module_stored(module: Value) -> Self {
        let message = format!(
            "module {}:{} stored ({}, {} bytes)",
            module["name"].as_str().unwrap_or_default(),
            module["tag"].as_str().unwrap_or_default(),
            module["digest"].as_str().unwrap_or_default(),
            module["size"],
        );
        Self {
            ok: true,
            body: json!({"ok": true, "message": message, "module": module}),
        }
    }

    /// A part of a module kept until the others arrive.
    pub fn module_part_received(
        what: &str,
        part: wasmfleet_protocol::topic::Part,
        received: u32,
        bytes: usize,
    ) -> Self {
        let message = format!(
            "module {what}: part {} of {} received ({received} of {} parts, {bytes} bytes so far)",
            part.index, part.count, part.count
        );
        Self {
            ok: true,
            body: json!({"ok": true, "message": message,
                "part": {"index": part.index, "count": part.count, "received": received}}),
        }
    }

    /// The message line(s).
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    /// The encoded answer, at most [`MAX_ANSWER_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let full = self.body.to_string().into_bytes();
        if full.len() <= MAX_ANSWER_BYTES {
            return full;
        }
        let message: String = self.message().chars().take(MAX_ANSWER_BYTES / 4).collect();
        json!({
            "ok": self.ok,
            "message": format!("{message}\n... (answer cut at {MAX_ANSWER_BYTES} bytes)"),
            "truncated": true,
        })
        .to_string()
        .into_bytes()
    }
}

fn object_json(result: &ObjectResult) -> Value {
    let mut item = json!({"object": result.object});
    if let Some(ns) = &result.namespace {
        item["namespace"] = ns.clone().into();
    }
    match &result.outcome {
        Ok(applied) => item["result"] = applied.as_str().into(),
        Err(err) => {
            item["result"] = "error".into();
            item["status"] = err.to_status();
        }
    }
    item
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::status::Cause;

    fn parsed(answer: &Answer) -> Value {
        serde_json::from_slice(&answer.encode()).unwrap()
    }

    #[test]
    fn an_apply_answer_has_kubectls_line_per_object() {
        let invalid = ApiError::invalid(
            "Pod",
            "bad",
            &[Cause::new(
                "FieldValueRequired",
                "spec.containers",
                "Required value",
            )],
        );
        let answer = Answer::applied(&[
            ObjectResult {
                object: "namespace/demo".into(),
                namespace: None,
                outcome: Ok(Applied::Created),
            },
            ObjectResult {
                object: "deployment.apps/web".into(),
                namespace: Some("demo".into()),
                outcome: Ok(Applied::Unchanged),
            },
            ObjectResult {
                object: "pod/bad".into(),
                namespace: Some("demo".into()),
                outcome: Err(invalid),
            },
        ]);
        assert!(!answer.ok);
        assert_eq!(
            answer.message(),
            "namespace/demo created\ndeployment.apps/web unchanged\n\
             The Pod \"bad\" is invalid: spec.containers: Required value"
        );
        let body = parsed(&answer);
        assert_eq!(body["results"][1]["namespace"], "demo");
        assert_eq!(body["results"][2]["result"], "error");
        assert_eq!(body["results"][2]["status"]["code"], 422);
        assert!(!String::from_utf8(answer.encode()).unwrap().contains('\n'));
    }

    #[test]
    fn refusals_and_modules_say_what_happened() {
        let refused = Answer::api_error(&ApiError::too_large(10));
        assert_eq!(parsed(&refused)["status"]["code"], 413);
        assert!(
            refused
                .message()
                .starts_with("Error from server (RequestEntityTooLarge)")
        );
        let stored = Answer::module_stored(
            json!({"name": "hello", "tag": "v1", "digest": "sha256:ab", "size": 3}),
        );
        assert!(stored.ok);
        assert_eq!(
            stored.message(),
            "module hello:v1 stored (sha256:ab, 3 bytes)"
        );
    }

    #[test]
    fn an_oversize_answer_is_cut_to_the_limit() {
        let results: Vec<ObjectResult> = (0..5000)
            .map(|i| ObjectResult {
                object: format!("pod/{}-{i}", "x".repeat(100)),
                namespace: Some("default".into()),
                outcome: Ok(Applied::Created),
            })
            .collect();
        let encoded = Answer::applied(&results).encode();
        assert!(encoded.len() <= MAX_ANSWER_BYTES, "{}", encoded.len());
        let body: Value = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(body["truncated"], true);
        assert_eq!(body["ok"], true);
    }
}
