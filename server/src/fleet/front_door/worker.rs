//! Carries out accepted requests one at a time, off the link's task: manifests through the
//! API's server-side apply ([`crate::api::objects::apply_in_store`], field manager
//! [`FIELD_MANAGER`]), modules through the module store (validated like an HTTPS push).
//! Each object and module is first authorized for the requesting user ([`apply_attributes`],
//! [`module_attributes`]). Every outcome is answered (when the request named where) and
//! logged.

use ipnet::Ipv4Net;
use std::time::{Duration, Instant};

use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::topic::Part;

use super::answer::{Answer, ObjectResult};
use super::manifests::{self, Resolved};
use super::request::{self, Reply, Request, Work};
use super::uploads::{Progress, UploadKey, Uploads};
use crate::api::apply::Writer;
use crate::api::auth::{Attributes, Authorizer, User};
use crate::api::objects::{self, Applied};
use crate::api::status::ApiError;
use crate::fleet::inbound::Complaints;
use crate::modules::ModuleStore;
use crate::store::Store;

/// The field manager of everything applied over MQTT.
pub const FIELD_MANAGER: &str = "wasmfleet-mqtt";

/// How long one request may take before it is answered with a timeout (the work itself
/// finishes on its blocking thread).
const WORK_TIMEOUT: Duration = Duration::from_secs(30);

/// A request with its share of the front door's byte budget.
pub(super) type Queued = (Request, OwnedSemaphorePermit);

/// What the worker needs.
pub(super) struct Worker {
    pub(super) client: AsyncClient,
    pub(super) store: Store,
    pub(super) modules: ModuleStore,
    pub(super) complaints: Complaints,
    /// Where new Services' ClusterIPs come from.
    pub(super) service_cidr: Ipv4Net,
    /// Who may do what.
    pub(super) authorizer: Authorizer,
    /// Modules arriving in parts.
    pub(super) uploads: Uploads,
}

impl Worker {
    /// Handles requests until the link stops or `shutdown`.
    pub(super) async fn run(
        mut self,
        mut queue: mpsc::Receiver<Queued>,
        shutdown: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = queue.recv() => next,
            };
            let Some((request, _budget)) = next else {
                break;
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.handle(request) => {}
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        // Only the admin may publish front door requests (`broker::auth`).
        let user = User::admin();
        let (what, answer) = match request.work {
            Work::Apply(bytes) => ("manifests", self.apply(user, bytes.to_vec()).await),
            Work::Module {
                name,
                tag,
                bytes,
                part,
            } => {
                let attributes = module_attributes(&name, &tag);
                let answer = match (self.authorizer.check(&user, &attributes), part) {
                    (Err(refused), _) => Answer::api_error(&refused),
                    (Ok(()), None) => self.module(name, tag, bytes).await,
                    (Ok(()), Some(part)) => {
                        self.module_part(&request.source, name, tag, part, bytes)
                            .await
                    }
                };
                ("module", answer)
            }
        };
        log_outcome(&mut self.complaints, &request.source, what, &answer);
        send(&self.client, request.reply.as_ref(), &answer).await;
    }

    /// Reads and applies manifests; the answer lists each object.
    async fn apply(&self, user: User, bytes: Vec<u8>) -> Answer {
        let store = self.store.clone();
        let cidr = self.service_cidr;
        let allowed = Allowed {
            authorizer: self.authorizer.clone(),
            user,
        };
        off_workers(move || match manifests::resolve_all(&bytes) {
            Ok(objects) => Answer::applied(&apply_each(&store, cidr, &allowed, &objects)),
            Err(line) => Answer::refused(line, None),
        })
        .await
    }

    /// Gathers a part of a module; stores the module when it was the last one.
    async fn module_part(
        &mut self,
        source: &str,
        name: String,
        tag: String,
        part: Part,
        bytes: bytes::Bytes,
    ) -> Answer {
        let what = format!("{name}:{tag}");
        let key = UploadKey {
            source: source.to_owned(),
            module: what.clone(),
        };
        match self.uploads.add(key, part, bytes, Instant::now()) {
            Ok(Progress::Complete(whole)) => self.module(name, tag, whole).await,
            Ok(Progress::Waiting { received, bytes }) => {
                Answer::module_part_received(&what, part, received, bytes)
            }
            Err(reason) => request::module_refusal(
                &format!("{what} (part {} of {})", part.index, part.count),
                &reason,
            ),
        }
    }

    /// Validates and stores a module.
    async fn module(&self, name: String, tag: String, bytes: bytes::Bytes) -> Answer {
        let modules = self.modules.clone();
        off_workers(move || {
            let what = format!("{name}:{tag}");
            match modules.put(&name, &tag, &bytes) {
                Ok(record) => Answer::module_stored(crate::api::modules::render(&record)),
                Err(err) => request::module_error_answer(
                    &what,
                    &crate::api::modules::module_error(err, &name),
                ),
            }
        })
        .await
    }
}

/// Who applies, and the authorizer that says what they may.
struct Allowed {
    authorizer: Authorizer,
    user: User,
}

/// What applying `object` asks: `create` when it does not exist yet, else `patch` (the
/// verb of `kubectl apply --server-side`), on its resource, namespace and name.
pub fn apply_attributes(store: &Store, object: &Resolved) -> Attributes {
    let exists = matches!(store.get(&object.key), Ok(Some(_)));
    Attributes::resource(
        if exists { "patch" } else { "create" },
        object.kind.group,
        object.kind.plural,
        object.key.namespace.as_deref().unwrap_or_default(),
        &object.key.name,
    )
}

/// What pushing `name:tag` asks: what `PUT /apis/wasmfleet.dev/v1/modules/NAME/tags/TAG`
/// asks over HTTPS.
pub fn module_attributes(name: &str, tag: &str) -> Attributes {
    let path = format!("/apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}");
    crate::api::request_info::attributes(&axum::http::Method::PUT, &path, None)
}

/// Applies every object in order, each on its own (like `kubectl apply`).
fn apply_each(
    store: &Store,
    service_cidr: Ipv4Net,
    allowed: &Allowed,
    objects: &[Resolved],
) -> Vec<ObjectResult> {
    objects
        .iter()
        .map(|object| {
            let attributes = apply_attributes(store, object);
            if let Err(refused) = allowed.authorizer.check(&allowed.user, &attributes) {
                return ObjectResult {
                    object: object.reference(),
                    namespace: object.key.namespace.clone(),
                    outcome: Err(refused),
                };
            }
            let writer = Writer {
                manager: FIELD_MANAGER.to_owned(),
                api_version: object.kind.api_version.to_owned(),
                time: crate::k8s::time::now_rfc3339(),
                subresource: String::new(),
            };
            let outcome: Result<Applied, ApiError> = objects::apply_in_store(
                store,
                service_cidr,
                object.kind,
                &object.key,
                &object.applied,
                &writer,
                false,
            )
            .map(|(applied, _)| applied);
            ObjectResult {
                object: object.reference(),
                namespace: object.key.namespace.clone(),
                outcome,
            }
        })
        .collect()
}

/// Runs `work` on a blocking thread (store writes, parsing, hashing), bounded in time.
async fn off_workers(work: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    match tokio::time::timeout(WORK_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => Answer::api_error(&ApiError::internal(&err)),
        Err(_) => Answer::api_error(&ApiError::unavailable(format!(
            "the request took longer than {} s; it may still complete",
            WORK_TIMEOUT.as_secs()
        ))),
    }
}

/// Logs what was done: successes at info, refusals as (rate-limited) warnings.
pub(super) fn log_outcome(complaints: &mut Complaints, source: &str, what: &str, answer: &Answer) {
    if answer.ok {
        tracing::info!(%source, what, outcome = %answer.message(), "MQTT front door request done");
    } else {
        complaints.warn(source, what, answer.message());
    }
}

/// Publishes `answer` to `reply` (QoS 1, with the correlation data), if there is one.
pub(super) async fn send(client: &AsyncClient, reply: Option<&Reply>, answer: &Answer) {
    let Some(reply) = reply else {
        return;
    };
    let properties = answer_properties(reply);
    let sent = client
        .publish_with_properties(
            &reply.topic,
            QoS::AtLeastOnce,
            false,
            answer.encode(),
            properties,
        )
        .await;
    if let Err(err) = sent {
        tracing::warn!(topic = %reply.topic, %err, "cannot send a front door answer");
    }
}

/// The same, without waiting (from the link's own task): an answer that does not fit in
/// the client's queue is logged and dropped.
pub(super) fn try_send(client: &AsyncClient, reply: Option<&Reply>, answer: &Answer) {
    let Some(reply) = reply else {
        return;
    };
    let sent = client.try_publish_with_properties(
        &reply.topic,
        QoS::AtLeastOnce,
        false,
        answer.encode(),
        answer_properties(reply),
    );
    if let Err(err) = sent {
        tracing::warn!(topic = %reply.topic, %err, "cannot send a front door answer");
    }
}

fn answer_properties(reply: &Reply) -> PublishProperties {
    PublishProperties {
        correlation_data: reply.correlation.clone(),
        content_type: Some("application/json".to_owned()),
        payload_format_indicator: Some(1),
        ..PublishProperties::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_push_asks_what_its_https_push_asks() {
        let attributes = module_attributes("hello", "v1");
        assert_eq!(
            (attributes.verb.as_str(), attributes.group.as_str()),
            ("update", "wasmfleet.dev")
        );
        assert_eq!(
            (
                attributes.resource.as_str(),
                attributes.subresource.as_str()
            ),
            ("modules", "tags")
        );
        let refused = Authorizer::default()
            .check(&User::new("alice", []), &attributes)
            .unwrap_err();
        assert_eq!(
            refused.message,
            r#"modules.wasmfleet.dev "hello" is forbidden: User "alice" cannot update resource "modules/tags" in API group "wasmfleet.dev" at the cluster scope"#
        );
        assert!(
            Authorizer::default()
                .check(&User::admin(), &attributes)
                .is_ok()
        );
    }
}
