//! Command-line arguments (clap derive): global flags and one struct per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// wasmfleet: apply, inspect and delete Wasm pods on a wasmfleet cluster, push modules and
/// read logs. Talks to the server named by the kubeconfig (like kubectl).
#[derive(Debug, Parser)]
#[command(name = "wasmfleet", version, about, long_about = None)]
pub struct Cli {
    /// Path to the kubeconfig (default: first path of $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of its current-context.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update objects from manifests (YAML or JSON, multi-document, Lists).
    Apply(ApplyArgs),
    /// List objects, or show one.
    Get(GetArgs),
    /// Delete objects by name or by manifest.
    Delete(DeleteArgs),
    /// Print (or follow) the logs of a pod's container.
    Logs(LogsArgs),
    /// Upload a Wasm module to the server's module store as NAME:TAG.
    Push(PushArgs),
    /// Create, list and delete join tokens for new nodes.
    Token(TokenArgs),
    /// Make credentials for API users.
    User(UserArgs),
}

/// `wasmfleet user kubeconfig ...`
#[derive(Debug, Args)]
pub struct UserArgs {
    /// What to make.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The user subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Write a kubeconfig for a new user, with a client certificate signed by the cluster
    /// CA (cluster-admin only). Grant it rights with RoleBindings to the user or its groups.
    Kubeconfig(UserKubeconfigArgs),
    /// Revoke a user's client certificates: every one signed for NAME, or the one with
    /// --serial (as `openssl x509 -serial` prints it). Refused at once, also after restarts.
    Revoke(UserRevokeArgs),
    /// List the client certificates signed for users: serial, user, groups, expiry, and
    /// when each was revoked.
    List,
}

/// `wasmfleet user revoke NAME | --serial SERIAL`
#[derive(Debug, Args)]
pub struct UserRevokeArgs {
    /// The user whose certificates to revoke (all of them).
    #[arg(required_unless_present = "serial", conflicts_with = "serial")]
    pub name: Option<String>,
    /// The serial number of one certificate (hex; also one signed before records were kept).
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,
}

/// `wasmfleet user kubeconfig NAME [--group G] [-o FILE] [--days N]`
#[derive(Debug, Args)]
pub struct UserKubeconfigArgs {
    /// The user name (the certificate's CN).
    pub name: String,
    /// The user's group (the certificate's O); one at most (bind further roles to the
    /// user itself).
    #[arg(long = "group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Where to write the kubeconfig (mode 0600) [default: stdout].
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `wasmfleet token create|list|delete`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do with join tokens.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print it (it is shown only this once).
    Create(TokenCreateArgs),
    /// List join tokens: id, time left, uses, description.
    List,
    /// Delete (revoke) a join token: it admits no more nodes.
    Delete {
        /// The token's id (the part before the dot).
        id: String,
    },
}

/// `wasmfleet token create [--ttl D] [--uses N] [--description TEXT]`
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token may be used: 30m, 2h, 7d, or 0 for ever [default: 24h].
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// How many nodes it may admit [default: any number until it expires].
    #[arg(long, value_name = "N")]
    pub uses: Option<u64>,
    /// What the token is for, shown by `token list`.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `wasmfleet apply -f FILE...`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file, directory, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `wasmfleet get RESOURCE [NAME]`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Any resource the server lists in its discovery, by plural, singular or short name
    /// (pods, pod, po; nodes, no; namespaces, ns; ...), or modules (module, mod).
    pub kind: String,

    /// One object's name (for modules: every tag of that module).
    pub name: Option<String>,

    /// Output format: json, yaml, wide or name (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,

    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Add a LABELS column (tables only).
    #[arg(long)]
    pub show_labels: bool,

    /// Print the table without its header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// `wasmfleet delete KIND NAME...` or `wasmfleet delete -f FILE`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind, then one or more names (omit both with -f).
    #[arg(value_name = "KIND NAME", conflicts_with = "files")]
    pub targets: Vec<String>,

    /// Delete the objects in these manifests instead (repeatable, `-` for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,

    /// Wait until the objects are gone (a pod stops on its node first), as kubectl does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub wait: bool,

    /// How long to wait for each object to go (`30s`, `5m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

/// A positive duration as `kubectl` takes it: `90s`, `5m`, `1h30m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (use 30s, 5m or 1h)"))?;
    std::time::Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

/// `wasmfleet logs POD`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,

    /// The container (default: the server picks the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,

    /// Keep streaming new output until the container ends or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

/// `wasmfleet push FILE NAME:TAG`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The .wasm file (core module or component).
    pub file: PathBuf,

    /// Module reference: NAME:TAG (a bare NAME means NAME:latest).
    pub reference: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn timeouts_read_like_kubectl_flags() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
