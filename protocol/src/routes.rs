//! HTTP routes as the agents see them (the ingress controller's input): every listener the
//! agents serve, its virtual hosts, and per host the ordered routes with their weighted
//! backends and ingress-nginx style canaries.
//!
//! The server compiles Ingresses (and their `nginx.ingress.kubernetes.io/canary*`
//! annotations) into one retained [`RouteTable`] on [`crate::topic::ROUTES`]; every agent
//! serves it and picks a backend per request with [`RouteTable::select`], then an endpoint
//! of that backend's Service from the [`crate::service::ServiceTable`].

use serde::{Deserialize, Serialize};

/// The port [`Listener::port`] names for the agent's own ingress port (`--ingress-port`,
/// 80 by default): Ingresses name no port.
pub const INGRESS_PORT: u16 = 0;

/// Every route the agents serve, at the server's revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// The store revision the table was built at (newer tables replace older ones).
    pub revision: u64,
    /// One per port served.
    pub listeners: Vec<Listener>,
    /// Which listeners terminate TLS and which hosts redirect plain HTTP to HTTPS.
    /// Appended after the first release ([`crate::tail`]): older agents ignore it (and
    /// serve no HTTPS), newer agents read an older server's table as having none. Keep it
    /// the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub tls: TlsRoutes,
    /// The `canary-by-header-pattern`s of the Ingress canaries. Appended after `tls`
    /// ([`crate::tail`]): older agents ignore it (such a canary then goes by its header's
    /// `always`/`never`), newer agents read an older table as having none. Keep it last.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub canary_patterns: Vec<CanaryPattern>,
}

/// ingress-nginx's `canary-by-header-pattern` of the canary of one Ingress host and path
/// (one canary per host and path): a regular expression the header's value must match
/// somewhere (as `ngx.re.match` does) to send the request to the canary, consulted when
/// the canary has no `canary-by-header-value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryPattern {
    /// The route's virtual host (on [`INGRESS_PORT`]).
    pub hostname: String,
    /// The route's path.
    pub path: PathMatch,
    /// The regular expression (checked by the server with `regex-lite`'s syntax).
    pub pattern: String,
}

/// The TLS side of the route table (no keys: those go only to the nodes that serve
/// ingress traffic, see [`crate::ingress_tls`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRoutes {
    /// The Gateway listener ports that terminate TLS (`protocol: HTTPS`).
    pub https_ports: Vec<u16>,
    /// The lower-case Ingress hosts with TLS (`spec.tls[].hosts`; `*.` wildcards): a plain
    /// HTTP request for one is answered with a 308 to HTTPS (ingress-nginx's
    /// `ssl-redirect`) unless its route's source is in [`Self::no_redirect`].
    pub redirect_hosts: Vec<String>,
    /// The route sources (`Ingress default/web`) that keep plain HTTP
    /// (`nginx.ingress.kubernetes.io/ssl-redirect: "false"`).
    pub no_redirect: Vec<String>,
}

impl TlsRoutes {
    /// Whether a plain HTTP request for `host` (with or without a port) that `route`
    /// takes is redirected to HTTPS.
    pub fn redirects(&self, host: &str, route: &Route) -> bool {
        let host = strip_port(host).to_ascii_lowercase();
        let wildcard = host
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        let has_tls = self
            .redirect_hosts
            .iter()
            .any(|h| *h == host || Some(h) == wildcard.as_ref());
        has_tls && !self.no_redirect.contains(&route.source)
    }
}

/// One port the agents serve HTTP on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The port, or [`INGRESS_PORT`].
    pub port: u16,
    /// Its virtual hosts.
    pub hosts: Vec<VirtualHost>,
}

/// The routes of one host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHost {
    /// Lower-case host name; `*.example.com` matches one label in front of `example.com`;
    /// empty matches any host that no other virtual host of the listener names.
    pub hostname: String,
    /// In precedence order: the first that matches a request takes it.
    pub routes: Vec<Route>,
}

/// A match and where it sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The path it matches.
    pub path: PathMatch,
    /// Headers a request must carry too (all of them).
    pub headers: Vec<HeaderMatch>,
    /// Where requests go, in proportion to their weights.
    pub backends: Vec<Backend>,
    /// An ingress-nginx canary that may take a request before the weights are drawn.
    pub canary: Option<Canary>,
    /// The object it was compiled from (`Ingress default/web`), for logs.
    pub source: String,
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Whole path elements: `/a` matches `/a`, `/a/` and `/a/b`, not `/ab`.
    Prefix(String),
}

/// A header that must have one exact value (names are lower-case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    /// The header's lower-case name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A Service port that takes a share of the requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The Service port (its number; names are resolved by the server).
    pub port: u16,
    /// Its share: weight / the sum of the route's weights (0: none).
    pub weight: u32,
}

/// An ingress-nginx canary: the second Ingress of one host and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The canary's backend (its weight is not used).
    pub backend: Backend,
    /// `canary-by-header` and what it must say.
    pub header: Option<CanaryHeader>,
    /// `canary-by-cookie`: the cookie whose value `always` or `never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`.
    pub weight: u32,
    /// `canary-weight-total`, as ingress-nginx honours it (only above 100; else 100).
    pub weight_total: u32,
}

/// `canary-by-header`: the header and the value that sends a request to the canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryHeader {
    /// The header's lower-case name.
    pub name: String,
    /// `canary-by-header-value`; without one, `always` and `never` decide.
    pub value: Option<String>,
}

/// What a request is, for routing.
pub struct Request<'a> {
    /// The listener's port (or [`INGRESS_PORT`]).
    pub port: u16,
    /// The `Host` header (or URI authority), with or without its port.
    pub host: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// Looks up a header by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    /// Looks up a cookie by name.
    pub cookie: &'a dyn Fn(&str) -> Option<&'a str>,
    /// Whether a header value matches a `canary-by-header-pattern` (pattern, value); a
    /// pattern that does not compile matches nothing.
    pub matches: &'a dyn Fn(&str, &str) -> bool,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<'a> {
    /// To this backend, by this route.
    Backend(&'a Backend, &'a Route),
    /// No route matches (404).
    NoRoute,
    /// The matching route gives every backend weight 0 (500, as the Gateway API asks).
    NoBackend(&'a Route),
}

impl RouteTable {
    /// The backend for `request`; `roll(n)` draws uniformly from `0..n` (n > 0).
    pub fn select<'a>(
        &'a self,
        request: &Request<'_>,
        roll: &mut dyn FnMut(u32) -> u32,
    ) -> Selection<'a> {
        let Some(listener) = self.listeners.iter().find(|l| l.port == request.port) else {
            return Selection::NoRoute;
        };
        let Some(host) = listener.host(request.host) else {
            return Selection::NoRoute;
        };
        let Some(route) = host.routes.iter().find(|route| route.matches(request)) else {
            return Selection::NoRoute;
        };
        let pattern = match listener.port {
            INGRESS_PORT => self
                .canary_patterns
                .iter()
                .find(|p| p.hostname == host.hostname && p.path == route.path)
                .map(|p| p.pattern.as_str()),
            _ => None,
        };
        if let Some(canary) = &route.canary
            && canary.takes(request, pattern, roll)
        {
            return Selection::Backend(&canary.backend, route);
        }
        match route.draw(roll) {
            Some(backend) => Selection::Backend(backend, route),
            None => Selection::NoBackend(route),
        }
    }
}

impl Listener {
    /// The virtual host for `host`: its exact name, else a wildcard, else the catch-all.
    fn host(&self, host: &str) -> Option<&VirtualHost> {
        let host = strip_port(host).to_ascii_lowercase();
        let wildcard = host
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        self.hosts
            .iter()
            .find(|h| h.hostname == host)
            .or_else(|| {
                let wildcard = wildcard.as_deref()?;
                self.hosts.iter().find(|h| h.hostname == wildcard)
            })
            .or_else(|| self.hosts.iter().find(|h| h.hostname.is_empty()))
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

impl Route {
    fn matches(&self, request: &Request<'_>) -> bool {
        self.path.matches(request.path)
            && self
                .headers
                .iter()
                .all(|h| (request.header)(&h.name) == Some(h.value.as_str()))
    }

    /// A backend drawn by weight; `None` when every weight is 0.
    fn draw(&self, roll: &mut dyn FnMut(u32) -> u32) -> Option<&Backend> {
        let total: u32 = self.backends.iter().map(|b| b.weight).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = roll(total);
        self.backends.iter().find(|backend| {
            if ticket < backend.weight {
                return true;
            }
            ticket -= backend.weight;
            false
        })
    }
}

impl PathMatch {
    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                match path.strip_prefix(prefix) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }
}

impl Canary {
    /// ingress-nginx's order: the header, then the cookie, then the weight.
    fn takes(
        &self,
        request: &Request<'_>,
        pattern: Option<&str>,
        roll: &mut dyn FnMut(u32) -> u32,
    ) -> bool {
        if let Some(decided) = self.by_header(request, pattern) {
            return decided;
        }
        let cookie = self.cookie.as_deref().and_then(|c| (request.cookie)(c));
        match cookie {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
        self.weight > 0 && roll(self.weight_total.max(1)) < self.weight
    }

    /// The header's say: its value (exact), else its pattern, else `always`/`never`; a
    /// value or pattern that does not match leaves the decision to the cookie and weight.
    fn by_header(&self, request: &Request<'_>, pattern: Option<&str>) -> Option<bool> {
        let rule = self.header.as_ref()?;
        let value = (request.header)(&rule.name)?;
        match (&rule.value, pattern) {
            (Some(wanted), _) => (value == wanted).then_some(true),
            (None, Some(pattern)) => (request.matches)(pattern, value).then_some(true),
            (None, None) => match value {
                "always" => Some(true),
                "never" => Some(false),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn backend(service: &str, weight: u32) -> Backend {
        Backend {
            namespace: "default".into(),
            service: service.into(),
            port: 80,
            weight,
        }
    }

    fn route(path: PathMatch, backends: Vec<Backend>) -> Route {
        Route {
            path,
            headers: vec![],
            backends,
            canary: None,
            source: "Ingress default/web".into(),
        }
    }

    fn table(hosts: Vec<VirtualHost>) -> RouteTable {
        RouteTable {
            revision: 1,
            listeners: vec![Listener {
                port: INGRESS_PORT,
                hosts,
            }],
            tls: TlsRoutes::default(),
            canary_patterns: vec![],
        }
    }

    fn host(hostname: &str, routes: Vec<Route>) -> VirtualHost {
        VirtualHost {
            hostname: hostname.into(),
            routes,
        }
    }

    /// The service a request for `host` and `path` with `headers` goes to.
    fn pick(
        table: &RouteTable,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        roll: u32,
    ) -> Option<String> {
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let cookie = |name: &str| {
            let cookies = headers.iter().find(|(n, _)| *n == "cookie")?.1;
            cookies
                .split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        let request = Request {
            port: INGRESS_PORT,
            host,
            path,
            header: &header,
            cookie: &cookie,
            // A test stand-in for the agent's regular expressions: `^` anchors, else a
            // substring.
            matches: &|pattern, value| match pattern.strip_prefix('^') {
                Some(prefix) => value.starts_with(prefix),
                None => value.contains(pattern),
            },
        };
        match table.select(&request, &mut |n| roll.min(n - 1)) {
            Selection::Backend(backend, _) => Some(backend.service.clone()),
            Selection::NoRoute => None,
            Selection::NoBackend(_) => Some("500".into()),
        }
    }

    #[test]
    fn prefixes_match_whole_path_elements() {
        let prefix = PathMatch::Prefix("/api".into());
        assert!(prefix.matches("/api"));
        assert!(prefix.matches("/api/"));
        assert!(prefix.matches("/api/v1"));
        assert!(!prefix.matches("/apis"));
        assert!(PathMatch::Prefix("/".into()).matches("/anything"));
        assert!(PathMatch::Prefix("/api/".into()).matches("/api"));
        assert!(!PathMatch::Exact("/api".into()).matches("/api/"));
    }

    #[test]
    fn hosts_match_exactly_then_by_wildcard_then_the_catch_all() {
        let all = |svc: &str| vec![route(PathMatch::Prefix("/".into()), vec![backend(svc, 1)])];
        let t = table(vec![
            host("a.example.com", all("exact")),
            host("*.example.com", all("wild")),
            host("", all("any")),
        ]);
        assert_eq!(
            pick(&t, "A.example.com:8080", "/", &[], 0).unwrap(),
            "exact"
        );
        assert_eq!(pick(&t, "b.example.com", "/", &[], 0).unwrap(), "wild");
        assert_eq!(pick(&t, "b.c.example.com", "/", &[], 0).unwrap(), "any");
        assert_eq!(pick(&t, "10.0.0.1:80", "/", &[], 0).unwrap(), "any");
        let only_named = table(vec![host("a.example.com", all("exact"))]);
        assert_eq!(pick(&only_named, "other", "/", &[], 0), None);
    }

    #[test]
    fn the_first_route_that_matches_takes_the_request() {
        let mut by_header = route(PathMatch::Prefix("/".into()), vec![backend("v2", 1)]);
        by_header.headers.push(HeaderMatch {
            name: "traffic".into(),
            value: "test".into(),
        });
        let t = table(vec![host(
            "",
            vec![
                route(PathMatch::Exact("/login".into()), vec![backend("login", 1)]),
                by_header,
                route(PathMatch::Prefix("/".into()), vec![backend("v1", 1)]),
            ],
        )]);
        assert_eq!(pick(&t, "h", "/login", &[], 0).unwrap(), "login");
        assert_eq!(
            pick(&t, "h", "/x", &[("traffic", "test")], 0).unwrap(),
            "v2"
        );
        assert_eq!(
            pick(&t, "h", "/x", &[("traffic", "other")], 0).unwrap(),
            "v1"
        );
    }

    #[test]
    fn weights_split_in_proportion_and_zero_takes_nothing() {
        let t = table(vec![host(
            "",
            vec![route(
                PathMatch::Prefix("/".into()),
                vec![backend("a", 70), backend("b", 0), backend("c", 30)],
            )],
        )]);
        let picks: Vec<String> = (0..100)
            .map(|r| pick(&t, "h", "/", &[], r).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|s| *s == "a").count(), 70);
        assert_eq!(picks.iter().filter(|s| *s == "c").count(), 30);
        let none = table(vec![host(
            "",
            vec![route(PathMatch::Prefix("/".into()), vec![backend("a", 0)])],
        )]);
        assert_eq!(pick(&none, "h", "/", &[], 0).unwrap(), "500");
    }

    fn canary(header: Option<CanaryHeader>, cookie: Option<&str>, weight: u32) -> RouteTable {
        let mut main = route(PathMatch::Prefix("/".into()), vec![backend("stable", 1)]);
        main.canary = Some(Canary {
            backend: backend("canary", 1),
            header,
            cookie: cookie.map(Into::into),
            weight,
            weight_total: 100,
        });
        table(vec![host("", vec![main])])
    }

    #[test]
    fn a_canary_goes_by_header_then_cookie_then_weight() {
        let t = canary(
            Some(CanaryHeader {
                name: "x-canary".into(),
                value: None,
            }),
            Some("canary"),
            20,
        );
        let go = |headers: &[(&str, &str)], roll| pick(&t, "h", "/", headers, roll).unwrap();
        assert_eq!(go(&[("x-canary", "always")], 99), "canary");
        assert_eq!(go(&[("x-canary", "never")], 0), "stable");
        assert_eq!(
            go(&[("x-canary", "never"), ("cookie", "canary=always")], 0),
            "stable"
        );
        assert_eq!(
            go(&[("x-canary", "maybe"), ("cookie", "canary=always")], 99),
            "canary"
        );
        assert_eq!(go(&[("cookie", "a=b; canary=never")], 0), "stable");
        assert_eq!(go(&[], 19), "canary");
        assert_eq!(go(&[], 20), "stable");
    }

    #[test]
    fn a_canary_header_with_a_value_takes_only_that_value() {
        let t = canary(
            Some(CanaryHeader {
                name: "region".into(),
                value: Some("eu".into()),
            }),
            None,
            0,
        );
        assert_eq!(
            pick(&t, "h", "/", &[("region", "eu")], 0).unwrap(),
            "canary"
        );
        assert_eq!(
            pick(&t, "h", "/", &[("region", "always")], 0).unwrap(),
            "stable"
        );
        assert_eq!(pick(&t, "h", "/", &[], 0).unwrap(), "stable");
    }

    #[test]
    fn hosts_with_tls_redirect_unless_their_ingress_opts_out() {
        let tls = TlsRoutes {
            https_ports: vec![],
            redirect_hosts: vec!["shop.example.com".into(), "*.example.org".into()],
            no_redirect: vec!["Ingress default/plain".into()],
        };
        let web = route(PathMatch::Prefix("/".into()), vec![backend("web", 1)]);
        let mut plain = web.clone();
        plain.source = "Ingress default/plain".into();
        assert!(tls.redirects("Shop.example.com:8080", &web));
        assert!(tls.redirects("a.example.org", &web));
        assert!(!tls.redirects("a.b.example.org", &web));
        assert!(!tls.redirects("other.example.com", &web));
        assert!(!tls.redirects("shop.example.com", &plain));
    }

    #[test]
    fn a_table_from_before_tls_reads_as_having_none() {
        #[derive(Serialize)]
        struct Before {
            revision: u64,
            listeners: Vec<Listener>,
        }
        let bytes = postcard::to_stdvec(&Before {
            revision: 3,
            listeners: vec![],
        })
        .unwrap();
        let table: RouteTable = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(table.revision, 3);
        assert_eq!(table.tls, TlsRoutes::default());
    }

    #[test]
    fn a_canary_header_pattern_comes_after_its_value_and_falls_through_when_unmatched() {
        let mut t = canary(
            Some(CanaryHeader {
                name: "user".into(),
                value: None,
            }),
            Some("canary"),
            0,
        );
        t.canary_patterns.push(CanaryPattern {
            hostname: String::new(),
            path: PathMatch::Prefix("/".into()),
            pattern: "^beta-".into(),
        });
        let go = |t: &RouteTable, headers: &[(&str, &str)]| pick(t, "h", "/", headers, 0).unwrap();
        assert_eq!(go(&t, &[("user", "beta-42")]), "canary");
        assert_eq!(go(&t, &[("user", "prod-1")]), "stable");
        assert_eq!(
            go(&t, &[("user", "always")]),
            "stable",
            "with a pattern, always is just a value"
        );
        assert_eq!(
            go(&t, &[("user", "prod-1"), ("cookie", "canary=always")]),
            "canary",
            "an unmatched pattern falls through to the cookie"
        );
        // A header value, when set, wins over the pattern.
        t.listeners[0].hosts[0].routes[0]
            .canary
            .as_mut()
            .unwrap()
            .header
            .as_mut()
            .unwrap()
            .value = Some("exact".into());
        assert_eq!(go(&t, &[("user", "beta-42")]), "stable");
        assert_eq!(go(&t, &[("user", "exact")]), "canary");
    }
}
