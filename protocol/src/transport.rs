//! How an MQTT client (rumqttc) reaches a [`BrokerUrl`]: plain TCP for `mqtt://`, TLS for
//! `mqtts://` trusting exactly the CA certificates it is given (the cluster CA from the
//! server's data dir, or an external broker's CA), never the system's roots: a node must
//! talk to its own control plane, not to anyone with a public certificate.
//!
//! Only with the `client` feature. rustls runs on ring, like the rest of wasmfleet.

use std::sync::Arc;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::broker_url::BrokerUrl;

/// Why no transport could be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `mqtts://` without any CA to check the broker against.
    #[error("{url} is a TLS broker, but no CA certificate to check it against was given")]
    MissingCa {
        /// The broker.
        url: String,
    },
    /// The CA PEM holds no usable certificate.
    #[error("invalid CA certificate: {0}")]
    BadCa(String),
}

/// The rumqttc transport for `url`. `ca_pem` (one or more PEM certificates) is required
/// for `mqtts://` and ignored for `mqtt://`.
pub fn transport(url: &BrokerUrl, ca_pem: Option<&[u8]>) -> Result<Transport, TransportError> {
    if !url.tls {
        return Ok(Transport::Tcp);
    }
    let ca_pem = ca_pem.ok_or_else(|| TransportError::MissingCa {
        url: url.to_string(),
    })?;
    Ok(Transport::Tls(TlsConfiguration::Rustls(tls_config(
        ca_pem,
    )?)))
}

/// A client for `options` and the event loop that drives it (`capacity` requests queued),
/// with Nagle's algorithm off. MQTT messages are small and most wait for an answer; with
/// Nagle on, a message sent while the previous one is unacknowledged waits for the
/// peer's delayed ACK, which cost 30-45 ms on every status report, log request and log
/// chunk over loopback.
pub fn client(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// [`client`] for MQTT 5.
pub fn client_v5(
    mut options: rumqttc::v5::MqttOptions,
    capacity: usize,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let mut network = options.network_options();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    rumqttc::v5::AsyncClient::new(options, capacity)
}

/// A rustls client configuration that trusts exactly the certificates in `ca_pem`.
pub fn tls_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TransportError> {
    let bad = |why: String| TransportError::BadCa(why);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> BrokerUrl {
        s.parse().unwrap()
    }

    #[test]
    fn plain_brokers_need_no_ca() {
        assert!(matches!(
            transport(&url("mqtt://x"), None),
            Ok(Transport::Tcp)
        ));
    }

    #[test]
    fn tls_brokers_without_a_ca_are_refused() {
        let result = transport(&url("mqtts://x"), None);
        assert!(matches!(result, Err(TransportError::MissingCa { .. })));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        for pem in [
            &b""[..],
            b"hello",
            b"-----BEGIN CERTIFICATE-----\nnot base64\n",
        ] {
            let err = tls_config(pem).unwrap_err();
            assert!(matches!(err, TransportError::BadCa(_)), "{err}");
        }
    }
}
