//! OpenTelemetry traces of proxied requests (docs/tracing.md), off unless the config has a
//! `tracing` section: a server span per request (route pattern, method, status, the auth
//! decision and its reason, the user id only when configured) with a client span for the
//! upstream's wait, and a W3C `traceparent` for the upstream naming that span.
//!
//! Finished spans go through the SDK's batch processor: a channel to a thread of its own,
//! which posts them over OTLP/HTTP (`otel/export.rs`), so no proxy thread ever waits on
//! the collector. When tracing is off the request path only finds `Gateway::tracing` empty.

mod export;

use crate::config;
use crate::http1::{push_field, Request};
use http::Method;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running exporter and what the request path needs to make spans for it.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    trust_incoming: bool,
    include_user_id: bool,
}

/// The exporter in use and the settings it was made from, so a reload that leaves the
/// `tracing` section as it was keeps it (and the spans it has queued).
static CURRENT: Mutex<Option<(config::Tracing, Arc<Tracing>)>> = Mutex::new(None);

/// The exporter for `settings` (at load and at each reload, never on the request path):
/// the running one when the settings are unchanged, else a new one, the old one flushed
/// and stopped on a thread of its own. `None` stops any running one.
pub fn install(settings: Option<&config::Tracing>) -> Result<Option<Arc<Tracing>>, String> {
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(want), Some((have, running))) = (settings, current.as_ref()) {
        if want == have {
            return Ok(Some(running.clone()));
        }
    }
    let next = match settings {
        Some(s) => Some((s.clone(), Arc::new(Tracing::new(s)?))),
        None => None,
    };
    if let Some((_, old)) = std::mem::replace(&mut *current, next.clone()) {
        // Requests still holding it make spans that go nowhere; flushing may wait
        // for the collector, which no caller here should.
        let stopping = std::thread::Builder::new()
            .name("otel-stop".into())
            .spawn(move || {
                let _ = old.provider.shutdown();
            });
        if let Err(e) = stopping {
            log::warn!("tracing: cannot stop the previous exporter ({e})");
        }
    }
    Ok(next.map(|(_, t)| t))
}

/// Sends the spans still queued; called once the gateway is about to exit.
pub fn flush() {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((_, tracing)) = current {
        let _ = tracing.provider.shutdown();
    }
}

impl Tracing {
    fn new(s: &config::Tracing) -> Result<Tracing, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(s.otlp_endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(export::Poster::new(EXPORT_TIMEOUT))
            .build()
            .map_err(|e| format!("tracing: cannot start the OTLP exporter: {e}"))?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(s.export_interval)
                    .build(),
            )
            .build();
        let resource = Resource::builder()
            .with_service_name(s.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        // A trusted parent's sampled flag decides for its trace; a new trace is kept
        // with the configured probability, the same way on every replica.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(s.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_resource(resource)
            .with_sampler(sampler)
            .build();
        let tracer = provider.tracer("portcullis");
        log::info!(
            "tracing: spans to {} (service {}, {} of new traces)",
            s.otlp_endpoint,
            s.service_name,
            s.sample_ratio
        );
        Ok(Tracing {
            provider,
            tracer,
            trust_incoming: s.trust_incoming_traceparent,
            include_user_id: s.include_user_id,
        })
    }

    /// Opens the request's span, continuing the client's trace only when its
    /// `traceparent` is trusted and valid; either way the client's `traceparent` and
    /// `tracestate` are taken off the request, as the upstream gets the gateway's.
    pub fn start(&self, req: &mut Request, request_id: &str) -> Box<RequestTrace> {
        let parent = if self.trust_incoming {
            TraceContextPropagator::new().extract(&Fields(req))
        } else {
            Context::new()
        };
        req.retain(|name| {
            !name.eq_ignore_ascii_case(b"traceparent") && !name.eq_ignore_ascii_case(b"tracestate")
        });
        let span = self
            .tracer
            .span_builder(req.method.as_str().to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", req.method.as_str().to_owned()),
                KeyValue::new("portcullis.request_id", request_id.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        Box::new(RequestTrace {
            server: Context::new().with_span(span),
            upstream: None,
            tracer: self.tracer.clone(),
            include_user_id: self.include_user_id,
        })
    }
}

/// One request's spans, kept in its context from the start of the pipeline to its log line.
pub struct RequestTrace {
    server: Context,
    upstream: Option<Context>,
    tracer: SdkTracer,
    include_user_id: bool,
}

/// How the request ended, for its span.
pub struct Outcome<'a> {
    pub method: &'a Method,
    /// The matched route's pattern, when one matched.
    pub route: Option<&'a str>,
    pub status: u16,
    pub decision: &'a str,
    pub reason: Option<&'a str>,
    /// The verified token's subject, when there was one.
    pub user: Option<&'a str>,
}

impl RequestTrace {
    /// Opens the span of the exchange with `upstream`, right before it begins; the
    /// `traceparent` the upstream gets names this span.
    pub fn start_upstream(&mut self, upstream: &str) {
        let span = self
            .tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("portcullis.upstream", upstream.to_owned())])
            .start_with_context(&self.tracer, &self.server);
        self.upstream = Some(Context::new().with_span(span));
    }

    /// The upstream's answer head arrived: its span ends.
    pub fn upstream_answered(&self) {
        if let Some(up) = &self.upstream {
            up.span().end();
        }
    }

    /// Writes `traceparent` (and a trusted parent's `tracestate`) for the upstream's
    /// request head.
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        let cx = self.upstream.as_ref().unwrap_or(&self.server);
        let span = cx.span();
        let sc = span.span_context();
        let value = format!(
            "00-{:032x}-{:016x}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        push_field(out, b"traceparent", value.as_bytes());
        let state = sc.trace_state().header();
        // Parsed and re-serialized by the SDK from a trusted parent's field; checked
        // again since it goes into the head as it is.
        if !state.is_empty() && state.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            push_field(out, b"tracestate", state.as_bytes());
        }
    }

    /// Ends the request's span (and the upstream's, when it never answered) with what
    /// the pipeline decided and answered.
    pub fn finish(&self, outcome: &Outcome) {
        if let Some(up) = &self.upstream {
            let span = up.span();
            if span.is_recording() {
                span.set_status(Status::error("no answer from the upstream"));
                span.end();
            }
        }
        let span = self.server.span();
        if !span.is_recording() {
            return;
        }
        let method = outcome.method.as_str();
        span.update_name(match outcome.route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        });
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(outcome.status)),
            KeyValue::new("portcullis.decision", outcome.decision.to_owned()),
        ];
        if let Some(route) = outcome.route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some(reason) = outcome.reason {
            attributes.push(KeyValue::new("portcullis.reason", reason.to_owned()));
        }
        if let Some(user) = outcome.user.filter(|_| self.include_user_id) {
            attributes.push(KeyValue::new("enduser.id", user.to_owned()));
        }
        span.set_attributes(attributes);
        // Server spans mark only answers the gateway or its upstream failed (5xx).
        if outcome.status >= 500 {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// A request's fields as the W3C propagator reads them. A field sent twice is read as
/// absent: which copy is the real one cannot be known.
struct Fields<'a>(&'a Request);

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut all = self
            .0
            .fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, value)| value);
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        std::str::from_utf8(first).ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .fields()
            .filter_map(|(name, _)| std::str::from_utf8(name).ok())
            .collect()
    }
}
