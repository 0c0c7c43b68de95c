//! The ingress's certificates and keys on each serving node's own `down/tls` (retained),
//! never on a topic every node reads.
//!
//! The nodes that serve ingress traffic are the ones that serve LoadBalancer Services
//! ([`eligible_nodes`]: every Ready node, or the ones labelled for it), whose addresses the
//! Ingresses' and Gateways' statuses show. [`CertificatePublisher`] rebuilds the
//! certificates ([`crate::network::tls::certificates`]) after a change to the Ingresses,
//! Gateways, their classes, Secrets or Nodes, sends them to every serving node when they
//! changed (and to a node that starts serving), and clears the retained message of a node
//! that stops serving; after every (re)connect it sends them again to the serving nodes and
//! clears every other node's. A Secret that cannot be used is reported as a Warning Event
//! `InvalidCertificateRef` on its Ingress or Gateway once (again only after it was fixed in
//! between, or after a server restart).
//!
//! The default certificate (for names no Secret covers, like ingress-nginx's "fake
//! certificate") is self-signed for `ingress.local` at each server start.

use std::collections::BTreeSet;
use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::ingress_tls::{IngressCertificates, KeyFormat, TlsCertificate};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message, encode};

use super::retained::{Passes, run_passes};
use crate::controllers::service_lb::eligible_nodes;
use crate::events::{self, Involved, Type};
use crate::informer::Cache;
use crate::network::routes::Sources;
use crate::network::tls::{Problem, certificates};
use crate::store::Store;

/// What the certificates are built from, besides the nodes that receive them.
const SOURCES: [&str; 6] = [
    "ingresses",
    "ingressclasses",
    "gateways",
    "gatewayclasses",
    "secrets",
    "nodes",
];

/// The Event reason of a Secret that cannot be served (the Gateway API's condition
/// reason, for Ingresses too).
pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";

/// Who records the Events.
const COMPONENT: &str = "wasmfleet-ingress";

/// Publishes the certificates; see the module documentation.
pub struct CertificatePublisher {
    client: AsyncClient,
    store: Store,
    cache: Cache,
    default: TlsCertificate,
    republish: Arc<Notify>,
    /// What the serving nodes were last sent (`None`: nothing yet, or a reconnect since).
    sent: Option<Vec<TlsCertificate>>,
    /// The nodes last sent it.
    serving: BTreeSet<String>,
    /// The problems of the last pass, reported as Events.
    reported: BTreeSet<String>,
}

impl CertificatePublisher {
    /// A publisher that has published nothing yet, with a fresh default certificate.
    pub fn new(client: AsyncClient, store: Store, cache: Cache) -> Result<Self, rcgen::Error> {
        Ok(Self {
            client,
            store,
            cache,
            default: default_certificate()?,
            republish: Arc::new(Notify::new()),
            sent: None,
            serving: BTreeSet::new(),
            reported: BTreeSet::new(),
        })
    }

    /// Notifying this makes the next pass publish everything again (after a reconnect).
    pub fn republish_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.republish)
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let (cache, republish) = (self.cache.clone(), Arc::clone(&self.republish));
        run_passes(self, &cache, &SOURCES, &republish, shutdown).await;
    }
}

impl Passes for CertificatePublisher {
    fn forget(&mut self) {
        self.sent = None;
    }

    /// Builds the certificates and sends what changed.
    async fn pass(&mut self) {
        let lists = SOURCES.map(|resource| self.cache.list(resource));
        let [
            ingresses,
            ingress_classes,
            gateways,
            gateway_classes,
            secrets,
            nodes,
        ] = &lists;
        let sources = Sources {
            ingresses,
            ingress_classes,
            gateways,
            gateway_classes,
            ..Sources::default()
        };
        let built = certificates(&sources, secrets);
        self.report(&built.problems);
        let serving: BTreeSet<String> = eligible_nodes(nodes)
            .into_iter()
            .map(|node| node.name)
            .filter(|name| wasmfleet_protocol::names::validate_node_name(name).is_ok())
            .collect();
        let message = Message::IngressCertificates(IngressCertificates {
            revision: self.cache.revision(),
            default: self.default.clone(),
            certificates: built.certificates.clone(),
        });
        let payload = encode(&message);
        if payload.len() > MAX_MESSAGE_SIZE {
            tracing::error!(
                bytes = payload.len(),
                limit = MAX_MESSAGE_SIZE,
                "the ingress certificates are too large to send; nodes keep the last ones"
            );
            return;
        }
        let fresh = self.sent.is_none();
        let changed = self.sent.as_ref() != Some(&built.certificates);
        let to_send: Vec<&String> = serving
            .iter()
            .filter(|node| changed || !self.serving.contains(*node))
            .collect();
        // After a (re)connect every other node is cleared too: it may hold an earlier
        // run's message.
        let to_clear: Vec<String> = match fresh {
            true => node_names(nodes)
                .into_iter()
                .filter(|n| !serving.contains(n))
                .collect(),
            false => self.serving.difference(&serving).cloned().collect(),
        };
        for node in to_send {
            if let Err(err) = self.retain(node, payload.clone()).await {
                tracing::warn!(%node, %err, "cannot send the ingress certificates");
                return;
            }
            tracing::debug!(%node, "ingress certificates sent");
        }
        for node in &to_clear {
            if let Err(err) = self.retain(node, Vec::new()).await {
                tracing::warn!(%node, %err, "cannot clear the ingress certificates");
                return;
            }
        }
        self.sent = Some(built.certificates);
        self.serving = serving;
    }
}

impl CertificatePublisher {
    async fn retain(&self, node: &str, payload: Vec<u8>) -> Result<(), rumqttc::ClientError> {
        self.client
            .publish(
                topic::down(node, Down::Tls),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .await
    }

    /// Records a Warning Event for each problem that was not there at the last pass (a
    /// problem that goes and comes back is reported again).
    fn report(&mut self, problems: &[Problem]) {
        let key = |involved: &Involved, problem: &Problem| {
            format!(
                "{}/{}/{}: {}",
                involved.kind, involved.namespace, involved.name, problem.message
            )
        };
        let current: BTreeSet<String> = problems
            .iter()
            .map(|p| key(&Involved::of(&p.object), p))
            .collect();
        self.reported.retain(|k| current.contains(k));
        for problem in problems {
            let involved = Involved::of(&problem.object);
            if !self.reported.insert(key(&involved, problem)) {
                continue;
            }
            tracing::warn!(
                kind = %involved.kind, namespace = %involved.namespace, name = %involved.name,
                "{}", problem.message
            );
            events::record(
                &self.store,
                &involved,
                Type::Warning,
                INVALID_CERTIFICATE_REF,
                &problem.message,
                COMPONENT,
            );
        }
    }
}

/// The valid node names among `nodes`.
fn node_names(nodes: &[Arc<serde_json::Value>]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| n.pointer("/metadata/name")?.as_str().map(str::to_owned))
        .filter(|name| wasmfleet_protocol::names::validate_node_name(name).is_ok())
        .collect()
}

/// A self-signed certificate for `ingress.local`, as ingress-nginx's "Kubernetes Ingress
/// Controller Fake Certificate".
fn default_certificate() -> Result<TlsCertificate, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_owned()])?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "wasmfleet Ingress Fake Certificate",
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(TlsCertificate {
        port: 0,
        hosts: Vec::new(),
        chain: vec![cert.der().to_vec()],
        key: key.serialize_der(),
        key_format: KeyFormat::Pkcs8,
        source: "the default certificate".to_owned(),
    })
}
