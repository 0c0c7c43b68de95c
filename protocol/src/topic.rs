//! The MQTT topic tree.
//!
//! ```text
//! wf/v1/server/state              S→all  retained, the server's will
//! wf/v1/server/services           S→all  retained table of Services and endpoints
//! wf/v1/n/{node}/down/desired     S→N    retained index of the node's pods
//! wf/v1/n/{node}/down/pod/{uid}   S→N    retained pod (empty: cleared)
//! wf/v1/n/{node}/down/ack         S→N    status report acknowledgements
//! wf/v1/n/{node}/down/blob        S→N    module chunks
//! wf/v1/n/{node}/down/cmd         S→N    commands (log requests)
//! wf/v1/n/{node}/up/state         N→S    retained birth, and the node's will
//! wf/v1/n/{node}/up/hb            N→S    heartbeat
//! wf/v1/n/{node}/up/status        N→S    pod status reports
//! wf/v1/n/{node}/up/blobreq       N→S    module chunk requests
//! wf/v1/n/{node}/up/logs          N→S    log chunks
//! wf/v1/n/{node}/up/events        N→S    probe events (best effort)
//! wf/v1/modules/{name}/{tag}      any→S  a raw wasm module to store under name:tag
//! ```
//!
//! Node names are validated by [`crate::names`] so they can never contain `/`, `+` or `#`.

/// The prefix of every topic.
pub const PREFIX: &str = "wf/v1";

/// The server's retained presence topic.
pub const SERVER_STATE: &str = "wf/v1/server/state";

/// The retained table of Services every node reads.
pub const SERVICES: &str = "wf/v1/server/services";

/// What the server subscribes to: everything every node sends up.
pub const ALL_NODES_UP: &str = "wf/v1/n/+/up/#";

/// What the server subscribes to for module uploads.
pub const ALL_MODULE_UPLOADS: &str = "wf/v1/modules/+/+";

/// A per-node topic going down to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// The retained desired-pods index.
    Desired,
    /// Acknowledgements of status reports.
    Ack,
    /// Module chunks.
    Blob,
    /// Commands such as log requests.
    Cmd,
}

/// A per-node topic going up to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up {
    /// The retained birth / last will.
    State,
    /// Heartbeats.
    Heartbeat,
    /// Pod status reports.
    Status,
    /// Module chunk requests.
    BlobRequest,
    /// Log chunks.
    Logs,
    /// Probe events.
    Events,
}

impl Down {
    fn leaf(self) -> &'static str {
        match self {
            Down::Desired => "desired",
            Down::Ack => "ack",
            Down::Blob => "blob",
            Down::Cmd => "cmd",
        }
    }
}

impl Up {
    const ALL: [Up; 6] = [
        Up::State,
        Up::Heartbeat,
        Up::Status,
        Up::BlobRequest,
        Up::Logs,
        Up::Events,
    ];

    fn leaf(self) -> &'static str {
        match self {
            Up::State => "state",
            Up::Heartbeat => "hb",
            Up::Status => "status",
            Up::BlobRequest => "blobreq",
            Up::Logs => "logs",
            Up::Events => "events",
        }
    }
}

/// The topic for a message going down to `node`.
pub fn down(node: &str, kind: Down) -> String {
    format!("{PREFIX}/n/{node}/down/{}", kind.leaf())
}

/// The topic for a message going up from `node`.
pub fn up(node: &str, kind: Up) -> String {
    format!("{PREFIX}/n/{node}/up/{}", kind.leaf())
}

/// The retained topic of one desired pod of `node`; `uid` must pass
/// [`crate::names::validate_uid`].
pub fn down_pod(node: &str, uid: &str) -> String {
    format!("{PREFIX}/n/{node}/down/pod/{uid}")
}

/// The pod uid of a per-pod topic `node` receives, if `topic` is one (and the uid valid).
pub fn parse_node_pod<'a>(node: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/n/")?;
    let uid = rest.strip_prefix(node)?.strip_prefix("/down/pod/")?;
    crate::names::validate_uid(uid).ok().map(|()| uid)
}

/// The filter a node subscribes to: everything sent down to it.
pub fn node_down_filter(node: &str) -> String {
    format!("{PREFIX}/n/{node}/down/#")
}

/// The topic a module is uploaded to under `name:tag`.
pub fn module_upload(name: &str, tag: &str) -> String {
    format!("{PREFIX}/modules/{name}/{tag}")
}

/// An incoming topic the server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInbound<'a> {
    /// Something a node sent up.
    FromNode {
        /// The node name taken from the topic (already validated).
        node: &'a str,
        /// Which kind of message.
        kind: Up,
    },
    /// A module upload.
    ModuleUpload {
        /// Module name.
        name: &'a str,
        /// Tag.
        tag: &'a str,
    },
}

/// Parses a topic the server receives. Unknown shapes and invalid names give `None`.
pub fn parse_server_inbound(topic: &str) -> Option<ServerInbound<'_>> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["n", node, "up", leaf] if crate::names::validate_node_name(node).is_ok() => {
            let kind = Up::ALL.into_iter().find(|k| k.leaf() == *leaf)?;
            Some(ServerInbound::FromNode { node, kind })
        }
        ["modules", name, tag]
            if crate::names::validate_module_name(name).is_ok()
                && crate::names::validate_tag(tag).is_ok() =>
        {
            Some(ServerInbound::ModuleUpload { name, tag })
        }
        _ => None,
    }
}

/// Parses a topic an agent receives on its down filter.
pub fn parse_node_inbound(node: &str, topic: &str) -> Option<Down> {
    let leaf = topic.strip_prefix(&format!("{PREFIX}/n/{node}/down/"))?;
    [Down::Desired, Down::Ack, Down::Blob, Down::Cmd]
        .into_iter()
        .find(|k| k.leaf() == leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_up_topic_parses_back_to_its_node_and_kind() {
        for kind in Up::ALL {
            let topic = up("pi-1", kind);
            assert_eq!(
                parse_server_inbound(&topic),
                Some(ServerInbound::FromNode { node: "pi-1", kind })
            );
        }
    }

    #[test]
    fn every_down_topic_parses_back_for_its_own_node_only() {
        for kind in [Down::Desired, Down::Ack, Down::Blob, Down::Cmd] {
            let topic = down("pi-1", kind);
            assert_eq!(parse_node_inbound("pi-1", &topic), Some(kind));
            assert_eq!(parse_node_inbound("pi-2", &topic), None);
        }
    }

    #[test]
    fn pod_topics_parse_back_to_their_uid_for_their_own_node_only() {
        let topic = down_pod("pi-1", "6b1c-77");
        assert_eq!(parse_node_pod("pi-1", &topic), Some("6b1c-77"));
        assert_eq!(parse_node_pod("pi-2", &topic), None);
        assert_eq!(parse_node_pod("pi", &topic), None);
        assert_eq!(parse_node_inbound("pi-1", &topic), None);
        for bad in ["", "a/b", "+", "#", &"u".repeat(65)] {
            let topic = format!("{PREFIX}/n/pi-1/down/pod/{bad}");
            assert_eq!(parse_node_pod("pi-1", &topic), None, "{bad}");
        }
    }

    #[test]
    fn module_upload_topics_name_the_module_and_tag() {
        assert_eq!(
            parse_server_inbound(&module_upload("hello", "v1")),
            Some(ServerInbound::ModuleUpload {
                name: "hello",
                tag: "v1"
            })
        );
    }

    #[test]
    fn unknown_or_malformed_topics_are_not_understood() {
        for topic in [
            "wf/v1/n/pi-1/up/nonsense",
            "wf/v1/n/PI_1/up/state",
            "wf/v2/n/pi-1/up/state",
            "wf/v1/n/pi-1/down/desired",
            "wf/v1/modules/hello",
            "wf/v1/modules/Hello World/v1",
            "",
        ] {
            assert_eq!(parse_server_inbound(topic), None, "{topic}");
        }
    }
}
