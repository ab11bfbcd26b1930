//! The gateway's runtime configuration, loaded from `gateway.yaml` and validated once, up
//! front: every problem in the file is reported together as `FILE:LINE:COL: yaml.path: message`
//! so an operator fixes them in one pass, and nothing downstream re-checks the values.

mod auth;
mod auth_email;
mod cors;
mod forward_auth;
mod issuers;
mod rate_limit_store;
mod routes;
mod schema;
mod sections;
pub(crate) mod store_url;
#[cfg(test)]
mod tests;
mod tokens;
mod tracing;
mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::route::{MethodSet, Pattern};

pub use schema::json_schema;

pub use auth_email::{Email, Security, Template, Templates};
pub use forward_auth::{Cidr, ForwardAuth};
pub use tokens::PatSettings;
pub use tracing::Tracing;

/// Everything the gateway needs at runtime. Built only by [`load`] / [`parse`], so every value
/// in it has been validated.
#[derive(Clone)]
pub struct Config {
    /// The config file as the caller named it; reloads read it again.
    pub path: PathBuf,
    /// Where proxied traffic arrives; `PORT` overrides the port.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; keep it private.
    pub admin_listen: SocketAddr,
    /// `sqlite://<absolute path>` or a `postgres://` URL, which may carry a password.
    pub store: String,
    /// Present when HTTPS is also terminated.
    pub tls: Option<Tls>,
    /// In file order; [`Route::upstream`] indexes into this.
    pub upstreams: Vec<Upstream>,
    /// Token and auth-module settings.
    pub auth: Auth,
    /// Every role a rule may name, in file order (the first is the default signup role).
    pub roles: Vec<String>,
    /// Declared plan names; `None` means routes may name any plan.
    pub plans: Option<Vec<String>>,
    /// In file order: the first match wins.
    pub routes: Vec<Route>,
    /// Names of the identity headers sent upstream.
    pub headers: IdentityHeaders,
    /// How long in-flight requests may finish after a stop signal.
    pub shutdown_grace: Duration,
    /// Whether a client-sent `X-Forwarded-For` decides the client IP used for rate limits;
    /// only safe behind a proxy that overwrites it.
    pub trust_forwarded_for: bool,
    /// Whether each request is logged.
    pub access_log: bool,
    /// Whether the plain listener takes prior-knowledge HTTP/2 (h2c).
    pub h2c: bool,
    /// Where replicas share route, refresh and `/switch` counts; `None` = per replica.
    pub rate_limit_store: Option<RateLimitStore>,
    /// Where forward-auth questions from another proxy are answered; `None` = not at all.
    pub forward_auth_listen: Option<SocketAddr>,
    /// Who may ask them.
    pub forward_auth: ForwardAuth,
    /// OpenTelemetry traces of proxied requests; `None` = off.
    pub tracing: Option<Tracing>,
}

/// A Redis server that replicas count their route, refresh and `/switch` limits in,
/// when the file has `rate_limit_store`.
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimitStore {
    /// `redis://[user:password@]host[:port][/db]`, shape checked at load; may hold a password.
    pub url: String,
    /// How often each replica pushes its counts and reads the cluster's back.
    pub sync: Duration,
}

impl fmt::Debug for RateLimitStore {
    /// Hand-written so a Redis password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitStore")
            .field("url", &store_url::redact(&self.url))
            .field("sync", &self.sync)
            .finish()
    }
}

/// HTTPS termination, when the file has a `tls` section.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Where HTTPS traffic arrives.
    pub listen: SocketAddr,
    /// Resolved against the config file's directory; existence is checked at startup.
    pub cert: PathBuf,
    /// Private key for `cert`, resolved like it.
    pub key: PathBuf,
    /// Whether a returning client may skip the full handshake.
    pub session_resumption: bool,
    /// Whether ALPN offers `h2` beside `http/1.1`.
    pub http2: bool,
}

/// A named service behind the gateway.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The key under `upstreams`, named by routes and metrics.
    pub name: String,
    /// `host:port` strings with a valid shape; DNS is resolved by the proxy, not here.
    pub addrs: Vec<String>,
    /// Past this the request fails with 502.
    pub connect_timeout: Duration,
    /// Longest wait for response bytes; past this the request fails with 504.
    pub read_timeout: Duration,
    /// Whether the gateway speaks HTTPS to the upstream.
    pub tls: bool,
    /// Server name for TLS; defaults to the host of the first address.
    pub sni: String,
    /// What gRPC calls to it are forwarded as; other requests stay HTTP/1.1.
    pub protocol: UpstreamProtocol,
}

/// How gRPC calls reach an upstream (`upstreams.NAME.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only: gRPC cannot pass.
    Http1,
    /// HTTP/2 over plain TCP, prior knowledge.
    H2c,
    /// HTTP/2 over TLS, agreed by ALPN (implies `tls: true`).
    H2,
}

/// The token signing algorithm; its key material is found at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret (`JWT_SECRET`).
    HS256,
    /// Ed25519 key pair.
    EdDSA,
    /// ECDSA P-256 key pair.
    ES256,
    /// RSA key pair.
    RS256,
}

impl Algorithm {
    const ALL: [Algorithm; 4] = [
        Algorithm::HS256,
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
    ];

    /// The JOSE `alg` name, as written in config.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
        }
    }
}

/// Settings of the embedded auth module and of token checking.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `iss` of issued tokens, required on verified ones.
    pub issuer: String,
    /// `aud` of issued tokens, required on verified ones.
    pub audience: String,
    /// How tokens are signed.
    pub algorithm: Algorithm,
    /// `kid` header of issued tokens.
    pub key_id: String,
    /// At most 15 minutes, so a revoked session stops working soon.
    pub access_ttl: Duration,
    /// The longest `exp − iat` (before leeway) accepted on tokens signed with the
    /// gateway's key: `access_ttl` unless `max_lifetime` allows more, for a load harness
    /// that mints its own longer tokens with the shared secret.
    pub max_lifetime: Duration,
    /// Always longer than `access_ttl`.
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp`/`nbf`; at most 30 s.
    pub leeway: Duration,
    /// Path prefix served by the auth module: starts with `/`, no trailing slash.
    pub prefix: String,
    /// Self-service account creation.
    pub signup: Signup,
    /// How long a just-rotated refresh token is still accepted (concurrent tabs); at most 60 s.
    pub refresh_grace: Duration,
    /// Browser origins (`scheme://host[:port]`, lower-case) allowed to call the auth module.
    pub allowed_origins: Vec<String>,
    /// Cookie carrying the refresh token.
    pub cookie_name: String,
    /// The refresh cookie's `SameSite`: `Strict` unless an app on another site needs it.
    pub cookie_same_site: SameSite,
    /// Whether refresh tokens are also returned in (and accepted from) JSON bodies.
    pub refresh_in_body: bool,
    /// Limits on the auth endpoints.
    pub rate_limits: AuthRateLimits,
    /// Resolved against the config file's directory.
    pub keys_dir: PathBuf,
    /// How often signing keys are rotated; `None` = no scheduled rotation.
    pub key_rotation: Option<Duration>,
    /// Identity providers whose tokens are accepted on routes too.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Personal access tokens.
    pub pat: PatSettings,
    /// Roles whose users must enroll a TOTP second factor before anything else.
    pub require_mfa_for_roles: Vec<String>,
    /// Account mail (verification, password reset); `None` = those endpoints answer 404.
    pub email: Option<Arc<Email>>,
    /// Login refuses accounts whose address is not verified (only with `email`).
    pub require_verified_email: bool,
}

/// Which cross-site requests a browser sends the refresh cookie with (`auth.cookie_same_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Only requests from the gateway's own site (the default).
    Strict,
    /// Also top-level navigations from other sites.
    Lax,
    /// Every request, from any site; the cookie is `Secure` in every case.
    None,
}

impl SameSite {
    pub const ALL: [SameSite; 3] = [SameSite::Strict, SameSite::Lax, SameSite::None];

    /// The attribute's value, as written in config and in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// An identity provider (Auth0, Keycloak, Okta, another service) whose tokens
/// the gateway verifies with the keys it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry, compared exactly.
    pub issuer: String,
    /// Where its JWKS document is fetched: https, or http to loopback only.
    pub jwks_url: http::Uri,
    /// The `aud` its tokens must carry to be accepted here.
    pub audience: String,
    /// The claim holding the role (a string) or roles (a list); a dotted path
    /// reaches into objects (`realm_access.roles`) when no claim has the whole name.
    pub role_claim: String,
    /// How often the JWKS document is fetched again.
    pub jwks_refresh: Duration,
    /// Fewest seconds between two fetches an unknown `kid` may cause.
    pub refetch_interval: Duration,
}

/// Self-service account creation.
#[derive(Debug, Clone)]
pub struct Signup {
    /// Whether the auth module lets new users create accounts.
    pub enabled: bool,
    /// Always a declared role.
    pub default_role: String,
}

/// Limits on the auth module's endpoints, per client IP unless named otherwise.
#[derive(Debug, Clone)]
pub struct AuthRateLimits {
    /// Login attempts per client IP.
    pub login: Rate,
    /// Login attempts per account, whatever the IP (slows password guessing).
    pub login_per_email: Rate,
    /// Token refreshes per client IP.
    pub refresh: Rate,
    /// Signups per client IP.
    pub signup: Rate,
    /// Mail-sending requests (forgot password, resend verification) per client IP.
    pub mail: Rate,
    /// Mails to one address; over it requests still answer 202 but send nothing.
    pub mail_per_email: Rate,
    /// Verification and reset token uses per client IP.
    pub account_tokens: Rate,
}

/// `count` requests per `per`, written `10/min` in config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window; at least 1.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/unit` (units `s`/`sec`, `m`/`min`, `h`/`hour`, `d`/`day`, N ≥ 1), as written in
    /// `rate_limit` and `auth.rate_limits`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || {
            format!("invalid rate \"{s}\": expected N/unit like 10/min (units: s, sec, m, min, h, hour, d, day)")
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "invalid rate \"{s}\": the count must be at least 1"
            ));
        }
        let secs = match unit.trim() {
            "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        Ok(Rate {
            count,
            per: Duration::from_secs(secs),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "hour",
            86_400 => "day",
            _ => return write!(f, "{}/{}", self.count, human(self.per)),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Whether a route needs a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid access token is needed (the default).
    Required,
    /// Public: no token checked, so no identity rules are allowed on the route.
    None,
}

/// One entry of `routes`, with its references already checked against the rest of the file.
#[derive(Debug, Clone)]
pub struct Route {
    /// What request paths the route matches.
    pub pattern: Pattern,
    /// Methods the route accepts; all when `methods` is absent.
    pub methods: MethodSet,
    /// Index into [`Config::upstreams`]; `None` = served by the embedded auth module.
    pub upstream: Option<usize>,
    /// Whether a token is needed.
    pub auth: AuthMode,
    /// Any of these roles is enough; empty = any signed-in user.
    pub roles: Vec<String>,
    /// Any of these plans is enough; empty = no plan rule.
    pub plans: Vec<String>,
    /// Capture name that must equal the token's subject.
    pub owner: Option<String>,
    /// Roles that pass the owner rule anyway.
    pub owner_bypass: Vec<String>,
    /// Trusted issuers (their `issuer` URLs) whose identities the owner rule
    /// accepts besides the gateway's own; by default none (RFC 8725 §3.8).
    pub owner_issuers: Vec<String>,
    /// Capture name that must equal the token's workspace.
    pub workspace: Option<String>,
    /// Per-client limit on this route, on top of the global ones.
    pub rate_limit: Option<Rate>,
    /// The CORS policy of the route (its own `cors`, else the top-level one; the auth
    /// module's routes take `auth.allowed_origins`); `None` = no CORS fields, and
    /// preflights go through like any other request.
    pub cors: Option<Arc<Cors>>,
    /// Longest request body forwarded, in bytes (10 MiB unless set). Routes of the auth
    /// module read at most `auth::endpoints::MAX_BODY` whatever this says.
    pub max_body: u64,
    /// Replaces the upstream's `read_timeout` on this route.
    pub timeout: Option<Duration>,
    /// Line of the route in the config file, for `explain` and warnings.
    pub line: usize,
}

/// Cross-origin resource sharing for browser apps on other origins: who may call a
/// route, with what, and what their scripts may read of the answer. Validated and
/// joined into field values once, so an answer only copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Serialized origins (`https://app.example.com`: lower case, no default port),
    /// compared byte for byte with a request's `Origin`. Empty when `any_origin`.
    pub origins: Vec<String>,
    /// `origins: ["*"]`: any origin, never with `credentials`.
    pub any_origin: bool,
    /// Methods a preflight may ask for, spelled exactly.
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for, lower case.
    pub headers: Vec<String>,
    /// Answer headers scripts may read besides the safelisted ones.
    pub expose_headers: Vec<String>,
    /// Whether requests with cookies (`credentials: 'include'`) may read answers.
    pub credentials: bool,
    /// How long a browser may reuse a preflight's answer.
    pub max_age: Option<Duration>,
    /// `methods` joined, the `Access-Control-Allow-Methods` value.
    pub allow_methods: String,
    /// `headers` joined, the `Access-Control-Allow-Headers` value.
    pub allow_headers: String,
    /// `expose_headers` joined, the `Access-Control-Expose-Headers` value.
    pub expose: String,
    /// `max_age` in seconds, the `Access-Control-Max-Age` value; empty when unset.
    pub max_age_secs: String,
}

/// Request headers the gateway sets (after removing client-sent copies) to tell upstreams
/// who is calling. Distinct from each other.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Carries the token subject (default `x-user-id`).
    pub user_id: http::HeaderName,
    /// Carries the role (default `x-user-role`).
    pub role: http::HeaderName,
    /// Carries the workspace (default `x-workspace-id`).
    pub workspace: http::HeaderName,
    /// Carries the plan (default `x-user-plan`).
    pub plan: http::HeaderName,
    /// Carries the issuer that vouched for the identity (default `x-user-issuer`):
    /// the gateway's own `auth.issuer`, or a trusted issuer's. An upstream that
    /// keys data by user id must key it by (issuer, id), since two issuers can
    /// name different people with the same `sub`.
    pub issuer: http::HeaderName,
}

impl Default for IdentityHeaders {
    /// The identity headers' names (docs/configuration.md, `headers`): `X-User-Id`,
    /// `X-User-Role`, `X-Workspace-Id`, `X-User-Plan`, `X-User-Issuer` by default.
    fn default() -> Self {
        IdentityHeaders {
            user_id: http::HeaderName::from_static("x-user-id"),
            role: http::HeaderName::from_static("x-user-role"),
            workspace: http::HeaderName::from_static("x-workspace-id"),
            plan: http::HeaderName::from_static("x-user-plan"),
            issuer: http::HeaderName::from_static("x-user-issuer"),
        }
    }
}

/// A valid config and the non-fatal remarks about it, formatted like errors.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// e.g. `gateway.yaml:14:5: routes[3]: shadowed by routes[1] (/api/**), it can never match`.
    pub warnings: Vec<String>,
}

/// One problem with the config. Display gives `FILE:LINE:COL: yaml.path: message`, or
/// `env VAR: message` for a bad environment override, or `FILE: message` when the file as a
/// whole is the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: String,
    origin: Origin,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// `path` is empty for problems with the document itself (syntax errors).
    Yaml {
        line: usize,
        col: usize,
        path: String,
    },
    Env(String),
    File,
}

impl ConfigError {
    /// 1-based line in the file, when the problem has one.
    pub fn line(&self) -> Option<usize> {
        match self.origin {
            Origin::Yaml { line, .. } => Some(line),
            _ => None,
        }
    }

    /// 1-based column in the file, when the problem has one.
    pub fn column(&self) -> Option<usize> {
        match self.origin {
            Origin::Yaml { col, .. } => Some(col),
            _ => None,
        }
    }

    /// The environment variable whose value is wrong, for env override problems.
    pub fn env_var(&self) -> Option<&str> {
        match &self.origin {
            Origin::Env(var) => Some(var),
            _ => None,
        }
    }

    /// The message without its location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Sort key: file problems in file order, then environment ones.
    fn order(&self) -> (u8, usize, usize) {
        match self.origin {
            Origin::File => (0, 0, 0),
            Origin::Yaml { line, col, .. } => (1, line, col),
            Origin::Env(_) => (2, 0, 0),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Yaml { line, col, path } if path.is_empty() => {
                write!(f, "{}:{line}:{col}: {}", self.file, self.message)
            }
            Origin::Yaml { line, col, path } => {
                write!(f, "{}:{line}:{col}: {path}: {}", self.file, self.message)
            }
            Origin::Env(var) => write!(f, "env {var}: {}", self.message),
            Origin::File => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the config file at `path`; `env` looks up environment overrides.
/// Returns every problem found, in file order, or the config with its warnings.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text, env),
        Err(e) => Err(vec![ConfigError {
            file: path.display().to_string(),
            origin: Origin::File,
            message: format!("cannot read: {e}"),
        }]),
    }
}

/// Like [`load`] with the file's text given; `path` names the file in messages and anchors
/// relative paths.
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Vec<ConfigError>> {
    let file = path.display().to_string();
    let root = match yaml::parse(text, &schema::all_key_names()) {
        Ok(root) => root,
        Err((pos, message)) => {
            let origin = Origin::Yaml {
                line: pos.line,
                col: pos.col,
                path: String::new(),
            };
            return Err(vec![ConfigError {
                file,
                origin,
                message,
            }]);
        }
    };
    let mut problems = yaml::Problems::new(file);
    let config = sections::read(&root, path, env, &mut problems);
    let mut errors = problems.errors;
    if !errors.is_empty() {
        errors.sort_by_key(ConfigError::order);
        return Err(errors);
    }
    let mut warnings = problems.warnings;
    warnings.sort_by_key(ConfigError::order);
    Ok(Loaded {
        config,
        warnings: warnings.iter().map(ToString::to_string).collect(),
    })
}

/// Parses `500ms`, `30s`, `15m`, `2h` or `7d` (a whole number and one unit), as used in the
/// config file and by the CLI (`--ttl 15m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        format!("invalid duration \"{s}\": expected a number and a unit, like 30s (units: ms, s, m, h, d)")
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration \"{s}\": too large"))
}

/// Binary and decimal size units, largest first, for [`parse_size`] and [`human_size`].
const SIZE_UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses a byte count: `1048576`, `512KiB`, `1MiB`, `2GiB`, or the decimal `KB`, `MB`, `GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        format!("invalid size \"{s}\": expected a number and an optional unit, like 1MiB (units: B, KB, MB, GB, KiB, MiB, GiB)")
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let per_unit = match unit.trim() {
        "" => 1,
        unit => {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(bad)?
                .1
        }
    };
    n.checked_mul(per_unit)
        .ok_or_else(|| format!("invalid size \"{s}\": too large"))
}

/// A byte count in the largest binary unit that states it exactly (`10MiB`), else in bytes.
pub(crate) fn human_size(bytes: u64) -> String {
    for (unit, size) in &SIZE_UNITS[..3] {
        if bytes != 0 && bytes.is_multiple_of(*size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// A duration in the largest unit that states it exactly, the way config writes it.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let units = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in units {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

impl fmt::Debug for Config {
    /// Hand-written so a store password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("store", &store_url::redact(&self.store))
            .field("tls", &self.tls)
            .field("upstreams", &self.upstreams)
            .field("auth", &self.auth)
            .field("roles", &self.roles)
            .field("plans", &self.plans)
            .field("routes", &self.routes)
            .field("headers", &self.headers)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("access_log", &self.access_log)
            .field("h2c", &self.h2c)
            .field("rate_limit_store", &self.rate_limit_store)
            .field("forward_auth_listen", &self.forward_auth_listen)
            .field("forward_auth", &self.forward_auth)
            .field("tracing", &self.tracing)
            .finish()
    }
}
