use super::*;
use rustls::pki_types::{DnsName, ServerName, UnixTime};
use std::time::Duration;

fn signer() -> (tempfile::TempDir, NodeCertificates) {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = bootstrap::load_or_create(dir.path(), &[]).expect("bootstrap");
    let signer =
        NodeCertificates::new(&boot.tls.ca_cert_pem, &boot.tls.ca_key_pem).expect("signer");
    (dir, signer)
}

fn node_key() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate().expect("key");
    let spki = key.subject_public_key_info();
    (key, spki)
}

fn verify(
    cert: &NodeCertificate,
    usage: webpki::KeyUsage,
    at: UnixTime,
) -> Result<(), webpki::Error> {
    let ca = CertificateDer::from(cert.ca_der.clone());
    let anchor = webpki::anchor_from_trusted_cert(&ca).expect("anchor");
    let der = CertificateDer::from(cert.cert_der.clone());
    let parsed = webpki::EndEntityCert::try_from(&der).expect("parses");
    parsed
        .verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &[anchor],
            &[],
            at,
            usage,
            None,
            None,
        )
        .map(|_| ())
}

fn names(cert: &NodeCertificate, name: &str) -> bool {
    let der = CertificateDer::from(cert.cert_der.clone());
    let parsed = webpki::EndEntityCert::try_from(&der).expect("parses");
    let name = DnsName::try_from(name.to_owned()).expect("dns name");
    parsed
        .verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .is_ok()
}

fn days_from_now(days: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        UnixTime::now().as_secs() + days * 24 * 3600,
    ))
}

#[test]
fn a_node_gets_a_certificate_for_its_name_and_key_from_the_cluster_ca() {
    let (_dir, signer) = signer();
    let (_key, spki) = node_key();
    let cert = signer.sign("pi-1", &spki).expect("signed");
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        verify(&cert, usage, UnixTime::now()).expect("valid for both ends of a tunnel");
    }
    assert!(names(&cert, "pi-1"));
    assert!(!names(&cert, "pi-2"));
    let der = CertificateDer::from(cert.cert_der.clone());
    let parsed = webpki::EndEntityCert::try_from(&der).expect("parses");
    assert_eq!(parsed.subject_public_key_info().as_ref(), spki.as_slice());
}

#[test]
fn a_node_certificate_is_valid_for_a_year() {
    let (_dir, signer) = signer();
    let (_key, spki) = node_key();
    let cert = signer.sign("pi-1", &spki).expect("signed");
    let usage = webpki::KeyUsage::server_auth;
    assert!(verify(&cert, usage(), days_from_now(363)).is_ok());
    assert!(matches!(
        verify(&cert, usage(), days_from_now(367)),
        Err(webpki::Error::CertExpired { .. })
    ));
}

#[test]
fn each_certificate_has_its_own_serial_number() {
    let (_dir, signer) = signer();
    let (_key, spki) = node_key();
    let first = signer.sign("pi-1", &spki).expect("signed");
    let second = signer.sign("pi-1", &spki).expect("signed");
    assert_ne!(first.cert_der, second.cert_der);
}

#[test]
fn keys_that_are_not_p256_are_refused() {
    let (_dir, signer) = signer();
    let (_key, spki) = node_key();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .expect("p384")
        .subject_public_key_info();
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("ed25519")
        .subject_public_key_info();
    let mut compressed = spki.clone();
    compressed[26] = 0x02;
    let mut longer = spki.clone();
    longer.insert(0, 0);
    for bad in [
        vec![],
        b"garbage".to_vec(),
        spki[..spki.len() - 1].to_vec(),
        longer,
        compressed,
        p384,
        ed25519,
    ] {
        assert_eq!(
            signer.sign("pi-1", &bad),
            Err(CertificateError::InvalidKey),
            "{}",
            hex::encode(&bad)
        );
    }
}

#[test]
fn the_annotation_is_the_hex_sha256_of_the_key() {
    let (_key, spki) = node_key();
    let hash = tunnel_key_sha256(&spki);
    assert_eq!(hash.len(), 64);
    assert_eq!(hash, hex::encode(Sha256::digest(&spki)));
}
