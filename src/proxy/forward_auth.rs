//! Forward-auth mode: the gateway as the decision behind another proxy (nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy's HTTP
//! `ext_authz`). Every request to `forward_auth_listen` is a question about
//! another request, the original one: its method and target come from the
//! asking proxy's fields ([`original`]), its token from the `Authorization`
//! field the proxy passes on. It runs through the very stages a proxied request
//! does (`Proxy::admit`: normalization, matching, authentication, revocation,
//! rules, rate limits). The answer is 200 with the verified identity's fields
//! for the proxy to copy upstream, or the refusal the gateway gives a proxied
//! request (401 with `WWW-Authenticate`, 403, 404, 429 with `Retry-After`, 400).
//!
//! A route without an upstream (the auth module's) is decided like any other,
//! by its own rules (`auth: none` on the usual `/api/auth/**`); the endpoint is
//! not served here, so a proxy sends such paths to the public listener.

use super::{client_ip, request_id, respond, Ctx, Proxy};
use crate::auth;
use crate::downstream::Client;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::http1::{framing, Out, Request};
use crate::identity_headers;
use crate::metrics::Mode;
use arc_swap::ArcSwap;
use http::Method;
use pingora::prelude::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// Envoy's `ext_authz` with `path_prefix: /verify` asks `/verify` + the original path.
const VERIFY_PREFIX: &[u8] = b"/verify";

/// Methods RFC 9110 defines, and PATCH, as they must be spelled.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The request a question is about, as the asking proxy received it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Original<'r> {
    pub method: Method,
    /// Path and query, not yet normalized: `admit` does that as for any request.
    pub target: &'r [u8],
}

/// The original request of a question: `X-Forwarded-Method` + `X-Forwarded-Uri`
/// (Traefik, Caddy), `X-Original-Method` + `X-Original-URI` (nginx), or the
/// question's own method and the path after `/verify` (Envoy). Every source
/// present must say the same: a client of the proxy may have sent the other
/// convention's fields itself, and no preference between them can tell which
/// ones the proxy wrote, so a disagreement is refused. The `Err` is the detail
/// of the 400.
pub(super) fn original(req: &Request) -> Result<Original<'_>, &'static str> {
    const CONTRADICTORY_URI: &str = "the original URI fields disagree";
    let in_fields = agreed(req.all("x-forwarded-uri").chain(req.all("x-original-uri")))
        .ok_or(CONTRADICTORY_URI)?;
    let after_verify = req
        .target()
        .strip_prefix(VERIFY_PREFIX)
        .filter(|rest| rest.starts_with(b"/"));
    let target = agreed(in_fields.into_iter().chain(after_verify))
        .ok_or(CONTRADICTORY_URI)?
        .ok_or("no original request: expected X-Forwarded-Method and X-Forwarded-Uri, X-Original-Method and X-Original-URI, or /verify/<path>")?;
    // Envoy asks with the original method itself; the others ask with their own.
    let own = in_fields
        .is_none()
        .then_some(req.method.as_str().as_bytes());
    let method = agreed(
        req.all("x-forwarded-method")
            .chain(req.all("x-original-method"))
            .chain(own),
    )
    .ok_or("the original method fields disagree")?
    .ok_or("no original method: expected X-Forwarded-Method or X-Original-Method")?;
    Ok(Original {
        method: original_method(method)?,
        target,
    })
}

/// The one value all of `values` hold: `Some(None)` when there is none,
/// `None` when two differ.
fn agreed<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<Option<&'a [u8]>> {
    let Some(first) = values.next() else {
        return Some(None);
    };
    values.all(|v| v == first).then_some(Some(first))
}

/// A method as a request line would have to spell it: a token, and a standard
/// method only in its own letter case (`delete` would pass the rules as an
/// unknown method and run as DELETE behind a framework that upper-cases it).
fn original_method(name: &[u8]) -> Result<Method, &'static str> {
    let method = Method::from_bytes(name).map_err(|_| "the original method is not a method")?;
    let name = method.as_str();
    if !STANDARD_METHODS.contains(&name)
        && STANDARD_METHODS
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name))
    {
        return Err("the original method is a standard one in another letter case");
    }
    Ok(method)
}

impl Proxy {
    /// The app of the forward-auth listener: the proxy's state (config, auth
    /// module, in-flight count) shared, questions answered instead of forwarded.
    pub fn forward_auth(
        state: Arc<ArcSwap<Gateway>>,
        auth: Arc<auth::Service>,
        inflight: Arc<AtomicUsize>,
    ) -> Proxy {
        Proxy {
            mode: Mode::ForwardAuth,
            ..Proxy::new(state, auth, inflight)
        }
    }

    /// One question, once its head is read: the forward-auth listener's
    /// counterpart of `handle`.
    pub(super) async fn decide(
        &self,
        client: &mut Client,
        req: &Request,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.request_id = request_id(req);
        ctx.tls = client.is_tls();
        if let Err(refused) = framing::check(req) {
            let reject = Reject::from(refused);
            ctx.decision = reject.decision();
            client.close_after();
            return respond::reject(client, ctx, &reject).await;
        }
        if !ctx.gateway.config.forward_auth.trusts(client.peer_ip()) {
            ctx.decision = "untrusted_peer";
            client.close_after();
            return respond::reject(client, ctx, &Reject::Forbidden).await;
        }
        let original = match original(req) {
            Ok(original) => original,
            Err(why) => {
                let reject = Reject::BadRequest(why.into());
                ctx.decision = reject.decision();
                return respond::reject(client, ctx, &reject).await;
            }
        };
        // The proxy is trusted with the original request, so with its client's
        // address too: the right-most `X-Forwarded-For` hop is the one it added.
        ctx.client_ip = client_ip(client, req, true);
        let admitted = self
            .admit(req, &original.method, original.target, ctx)
            .await;
        ctx.method = Some(original.method);
        if let Err(reject) = admitted {
            ctx.decision = reject.decision();
            if let Reject::InvalidToken(e) = &reject {
                ctx.reason = Some(e.reason());
            }
            // Unlike a proxied request's, a bad original target says nothing
            // about this connection's framing: it stays open.
            return respond::reject(client, ctx, &reject).await;
        }
        allow(client, ctx).await
    }
}

/// The 200 answer: the verified identity as the fields the proxy copies
/// upstream (none on a public route), and no body.
async fn allow(client: &mut Client, ctx: &Ctx) -> Result<()> {
    let mut head = client.head(200);
    if let Some(id) = &ctx.identity {
        let config = &ctx.gateway.config;
        let mut lines = Vec::with_capacity(160);
        identity_headers::inject(&mut lines, &config.headers, id, &config.auth.issuer);
        // `inject` writes an upstream request's `name: value\r\n` lines: names
        // hold no colon, values no line break.
        for line in lines.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(at) = line.windows(2).position(|w| w == b": ") {
                head.field(&line[..at], &line[at + 2..]);
            }
        }
    }
    head.field(b"Cache-Control", b"no-store");
    respond::common_fields(&mut head, ctx);
    client.write_head(head, Out::Length(0));
    client.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(head: &str) -> Result<(String, String), &'static str> {
        let req = Request::from_text(&format!("{head}\r\n"));
        original(&req).map(|o| {
            (
                o.method.to_string(),
                String::from_utf8_lossy(o.target).into_owned(),
            )
        })
    }

    fn ok(method: &str, target: &str) -> Result<(String, String), &'static str> {
        Ok((method.to_owned(), target.to_owned()))
    }

    #[test]
    fn each_proxys_convention_gives_the_original_method_and_target() {
        let cases = [
            // nginx auth_request
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Original-Method: POST\r\nX-Original-URI: /api/upload?x=1\r\n",
                ok("POST", "/api/upload?x=1"),
            ),
            // Traefik forwardAuth, Caddy forward_auth (Caddy asks with GET whatever the original)
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: DELETE\r\nX-Forwarded-Uri: /api/x\r\n",
                ok("DELETE", "/api/x"),
            ),
            // Traefik's address may name any path
            (
                "GET / HTTP/1.1\r\nHost: g\r\nx-forwarded-method: PATCH\r\nx-forwarded-uri: //api/admin/x\r\n",
                ok("PATCH", "//api/admin/x"),
            ),
            // Envoy ext_authz with path_prefix: /verify
            (
                "PUT /verify/api/users/u1/x?y=2 HTTP/1.1\r\nHost: g\r\n",
                ok("PUT", "/api/users/u1/x?y=2"),
            ),
            ("GET /verify//api/admin/x HTTP/1.1\r\nHost: g\r\n", ok("GET", "//api/admin/x")),
            ("GET /verify/ HTTP/1.1\r\nHost: g\r\n", ok("GET", "/")),
            ("GET /verify/api/admin%2Fx HTTP/1.1\r\nHost: g\r\n", ok("GET", "/api/admin%2Fx")),
            // Both conventions, saying the same
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /a\r\nX-Original-Method: GET\r\nX-Original-URI: /a\r\n",
                ok("GET", "/a"),
            ),
            // Envoy's path with a field that agrees
            (
                "POST /verify/a HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: POST\r\n",
                ok("POST", "/a"),
            ),
            // An extension method is a method
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Original-Method: PROPFIND\r\nX-Original-URI: /dav\r\n",
                ok("PROPFIND", "/dav"),
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(asked(head), expected, "{head:?}");
        }
    }

    #[test]
    fn a_missing_or_contradictory_original_is_refused() {
        const URIS: &str = "the original URI fields disagree";
        const METHODS: &str = "the original method fields disagree";
        let cases = [
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\n",
                Err("no original request: expected X-Forwarded-Method and X-Forwarded-Uri, X-Original-Method and X-Original-URI, or /verify/<path>"),
            ),
            (
                "GET /verifyx/a HTTP/1.1\r\nHost: g\r\n",
                Err("no original request: expected X-Forwarded-Method and X-Forwarded-Uri, X-Original-Method and X-Original-URI, or /verify/<path>"),
            ),
            (
                "GET /api/x HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: GET\r\n",
                Err("no original request: expected X-Forwarded-Method and X-Forwarded-Uri, X-Original-Method and X-Original-URI, or /verify/<path>"),
            ),
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Original-URI: /a\r\n",
                Err("no original method: expected X-Forwarded-Method or X-Original-Method"),
            ),
            // A client of nginx adds Traefik's fields (or of Caddy, nginx's)
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Original-Method: GET\r\nX-Original-URI: /api/admin/x\r\nX-Forwarded-Uri: /health\r\n",
                Err(URIS),
            ),
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /a\r\nX-Original-Method: DELETE\r\n",
                Err(METHODS),
            ),
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /a\r\nX-Forwarded-Uri: /b\r\n",
                Err(URIS),
            ),
            ("GET /verify/a HTTP/1.1\r\nHost: g\r\nX-Forwarded-Uri: /b\r\nX-Forwarded-Method: GET\r\n", Err(URIS)),
            ("GET /verify/a HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: POST\r\n", Err(METHODS)),
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: delete\r\nX-Forwarded-Uri: /a\r\n",
                Err("the original method is a standard one in another letter case"),
            ),
            (
                "GET /verify HTTP/1.1\r\nHost: g\r\nX-Forwarded-Method: GE(T\r\nX-Forwarded-Uri: /a\r\n",
                Err("the original method is not a method"),
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(asked(head), expected, "{head:?}");
        }
    }
}
