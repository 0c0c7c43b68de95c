//! `wasmfleet user kubeconfig NAME [--group G] [-o FILE] [--days N]`: a kubeconfig for a
//! new API user, authenticated by a client certificate of the cluster CA (CN = NAME, O = the
//! group, Kubernetes' convention). `wasmfleet user revoke NAME | --serial S` takes the
//! user's certificates back (the server refuses them from the next request on) and
//! `wasmfleet user list` shows the certificates signed, revoked or not.
//!
//! The key pair is made here (ECDSA P-256) and its private half never leaves this process
//! but into the kubeconfig; the server (`POST /apis/wasmfleet.dev/v1/usercertificates`,
//! cluster-admin only) certifies the public half and sends the certificate and the CA
//! back. What the user may do is then RBAC's business: bind a role to the user or to one
//! of its groups.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{KeyPair, PublicKeyData};
use serde_json::{Value, json};

use super::Session;
use crate::args::{UserArgs, UserCommand, UserKubeconfigArgs, UserRevokeArgs};
use crate::output::table::Table;

const CERTIFICATES_PATH: &str = "/apis/wasmfleet.dev/v1/usercertificates";

/// Runs `wasmfleet user ...`.
pub async fn run(session: &Session, args: &UserArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        UserCommand::Kubeconfig(args) => kubeconfig(session, args, out).await,
        UserCommand::Revoke(args) => revoke(session, args, out).await,
        UserCommand::List => {
            let list = session.client.get(CERTIFICATES_PATH).await?;
            let items = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            write!(out, "{}", table(items).render())?;
            Ok(())
        }
    }
}

async fn revoke(
    session: &Session,
    args: &UserRevokeArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let serials = match (&args.serial, &args.name) {
        (Some(serial), _) => vec![serial.clone()],
        (None, Some(name)) => {
            let list = session.client.get(CERTIFICATES_PATH).await?;
            let serials = unrevoked_of(
                list["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                name,
            );
            if serials.is_empty() {
                anyhow::bail!(
                    "user {name:?} has no certificate left to revoke (one signed before records were kept: revoke it with --serial)"
                );
            }
            serials
        }
        (None, None) => anyhow::bail!("name a user or a --serial"),
    };
    for serial in serials {
        let path = format!("{CERTIFICATES_PATH}/{}/revocation", check_serial(&serial)?);
        let revoked = session.client.post(&path, &json!({})).await?;
        let user = revoked["spec"]["username"].as_str().unwrap_or("<unknown>");
        let serial = revoked["metadata"]["name"].as_str().unwrap_or(&serial);
        writeln!(out, "certificate {serial} of user \"{user}\" revoked")?;
    }
    Ok(())
}

/// A serial as a path segment: hex digits and colons only (the server checks the rest).
fn check_serial(serial: &str) -> anyhow::Result<&str> {
    let serial = serial.trim().trim_start_matches("serial=");
    match !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
        true => Ok(serial),
        false => anyhow::bail!(
            "invalid serial {serial:?}: expected hex digits, as `openssl x509 -serial` prints"
        ),
    }
}

/// The serials of `name`'s certificates that are not revoked yet.
fn unrevoked_of(items: &[Value], name: &str) -> Vec<String> {
    items
        .iter()
        .filter(|c| c["spec"]["username"] == name && c["status"]["revoked"] != true)
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// `SERIAL  USER  GROUPS  EXPIRES  REVOKED`.
pub fn table(items: &[Value]) -> Table {
    let mut table = Table::new(&["SERIAL", "USER", "GROUPS", "EXPIRES", "REVOKED"]);
    let text = |v: &Value, empty: &str| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(empty)
            .to_owned()
    };
    for cert in items {
        let groups: Vec<&str> = cert["spec"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        table.rows.push(vec![
            text(&cert["metadata"]["name"], ""),
            text(&cert["spec"]["username"], "<unknown>"),
            match groups.is_empty() {
                true => "<none>".to_owned(),
                false => groups.join(","),
            },
            text(&cert["spec"]["notAfter"], "<unknown>"),
            text(&cert["status"]["revokedAt"], "<no>"),
        ]);
    }
    table
}

async fn kubeconfig(
    session: &Session,
    args: &UserKubeconfigArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = KeyPair::generate().context("generating the user's key")?;
    let request = json!({
        "apiVersion": "wasmfleet.dev/v1", "kind": "UserCertificate",
        "spec": {
            "username": args.name, "groups": args.group.iter().collect::<Vec<_>>(), "days": args.days,
            "publicKey": STANDARD.encode(key.subject_public_key_info()),
        },
    });
    let signed = session.client.post(CERTIFICATES_PATH, &request).await?;
    let (Some(cert), Some(ca)) = (
        signed["status"]["certificate"].as_str(),
        signed["status"]["ca"].as_str(),
    ) else {
        anyhow::bail!("the server answered without a certificate");
    };
    let config = render(
        session.client.server(),
        &args.name,
        (ca, cert, &key.serialize_pem()),
        &session.namespace,
    );
    match &args.output {
        Some(path) => {
            write_private(path, &config)?;
            writeln!(
                out,
                "kubeconfig for user \"{}\" written to {}",
                args.name,
                path.display()
            )?;
        }
        None => write!(out, "{config}")?,
    }
    Ok(())
}

/// The kubeconfig: one cluster, one user with its certificate and key, one context.
pub fn render(
    server: &str,
    user: &str,
    (ca, cert, key): (&str, &str, &str),
    namespace: &str,
) -> String {
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "wasmfleet", "cluster": {
            "server": server, "certificate-authority-data": STANDARD.encode(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": STANDARD.encode(cert),
            "client-key-data": STANDARD.encode(key)}}],
        "contexts": [{"name": format!("{user}@wasmfleet"), "context": {
            "cluster": "wasmfleet", "user": user, "namespace": namespace}}],
        "current-context": format!("{user}@wasmfleet"),
    });
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

/// Writes `text` readable by its owner only (it holds a private key).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificates() -> [Value; 3] {
        [
            json!({"metadata": {"name": "0a"}, "spec": {"username": "alice", "groups": ["dev"], "notAfter": "2027-12-07T00:00:00Z"}}),
            json!({"metadata": {"name": "0b"}, "spec": {"username": "alice", "groups": []}, "status": {"revoked": true, "revokedAt": "2026-12-07T10:00:00Z"}}),
            json!({"metadata": {"name": "0c"}, "spec": {}, "status": {"revoked": true, "revokedAt": "2026-12-07T11:00:00Z"}}),
        ]
    }

    #[test]
    fn revoking_a_user_takes_its_certificates_not_yet_revoked() {
        assert_eq!(unrevoked_of(&certificates(), "alice"), ["0a"]);
        assert!(unrevoked_of(&certificates(), "bob").is_empty());
    }

    #[test]
    fn the_list_shows_user_groups_expiry_and_revocation() {
        let rendered = table(&certificates()).render();
        let rows: Vec<Vec<&str>> = rendered
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["SERIAL", "USER", "GROUPS", "EXPIRES", "REVOKED"]);
        assert_eq!(
            rows[1],
            ["0a", "alice", "dev", "2027-12-07T00:00:00Z", "<no>"]
        );
        assert_eq!(
            rows[2],
            ["0b", "alice", "<none>", "<unknown>", "2026-12-07T10:00:00Z"]
        );
        assert_eq!(
            rows[3],
            [
                "0c",
                "<unknown>",
                "<none>",
                "<unknown>",
                "2026-12-07T11:00:00Z"
            ]
        );
    }

    #[test]
    fn a_serial_is_hex_digits() {
        assert_eq!(check_serial("serial=0A:1b").ok(), Some("0A:1b"));
        assert!(check_serial("../x").is_err());
        assert!(check_serial("").is_err());
    }
}
