//! The record of every user certificate the cluster CA signs, and its revocation.
//!
//! Each certificate signed for a user (`wasmfleet user kubeconfig`) is recorded as a
//! `UserCertificate` object (`wasmfleet.dev/v1`, resource `usercertificates`, named by the
//! certificate's serial number in lowercase hex) holding its user, groups and expiry, never
//! the key. Revoking one (`wasmfleet user revoke`) marks its record `status.revoked`; the
//! record then stays until the certificate has expired (pruned when the next one is signed),
//! so the refusal survives restarts. A certificate signed before records were kept can be
//! revoked by its serial: its record is made then, without a user.
//!
//! The rule is the node rule of [`crate::api::users::authenticate`]: a client certificate
//! is checked against the informer's cache on every request, so a revocation takes effect
//! on the next request, on open connections too.

use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::k8s::time::rfc3339;

/// The store resource of the records.
pub const RESOURCE: &str = "usercertificates";

/// The longest serial accepted, in hex digits (RFC 5280: at most 20 octets).
const MAX_SERIAL_DIGITS: usize = 40;

/// The serial number of a certificate (DER), as records are named.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(hex(cert.raw_serial()))
}

/// A serial number as an operator types it (`openssl x509 -serial` prints `serial=0A1B…`;
/// colons and case do not matter), in the records' form; `None` if it is not one.
pub fn parse_serial(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_prefix("serial=").unwrap_or(text);
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let valid = !digits.is_empty()
        && digits.len() <= MAX_SERIAL_DIGITS
        && digits.chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return None;
    }
    let digits = digits.to_ascii_lowercase();
    let padded = match digits.len() % 2 {
        0 => digits,
        _ => format!("0{digits}"),
    };
    let bytes: Option<Vec<u8>> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect();
    Some(hex(&bytes?))
}

/// Lowercase hex of a serial's octets, without the leading zero octets DER may add.
fn hex(bytes: &[u8]) -> String {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].iter().map(|b| format!("{b:02x}")).collect()
}

/// The record of a newly signed certificate (DER): its serial and the record.
pub fn record_of(der: &[u8], user: &str, groups: &[String]) -> Option<(String, Value)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let serial = hex(cert.raw_serial());
    let not_after = jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()?;
    let record = record(&serial, user, groups, not_after);
    Some((serial, record))
}

fn record(serial: &str, user: &str, groups: &[String], not_after: jiff::Timestamp) -> Value {
    json!({
        "apiVersion": "wasmfleet.dev/v1",
        "kind": "UserCertificate",
        "metadata": {"name": serial},
        "spec": {"username": user, "groups": groups, "notAfter": rfc3339(not_after)},
    })
}

/// Marks `record` (or a new record for a certificate signed before records were kept)
/// revoked by `by` at `at`; an already revoked record keeps its first revocation.
pub fn revoke(existing: Option<&Value>, serial: &str, by: &str, at: jiff::Timestamp) -> Value {
    let mut record = existing.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "wasmfleet.dev/v1",
            "kind": "UserCertificate",
            "metadata": {"name": serial},
            "spec": {},
        })
    });
    if revocation(&record).is_none() {
        record["status"] = json!({"revoked": true, "revokedAt": rfc3339(at), "revokedBy": by});
    }
    record
}

/// When a record was revoked, if it was.
pub fn revocation(record: &Value) -> Option<&str> {
    let status = &record["status"];
    (status["revoked"] == true).then(|| status["revokedAt"].as_str().unwrap_or("?"))
}

/// Whether a record's certificate has expired by `now` (its record is then of no use).
pub fn expired(record: &Value, now: jiff::Timestamp) -> bool {
    record["spec"]["notAfter"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|not_after| not_after < now)
}

/// The refusal of a revoked certificate, in the words a 401 carries.
pub fn refusal(serial: &str, user: &str, revoked_at: &str) -> String {
    format!("the client certificate {serial} of user {user:?} was revoked at {revoked_at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_read_as_openssl_prints_them() {
        assert_eq!(parse_serial("serial=0A1B").as_deref(), Some("0a1b"));
        assert_eq!(parse_serial("00:0a:1b").as_deref(), Some("0a1b"));
        assert_eq!(parse_serial("A1B").as_deref(), Some("0a1b"));
        assert_eq!(parse_serial("0").as_deref(), Some("00"));
        for bad in ["", "xyz", "serial=", &"a".repeat(41)] {
            assert_eq!(parse_serial(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_revocation_is_kept_once_made() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let signed = record("0a", "alice", &["dev".into()], at);
        assert_eq!(revocation(&signed), None);
        let revoked = revoke(Some(&signed), "0a", "admin", at);
        assert_eq!(revocation(&revoked), Some("2027-01-15T08:00:00Z"));
        assert_eq!(revoked["spec"]["username"], "alice");
        let later = at.checked_add(jiff::SignedDuration::from_secs(60)).unwrap();
        assert_eq!(revoke(Some(&revoked), "0a", "bob", later), revoked);
        let unknown = revoke(None, "0b", "admin", at);
        assert_eq!(unknown["metadata"]["name"], "0b");
        assert!(revocation(&unknown).is_some());
    }

    #[test]
    fn a_record_expires_with_its_certificate() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let signed = record("0a", "alice", &[], at);
        assert!(!expired(&signed, at));
        let later = at.checked_add(jiff::SignedDuration::from_secs(1)).unwrap();
        assert!(expired(&signed, later));
        assert!(!expired(&revoke(None, "0b", "admin", at), later));
    }
}
