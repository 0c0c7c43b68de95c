//! Kubeconfig: finding the file and resolving its current context.
//!
//! Owns the lookup order (`--kubeconfig`, then the first path of `$KUBECONFIG`, then
//! `~/.kube/config`), parsing the subset of the kubeconfig format wasmfleet writes and
//! kubectl reads (clusters, users, contexts, `current-context`), and turning the current
//! context into a [`ClusterAccess`]: server URL, CA bytes, token, namespace. Relative file
//! paths inside a kubeconfig are resolved against the kubeconfig's directory, as kubectl does.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Everything needed to talk to one cluster as one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAccess {
    /// Base URL of the API server, e.g. `https://127.0.0.1:6443` (no trailing slash).
    pub server: String,
    /// PEM bytes of the CA that signed the server certificate; the only root trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip server certificate verification (`insecure-skip-tls-verify: true`).
    pub insecure_skip_tls_verify: bool,
    /// Bearer token, if the user has one.
    pub token: Option<String>,
    /// The context's namespace, used when `--namespace` is not given.
    pub namespace: Option<String>,
}

/// Why a kubeconfig could not be found, read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// No flag, no `$KUBECONFIG` and no `~/.kube/config`.
    #[error(
        "no kubeconfig found: pass --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config \
         (the server writes an admin kubeconfig into its data directory)"
    )]
    NotFound,
    /// The file exists (or was named) but cannot be read.
    #[error("cannot read kubeconfig {path}: {source}")]
    Read {
        /// The kubeconfig path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid kubeconfig YAML.
    #[error("invalid kubeconfig {path}: {source}")]
    Parse {
        /// The kubeconfig path.
        path: PathBuf,
        /// The YAML error, with its line and column.
        source: serde_yaml_ng::Error,
    },
    /// The file parses but does not describe a usable context.
    #[error("kubeconfig {path}: {problem}")]
    Invalid {
        /// The kubeconfig path.
        path: PathBuf,
        /// What is missing or wrong.
        problem: String,
    },
}

/// Picks the kubeconfig path: the flag, else the first entry of `$KUBECONFIG`, else
/// `$HOME/.kube/config` if it exists.
pub fn locate(
    flag: Option<&Path>,
    kubeconfig_env: Option<&str>,
    home: Option<&Path>,
) -> Result<PathBuf, KubeconfigError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    let from_env = kubeconfig_env
        .and_then(|list| std::env::split_paths(list).find(|p| !p.as_os_str().is_empty()));
    if let Some(path) = from_env {
        return Ok(path);
    }
    let default = home.map(|h| h.join(".kube").join("config"));
    match default {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(KubeconfigError::NotFound),
    }
}

/// Reads the kubeconfig at `path` and resolves its current context (or `context`, if given).
pub fn load(path: &Path, context: Option<&str>) -> Result<ClusterAccess, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    resolve(&text, base_dir, context).map_err(|err| match err {
        ResolveError::Parse(source) => KubeconfigError::Parse {
            path: path.to_path_buf(),
            source,
        },
        ResolveError::Invalid(problem) => KubeconfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        },
    })
}

/// A resolution failure before the file path is attached.
#[derive(Debug)]
pub enum ResolveError {
    /// Bad YAML.
    Parse(serde_yaml_ng::Error),
    /// A missing or inconsistent entry.
    Invalid(String),
}

/// Resolves kubeconfig text; relative paths in it are taken from `base_dir`.
pub fn resolve(
    text: &str,
    base_dir: &Path,
    context: Option<&str>,
) -> Result<ClusterAccess, ResolveError> {
    let config: Kubeconfig = serde_yaml_ng::from_str(text).map_err(ResolveError::Parse)?;
    let context_name = context
        .map(str::to_owned)
        .or(config.current_context.clone())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ResolveError::Invalid("current-context is not set".to_owned()))?;
    let context = find(&config.contexts, &context_name, "context")?;
    let cluster = find(&config.clusters, &context.cluster, "cluster")?;
    let user = match context.user.as_deref() {
        Some(name) if !name.is_empty() => Some(find(&config.users, name, "user")?),
        _ => None,
    };
    Ok(ClusterAccess {
        server: server_url(cluster)?,
        ca_pem: ca_pem(cluster, base_dir)?,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        token: match user {
            Some(user) => token(user, base_dir)?,
            None => None,
        },
        namespace: context.namespace.clone().filter(|ns| !ns.is_empty()),
    })
}

fn find<'a, T>(entries: &'a [Named<T>], name: &str, what: &str) -> Result<&'a T, ResolveError> {
    entries
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| &entry.value)
        .ok_or_else(|| ResolveError::Invalid(format!("{what} {name:?} is not defined")))
}

fn server_url(cluster: &Cluster) -> Result<String, ResolveError> {
    let server = cluster.server.trim().trim_end_matches('/');
    if server.is_empty() {
        return Err(ResolveError::Invalid("cluster has no server".to_owned()));
    }
    Ok(server.to_owned())
}

fn ca_pem(cluster: &Cluster, base_dir: &Path) -> Result<Option<Vec<u8>>, ResolveError> {
    if let Some(data) = &cluster.certificate_authority_data {
        let compact: String = data.split_whitespace().collect();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|err| {
                ResolveError::Invalid(format!("certificate-authority-data is not base64: {err}"))
            })?;
        return Ok(Some(pem));
    }
    match &cluster.certificate_authority {
        Some(path) => read_relative(base_dir, path, "certificate-authority").map(Some),
        None => Ok(None),
    }
}

fn token(user: &User, base_dir: &Path) -> Result<Option<String>, ResolveError> {
    if let Some(token) = user.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    match &user.token_file {
        Some(path) => {
            let bytes = read_relative(base_dir, path, "tokenFile")?;
            let token = String::from_utf8_lossy(&bytes).trim().to_owned();
            Ok(Some(token).filter(|t| !t.is_empty()))
        }
        None => Ok(None),
    }
}

fn read_relative(base_dir: &Path, path: &str, field: &str) -> Result<Vec<u8>, ResolveError> {
    let full = base_dir.join(path);
    std::fs::read(&full)
        .map_err(|err| ResolveError::Invalid(format!("{field} {}: {err}", full.display())))
}

/// The parts of a kubeconfig wasmfleet understands; unknown keys are ignored, as kubectl does.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
}

/// `{name: x, cluster|user|context: {...}}`: the value sits under a key named for its kind.
#[derive(Debug)]
struct Named<T> {
    name: String,
    value: T,
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = serde_yaml_ng::Mapping::deserialize(deserializer)?;
        let name = match map.remove("name") {
            Some(serde_yaml_ng::Value::String(name)) => name,
            _ => return Err(D::Error::custom("entry has no name")),
        };
        let value = ["cluster", "user", "context"]
            .iter()
            .find_map(|key| map.remove(*key))
            .unwrap_or(serde_yaml_ng::Value::Mapping(serde_yaml_ng::Mapping::new()));
        let value = serde_yaml_ng::from_value(value).map_err(D::Error::custom)?;
        Ok(Self { name, value })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Context {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn kubeconfig(ca_line: &str, user_block: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
current-context: admin@wasmfleet
clusters:
- name: other
  cluster:
    server: https://elsewhere:1
- name: wasmfleet
  cluster:
    server: https://127.0.0.1:6443/
    {ca_line}
users:
- name: admin
  user:
    {user_block}
contexts:
- name: admin@wasmfleet
  context:
    cluster: wasmfleet
    user: admin
    {namespace}
preferences: {{}}
"
        )
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn resolves_the_current_context_with_inline_ca_and_token() {
        let text = kubeconfig(
            &format!("certificate-authority-data: {}", b64(CA_PEM)),
            "token: s3cret",
            "namespace: edge",
        );
        let access = resolve(&text, Path::new("/nowhere"), None).expect("resolves");
        assert_eq!(
            access,
            ClusterAccess {
                server: "https://127.0.0.1:6443".to_owned(),
                ca_pem: Some(CA_PEM.as_bytes().to_vec()),
                insecure_skip_tls_verify: false,
                token: Some("s3cret".to_owned()),
                namespace: Some("edge".to_owned()),
            }
        );
    }

    #[test]
    fn reads_ca_and_token_files_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), CA_PEM).expect("write ca");
        std::fs::write(dir.path().join("token"), "tok\n").expect("write token");
        let text = kubeconfig("certificate-authority: ca.crt", "tokenFile: token", "");
        let access = resolve(&text, dir.path(), None).expect("resolves");
        assert_eq!(access.ca_pem.as_deref(), Some(CA_PEM.as_bytes()));
        assert_eq!(access.token.as_deref(), Some("tok"));
        assert_eq!(access.namespace, None);
    }

    #[test]
    fn honours_insecure_skip_tls_verify() {
        let text = kubeconfig("insecure-skip-tls-verify: true", "token: t", "");
        let access = resolve(&text, Path::new("."), None).expect("resolves");
        assert!(access.insecure_skip_tls_verify);
        assert_eq!(access.ca_pem, None);
    }

    #[test]
    fn an_explicit_context_overrides_current_context() {
        let text = kubeconfig("", "token: t", "").replace(
            "contexts:\n",
            "contexts:\n- name: other\n  context:\n    cluster: other\n",
        );
        let access = resolve(&text, Path::new("."), Some("other")).expect("resolves");
        assert_eq!(access.server, "https://elsewhere:1");
        assert_eq!(access.token, None);
    }

    #[test]
    fn a_missing_cluster_is_named_in_the_error() {
        let text = kubeconfig("", "token: t", "").replace("cluster: wasmfleet", "cluster: gone");
        match resolve(&text, Path::new("."), None) {
            Err(ResolveError::Invalid(problem)) => {
                assert!(problem.contains("\"gone\""), "{problem}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn bad_yaml_is_a_parse_error() {
        assert!(matches!(
            resolve("clusters: [", Path::new("."), None),
            Err(ResolveError::Parse(_))
        ));
    }

    #[test]
    fn no_current_context_is_an_error() {
        assert!(matches!(
            resolve("apiVersion: v1\nkind: Config\n", Path::new("."), None),
            Err(ResolveError::Invalid(_))
        ));
    }

    #[test]
    fn locate_prefers_the_flag_then_the_first_env_path_then_home() {
        let flag = Path::new("/flag/config");
        assert_eq!(
            locate(Some(flag), Some("/env/a:/env/b"), None).ok(),
            Some(flag.to_path_buf())
        );
        assert_eq!(
            locate(None, Some("/env/a:/env/b"), None).ok(),
            Some(PathBuf::from("/env/a"))
        );
        let home = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            locate(None, None, Some(home.path())),
            Err(KubeconfigError::NotFound)
        ));
        std::fs::create_dir(home.path().join(".kube")).expect("mkdir");
        std::fs::write(home.path().join(".kube/config"), "").expect("write");
        assert_eq!(
            locate(None, Some(""), Some(home.path())).ok(),
            Some(home.path().join(".kube/config"))
        );
    }
}
