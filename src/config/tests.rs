//! Loader behaviour end to end: YAML text in, `Config` or every error out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const SPEC_EXAMPLE: &str = r#"listen: 0.0.0.0:8080
admin_listen: 127.0.0.1:9090        # /metrics, /healthz, /readyz
store: sqlite://data/portcullis.db  # or postgres://user@host/db
tls:                                 # optional: also terminate HTTPS
  listen: 0.0.0.0:8443
  cert: certs/gateway.pem
  key: certs/gateway.key
upstreams:
  app:
    addrs: [127.0.0.1:3000]          # one or more host:port
    connect_timeout: 2s
    read_timeout: 30s
    tls: false
auth:
  issuer: https://gateway.example.com
  audience: api
  algorithm: HS256                   # HS256 | EdDSA | ES256 | RS256
  key_id: hs256
  access_ttl: 15m
  refresh_ttl: 7d
  prefix: /api/auth
  signup: { enabled: true, default_role: viewer }
  refresh_grace: 10s
  allowed_origins: [https://app.example.com]
  rate_limits: { login: 10/min, login_per_email: 5/min, refresh: 60/min, signup: 10/min }
roles: [viewer, creator, admin]
routes:
  - { path: /api/auth/**, auth: none }            # no upstream: served by the embedded auth module
  - { path: /health, upstream: app, auth: none }
  - { path: /api/admin/**, upstream: app, roles: [admin] }
  - { path: /api/upload, methods: [POST], upstream: app, roles: [creator, admin] }
  - { path: "/api/users/{user}/**", upstream: app, owner: user }
  - { path: "/api/workspaces/{ws}/**", upstream: app, workspace: ws }
  - { path: /api/reports/**, upstream: app, plans: [pro, enterprise], rate_limit: 100/min }
"#;

/// `auth` is last, so `auth` keys appended to it start at line 11.
const AUTH_LAST: &str = "upstreams:\n  app:\n    addrs: [127.0.0.1:3000]\nroles: [viewer, creator, admin]\nroutes:\n  - { path: /api/auth/**, auth: none }\n  - { path: /api/x, upstream: app }\nauth:\n  issuer: https://gw.test\n  audience: api\n";

/// `routes` is last, so routes appended to it start at line 11.
const ROUTES_LAST: &str = "upstreams:\n  app:\n    addrs: [127.0.0.1:3000]\nroles: [viewer, creator, admin]\nauth:\n  issuer: https://gw.test\n  audience: api\nroutes:\n  - { path: /api/auth/**, auth: none }\n  - { path: /api/x, upstream: app }\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<String>> {
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    parse(Path::new("gateway.yaml"), text, &env)
        .map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn valid(text: &str) -> Loaded {
    parse_with(text, &[]).unwrap_or_else(|e| panic!("unexpected errors:\n{}", e.join("\n")))
}

/// The top-level keys as the unknown-key message lists them.
fn top_keys() -> String {
    sections::TOP_KEYS.names().collect::<Vec<_>>().join(", ")
}

fn errors(text: &str) -> Vec<String> {
    match parse_with(text, &[]) {
        Ok(loaded) => panic!("expected errors, got {:?}", loaded.config),
        Err(e) => e,
    }
}

#[test]
fn the_spec_example_parses_with_the_right_values() {
    let loaded = parse(Path::new("/srv/gw/gateway.yaml"), SPEC_EXAMPLE, &no_env).unwrap();
    let c = &loaded.config;
    assert_eq!(c.path, PathBuf::from("/srv/gw/gateway.yaml"));
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.store, "sqlite:///srv/gw/data/portcullis.db");
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(tls.cert, PathBuf::from("/srv/gw/certs/gateway.pem"));
    assert_eq!(tls.key, PathBuf::from("/srv/gw/certs/gateway.key"));
    let app = &c.upstreams[0];
    assert_eq!(
        (app.name.as_str(), app.addrs.clone()),
        ("app", vec!["127.0.0.1:3000".to_string()])
    );
    assert_eq!(
        (app.connect_timeout, app.read_timeout, app.tls),
        (Duration::from_secs(2), Duration::from_secs(30), false)
    );
    assert_eq!(app.sni, "127.0.0.1");
    let a = &c.auth;
    assert_eq!(
        (
            a.issuer.as_str(),
            a.audience.as_str(),
            a.algorithm,
            a.key_id.as_str()
        ),
        (
            "https://gateway.example.com",
            "api",
            Algorithm::HS256,
            "hs256"
        )
    );
    assert_eq!(
        (a.access_ttl, a.refresh_ttl),
        (Duration::from_secs(900), Duration::from_secs(7 * 86_400))
    );
    assert_eq!(
        (
            a.prefix.as_str(),
            a.signup.enabled,
            a.signup.default_role.as_str()
        ),
        ("/api/auth", true, "viewer")
    );
    assert_eq!(a.refresh_grace, Duration::from_secs(10));
    assert_eq!(a.allowed_origins, ["https://app.example.com"]);
    let per_min = |count| Rate {
        count,
        per: Duration::from_secs(60),
    };
    assert_eq!(a.rate_limits.login, per_min(10));
    assert_eq!(a.rate_limits.login_per_email, per_min(5));
    assert_eq!(a.rate_limits.refresh, per_min(60));
    assert_eq!(a.rate_limits.signup, per_min(10));
    assert_eq!(c.roles, ["viewer", "creator", "admin"]);
    assert_eq!(c.plans, None);
    assert_eq!(c.routes.len(), 7);
    let r = &c.routes;
    assert_eq!(
        (r[0].upstream, r[0].auth, r[0].line),
        (None, AuthMode::None, 28)
    );
    assert_eq!((r[1].upstream, r[1].auth), (Some(0), AuthMode::None));
    assert_eq!(
        (r[2].roles.clone(), r[2].auth),
        (vec!["admin".to_string()], AuthMode::Required)
    );
    assert_eq!(
        r[3].methods,
        crate::route::MethodSet::parse_list(["POST"]).unwrap()
    );
    assert_eq!(r[3].roles, ["creator", "admin"]);
    assert_eq!(r[4].owner.as_deref(), Some("user"));
    assert_eq!(r[5].workspace.as_deref(), Some("ws"));
    assert_eq!(r[6].plans, ["pro", "enterprise"]);
    assert_eq!(r[6].rate_limit, Some(per_min(100)));
    assert_eq!(r[6].pattern.as_str(), "/api/reports/**");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn defaults_apply_to_everything_left_out() {
    let c = valid("auth: { issuer: i, audience: a }\nroles: [viewer, admin]\n").config;
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
    let dir = std::path::absolute(".").unwrap();
    assert_eq!(
        c.store,
        format!("sqlite://{}", dir.join("data/portcullis.db").display())
    );
    assert!(c.tls.is_none() && c.upstreams.is_empty() && c.routes.is_empty() && c.plans.is_none());
    let a = &c.auth;
    assert_eq!(
        (a.algorithm, a.key_id.as_str()),
        (Algorithm::HS256, "hs256")
    );
    assert_eq!(
        (a.access_ttl, a.refresh_ttl),
        (Duration::from_secs(900), Duration::from_secs(604_800))
    );
    assert_eq!(
        (a.leeway, a.refresh_grace),
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(
        (a.prefix.as_str(), a.cookie_name.as_str()),
        ("/api/auth", "__Secure-refresh_token")
    );
    assert_eq!(
        (a.signup.enabled, a.signup.default_role.as_str()),
        (true, "viewer")
    );
    assert!(a.allowed_origins.is_empty() && !a.refresh_in_body && a.key_rotation.is_none());
    assert_eq!(
        a.rate_limits.login_per_email,
        Rate {
            count: 5,
            per: Duration::from_secs(60)
        }
    );
    assert_eq!(a.keys_dir, dir.join("data/keys"));
    let h = &c.headers;
    assert_eq!(
        [
            h.user_id.as_str(),
            h.role.as_str(),
            h.workspace.as_str(),
            h.plan.as_str()
        ],
        ["x-user-id", "x-user-role", "x-workspace-id", "x-user-plan"]
    );
    assert_eq!(
        (c.shutdown_grace, c.trust_forwarded_for, c.access_log),
        (Duration::from_secs(5), false, true)
    );
}

#[test]
fn an_upstream_takes_defaults_and_its_sni_from_the_first_host() {
    let text = AUTH_LAST.replace(
        "[127.0.0.1:3000]",
        "[\"[::1]:8443\", b.internal:80]\n    tls: true",
    );
    let app = &valid(&text).config.upstreams[0];
    assert_eq!(app.addrs, ["[::1]:8443", "b.internal:80"]);
    assert_eq!((app.tls, app.sni.as_str()), (true, "::1"));
    assert_eq!(
        (app.connect_timeout, app.read_timeout),
        (Duration::from_secs(2), Duration::from_secs(30))
    );
}

/// Each case is one mistake in an otherwise valid file, with the exact error it must give.
#[test]
fn every_kind_of_mistake_gives_its_message_at_its_position() {
    let auth = |extra: &str| format!("{AUTH_LAST}{extra}");
    let route = |extra: &str| format!("{ROUTES_LAST}{extra}");
    // The route module words its own errors; the loader only places them.
    let method_error = crate::route::MethodSet::parse_list(["Get"]).unwrap_err();
    let bad_method = format!("gateway.yaml:11:47: routes[2].methods[1]: {method_error}");
    let bogus = format!(
        "gateway.yaml:11:1: bogus: unknown key (allowed: {})",
        top_keys()
    );
    let cases: Vec<(String, &str)> = vec![
        ("a: [1\n".into(), "gateway.yaml:1:4: this '[' is never closed (expected ']')"),
        (route("bogus: 1\n"), &bogus),
        (AUTH_LAST.replace("  app:\n", "  app:\n    conect_timeout: 2s\n"), "gateway.yaml:3:5: upstreams.app.conect_timeout: unknown key; did you mean `connect_timeout`? (allowed: addrs, connect_timeout, read_timeout, tls, sni, protocol)"),
        (AUTH_LAST.replace("  app:\n", "  app:\n    protocol: h2c\n    tls: true\n"), "gateway.yaml:3:15: upstreams.app.protocol: h2c is HTTP/2 without TLS; with tls: true, write protocol: h2"),
        (AUTH_LAST.replace("  app:\n", "  app:\n    protocol: h2\n    tls: false\n"), "gateway.yaml:4:10: upstreams.app.tls: protocol: h2 is HTTP/2 over TLS; write protocol: h2c for plain TCP"),
        (AUTH_LAST.replace("  app:\n", "  app:\n    protocol: h3\n"), r#"gateway.yaml:3:15: upstreams.app.protocol: expected "http1", "h2c" or "h2", got "h3""#),
        (auth("  audience: x\n"), "gateway.yaml:11:3: auth.audience: duplicate key (first at 10:3)"),
        ("roles: [a]\n".into(), "gateway.yaml:1:1: auth: missing required key"),
        ("auth: { issuer: i }\nroles: [a]\n".into(), "gateway.yaml:1:7: auth.audience: missing required key"),
        ("auth: { issuer: i, audience: a }\n".into(), "gateway.yaml:1:1: roles: missing required key"),
        ("auth: { issuer: i, audience: a }\nroles: []\n".into(), "gateway.yaml:2:8: roles: must list at least one role"),
        ("auth: { issuer: i, audience: a }\nroles: [a, b, a]\n".into(), "gateway.yaml:2:15: roles[2]: duplicate role \"a\" (first at roles[0])"),
        ("auth: { issuer: i, audience: a }\nroles: viewer\n".into(), "gateway.yaml:2:8: roles: expected a list"),
        ("auth: [i]\nroles: [a]\n".into(), "gateway.yaml:1:7: auth: expected a mapping"),
        (route("access_log: yes\n"), "gateway.yaml:11:13: access_log: expected true or false"),
        (route("store: [x]\n"), "gateway.yaml:11:8: store: expected a string"),
        (route("listen: localhost:80\n"), "gateway.yaml:11:9: listen: invalid address \"localhost:80\": expected IP:PORT like 0.0.0.0:8080"),
        (route("store: mysql://u:pw@h/db\n"), "gateway.yaml:11:8: store: unsupported store URL \"mysql://u:***@h/db\": expected sqlite://PATH or postgres://..."),
        (route("shutdown_grace: 5\n"), "gateway.yaml:11:17: shutdown_grace: invalid duration \"5\": expected a number and a unit, like 30s (units: ms, s, m, h, d)"),
        (route("tls: { listen: 0.0.0.0:8443, cert: c.pem }\n"), "gateway.yaml:11:6: tls.key: missing required key"),
        (AUTH_LAST.replace("[127.0.0.1:3000]", "[127.0.0.1]"), "gateway.yaml:3:13: upstreams.app.addrs[0]: invalid address \"127.0.0.1\": expected host:port"),
        (AUTH_LAST.replace("[127.0.0.1:3000]", "[\":80\"]"), "gateway.yaml:3:13: upstreams.app.addrs[0]: invalid address \":80\": missing or malformed host"),
        (AUTH_LAST.replace("[127.0.0.1:3000]", "[h:65536]"), "gateway.yaml:3:13: upstreams.app.addrs[0]: invalid address \"h:65536\": the port must be 1-65535"),
        (AUTH_LAST.replace("[127.0.0.1:3000]", "[]"), "gateway.yaml:3:12: upstreams.app.addrs: must list at least one host:port address"),
        (AUTH_LAST.replace("    addrs: [127.0.0.1:3000]\n", "    tls: true\n"), "gateway.yaml:3:5: upstreams.app.addrs: missing required key"),
        (auth("  algorithm: HS512\n"), "gateway.yaml:11:14: auth.algorithm: unknown algorithm \"HS512\" (allowed: HS256, EdDSA, ES256, RS256)"),
        (auth("  access_ttl: 1h\n"), "gateway.yaml:11:15: auth.access_ttl: must be at most 15m (got 1h)"),
        (auth("  access_ttl: 0s\n"), "gateway.yaml:11:15: auth.access_ttl: must be longer than 0"),
        (auth("  refresh_ttl: 10m\n"), "gateway.yaml:11:16: auth.refresh_ttl: must be longer than access_ttl (15m), got 10m"),
        (auth("  leeway: 1m\n"), "gateway.yaml:11:11: auth.leeway: must be at most 30s (got 1m)"),
        (auth("  refresh_grace: 61s\n"), "gateway.yaml:11:18: auth.refresh_grace: must be at most 1m (got 61s)"),
        (auth("  prefix: /api/auth/\n"), "gateway.yaml:11:11: auth.prefix: must not end with '/'"),
        (auth("  prefix: api\n"), "gateway.yaml:11:11: auth.prefix: must start with '/'"),
        (auth("  signup: { default_role: owner }\n"), "gateway.yaml:11:27: auth.signup.default_role: unknown role \"owner\" (known: admin, creator, viewer)"),
        (auth("  allowed_origins: [https://app.example.com/]\n"), "gateway.yaml:11:21: auth.allowed_origins[0]: invalid origin \"https://app.example.com/\": an origin has no path, like https://app.example.com"),
        (auth("  rate_limits: { login: 0/min }\n"), "gateway.yaml:11:25: auth.rate_limits.login: invalid rate \"0/min\": the count must be at least 1"),
        (auth("  rate_limits: { logins: 5/min }\n"), "gateway.yaml:11:18: auth.rate_limits.logins: unknown key; did you mean `login`? (allowed: login, login_per_email, refresh, signup, mail, mail_per_email, account_tokens)"),
        (auth("  cookie_name: \"a b\"\n"), "gateway.yaml:11:16: auth.cookie_name: invalid cookie name \"a b\""),
        (auth("  trusted_issuers: [{ issuer: i, jwks_url: \"http://idp.test/k\", audience: a }]\n"), "gateway.yaml:11:44: auth.trusted_issuers[0].jwks_url: \"http://idp.test/k\": keys must be fetched over https (plain http is allowed to 127.0.0.1, ::1 or localhost only)"),
        (auth("  trusted_issuers: [{ issuer: i, jwks_url: \"https://idp.test/k\" }]\n"), "gateway.yaml:11:21: auth.trusted_issuers[0].audience: missing required key"),
        (auth("  trusted_issuers: [{ issuer: https://gw.test, jwks_url: \"https://idp.test/k\", audience: a }]\n"), "gateway.yaml:11:31: auth.trusted_issuers[0].issuer: is auth.issuer, the gateway's own: its tokens are verified with the gateway's keys"),
        (auth("  trusted_issuers: [{ issuer: i, jwks_url: \"https://idp.test/k\", audience: a, role_clam: r }]\n"), "gateway.yaml:11:79: auth.trusted_issuers[0].role_clam: unknown key; did you mean `role_claim`? (allowed: issuer, jwks_url, audience, role_claim, jwks_refresh, refetch_interval)"),
        (auth("  trusted_issuers: [{ issuer: i, jwks_url: \"https://idp.test/k\", audience: a, refetch_interval: 500ms }]\n"), "gateway.yaml:11:97: auth.trusted_issuers[0].refetch_interval: must be at least 1s"),
        (auth("  trusted_issuers: [{ issuer: i, jwks_url: \"https://a.test/k\", audience: a }, { issuer: i, jwks_url: \"https://b.test/k\", audience: a }]\n"), "gateway.yaml:11:89: auth.trusted_issuers[1].issuer: \"i\" is listed twice"),
        (route("  - { path: /a, roles: [admn], upstream: app }\n"), "gateway.yaml:11:25: routes[2].roles[0]: unknown role \"admn\" (known: admin, creator, viewer)"),
        (route("plans: [free]\n").replace("/api/x, ", "/api/x, plans: [pro], "), "gateway.yaml:10:29: routes[1].plans[0]: unknown plan \"pro\" (known: free)"),
        (route("  - { path: /a, upstream: ap }\n"), "gateway.yaml:11:27: routes[2].upstream: unknown upstream \"ap\" (known: app)"),
        (route("  - { path: \"/u/{user}\", upstream: app, owner: usr }\n"), "gateway.yaml:11:48: routes[2].owner: \"usr\" is not a capture of /u/{user} (captures: user)"),
        (route("  - { path: /w, upstream: app, workspace: ws }\n"), "gateway.yaml:11:43: routes[2].workspace: \"ws\" is not a capture of /w (it has no captures)"),
        (route("  - { path: /a }\n"), "gateway.yaml:11:5: routes[2]: route has no upstream; only routes under auth.prefix (/api/auth) may omit it"),
        (route("  - { path: /a, upstream: app, auth: none, roles: [admin] }\n"), "gateway.yaml:11:38: routes[2].auth: a public route (auth: none) cannot have identity rules (roles)"),
        (route("  - { path: /a, upstream: app, auth: optional }\n"), "gateway.yaml:11:38: routes[2].auth: expected \"required\" or \"none\", got \"optional\""),
        (route("  - { path: /a, upstream: app, methods: [GET, Get] }\n"), &bad_method),
        (route("  - { path: a, upstream: app }\n"), "gateway.yaml:11:13: routes[2].path: pattern must start with '/'"),
        (route("  - { upstream: app }\n"), "gateway.yaml:11:5: routes[2].path: missing required key"),
        (route("  - { path: /a, upstream: app, rate_limit: 10/week }\n"), "gateway.yaml:11:44: routes[2].rate_limit: invalid rate \"10/week\": expected N/unit like 10/min (units: s, sec, m, min, h, hour, d, day)"),
        (route("headers: { role: \"X Role\" }\n"), "gateway.yaml:11:18: headers.role: invalid header name \"X Role\""),
        (route("headers: { plan: x-user-id }\n"), "gateway.yaml:11:18: headers.plan: same header as headers.user_id (x-user-id)"),
        (route("headers: { user_id: Authorization }\n"), "gateway.yaml:11:21: headers.user_id: authorization is reserved and cannot carry identity"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let got = errors(text);
            (got != [*expected])
                .then(|| format!("in:\n{text}expected: {expected}\n     got: {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// YAML structure mistakes and misspelt keys: each is one error, at the line where it was
/// made, with a one-line hint; a misspelt section does not also make what refers to it
/// unknown or missing.
#[test]
fn structure_mistakes_and_misspellings_are_one_error_each_at_their_line_with_a_hint() {
    let route = |extra: &str| format!("{ROUTES_LAST}{extra}");
    let route_keys = routes::ROUTE_KEYS.names().collect::<Vec<_>>().join(", ");
    let upstream = format!(
        "gateway.yaml:1:1: upstream: unknown key; did you mean `upstreams`? (allowed: {})",
        top_keys()
    );
    let rols = format!(
        "gateway.yaml:4:1: rols: unknown key; did you mean `roles`? (allowed: {})",
        top_keys()
    );
    let auht = format!(
        "gateway.yaml:8:1: auht: unknown key; did you mean `auth`? (allowed: {})",
        top_keys()
    );
    let upstrem = format!("gateway.yaml:11:17: routes[2].upstrem: unknown key; did you mean `upstream`? (allowed: {route_keys})");
    let cases: Vec<(String, &str)> = vec![
        (AUTH_LAST.replace("  app:\n", "\tapp:\n"), "gateway.yaml:2:1: tabs are not allowed for indentation; use spaces"),
        (AUTH_LAST.replace("    addrs:", "  \t  addrs:"), "gateway.yaml:3:3: tabs are not allowed for indentation; use spaces"),
        (AUTH_LAST.replace("  audience: api\n", " audience: api\n"), "gateway.yaml:10:2: indented by 1 space, but the keys above are indented by 2 and their parent by 0: align it with its siblings"),
        (AUTH_LAST.replace("000]\n", "000]\n   tls: false\n"), "gateway.yaml:4:4: indented by 3 spaces, but the keys above are indented by 4 and their parent by 2: align it with its siblings"),
        (AUTH_LAST.replace("  audience: api\n", "    audience: api\n"), "gateway.yaml:10:5: indented by 4 spaces, deeper than the line above, which has its value already: align it with its siblings"),
        (route("- { path: /a, upstream: app }\n"), "gateway.yaml:11:1: indented by 0 spaces, but the items above are indented by 2: align it with its siblings"),
        (AUTH_LAST.replace("  audience: api", "  audience api"), "gateway.yaml:10:11: missing ':' after \"audience\" (write \"audience: api\")"),
        (ROUTES_LAST.replace("auth:\n", "auth\n"), "gateway.yaml:5:5: missing ':' after \"auth\""),
        (AUTH_LAST.replace("issuer: https", "issuer:https"), "gateway.yaml:9:9: missing space after ':' (write \"issuer: https://gw.test\")"),
        (route("access_log:false\n"), "gateway.yaml:11:11: missing space after ':' (write \"access_log: false\")"),
        (route("  - { path:/a, upstream: app }\n"), "gateway.yaml:11:7: routes[2].path:/a: missing space after ':' (write \"path: /a\")"),
        (route("  - { path: /a, upstream: app, methods: [GET }\n"), "gateway.yaml:11:41: this '[' is never closed (expected ']')"),
        (AUTH_LAST.replace("upstreams:", "upstream:"), &upstream),
        (ROUTES_LAST.replace("roles:", "rols:"), &rols),
        (AUTH_LAST.replace("auth:\n", "auht:\n"), &auht),
        (route("  - { path: /a, upstrem: app }\n"), &upstrem),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, expected)| {
            let got = errors(text);
            (got != [*expected])
                .then(|| format!("in:\n{text}expected: {expected}\n     got: {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// The drift a shared table leaves possible: a key listed that no reader reads (so it is
/// accepted and silently ignored), or read under a name the table lacks (so it is refused as
/// unknown), or required by the reader but not in the schema, or the other way round.
#[test]
fn the_loader_reads_exactly_the_keys_the_schema_lists_and_requires_the_same_ones() {
    use std::collections::BTreeMap;
    let text = schema::sample_yaml();
    yaml::reads::start();
    let _ = parse_with(&text, &[]);
    let mut read: BTreeMap<(&str, String), bool> = BTreeMap::new();
    for (section, key, required) in yaml::reads::take() {
        *read.entry((section, key)).or_default() |= required;
    }
    let mut listed: BTreeMap<(&str, String), bool> = BTreeMap::new();
    schema::walk(sections::TOP_KEYS, &mut |s| {
        for k in s.keys {
            listed.insert((s.path, k.name.to_string()), k.required);
        }
    });
    let show = |m: &BTreeMap<(&str, String), bool>, other: &BTreeMap<(&str, String), bool>| {
        m.iter()
            .filter(|(k, v)| other.get(*k) != Some(*v))
            .map(|((s, k), required)| {
                let place = if s.is_empty() { "top level" } else { s };
                format!("{place}: {k}{}", if *required { " (required)" } else { "" })
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (show(&read, &listed), show(&listed, &read)),
        (vec![], vec![]),
        "(read by the loader but not so in the tables, in the tables but not so read by the loader), from:\n{text}"
    );
}

#[test]
fn trusted_issuers_get_defaults_for_what_they_leave_out() {
    let text = format!(
        "{AUTH_LAST}  trusted_issuers:\n    - {{ issuer: \"https://idp.test/\", jwks_url: \"https://idp.test/jwks\", audience: api }}\n    - {{ issuer: m2m, jwks_url: \"http://127.0.0.1:8081/k\", audience: api, role_claim: realm_access.roles, jwks_refresh: 1h, refetch_interval: 5s }}\n"
    );
    let issuers = &valid(&text).config.auth.trusted_issuers;
    assert_eq!(issuers.len(), 2);
    assert_eq!(issuers[0].jwks_url.to_string(), "https://idp.test/jwks");
    assert_eq!(
        (
            issuers[0].role_claim.as_str(),
            issuers[0].jwks_refresh,
            issuers[0].refetch_interval
        ),
        ("role", Duration::from_secs(600), Duration::from_secs(10))
    );
    assert_eq!(
        (
            issuers[1].role_claim.as_str(),
            issuers[1].jwks_refresh,
            issuers[1].refetch_interval
        ),
        (
            "realm_access.roles",
            Duration::from_secs(3600),
            Duration::from_secs(5)
        )
    );
}

#[test]
fn three_mistakes_are_reported_together_in_file_order() {
    let text = "auth: { issuer: i, audience: a, access_ttl: 1h }\nroles: [viewer, admin]\nlisten: nowhere\nroutes:\n  - { path: /api/auth/me, roles: [admn] }\n";
    assert_eq!(
        errors(text),
        [
            "gateway.yaml:1:45: auth.access_ttl: must be at most 15m (got 1h)",
            "gateway.yaml:3:9: listen: invalid address \"nowhere\": expected IP:PORT like 0.0.0.0:8080",
            "gateway.yaml:5:35: routes[0].roles[0]: unknown role \"admn\" (known: admin, viewer)",
        ]
    );
}

#[test]
fn env_overrides_replace_the_port_store_and_token_lifetimes() {
    let text = "listen: 127.0.0.1:8080\nauth: { issuer: i, audience: a, access_ttl: 5m, refresh_ttl: 1d }\nroles: [viewer]\n";
    let vars = [
        ("PORT", "3001"),
        ("PORTCULLIS_STORE", "postgres://gw@db/gw"),
        ("JWT_EXPIRES_IN", "900"),
        ("JWT_REFRESH_EXPIRES_IN", "2d"),
    ];
    let c = parse_with(text, &vars).unwrap().config;
    assert_eq!(c.listen.to_string(), "127.0.0.1:3001");
    assert_eq!(c.store, "postgres://gw@db/gw");
    assert_eq!(c.auth.access_ttl, Duration::from_secs(900));
    assert_eq!(c.auth.refresh_ttl, Duration::from_secs(2 * 86_400));
    let c = parse_with(text, &[("JWT_EXPIRES_IN", "15m"), ("PORT", "")])
        .unwrap()
        .config;
    assert_eq!(
        (c.auth.access_ttl, c.listen.port()),
        (Duration::from_secs(900), 8080)
    );
}

#[test]
fn portcullis_admin_listen_replaces_the_admin_address_and_a_bad_one_is_named() {
    let text = "admin_listen: 127.0.0.1:9090\nauth: { issuer: i, audience: a }\nroles: [viewer]\n";
    let c = parse_with(text, &[("PORTCULLIS_ADMIN_LISTEN", "0.0.0.0:9191")])
        .unwrap()
        .config;
    assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9191");
    let c = parse_with(text, &[("PORTCULLIS_ADMIN_LISTEN", " ")])
        .unwrap()
        .config;
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(
        parse_with(text, &[("PORTCULLIS_ADMIN_LISTEN", "9090")]).unwrap_err(),
        ["env PORTCULLIS_ADMIN_LISTEN: invalid address \"9090\": expected IP:PORT like 0.0.0.0:8080"]
    );
}

#[test]
fn a_bad_env_value_is_reported_by_variable_name_after_the_file_errors() {
    let text = "auth: { issuer: i, audience: a }\nroles: [viewer]\naccess_log: 1\n";
    let vars = [
        ("PORT", "http"),
        ("JWT_EXPIRES_IN", "1h"),
        ("JWT_REFRESH_EXPIRES_IN", "soon"),
    ];
    assert_eq!(
        parse_with(text, &vars).unwrap_err(),
        [
            "gateway.yaml:3:13: access_log: expected true or false",
            "env PORT: invalid port \"http\": expected 1-65535",
            "env JWT_REFRESH_EXPIRES_IN: invalid duration \"soon\": expected seconds (900) or a duration like 15m",
            "env JWT_EXPIRES_IN: must be at most 15m (got 1h)",
        ]
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory_and_absolute_ones_stay() {
    let text = "store: sqlite://db/gw.sqlite?cache=shared\ntls: { listen: 0.0.0.0:8443, cert: /etc/ssl/gw.pem, key: tls/gw.key }\nauth: { issuer: i, audience: a, keys_dir: keys }\nroles: [viewer]\n";
    let c = parse(
        Path::new("/opt/portcullis/conf/gateway.yaml"),
        text,
        &no_env,
    )
    .unwrap()
    .config;
    assert_eq!(
        c.store,
        "sqlite:///opt/portcullis/conf/db/gw.sqlite?cache=shared"
    );
    let tls = c.tls.unwrap();
    assert_eq!(
        (tls.cert, tls.key),
        (
            PathBuf::from("/etc/ssl/gw.pem"),
            PathBuf::from("/opt/portcullis/conf/tls/gw.key")
        )
    );
    assert_eq!(c.auth.keys_dir, PathBuf::from("/opt/portcullis/conf/keys"));
    let c = parse(
        Path::new("/x/gateway.yaml"),
        "store: sqlite:///var/gw.db\nauth: { issuer: i, audience: a }\nroles: [v]\n",
        &no_env,
    );
    assert_eq!(c.unwrap().config.store, "sqlite:///var/gw.db");
}

#[test]
fn a_route_hidden_by_an_earlier_one_is_a_warning_not_an_error() {
    let text = format!("{ROUTES_LAST}  - {{ path: /api/**, upstream: app }}\n  - {{ path: /api/y, upstream: app }}\n");
    let loaded = valid(&text);
    assert_eq!(
        loaded.warnings,
        ["gateway.yaml:12:5: routes[3]: shadowed by routes[2] (/api/**), it can never match"]
    );
}

#[test]
fn shadow_warnings_are_formatted_from_the_route_table_pairs() {
    let loaded = valid(&format!("{ROUTES_LAST}  - {{ path: /b, upstream: app }}\n"));
    let positions: Vec<yaml::Pos> = [9, 10, 11]
        .iter()
        .map(|&line| yaml::Pos { line, col: 5 })
        .collect();
    let mut p = yaml::Problems::new("gw.yaml".into());
    routes::warn_shadowed(&[(2, 0), (1, 0)], &loaded.config.routes, &positions, &mut p);
    let shown: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "gw.yaml:11:5: routes[2]: shadowed by routes[0] (/api/auth/**), it can never match",
            "gw.yaml:10:5: routes[1]: shadowed by routes[0] (/api/auth/**), it can never match",
        ]
    );
}

#[test]
fn unused_upstreams_and_sni_without_tls_are_warnings() {
    let text = AUTH_LAST.replace(
        "upstreams:\n",
        "upstreams:\n  spare: { addrs: [\"h:1\"], sni: h }\n",
    );
    assert_eq!(
        valid(&text).warnings,
        [
            "gateway.yaml:2:10: upstreams.spare: not used by any route",
            "gateway.yaml:2:33: upstreams.spare.sni: has no effect without tls: true"
        ]
    );
}

#[test]
fn an_unreadable_file_is_one_error_naming_the_file() {
    let errors = load(Path::new("/nonexistent/gateway.yaml"), &no_env).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/gateway.yaml: cannot read: "),
        "{}",
        errors[0]
    );
}

#[test]
fn durations_take_one_number_and_one_unit() {
    let ok = [
        ("500ms", 500),
        ("30s", 30_000),
        ("15m", 900_000),
        ("2h", 7_200_000),
        ("7d", 604_800_000),
        ("0s", 0),
    ];
    for (text, ms) in ok {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }
    for bad in [
        "",
        "15",
        "m",
        "1.5h",
        "-1s",
        "1w",
        "1h30m",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn rates_accept_every_unit_spelling() {
    for (text, secs) in [
        ("1/s", 1),
        ("2/sec", 1),
        ("3/m", 60),
        ("4/min", 60),
        ("5/h", 3600),
        ("6/hour", 3600),
        ("7/d", 86_400),
        ("8/day", 86_400),
    ] {
        let rate = Rate::parse(text).unwrap();
        assert_eq!(rate.per, Duration::from_secs(secs), "{text}");
    }
    assert_eq!(Rate::parse("10/min").unwrap().to_string(), "10/min");
}

#[test]
fn debug_output_hides_the_store_password() {
    let c = parse_with(
        "store: postgres://gw:hunter2@db/gw\nauth: { issuer: i, audience: a }\nroles: [v]\n",
        &[],
    )
    .unwrap()
    .config;
    let shown = format!("{c:?}");
    assert!(
        shown.contains("postgres://gw:***@db/gw") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn tracing_is_off_without_its_section_and_gets_defaults_with_it() {
    assert!(valid(ROUTES_LAST).config.tracing.is_none());
    let on = valid(&format!(
        "{ROUTES_LAST}tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n"
    ));
    let t = on.config.tracing.unwrap();
    assert_eq!(t.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(
        (
            t.service_name.as_str(),
            t.sample_ratio,
            t.trust_incoming_traceparent,
            t.include_user_id,
            t.export_interval
        ),
        ("portcullis", 1.0, false, false, Duration::from_secs(5))
    );
}

#[test]
fn tracing_errors_name_the_line_and_key() {
    let text = format!(
        "{ROUTES_LAST}tracing:\n  otlp_endpoint: https://collector:4318\n  sample_ratio: 1.5\n  service_name: \"\"\n  include_user_id: maybe\n  export_interval: 5ms\n  trust_incoming_traceparnet: true\n"
    );
    let e = errors(&text);
    let find = |needle: &str| {
        e.iter()
            .find(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("no error with {needle:?} in {e:#?}"))
    };
    assert!(
        find("tracing.otlp_endpoint: invalid endpoint \"https://collector:4318\": TLS")
            .starts_with("gateway.yaml:12:")
    );
    assert!(find("tracing.sample_ratio: invalid ratio \"1.5\"").starts_with("gateway.yaml:13:"));
    assert!(find("tracing.service_name: must not be empty").starts_with("gateway.yaml:14:"));
    assert!(find("tracing.include_user_id: expected true or false").starts_with("gateway.yaml:15:"));
    assert!(find("tracing.export_interval: must be between 10ms and 1m")
        .starts_with("gateway.yaml:16:"));
    assert!(find("trust_incoming_traceparent").starts_with("gateway.yaml:17:"));
    let missing = errors(&format!("{ROUTES_LAST}tracing:\n  service_name: gw\n"));
    assert!(
        missing.iter().any(|m| m.starts_with("gateway.yaml:12:")
            && m.contains("tracing.otlp_endpoint: missing required key")),
        "{missing:#?}"
    );
}
