//! Fuzz targets for everything this crate decodes from the wire (hidden from the docs).
//!
//! Each target takes arbitrary bytes and must never panic, hang or blow up; where it is
//! cheap it also checks a round trip. The cargo-fuzz crate in `fuzz/` calls them, and so
//! does the brief replay in `tests/fuzz_smoke.rs`. The first byte of the input picks the
//! decoder, the rest is its input.

use crate::broker_url::BrokerUrl;
use crate::login::{NodeLogin, validate_node_password};
use crate::topic::{self, ServerInbound};
use crate::{decode, encode, names};

/// Every MQTT topic and payload parser: the first byte selects one.
pub fn mqtt(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => envelope(rest),
        1 => server_topic(&String::from_utf8_lossy(rest)),
        2 => node_topic(&String::from_utf8_lossy(rest)),
        3 => login(&String::from_utf8_lossy(rest)),
        4 => relay_line(&String::from_utf8_lossy(rest)),
        _ => broker_url(&String::from_utf8_lossy(rest)),
    }
}

/// A relay request line that parses is rebuilt to the same line.
fn relay_line(text: &str) {
    use crate::peers::relay_line::{Request, accept, connect, parse};
    let rebuilt = match parse(text) {
        Some(Request::Connect(node)) => connect(&node),
        Some(Request::Accept(session)) => accept(session),
        None => return,
    };
    assert_eq!(
        parse(rebuilt.trim_end()),
        parse(text),
        "relay line round trip"
    );
}

/// A payload that decodes re-encodes to bytes that decode to the same message.
pub fn envelope(payload: &[u8]) {
    if let Ok(message) = decode(payload) {
        let again = decode(&encode(&message));
        assert_eq!(again.as_ref(), Ok(&message), "envelope round trip");
    }
}

/// A topic the server understands is rebuilt, byte for byte, from what it parsed to.
fn server_topic(text: &str) {
    // Front door topics come from any admin client: parsing them never panics.
    let _ = topic::parse_front_door(text);
    let rebuilt = match topic::parse_server_inbound(text) {
        Some(ServerInbound::FromNode { node, kind }) => topic::up(node, kind),
        None => return,
    };
    assert_eq!(rebuilt, text, "server topic round trip");
}

/// `node|topic`: a topic the node understands is its own and rebuilds to the same text.
fn node_topic(text: &str) {
    let (node, topic_name) = text.split_once('|').unwrap_or(("pi-1", text));
    if let Some(kind) = topic::parse_node_inbound(node, topic_name) {
        assert_eq!(topic::down(node, kind), topic_name, "down topic round trip");
    }
    if let Some(uid) = topic::parse_node_pod(node, topic_name) {
        assert!(names::validate_uid(uid).is_ok());
        assert_eq!(
            topic::down_pod(node, uid),
            topic_name,
            "pod topic round trip"
        );
    }
    let _ = names::validate_node_name(node);
    let _ = names::validate_module_name(node);
    let _ = names::validate_tag(node);
    let _ = names::validate_digest_hex(node);
}

/// An MQTT password splits into parts that join back into the same password.
fn login(password: &str) {
    let parsed = NodeLogin::parse(password);
    assert_eq!(parsed.to_password(), password, "login round trip");
    if validate_node_password(parsed.node_password).is_ok() {
        assert!(!parsed.node_password.contains(':'));
    }
}

/// A broker URL that parses prints as a URL that parses to the same value.
fn broker_url(text: &str) {
    if let Ok(url) = text.parse::<BrokerUrl>() {
        let printed = url.to_string();
        assert_eq!(printed.parse::<BrokerUrl>(), Ok(url), "{printed}");
    }
}
