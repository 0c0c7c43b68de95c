use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).expect("ca").der().to_vec();
    Ca {
        issuer: Issuer::new(params, key),
        der,
    }
}

/// What the server signs (`server/src/identity/certificates.rs` is the real one).
fn node_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

fn rcgen_key(key: &TunnelKey) -> KeyPair {
    let der = key.private_key();
    KeyPair::try_from(&der).expect("the tunnel key in rcgen")
}

fn sign(ca: &Ca, params: &CertificateParams, key: &KeyPair) -> NodeCertificate {
    NodeCertificate {
        cert_der: params
            .signed_by(key, &ca.issuer)
            .expect("sign")
            .der()
            .to_vec(),
        ca_der: ca.der.clone(),
    }
}

fn key_in(dir: &tempfile::TempDir) -> TunnelKey {
    TunnelKey::load_or_create(&dir.path().join(TUNNEL_KEY_FILE)).expect("key")
}

#[test]
fn the_first_start_creates_a_private_p256_key_that_later_starts_reuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(TUNNEL_KEY_FILE);
    let key = TunnelKey::load_or_create(&path).expect("created");
    assert_eq!(key.public_key().len(), 91);
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = TunnelKey::load_or_create(&path).expect("loaded");
    assert_eq!(again.public_key(), key.public_key());
}

#[test]
fn a_malformed_key_file_is_refused_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(TUNNEL_KEY_FILE);
    std::fs::write(&path, "not a key").expect("write");
    let err = TunnelKey::load_or_create(&path).expect_err("refused");
    assert!(matches!(err, TunnelKeyError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("delete it"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "not a key");
}

#[test]
fn a_certificate_for_this_node_and_key_from_the_cluster_ca_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let offered = sign(&ca, &node_params("pi-1"), &rcgen_key(&key));
    let pinned = [CertificateDer::from(ca.der.clone())];
    let identity = check("pi-1", &key, &offered, &pinned, UnixTime::now()).expect("accepted");
    assert_eq!(identity.node, "pi-1");
    assert_eq!(identity.cert.as_ref(), offered.cert_der.as_slice());
    assert!(identity.not_after.as_secs() > UnixTime::now().as_secs());
    assert_eq!(identity.certified_key().keys_match(), Ok(()));
    assert_eq!(identity.roots().len(), 1);
    // Without a pinned CA, the CA the server sends is taken.
    assert!(check("pi-1", &key, &offered, &[], UnixTime::now()).is_ok());
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let offered = sign(&ca, &node_params("pi-2"), &rcgen_key(&key));
    assert_eq!(
        check("pi-1", &key, &offered, &[], UnixTime::now()).err(),
        Some(CertificateRefusal::WrongName("pi-1".into()))
    );
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let other = KeyPair::generate().expect("key");
    let offered = sign(&ca, &node_params("pi-1"), &other);
    assert_eq!(
        check("pi-1", &key, &offered, &[], UnixTime::now()).err(),
        Some(CertificateRefusal::WrongKey)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let cluster = ca("wasmfleet-ca");
    let other = ca("wasmfleet-ca");
    let offered = sign(&other, &node_params("pi-1"), &rcgen_key(&key));
    let pinned = [CertificateDer::from(cluster.der.clone())];
    // Another CA than the one the agent was given...
    assert_eq!(
        check("pi-1", &key, &offered, &pinned, UnixTime::now()).err(),
        Some(CertificateRefusal::UntrustedCa)
    );
    // ...and a certificate that is not signed by the CA sent with it.
    let forged = NodeCertificate {
        ca_der: cluster.der.clone(),
        ..offered
    };
    assert!(matches!(
        check("pi-1", &key, &forged, &pinned, UnixTime::now()),
        Err(CertificateRefusal::NotSignedByCa(_))
    ));
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let mut params = node_params("pi-1");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let offered = sign(&ca, &params, &rcgen_key(&key));
    assert!(matches!(
        check("pi-1", &key, &offered, &[], UnixTime::now()),
        Err(CertificateRefusal::NotValidNow(_))
    ));
}

#[test]
fn a_certificate_without_client_auth_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let mut params = node_params("pi-1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let offered = sign(&ca, &params, &rcgen_key(&key));
    assert!(matches!(
        check("pi-1", &key, &offered, &[], UnixTime::now()),
        Err(CertificateRefusal::NotSignedByCa(_))
    ));
}

#[test]
fn garbage_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_in(&dir);
    let ca = ca("wasmfleet-ca");
    let garbage = NodeCertificate {
        cert_der: vec![0x30, 0x03, 1, 2, 3],
        ca_der: ca.der.clone(),
    };
    assert!(matches!(
        check("pi-1", &key, &garbage, &[], UnixTime::now()),
        Err(CertificateRefusal::Unparsable(_))
    ));
}

#[test]
fn an_accepted_certificate_is_stored_published_and_reloaded_until_the_key_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = TunnelFiles::in_dir(dir.path());
    let ca = ca("wasmfleet-ca");
    let ca_pem = pem("CERTIFICATE", &ca.der);
    let credentials =
        TunnelCredentials::load("pi-1", files.clone(), Some(ca_pem.as_bytes())).expect("load");
    let mut identity = credentials.identity();
    assert!(identity.borrow().is_none());
    let info = credentials.tunnel_info(10260);
    assert_eq!(
        (info.public_key.as_slice(), info.port),
        (credentials.key().public_key(), 10260)
    );

    // A bad certificate changes nothing.
    let wrong = sign(&ca, &node_params("pi-2"), &rcgen_key(credentials.key()));
    assert!(credentials.accept(&wrong).is_err());
    assert!(!identity.has_changed().expect("open"));
    assert!(!files.cert.exists());

    let offered = sign(&ca, &node_params("pi-1"), &rcgen_key(credentials.key()));
    credentials.accept(&offered).expect("accepted");
    assert!(identity.has_changed().expect("open"));
    assert!(identity.borrow_and_update().is_some());
    assert!(files.cert.exists() && files.ca.exists());

    // The next start has the identity before the server answers.
    let reloaded =
        TunnelCredentials::load("pi-1", files.clone(), Some(ca_pem.as_bytes())).expect("load");
    let held = reloaded
        .identity()
        .borrow()
        .clone()
        .expect("stored identity");
    assert_eq!(held.cert.as_ref(), offered.cert_der.as_slice());

    // A new key (the key file was deleted) drops the certificate of the old one.
    std::fs::remove_file(&files.key).expect("remove key");
    let renewed =
        TunnelCredentials::load("pi-1", files.clone(), Some(ca_pem.as_bytes())).expect("load");
    assert_ne!(renewed.key().public_key(), credentials.key().public_key());
    assert!(renewed.identity().borrow().is_none());
    assert!(!files.cert.exists());
}
