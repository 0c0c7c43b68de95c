//! The MQTT topic tree.
//!
//! ```text
//! wf/v1/server/state              S→all  retained, the server's will
//! wf/v1/server/services           S→all  retained table of Services and endpoints
//! wf/v1/server/routes             S→all  retained table of HTTP routes (Ingresses)
//! wf/v1/server/peers              S→all  retained table of peers (pod CIDRs, tunnels)
//! wf/v1/n/{node}/down/desired     S→N    retained index of the node's pods
//! wf/v1/n/{node}/down/pod/{uid}   S→N    retained pod (empty: cleared)
//! wf/v1/n/{node}/down/ack         S→N    status report acknowledgements
//! wf/v1/n/{node}/down/blob        S→N    module chunks
//! wf/v1/n/{node}/down/cmd         S→N    commands (log requests)
//! wf/v1/n/{node}/down/tls         S→N    retained ingress certificates and keys (empty: none)
//! wf/v1/n/{node}/up/state         N→S    retained birth, and the node's will
//! wf/v1/n/{node}/up/hb            N→S    heartbeat
//! wf/v1/n/{node}/up/status        N→S    pod status reports
//! wf/v1/n/{node}/up/blobreq       N→S    module chunk requests
//! wf/v1/n/{node}/up/logs          N→S    log chunks
//! wf/v1/n/{node}/up/events        N→S    probe events (best effort)
//! wf/v1/n/{node}/up/usage         N→S    CPU and memory of the node and its pods (best effort)
//! wf/v1/apply                     C→S    manifests (MQTT 5: answered on the response topic)
//! wf/v1/apply/{client-id}         C→S    manifests, answered on the client's result topic
//! wf/v1/modules/{name}/{tag}[/{client-id}]  C→S  a raw wasm module to store under name:tag
//! wf/v1/modules/{name}/{tag}/part/{i}/{n}[/{client-id}]  C→S  part i of n of a module
//! wf/v1/apply/result/{client-id}  S→C    the answers to what client-id sent to the front door
//! ```
//!
//! Node names are validated by [`crate::names`] so they can never contain `/`, `+` or `#`.
//! The `C→S` topics are the front door ([`FrontDoor`]): an MQTT 5 client names its
//! response topic (which must be a result topic); an MQTT 3.1.1 client, whose publishes
//! do not say who sent them, names in the topic the client id whose result topic gets the
//! answer (only that client id may read it).

/// The prefix of every topic.
pub const PREFIX: &str = "wf/v1";

/// The server's retained presence topic.
pub const SERVER_STATE: &str = "wf/v1/server/state";

/// The retained table of Services every node reads.
pub const SERVICES: &str = "wf/v1/server/services";

/// The retained table of HTTP routes (Ingresses) every node reads.
pub const ROUTES: &str = "wf/v1/server/routes";

/// The retained table of peers every node reads to reach pods on other nodes.
pub const PEERS: &str = "wf/v1/server/peers";

/// What the server subscribes to: everything every node sends up.
pub const ALL_NODES_UP: &str = "wf/v1/n/+/up/#";

/// The front door's manifest topic (MQTT 5 clients name a response topic).
pub const APPLY: &str = "wf/v1/apply";

/// What the front door subscribes to besides [`APPLY`]: manifests from clients that name
/// themselves ([`apply_as`]). Result topics are one level deeper, so never matched.
pub const APPLY_AS_CLIENT: &str = "wf/v1/apply/+";

/// What the front door subscribes to for module uploads: every shape, so that malformed
/// topics (no tag, bad names) are answered too.
pub const ALL_MODULE_UPLOADS: &str = "wf/v1/modules/#";

/// The prefix of the front door's answer topics ([`result_topic`]).
pub const RESULT_PREFIX: &str = "wf/v1/apply/result/";

/// The longest client id the front door answers by topic (so topics stay short).
pub const MAX_CLIENT_ID_LEN: usize = 128;

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
    /// The retained certificates and keys of the ingress (only to nodes that serve it).
    Tls,
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
    /// CPU and memory usage reports.
    Usage,
}

impl Down {
    fn leaf(self) -> &'static str {
        match self {
            Down::Desired => "desired",
            Down::Ack => "ack",
            Down::Blob => "blob",
            Down::Cmd => "cmd",
            Down::Tls => "tls",
        }
    }
}

impl Up {
    const ALL: [Up; 7] = [
        Up::State,
        Up::Heartbeat,
        Up::Status,
        Up::BlobRequest,
        Up::Logs,
        Up::Events,
        Up::Usage,
    ];

    fn leaf(self) -> &'static str {
        match self {
            Up::State => "state",
            Up::Heartbeat => "hb",
            Up::Status => "status",
            Up::BlobRequest => "blobreq",
            Up::Logs => "logs",
            Up::Events => "events",
            Up::Usage => "usage",
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

/// The topic an MQTT 3.1.1 client publishes manifests to, naming itself.
pub fn apply_as(client_id: &str) -> String {
    format!("{APPLY}/{client_id}")
}

/// The topic the front door answers `client_id` on.
pub fn result_topic(client_id: &str) -> String {
    format!("{RESULT_PREFIX}{client_id}")
}

/// The client id of a result topic, if `topic` is one (exactly one more level, a valid
/// client id): the only topics the front door publishes answers to.
pub fn parse_result_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(RESULT_PREFIX)
        .filter(|client| valid_client_id(client))
}

/// Whether `client_id` can name a result topic: 1 to [`MAX_CLIENT_ID_LEN`] bytes, no level
/// separator, wildcard or control character.
pub fn valid_client_id(client_id: &str) -> bool {
    !client_id.is_empty()
        && client_id.len() <= MAX_CLIENT_ID_LEN
        && !client_id.contains(['/', '+', '#'])
        && !client_id.chars().any(char::is_control)
}

/// A publish to the front door: what it asks for, and the client it names (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontDoor<'a> {
    /// Manifests to apply.
    Apply {
        /// The client named in the topic ([`apply_as`]): who gets the answer.
        client: Option<&'a str>,
    },
    /// A module to store under `name:tag`, or one part of it.
    Module {
        /// Module name (valid).
        name: &'a str,
        /// Tag (valid).
        tag: &'a str,
        /// The client named in the topic's last level.
        client: Option<&'a str>,
        /// Which part of the module the payload is; `None`: all of it.
        part: Option<Part>,
    },
    /// A module upload on a topic that cannot be one: why, for the answer.
    BadModuleTopic {
        /// What is wrong with the topic.
        reason: String,
        /// The client named in the topic, if the topic got that far.
        client: Option<&'a str>,
    },
}

/// Part `index` of `count` of a module uploaded in parts (a module larger than one MQTT
/// packet): `1 <= index <= count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Which part, from 1.
    pub index: u32,
    /// How many parts the module has.
    pub count: u32,
}

impl Part {
    /// Parses the `{i}/{n}` levels of a part topic.
    fn parse(index: &str, count: &str) -> Option<Part> {
        let index: u32 = index.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        (1 <= index && index <= count).then_some(Part { index, count })
    }
}

/// The topic part `part` of module `name:tag` is uploaded to.
pub fn module_part_upload(name: &str, tag: &str, part: Part) -> String {
    format!(
        "{PREFIX}/modules/{name}/{tag}/part/{}/{}",
        part.index, part.count
    )
}

/// Parses a front door topic; `None` for topics outside it (and for an invalid client id
/// in [`apply_as`] form, which cannot be answered by topic either).
pub fn parse_front_door(topic: &str) -> Option<FrontDoor<'_>> {
    if topic == APPLY {
        return Some(FrontDoor::Apply { client: None });
    }
    if let Some(client) = topic.strip_prefix(APPLY).and_then(|t| t.strip_prefix('/')) {
        return valid_client_id(client).then_some(FrontDoor::Apply {
            client: Some(client),
        });
    }
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/modules")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let levels: Vec<&str> = rest.split('/').skip(1).collect();
    Some(parse_module_levels(&levels))
}

/// The levels after `wf/v1/modules/`: `name/tag` or `name/tag/client-id`, each optionally
/// with `part/{i}/{n}` after the tag.
fn parse_module_levels<'a>(levels: &[&'a str]) -> FrontDoor<'a> {
    let bad = |reason: String, client| FrontDoor::BadModuleTopic { reason, client };
    let usage = "publish modules to wf/v1/modules/NAME/TAG (or .../NAME/TAG/CLIENT-ID; a \
                 module larger than one MQTT packet in parts, to .../NAME/TAG/part/I/N[/CLIENT-ID])";
    let (name, tag, part, client) = match *levels {
        [] | [""] => return bad(format!("missing module name and tag: {usage}"), None),
        [_] | [_, ""] => return bad(format!("missing tag: {usage}"), None),
        [name, tag] => (name, tag, None, None),
        [name, tag, client] if valid_client_id(client) => (name, tag, None, Some(client)),
        [_, _, _] => return bad(format!("invalid client id in the topic: {usage}"), None),
        [name, tag, "part", index, count, ref rest @ ..] if rest.len() <= 1 => {
            let client = match rest {
                [client] if valid_client_id(client) => Some(*client),
                [_] => return bad(format!("invalid client id in the topic: {usage}"), None),
                _ => None,
            };
            let Some(part) = Part::parse(index, count) else {
                return bad(
                    format!("invalid part {index}/{count}: part I of N needs 1 <= I <= N; {usage}"),
                    client,
                );
            };
            (name, tag, Some(part), client)
        }
        [..] => return bad(format!("too many topic levels: {usage}"), None),
    };
    if let Err(err) = crate::names::validate_module_name(name) {
        return bad(err.to_string(), client);
    }
    if let Err(err) = crate::names::validate_tag(tag) {
        return bad(err.to_string(), client);
    }
    FrontDoor::Module {
        name,
        tag,
        client,
        part,
    }
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
}

/// Parses a topic the fleet link receives (front door topics: [`parse_front_door`]).
/// Unknown shapes and invalid names give `None`.
pub fn parse_server_inbound(topic: &str) -> Option<ServerInbound<'_>> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["n", node, "up", leaf] if crate::names::validate_node_name(node).is_ok() => {
            let kind = Up::ALL.into_iter().find(|k| k.leaf() == *leaf)?;
            Some(ServerInbound::FromNode { node, kind })
        }
        _ => None,
    }
}

/// Parses a topic an agent receives on its down filter.
pub fn parse_node_inbound(node: &str, topic: &str) -> Option<Down> {
    let leaf = topic.strip_prefix(&format!("{PREFIX}/n/{node}/down/"))?;
    [Down::Desired, Down::Ack, Down::Blob, Down::Cmd, Down::Tls]
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
        for kind in [Down::Desired, Down::Ack, Down::Blob, Down::Cmd, Down::Tls] {
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
    fn module_upload_topics_name_the_module_tag_and_client() {
        assert_eq!(
            parse_front_door(&module_upload("hello", "v1")),
            Some(FrontDoor::Module {
                name: "hello",
                tag: "v1",
                client: None,
                part: None,
            })
        );
        assert_eq!(
            parse_front_door("wf/v1/modules/hello/v1/dev-1"),
            Some(FrontDoor::Module {
                name: "hello",
                tag: "v1",
                client: Some("dev-1"),
                part: None,
            })
        );
        let part = Part { index: 2, count: 3 };
        assert_eq!(
            parse_front_door(&module_part_upload("hello", "v1", part)),
            Some(FrontDoor::Module {
                name: "hello",
                tag: "v1",
                client: None,
                part: Some(part),
            })
        );
        assert_eq!(
            parse_front_door("wf/v1/modules/hello/v1/part/3/3/dev-1"),
            Some(FrontDoor::Module {
                name: "hello",
                tag: "v1",
                client: Some("dev-1"),
                part: Some(Part { index: 3, count: 3 }),
            })
        );
        assert_eq!(parse_server_inbound(&module_upload("hello", "v1")), None);
    }

    fn bad_module_reason(topic: &str) -> String {
        match parse_front_door(topic) {
            Some(FrontDoor::BadModuleTopic { reason, .. }) => reason,
            other => panic!("{topic}: {other:?}"),
        }
    }

    #[test]
    fn malformed_module_topics_say_what_is_wrong() {
        assert!(bad_module_reason("wf/v1/modules/hello").starts_with("missing tag"));
        assert!(bad_module_reason("wf/v1/modules/hello/").starts_with("missing tag"));
        assert!(bad_module_reason("wf/v1/modules").starts_with("missing module name"));
        assert!(bad_module_reason("wf/v1/modules/Hello/v1").contains("invalid module name"));
        assert!(bad_module_reason("wf/v1/modules/a/b/c/d").starts_with("too many"));
        assert!(bad_module_reason("wf/v1/modules/hello/v 1/me").contains("invalid module tag"));
        for part in ["0/3", "4/3", "x/3", "1/-1", "1/"] {
            let topic = format!("wf/v1/modules/hello/v1/part/{part}");
            assert!(
                bad_module_reason(&topic).starts_with("invalid part"),
                "{topic}"
            );
        }
        assert!(bad_module_reason("wf/v1/modules/hello/v1/part/1").starts_with("too many"));
        assert!(bad_module_reason("wf/v1/modules/hello/v1/part/1/2/a/b").starts_with("too many"));
        assert!(bad_module_reason("wf/v1/modules/hello/v1/part/1/2/a+").contains("client id"));
        assert_eq!(
            parse_front_door("wf/v1/modules/Hello/v1/me"),
            Some(FrontDoor::BadModuleTopic {
                reason: bad_module_reason("wf/v1/modules/Hello/v1"),
                client: Some("me")
            })
        );
        assert_eq!(parse_front_door("wf/v1/modulesx/a/b"), None);
    }

    #[test]
    fn apply_topics_name_their_client_and_results_are_not_requests() {
        assert_eq!(
            parse_front_door(APPLY),
            Some(FrontDoor::Apply { client: None })
        );
        assert_eq!(
            parse_front_door(&apply_as("dev-1")),
            Some(FrontDoor::Apply {
                client: Some("dev-1")
            })
        );
        assert_eq!(parse_front_door("wf/v1/apply/result/dev-1"), None);
        assert_eq!(parse_front_door("wf/v1/apply/"), None);
        assert_eq!(parse_front_door("wf/v1/applyx"), None);
        assert_eq!(parse_result_topic(&result_topic("dev-1")), Some("dev-1"));
        for bad in [
            "wf/v1/apply/result/",
            "wf/v1/apply/result/a/b",
            "wf/v1/n/x/down/desired",
        ] {
            assert_eq!(parse_result_topic(bad), None, "{bad}");
        }
        assert!(!valid_client_id(&"c".repeat(MAX_CLIENT_ID_LEN + 1)));
        assert!(!valid_client_id("a\u{7}b"));
    }

    #[test]
    fn unknown_or_malformed_topics_are_not_understood() {
        for topic in [
            "wf/v1/n/pi-1/up/nonsense",
            "wf/v1/n/PI_1/up/state",
            "wf/v2/n/pi-1/up/state",
            "wf/v1/n/pi-1/down/desired",
            "wf/v1/modules/hello",
            "wf/v1/modules/hello/v1",
            "wf/v1/apply",
            "",
        ] {
            assert_eq!(parse_server_inbound(topic), None, "{topic}");
        }
    }
}
