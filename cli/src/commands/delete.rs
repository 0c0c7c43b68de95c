//! `wasmfleet delete RESOURCE NAME...` and `wasmfleet delete -f FILE`.
//!
//! The resource (or each manifest's `apiVersion` + `kind`) is resolved through the
//! server's discovery. Prints `pod "hello" deleted` (`deployment.apps "web" deleted`) per
//! object like kubectl; a failure is printed to stderr and the remaining objects are still
//! deleted. With `--wait` (the default, as in kubectl) each object is then waited for until
//! it is gone (or replaced by a new object of the same name), up to `--timeout`: a pod
//! stops on its node before it goes.

use std::io::Write;

use super::{Reported, Session, check_name, modules};
use crate::args::DeleteArgs;
use crate::client::ClientError;
use crate::discovery::{Discovery, Resource};
use crate::manifest;

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its resource.
    pub resource: Resource,
    /// Its namespace (ignored for cluster-scoped kinds).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Runs `delete`.
pub async fn run(session: &Session, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let targets = if args.files.is_empty() {
        check_args(&args.targets)?;
        targets_from_args(
            &args.targets,
            &session.namespace,
            session.discovery().await?,
        )?
    } else {
        let objects = manifest::read_sources(&args.files)?;
        targets_from_objects(&objects, &session.namespace, session.discovery().await?)?
    };
    let mut failures = 0;
    for target in &targets {
        let path = target.resource.item_path(&target.namespace, &target.name);
        match session.client.delete(&path).await {
            Ok(last) => {
                let kind = target.resource.qualified_kind();
                writeln!(out, "{kind} {:?} deleted", target.name)?;
                out.flush()?;
                if args.wait {
                    wait_gone(session, &path, &last, args.timeout).await?;
                }
            }
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

/// How often a deleted object is looked for while waiting for it to go.
const WAIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until the object at `path` (whose last state the DELETE answered with) is gone, or
/// a new object of the same name (another uid) took its place.
async fn wait_gone(
    session: &Session,
    path: &str,
    last: &serde_json::Value,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let uid = last.pointer("/metadata/uid");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match session.client.get(path).await {
            Err(err) if err.reason() == Some("NotFound") => return Ok(()),
            Ok(current) if current.pointer("/metadata/uid") != uid => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(err.into()),
        }
        if tokio::time::Instant::now() >= deadline {
            let name = path.rsplit('/').next().unwrap_or(path);
            anyhow::bail!("timed out waiting for {name} to be deleted (--timeout={timeout:?})");
        }
        tokio::time::sleep(WAIT_INTERVAL).await;
    }
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

/// What can be told from the words alone, before asking the server anything.
pub fn check_args(words: &[String]) -> Result<(), TargetError> {
    match words.split_first() {
        None => Err(TargetError::Missing),
        Some((kind, _)) if modules::is_modules(kind) => Err(TargetError::Module),
        Some((_, [])) => Err(TargetError::NoName),
        Some(_) => Ok(()),
    }
}

/// `RESOURCE NAME...` into targets in `namespace`.
pub fn targets_from_args(
    words: &[String],
    namespace: &str,
    discovery: &Discovery,
) -> anyhow::Result<Vec<Target>> {
    check_args(words)?;
    let (kind, names) = words.split_first().ok_or(TargetError::Missing)?;
    let resource = discovery.resolve(kind)?;
    names
        .iter()
        .map(|name| {
            Ok(Target {
                resource: resource.clone(),
                namespace: namespace.to_owned(),
                name: check_name(name)?.to_owned(),
            })
        })
        .collect()
}

/// Manifest objects into targets (their own namespace, else `namespace`).
pub fn targets_from_objects(
    objects: &[manifest::Object],
    namespace: &str,
    discovery: &Discovery,
) -> anyhow::Result<Vec<Target>> {
    objects
        .iter()
        .map(|object| {
            let resource = discovery.for_manifest(object.api_version(), object.kind())?;
            Ok(Target {
                resource: resource.clone(),
                namespace: object.namespace().unwrap_or(namespace).to_owned(),
                name: check_name(object.name())?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    fn discovery() -> Discovery {
        let core = json!({"resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"]}]});
        let apps = json!({"resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"]}]});
        Discovery::from_lists(&[("", "v1", core), ("apps", "v1", apps)]).expect("lists")
    }

    #[test]
    fn resource_and_names_become_targets_in_the_namespace() {
        let targets =
            targets_from_args(&words(&["po", "a", "b"]), "edge", &discovery()).expect("targets");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].resource.name, "pods");
        assert_eq!(
            (targets[1].namespace.as_str(), targets[1].name.as_str()),
            ("edge", "b")
        );
        let deploy =
            targets_from_args(&words(&["deploy", "web"]), "edge", &discovery()).expect("targets");
        assert_eq!(
            deploy[0].resource.item_path("edge", "web"),
            "/apis/apps/v1/namespaces/edge/deployments/web"
        );
    }

    #[test]
    fn manifests_become_targets_through_their_group_version_and_kind() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: edge}\n";
        let objects = manifest::parse("m.yaml", text).expect("manifest");
        let targets = targets_from_objects(&objects, "default", &discovery()).expect("targets");
        assert_eq!(targets[0].resource.qualified_kind(), "deployment.apps");
        assert_eq!(targets[0].namespace, "default");
        assert_eq!(targets[1].namespace, "edge");
        let job = manifest::parse(
            "j.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\n",
        )
        .expect("manifest");
        let err = targets_from_objects(&job, "default", &discovery()).expect_err("not served");
        assert_eq!(
            err.to_string(),
            "no matches for kind \"Job\" in version \"batch/v1\""
        );
    }

    #[test]
    fn a_resource_without_names_or_nothing_at_all_is_an_error() {
        assert!(check_args(&words(&["pods"])).is_err());
        assert!(check_args(&[]).is_err());
        assert!(check_args(&words(&["modules", "hello"])).is_err());
        let err =
            targets_from_args(&words(&["widgets", "x"]), "d", &discovery()).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"widgets\""
        );
    }
}
