//! The Prometheus metrics listed in docs/operations.md. Label values that are known in advance
//! (decisions, results) are resolved once, so counting them on the request path
//! is one atomic add.

use arc_swap::ArcSwap;
use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, LazyLock, Mutex};

/// Every series the gateway exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    /// By [`Mode`], in its order: see [`Metrics::decisions`].
    decisions: [Decisions; 2],
    pub logins: IntCounterVec,
    pub refreshes: IntCounterVec,
    /// Account mails by template and result (sent, retried, failed, skipped).
    pub mails: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    /// 1 while `rate_limit_store` answers and limits are shared; 0 otherwise (or without one).
    pub rate_limit_store_up: IntGauge,
    /// Times the limits fell back to per-replica counting because the store stopped answering.
    pub rate_limit_store_fallbacks: IntCounter,
    /// One synchronization with the store (every limiter's push and answer).
    pub rate_limit_sync_duration: Histogram,
    /// 1 when `/readyz` answers 200; set by the admin listener at each scrape, so
    /// dashboards and alerts see readiness without a probe of their own.
    pub ready: IntGauge,
    /// `portcullis_pat_verifications_total{result}`: personal access tokens presented on
    /// proxied routes, by outcome; `ok` counts the token, `forbidden` its scopes refusing.
    pub pats: PatResults,
    /// `portcullis_mfa_verifications_total{result}`: second-factor checks, by outcome.
    pub mfa: IntCounterVec,
}

/// Pre-resolved personal-access-token outcomes.
pub struct PatResults {
    pub ok: IntCounter,
    pub malformed: IntCounter,
    pub unknown: IntCounter,
    pub expired: IntCounter,
    pub owner_inactive: IntCounter,
    pub forbidden: IntCounter,
}

/// Which listener a request came in on, the `mode` label of `requests_total` and
/// `auth_decisions_total` and the access log's `mode` field: one dashboard covers
/// the gateway as a proxy and as the decision behind another proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Proxied: the request itself, forwarded when admitted.
    Proxy,
    /// A forward-auth question about another proxy's request (`forward_auth_listen`).
    ForwardAuth,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Proxy, Mode::ForwardAuth];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::ForwardAuth => "forward_auth",
        }
    }
}

/// Pre-resolved `portcullis_auth_decisions_total{decision,mode}` counters of one mode.
pub struct Decisions {
    pub allow: IntCounter,
    pub missing_token: IntCounter,
    pub invalid_token: IntCounter,
    pub revoked: IntCounter,
    pub forbidden: IntCounter,
    pub rate_limited: IntCounter,
}

impl Decisions {
    /// The counter for a decision label, if it is one docs/operations.md lists.
    pub fn get(&self, decision: &str) -> Option<&IntCounter> {
        Some(match decision {
            "allow" => &self.allow,
            "missing_token" => &self.missing_token,
            "invalid_token" => &self.invalid_token,
            "revoked" => &self.revoked,
            "forbidden" => &self.forbidden,
            "rate_limited" => &self.rate_limited,
            _ => return None,
        })
    }
}

/// Buckets from 100 µs to 10 s: a gateway's own answers take well under a millisecond.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help).namespace("portcullis"), labels)
        .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name} registered twice: {e}"));
    c
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help)
        .namespace("portcullis")
        .buckets(BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels)
        .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
    registry
        .register(Box::new(h.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name} registered twice: {e}"));
    h
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("portcullis")
}

/// Registers one metric built from a static definition.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let m = metric.unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
    registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| unreachable!("metric registered twice: {e}"));
    m
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let decisions_vec = counter_vec(
            r,
            "auth_decisions_total",
            "Authentication and authorization decisions on proxied routes and forward-auth questions",
            &["decision", "mode"],
        );
        let decisions = Mode::ALL.map(|mode| {
            let d = |name: &str| decisions_vec.with_label_values(&[name, mode.label()]);
            Decisions {
                allow: d("allow"),
                missing_token: d("missing_token"),
                invalid_token: d("invalid_token"),
                revoked: d("revoked"),
                forbidden: d("forbidden"),
                rate_limited: d("rate_limited"),
            }
        });
        let logins = counter_vec(r, "logins_total", "Login attempts by result", &["result"]);
        let refreshes = counter_vec(
            r,
            "refreshes_total",
            "Refresh attempts by result",
            &["result"],
        );
        let mails = counter_vec(
            r,
            "auth_mails_total",
            "Account mails by template and result (sent, retried, failed, skipped)",
            &["template", "result"],
        );
        let config_reloads = counter_vec(
            r,
            "config_reloads_total",
            "Config reloads by result",
            &["result"],
        );
        // Export the zero series too, so dashboards and alerts see them from the start.
        for result in ["success", "failure", "rate_limited"] {
            logins.with_label_values(&[result]);
        }
        for result in ["rotated", "grace", "reused", "invalid"] {
            refreshes.with_label_values(&[result]);
        }
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let pats = counter_vec(
            r,
            "pat_verifications_total",
            "Personal access tokens presented on proxied routes, by result",
            &["result"],
        );
        let pat = |result: &str| pats.with_label_values(&[result]);
        let pats = PatResults {
            ok: pat("ok"),
            malformed: pat("malformed"),
            unknown: pat("unknown"),
            expired: pat("expired"),
            owner_inactive: pat("owner_inactive"),
            forbidden: pat("forbidden"),
        };
        let mfa = counter_vec(
            r,
            "mfa_verifications_total",
            "Second-factor checks (TOTP or recovery code) by result",
            &["result"],
        );
        for result in [
            "success",
            "failure",
            "replayed",
            "rate_limited",
            "recovery_code",
        ] {
            mfa.with_label_values(&[result]);
        }
        Metrics {
            pats,
            mfa,
            requests: counter_vec(
                r,
                "requests_total",
                "Requests by route pattern, method, status and mode (proxy, forward_auth)",
                &["route", "method", "status", "mode"],
            ),
            request_duration: histogram_vec(
                r,
                "request_duration_seconds",
                "Time from request head to the end of the response, by route pattern",
                &["route"],
            ),
            upstream_duration: histogram_vec(
                r,
                "upstream_duration_seconds",
                "Time from sending to the upstream to its response head, by route pattern",
                &["route"],
            ),
            decisions,
            logins,
            refreshes,
            mails,
            config_reloads,
            jwks_fetches: counter_vec(
                r,
                "jwks_fetches_total",
                "JWKS fetches of trusted issuers by issuer and result (ok, error)",
                &["issuer", "result"],
            ),
            rate_limit_store_up: register(
                r,
                IntGauge::with_opts(opts(
                    "rate_limit_store_up",
                    "1 while rate_limit_store answers and route limits are shared by replicas",
                )),
            ),
            rate_limit_store_fallbacks: register(
                r,
                IntCounter::with_opts(opts(
                    "rate_limit_store_fallbacks_total",
                    "Times rate limits fell back to per-replica counting (rate_limit_store down)",
                )),
            ),
            rate_limit_sync_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "rate_limit_sync_seconds",
                        "One synchronization of the shared rate limits with rate_limit_store",
                    )
                    .namespace("portcullis")
                    .buckets(BUCKETS.to_vec()),
                ),
            ),
            ready: register(
                r,
                IntGauge::with_opts(opts(
                    "ready",
                    "1 while the replica is ready (its store answers): what /readyz says",
                )),
            ),
            registry,
        }
    }

    /// The decision counters of requests that came in as `mode`.
    pub fn decisions(&self, mode: Mode) -> &Decisions {
        match mode {
            Mode::Proxy => &self.decisions[0],
            Mode::ForwardAuth => &self.decisions[1],
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            log::error!("encoding metrics failed: {e}");
        }
        out
    }
}

/// One route's series (`route` is its pattern, or `none`), resolved when a
/// config is loaded so that a request pays no label lookup: those hashed
/// every label value on every request.
pub struct RouteSeries {
    route: Box<str>,
    pub duration: Histogram,
    pub upstream_duration: Histogram,
    /// `requests_total` by mode, method and status, each resolved at its first
    /// use. Read without a lock: proxy threads counting the same route would
    /// otherwise all take one mutex per request.
    requests: ArcSwap<Vec<(Mode, &'static str, u16, IntCounter)>>,
    /// Held only to add a series to `requests`.
    adding: Mutex<()>,
}

impl RouteSeries {
    pub fn new(route: &str) -> RouteSeries {
        let m = &*METRICS;
        RouteSeries {
            route: route.into(),
            duration: m.request_duration.with_label_values(&[route]),
            upstream_duration: m.upstream_duration.with_label_values(&[route]),
            requests: ArcSwap::default(),
            adding: Mutex::default(),
        }
    }

    /// Counts one request in `requests_total`.
    pub fn count(&self, mode: Mode, method: &Method, status: u16) {
        let method = method_label(method);
        // Counted in place: cloning the counter would add a shared reference count
        // to every request.
        let counted = |seen: &[(Mode, &str, u16, IntCounter)]| {
            seen.iter()
                .find(|(o, m, s, _)| *s == status && *m == method && *o == mode)
                .map(|(_, _, _, counter)| counter.inc())
                .is_some()
        };
        if counted(&self.requests.load()) {
            return;
        }
        // A panic while holding the lock leaves the list as it was.
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have added it meanwhile.
        if counted(&self.requests.load()) {
            return;
        }
        let mut digits = itoa::Buffer::new();
        let counter = METRICS.requests.with_label_values(&[
            self.route.as_ref(),
            method,
            digits.format(status),
            mode.label(),
        ]);
        counter.inc();
        let mut seen = Vec::clone(&self.requests.load());
        seen.push((mode, method, status, counter));
        self.requests.store(Arc::new(seen));
    }
}

/// The `method` label: the method's name when HTTP defines it, else `OTHER`.
/// Any token is a valid method, and a label per made-up one would let
/// clients grow the series (and the gateway's memory) without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The process's metrics; one set survives config reloads.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_counts_every_request_once_from_many_threads() {
        let route = "/metrics-test/concurrent/**";
        let series = Arc::new(RouteSeries::new(route));
        let brew = Method::from_bytes(b"BREW").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (series, brew) = (Arc::clone(&series), brew.clone());
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        series.count(Mode::Proxy, &Method::GET, 200);
                        if i % 10 == 0 {
                            series.count(Mode::Proxy, &brew, 404);
                            series.count(Mode::ForwardAuth, &Method::GET, 200);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let value = |method, status, mode| {
            METRICS
                .requests
                .with_label_values(&[route, method, status, mode])
                .get()
        };
        assert_eq!(value("GET", "200", "proxy"), 4000);
        assert_eq!(value("OTHER", "404", "proxy"), 400);
        assert_eq!(value("GET", "200", "forward_auth"), 400);
        assert_eq!(series.requests.load().len(), 3, "one entry per series");
    }
}
