//! The subcommands, one module each, sharing a [`Session`] (client + namespace).
//!
//! Commands write results to the given `out` (stdout) and problems to stderr, like kubectl.
//! A command that reports some failures itself and carries on (apply, delete) ends with
//! [`Reported`], which tells `main` to exit non-zero without printing anything more.

pub mod apply;
pub mod delete;
pub mod get;
pub mod logs;
pub mod modules;
pub mod push;
pub mod token;
pub mod user;

use tokio::sync::OnceCell;

use crate::client::Client;
use crate::discovery::{Discovery, DiscoveryError};

/// What every command needs: a connection and the namespace to work in.
#[derive(Debug, Clone)]
pub struct Session {
    /// The API client.
    pub client: Client,
    /// The namespace from `-n`, the kubeconfig context, or `default`.
    pub namespace: String,
    /// Whether `-n` was given (then a manifest's different namespace is an error).
    pub namespace_from_flag: bool,
    /// The server's discovery, read on first use and kept for this command only.
    pub discovery: OnceCell<Discovery>,
}

impl Session {
    /// The server's discovery, fetched once per command; a group version the server would
    /// not describe is named on stderr (once) and left out, like kubectl does. A failed
    /// request is returned as the client's own error, so a server `Status` prints like
    /// kubectl's.
    pub async fn discovery(&self) -> anyhow::Result<&Discovery> {
        let fetch = || async {
            let discovery = Discovery::fetch(&self.client).await?;
            for unavailable in &discovery.unavailable {
                eprintln!("warning: couldn't get resource list for {unavailable}");
            }
            Ok(discovery)
        };
        self.discovery
            .get_or_try_init(fetch)
            .await
            .map_err(|err| match err {
                DiscoveryError::Client(client) => anyhow::Error::new(client),
                other => anyhow::Error::new(other),
            })
    }
}

/// Some operations failed and each failure has already been printed to stderr.
#[derive(Debug, thiserror::Error)]
#[error("{failures} operation(s) failed")]
pub struct Reported {
    /// How many failed.
    pub failures: usize,
}

impl Reported {
    /// `Ok` when nothing failed.
    pub fn check(failures: usize) -> Result<(), Self> {
        if failures == 0 {
            Ok(())
        } else {
            Err(Self { failures })
        }
    }
}

/// A name that cannot be put into a URL path segment as is.
#[derive(Debug, thiserror::Error)]
#[error("invalid name {0:?}: names may not be empty or contain '/', '?', '#', '%' or spaces")]
pub struct InvalidName(pub String);

/// Checks a user-supplied name before it goes into a request path.
pub fn check_name(name: &str) -> Result<&str, InvalidName> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '?', '#', '%', ' ', '\\']);
    if bad {
        Err(InvalidName(name.to_owned()))
    } else {
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_change_the_path_are_rejected() {
        for bad in ["", "..", "a/b", "a?b", "a#", "a b", "50%"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_name("hello-1.x").ok(), Some("hello-1.x"));
    }
}
