//! CORS, for browser apps on other origins: preflights answered by the gateway
//! itself, before authentication (a browser sends them without credentials, so
//! an upstream behind the gateway would only ever see 401s), and the fields that
//! let a page read an answer, on every answer of a route with a policy (the
//! gateway's own refusals too, or a page could not tell a 401 from a network
//! error). The policies are compiled at load (`config::Cors`); a request without
//! `Origin` costs one field lookup here and nothing else.

use super::Ctx;
use crate::config::Cors;
use crate::http1::{framing, Head, Request};
use crate::route;
use http::Method;

/// What the gateway answers a preflight on a route with a policy.
pub enum Preflight {
    /// 204 with the policy's allowances.
    Allowed,
    /// 403 without any: the origin, method or a header is not in the policy.
    Refused,
}

/// The request's `Origin`, kept for the CORS fields of its answer. A copy, but only
/// of requests that have one (browsers' cross-origin ones, and their same-origin
/// writes).
pub fn origin(req: &Request) -> Option<Box<[u8]>> {
    req.header("origin").map(Box::from)
}

/// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) for a
/// route with a policy, matched by the method it asks about: what to answer. `None`
/// for anything else, which goes through the pipeline as usual (a route without CORS
/// gets its preflights like any request).
pub fn preflight(req: &Request, ctx: &mut Ctx) -> Option<Preflight> {
    if req.method != Method::OPTIONS {
        return None;
    }
    let origin = ctx.origin.as_deref()?;
    let asked = req.header("access-control-request-method")?;
    let method = Method::from_bytes(asked).ok()?;
    let (raw_path, _) = framing::target(req).ok()?;
    let path = route::normalize(raw_path).ok()?;
    let gw = ctx.gateway.clone();
    let index = gw.routes.find(&method, &path)?.index;
    let policy = gw.config.routes[index].cors.as_deref()?;
    let allowed = allows_origin(policy, origin)
        && policy.methods.iter().any(|m| m.as_bytes() == asked)
        && req
            .all("access-control-request-headers")
            .flat_map(|list| list.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|name| !name.is_empty())
            .all(|name| {
                policy
                    .headers
                    .iter()
                    .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            });
    ctx.path = path;
    ctx.route = Some(index);
    if allowed {
        ctx.decision = "preflight";
        Some(Preflight::Allowed)
    } else {
        // Nothing on the refusal may read as an allowance.
        ctx.origin = None;
        ctx.decision = "cors_refused";
        Some(Preflight::Refused)
    }
}

/// The fields only a preflight's answer carries; `fields` adds the origin's.
pub fn preflight_fields(head: &mut Head, ctx: &Ctx) {
    let Some(policy) = policy(ctx) else {
        return;
    };
    head.field(
        b"Access-Control-Allow-Methods",
        policy.allow_methods.as_bytes(),
    );
    if !policy.allow_headers.is_empty() {
        head.field(
            b"Access-Control-Allow-Headers",
            policy.allow_headers.as_bytes(),
        );
    }
    if !policy.max_age_secs.is_empty() {
        head.field(b"Access-Control-Max-Age", policy.max_age_secs.as_bytes());
    }
    head.field(
        b"Vary",
        b"Access-Control-Request-Method, Access-Control-Request-Headers",
    );
}

/// The fields of every answer on a route with a policy: `Vary: Origin` (caches must
/// not hand one origin's answer to another), and, for an origin the policy allows,
/// the origin itself (never `*` with credentials), whether credentials may be used
/// and which answer fields scripts may read.
pub fn fields(head: &mut Head, ctx: &Ctx) {
    let Some(policy) = policy(ctx) else {
        return;
    };
    head.field(b"Vary", b"Origin");
    let Some(origin) = ctx.origin.as_deref() else {
        return;
    };
    if !allows_origin(policy, origin) {
        return;
    }
    if policy.any_origin {
        // `config` refuses a wildcard with credentials.
        head.field(b"Access-Control-Allow-Origin", b"*");
    } else {
        head.field(b"Access-Control-Allow-Origin", origin);
    }
    if policy.credentials {
        head.field(b"Access-Control-Allow-Credentials", b"true");
    }
    if !policy.expose.is_empty() {
        head.field(b"Access-Control-Expose-Headers", policy.expose.as_bytes());
    }
}

/// Whether an upstream's answer field is one the gateway writes itself on this
/// route, so the upstream's is dropped: a route with a policy has one source of
/// CORS fields.
pub fn replaces(name: &[u8], ctx: &Ctx) -> bool {
    const PREFIX: &[u8] = b"access-control-";
    name.len() > PREFIX.len()
        && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && policy(ctx).is_some()
}

/// The policy of the request's route, once it has one.
fn policy(ctx: &Ctx) -> Option<&Cors> {
    ctx.gateway.config.routes.get(ctx.route?)?.cors.as_deref()
}

fn allows_origin(policy: &Cors, origin: &[u8]) -> bool {
    policy.any_origin || policy.origins.iter().any(|o| o.as_bytes() == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> Cors {
        Cors {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            any_origin: origins.is_empty(),
            methods: vec!["GET".into()],
            headers: vec!["authorization".into()],
            expose_headers: vec![],
            credentials: false,
            max_age: None,
            allow_methods: "GET".into(),
            allow_headers: "authorization".into(),
            expose: String::new(),
            max_age_secs: String::new(),
        }
    }

    #[test]
    fn origins_compare_exactly_as_browsers_serialize_them() {
        let listed = policy(&["https://app.example.com"]);
        assert!(allows_origin(&listed, b"https://app.example.com"));
        for other in [
            &b"https://app.example.com/"[..],
            b"https://APP.example.com",
            b"http://app.example.com",
            b"https://app.example.com:8443",
            b"https://app.example.com.evil.test",
            b"null",
        ] {
            assert!(!allows_origin(&listed, other), "{other:?}");
        }
        assert!(allows_origin(&policy(&[]), b"https://anyone.test"));
    }
}
