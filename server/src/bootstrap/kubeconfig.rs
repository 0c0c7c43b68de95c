//! The admin kubeconfig: how `kubectl` and `wasmfleet` reach and trust the API.

use std::net::SocketAddr;

use base64::Engine;
use serde_json::json;

/// The URL clients use for an API bound to `addr`: a wildcard bind is reached over loopback.
pub fn api_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("https://{ip}:{}", addr.port())
}

/// A kubeconfig (YAML) with one cluster, one token user and one current context.
pub fn render(server_url: &str, ca_cert_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_cert_pem);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "wasmfleet", "cluster": {
            "server": server_url,
            "certificate-authority-data": ca,
        }}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "wasmfleet", "context": {"cluster": "wasmfleet", "user": "admin"}}],
        "current-context": "wasmfleet",
        "preferences": {},
    });
    // Serialising a `Value` built from strings cannot fail; fall back to JSON (valid YAML).
    serde_yaml_ng::to_string(&config).unwrap_or_else(|_| config.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_over_loopback() {
        assert_eq!(
            api_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
        assert_eq!(api_url("[::]:1".parse().unwrap()), "https://[::1]:1");
        assert_eq!(api_url("10.0.0.2:7".parse().unwrap()), "https://10.0.0.2:7");
    }

    #[test]
    fn the_kubeconfig_names_server_ca_and_token() {
        let text = render("https://127.0.0.1:1", "PEM", "tok");
        let parsed: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:1"
        );
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(parsed["users"][0]["user"]["token"], "tok");
        assert_eq!(parsed["current-context"], "wasmfleet");
    }
}
