//! Reads the `auth` section: token settings, the embedded auth module's options, and the
//! `JWT_EXPIRES_IN` / `JWT_REFRESH_EXPIRES_IN` overrides that Express-style deployments set.

use std::path::Path;
use std::time::Duration;

use super::schema::{key, Section, Ty};
use super::sections::{env_value, parse_host_port, resolve, Env};
use super::yaml::{Field, Fields, Problems, Spot};
use super::{human, parse_duration, Algorithm, Auth, AuthRateLimits, Rate, SameSite, Signup};

#[rustfmt::skip]
pub(super) static AUTH_KEYS: &Section = &Section {
    path: "auth",
    keys: &[
        key("issuer", Ty::Text, "iss of issued tokens, required on accepted ones.").required(),
        key("audience", Ty::Text, "aud of issued tokens, required on accepted ones.").required(),
        key("algorithm", Ty::OneOf(&["HS256", "EdDSA", "ES256", "RS256"]), "How tokens are signed (default HS256, with JWT_SECRET; the others with keys kept in the store)."),
        key("key_id", Ty::Text, "kid of HS256 tokens (default hs256)."),
        key("access_ttl", Ty::Duration, "Access token lifetime (default and at most 15m); JWT_EXPIRES_IN replaces it."),
        key("max_lifetime", Ty::Duration, "Longest exp - iat accepted on tokens signed with the gateway's key (default access_ttl, up to 1d), for a load harness; never raise it in production."),
        key("refresh_ttl", Ty::Duration, "Refresh token lifetime, longer than access_ttl (default 7d); JWT_REFRESH_EXPIRES_IN replaces it."),
        key("leeway", Ty::Duration, "Clock skew allowed on exp, nbf and iat (default 5s, at most 30s)."),
        key("prefix", Ty::Text, "Path prefix the auth module serves: starts with /, no trailing slash (default /api/auth)."),
        key("signup", Ty::Map(SIGNUP_KEYS), "Self-service account creation."),
        key("refresh_grace", Ty::Duration, "How long a just-rotated refresh token is still accepted, for concurrent tabs (default 10s, at most 1m)."),
        key("allowed_origins", Ty::List(&Ty::Text), "Browser origins (scheme://host[:port]) allowed to call the auth module."),
        key("cookie_name", Ty::Text, "Cookie carrying the refresh token (default __Secure-refresh_token)."),
        key("cookie_same_site", Ty::OneOf(&["Strict", "Lax", "None"]), "The refresh cookie's SameSite (default Strict); Lax or None for an app on another site, with a warning saying what that gives up."),
        key("refresh_in_body", Ty::Bool, "Also return refresh tokens in (and accept them from) JSON bodies (default false)."),
        key("rate_limits", Ty::Map(RATE_KEYS), "Limits on the auth endpoints."),
        key("email", Ty::Map(super::auth_email::EMAIL_KEYS), "Account mail over SMTP: email verification and password reset (default: off)."),
        key("require_verified_email", Ty::Bool, "Refuse login (403 Email not verified) until the address is verified; needs email (default false)."),
        key("keys_dir", Ty::Text, "Where an earlier version kept EdDSA / ES256 / RS256 key files, imported into the store on first start (default data/keys, relative to this file)."),
        key("key_rotation", Ty::Duration, "Rotate the signing key on this schedule, e.g. 30d (default: only by hand, portcullis keys rotate)."),
        key("trusted_issuers", Ty::Maps(super::issuers::ISSUER_KEYS), "Identity providers whose tokens routes accept too."),
        key("pat", Ty::Map(super::tokens::PAT_KEYS), "Personal access tokens."),
        key("require_mfa_for_roles", Ty::List(&Ty::Text), "Roles whose users must enroll a TOTP second factor before anything else (default none)."),
    ],
};
#[rustfmt::skip]
static SIGNUP_KEYS: &Section = &Section {
    path: "auth.signup",
    keys: &[
        key("enabled", Ty::Bool, "Whether new users may create accounts (default true)."),
        key("default_role", Ty::Text, "Role of new accounts, a declared role (default: the first of roles)."),
    ],
};
#[rustfmt::skip]
static RATE_KEYS: &Section = &Section {
    path: "auth.rate_limits",
    keys: &[
        key("login", Ty::Rate, "Login attempts per client IP (default 10/min)."),
        key("login_per_email", Ty::Rate, "Login attempts per account, whatever the IP (default 5/min)."),
        key("refresh", Ty::Rate, "Token refreshes per client IP (default 60/min)."),
        key("signup", Ty::Rate, "Signups per client IP (default 10/min)."),
        key("mail", Ty::Rate, "Mail-sending requests (password/forgot, verify-email/resend) per client IP (default 5/min)."),
        key("mail_per_email", Ty::Rate, "Mails sent to one address, whatever the IP; over it the request still answers 202 and nothing is sent (default 5/h)."),
        key("account_tokens", Ty::Rate, "Verification and reset token uses per client IP (default 10/min)."),
    ],
};

/// Longest access token lifetime: access tokens cannot be revoked, so they must expire soon.
const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// Longest `max_lifetime`: a harness's tokens, not a session's.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
const MAX_REFRESH_GRACE: Duration = Duration::from_secs(60);

/// Reads `auth` (required). The flag says whether `prefix` is valid, so routes are only
/// checked against a prefix the operator actually meant.
pub(super) fn read(
    top: &Fields,
    roles: Option<&[String]>,
    dir: &Path,
    env: Env,
    p: &mut Problems,
) -> (Auth, bool) {
    let a = match top.require(p, "auth") {
        Some(f) => f.fields(p, AUTH_KEYS),
        None => Fields::absent("auth"),
    };
    let text = |key: &str, default: &str, p: &mut Problems| {
        let value = match default.is_empty() {
            true => a.require(p, key).and_then(|f| f.str(p)),
            false => a.get(key).and_then(|f| f.str(p)),
        };
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            p.error(&a.spot_of(key), "must not be empty");
        }
        value.unwrap_or_else(|| default.to_string())
    };
    // An empty default marks the key as required.
    let issuer = text("issuer", "", p);
    let audience = text("audience", "", p);
    let key_id = text("key_id", "hs256", p);
    let algorithm = a.or(p, "algorithm", Algorithm::HS256, |f, p| {
        f.parsed(p, parse_algorithm)
    });

    let (access_ttl, access_spot) = ttl(
        &a,
        "access_ttl",
        "JWT_EXPIRES_IN",
        Duration::from_secs(15 * 60),
        env,
        p,
    );
    let (refresh_ttl, refresh_spot) = ttl(
        &a,
        "refresh_ttl",
        "JWT_REFRESH_EXPIRES_IN",
        Duration::from_secs(7 * 86_400),
        env,
        p,
    );
    if access_ttl.is_zero() {
        p.error(&access_spot, "must be longer than 0");
    } else if access_ttl > MAX_ACCESS_TTL {
        p.error(
            &access_spot,
            format!(
                "must be at most {} (got {})",
                human(MAX_ACCESS_TTL),
                human(access_ttl)
            ),
        );
    }
    if refresh_ttl <= access_ttl {
        let message = format!(
            "must be longer than access_ttl ({}), got {}",
            human(access_ttl),
            human(refresh_ttl)
        );
        p.error(&refresh_spot, message);
    }
    let max_lifetime = read_max_lifetime(&a, access_ttl, p);
    let leeway = bounded(&a, "leeway", Duration::from_secs(5), MAX_LEEWAY, p);
    let refresh_grace = bounded(
        &a,
        "refresh_grace",
        Duration::from_secs(10),
        MAX_REFRESH_GRACE,
        p,
    );
    let key_rotation = a
        .get("key_rotation")
        .and_then(|f| f.parsed(p, parse_duration));
    if key_rotation.is_some_and(|d| d.is_zero()) {
        p.error(&a.spot_of("key_rotation"), "must be longer than 0");
    }

    let prefix = a.or(p, "prefix", "/api/auth".to_string(), |f, p| f.str(p));
    let prefix_problem = check_prefix(&prefix);
    if let Some(problem) = prefix_problem {
        p.error(&a.spot_of("prefix"), problem);
    }

    let cookie_name = a.or(
        p,
        "cookie_name",
        "__Secure-refresh_token".to_string(),
        |f, p| f.str(p),
    );
    if !is_cookie_name(&cookie_name) {
        p.error(
            &a.spot_of("cookie_name"),
            format!("invalid cookie name \"{cookie_name}\""),
        );
    }
    let cookie_same_site = read_same_site(&a, p);
    let allowed_origins = a
        .get("allowed_origins")
        .and_then(|f| f.strings(p))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(item, origin)| parse_origin(&origin).map_err(|e| item.fail(p, e)).ok())
        .collect();

    let trusted_issuers = super::issuers::read(a.get("trusted_issuers"), &issuer, p);
    let email = super::auth_email::read(&a, dir, env, p);
    let require_verified_email = a.or(p, "require_verified_email", false, |f, p| f.bool(p));
    if require_verified_email && email.is_none() {
        let why = "needs auth.email: without mail no address can ever be verified";
        p.error(&a.spot_of("require_verified_email"), why);
    }
    let auth = Auth {
        issuer,
        audience,
        algorithm,
        key_id,
        access_ttl,
        max_lifetime,
        refresh_ttl,
        leeway,
        prefix,
        signup: read_signup(&a, roles, p),
        refresh_grace,
        allowed_origins,
        cookie_name,
        cookie_same_site,
        refresh_in_body: a.or(p, "refresh_in_body", false, |f, p| f.bool(p)),
        rate_limits: read_rate_limits(&a, p),
        keys_dir: resolve(
            dir,
            &a.or(p, "keys_dir", "data/keys".to_string(), |f, p| f.str(p)),
        ),
        key_rotation,
        trusted_issuers,
        pat: super::tokens::read_pat(&a, p),
        require_mfa_for_roles: super::tokens::read_mfa_roles(&a, roles, p),
        email: email.map(std::sync::Arc::new),
        require_verified_email,
    };
    (auth, prefix_problem.is_none())
}

/// `max_lifetime`: from `access_ttl` (the default: the gateway's own tokens never live
/// longer) to a day.
fn read_max_lifetime(a: &Fields, access_ttl: Duration, p: &mut Problems) -> Duration {
    let Some(lifetime) = a
        .get("max_lifetime")
        .and_then(|f| f.parsed(p, parse_duration))
    else {
        return access_ttl;
    };
    if lifetime < access_ttl || lifetime > MAX_TOKEN_LIFETIME {
        let message = format!(
            "must be from access_ttl ({}) to {}, got {}",
            human(access_ttl),
            human(MAX_TOKEN_LIFETIME),
            human(lifetime)
        );
        p.error(&a.spot_of("max_lifetime"), message);
        return access_ttl;
    }
    lifetime
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Algorithm::ALL.iter().map(Algorithm::as_str).collect();
            format!("unknown algorithm \"{s}\" (allowed: {})", names.join(", "))
        })
}

/// A token lifetime from the file, replaced by `var` when set; also says where it came from.
fn ttl(
    a: &Fields,
    key: &str,
    var: &'static str,
    default: Duration,
    env: Env,
    p: &mut Problems,
) -> (Duration, Spot) {
    let from_file = a.or(p, key, default, |f, p| f.parsed(p, parse_duration));
    let Some(value) = env_value(env, var) else {
        return (from_file, a.spot_of(key));
    };
    let spot = Spot::Env(var);
    // Express apps pass plain seconds (`900`), so both spellings are accepted.
    let parsed = match value.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(&value),
    };
    match parsed {
        Ok(d) => (d, spot),
        Err(_) => {
            let message = format!(
                "invalid duration \"{value}\": expected seconds (900) or a duration like 15m"
            );
            p.error(&spot, message);
            (from_file, spot)
        }
    }
}

fn bounded(a: &Fields, key: &str, default: Duration, max: Duration, p: &mut Problems) -> Duration {
    let d = a.or(p, key, default, |f, p| f.parsed(p, parse_duration));
    if d > max {
        p.error(
            &a.spot_of(key),
            format!("must be at most {} (got {})", human(max), human(d)),
        );
    }
    d
}

fn check_prefix(prefix: &str) -> Option<&'static str> {
    if !prefix.starts_with('/') {
        Some("must start with '/'")
    } else if prefix.ends_with('/') {
        Some("must not end with '/'")
    } else if prefix.contains(|c: char| c.is_whitespace() || "*{}?#".contains(c)) {
        Some("must be a plain path (no *, {, }, ?, # or spaces)")
    } else {
        None
    }
}

/// RFC 6265 cookie-name: an HTTP token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// `cookie_same_site` (default `Strict`), with a warning saying what `Lax` or `None` gives up.
fn read_same_site(a: &Fields, p: &mut Problems) -> SameSite {
    let same_site = a.or(p, "cookie_same_site", SameSite::Strict, |f, p| {
        f.parsed(p, |s| {
            SameSite::ALL
                .into_iter()
                .find(|v| v.as_str() == s)
                .ok_or_else(|| format!("expected Strict, Lax or None, got \"{s}\""))
        })
    });
    let gives_up = match same_site {
        SameSite::Strict => return same_site,
        SameSite::Lax => "the refresh cookie is also sent with top-level navigations from other sites (a link, a GET); the auth endpoints act only on POST, so little is given up, but a cross-site fetch still goes without it: an app on another site needs None",
        SameSite::None => "the refresh cookie is sent with requests from every site (still Secure: over HTTPS, or to localhost); only the Origin / Sec-Fetch-Site checks and the JSON-only rule of the auth endpoints then keep other sites from using the session, and browsers that block third-party cookies drop it anyway",
    };
    p.warn(&a.spot_of("cookie_same_site"), gives_up);
    same_site
}

/// `scheme://host[:port]`, lower-cased because browsers send `Origin` that way.
pub(super) fn parse_origin(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or_else(|| format!("invalid origin \"{s}\": expected scheme://host[:port]"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "invalid origin \"{s}\": the scheme must be http or https"
        ));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "invalid origin \"{s}\": an origin has no path, like https://app.example.com"
        ));
    }
    let has_port = match rest.strip_prefix('[') {
        Some(bracketed) => bracketed.contains("]:"),
        None => rest.contains(':'),
    };
    let with_port = if has_port {
        rest.to_string()
    } else {
        format!("{rest}:443")
    };
    match parse_host_port(&with_port) {
        Ok(_) => Ok(lower),
        Err(_) => Err(format!("invalid origin \"{s}\": malformed host or port")),
    }
}

fn read_signup(a: &Fields, roles: Option<&[String]>, p: &mut Problems) -> Signup {
    let s = match a.get("signup") {
        Some(f) => f.fields(p, SIGNUP_KEYS),
        None => Fields::absent("auth.signup"),
    };
    let enabled = s.or(p, "enabled", true, |f, p| f.bool(p));
    let first_role = roles.and_then(|r| r.first()).cloned().unwrap_or_default();
    let default_role = match s.get("default_role") {
        Some(f) => {
            let role = f.str(p).unwrap_or_default();
            if let Some(known) = roles.filter(|known| !known.contains(&role)) {
                f.fail(p, super::routes::unknown("role", &role, known));
            }
            role
        }
        None => first_role,
    };
    Signup {
        enabled,
        default_role,
    }
}

fn read_rate_limits(a: &Fields, p: &mut Problems) -> AuthRateLimits {
    let r = match a.get("rate_limits") {
        Some(f) => f.fields(p, RATE_KEYS),
        None => Fields::absent("auth.rate_limits"),
    };
    let mut rate = |key, count, per| {
        let default = Rate {
            count,
            per: Duration::from_secs(per),
        };
        r.or(p, key, default, |f: &Field, p| f.parsed(p, Rate::parse))
    };
    AuthRateLimits {
        login: rate("login", 10, 60),
        login_per_email: rate("login_per_email", 5, 60),
        refresh: rate("refresh", 60, 60),
        signup: rate("signup", 10, 60),
        mail: rate("mail", 5, 60),
        mail_per_email: rate("mail_per_email", 5, 3_600),
        account_tokens: rate("account_tokens", 10, 60),
    }
}
