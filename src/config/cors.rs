//! Reads `cors` (top level, and per route as `false` or a policy of its own) into [`Cors`]
//! policies, and builds the auth module's policy from `auth.allowed_origins`.

use std::sync::Arc;
use std::time::Duration;

use super::auth::parse_origin;
use super::schema::{key, Section, Ty};
use super::yaml::{Field, Problems, Value};
use super::Cors;
use crate::route::MethodSet;

#[rustfmt::skip]
pub(super) static CORS_KEYS: &Section = &Section {
    path: "cors",
    keys: &[
        key("origins", Ty::List(&Ty::Text), "Origins allowed, exactly as scheme://host[:port], or [\"*\"] for any.").required(),
        key("methods", Ty::List(&Ty::Text), "Methods a preflight may ask for (default GET, HEAD, POST)."),
        key("headers", Ty::List(&Ty::Text), "Request headers a preflight may ask for (default authorization, content-type)."),
        key("expose_headers", Ty::List(&Ty::Text), "Answer headers scripts may read besides the safelisted ones."),
        key("credentials", Ty::Bool, "Whether requests with cookies may read answers (default false); not with origins [\"*\"]."),
        key("max_age", Ty::Duration, "How long a browser may reuse a preflight's answer, at least 1s."),
    ],
};

/// Methods a policy allows when it lists none: those a plain form could send anyway.
const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST"];
/// Request headers a policy allows when it lists none: what a call with a bearer token
/// and a JSON body sends.
const DEFAULT_HEADERS: &[&str] = &["authorization", "content-type"];
/// Every method the auth module serves (the admin API included).
const AUTH_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// How long browsers may reuse a preflight of the auth module's.
const AUTH_MAX_AGE: Duration = Duration::from_secs(600);

/// What a route's `cors` key says.
pub(super) enum RouteCors {
    /// `cors: false`: no CORS on this route, whatever the top level says.
    Off,
    /// A policy of the route's own, replacing the top-level one whole.
    Own(Arc<Cors>),
}

/// Reads a `cors` mapping; `None` when it is not usable (already reported).
pub(super) fn read(f: &Field, p: &mut Problems) -> Option<Cors> {
    if !matches!(f.node.value, Value::Map(_)) {
        f.fail(
            p,
            "expected a mapping (origins, methods, headers, expose_headers, credentials, max_age)",
        );
        return None;
    }
    let c = f.fields(p, CORS_KEYS);
    let errors = p.errors.len();
    let origins = c.require(p, "origins").and_then(|f| read_origins(&f, p));
    let methods = match c.get("methods") {
        Some(f) => read_methods(&f, p),
        None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
    };
    let headers = match c.get("headers") {
        Some(f) => read_header_names(&f, p),
        None => DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
    };
    let expose_headers = c
        .get("expose_headers")
        .map(|f| read_header_names(&f, p))
        .unwrap_or_default();
    let credentials = c.or(p, "credentials", false, |f, p| f.bool(p));
    let max_age = c
        .get("max_age")
        .and_then(|f| f.parsed(p, super::parse_duration));
    if max_age.is_some_and(|d| d < Duration::from_secs(1)) {
        p.error(
            &c.spot_of("max_age"),
            "must be at least 1s (browsers count it in whole seconds)",
        );
    }
    let origins = origins?;
    let any_origin = origins.iter().any(|o| o == "*");
    if any_origin && credentials {
        p.error(
            &c.spot_of("credentials"),
            "credentials: true cannot go with origins: [\"*\"]: browsers refuse a wildcard origin on requests with cookies, so list the origins",
        );
    }
    if p.errors.len() > errors {
        return None;
    }
    let origins = if any_origin { Vec::new() } else { origins };
    Some(Cors::new(
        origins,
        methods,
        headers,
        expose_headers,
        credentials,
        max_age,
    ))
}

/// Reads a route's `cors`: `false`, or a policy of its own.
pub(super) fn read_route(f: &Field, p: &mut Problems) -> Option<RouteCors> {
    match &f.node.value {
        Value::Map(_) => read(f, p).map(|policy| RouteCors::Own(Arc::new(policy))),
        Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "false" | "False" | "FALSE") =>
        {
            Some(RouteCors::Off)
        }
        _ => {
            f.fail(
                p,
                "expected false (no CORS on this route) or a mapping (origins, methods, headers, expose_headers, credentials, max_age)",
            );
            None
        }
    }
}

/// The auth module's policy: the origins of `auth.allowed_origins`, with credentials (the
/// refresh cookie), every method it serves and the headers its clients send. `None`
/// when no origin is listed: then only same-origin pages use the auth module.
pub(super) fn for_auth(allowed_origins: &[String]) -> Option<Arc<Cors>> {
    if allowed_origins.is_empty() {
        return None;
    }
    let owned = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
    let origins = allowed_origins.iter().map(|o| serialized(o)).collect();
    Some(Arc::new(Cors::new(
        origins,
        owned(AUTH_METHODS),
        owned(DEFAULT_HEADERS),
        Vec::new(),
        true,
        Some(AUTH_MAX_AGE),
    )))
}

impl Cors {
    fn new(
        origins: Vec<String>,
        methods: Vec<String>,
        headers: Vec<String>,
        expose_headers: Vec<String>,
        credentials: bool,
        max_age: Option<Duration>,
    ) -> Cors {
        Cors {
            any_origin: origins.is_empty(),
            allow_methods: methods.join(", "),
            allow_headers: headers.join(", "),
            expose: expose_headers.join(", "),
            max_age_secs: max_age.map_or(String::new(), |d| d.as_secs().to_string()),
            origins,
            methods,
            headers,
            expose_headers,
            credentials,
            max_age,
        }
    }
}

/// `"*"` alone, or origins, each as a browser serializes it in `Origin`.
fn read_origins(f: &Field, p: &mut Problems) -> Option<Vec<String>> {
    let items = f.strings(p)?;
    if items.is_empty() {
        f.fail(p, "must list at least one origin (or \"*\" for any)");
        return None;
    }
    let mut origins: Vec<String> = Vec::new();
    let mut usable = true;
    for (item, text) in &items {
        if text == "*" {
            if items.len() > 1 {
                item.fail(p, "\"*\" (any origin) must be the only entry");
                usable = false;
            }
            origins.push(text.clone());
            continue;
        }
        match parse_origin(text) {
            Ok(origin) => {
                let origin = serialized(&origin);
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            Err(e) => {
                item.fail(p, e);
                usable = false;
            }
        }
    }
    usable.then_some(origins)
}

/// An origin as browsers send it: without the scheme's default port.
fn serialized(origin: &str) -> String {
    let default_port = match origin.split_once("://") {
        Some(("https", _)) => ":443",
        _ => ":80",
    };
    origin
        .strip_suffix(default_port)
        .unwrap_or(origin)
        .to_string()
}

/// Method names as `routes[].methods` takes them, each reported at its own item.
fn read_methods(f: &Field, p: &mut Problems) -> Vec<String> {
    let Some(items) = f.strings(p) else {
        return Vec::new();
    };
    if items.is_empty() {
        f.fail(p, "must list at least one method");
    }
    let mut methods: Vec<String> = Vec::new();
    for (item, name) in items {
        match MethodSet::parse_list([name.as_str()]) {
            Ok(_) if !methods.contains(&name) => methods.push(name),
            Ok(_) => {}
            Err(e) => item.fail(p, e),
        }
    }
    methods
}

/// Header names, lower-cased; `*` is refused, since it means nothing with credentials.
fn read_header_names(f: &Field, p: &mut Problems) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (item, name) in f.strings(p).unwrap_or_default() {
        if name == "*" {
            item.fail(p, "list the header names: \"*\" is not supported");
            continue;
        }
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) if !names.iter().any(|n| n == header.as_str()) => {
                names.push(header.as_str().to_string())
            }
            Ok(_) => {}
            Err(_) => item.fail(p, format!("invalid header name \"{name}\"")),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Cors, Loaded};
    use std::path::Path;

    /// A file whose top-level `cors` is `top` and whose routes are the auth module's,
    /// then `routes` (one per line, as flow mappings).
    fn file(auth: &str, top: &str, routes: &[&str]) -> String {
        let mut text = format!(
            "upstreams:\n  app:\n    addrs: [127.0.0.1:3000]\nroles: [viewer]\nauth:\n  issuer: https://gw.test\n  audience: api\n{auth}{top}routes:\n  - {{ path: /api/auth/**, auth: none }}\n"
        );
        for route in routes {
            text.push_str(&format!("  - {route}\n"));
        }
        text
    }

    fn load(text: &str) -> Result<Loaded, Vec<String>> {
        parse(Path::new("gateway.yaml"), text, &|_| None)
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    fn policies(text: &str) -> Vec<Option<Cors>> {
        let loaded = load(text).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        let routes = loaded.config.routes;
        routes.iter().map(|r| r.cors.as_deref().cloned()).collect()
    }

    #[test]
    fn routes_inherit_the_top_level_policy_unless_they_have_their_own_or_say_false() {
        let text = file(
            "  allowed_origins: [\"HTTPS://App.test:443\"]\n",
            "cors: { origins: [\"https://a.test:443\", \"http://b.test:8080\"], expose_headers: [X-Total], max_age: 90s }\n",
            &[
                "{ path: /a, upstream: app }",
                "{ path: /b, upstream: app, cors: { origins: [\"*\"], methods: [PUT], headers: [X-Trace] } }",
                "{ path: /c, upstream: app, cors: false }",
            ],
        );
        let found = policies(&text);
        let auth = found[0].as_ref().expect("the auth module's policy");
        assert_eq!(auth.origins, ["https://app.test"]);
        assert!(auth.credentials);
        assert_eq!(auth.allow_methods, "GET, HEAD, POST, PUT, PATCH, DELETE");
        assert_eq!(auth.allow_headers, "authorization, content-type");
        let top = found[1].as_ref().expect("the top-level policy");
        assert_eq!(top.origins, ["https://a.test", "http://b.test:8080"]);
        assert!(!top.any_origin && !top.credentials);
        assert_eq!(top.allow_methods, "GET, HEAD, POST");
        assert_eq!(top.expose, "x-total");
        assert_eq!(top.max_age_secs, "90");
        let own = found[2].as_ref().expect("the route's own policy");
        assert!(own.any_origin && own.origins.is_empty());
        assert_eq!(
            (own.allow_methods.as_str(), own.allow_headers.as_str()),
            ("PUT", "x-trace")
        );
        assert_eq!(own.max_age_secs, "");
        assert_eq!(found[3], None);
    }

    #[test]
    fn without_allowed_origins_or_a_top_level_policy_nothing_has_cors() {
        let found = policies(&file("", "", &["{ path: /a, upstream: app }"]));
        assert_eq!(found, [None, None]);
    }

    #[test]
    fn each_mistake_is_reported_at_its_value() {
        let cases = [
            (
                file("", "cors: { origins: [\"*\"], credentials: true }\n", &[]),
                "gateway.yaml:8:38: cors.credentials: credentials: true cannot go with origins: [\"*\"]: browsers refuse a wildcard origin on requests with cookies, so list the origins",
            ),
            (
                file("", "cors: { origins: [\"*\", \"https://a.test\"] }\n", &[]),
                "gateway.yaml:8:19: cors.origins[0]: \"*\" (any origin) must be the only entry",
            ),
            (
                file("", "cors: { origins: [https://a.test/app] }\n", &[]),
                "gateway.yaml:8:19: cors.origins[0]: invalid origin \"https://a.test/app\": an origin has no path, like https://app.example.com",
            ),
            (
                file("", "cors: { origins: [] }\n", &[]),
                "gateway.yaml:8:18: cors.origins: must list at least one origin (or \"*\" for any)",
            ),
            (
                file("", "cors: { methods: [GET] }\n", &[]),
                "gateway.yaml:8:7: cors.origins: missing required key",
            ),
            (
                file("", "cors: { origins: [\"*\"], headers: [\"*\"] }\n", &[]),
                "gateway.yaml:8:35: cors.headers[0]: list the header names: \"*\" is not supported",
            ),
            (
                file("", "cors: { origins: [\"*\"], max_age: 500ms }\n", &[]),
                "gateway.yaml:8:34: cors.max_age: must be at least 1s (browsers count it in whole seconds)",
            ),
            (
                file("", "cors: true\n", &[]),
                "gateway.yaml:8:7: cors: expected a mapping (origins, methods, headers, expose_headers, credentials, max_age)",
            ),
            (
                file("", "", &["{ path: /a, upstream: app, cors: yes }"]),
                "gateway.yaml:10:38: routes[1].cors: expected false (no CORS on this route) or a mapping (origins, methods, headers, expose_headers, credentials, max_age)",
            ),
            (
                file("", "", &["{ path: /api/auth/x, cors: { origins: [\"*\"] } }"]),
                "gateway.yaml:10:32: routes[1].cors: a route of the auth module takes its CORS policy from auth.allowed_origins (only cors: false is allowed here)",
            ),
        ];
        let mut missing = Vec::new();
        for (text, expected) in cases {
            let errors = load(&text).err().unwrap_or_default();
            if !errors.iter().any(|e| e == expected) {
                missing.push(format!("{expected}\nnot in:\n{}", errors.join("\n")));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n\n"));
    }
}
