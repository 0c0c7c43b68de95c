//! `wasmfleet user kubeconfig NAME [--group G] [-o FILE] [--days N]`: a kubeconfig for a
//! new API user, authenticated by a client certificate of the cluster CA (CN = NAME, O = the
//! group, Kubernetes' convention).
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
use serde_json::json;

use super::Session;
use crate::args::{UserArgs, UserCommand, UserKubeconfigArgs};

const CERTIFICATES_PATH: &str = "/apis/wasmfleet.dev/v1/usercertificates";

/// Runs `wasmfleet user ...`.
pub async fn run(session: &Session, args: &UserArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        UserCommand::Kubeconfig(args) => kubeconfig(session, args, out).await,
    }
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
