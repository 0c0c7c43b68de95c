//! TLS for the ingress: which certificate serves which names, from the served Ingresses'
//! `spec.tls` and the served Gateways' `HTTPS` listeners, each naming `kubernetes.io/tls`
//! Secrets of its own namespace.
//!
//! Pure. [`certificates`] loads every Secret named and checks it ([`load`]: the type,
//! PEM that parses, a key that matches its certificate); one that is missing or unusable
//! becomes a [`Problem`] instead, and its names are served with the default certificate,
//! so one bad Secret never breaks another host. [`tls_routes`] is the part every node may
//! read: which Gateway ports are HTTPS and which Ingress hosts redirect plain HTTP.

use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use wasmfleet_protocol::ingress_tls::{KeyFormat, TlsCertificate};
use wasmfleet_protocol::routes::{INGRESS_PORT, TlsRoutes};

use super::routes::{NGINX_PREFIX, Sources, is_canary, is_served, oldest_first};

/// The Secret type a certificate must be stored in.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The annotation (after [`NGINX_PREFIX`]) that keeps a TLS host's routes on plain HTTP.
pub const SSL_REDIRECT: &str = "ssl-redirect";

/// A Secret an Ingress or Gateway listener names that cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The Ingress or Gateway.
    pub object: Arc<Value>,
    /// The Gateway listener's name (`None` for an Ingress).
    pub listener: Option<String>,
    /// What is wrong, naming the field and the Secret.
    pub message: String,
}

/// What the served objects terminate TLS with.
#[derive(Debug, Default)]
pub struct Certificates {
    /// The usable certificates, oldest object first.
    pub certificates: Vec<TlsCertificate>,
    /// The Secrets that could not be used.
    pub problems: Vec<Problem>,
}

/// Pure: the certificates of the served Ingresses (on [`INGRESS_PORT`]) and Gateway
/// HTTPS listeners (on their ports), with `secrets` looked up in each object's namespace.
pub fn certificates(sources: &Sources<'_>, secrets: &[Arc<Value>]) -> Certificates {
    let mut out = Certificates::default();
    for ingress in served_ingresses(sources) {
        for (i, tls) in list(&ingress["spec"]["tls"]).iter().enumerate() {
            let Some(name) = tls["secretName"].as_str() else {
                continue; // No Secret: the default certificate, as ingress-nginx does.
            };
            let wanted = Wanted {
                object: ingress,
                listener: None,
                field: format!("spec.tls[{i}].secretName"),
                secret: name,
                port: INGRESS_PORT,
                hosts: lower(&tls["hosts"]),
            };
            out.add(wanted, secrets);
        }
    }
    let gateways = sources
        .gateways
        .iter()
        .map(AsRef::as_ref)
        .filter(|g| super::gateway::is_served(g, sources.gateway_classes));
    for gateway in oldest_first(gateways) {
        for (i, listener) in list(&gateway["spec"]["listeners"]).iter().enumerate() {
            let Some(port) = https_port(listener) else {
                continue;
            };
            let hosts: Vec<String> = listener["hostname"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .into_iter()
                .collect();
            let name = listener["name"].as_str().map(str::to_owned);
            for (j, reference) in list(&listener["tls"]["certificateRefs"]).iter().enumerate() {
                let wanted = Wanted {
                    object: gateway,
                    listener: name.clone(),
                    field: format!("spec.listeners[{i}].tls.certificateRefs[{j}]"),
                    secret: reference["name"].as_str().unwrap_or_default(),
                    port,
                    hosts: hosts.clone(),
                };
                out.add(wanted, secrets);
            }
        }
    }
    out
}

/// A Secret an object names for some of its hosts.
struct Wanted<'a> {
    /// The Ingress or Gateway (the Secret is in its namespace).
    object: &'a Value,
    /// The Gateway listener's name.
    listener: Option<String>,
    /// The field that names the Secret.
    field: String,
    /// The Secret's name.
    secret: &'a str,
    /// The port the certificate serves.
    port: u16,
    /// The names it serves.
    hosts: Vec<String>,
}

impl Certificates {
    /// Adds the certificate `wanted` names, or the problem with it.
    fn add(&mut self, wanted: Wanted<'_>, secrets: &[Arc<Value>]) {
        let namespace = wanted.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let found = secrets.iter().find(|s| {
            s["metadata"]["namespace"] == namespace && s["metadata"]["name"] == wanted.secret
        });
        let source = format!("Secret {namespace}/{}", wanted.secret);
        let loaded = match found {
            Some(found) => load(found),
            None => Err("not found".to_owned()),
        };
        match loaded {
            Ok(certificate) => self.certificates.push(TlsCertificate {
                port: wanted.port,
                hosts: wanted.hosts,
                source,
                ..certificate
            }),
            Err(why) => self.problems.push(Problem {
                object: Arc::new(wanted.object.clone()),
                listener: wanted.listener,
                message: format!(
                    "{}: {source}: {why}; its hosts are served with the default certificate",
                    wanted.field
                ),
            }),
        }
    }
}

/// The port of an `HTTPS` listener (`None` for any other protocol).
pub fn https_port(listener: &Value) -> Option<u16> {
    (listener["protocol"] == "HTTPS")
        .then(|| u16::try_from(listener["port"].as_u64()?).ok())
        .flatten()
}

/// A `kubernetes.io/tls` Secret's chain (DER, leaf first) and key (the rest of the
/// certificate is left for the caller), or why it cannot be served.
pub fn load(secret: &Value) -> Result<TlsCertificate, String> {
    let kind = secret["type"].as_str().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(format!("is of type {kind}, not {TLS_SECRET_TYPE}"));
    }
    let data = |key: &str| {
        let text = secret["data"][key].as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| format!("{key} is not base64"))
    };
    let (cert_pem, key_pem) = (data("tls.crt")?, data("tls.key")?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("tls.crt is not PEM: {err}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no PEM certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| format!("tls.key holds no PEM private key: {err}"))?;
    let key_format = match &key {
        PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
        _ => KeyFormat::Pkcs8,
    };
    let key_der = key.secret_der().to_vec();
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider)
        .map_err(|err| format!("tls.key cannot be used with tls.crt: {err}"))?;
    certified
        .keys_match()
        .map_err(|err| format!("tls.key does not match tls.crt: {err}"))?;
    Ok(TlsCertificate {
        chain: chain.iter().map(|c| c.as_ref().to_vec()).collect(),
        key: key_der,
        key_format,
        ..TlsCertificate::default()
    })
}

/// Pure: what every node may know about TLS: the served Gateways' HTTPS ports, the hosts
/// of the served Ingresses' `spec.tls`, and the Ingresses that keep plain HTTP.
pub fn tls_routes(sources: &Sources<'_>) -> TlsRoutes {
    let mut tls = TlsRoutes::default();
    for ingress in served_ingresses(sources) {
        for entry in list(&ingress["spec"]["tls"]) {
            tls.redirect_hosts.extend(lower(&entry["hosts"]));
        }
        let annotation = format!("{NGINX_PREFIX}{SSL_REDIRECT}");
        if ingress["metadata"]["annotations"][annotation.as_str()] == "false" {
            tls.no_redirect.push(format!(
                "Ingress {}/{}",
                ingress["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default(),
                ingress["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    tls.redirect_hosts.sort();
    tls.redirect_hosts.dedup();
    let gateways = sources
        .gateways
        .iter()
        .filter(|g| super::gateway::is_served(g, sources.gateway_classes));
    for gateway in gateways {
        tls.https_ports.extend(
            list(&gateway["spec"]["listeners"])
                .iter()
                .filter_map(https_port),
        );
    }
    tls.https_ports.sort_unstable();
    tls.https_ports.dedup();
    tls
}

/// The served, non-canary Ingresses, oldest first (a canary's TLS is its main's).
fn served_ingresses<'a>(sources: &Sources<'a>) -> Vec<&'a Value> {
    oldest_first(
        sources
            .ingresses
            .iter()
            .map(AsRef::as_ref)
            .filter(|i| is_served(i, sources.ingress_classes) && !is_canary(i)),
    )
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[][..], Vec::as_slice)
}

fn lower(hosts: &Value) -> Vec<String> {
    list(hosts)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A self-signed certificate for `hosts` and its key, PEM.
    fn pem(hosts: &[&str]) -> (String, String) {
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn secret(name: &str, kind: &str, crt: &str, key: &str) -> Arc<Value> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        Arc::new(json!({
            "metadata": {"name": name, "namespace": "default"},
            "type": kind,
            "data": {"tls.crt": b64(crt), "tls.key": b64(key)},
        }))
    }

    fn ingress(name: &str, annotations: Value, tls: Value) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": name, "namespace": "default",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "annotations": annotations},
            "spec": {"tls": tls, "rules": [{"host": "a.example.com"}]},
        }))
    }

    #[test]
    fn a_good_secret_serves_its_hosts_and_bad_ones_are_problems_naming_the_field() {
        let (crt, key) = pem(&["a.example.com", "b.example.com"]);
        let (other_crt, _) = pem(&["x"]);
        let secrets = [
            secret("good", TLS_SECRET_TYPE, &crt, &key),
            secret("opaque", "Opaque", &crt, &key),
            secret("garbage", TLS_SECRET_TYPE, "not pem", &key),
            secret("mismatch", TLS_SECRET_TYPE, &other_crt, &key),
        ];
        let web = ingress(
            "web",
            json!({}),
            json!([
                {"hosts": ["A.example.com", "b.example.com"], "secretName": "good"},
                {"hosts": ["c.example.com"], "secretName": "missing"},
                {"hosts": ["d.example.com"], "secretName": "opaque"},
                {"hosts": ["e.example.com"], "secretName": "garbage"},
                {"hosts": ["f.example.com"], "secretName": "mismatch"},
            ]),
        );
        let ingresses = [web];
        let sources = Sources {
            ingresses: &ingresses,
            ..Sources::default()
        };
        let out = certificates(&sources, &secrets);
        assert_eq!(out.certificates.len(), 1);
        let good = &out.certificates[0];
        assert_eq!(good.hosts, ["a.example.com", "b.example.com"]);
        assert_eq!(
            (good.port, good.source.as_str()),
            (0, "Secret default/good")
        );
        assert_eq!(good.key_format, KeyFormat::Pkcs8);
        let messages: Vec<&str> = out.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages[0].starts_with("spec.tls[1].secretName: Secret default/missing: not found")
        );
        assert!(
            messages[1]
                .contains("spec.tls[2].secretName: Secret default/opaque: is of type Opaque")
        );
        assert!(
            messages[2]
                .contains("spec.tls[3].secretName: Secret default/garbage: tls.crt holds no PEM")
        );
        assert!(messages[3].contains("spec.tls[4].secretName: Secret default/mismatch: tls.key"));
        assert!(
            messages
                .iter()
                .all(|m| m.ends_with("served with the default certificate"))
        );
    }

    #[test]
    fn gateway_https_listeners_take_their_refs_on_their_port() {
        let (crt, key) = pem(&["shop.example.com"]);
        let secrets = [secret("shop", TLS_SECRET_TYPE, &crt, &key)];
        let gateway = Arc::new(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"gatewayClassName": "wasmfleet", "listeners": [
                {"name": "http", "port": 8080, "protocol": "HTTP"},
                {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "Shop.example.com",
                 "tls": {"certificateRefs": [{"name": "shop"}, {"name": "gone"}]}},
            ]},
        }));
        let gateways = [gateway];
        let sources = Sources {
            gateways: &gateways,
            ..Sources::default()
        };
        let out = certificates(&sources, &secrets);
        assert_eq!(out.certificates.len(), 1);
        assert_eq!(out.certificates[0].port, 8443);
        assert_eq!(out.certificates[0].hosts, ["shop.example.com"]);
        assert_eq!(out.problems.len(), 1);
        assert_eq!(out.problems[0].listener.as_deref(), Some("https"));
        assert!(
            out.problems[0]
                .message
                .starts_with("spec.listeners[1].tls.certificateRefs[1]: Secret default/gone")
        );
        assert_eq!(tls_routes(&sources).https_ports, [8443]);
    }

    #[test]
    fn tls_hosts_redirect_unless_the_ingress_says_ssl_redirect_false() {
        let tls = json!([{"hosts": ["a.example.com"], "secretName": "s"}]);
        let ingresses = [
            ingress("web", json!({}), tls.clone()),
            ingress(
                "plain",
                json!({"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
                tls,
            ),
        ];
        let sources = Sources {
            ingresses: &ingresses,
            ..Sources::default()
        };
        let routes = tls_routes(&sources);
        assert_eq!(routes.redirect_hosts, ["a.example.com"]);
        assert_eq!(routes.no_redirect, ["Ingress default/plain"]);
    }
}
