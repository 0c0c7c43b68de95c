//! `wasmfleet delete KIND NAME...` and `wasmfleet delete -f FILE`.
//!
//! Prints `pod "hello" deleted` per object like kubectl; a failure is printed to stderr and
//! the remaining objects are still deleted.

use std::io::Write;

use super::{Reported, Session, check_name};
use crate::args::DeleteArgs;
use crate::client::ClientError;
use crate::kinds::Kind;
use crate::manifest;

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace (ignored for cluster-scoped kinds).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Runs `delete`.
pub async fn run(session: &Session, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let targets = if args.files.is_empty() {
        targets_from_args(&args.targets, &session.namespace)?
    } else {
        targets_from_files(&args.files, &session.namespace)?
    };
    let mut failures = 0;
    for target in &targets {
        let path = target.kind.item_path(&target.namespace, &target.name);
        match session.client.delete(&path).await {
            Ok(_) => writeln!(out, "{} {:?} deleted", target.kind.singular(), target.name)?,
            Err(err) if args.ignore_not_found && err.reason() == Some("NotFound") => {}
            Err(err @ ClientError::Status(_)) => {
                failures += 1;
                eprintln!("{err}");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Reported::check(failures)?)
}

/// Why the command line does not name objects to delete.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Nothing given.
    #[error(
        "you must provide one or more resources by argument or filename (KIND NAME... or -f FILE)"
    )]
    Missing,
    /// A kind without names.
    #[error("resource(s) were provided, but no name was specified")]
    NoName,
    /// Modules have no delete API yet.
    #[error("deleting modules is not supported")]
    Module,
}

/// `KIND NAME...` into targets in `namespace`.
pub fn targets_from_args(words: &[String], namespace: &str) -> anyhow::Result<Vec<Target>> {
    let (kind, names) = words.split_first().ok_or(TargetError::Missing)?;
    let kind = Kind::from_alias(kind)?;
    if kind == Kind::Module {
        return Err(TargetError::Module.into());
    }
    if names.is_empty() {
        return Err(TargetError::NoName.into());
    }
    names
        .iter()
        .map(|name| {
            Ok(Target {
                kind,
                namespace: namespace.to_owned(),
                name: check_name(name)?.to_owned(),
            })
        })
        .collect()
}

fn targets_from_files(
    files: &[std::path::PathBuf],
    namespace: &str,
) -> anyhow::Result<Vec<Target>> {
    manifest::read_sources(files)?
        .iter()
        .map(|object| {
            let kind = Kind::from_manifest(object.api_version(), object.kind())?;
            Ok(Target {
                kind,
                namespace: object.namespace().unwrap_or(namespace).to_owned(),
                name: check_name(object.name())?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn kind_and_names_become_targets_in_the_namespace() {
        let targets = targets_from_args(&words(&["po", "a", "b"]), "edge").expect("targets");
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[1],
            Target {
                kind: Kind::Pod,
                namespace: "edge".into(),
                name: "b".into()
            }
        );
    }

    #[test]
    fn a_kind_without_names_or_nothing_at_all_is_an_error() {
        assert!(targets_from_args(&words(&["pods"]), "d").is_err());
        assert!(targets_from_args(&[], "d").is_err());
        assert!(targets_from_args(&words(&["modules", "hello"]), "d").is_err());
        assert!(targets_from_args(&words(&["widgets", "x"]), "d").is_err());
    }
}
