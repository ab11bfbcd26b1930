//! `tracing`: OpenTelemetry traces of the proxied requests, sent over OTLP/HTTP to a
//! collector (docs/tracing.md). Off unless the section is there. The endpoint's shape is
//! checked here; whether a collector answers is learnt at run time, and one that does not
//! only loses spans.

use std::time::Duration;

use super::parse_duration;
use super::schema::{key, Section, Ty};
use super::yaml::{Fields, Problems};

#[rustfmt::skip]
pub(super) static KEYS: &Section = &Section {
    path: "tracing",
    keys: &[
        key("otlp_endpoint", Ty::Matching("^\\s*http://"), "Where spans are posted, OTLP/HTTP protobuf: http://HOST:PORT/v1/traces (a bare http://HOST:PORT gets /v1/traces). Plain HTTP: point it at a collector or agent on the host or a private network.").required(),
        key("service_name", Ty::Text, "The service.name of every span (default portcullis)."),
        key("sample_ratio", Ty::Ratio, "Share of new traces recorded, 0 to 1 (default 1); a trusted incoming traceparent's sampled flag decides for its trace."),
        key("trust_incoming_traceparent", Ty::Bool, "Continue the trace of a client's W3C traceparent (default false: every request starts a new trace); only when the clients are your own services or a proxy that sets it."),
        key("include_user_id", Ty::Bool, "Put the verified token's subject on the span as enduser.id (default false)."),
        key("export_interval", Ty::Duration, "How often batched spans are sent (default 5s, 10ms to 1m)."),
    ],
};

/// Where `otlp_endpoint` posts when only a host and port are given, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does.
const TRACES_PATH: &str = "/v1/traces";
/// The SDK's own default batch delay.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
const MIN_EXPORT_INTERVAL: Duration = Duration::from_millis(10);
const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// OpenTelemetry tracing, when the file has a `tracing` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// `http://host:port/path`, checked at load; the host may be a name, resolved at each export.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of new traces recorded, in `0.0..=1.0`.
    pub sample_ratio: f64,
    /// Whether a client's `traceparent` continues its trace rather than being replaced.
    pub trust_incoming_traceparent: bool,
    /// Whether the span carries the token's subject as `enduser.id`.
    pub include_user_id: bool,
    /// How often the batch of finished spans is sent.
    pub export_interval: Duration,
}

/// Reads the `tracing` section; `None` (tracing off) when it is absent.
pub(super) fn read(top: &Fields, p: &mut Problems) -> Option<Tracing> {
    let section = top.get("tracing")?;
    let f = section.fields(p, KEYS);
    let endpoint = f
        .require(p, "otlp_endpoint")
        .and_then(|f| f.parsed(p, endpoint));
    let service_name = f.or(p, "service_name", "portcullis".to_owned(), |f, p| {
        let name = f.str(p)?.trim().to_owned();
        if name.is_empty() {
            f.fail(p, "must not be empty");
            return None;
        }
        Some(name)
    });
    let sample_ratio = f.or(p, "sample_ratio", 1.0, |f, p| f.parsed(p, ratio));
    let export_interval = f.or(p, "export_interval", DEFAULT_EXPORT_INTERVAL, |f, p| {
        let d = f.parsed(p, parse_duration)?;
        if !(MIN_EXPORT_INTERVAL..=MAX_EXPORT_INTERVAL).contains(&d) {
            f.fail(p, "must be between 10ms and 1m");
            return None;
        }
        Some(d)
    });
    let trust_incoming_traceparent = f.or(p, "trust_incoming_traceparent", false, |f, p| f.bool(p));
    let include_user_id = f.or(p, "include_user_id", false, |f, p| f.bool(p));
    // Last, so that every key is checked even when the endpoint is wrong.
    Some(Tracing {
        otlp_endpoint: endpoint?,
        service_name,
        sample_ratio,
        trust_incoming_traceparent,
        include_user_id,
        export_interval,
    })
}

/// Accepts `http://host[:port][/path]`; the path is `/v1/traces` when absent.
fn endpoint(text: &str) -> Result<String, String> {
    const SHAPE: &str = "http://HOST:PORT/v1/traces";
    let text = text.trim();
    let bad = |why: &str| format!("invalid endpoint \"{text}\": {why} ({SHAPE})");
    if text.starts_with("https://") {
        return Err(bad("TLS to the collector is not supported; send to a collector or agent on the host or a private network, which forwards over TLS"));
    }
    let uri: http::Uri = text.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("expected an http:// URL"));
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("missing host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if authority.host().is_empty() || authority.port_u16() == Some(0) {
        return Err(bad("missing host or port 0"));
    }
    if uri.query().is_some() {
        return Err(bad("no query is allowed"));
    }
    let path = match uri.path() {
        "" | "/" => TRACES_PATH,
        path => path,
    };
    Ok(format!("http://{authority}{path}"))
}

/// A share from 0 to 1, as a plain decimal.
fn ratio(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("invalid ratio \"{text}\": expected a number from 0 to 1, like 0.1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_traces_path_only_when_they_have_none() {
        for (given, used) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                " http://otel-collector:4318/v1/traces ",
                "http://otel-collector:4318/v1/traces",
            ),
            ("http://[::1]:4318/custom", "http://[::1]:4318/custom"),
            (
                "http://collector.internal",
                "http://collector.internal/v1/traces",
            ),
        ] {
            assert_eq!(endpoint(given).as_deref(), Ok(used), "{given}");
        }
    }

    #[test]
    fn other_endpoints_are_refused_naming_the_problem() {
        for (given, why) in [
            (
                "https://collector:4318",
                "TLS to the collector is not supported",
            ),
            ("grpc://collector:4317", "expected an http:// URL"),
            ("collector:4318", "expected an http:// URL"),
            ("http://user:pw@collector:4318", "credentials"),
            ("http://collector:4318/v1/traces?x=1", "no query"),
            ("http://collector:0", "port 0"),
            ("http://", "invalid endpoint"),
            ("not a url", "invalid endpoint"),
        ] {
            let e = endpoint(given).unwrap_err();
            assert!(e.contains(why), "{given}: {e}");
            assert!(e.starts_with("invalid endpoint"), "{given}: {e}");
        }
    }

    #[test]
    fn ratios_are_numbers_from_zero_to_one() {
        assert_eq!(ratio("0"), Ok(0.0));
        assert_eq!(ratio("0.25"), Ok(0.25));
        assert_eq!(ratio("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "half", "", "inf"] {
            assert!(ratio(bad).is_err(), "{bad}");
        }
    }
}
