//! What a publish on a front door topic asks for, and where its answer goes. Pure, except
//! for the clock the [`RateLimiter`] is given.
//!
//! Where the answer goes ([`Reply`]): the MQTT 5 response topic, with the correlation data,
//! when the publisher named one under `wf/v1/apply/result/`; else the result topic of the
//! client the topic names (`wf/v1/apply/{client-id}`, `wf/v1/modules/NAME/TAG/{client-id}`:
//! the form for MQTT 3.1.1, whose publishes do not say who sent them); else nowhere (the
//! outcome is only logged). The server never publishes an answer outside the result topics.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::StatusCode;
use bytes::Bytes;
use wasmfleet_protocol::topic::{self, FrontDoor, Part};

use super::answer::Answer;
use super::manifests::MAX_MANIFEST_BYTES;
use crate::api::status::ApiError;
use crate::broker::limits::TokenBucket;
use crate::modules::MAX_MODULE_SIZE;

/// Where an answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// A result topic.
    pub topic: String,
    /// The MQTT 5 correlation data to send back.
    pub correlation: Option<Bytes>,
}

/// A publish as the link received it.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a Bytes,
    /// Whether it is (or was published as) a retained message.
    pub retain: bool,
    /// The MQTT 5 response topic.
    pub response_topic: Option<&'a str>,
    /// The MQTT 5 correlation data.
    pub correlation: Option<&'a Bytes>,
}

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Apply the manifests in the payload.
    Apply(Bytes),
    /// Store the module in the payload as `name:tag` (or gather it, when it is a part).
    Module {
        /// Module name (valid).
        name: String,
        /// Tag (valid).
        tag: String,
        /// The wasm bytes (or those of one part).
        bytes: Bytes,
        /// Which part they are; `None`: the whole module.
        part: Option<Part>,
    },
}

/// A request the worker carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub work: Work,
    /// Where the answer goes.
    pub reply: Option<Reply>,
    /// Who asked, for logs and rate limits: the client id, else the response topic.
    pub source: String,
}

/// The decision about one publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not for the front door, or the empty retained message that clears one: nothing to do.
    Ignore,
    /// Refused before any work: answer (and, for a retained request, clear it).
    Refuse {
        /// Where the answer goes.
        reply: Option<Reply>,
        /// Who asked.
        source: String,
        /// The answer.
        answer: Answer,
        /// The topic whose retained message must be cleared.
        clear_retained: Option<String>,
    },
    /// To be done by the worker.
    Accept(Request),
}

/// Decides what to do with `incoming`.
pub fn decide(incoming: &Incoming<'_>) -> Decision {
    let Some(parsed) = topic::parse_front_door(incoming.topic) else {
        return Decision::Ignore;
    };
    if incoming.retain && incoming.payload.is_empty() {
        return Decision::Ignore;
    }
    let client = match &parsed {
        FrontDoor::Apply { client }
        | FrontDoor::Module { client, .. }
        | FrontDoor::BadModuleTopic { client, .. } => *client,
    };
    let reply = reply_to(incoming, client);
    let source = client
        .or(incoming.response_topic)
        .unwrap_or("unnamed client")
        .to_owned();
    let refuse = |answer: Answer, clear_retained: Option<String>| Decision::Refuse {
        reply: reply.clone(),
        source: source.clone(),
        answer,
        clear_retained,
    };
    if incoming.retain {
        return refuse(retained_refusal(), Some(incoming.topic.to_owned()));
    }
    let work = match parsed {
        FrontDoor::BadModuleTopic { reason, .. } => {
            return refuse(module_refusal(incoming.topic, &reason), None);
        }
        FrontDoor::Apply { .. } => match check_size(incoming.payload, MAX_MANIFEST_BYTES) {
            Ok(()) => Work::Apply(incoming.payload.clone()),
            Err(err) => return refuse(Answer::api_error(&err), None),
        },
        FrontDoor::Module {
            name, tag, part, ..
        } => match check_size(incoming.payload, MAX_MODULE_SIZE) {
            Ok(()) => Work::Module {
                name: name.to_owned(),
                tag: tag.to_owned(),
                bytes: incoming.payload.clone(),
                part,
            },
            Err(err) => {
                return refuse(module_refusal(&format!("{name}:{tag}"), &err.message), None);
            }
        },
    };
    Decision::Accept(Request {
        work,
        reply,
        source,
    })
}

/// The response topic if it is a result topic, else the named client's result topic.
fn reply_to(incoming: &Incoming<'_>, client: Option<&str>) -> Option<Reply> {
    let response = incoming
        .response_topic
        .filter(|t| topic::parse_result_topic(t).is_some())
        .map(str::to_owned);
    let topic = response.or_else(|| client.map(topic::result_topic))?;
    Some(Reply {
        topic,
        correlation: incoming.correlation.cloned(),
    })
}

fn check_size(payload: &Bytes, limit: usize) -> Result<(), ApiError> {
    match payload.len() {
        0 => Err(ApiError::bad_request("the payload is empty")),
        len if len > limit => Err(ApiError::too_large(limit)),
        _ => Ok(()),
    }
}

/// The answer to a retained request.
pub fn retained_refusal() -> Answer {
    Answer::api_error(&ApiError::bad_request(
        "retained publishes are refused on the front door (a retained request would be \
         carried out again at every reconnect); the server cleared it: publish it again \
         without the retain flag",
    ))
}

/// The answer to a module upload that cannot be stored.
pub fn module_refusal(what: &str, reason: &str) -> Answer {
    Answer::refused(format!("module {what} refused: {reason}"), None)
}

/// The same answer for a module refused by the module store.
pub fn module_error_answer(what: &str, err: &ApiError) -> Answer {
    Answer::refused(format!("module {what} refused: {}", err.message), Some(err))
}

/// Requests per client: [`RateLimiter::PER_SEC`] sustained, [`RateLimiter::BURST`] at once.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<String, TokenBucket>,
}

impl RateLimiter {
    /// Requests per second a client may sustain.
    pub const PER_SEC: u64 = 5;
    /// Requests a client may send at once.
    pub const BURST: u64 = 20;
    /// Beyond this many clients remembered, full buckets are forgotten (bounded memory).
    const MAX_CLIENTS: usize = 4096;

    /// Takes one request of `source` at `now`; false when it is over its rate.
    pub fn admit(&mut self, source: &str, now: Instant) -> bool {
        if self.buckets.len() >= Self::MAX_CLIENTS && !self.buckets.contains_key(source) {
            self.buckets
                .retain(|_, bucket| !bucket.clone().try_take(Self::BURST, now));
        }
        self.buckets
            .entry(source.to_owned())
            .or_insert_with(|| TokenBucket::new(Self::PER_SEC, Self::BURST, now))
            .try_take(1, now)
    }

    /// The answer to a request over the rate.
    pub fn refusal() -> Answer {
        Answer::api_error(&ApiError {
            code: StatusCode::TOO_MANY_REQUESTS,
            reason: "TooManyRequests",
            message: format!(
                "too many requests from this client: at most {} per second (bursts of {}); \
                 publish it again later",
                Self::PER_SEC,
                Self::BURST
            ),
            details: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn incoming<'a>(topic: &'a str, payload: &'a Bytes) -> Incoming<'a> {
        Incoming {
            topic,
            payload,
            retain: false,
            response_topic: None,
            correlation: None,
        }
    }

    fn reply_of(decision: &Decision) -> Option<&Reply> {
        match decision {
            Decision::Accept(request) => request.reply.as_ref(),
            Decision::Refuse { reply, .. } => reply.as_ref(),
            Decision::Ignore => None,
        }
    }

    #[test]
    fn the_response_topic_wins_and_the_topic_names_the_311_client() {
        let payload = Bytes::from_static(b"kind: Pod");
        let correlation = Bytes::from_static(b"42");
        let mut v5 = incoming(topic::APPLY, &payload);
        v5.response_topic = Some("wf/v1/apply/result/dev");
        v5.correlation = Some(&correlation);
        assert_eq!(
            reply_of(&decide(&v5)),
            Some(&Reply {
                topic: "wf/v1/apply/result/dev".into(),
                correlation: Some(correlation.clone())
            })
        );
        let by_topic = topic::apply_as("dev311");
        let v311 = incoming(&by_topic, &payload);
        assert_eq!(
            reply_of(&decide(&v311)).map(|r| r.topic.as_str()),
            Some("wf/v1/apply/result/dev311")
        );
        assert_eq!(reply_of(&decide(&incoming(topic::APPLY, &payload))), None);
    }

    #[test]
    fn answers_never_go_outside_the_result_topics() {
        let payload = Bytes::from_static(b"kind: Pod");
        for evil in [
            "wf/v1/n/pi-1/down/desired",
            "wf/v1/apply/result/+",
            "wf/v1/apply",
        ] {
            let mut request = incoming(topic::APPLY, &payload);
            request.response_topic = Some(evil);
            assert_eq!(reply_of(&decide(&request)), None, "{evil}");
        }
    }

    #[test]
    fn retained_requests_are_refused_and_cleared_and_clears_are_ignored() {
        let payload = Bytes::from_static(b"\0asm");
        let module = topic::module_upload("hello", "v1");
        let mut retained = incoming(&module, &payload);
        retained.retain = true;
        match decide(&retained) {
            Decision::Refuse {
                answer,
                clear_retained,
                ..
            } => {
                assert!(
                    answer.message().contains("retained"),
                    "{}",
                    answer.message()
                );
                assert_eq!(clear_retained.as_deref(), Some(module.as_str()));
            }
            other => panic!("{other:?}"),
        }
        let empty = Bytes::new();
        let mut clear = incoming(&module, &empty);
        clear.retain = true;
        assert_eq!(decide(&clear), Decision::Ignore);
    }

    #[test]
    fn bad_module_topics_and_sizes_are_refused_with_the_reason() {
        let payload = Bytes::from_static(b"\0asm");
        let refusal =
            |topic_name: &str, payload: &Bytes| match decide(&incoming(topic_name, payload)) {
                Decision::Refuse { answer, .. } => answer.message().to_owned(),
                other => panic!("{other:?}"),
            };
        assert!(refusal("wf/v1/modules/hello", &payload).contains("missing tag"));
        assert!(refusal("wf/v1/modules/Hello/v1", &payload).contains("invalid module name"));
        assert!(refusal("wf/v1/modules/hello/v1", &Bytes::new()).contains("empty"));
        let big = Bytes::from(vec![0; MAX_MANIFEST_BYTES + 1]);
        assert!(refusal(topic::APPLY, &big).contains("larger than the limit"));
        assert_eq!(
            decide(&incoming("wf/v1/n/pi-1/up/state", &payload)),
            Decision::Ignore
        );
    }

    #[test]
    fn a_client_over_its_rate_is_refused_until_its_bucket_refills() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..RateLimiter::BURST {
            assert!(limiter.admit("dev", now));
        }
        assert!(!limiter.admit("dev", now));
        assert!(limiter.admit("other", now));
        assert!(limiter.admit("dev", now + Duration::from_secs(1)));
    }
}
