//! The table of HTTP routes on [`topic::ROUTES`] (the ingress controller's output, for
//! every agent), compiled from the cached Ingresses, Gateways, HTTPRoutes, their classes
//! and Services by
//! [`crate::network::routes::compile`] and kept retained by a
//! [`super::retained::RetainedPublisher`].

use wasmfleet_protocol::routes::Listener;
use wasmfleet_protocol::{Message, topic};

use super::retained::RetainedTable;
use crate::informer::Cache;
use crate::network::routes::{Sources, compile};

/// What the table is built from, in [`Sources`]' order.
const SOURCES: [&str; 6] = [
    "ingresses",
    "ingressclasses",
    "gateways",
    "gatewayclasses",
    "httproutes",
    "services",
];

/// The route table, built from [`SOURCES`].
pub struct Routes;

impl RetainedTable for Routes {
    type Content = Vec<Listener>;
    const TOPIC: &'static str = topic::ROUTES;
    const WHAT: &'static str = "table of HTTP routes";
    const SOURCES: &'static [&'static str] = &SOURCES;

    fn build(&self, cache: &Cache) -> (Self::Content, Message) {
        let lists = SOURCES.map(|resource| cache.list(resource));
        let [
            ingresses,
            ingress_classes,
            gateways,
            gateway_classes,
            http_routes,
            services,
        ] = &lists;
        let sources = Sources {
            ingresses,
            ingress_classes,
            gateways,
            gateway_classes,
            http_routes,
            services,
        };
        let table = compile(&sources, cache.revision());
        (table.listeners.clone(), Message::Routes(table))
    }
}
