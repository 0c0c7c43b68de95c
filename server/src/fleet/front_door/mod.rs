//! The MQTT front door: an authenticated client (the admin today, see
//! [`crate::broker::auth`]) publishes manifests or modules, and gets one answer per publish.
//!
//! - `wf/v1/apply`, `wf/v1/apply/{client-id}`: YAML or JSON manifests, several documents
//!   separated by `---` ([`manifests`]), applied as server-side apply with the field manager
//!   `wasmfleet-mqtt` (the same code as `kubectl apply --server-side`); the answer says per
//!   object `created`, `configured` or `unchanged`, or the error kubectl would print.
//! - `wf/v1/modules/{name}/{tag}[/{client-id}]`: raw wasm, stored like an HTTPS push (same
//!   validation and size limit, [`crate::modules::MAX_MODULE_SIZE`]); the answer names the
//!   digest, or says why not (bad name, missing tag, not wasm, too big, retained). One MQTT
//!   publish is bounded by the broker's packet size (16 MiB), so a larger module goes in
//!   parts to `wf/v1/modules/{name}/{tag}/part/{i}/{n}[/{client-id}]` ([`uploads`]): each
//!   part is answered with the progress, the last with the stored module.
//!
//! Answers ([`answer`]) go to the MQTT 5 response topic (with the correlation data) when it
//! is a result topic `wf/v1/apply/result/{client-id}`, else to the result topic of the
//! client named in the request's topic (the MQTT 3.1.1 way), else nowhere: the outcome is
//! then only logged. Retained requests are refused and cleared. Limits: manifests
//! ≤ [`manifests::MAX_MANIFEST_BYTES`] and [`manifests::MAX_DOCUMENTS`] objects, each ≤ the
//! API's object limit; per client [`request::RateLimiter`]; a bounded queue in front of one
//! worker ([`link`]).
//!
//! The front door is its own MQTT 5 session (client id `wasmfleet-server-front-door`, the
//! server's credentials), next to the fleet link's 3.1.1 one.
//!
//! Every request is authorized like the HTTPS request it stands for ([`worker`]): each
//! applied object needs `create` (when it does not exist) or `patch` on its resource in its
//! namespace, a module `update` on `modules/tags` of `wasmfleet.dev` (as `PUT
//! /apis/wasmfleet.dev/v1/modules/NAME/tags/TAG`); a refused object is answered with the
//! 403 message kubectl would print and the others still applied. The broker lets only the
//! admin (`system:masters`) publish front door requests today, so every request is
//! authorized as the admin.

pub mod answer;
mod link;
pub mod manifests;
pub mod request;
pub mod uploads;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::transport::{self, transport};

use super::{FleetError, MqttTarget};
use crate::api::auth::Authorizer;
use crate::broker::MAX_PACKET_SIZE;
use crate::modules::ModuleStore;
use crate::store::Store;

pub use worker::FIELD_MANAGER;

/// The front door's MQTT client id.
pub const CLIENT_ID: &str = "wasmfleet-server-front-door";

/// How many client requests (answers, subscriptions) may wait for the event loop.
const REQUEST_QUEUE: usize = 64;

/// The front door's entry point.
#[derive(Debug)]
pub struct FrontDoor;

/// A handle on the running front door.
#[derive(Debug, Clone)]
pub struct FrontDoorHandle {
    subscribed: watch::Receiver<bool>,
}

impl FrontDoorHandle {
    /// Waits until the front door is subscribed to its topics (publishes are not retained:
    /// what is sent before that reaches nobody); false if it stopped first.
    pub async fn wait_subscribed(&self) -> bool {
        let mut subscribed = self.subscribed.clone();
        subscribed.wait_for(|s| *s).await.is_ok()
    }
}

impl FrontDoor {
    /// Connects to the broker and starts the link and the worker on `tracker`; they stop
    /// when `shutdown` is cancelled. Returns at once; the connection is made (and retried)
    /// in the background.
    pub fn start(
        mqtt: &MqttTarget,
        store: Store,
        modules: ModuleStore,
        service_cidr: ipnet::Ipv4Net,
        authorizer: Authorizer,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<FrontDoorHandle, FleetError> {
        let (client, eventloop) = transport::client_v5(options(mqtt)?, REQUEST_QUEUE);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let (queue, requests) = mpsc::channel(link::QUEUE);
        let link = link::Link {
            client: client.clone(),
            queue,
            budget: Arc::new(Semaphore::new(link::BUDGET_BYTES)),
            limiter: request::RateLimiter::default(),
            complaints: super::inbound::Complaints::default(),
            subscribed: subscribed_tx,
        };
        let worker = worker::Worker {
            client,
            store,
            modules,
            complaints: super::inbound::Complaints::default(),
            service_cidr,
            authorizer,
            uploads: uploads::Uploads::default(),
        };
        tracker.spawn(link.run(eventloop, shutdown.clone()));
        tracker.spawn(worker.run(requests, shutdown.clone()));
        Ok(FrontDoorHandle { subscribed })
    }
}

fn options(mqtt: &MqttTarget) -> Result<MqttOptions, FleetError> {
    let broker = &mqtt.broker;
    let mut options = MqttOptions::new(CLIENT_ID, &broker.host, broker.port);
    let max_packet = u32::try_from(MAX_PACKET_SIZE + 1024).unwrap_or(u32::MAX);
    options
        .set_transport(transport(broker, mqtt.ca_pem.as_deref())?)
        .set_keep_alive(Duration::from_secs(15))
        .set_credentials(&mqtt.username, &mqtt.password)
        .set_max_packet_size(Some(max_packet))
        .set_clean_start(true);
    Ok(options)
}
