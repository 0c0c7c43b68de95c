//! API discovery, read the way kubectl reads it: which resources the server serves, their
//! names and short names, kinds, scopes and REST paths.
//!
//! [`Discovery::fetch`] asks `GET /api` and `GET /apis` for the served group versions, then
//! each group version's `APIResourceList` (`/api/v1`, `/apis/{group}/{version}`). The CLI
//! knows no kinds of its own: `get po`, `get deploy` and `apply -f` of an `apps/v1`
//! manifest all resolve through what the server lists. A command fetches discovery at most
//! once ([`crate::commands::Session::discovery`]) and keeps it for its own run only.

use serde::Deserialize;
use serde_json::Value;

use crate::client::{Client, ClientError};

/// Group versions read at most, against a server that lists without end.
pub const MAX_GROUP_VERSIONS: usize = 256;

/// Which namespaces a request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    All,
}

/// A resource name the server does not serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server doesn't have a resource type {0:?}")]
pub struct UnknownResource(pub String);

/// A manifest's `apiVersion` + `kind` the server does not serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no matches for kind {kind:?} in version {api_version:?}")]
pub struct NoKindMatch {
    /// The manifest's kind.
    pub kind: String,
    /// The manifest's apiVersion.
    pub api_version: String,
}

/// Why discovery could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A discovery document is not the shape Kubernetes defines.
    #[error("invalid discovery document from {path}: {reason}")]
    Invalid {
        /// The path that answered it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server lists more group versions than the CLI reads.
    #[error("the server lists {count} API group versions, more than the {MAX_GROUP_VERSIONS} read")]
    TooManyGroupVersions {
        /// How many it listed.
        count: usize,
    },
}

/// One served resource (an `APIResource` with its group version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group, empty for the core group.
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Plural name, as in paths (`pods`).
    pub name: String,
    /// Singular name (`pod`).
    pub singular: String,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Kind (`Pod`).
    pub kind: String,
    /// Whether its objects live in a namespace.
    pub namespaced: bool,
}

impl Resource {
    /// `v1` for the core group, else `group/version`, as in `apiVersion`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How kubectl names the kind in its messages: `pod`, `deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// `/api/v1` or `/apis/{group}/{version}`.
    fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path for a list (GET) or a create (POST).
    pub fn collection_path(&self, scope: &Scope) -> String {
        match scope {
            Scope::Namespace(ns) if self.namespaced => {
                format!("{}/namespaces/{ns}/{}", self.prefix(), self.name)
            }
            _ => format!("{}/{}", self.prefix(), self.name),
        }
    }

    /// The path of one object; `namespace` is ignored for cluster-scoped resources.
    pub fn item_path(&self, namespace: &str, name: &str) -> String {
        let scope = Scope::Namespace(namespace.to_owned());
        format!("{}/{name}", self.collection_path(&scope))
    }

    /// Whether a user typing `word` (lower case) means this resource.
    fn is_called(&self, word: &str) -> bool {
        self.name == word
            || self.singular == word
            || self.kind.eq_ignore_ascii_case(word)
            || self.short_names.iter().any(|short| short == word)
    }
}

/// What the server serves, in kubectl's order of preference: the core group first, then
/// the groups as `/apis` lists them, each group's preferred version first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    resources: Vec<Resource>,
    /// Named group versions the server listed but would not describe (kubectl goes on
    /// without them too): `group/version: why`.
    pub unavailable: Vec<String>,
}

/// `APIResourceList` (only what the CLI reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceList {
    #[serde(default)]
    resources: Vec<ApiResource>,
}

/// `APIResource`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResource {
    name: String,
    #[serde(default)]
    singular_name: String,
    #[serde(default)]
    short_names: Vec<String>,
    kind: String,
    #[serde(default)]
    namespaced: bool,
}

/// `APIVersions` (`/api`).
#[derive(Debug, Deserialize)]
struct ApiVersions {
    #[serde(default)]
    versions: Vec<String>,
}

/// `APIGroupList` (`/apis`).
#[derive(Debug, Deserialize)]
struct GroupList {
    #[serde(default)]
    groups: Vec<ApiGroup>,
}

/// `APIGroup`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiGroup {
    name: String,
    #[serde(default)]
    versions: Vec<GroupVersion>,
    preferred_version: Option<GroupVersion>,
}

/// `GroupVersionForDiscovery`.
#[derive(Debug, Deserialize)]
struct GroupVersion {
    version: String,
}

impl Discovery {
    /// Reads the server's discovery: `/api`, `/apis`, then every group version's list.
    pub async fn fetch(client: &Client) -> Result<Self, DiscoveryError> {
        let core: ApiVersions = read(client, "/api").await?;
        let groups: GroupList = read(client, "/apis").await?;
        let group_versions = group_versions(core, groups)?;
        let mut discovery = Self::default();
        for (group, version) in group_versions {
            let path = list_path(&group, &version);
            match read::<ResourceList>(client, &path).await {
                Ok(list) => discovery.add(&group, &version, list),
                Err(err) if !group.is_empty() && is_partial(&err) => {
                    discovery
                        .unavailable
                        .push(format!("{group}/{version}: {err}"));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(discovery)
    }

    /// Discovery from `(group, version, APIResourceList)` documents, in preference order.
    pub fn from_lists(lists: &[(&str, &str, Value)]) -> Result<Self, DiscoveryError> {
        let mut discovery = Self::default();
        for (group, version, list) in lists {
            let path = list_path(group, version);
            discovery.add(group, version, parse(&path, list.clone())?);
        }
        Ok(discovery)
    }

    fn add(&mut self, group: &str, version: &str, list: ResourceList) {
        let served = list
            .resources
            .into_iter()
            // Subresources (`pods/log`) are reached through their parent.
            .filter(|resource| !resource.name.contains('/'))
            .map(|resource| Resource {
                group: group.to_owned(),
                version: version.to_owned(),
                singular: singular(&resource),
                name: resource.name,
                short_names: resource.short_names,
                kind: resource.kind,
                namespaced: resource.namespaced,
            });
        self.resources.extend(served);
    }

    /// The resource a user means by `typed`: a plural, singular or short name or a kind,
    /// case-insensitively, optionally qualified as `name.group` or `name.version.group`.
    pub fn resolve(&self, typed: &str) -> Result<&Resource, UnknownResource> {
        let word = typed.to_ascii_lowercase();
        let mut candidates = vec![(word.as_str(), None, None)];
        if let Some((name, rest)) = word.split_once('.') {
            candidates.push((name, None, Some(rest)));
            if let Some((version, group)) = rest.split_once('.') {
                candidates.push((name, Some(version), Some(group)));
            }
        }
        candidates
            .into_iter()
            .find_map(|(name, version, group)| {
                self.resources.iter().find(|resource| {
                    resource.is_called(name)
                        && version.is_none_or(|v| resource.version == v)
                        && group.is_none_or(|g| resource.group == g)
                })
            })
            .ok_or_else(|| {
                // kubectl names the resource part of `name.group` in its message.
                let resource = typed.split('.').next().unwrap_or(typed);
                UnknownResource(resource.to_owned())
            })
    }

    /// The resource a manifest's `apiVersion` and `kind` name.
    pub fn for_manifest(&self, api_version: &str, kind: &str) -> Result<&Resource, NoKindMatch> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .ok_or_else(|| NoKindMatch {
                kind: kind.to_owned(),
                api_version: api_version.to_owned(),
            })
    }
}

/// Whether a named group version's failure leaves the rest of discovery usable: the
/// server answered (an error status or a bad document) and the login is good. The core
/// group, an unreachable server or a refused token still fail the command.
fn is_partial(err: &DiscoveryError) -> bool {
    match err {
        DiscoveryError::Client(ClientError::Unauthorized) => false,
        DiscoveryError::Client(client) => client.code().is_some(),
        DiscoveryError::Invalid { .. } => true,
        DiscoveryError::TooManyGroupVersions { .. } => false,
    }
}

/// The singular name, or the lower-case kind when the server leaves it empty (as older
/// servers do; kubectl falls back the same way).
fn singular(resource: &ApiResource) -> String {
    if resource.singular_name.is_empty() {
        resource.kind.to_ascii_lowercase()
    } else {
        resource.singular_name.clone()
    }
}

/// Every group version to read: core versions, then each group's preferred version first.
fn group_versions(
    core: ApiVersions,
    groups: GroupList,
) -> Result<Vec<(String, String)>, DiscoveryError> {
    let mut all: Vec<(String, String)> = core
        .versions
        .into_iter()
        .map(|version| (String::new(), version))
        .collect();
    for group in groups.groups {
        let preferred = group.preferred_version.map(|gv| gv.version);
        let mut versions: Vec<String> = group.versions.into_iter().map(|gv| gv.version).collect();
        if let Some(preferred) = preferred {
            versions.retain(|version| *version != preferred);
            versions.insert(0, preferred);
        }
        all.extend(versions.into_iter().map(|v| (group.name.clone(), v)));
    }
    if all.len() > MAX_GROUP_VERSIONS {
        return Err(DiscoveryError::TooManyGroupVersions { count: all.len() });
    }
    Ok(all)
}

fn list_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<T, DiscoveryError> {
    let value = client.get(path).await?;
    parse(path, value)
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, value: Value) -> Result<T, DiscoveryError> {
    serde_json::from_value(value).map_err(|err| DiscoveryError::Invalid {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The core list the server serves today, plus apps/v1 and batch/v1 as the API grows.
    fn discovery() -> Discovery {
        let core = json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod"},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "shortNames": ["no"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "shortNames": ["ns"]}]});
        let apps = json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"]},
            {"name": "deployments/scale", "singularName": "", "namespaced": true, "kind": "Scale"},
            {"name": "replicasets", "singularName": "", "namespaced": true, "kind": "ReplicaSet", "shortNames": ["rs"]}]});
        let batch = json!({"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [
            {"name": "jobs", "singularName": "job", "namespaced": true, "kind": "Job"}]});
        Discovery::from_lists(&[
            ("", "v1", core),
            ("apps", "v1", apps),
            ("batch", "v1", batch),
        ])
        .expect("valid lists")
    }

    #[test]
    fn plural_singular_short_names_and_kinds_resolve_case_insensitively() {
        let discovery = discovery();
        for typed in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(
                discovery.resolve(typed).map(|r| r.name.as_str()),
                Ok("pods"),
                "{typed}"
            );
        }
        for (typed, plural) in [
            ("no", "nodes"),
            ("ns", "namespaces"),
            ("namespace", "namespaces"),
        ] {
            assert_eq!(
                discovery.resolve(typed).map(|r| r.name.as_str()),
                Ok(plural),
                "{typed}"
            );
        }
        for typed in [
            "deploy",
            "deployment",
            "deployments",
            "Deployment",
            "deployments.apps",
            "deploy.v1.apps",
        ] {
            assert_eq!(
                discovery.resolve(typed).map(|r| r.name.as_str()),
                Ok("deployments"),
                "{typed}"
            );
        }
        // An empty singularName falls back to the lower-case kind, like kubectl.
        assert_eq!(
            discovery.resolve("replicaset").map(|r| r.name.as_str()),
            Ok("replicasets")
        );
        assert_eq!(
            discovery.resolve("rs").map(|r| r.group.as_str()),
            Ok("apps")
        );
    }

    #[test]
    fn an_unknown_name_or_a_subresource_is_reported_like_kubectl() {
        let discovery = discovery();
        for typed in ["foo", "pods/log", "log", "scale"] {
            let err = discovery.resolve(typed).expect_err(typed);
            assert_eq!(
                err.to_string(),
                format!("the server doesn't have a resource type {typed:?}")
            );
        }
        let err = discovery
            .resolve("deployments.batch")
            .expect_err("not in batch");
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"deployments\""
        );
    }

    #[test]
    fn paths_follow_the_group_version_and_scope() {
        let discovery = discovery();
        let ns = Scope::Namespace("edge".to_owned());
        let pods = discovery.resolve("po").expect("pods");
        assert_eq!(pods.collection_path(&ns), "/api/v1/namespaces/edge/pods");
        assert_eq!(pods.collection_path(&Scope::All), "/api/v1/pods");
        assert_eq!(
            pods.item_path("edge", "p"),
            "/api/v1/namespaces/edge/pods/p"
        );
        let nodes = discovery.resolve("no").expect("nodes");
        assert_eq!(nodes.collection_path(&ns), "/api/v1/nodes");
        let namespaces = discovery.resolve("ns").expect("namespaces");
        assert_eq!(namespaces.item_path("edge", "x"), "/api/v1/namespaces/x");
        let deploy = discovery.resolve("deploy").expect("deployments");
        assert_eq!(
            deploy.collection_path(&ns),
            "/apis/apps/v1/namespaces/edge/deployments"
        );
        assert_eq!(
            deploy.collection_path(&Scope::All),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            deploy.item_path("edge", "web"),
            "/apis/apps/v1/namespaces/edge/deployments/web"
        );
        assert_eq!(deploy.group_version(), "apps/v1");
        assert_eq!(deploy.qualified_kind(), "deployment.apps");
        assert_eq!(pods.group_version(), "v1");
        assert_eq!(pods.qualified_kind(), "pod");
    }

    #[test]
    fn manifests_map_through_group_version_and_kind() {
        let discovery = discovery();
        let deploy = discovery
            .for_manifest("apps/v1", "Deployment")
            .expect("served");
        assert_eq!(deploy.name, "deployments");
        assert_eq!(
            discovery
                .for_manifest("v1", "Namespace")
                .map(|r| r.namespaced),
            Ok(false)
        );
        assert_eq!(
            discovery
                .for_manifest("batch/v1", "Job")
                .map(|r| r.name.as_str()),
            Ok("jobs")
        );
        let err = discovery.for_manifest("v2", "Pod").expect_err("no v2");
        assert_eq!(
            err.to_string(),
            "no matches for kind \"Pod\" in version \"v2\""
        );
        assert!(discovery.for_manifest("apps/v1", "Pod").is_err());
        assert!(
            discovery.for_manifest("v1", "pod").is_err(),
            "kinds are exact"
        );
    }

    #[test]
    fn preferred_versions_come_first_and_the_count_is_bounded() {
        let core = ApiVersions {
            versions: vec!["v1".into()],
        };
        let groups: GroupList = serde_json::from_value(json!({"groups": [
            {"name": "batch", "versions": [{"groupVersion": "batch/v1beta1", "version": "v1beta1"},
                                           {"groupVersion": "batch/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]}))
        .expect("group list");
        let all = group_versions(core, groups).expect("few");
        let names: Vec<String> = all.iter().map(|(g, v)| format!("{g}/{v}")).collect();
        assert_eq!(names, ["/v1", "batch/v1", "batch/v1beta1"]);

        let many = ApiVersions {
            versions: vec!["v1".into(); MAX_GROUP_VERSIONS + 1],
        };
        let err = group_versions(many, GroupList { groups: vec![] }).expect_err("too many");
        assert!(err.to_string().contains("more than the 256 read"), "{err}");
    }

    #[test]
    fn only_a_named_group_the_server_answered_for_may_be_skipped() {
        let answered = |code| {
            DiscoveryError::Client(crate::client::classify(
                reqwest::StatusCode::from_u16(code).expect("code"),
                b"down",
            ))
        };
        assert!(is_partial(&answered(503)));
        assert!(is_partial(&answered(404)));
        assert!(!is_partial(&answered(401)), "a refused login fails");
        let invalid = DiscoveryError::Invalid {
            path: "/apis/x/v1".into(),
            reason: "bad".into(),
        };
        assert!(is_partial(&invalid));
        assert!(!is_partial(&DiscoveryError::TooManyGroupVersions {
            count: 300
        }));
    }

    #[test]
    fn a_list_that_is_not_an_api_resource_list_is_refused_with_its_path() {
        let bad = json!({"resources": [{"name": 7}]});
        let err = Discovery::from_lists(&[("apps", "v1", bad)]).expect_err("invalid");
        assert!(
            err.to_string()
                .starts_with("invalid discovery document from /apis/apps/v1:"),
            "{err}"
        );
    }
}
