//! Reads the top level of the file (listeners, store, TLS, upstreams, declared names, identity
//! headers) and ties the sections together, applying `PORT`, `PORTCULLIS_ADMIN_LISTEN` and
//! `PORTCULLIS_STORE`.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::forward_auth;
use super::schema::{key, Section, Ty};
use super::tracing;
use super::yaml::{Field, Fields, Node, Problems, Spot};
use super::{
    auth, cors, rate_limit_store, routes, store_url, Config, IdentityHeaders, Tls, Upstream,
    UpstreamProtocol,
};

/// The top level of the file. Each section's keys are declared beside the code that reads
/// them; `portcullis schema` renders these tables, so a key added here is in the schema.
#[rustfmt::skip]
pub(super) static TOP_KEYS: &Section = &Section {
    path: "",
    keys: &[
        key("listen", Ty::SocketAddr, "Public listener, IP:PORT (default 0.0.0.0:8080); PORT in the environment replaces the port."),
        key("admin_listen", Ty::SocketAddr, "/metrics, /healthz and /readyz, IP:PORT (default 127.0.0.1:9090); PORTCULLIS_ADMIN_LISTEN replaces it. Keep it private."),
        key("store", Ty::Matching("^(sqlite|postgres|postgresql)://."), "User and session store: sqlite://PATH (relative to this file) or postgres://USER@HOST/DB (default sqlite://data/portcullis.db); PORTCULLIS_STORE replaces it."),
        key("tls", Ty::Map(TLS_KEYS), "Also terminate HTTPS."),
        key("upstreams", Ty::Named(UPSTREAM_KEYS), "The services behind the gateway, by the names routes give them."),
        key("auth", Ty::Map(auth::AUTH_KEYS), "Token settings and the embedded auth module.").required(),
        key("roles", Ty::List(&Ty::Text), "Every role a rule may name; the first is the default signup role.").required(),
        key("plans", Ty::List(&Ty::Text), "When given, every plan a rule may name (default: any)."),
        key("routes", Ty::Maps(routes::ROUTE_KEYS), "In file order, the first match wins; no match is a 404."),
        key("headers", Ty::Map(HEADER_KEYS), "Names of the identity headers sent upstream."),
        key("shutdown_grace", Ty::Duration, "Longest drain of requests in flight on SIGTERM (default 5s)."),
        key("trust_forwarded_for", Ty::Bool, "Append to a client's X-Forwarded-For and take its last hop as the client IP, instead of replacing it (default false); only behind a proxy that sets it."),
        key("access_log", Ty::Bool, "One JSON line per request on stdout (default true)."),
        key("h2c", Ty::Bool, "Take prior-knowledge HTTP/2 (h2c) on the plain listener, e.g. behind a TLS-terminating load balancer (default false)."),
        key("rate_limit_store", Ty::Matching("^redis://"), "redis://[user:password@]host[:port][/db]: route, refresh and /switch limits counted across replicas."),
        key("rate_limit_sync", Ty::Duration, "How often each replica synchronizes its counts with rate_limit_store (default 100ms, 10ms to 1s)."),
        key("forward_auth_listen", Ty::SocketAddr, "Where forward-auth questions from another proxy are answered, IP:PORT (default: off); reachable by that proxy alone."),
        key("forward_auth", Ty::Map(forward_auth::KEYS), "Who may ask forward-auth questions."),
        key("cors", Ty::Map(cors::CORS_KEYS), "CORS for browser apps on other origins, on every proxied route without a cors of its own."),
        key("tracing", Ty::Map(tracing::KEYS), "OpenTelemetry traces of proxied requests over OTLP/HTTP (default: off)."),
    ],
};
#[rustfmt::skip]
static TLS_KEYS: &Section = &Section {
    path: "tls",
    keys: &[
        key("listen", Ty::SocketAddr, "Where HTTPS traffic arrives, IP:PORT.").required(),
        key("cert", Ty::Text, "PEM certificate chain, leaf first (relative to this file); read at start and at each SIGHUP.").required(),
        key("key", Ty::Text, "The certificate's private key, PKCS#8, PKCS#1 or SEC1 PEM (relative to this file).").required(),
        key("session_resumption", Ty::Bool, "Let a returning client resume its TLS session instead of a full handshake (default true)."),
        key("http2", Ty::Bool, "Offer HTTP/2 (ALPN h2) beside HTTP/1.1 (default true)."),
    ],
};
#[rustfmt::skip]
static UPSTREAM_KEYS: &Section = &Section {
    path: "upstreams.*",
    keys: &[
        key("addrs", Ty::List(&Ty::Text), "One or more host:port, resolved at start; several are round-robin with TCP health checks.").required(),
        key("connect_timeout", Ty::Duration, "Unreachable after this: 502 (default 2s)."),
        key("read_timeout", Ty::Duration, "No answer after this: 504 (default 30s)."),
        key("tls", Ty::Bool, "Speak HTTPS to the upstream (default false)."),
        key("sni", Ty::Text, "TLS server name (default: the host of the first address)."),
        key("protocol", Ty::OneOf(&["http1", "h2c", "h2"]), "How gRPC calls are forwarded: http1 (default; no gRPC), h2c (HTTP/2 over plain TCP) or h2 (HTTP/2 over TLS, by ALPN; implies tls: true). Other requests stay HTTP/1.1."),
    ],
};
#[rustfmt::skip]
static HEADER_KEYS: &Section = &Section {
    path: "headers",
    keys: &[
        key("user_id", Ty::Text, "Carries the token's subject (default x-user-id)."),
        key("role", Ty::Text, "Carries the role (default x-user-role)."),
        key("workspace", Ty::Text, "Carries the workspace (default x-workspace-id)."),
        key("plan", Ty::Text, "Carries the plan (default x-user-plan)."),
        key("issuer", Ty::Text, "Carries the issuer that vouched for the identity (default x-user-issuer)."),
    ],
};

/// Headers an identity header must not replace: they carry the request itself.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "host",
    "transfer-encoding",
];

pub(super) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// Looks up an override; an empty value counts as unset, as in most deploy tooling.
pub(super) fn env_value(env: Env, var: &str) -> Option<String> {
    env(var).filter(|v| !v.trim().is_empty())
}

/// Builds the config from the document root. Values that fail validation are reported to `p`
/// and replaced by defaults, so the rest of the file is still checked; the caller discards the
/// result when anything was reported.
pub(super) fn read(root: &Node, path: &Path, env: Env, p: &mut Problems) -> Config {
    let dir = base_dir(path);
    let top = Field::root(root).fields(p, TOP_KEYS);

    let mut listen = top.or(
        p,
        "listen",
        SocketAddr::from(([0, 0, 0, 0], 8080)),
        |f, p| f.parsed(p, parse_socket_addr),
    );
    if let Some(port) = env_value(env, "PORT") {
        match port.trim().parse::<u16>() {
            Ok(port) if port > 0 => listen.set_port(port),
            _ => p.error(
                &Spot::Env("PORT"),
                format!("invalid port \"{port}\": expected 1-65535"),
            ),
        }
    }
    let mut admin_listen = top.or(
        p,
        "admin_listen",
        SocketAddr::from(([127, 0, 0, 1], 9090)),
        |f, p| f.parsed(p, parse_socket_addr),
    );
    // A container's loopback is its own: the image sets 0.0.0.0:9090 so probes and
    // Prometheus reach the admin listener without editing the file.
    if let Some(addr) = env_value(env, "PORTCULLIS_ADMIN_LISTEN") {
        match parse_socket_addr(&addr) {
            Ok(addr) => admin_listen = addr,
            Err(e) => p.error(&Spot::Env("PORTCULLIS_ADMIN_LISTEN"), e),
        }
    }
    let store = read_store(&top, &dir, env, p);
    let tls = top.get("tls").map(|f| read_tls(&f, &dir, p));

    // Absent means "none declared"; malformed means unknown, so routes are not checked against it.
    let upstream_list = match top.get("upstreams") {
        Some(f) => f.entries(p),
        // A misspelt `upstreams` (reported with its hint) leaves the names unknown, not none.
        None if top.misspelled("upstreams") => None,
        None => Some(Vec::new()),
    };
    let upstream_names: Option<Vec<String>> = upstream_list
        .as_ref()
        .map(|list| list.iter().map(|(name, _)| name.clone()).collect());
    let upstreams: Vec<(Upstream, Spot)> = upstream_list
        .unwrap_or_default()
        .into_iter()
        .map(|(name, f)| (read_upstream(name, &f, p), f.spot()))
        .collect();

    let roles = top
        .require(p, "roles")
        .and_then(|f| read_names(&f, "role", p));
    if roles.as_ref().is_some_and(Vec::is_empty) {
        p.error(&top.spot_of("roles"), "must list at least one role");
    }
    let plans = top.get("plans").and_then(|f| read_names(&f, "plan", p));
    let (auth, prefix_ok) = auth::read(&top, roles.as_deref(), &dir, env, p);

    let cors = top
        .get("cors")
        .and_then(|f| cors::read(&f, p))
        .map(std::sync::Arc::new);
    let auth_cors = cors::for_auth(&auth.allowed_origins);
    let known = routes::Known {
        roles: roles.as_deref(),
        plans: plans.as_deref(),
        upstreams: upstream_names.as_deref(),
        prefix: (prefix_ok && !top.misspelled("auth")).then_some(auth.prefix.as_str()),
        cors: cors.as_ref(),
        auth_cors: auth_cors.as_ref(),
    };
    let routes = top
        .get("routes")
        .map(|f| routes::read(&f, &known, p))
        .unwrap_or_default();
    for (i, (_, spot)) in upstreams.iter().enumerate() {
        if !routes.iter().any(|r| r.upstream == Some(i)) {
            p.warn(spot, "not used by any route");
        }
    }

    let (forward_auth_listen, forward_auth) = forward_auth::read(&top, p);
    Config {
        path: path.to_path_buf(),
        listen,
        admin_listen,
        store,
        tls,
        upstreams: upstreams.into_iter().map(|(u, _)| u).collect(),
        auth,
        roles: roles.unwrap_or_default(),
        plans,
        routes,
        headers: read_headers(&top, p),
        shutdown_grace: top.or(p, "shutdown_grace", Duration::from_secs(5), |f, p| {
            f.parsed(p, super::parse_duration)
        }),
        trust_forwarded_for: top.or(p, "trust_forwarded_for", false, |f, p| f.bool(p)),
        access_log: top.or(p, "access_log", true, |f, p| f.bool(p)),
        h2c: top.or(p, "h2c", false, |f, p| f.bool(p)),
        rate_limit_store: rate_limit_store::read(&top, p),
        forward_auth_listen,
        forward_auth,
        tracing: tracing::read(&top, p),
    }
}

/// The directory relative paths in the file are resolved against, made absolute so the
/// runtime config does not depend on the working directory.
fn base_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

pub(super) fn resolve(dir: &Path, file: &str) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        dir.join(file)
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid address \"{s}\": expected IP:PORT like 0.0.0.0:8080"))
}

/// `host:port` or `[v6]:port`, without resolving the host; returns the host.
pub(super) fn parse_host_port(s: &str) -> Result<String, String> {
    if s.contains("://") {
        return Err(format!(
            "invalid address \"{s}\": expected host:port without a scheme"
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("invalid address \"{s}\": expected [IPv6]:port"))?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid address \"{s}\": \"{v6}\" is not an IPv6 address"))?;
        (v6, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid address \"{s}\": expected host:port"))?;
        if host.contains(':') {
            return Err(format!(
                "invalid address \"{s}\": write IPv6 hosts in brackets, like [::1]:3000"
            ));
        }
        (host, port)
    };
    if host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
    {
        return Err(format!(
            "invalid address \"{s}\": missing or malformed host"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(host.to_string()),
        _ => Err(format!("invalid address \"{s}\": the port must be 1-65535")),
    }
}

fn read_store(top: &Fields, dir: &Path, env: Env, p: &mut Problems) -> String {
    let default = "sqlite://data/portcullis.db".to_string();
    let (raw, spot) = match env_value(env, "PORTCULLIS_STORE") {
        Some(v) => (v, Spot::Env("PORTCULLIS_STORE")),
        None => (
            top.or(p, "store", default.clone(), |f, p| f.str(p)),
            top.spot_of("store"),
        ),
    };
    resolve_store(&raw, dir).unwrap_or_else(|e| {
        p.error(&spot, e);
        default
    })
}

/// Keeps database URLs as they are, except that a relative SQLite file is anchored at the
/// config file's directory (the store insists on an absolute path).
fn resolve_store(url: &str, dir: &Path) -> Result<String, String> {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return match rest.is_empty() {
                true => Err(format!("incomplete store URL \"{url}\"")),
                false => Ok(url.to_string()),
            };
        }
    }
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(format!(
            "unsupported store URL \"{}\": expected sqlite://PATH or postgres://...",
            store_url::redact(url)
        ));
    };
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, format!("?{query}")),
        None => (rest, String::new()),
    };
    if file.is_empty() {
        return Err(format!("store URL \"{url}\" names no database file"));
    }
    Ok(format!("sqlite://{}{query}", resolve(dir, file).display()))
}

fn read_tls(f: &Field, dir: &Path, p: &mut Problems) -> Tls {
    let t = f.fields(p, TLS_KEYS);
    let listen = t
        .require(p, "listen")
        .and_then(|f| f.parsed(p, parse_socket_addr));
    let mut file = |key| match t.require(p, key).and_then(|f| f.str(p)) {
        Some(s) => resolve(dir, &s),
        None => PathBuf::new(),
    };
    let (cert, key) = (file("cert"), file("key"));
    let session_resumption = t.or(p, "session_resumption", true, |f, p| f.bool(p));
    Tls {
        listen: listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8443))),
        cert,
        key,
        session_resumption,
        http2: t.or(p, "http2", true, |f, p| f.bool(p)),
    }
}

fn read_upstream(name: String, f: &Field, p: &mut Problems) -> Upstream {
    let u = f.fields(p, UPSTREAM_KEYS);
    let mut addrs = Vec::new();
    let mut first_host = None;
    if let Some(list) = u.require(p, "addrs") {
        for (item, addr) in list.strings(p).unwrap_or_default() {
            match parse_host_port(&addr) {
                Ok(host) => {
                    first_host.get_or_insert(host);
                    addrs.push(addr);
                }
                Err(e) => item.fail(p, e),
            }
        }
        if matches!(&list.node.value, super::yaml::Value::List(items) if items.is_empty()) {
            list.fail(p, "must list at least one host:port address");
        }
    }
    let timeout = |key, default, p: &mut Problems| {
        let d = u.or(p, key, default, |f, p| f.parsed(p, super::parse_duration));
        if d.is_zero() {
            p.error(&u.spot_of(key), "must be longer than 0");
        }
        d
    };
    let connect_timeout = timeout("connect_timeout", Duration::from_secs(2), p);
    let read_timeout = timeout("read_timeout", Duration::from_secs(30), p);
    let protocol = u.or(p, "protocol", UpstreamProtocol::Http1, |f, p| {
        f.parsed(p, |s| match s {
            "http1" => Ok(UpstreamProtocol::Http1),
            "h2c" => Ok(UpstreamProtocol::H2c),
            "h2" => Ok(UpstreamProtocol::H2),
            _ => Err(format!(
                "expected \"http1\", \"h2c\" or \"h2\", got \"{s}\""
            )),
        })
    });
    let tls = u.or(p, "tls", protocol == UpstreamProtocol::H2, |f, p| f.bool(p));
    match (protocol, tls) {
        (UpstreamProtocol::H2c, true) => p.error(
            &u.spot_of("protocol"),
            "h2c is HTTP/2 without TLS; with tls: true, write protocol: h2",
        ),
        (UpstreamProtocol::H2, false) => p.error(
            &u.spot_of("tls"),
            "protocol: h2 is HTTP/2 over TLS; write protocol: h2c for plain TCP",
        ),
        _ => {}
    }
    let sni = u.get("sni").and_then(|f| f.str(p));
    if sni.is_some() && !tls {
        p.warn(&u.spot_of("sni"), "has no effect without tls: true");
    }
    Upstream {
        name,
        addrs,
        connect_timeout,
        read_timeout,
        tls,
        sni: sni.or(first_host).unwrap_or_default(),
        protocol,
    }
}

/// A list of unique names (roles, plans). `None` when the list itself is unusable, so that
/// references to it are not reported a second time.
fn read_names(f: &Field, kind: &str, p: &mut Problems) -> Option<Vec<String>> {
    let items = f.list(p)?;
    let mut names: Vec<(String, String)> = Vec::new();
    let mut usable = true;
    for item in items {
        let Some(name) = item.str(p) else {
            usable = false;
            continue;
        };
        if name.is_empty()
            || name.contains(|c: char| c.is_whitespace() || c.is_control() || c == ',')
        {
            item.fail(
                p,
                format!("invalid {kind} name \"{name}\": no spaces or commas"),
            );
            usable = false;
        } else if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
            item.fail(p, format!("duplicate {kind} \"{name}\" (first at {first})"));
        } else {
            names.push((name, item.path.clone()));
        }
    }
    usable.then(|| names.into_iter().map(|(n, _)| n).collect())
}

fn read_headers(top: &Fields, p: &mut Problems) -> IdentityHeaders {
    let h = top
        .get("headers")
        .map_or_else(|| Fields::absent("headers"), |f| f.fields(p, HEADER_KEYS));
    let mut read = |key, default| {
        h.or(p, key, default, |f, p| {
            f.parsed(p, |s| {
                http::HeaderName::from_bytes(s.as_bytes())
                    .map_err(|_| format!("invalid header name \"{s}\""))
            })
        })
    };
    let d = IdentityHeaders::default();
    let headers = IdentityHeaders {
        user_id: read("user_id", d.user_id),
        role: read("role", d.role),
        workspace: read("workspace", d.workspace),
        plan: read("plan", d.plan),
        issuer: read("issuer", d.issuer),
    };
    let listed = [
        ("user_id", &headers.user_id),
        ("role", &headers.role),
        ("workspace", &headers.workspace),
        ("plan", &headers.plan),
        ("issuer", &headers.issuer),
    ];
    for (i, (key, name)) in listed.iter().enumerate() {
        if RESERVED_HEADERS.contains(&name.as_str()) {
            p.error(
                &h.spot_of(key),
                format!("{name} is reserved and cannot carry identity"),
            );
        } else if let Some((other, _)) = listed[..i].iter().find(|(_, n)| n == name) {
            p.error(
                &h.spot_of(key),
                format!("same header as headers.{other} ({name})"),
            );
        }
    }
    headers
}
