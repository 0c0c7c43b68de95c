//! The table of HTTP routes on [`topic::ROUTES`] (the ingress controller's output, for
//! every agent), compiled from the cached Ingresses, IngressClasses and Services by
//! [`crate::network::routes::compile`] and kept retained by a
//! [`super::retained::RetainedPublisher`].

use wasmfleet_protocol::routes::Listener;
use wasmfleet_protocol::{Message, topic};

use super::retained::RetainedTable;
use crate::informer::Cache;
use crate::network::routes::compile;

/// The route table, built from the cached Ingresses and Services (for named ports).
pub struct Routes;

impl RetainedTable for Routes {
    type Content = Vec<Listener>;
    const TOPIC: &'static str = topic::ROUTES;
    const WHAT: &'static str = "table of HTTP routes";
    const SOURCES: &'static [&'static str] = &["ingresses", "ingressclasses", "services"];

    fn build(&self, cache: &Cache) -> (Self::Content, Message) {
        let table = compile(
            &cache.list("ingresses"),
            &cache.list("ingressclasses"),
            &cache.list("services"),
            cache.revision(),
        );
        (table.listeners.clone(), Message::Routes(table))
    }
}
