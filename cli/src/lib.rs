//! The `wasmfleet` command line: a small kubectl for wasmfleet clusters.
//!
//! # Layout
//! - [`args`]: clap definitions of the global flags and subcommands.
//! - [`kubeconfig`]: finding and resolving the kubeconfig (server, CA, token, namespace).
//! - [`client`]: the HTTPS client (only the kubeconfig's CA is trusted) and kubectl-style errors.
//! - [`manifest`]: reading `-f` sources into API objects (multi-document YAML, JSON, Lists).
//! - [`discovery`]: the server's resources (names, short names, kinds, scopes, REST paths),
//!   read from its discovery documents; the CLI knows no kinds of its own.
//! - [`output`]: the layout of the server's Tables, JSON/YAML printing.
//! - [`commands`]: `apply`, `get`, `delete`, `logs`, `push`, `token`; the module store's
//!   fixed paths are in [`commands::modules`].
//!
//! [`run`] is the whole program behind `main`; errors are typed in the library modules and
//! become `anyhow` only here.

pub mod args;
pub mod client;
pub mod commands;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod kubeconfig;
pub mod manifest;
pub mod output;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::args::{Cli, Command};
use crate::client::Client;
use crate::commands::Session;

/// Where the process environment points for the kubeconfig.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$KUBECONFIG` (a path list; the first entry is used).
    pub kubeconfig: Option<String>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl Environment {
    /// Reads `$KUBECONFIG` and `$HOME`.
    pub fn from_process() -> Self {
        Self {
            kubeconfig: std::env::var("KUBECONFIG").ok(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

/// Runs one command line, writing results to `out`.
pub async fn run(cli: Cli, env: &Environment, out: &mut dyn Write) -> anyhow::Result<()> {
    let session = connect(&cli, env)?;
    match &cli.command {
        Command::Apply(args) => commands::apply::run(&session, &args.files, out).await,
        Command::Get(args) => commands::get::run(&session, args, out).await,
        Command::Delete(args) => commands::delete::run(&session, args, out).await,
        Command::Logs(args) => commands::logs::run(&session, args, out).await,
        Command::Push(args) => commands::push::run(&session, args, out).await,
        Command::Token(args) => commands::token::run(&session, args, out).await,
        Command::User(args) => commands::user::run(&session, args, out).await,
    }
}

fn connect(cli: &Cli, env: &Environment) -> anyhow::Result<Session> {
    let path = kubeconfig::locate(
        cli.kubeconfig.as_deref(),
        env.kubeconfig.as_deref(),
        env.home.as_deref(),
    )?;
    let access = kubeconfig::load(&path, cli.context.as_deref())?;
    let client =
        Client::new(&access).with_context(|| format!("using kubeconfig {}", path.display()))?;
    let namespace = cli
        .namespace
        .clone()
        .or(access.namespace)
        .unwrap_or_else(|| "default".to_owned());
    Ok(Session {
        client,
        namespace: commands::check_name(&namespace)?.to_owned(),
        namespace_from_flag: cli.namespace.is_some(),
        discovery: tokio::sync::OnceCell::new(),
    })
}

/// How `main` reports an error: `None` when it was already printed, else the text for stderr.
/// Server `Status` errors print as kubectl does (`Error from server (NotFound): ...`), every
/// other error as `error: ...` with its causes.
pub fn error_report(err: &anyhow::Error) -> Option<String> {
    if err.downcast_ref::<commands::Reported>().is_some() {
        return None;
    }
    match err.downcast_ref::<client::ClientError>() {
        Some(client_err) if client_err.is_from_server() => Some(client_err.to_string()),
        _ => Some(format!("error: {}", chain_text(err))),
    }
}

/// An error and its causes joined by `: `, skipping a cause whose text the message already
/// includes (several error types print their source inline).
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(kubeconfig::KubeconfigError::Read {
            path: PathBuf::from("kc"),
            source: io,
        })
        .context("loading");
        assert_eq!(
            error_report(&err).as_deref(),
            Some("error: loading: cannot read kubeconfig kc: disk on fire")
        );
    }

    #[test]
    fn reported_failures_print_nothing_more_and_server_errors_print_bare() {
        let reported = anyhow::Error::new(commands::Reported { failures: 2 });
        assert_eq!(error_report(&reported), None);
        let status = client::classify(
            reqwest::StatusCode::NOT_FOUND,
            br#"{"kind":"Status","reason":"NotFound","message":"pods \"x\" not found"}"#,
        );
        assert_eq!(
            error_report(&anyhow::Error::new(status)).as_deref(),
            Some("Error from server (NotFound): pods \"x\" not found")
        );
    }
}
