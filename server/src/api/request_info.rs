//! What an HTTP request asks to do, as the authorizer sees it: Kubernetes' `RequestInfo`
//! (`k8s.io/apiserver/pkg/endpoints/request`), pure.
//!
//! `/api/v1/...` and `/apis/{group}/{version}/...` with at least a resource are resource
//! requests: `namespaces/{ns}/` names the namespace (except `namespaces/{name}/status` and
//! `/finalize`, subresources of the Namespace), then resource, name and subresource. The
//! verb comes from the method (`POST` create, `GET` get, `PUT` update, `PATCH` patch,
//! `DELETE` delete); a `GET` without a name is `list`, or `watch` with `watch=true`, and a
//! `DELETE` without a name is `deletecollection`. A list or watch with the field selector
//! `metadata.name=X` names X. Everything else (`/api`, `/apis/apps/v1`, `/version`,
//! `/openapi/v3`) is a non-resource request whose verb is the lower-case method.

use axum::http::Method;

use super::apply::percent_decode;
use super::auth::Attributes;

/// The attributes of a request for `path` with `query`.
pub fn attributes(method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    let non_resource = Attributes {
        verb: method.as_str().to_lowercase(),
        path: path.to_owned(),
        ..Attributes::default()
    };
    let (group, rest) = match parts.first().map(String::as_str) {
        Some("api") if parts.len() >= 3 => ("", &parts[1..]),
        Some("apis") if parts.len() >= 4 => (parts[1].as_str(), &parts[2..]),
        _ => return non_resource,
    };
    let mut attributes = Attributes {
        resource_request: true,
        verb: resource_verb(method).to_owned(),
        group: group.to_owned(),
        path: path.to_owned(),
        ..Attributes::default()
    };
    let mut rest = &rest[1..]; // the version
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() > 1 {
        attributes.namespace = rest[1].clone();
        let namespace_subresource =
            matches!(rest.get(2).map(String::as_str), Some("status" | "finalize"));
        if rest.len() > 2 && !namespace_subresource {
            rest = &rest[2..];
        }
    }
    let at = |i: usize| rest.get(i).cloned().unwrap_or_default();
    attributes.resource = at(0);
    attributes.name = at(1);
    attributes.subresource = at(2);
    if attributes.name.is_empty() {
        list_verb(&mut attributes, query);
    }
    attributes
}

fn resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// A collection request: `list`/`watch` (naming the object a `metadata.name` field selector
/// asks for) or `deletecollection`.
fn list_verb(attributes: &mut Attributes, query: Option<&str>) {
    let params: Vec<(&str, String)> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key, percent_decode(value)))
        .collect();
    match attributes.verb.as_str() {
        "get" => {
            let watch = params
                .iter()
                .any(|(k, v)| *k == "watch" && matches!(v.as_str(), "true" | "1"));
            attributes.verb = if watch { "watch" } else { "list" }.to_owned();
            let selected = params.iter().find(|(k, _)| *k == "fieldSelector");
            if let Some(name) = selected.and_then(|(_, s)| exact_name(s)) {
                attributes.name = name.to_owned();
            }
        }
        "delete" => attributes.verb = "deletecollection".to_owned(),
        _ => {}
    }
}

/// The name a field selector requires exactly (`metadata.name=web` or `metadata.name==web`,
/// alone).
fn exact_name(selector: &str) -> Option<&str> {
    let value = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))?;
    (!value.is_empty() && !value.contains([',', '/', '%'])).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, path: &str, query: Option<&str>) -> Attributes {
        attributes(&method, path, query)
    }

    #[test]
    fn a_namespaced_item_names_everything() {
        let a = of(Method::DELETE, "/api/v1/namespaces/default/pods/web", None);
        assert!(a.resource_request);
        assert_eq!(
            (a.verb.as_str(), a.group.as_str(), a.resource.as_str()),
            ("delete", "", "pods")
        );
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("default", "web"));
        assert_eq!(a.subresource, "");
    }

    #[test]
    fn collections_are_listed_watched_or_deleted() {
        let list = of(Method::GET, "/apis/apps/v1/namespaces/a/deployments", None);
        assert_eq!((list.verb.as_str(), list.group.as_str()), ("list", "apps"));
        let watch = of(Method::GET, "/api/v1/pods", Some("watch=true&limit=5"));
        assert_eq!(
            (watch.verb.as_str(), watch.namespace.as_str()),
            ("watch", "")
        );
        let all = of(Method::DELETE, "/api/v1/namespaces/a/pods", None);
        assert_eq!(all.verb, "deletecollection");
        let create = of(Method::POST, "/api/v1/namespaces/a/pods", None);
        assert_eq!(create.verb, "create");
    }

    #[test]
    fn a_name_field_selector_names_the_object() {
        let a = of(
            Method::GET,
            "/api/v1/nodes",
            Some("fieldSelector=metadata.name%3Dpi-1&watch=1"),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "pi-1"));
        let b = of(
            Method::GET,
            "/api/v1/pods",
            Some("fieldSelector=metadata.name%3Da%2Cspec.nodeName%3Db"),
        );
        assert_eq!(b.name, "");
    }

    #[test]
    fn subresources_and_namespaces_are_told_apart() {
        let log = of(Method::GET, "/api/v1/namespaces/a/pods/web/log", None);
        assert_eq!(
            (
                log.verb.as_str(),
                log.resource.as_str(),
                log.subresource.as_str()
            ),
            ("get", "pods", "log")
        );
        let ns = of(Method::GET, "/api/v1/namespaces/a", None);
        assert_eq!(
            (
                ns.resource.as_str(),
                ns.name.as_str(),
                ns.namespace.as_str()
            ),
            ("namespaces", "a", "a")
        );
        let status = of(Method::PUT, "/api/v1/namespaces/a/status", None);
        assert_eq!(
            (
                status.resource.as_str(),
                status.name.as_str(),
                status.subresource.as_str()
            ),
            ("namespaces", "a", "status")
        );
        let namespaces = of(Method::GET, "/api/v1/namespaces", None);
        assert_eq!(
            (namespaces.verb.as_str(), namespaces.namespace.as_str()),
            ("list", "")
        );
        let token = of(
            Method::POST,
            "/api/v1/namespaces/a/serviceaccounts/default/token",
            None,
        );
        assert_eq!(
            (
                token.verb.as_str(),
                token.resource.as_str(),
                token.subresource.as_str()
            ),
            ("create", "serviceaccounts", "token")
        );
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource_requests() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
        ] {
            let a = of(Method::GET, path, None);
            assert!(!a.resource_request, "{path}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", path));
        }
        let module = of(
            Method::PUT,
            "/apis/wasmfleet.dev/v1/modules/hello/tags/v1",
            None,
        );
        assert!(module.resource_request);
        assert_eq!(
            (
                module.verb.as_str(),
                module.group.as_str(),
                module.resource.as_str()
            ),
            ("update", "wasmfleet.dev", "modules")
        );
        assert_eq!(
            (module.name.as_str(), module.subresource.as_str()),
            ("hello", "tags")
        );
    }
}
