//! The cluster CA and the API's serving certificate (rcgen, ECDSA P-256 via ring).
//!
//! The CA is created once and kept (`tls/ca.crt`, `tls/ca.key`): clients trust it through
//! the kubeconfig. The serving certificate is re-issued on every start from the CA, so a
//! changed hostname or `--tls-san` takes effect without any migration.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{BootstrapError, files};

/// The CA's subject. It is also how a reloaded CA key becomes an [`Issuer`] again (rcgen
/// cannot parse certificates without x509-parser), so it must never change.
const CA_COMMON_NAME: &str = "wasmfleet-ca";

/// PEM material for the API's TLS.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA certificate clients trust.
    pub ca_cert_pem: String,
    /// The CA's private key (PKCS#8): it also signs precompiled artifacts.
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
    /// Where the serving certificate is written (`tls/server.crt`; the broker reads files).
    pub cert_file: PathBuf,
    /// Where its key is written (`tls/server.key`, 0600).
    pub key_file: PathBuf,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { .. }")
    }
}

/// Loads or creates the CA in `dir`, then issues a serving certificate for `sans`.
pub(crate) fn load_or_create(dir: &Path, sans: &[String]) -> Result<TlsMaterial, BootstrapError> {
    std::fs::create_dir_all(dir).map_err(|source| BootstrapError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let (ca_cert_pem, ca_key) = load_or_create_ca(dir)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmfleet-server");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, jiff::Span::new().years(2));
    let cert = params.signed_by(&key, &issuer)?;
    let material = TlsMaterial {
        ca_cert_pem,
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
    };
    write(&material.cert_file, material.cert_pem.as_bytes())?;
    write(&material.key_file, material.key_pem.as_bytes())?;
    Ok(material)
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), BootstrapError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    let cert = files::read_optional(&cert_path).map_err(|source| BootstrapError::Io {
        path: cert_path.clone(),
        source,
    })?;
    let key = files::read_optional(&key_path).map_err(|source| BootstrapError::Io {
        path: key_path.clone(),
        source,
    })?;
    if let (Some(cert), Some(key)) = (cert, key) {
        let key = KeyPair::from_pem(&key).map_err(|err| BootstrapError::Corrupt {
            path: key_path,
            reason: err.to_string(),
        })?;
        return Ok((cert, key));
    }
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    set_validity(&mut params, jiff::Span::new().years(20));
    let cert = params.self_signed(&key)?.pem();
    write(&key_path, key.serialize_pem().as_bytes())?;
    write(&cert_path, cert.as_bytes())?;
    Ok((cert, key))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The cluster CA as the issuer of the certificates it signs, from its key (PKCS#8 PEM).
pub(crate) fn ca_issuer(ca_key_pem: &str) -> Result<Issuer<'static, KeyPair>, rcgen::Error> {
    Ok(Issuer::new(ca_params(), KeyPair::from_pem(ca_key_pem)?))
}

/// Valid from yesterday (tolerates clocks a little behind) for `span` (whole days or
/// years).
pub(crate) fn set_validity(params: &mut CertificateParams, span: jiff::Span) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today.yesterday().unwrap_or(today);
    let end = start.saturating_add(span);
    let (y, m, d) = ymd(start);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(end);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// A date in the form rcgen's own date constructor takes (so no `time` dependency here).
fn ymd(date: jiff::civil::Date) -> (i32, u8, u8) {
    // Month and day of a real date are always in u8 range.
    (
        i32::from(date.year()),
        u8::try_from(date.month()).unwrap_or(1),
        u8::try_from(date.day()).unwrap_or(1),
    )
}

fn write(path: &Path, contents: &[u8]) -> Result<(), BootstrapError> {
    files::write_private(path, contents).map_err(|source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    })
}
