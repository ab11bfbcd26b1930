//! The request pipeline, in one place:
//!
//! ```text
//! request → framing → normalize path → match route → authenticate → authorize
//!         → rewrite identity headers → upstream → response headers → log
//! ```
//!
//! `Proxy::handle` runs one request through them; each stage is a few lines
//! that delegate to its module. The HTTP/1 transport (`crate::http1`) reads
//! and writes the bytes and knows none of this; the connection loop that
//! drives it request by request is `proxy/connection.rs`.

mod auth_route;
mod connection;
mod cors;
mod forward_auth;
mod respond;
mod streams;

use crate::auth;
use crate::authn::{self, Identity};
use crate::authz;
use crate::config::AuthMode;
use crate::downstream::Client;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::http1::exchange::{self, Additions, Answering, ReadTimer};
use crate::http1::{framing, websocket, Head, Request};
use crate::http2;
use crate::identity_headers;
use crate::metrics::{Mode, METRICS};
use crate::otel;
use crate::route;
use crate::server::tls::Termination;
use crate::{access_log, clock};
use arc_swap::ArcSwap;
use http::Method;
use pingora::prelude::*;
use pingora::ErrorType;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The gateway as pingora's listeners see it: the current config, the auth
/// module's state (which outlives config reloads) and a count of requests in
/// flight (for a graceful drain).
pub struct Proxy {
    state: Arc<ArcSwap<Gateway>>,
    auth: Arc<auth::Service>,
    inflight: Arc<AtomicUsize>,
    /// Proxying, or answering forward-auth questions (`proxy/forward_auth.rs`).
    mode: Mode,
    /// Set, and `stop` notified, once the gateway shuts down.
    stopping: AtomicBool,
    stop: Notify,
    /// The handshake of connections that arrive on the HTTPS listener.
    tls: Option<Termination>,
}

/// Per-request state. Holds the config snapshot the request started with, so
/// a reload mid-request changes nothing for it.
pub struct Ctx {
    gateway: Arc<Gateway>,
    start: Instant,
    request_id: String,
    path: String,
    route: Option<usize>,
    identity: Option<Arc<Identity>>,
    decision: &'static str,
    reason: Option<&'static str>,
    tls: bool,
    /// The TCP peer, or the right-most `X-Forwarded-For` hop when that is trusted.
    client_ip: Option<IpAddr>,
    /// The request's `Origin`, for the CORS fields of its answer (`proxy/cors.rs`).
    origin: Option<Box<[u8]>>,
    mode: Mode,
    /// A gRPC call from an HTTP/2 client: refusals are gRPC answers.
    grpc: bool,
    /// The method decided on when it is not the request's own: a forward-auth
    /// question's original method, which is also the one counted and logged.
    method: Option<Method>,
    /// The request's spans, when tracing is on (`crate::otel`).
    trace: Option<Box<otel::RequestTrace>>,
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
    /// The normalized path for logs (`-` before there is one); never the query.
    fn path_label(&self) -> &str {
        if self.path.is_empty() {
            "-"
        } else {
            self.path.as_str()
        }
    }

    /// The metric series of the request's route.
    fn series(&self) -> &crate::metrics::RouteSeries {
        match self.route {
            Some(i) => &self.gateway.series[i],
            None => &self.gateway.unrouted,
        }
    }

    fn route_label(&self) -> &str {
        match self.route {
            Some(i) => self.gateway.config.routes[i].pattern.as_str(),
            None => "none",
        }
    }
}

impl Proxy {
    /// Everything that decides whether the request may go on: the stages of
    /// the module doc up to authorization, as one pure-ish sequence. `method`
    /// and `target` are the request's own, or those of the original request a
    /// forward-auth question is about; the token is always `req`'s.
    async fn admit(
        &self,
        req: &Request,
        method: &Method,
        target: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), Reject> {
        if *method == Method::TRACE || *method == Method::CONNECT {
            return Err(Reject::MethodNotAllowed);
        }
        let (raw_path, _) = framing::split_target(target)?;
        ctx.path =
            route::normalize(raw_path).map_err(|e| Reject::BadRequest(e.to_string().into()))?;
        let gw = ctx.gateway.clone();
        let found = gw.routes.find(method, &ctx.path).ok_or(Reject::NotFound)?;
        ctx.route = Some(found.index);
        let route = &gw.config.routes[found.index];
        if route.auth == AuthMode::None {
            ctx.decision = "public";
        } else {
            let identity = self.authenticate(req, &gw, clock::now()).await?;
            ctx.identity = Some(identity);
            let identity = ctx.identity.as_ref().ok_or(Reject::Internal)?;
            authz::authorize(route, identity, &found.captures)?;
            if let Some(grant) = &identity.pat {
                if !grant.permits(method, &ctx.path) {
                    METRICS.pats.forbidden.inc();
                    return Err(Reject::Forbidden);
                }
            }
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

    /// The verified identity of the request's bearer token: a personal access
    /// token (the in-memory index: no I/O), the gateway's own JWT
    /// (signature, claims, then the in-memory revocation set: no I/O), or one
    /// from a trusted issuer, whose keys may need fetching first.
    async fn authenticate(
        &self,
        req: &Request,
        gw: &Gateway,
        now: u64,
    ) -> Result<Arc<Identity>, Reject> {
        let token = authn::bearer_of(req.all("authorization"))?.ok_or(Reject::MissingToken)?;
        if token.starts_with(auth::pat::PREFIX) {
            return self.auth.verify_pat(token, now);
        }
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
    /// one, borrowed from the request's context; `fields` writes the identity.
    fn additions<'a>(
        client: &Client,
        req: &Request,
        ctx: &'a Ctx,
        host: &'a str,
        fields: &'a dyn Fn(&mut Vec<u8>),
    ) -> Result<Additions<'a>> {
        let (raw_path, query) =
            framing::target(req).map_err(|_| Error::new(ErrorType::InternalError))?;
        let target = (raw_path != ctx.path).then(|| match query {
            Some(q) => format!("{}?{q}", ctx.path),
            None => ctx.path.clone(),
        });
        Ok(Additions {
            target,
            fields,
            request_id: &ctx.request_id,
            host,
            peer: client.peer_ip(),
            trust_forwarded_for: ctx.gateway.config.trust_forwarded_for,
            tls: ctx.tls,
        })
    }
}

/// The pipeline's side of an exchange with an upstream.
impl Answering for Ctx {
    fn upstream_answered(&mut self, waited: Duration) {
        self.series()
            .upstream_duration
            .observe(waited.as_secs_f64());
        if let Some(trace) = &self.trace {
            trace.upstream_answered();
        }
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.gateway.config.routes.get(self.route?)?.timeout
    }

    fn replaces(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(b"x-request-id")
            || (self.tls && name.eq_ignore_ascii_case(b"strict-transport-security"))
            || cors::replaces(name, self)
    }

    fn own_fields(&self, head: &mut Head) {
        respond::common_fields(head, self);
    }
}

/// The client address rate limits are keyed by: the TCP peer, or, only when the
/// operator says a trusted proxy sits in front, the right-most `X-Forwarded-For`
/// entry (the one that proxy appended; anything left of it is client-supplied).
fn client_ip(client: &Client, req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = req
            .all("x-forwarded-for")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    client.peer_ip()
}

/// The protocol as the access log names it.
fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// The status logged and counted for a request whose client left before any
/// answer (nginx's convention; never sent on the wire).
const CLIENT_CLOSED: u16 = 499;

/// A client's `X-Request-Id` is kept when it is short and plain; anything
/// else is replaced, since it ends up in upstream logs.
fn request_id(req: &Request) -> String {
    req.header("x-request-id")
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        })
        // Checked to be ASCII just above.
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
        .unwrap_or_else(crate::token::random_id)
}

impl Proxy {
    pub fn new(
        state: Arc<ArcSwap<Gateway>>,
        auth: Arc<auth::Service>,
        inflight: Arc<AtomicUsize>,
    ) -> Proxy {
        Proxy {
            state,
            auth,
            inflight,
            mode: Mode::Proxy,
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            tls: None,
        }
    }

    /// The same proxy, also terminating TLS on the HTTPS listener.
    pub fn terminating_tls(self, tls: Termination) -> Proxy {
        Proxy {
            tls: Some(tls),
            ..self
        }
    }

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
            tls: false,
            client_ip: None,
            origin: None,
            mode: self.mode,
            grpc: false,
            method: None,
            trace: None,
            _inflight: Inflight(self.inflight.clone()),
        }
    }

    /// The pipeline of the module doc, once the request head is read: decide,
    /// then answer now or forward.
    async fn handle(
        &self,
        client: &mut Client,
        req: &mut Request,
        ctx: &mut Ctx,
        read_timer: &mut ReadTimer,
    ) -> Result<()> {
        ctx.request_id = request_id(req);
        ctx.tls = client.is_tls();
        if let Some(tracing) = &ctx.gateway.tracing {
            ctx.trace = Some(tracing.start(req, &ctx.request_id));
        }
        // Looked for on HTTP/2 streams only: gRPC needs HTTP/2.
        ctx.grpc = matches!(client, Client::H2(_)) && http2::grpc::is_grpc(req);
        // Before any answer, the gateway's own included: a request whose end is
        // in doubt is refused, and nothing after it is read as another request.
        if let Err(refused) = framing::check(req) {
            let reject = Reject::from(refused);
            ctx.decision = reject.decision();
            client.close_after();
            return respond::reject(client, ctx, &reject).await;
        }
        if let Some(jwks) = crate::keys::jwks::answer(req, &ctx.gateway.keys, clock::now()) {
            ctx.decision = "public";
            return respond::send(client, ctx, 200, &jwks.headers, &jwks.body).await;
        }
        ctx.client_ip = client_ip(client, req, ctx.gateway.config.trust_forwarded_for);
        ctx.origin = cors::origin(req);
        if let Some(preflight) = cors::preflight(req, ctx) {
            return respond::preflight(client, ctx, preflight).await;
        }
        if let Err(reject) = self.admit(req, &req.method, req.target(), ctx).await {
            ctx.decision = reject.decision();
            if let Reject::InvalidToken(e) = &reject {
                ctx.reason = Some(e.reason());
            }
            if matches!(reject, Reject::BadRequest(_)) {
                // The request's framing or target is suspect: do not read another one from this connection.
                client.close_after();
            }
            return respond::reject(client, ctx, &reject).await;
        }
        let gateway = ctx.gateway.clone();
        let route = ctx
            .route
            .map(|i| &gateway.config.routes[i])
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let Some(index) = route.upstream else {
            // Routes without an upstream belong to the embedded auth module.
            return self.serve_auth(client, req, ctx).await;
        };
        client.limit_body(route.max_body)?;
        // Read before `sanitize` takes the client's `Connection` away.
        let accept = websocket::handshake_key(req).map(websocket::accept_for);
        // Client-sent identity headers go now; the verified ones are written into
        // the upstream's request head with the other additions.
        identity_headers::sanitize(req, &gateway.config.headers);
        if ctx.identity.as_ref().is_some_and(|id| id.pat.is_some()) {
            // The upstream learns the token's id (`X-Token-Id`), never its secret.
            req.retain(|name| !name.eq_ignore_ascii_case(b"authorization"));
        }
        if let Some(trace) = &mut ctx.trace {
            trace.start_upstream(&gateway.config.upstreams[index].name);
        }
        let head = {
            // Borrowed from the context only while the head is written.
            let names = &gateway.config.headers;
            let own_issuer = gateway.config.auth.issuer.as_str();
            let identity = ctx.identity.as_deref();
            let trace = ctx.trace.as_deref();
            let inject = |out: &mut Vec<u8>| {
                if let Some(id) = identity {
                    identity_headers::inject(out, names, id, own_issuer);
                }
                if let Some(trace) = trace {
                    trace.write_fields(out);
                }
            };
            let host = gateway.config.upstreams[index]
                .addrs
                .first()
                .map_or("", String::as_str);
            let adds = Proxy::additions(client, req, ctx, host, &inject)?;
            exchange::request_head(req, &adds, accept.is_some())
        };
        let pool = &gateway.pools[index];
        if let (Client::H2(stream), true) = (&mut *client, ctx.grpc && pool.speaks_h2()) {
            let request =
                http2::grpc::upstream_request(&head, gateway.config.upstreams[index].tls)?;
            let sender = pool.h2_sender().await?;
            let answer_timeout = ctx.read_timeout().unwrap_or_else(|| pool.read_timeout());
            let deadline = http2::grpc::timeout_of(req);
            return http2::grpc::relay(stream, sender, request, answer_timeout, deadline, ctx)
                .await;
        }
        exchange::forward(client, req, pool, head, accept, read_timer, ctx).await
    }

    /// Answers a failure of `handle` when the client has no answer yet: 502/504
    /// for the upstream's failures, 400 for a broken request, 413 for a body over
    /// the route's `max_body`; nothing when the client itself went away.
    async fn fail(&self, client: &mut Client, req: &Request, e: &Error, ctx: &mut Ctx) {
        let reject = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(Reject::GatewayTimeout),
            t if *t == crate::http1::client::BODY_TOO_LARGE => Some(Reject::PayloadTooLarge),
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
        // The path, never the query: clients sometimes put tokens there. A client
        // that left is routine (it is in the access log as a 499), not a warning.
        let level = if reject.is_some() {
            log::Level::Warn
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "request {} ({} {}) failed: {e}",
            ctx.request_id,
            req.method,
            ctx.path_label()
        );
        if let Some(reject) = reject {
            if client.answered().is_none() {
                if ctx.decision == "none" {
                    ctx.decision = reject.decision();
                }
                client.close_after();
                let _ = respond::reject(client, ctx, &reject).await;
            }
        }
    }

    /// Counts the request and writes its access-log line. `failed` with
    /// nothing written means the client left first: `fail` answers every
    /// failure it can. That is counted as nginx's 499, not as a 502 that would
    /// page someone about a healthy upstream.
    fn log(&self, client: &Client, req: &Request, failed: bool, ctx: &Ctx) {
        let status = client
            .answered()
            .unwrap_or(if failed { CLIENT_CLOSED } else { 0 });
        let elapsed = ctx.start.elapsed();
        let route = ctx.route_label();
        let method = ctx.method.as_ref().unwrap_or(&req.method);
        let series = ctx.series();
        series.count(ctx.mode, method, status);
        series.duration.observe(elapsed.as_secs_f64());
        if let Some(counter) = METRICS.decisions(ctx.mode).get(ctx.decision) {
            counter.inc();
        }
        if let Some(trace) = &ctx.trace {
            trace.finish(&otel::Outcome {
                method,
                route: ctx.route.map(|_| route),
                status,
                decision: ctx.decision,
                reason: ctx.reason,
                user: ctx.identity.as_ref().map(|i| i.sub.as_str()),
            });
        }
        if ctx.gateway.config.access_log {
            access_log::write(&access_log::Entry {
                ts: SystemTime::now(),
                request_id: &ctx.request_id,
                method: method.as_str(),
                protocol: protocol(req.version),
                path: ctx.path_label(),
                route,
                status,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                user: ctx.identity.as_ref().map(|i| i.sub.as_str()),
                decision: ctx.decision,
                mode: ctx.mode.label(),
                reason: ctx.reason,
            });
        }
    }
}
