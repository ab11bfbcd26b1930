//! Reads `routes` and checks each one against the rest of the file (declared roles, plans and
//! upstreams, the pattern's captures, the auth prefix), then warns about routes that an
//! earlier route hides.

use std::sync::Arc;
use std::time::Duration;

use super::cors::{self, RouteCors};
use super::schema::{key, Section, Ty};
use super::yaml::{Field, Fields, Pos, Problems, Spot};
use super::{parse_duration, parse_size, AuthMode, Cors, Rate, Route};
use crate::route::{MethodSet, Pattern, RouteTable};

#[rustfmt::skip]
pub(super) static ROUTE_KEYS: &Section = &Section {
    path: "routes[]",
    keys: &[
        key("path", Ty::Text, "Pattern: literal segments, {name} (one segment, captured), * (one segment), ** (zero or more, last only); case-sensitive.").required(),
        key("methods", Ty::List(&Ty::Text), "e.g. [GET, POST]; GET also covers HEAD (default: every method)."),
        key("upstream", Ty::Text, "The upstream to forward to; a route without one is served by the auth module and must lie under auth.prefix."),
        key("auth", Ty::OneOf(&["required", "none"]), "required (default): a valid access token; none: public (identity headers are still stripped)."),
        key("roles", Ty::List(&Ty::Text), "The token's role must be one of these declared roles."),
        key("plans", Ty::List(&Ty::Text), "The token's plan must be one of these."),
        key("owner", Ty::Text, "A capture of path that must equal the token's sub."),
        key("owner_bypass", Ty::List(&Ty::Text), "Roles that pass the owner rule anyway."),
        key("owner_issuers", Ty::List(&Ty::Text), "Trusted issuers whose users may own too (default: only the gateway's own users)."),
        key("workspace", Ty::Text, "A capture of path that must equal the token's workspace."),
        key("rate_limit", Ty::Rate, "Per user (per IP when public), e.g. 100/min, on top of the global limits."),
        key("cors", Ty::AnyOf(&[Ty::False, Ty::Map(cors::CORS_KEYS)]), "false: no CORS on this route; or a policy of its own, replacing the top-level cors."),
        key("max_body", Ty::Size, "Longest request body forwarded, e.g. 1MiB (default 10MiB); a longer one is answered 413."),
        key("timeout", Ty::Duration, "Replaces the upstream's read_timeout on this route; past it, 504."),
    ],
};

/// The `max_body` of a proxied route that sets none (nginx's `client_max_body_size` idea,
/// with room for ordinary uploads).
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// Names declared elsewhere in the file. `None` means that part of the file is itself broken
/// (already reported), so references to it are not checked.
pub(super) struct Known<'a> {
    pub roles: Option<&'a [String]>,
    /// Also `None` when `plans` is not declared: then any plan name is accepted.
    pub plans: Option<&'a [String]>,
    pub upstreams: Option<&'a [String]>,
    pub prefix: Option<&'a str>,
    /// The top-level `cors` policy, which routes take unless they say otherwise.
    pub cors: Option<&'a Arc<Cors>>,
    /// The auth module's policy (from `auth.allowed_origins`), for routes without an upstream.
    pub auth_cors: Option<&'a Arc<Cors>>,
}

/// `unknown role "admn" (known: admin, creator, viewer)`; sorted so the list is easy to scan.
pub(super) fn unknown(kind: &str, name: &str, known: &[String]) -> String {
    if known.is_empty() {
        return format!("unknown {kind} \"{name}\" (none are declared)");
    }
    let mut sorted: Vec<&str> = known.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    format!("unknown {kind} \"{name}\" (known: {})", sorted.join(", "))
}

/// Reads every route. When all of them are valid, also warns about shadowed ones.
pub(super) fn read(f: &Field, known: &Known, p: &mut Problems) -> Vec<Route> {
    let Some(items) = f.list(p) else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    let mut positions = Vec::new();
    for item in &items {
        if let Some(route) = read_route(item, known, p) {
            routes.push(route);
            positions.push(item.node.pos);
        }
    }
    if routes.len() == items.len() {
        let table = RouteTable::new(
            routes
                .iter()
                .map(|r| (r.pattern.clone(), r.methods.clone()))
                .collect(),
        );
        warn_shadowed(&table.shadowed(), &routes, &positions, p);
    }
    routes
}

/// Turns `RouteTable::shadowed` pairs into warnings at the hidden route.
pub(super) fn warn_shadowed(
    pairs: &[(usize, usize)],
    routes: &[Route],
    positions: &[Pos],
    p: &mut Problems,
) {
    for &(later, earlier) in pairs {
        let (Some(pos), Some(hider)) = (positions.get(later), routes.get(earlier)) else {
            continue;
        };
        let message = format!(
            "shadowed by routes[{earlier}] ({}), it can never match",
            hider.pattern.as_str()
        );
        p.warn(&Spot::Yaml(*pos, format!("routes[{later}]")), message);
    }
}

fn read_route(f: &Field, known: &Known, p: &mut Problems) -> Option<Route> {
    let r = f.fields(p, ROUTE_KEYS);
    let pattern = r
        .require(p, "path")
        .and_then(|f| f.parsed(p, Pattern::parse));
    let methods = r
        .get("methods")
        .and_then(|f| read_methods(&f, p))
        .unwrap_or_else(MethodSet::any);
    let upstream_field = r.get("upstream");
    let upstream = upstream_field.as_ref().and_then(|f| {
        let name = f.str(p)?;
        let names = known.upstreams?;
        let index = names.iter().position(|n| *n == name);
        if index.is_none() {
            f.fail(p, unknown("upstream", &name, names));
        }
        index
    });
    let auth = r.or(p, "auth", AuthMode::Required, |f, p| {
        f.parsed(p, |s| match s {
            "required" => Ok(AuthMode::Required),
            "none" => Ok(AuthMode::None),
            _ => Err(format!("expected \"required\" or \"none\", got \"{s}\"")),
        })
    });
    let roles = declared(r.get("roles"), "role", known.roles, p);
    let plans = declared(r.get("plans"), "plan", known.plans, p);
    let owner_bypass = declared(r.get("owner_bypass"), "role", known.roles, p);
    let owner = capture(r.get("owner"), pattern.as_ref(), p);
    let owner_issuers = r
        .get("owner_issuers")
        .and_then(|f| f.strings(p))
        .map(|items| items.into_iter().map(|(_, s)| s).collect())
        .unwrap_or_default();
    let workspace = capture(r.get("workspace"), pattern.as_ref(), p);
    let rate_limit = r.get("rate_limit").and_then(|f| f.parsed(p, Rate::parse));
    let (cors, max_body, timeout) = read_limits(&r, upstream_field.is_some(), known, p);

    if auth == AuthMode::None {
        let rules: Vec<&str> = ["roles", "plans", "owner", "workspace"]
            .into_iter()
            .filter(|key| r.get(key).is_some())
            .collect();
        if !rules.is_empty() {
            let message = format!(
                "a public route (auth: none) cannot have identity rules ({})",
                rules.join(", ")
            );
            p.error(&r.spot_of("auth"), message);
        }
    }
    for key in ["owner_bypass", "owner_issuers"] {
        if r.get(key).is_some() && r.get("owner").is_none() {
            p.warn(&r.spot_of(key), "has no effect without owner");
        }
    }
    let pattern = pattern?;
    // A misspelt `upstream` is reported once, with its hint.
    if upstream_field.is_none() && !r.misspelled("upstream") {
        if let Some(prefix) = known.prefix {
            if !is_under(pattern.as_str(), prefix) {
                let message = format!(
                    "route has no upstream; only routes under auth.prefix ({prefix}) may omit it"
                );
                f.fail(p, message);
            }
        }
    }
    Some(Route {
        pattern,
        methods,
        upstream,
        auth,
        roles,
        plans,
        owner,
        owner_bypass,
        owner_issuers,
        workspace,
        rate_limit,
        cors,
        max_body,
        timeout,
        line: f.node.pos.line,
    })
}

/// A route's `cors`, `max_body` and `timeout`. The auth module's routes take the auth
/// module's CORS policy (or `cors: false`) and have limits of their own.
fn read_limits(
    r: &Fields,
    proxied: bool,
    known: &Known,
    p: &mut Problems,
) -> (Option<Arc<Cors>>, u64, Option<Duration>) {
    let inherited = if proxied { known.cors } else { known.auth_cors };
    let cors = match r.get("cors").map(|f| (cors::read_route(&f, p), f)) {
        None => inherited.cloned(),
        Some((Some(RouteCors::Off), _)) | Some((None, _)) => None,
        Some((Some(RouteCors::Own(_)), f)) if !proxied => {
            f.fail(
                p,
                "a route of the auth module takes its CORS policy from auth.allowed_origins (only cors: false is allowed here)",
            );
            None
        }
        Some((Some(RouteCors::Own(policy)), _)) => Some(policy),
    };
    let max_body = r.or(p, "max_body", DEFAULT_MAX_BODY, |f, p| {
        f.parsed(p, parse_size)
    });
    let timeout = r.get("timeout").and_then(|f| f.parsed(p, parse_duration));
    if timeout.is_some_and(|d| d.is_zero()) {
        p.error(&r.spot_of("timeout"), "must be longer than 0");
    }
    if !proxied {
        for key in ["max_body", "timeout"] {
            if r.get(key).is_some() {
                let message = "not for a route of the auth module (no upstream): it reads at most 16KiB and answers itself";
                p.error(&r.spot_of(key), message);
            }
        }
    }
    (cors, max_body, timeout)
}

/// Segment-wise, so `/api/authz` is not under `/api/auth`.
fn is_under(pattern: &str, prefix: &str) -> bool {
    pattern
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Each method is checked alone first so a bad name is reported at its own item.
fn read_methods(f: &Field, p: &mut Problems) -> Option<MethodSet> {
    let items = f.strings(p)?;
    let mut all_valid = true;
    for (item, name) in &items {
        if let Err(e) = MethodSet::parse_list([name.as_str()]) {
            item.fail(p, e);
            all_valid = false;
        }
    }
    if !all_valid {
        return None;
    }
    MethodSet::parse_list(items.iter().map(|(_, n)| n.as_str()))
        .map_err(|e| f.fail(p, e))
        .ok()
}

/// A list of names that must each appear in `known` (when that is usable).
fn declared(
    f: Option<Field>,
    kind: &str,
    known: Option<&[String]>,
    p: &mut Problems,
) -> Vec<String> {
    let items = f.and_then(|f| f.strings(p)).unwrap_or_default();
    let mut names = Vec::new();
    for (item, name) in items {
        match known {
            Some(known) if !known.contains(&name) => item.fail(p, unknown(kind, &name, known)),
            _ => names.push(name),
        }
    }
    names
}

/// A capture name that the route's pattern must have.
fn capture(f: Option<Field>, pattern: Option<&Pattern>, p: &mut Problems) -> Option<String> {
    let f = f?;
    let name = f.str(p)?;
    if let Some(pattern) = pattern {
        let captures: Vec<&str> = pattern.capture_names().collect();
        if !captures.contains(&name.as_str()) {
            let listed = match captures.is_empty() {
                true => "it has no captures".to_string(),
                false => format!("captures: {}", captures.join(", ")),
            };
            f.fail(
                p,
                format!(
                    "\"{name}\" is not a capture of {} ({listed})",
                    pattern.as_str()
                ),
            );
        }
    }
    Some(name)
}
