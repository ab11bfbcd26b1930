//! The request pipeline, in one place:
//!
//! ```text
//! request → framing → normalize path → match route → authenticate → authorize
//!         → rewrite identity headers → upstream → response headers → log
//! ```
//!
//! Each pingora phase below delegates to one stage in a few lines.

mod auth_route;
mod direct;
mod framing;
mod respond;

use crate::auth;
use crate::authn::{self, Identity};
use crate::authz;
use crate::config::AuthMode;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::identity_headers;
use crate::metrics::METRICS;
use crate::route;
use crate::{access_log, clock};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The gateway as pingora sees it: the current config, the auth module's
/// state (which outlives config reloads) and a count of requests in flight
/// (for a graceful drain).
pub struct Proxy {
    pub state: Arc<ArcSwap<Gateway>>,
    pub auth: Arc<auth::Service>,
    pub inflight: Arc<AtomicUsize>,
}

/// Per-request state. Holds the config snapshot the request started with, so
/// a reload mid-request changes nothing for it.
pub struct Ctx {
    gateway: Arc<Gateway>,
    start: Instant,
    request_id: String,
    path: String,
    route: Option<usize>,
    identity: Option<Identity>,
    decision: &'static str,
    reason: Option<&'static str>,
    upstream: Option<(usize, SocketAddr)>,
    upstream_start: Option<Instant>,
    tls: bool,
    /// The TCP peer, or the right-most `X-Forwarded-For` hop when that is trusted.
    client_ip: Option<IpAddr>,
    _inflight: Inflight,
}

/// Counts a request as in flight for as long as its context lives.
struct Inflight(Arc<AtomicUsize>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ctx {
    fn route_label(&self) -> &str {
        match self.route {
            Some(i) => self.gateway.config.routes[i].pattern.as_str(),
            None => "none",
        }
    }
}

impl Proxy {
    /// Everything that decides whether the request may go on: the stages of
    /// the module doc up to authorization, as one pure-ish sequence.
    async fn admit(&self, session: &Session, ctx: &mut Ctx) -> Result<(), Reject> {
        let req = session.req_header();
        framing::check(req, &session.as_downstream().to_h1_raw())?;
        let (raw_path, _) = framing::target(req)?;
        ctx.path =
            route::normalize(raw_path).map_err(|e| Reject::BadRequest(e.to_string().into()))?;
        let gw = ctx.gateway.clone();
        let found = gw
            .routes
            .find(&req.method, &ctx.path)
            .ok_or(Reject::NotFound)?;
        ctx.route = Some(found.index);
        let route = &gw.config.routes[found.index];
        if route.auth == AuthMode::None {
            ctx.decision = "public";
        } else {
            let identity = self.authenticate(&req.headers, &gw, clock::now()).await?;
            ctx.identity = Some(identity);
            let identity = ctx.identity.as_ref().ok_or(Reject::Internal)?;
            authz::authorize(route, identity, &found.captures)?;
            ctx.decision = "allow";
        }
        if let Some(rate) = &route.rate_limit {
            let pattern = route.pattern.as_str();
            match (&ctx.identity, ctx.client_ip) {
                (Some(id), _) => self
                    .auth
                    .limit_route(pattern, ("user", id.sub.as_str()), rate)?,
                (None, ip) => self.auth.limit_route(pattern, ("ip", ip), rate)?,
            }
        }
        Ok(())
    }

    /// The verified identity of the request's bearer token: the gateway's own
    /// (signature, claims, then the in-memory revocation set: no I/O), or one
    /// from a trusted issuer, whose keys may need fetching first.
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        gw: &Gateway,
        now: u64,
    ) -> Result<Identity, Reject> {
        let token = authn::bearer(headers)?.ok_or(Reject::MissingToken)?;
        match gw.keys.verify(token, now) {
            Ok(identity) => {
                self.auth.check_revoked(&identity)?;
                Ok(identity)
            }
            Err(own) => match gw.issuers.verify(token, now).await {
                Some(answer) => answer,
                None => Err(Reject::InvalidToken(own)),
            },
        }
    }

    /// What the upstream's request gets beyond the client's (already sanitized)
    /// one: the matched path, the verified identity headers, forwarding headers.
    /// `gw` is the request's config snapshot, lent apart from `ctx` so that the
    /// edits can outlive this borrow of it.
    fn additions<'g>(
        &self,
        session: &Session,
        ctx: &Ctx,
        gw: &'g Gateway,
    ) -> Result<Additions<'g>> {
        let req = session.req_header();
        let names = &gw.config.headers;
        let mut headers: Vec<(&HeaderName, HeaderValue)> = Vec::with_capacity(8);
        if let Some(id) = &ctx.identity {
            headers.extend(identity_headers::injected(names, id));
        }
        let (raw_path, query) =
            framing::target(req).map_err(|_| Error::new(ErrorType::InternalError))?;
        let target = (raw_path != ctx.path).then(|| match query {
            Some(q) => format!("{}?{q}", ctx.path),
            None => ctx.path.clone(),
        });
        headers.push((&X_REQUEST_ID, header_value(ctx.request_id.clone())?));
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(ip) = client_ip {
            // Trusted: append our hop to every value the proxy in front sent (all
            // header lines, in order); untrusted: the TCP peer is the only truth.
            let mut forwarded = String::new();
            if gw.config.trust_forwarded_for {
                for prior in req.headers.get_all(&X_FORWARDED_FOR) {
                    if let Ok(prior) = prior.to_str() {
                        forwarded.push_str(prior);
                        forwarded.push_str(", ");
                    }
                }
            }
            push_ip(&mut forwarded, ip);
            headers.push((&X_FORWARDED_FOR, header_value(forwarded)?));
        }
        let proto = if ctx.tls { "https" } else { "http" };
        headers.push((&X_FORWARDED_PROTO, HeaderValue::from_static(proto)));
        Ok(Additions { target, headers })
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn header_value(text: String) -> Result<HeaderValue> {
    HeaderValue::try_from(text).or_err(ErrorType::InternalError, "header value")
}

/// The upstream's request as edits to the client's: computed once, applied
/// by whichever path forwards it (`direct`, or pingora's proxy path).
pub struct Additions<'g> {
    /// The request-target, when normalization changed the path.
    target: Option<String>,
    /// Set on the upstream's request, replacing any client value.
    headers: Vec<(&'g HeaderName, HeaderValue)>,
}

impl Additions<'_> {
    /// Applies the edits to pingora's copy of the request.
    fn apply(self, req: &mut RequestHeader) -> Result<()> {
        if let Some(target) = &self.target {
            req.set_raw_path(target.as_bytes())?;
        }
        for (name, value) in self.headers {
            req.insert_header(name.clone(), value)?;
        }
        Ok(())
    }
}

/// Records how long the upstream took to answer (its head), once.
fn observe_upstream(ctx: &mut Ctx) {
    if let Some(start) = ctx.upstream_start.take() {
        METRICS
            .upstream_duration
            .with_label_values(&[ctx.route_label()])
            .observe(start.elapsed().as_secs_f64());
    }
}

/// The client address rate limits are keyed by: the TCP peer, or, only when the
/// operator says a trusted proxy sits in front, the right-most `X-Forwarded-For`
/// entry (the one that proxy appended; anything left of it is client-supplied).
fn client_ip(session: &Session, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = session
            .req_header()
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The answer the client got, if any: an interim `100 Continue` is not one.
fn final_answer(session: &Session) -> Option<&ResponseHeader> {
    session
        .response_written()
        .filter(|r| !r.status.is_informational() || r.status == 101)
}

/// The status logged and counted for a request whose client left before any
/// answer (nginx's convention; never sent on the wire).
const CLIENT_CLOSED: u16 = 499;

/// Appends `ip` in its usual text form. IPv4 skips the formatting machinery,
/// which cost more than the rest of the forwarding headers together.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// A client's `X-Request-Id` is kept when it is short and plain; anything
/// else is replaced, since it ends up in upstream logs.
fn request_id(req: &RequestHeader) -> String {
    req.headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(crate::token::random_id)
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Ctx {
            gateway: self.state.load_full(),
            start: Instant::now(),
            request_id: String::new(),
            path: String::new(),
            route: None,
            identity: None,
            decision: "none",
            reason: None,
            upstream: None,
            upstream_start: None,
            tls: false,
            client_ip: None,
            _inflight: Inflight(self.inflight.clone()),
        }
    }

    /// Runs once the request head is read: decide, then either answer now
    /// (`Ok(true)`) or let the request go on to the upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        if let Some(jwks) =
            crate::keys::jwks::answer(session.req_header(), &ctx.gateway.keys, clock::now())
        {
            ctx.decision = "public";
            respond::send(session, ctx, 200, &jwks.headers, jwks.body).await?;
            return Ok(true);
        }
        ctx.client_ip = client_ip(session, ctx.gateway.config.trust_forwarded_for);
        if let Err(reject) = self.admit(session, ctx).await {
            ctx.decision = reject.decision();
            if let Reject::InvalidToken(e) = &reject {
                ctx.reason = Some(e.reason());
            }
            if matches!(reject, Reject::BadRequest(_)) {
                // The request's framing or target is suspect: do not read another one from this connection.
                session.set_keepalive(None);
            }
            respond::reject(session, ctx, &reject).await?;
            return Ok(true);
        }
        let Some(route) = ctx.route.map(|i| &ctx.gateway.config.routes[i]) else {
            return Ok(false);
        };
        if route.upstream.is_none() {
            // Routes without an upstream belong to the embedded auth module.
            self.serve_auth(session, ctx).await?;
            return Ok(true);
        }
        // Client-sent identity headers go now; the verified ones are added to the
        // upstream's request by whichever path forwards it.
        identity_headers::sanitize(session.req_header_mut(), &ctx.gateway.config.headers);
        if let Some(index) = route.upstream {
            if direct::eligible(session.req_header(), &ctx.gateway.pools[index]) {
                let gateway = ctx.gateway.clone();
                let adds = self.additions(session, ctx, &gateway)?;
                direct::forward(session, ctx, index, &adds).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let gateway = ctx.gateway.clone();
        self.additions(session, ctx, &gateway)?
            .apply(upstream_request)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let index = ctx
            .route
            .and_then(|r| ctx.gateway.config.routes[r].upstream)
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let pool = &ctx.gateway.pools[index];
        let addr = pool.pick();
        ctx.upstream = Some((index, addr));
        ctx.upstream_start = Some(Instant::now());
        Ok(pool.peer(addr))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((index, addr)) = ctx.upstream {
            let pool = &ctx.gateway.pools[index];
            if pool.len() > 1 {
                // Another address may answer; nothing was sent yet, so a retry is safe.
                pool.mark_down(addr);
                e.set_retry(true);
            }
        }
        e
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        observe_upstream(ctx);
        respond::common_headers(resp, ctx)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let reject = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(Reject::GatewayTimeout),
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => Some(Reject::BadGateway),
            _ => match e.esource() {
                ErrorSource::Upstream => Some(Reject::BadGateway),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        None
                    }
                    _ => Some(Reject::BadRequest("malformed request".into())),
                },
                _ => Some(Reject::Internal),
            },
        };
        log::warn!("request {} failed: {e}", ctx.request_id);
        let code = match reject {
            Some(reject) if final_answer(session).is_none() => {
                if ctx.decision == "none" {
                    ctx.decision = reject.decision();
                }
                let status = reject.status();
                if respond::reject(session, ctx, &reject).await.is_err() {
                    0
                } else {
                    status
                }
            }
            Some(reject) => reject.status(),
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// What pingora puts in its own error-log lines for this request. Its default
    /// includes the raw query string, where clients sometimes put tokens; this
    /// keeps to what the access log shows.
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let path = if ctx.path.is_empty() {
            "-"
        } else {
            ctx.path.as_str()
        };
        format!(
            "{} {path} (request {})",
            session.req_header().method,
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // Failed with nothing written: `fail_to_proxy` answers every failure it
        // can, so the client went away first. Counted as nginx's 499, not as a
        // 502 that would page someone about a healthy upstream.
        let status = final_answer(session)
            .map(|r| r.status.as_u16())
            .unwrap_or(if e.is_some() { CLIENT_CLOSED } else { 0 });
        let elapsed = ctx.start.elapsed();
        let route = ctx.route_label();
        let method = session.req_header().method.as_str();
        let m = &*METRICS;
        let mut status_buf = itoa::Buffer::new();
        m.requests
            .with_label_values(&[route, method, status_buf.format(status)])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if let Some(counter) = m.decisions.get(ctx.decision) {
            counter.inc();
        }
        if ctx.gateway.config.access_log {
            let path = if ctx.path.is_empty() {
                "-"
            } else {
                ctx.path.as_str()
            };
            access_log::write(&access_log::Entry {
                ts: access_log::timestamp(SystemTime::now()),
                request_id: &ctx.request_id,
                method,
                path,
                route,
                status,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                user: ctx.identity.as_ref().map(|i| i.sub.as_str()),
                decision: ctx.decision,
                reason: ctx.reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_ip_writes_what_display_writes() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.4",
            "255.255.255.255",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = String::from("prior, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("prior, {ip}"), "{text}");
        }
    }
}
