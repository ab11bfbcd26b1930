//! OpenTelemetry tracing (docs/tracing.md) against a real OTLP/HTTP receiver: a Python server
//! decoding the official protobufs (`tests/tracing/otlp_receiver.py`, `opentelemetry-proto`
//! from PyPI in the venv `.ci/run` makes), which prints every span it gets as a JSON line.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The receiver's Python: `$PORTCULLIS_TRACING_PYTHON`, else the venv `.ci/run` makes.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("PORTCULLIS_TRACING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tracing-tools/bin/python3")
        });
    let usable = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(python);
    }
    assert!(
        std::env::var_os("PORTCULLIS_TEST_TRACING").is_none(),
        "{} cannot import opentelemetry.proto but PORTCULLIS_TEST_TRACING is set: .ci/run installs it",
        python.display()
    );
    println!("skipped: no Python with opentelemetry-proto (.ci/run installs it; set PORTCULLIS_TEST_TRACING to require it)");
    None
}

/// The OTLP receiver, killed on drop.
struct Receiver {
    addr: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Option<Receiver> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tracing/otlp_receiver.py");
        let mut child = Command::new(python()?)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (first, listening) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut read = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = read.next() {
                let _ = first.send(line);
            }
            for line in read.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let line = listening
            .recv_timeout(Duration::from_secs(20))
            .expect("the OTLP receiver says where it listens");
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the receiver: {line}"));
        Some(Receiver { addr, child, lines })
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every record received so far; a decoding failure fails the test.
    fn records(&self) -> Vec<Value> {
        let records: Vec<Value> = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).expect("the receiver prints JSON lines"))
            .collect();
        for r in &records {
            assert!(
                r.get("error").is_none(),
                "the receiver could not decode an export: {r}"
            );
        }
        records
    }

    /// Waits (≤ 10 s) for the server span whose request id is `id`, and returns it with
    /// the spans of its trace.
    fn trace_of(&self, id: &str) -> (Value, Vec<Value>) {
        let mut found = None;
        eventually(Duration::from_secs(10), || {
            found = self
                .records()
                .into_iter()
                .find(|s| s["attributes"]["portcullis.request_id"] == id);
            found.is_some()
        });
        let server = found.unwrap_or_else(|| {
            panic!(
                "no span for request {id} within 10 s; got {:#?}",
                self.records()
            )
        });
        // The child ends first, so it is in the same export or an earlier one.
        let trace = self
            .records()
            .into_iter()
            .filter(|s| s["trace_id"] == server["trace_id"])
            .collect();
        (server, trace)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BASE_CONFIG with a `tracing` section sending to `receiver`, 10 exports a second unless
/// `extra` sets its own interval.
fn traced(receiver: &Receiver, extra: &str) -> String {
    let interval = if extra.contains("export_interval") {
        ""
    } else {
        "  export_interval: 100ms\n"
    };
    format!(
        "{BASE_CONFIG}tracing:\n  otlp_endpoint: {}\n  service_name: edge-test\n{interval}{extra}",
        receiver.endpoint()
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A span's attribute as text (the receiver prints integers as numbers).
fn attr<'a>(span: &'a Value, name: &str) -> &'a Value {
    &span["attributes"][name]
}

/// The `traceparent` the upstream saw, split into its four parts.
fn upstream_traceparent(echoed: &Value) -> Vec<String> {
    let seen = echoed_header_values(echoed, "traceparent");
    assert_eq!(seen.len(), 1, "exactly one traceparent upstream: {seen:?}");
    seen[0].split('-').map(str::to_owned).collect()
}

/// A receiver, the echo upstream and a gateway tracing to the receiver with `extra` added to
/// its `tracing` section; `None` when the receiver cannot run here (and that is allowed).
fn traced_gateway(extra: &str) -> Option<(Receiver, Echo, Gateway)> {
    let receiver = Receiver::start()?;
    let echo = Echo::start();
    let yaml = traced(&receiver, extra);
    let gw = Gateway::start(&yaml, echo.addr, &[("JWT_SECRET", TEST_SECRET)]);
    Some((receiver, echo, gw))
}

/// The `upstream` span of `trace`, once the `traceparent` the upstream saw (`echoed`) is
/// checked to name it, in the server span's trace.
fn upstream_span<'a>(server: &Value, trace: &'a [Value], echoed: &Value) -> &'a Value {
    let upstream = trace
        .iter()
        .find(|s| s["name"] == "upstream")
        .unwrap_or_else(|| panic!("no upstream span in {trace:#?}"));
    let parts = upstream_traceparent(echoed);
    assert_eq!(&parts[1], server["trace_id"].as_str().unwrap());
    assert_eq!(&parts[2], upstream["span_id"].as_str().unwrap());
    upstream
}

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

#[test]
fn an_allowed_request_gets_a_server_span_with_its_route_and_decision_and_an_upstream_child() {
    let Some((receiver, _echo, gw)) = traced_gateway("") else {
        return;
    };
    let token = token("u1", "viewer", "");
    let r = get(
        gw.addr,
        "/api/users/u1/profile",
        &[
            ("Authorization", &bearer(&token)),
            ("X-Request-Id", "allowed-1"),
        ],
    );
    assert_eq!(r.status, 200);
    let (server, trace) = receiver.trace_of("allowed-1");

    assert_eq!(server["name"], "GET /api/users/{user}/**");
    assert_eq!(server["kind"], "SPAN_KIND_SERVER");
    assert_eq!(server["scope"], "portcullis");
    assert_eq!(server["resource"]["service.name"], "edge-test");
    assert_eq!(server["parent_span_id"], "", "a new trace: no parent");
    assert_eq!(attr(&server, "http.request.method"), "GET");
    assert_eq!(attr(&server, "http.route"), "/api/users/{user}/**");
    assert_eq!(attr(&server, "http.response.status_code"), 200);
    assert_eq!(attr(&server, "portcullis.decision"), "allow");
    assert!(attr(&server, "portcullis.reason").is_null());
    assert!(
        attr(&server, "enduser.id").is_null(),
        "no user id unless configured"
    );
    assert_eq!(server["status"], "STATUS_CODE_UNSET");

    let children = trace.iter().filter(|s| s["name"] == "upstream").count();
    assert_eq!(children, 1, "one upstream span: {trace:#?}");
    // The upstream continues the trace from the gateway's span of its exchange.
    let upstream = upstream_span(&server, &trace, &r.json());
    assert_eq!(upstream["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(upstream["parent_span_id"], server["span_id"]);
    assert_eq!(attr(upstream, "portcullis.upstream"), "app");
    let within = |s: &Value| {
        s["start_ns"].as_u64().unwrap() >= server["start_ns"].as_u64().unwrap()
            && s["end_ns"].as_u64().unwrap() <= server["end_ns"].as_u64().unwrap()
            && s["start_ns"].as_u64().unwrap() <= s["end_ns"].as_u64().unwrap()
    };
    assert!(
        within(upstream),
        "the upstream span lies within the request's: {trace:#?}"
    );
    let parts = upstream_traceparent(&r.json());
    assert_eq!((parts[0].as_str(), parts[3].as_str()), ("00", "01"));
}

#[test]
fn refusals_are_traced_with_their_status_decision_and_reason_and_no_upstream_span() {
    let Some((receiver, echo, gw)) = traced_gateway("") else {
        return;
    };
    let expired = mint_hs256(
        TEST_SECRET.as_bytes(),
        HEADER,
        &claims_until("u1", "viewer", "", now() - 60),
    );
    let r = get(
        gw.addr,
        "/api/protected",
        &[
            ("Authorization", &bearer(&expired)),
            ("X-Request-Id", "expired-1"),
        ],
    );
    assert_eq!(r.status, 401);
    let r = get(gw.addr, "/api/protected", &[("X-Request-Id", "missing-1")]);
    assert_eq!(r.status, 401);
    let viewer = token("u2", "viewer", "");
    let r = get(
        gw.addr,
        "/api/admin/users",
        &[
            ("Authorization", &bearer(&viewer)),
            ("X-Request-Id", "forbidden-1"),
        ],
    );
    assert_eq!(r.status, 403);
    assert_eq!(echo.seen_count(), 0, "nothing reached the upstream");

    let (expired, trace) = receiver.trace_of("expired-1");
    assert_eq!(expired["name"], "GET /api/protected");
    assert_eq!(attr(&expired, "http.response.status_code"), 401);
    assert_eq!(attr(&expired, "portcullis.decision"), "invalid_token");
    assert_eq!(attr(&expired, "portcullis.reason"), "expired");
    assert_eq!(trace.len(), 1, "no upstream span: {trace:#?}");

    let (missing, _) = receiver.trace_of("missing-1");
    assert_eq!(attr(&missing, "http.response.status_code"), 401);
    assert_eq!(attr(&missing, "portcullis.decision"), "missing_token");
    assert!(attr(&missing, "portcullis.reason").is_null());

    let (forbidden, trace) = receiver.trace_of("forbidden-1");
    assert_eq!(forbidden["name"], "GET /api/admin/**");
    assert_eq!(attr(&forbidden, "http.route"), "/api/admin/**");
    assert_eq!(attr(&forbidden, "http.response.status_code"), 403);
    assert_eq!(attr(&forbidden, "portcullis.decision"), "forbidden");
    assert!(attr(&forbidden, "enduser.id").is_null());
    assert_eq!(
        forbidden["status"], "STATUS_CODE_UNSET",
        "a 4xx is not a server error"
    );
    assert_eq!(trace.len(), 1, "no upstream span: {trace:#?}");
}

#[test]
fn an_untrusted_traceparent_is_replaced_by_a_new_trace() {
    let Some((receiver, _echo, gw)) = traced_gateway("") else {
        return;
    };
    let r = get(
        gw.addr,
        "/health",
        &[
            ("traceparent", &client_traceparent()),
            ("tracestate", "vendor=spoofed"),
            ("X-Request-Id", "untrusted-1"),
        ],
    );
    assert_eq!(r.status, 200);
    let (server, trace) = receiver.trace_of("untrusted-1");
    assert_ne!(server["trace_id"], CLIENT_TRACE);
    assert_eq!(server["parent_span_id"], "");
    upstream_span(&server, &trace, &r.json());
    assert!(echoed_header_values(&r.json(), "tracestate").is_empty());
}

#[test]
fn a_trusted_traceparent_continues_the_clients_trace_and_a_spoofed_one_starts_a_new_one() {
    let Some((receiver, _echo, gw)) = traced_gateway("  trust_incoming_traceparent: true\n") else {
        return;
    };
    let r = get(
        gw.addr,
        "/health",
        &[
            ("traceparent", &client_traceparent()),
            ("tracestate", "vendor=kept,other=1"),
            ("X-Request-Id", "trusted-1"),
        ],
    );
    assert_eq!(r.status, 200);
    let (server, trace) = receiver.trace_of("trusted-1");
    assert_eq!(server["trace_id"], CLIENT_TRACE);
    assert_eq!(server["parent_span_id"], CLIENT_SPAN);
    upstream_span(&server, &trace, &r.json());
    assert_eq!(upstream_traceparent(&r.json())[3], "01");
    assert_eq!(
        echoed_header_values(&r.json(), "tracestate"),
        ["vendor=kept,other=1"]
    );

    // A parent that says "not sampled" is obeyed: no spans, and the upstream is told so.
    let r = get(
        gw.addr,
        "/health",
        &[(
            "traceparent",
            &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"),
        )],
    );
    let parts = upstream_traceparent(&r.json());
    assert_eq!((parts[1].as_str(), parts[3].as_str()), (CLIENT_TRACE, "00"));

    // Malformed, all-zero, upper-case, oversized and duplicated traceparents are each
    // answered normally and start a trace of their own.
    let zero_trace = format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32));
    let zero_span = format!("00-{CLIENT_TRACE}-{}-01", "0".repeat(16));
    let upper = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
    let long = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra");
    let valid = client_traceparent();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("garbage", vec![("traceparent", "not-a-trace-context")]),
        ("zero-trace", vec![("traceparent", &zero_trace)]),
        ("zero-span", vec![("traceparent", &zero_span)]),
        ("upper", vec![("traceparent", &upper)]),
        ("version-00-extra", vec![("traceparent", &long)]),
        (
            "version-ff",
            vec![(
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
        ),
        (
            "twice",
            vec![("traceparent", &valid), ("traceparent", &valid)],
        ),
    ];
    for (name, mut headers) in cases {
        headers.push(("X-Request-Id", name));
        let r = get(gw.addr, "/health", &headers);
        assert_eq!(r.status, 200, "{name}");
        let (server, trace) = receiver.trace_of(name);
        assert_ne!(server["trace_id"], CLIENT_TRACE, "{name}");
        assert_ne!(server["trace_id"], "0".repeat(32), "{name}");
        assert_eq!(server["parent_span_id"], "", "{name}");
        upstream_span(&server, &trace, &r.json());
    }
}

#[test]
fn the_user_id_is_on_the_span_only_when_configured() {
    let Some((receiver, _echo, gw)) = traced_gateway("  include_user_id: true\n") else {
        return;
    };
    let token = token("user-42", "viewer", "");
    let r = get(
        gw.addr,
        "/api/protected",
        &[
            ("Authorization", &bearer(&token)),
            ("X-Request-Id", "user-1"),
        ],
    );
    assert_eq!(r.status, 200);
    let (server, trace) = receiver.trace_of("user-1");
    assert_eq!(attr(&server, "enduser.id"), "user-42");
    for span in &trace {
        let text = span.to_string();
        assert!(
            !text.contains(&token),
            "the token never reaches a span: {text}"
        );
    }
    // A public route has no user to name.
    let r = get(gw.addr, "/health", &[("X-Request-Id", "public-1")]);
    assert_eq!(r.status, 200);
    let (public, _) = receiver.trace_of("public-1");
    assert_eq!(attr(&public, "portcullis.decision"), "public");
    assert!(attr(&public, "enduser.id").is_null());
}

#[test]
fn a_sample_ratio_of_zero_records_nothing_but_still_propagates_a_trace() {
    let Some((receiver, _echo, gw)) = traced_gateway("  sample_ratio: 0\n") else {
        return;
    };
    let r = get(gw.addr, "/health", &[]);
    assert_eq!(r.status, 200);
    let parts = upstream_traceparent(&r.json());
    assert_eq!(parts[3], "00", "not sampled");
    assert_ne!(parts[1], "0".repeat(32));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(receiver.records(), Vec::<Value>::new());
}

#[test]
fn a_failed_upstream_exchange_ends_its_span_as_an_error() {
    let Some((receiver, _echo, gw)) = traced_gateway("") else {
        return;
    };
    let r = get(gw.addr, "/dead/x", &[("X-Request-Id", "dead-1")]);
    assert_eq!(r.status, 502);
    let (server, trace) = receiver.trace_of("dead-1");
    assert_eq!(attr(&server, "http.response.status_code"), 502);
    assert_eq!(server["status"], "STATUS_CODE_ERROR");
    let upstream = trace
        .iter()
        .find(|s| s["name"] == "upstream")
        .expect("upstream span");
    assert_eq!(upstream["status"], "STATUS_CODE_ERROR");
    assert_eq!(attr(upstream, "portcullis.upstream"), "dead");
}

#[test]
fn tracing_off_sends_nothing_and_leaves_the_clients_traceparent_alone() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let echo = Echo::start();
    // The standard OTel variables alone do not turn tracing on: only the config does.
    let endpoint = format!("http://{}", receiver.addr);
    let env = [
        ("JWT_SECRET", TEST_SECRET),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_EXPORTER", "otlp"),
    ];
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &env);
    let r = get(gw.addr, "/health", &[]);
    assert_eq!(r.status, 200);
    assert!(echoed_header_values(&r.json(), "traceparent").is_empty());
    assert!(echoed_header_values(&r.json(), "tracestate").is_empty());
    let r = get(
        gw.addr,
        "/health",
        &[
            ("traceparent", &client_traceparent()),
            ("tracestate", "vendor=x"),
        ],
    );
    assert_eq!(
        echoed_header_values(&r.json(), "traceparent"),
        [client_traceparent()]
    );
    assert_eq!(echoed_header_values(&r.json(), "tracestate"), ["vendor=x"]);
    let token = token("u1", "viewer", "");
    let r = get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &bearer(&token))],
    );
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.records(), Vec::<Value>::new());
}

#[test]
fn a_collector_that_is_down_costs_no_request_its_answer() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let echo = Echo::start();
    let yaml = traced(&receiver, "");
    drop(receiver);
    let gw = Gateway::start(&yaml, echo.addr, &[("JWT_SECRET", TEST_SECRET)]);
    for _ in 0..20 {
        assert_eq!(get(gw.addr, "/health", &[]).status, 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr_text()
            .contains("tracing: export to")),
        "the failing export is logged once: {}",
        gw.stderr_text()
    );
    assert_eq!(get(gw.addr, "/health", &[]).status, 200);
}

#[test]
fn check_shows_the_tracing_settings_and_names_the_line_of_a_bad_one() {
    let dir = fresh_temp_dir();
    let base = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let env = [("JWT_SECRET", TEST_SECRET)];
    let good =
        format!("{base}tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n  sample_ratio: 0.25\n");
    let path = write_file(&dir, "gateway.yaml", &good);
    let (code, out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tracing to http://127.0.0.1:4318/v1/traces as portcullis  sample 0.25  trust traceparent false  user id false\n"),
        "{out}"
    );
    let (_, off, _) = {
        let path = write_file(&dir, "off.yaml", &base);
        portcullis(&["check", "-c", path.to_str().unwrap()], &env)
    };
    assert!(!off.contains("tracing"), "{off}");

    let lines_before = base.lines().count();
    let bad =
        format!("{base}tracing:\n  otlp_endpoint: https://collector:4318\n  sample_ratio: 2\n");
    let path = write_file(&dir, "bad.yaml", &bad);
    let (code, out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &env);
    assert_eq!(code, 2, "{out}{err}");
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:{}:18: tracing.otlp_endpoint: invalid endpoint \"https://collector:4318\": TLS to the collector is not supported",
            lines_before + 2
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:{}:17: tracing.sample_ratio: invalid ratio \"2\": expected a number from 0 to 1",
            lines_before + 3
        )),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn spans_still_queued_at_sigterm_are_sent_before_the_gateway_exits() {
    let Some((receiver, _echo, mut gw)) = traced_gateway("  export_interval: 1m\n") else {
        return;
    };
    let r = get(gw.addr, "/health", &[("X-Request-Id", "last-1")]);
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        receiver.records().is_empty(),
        "not sent before its interval"
    );
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(8)).expect("exited");
    assert!(status.success(), "{status:?}");
    let (server, _) = receiver.trace_of("last-1");
    assert_eq!(attr(&server, "http.response.status_code"), 200);
}

#[test]
fn a_reload_turns_tracing_on_and_off() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let echo = Echo::start();
    let env = [("JWT_SECRET", TEST_SECRET)];
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &env);
    let config = gw.dir.join("gateway.yaml");
    let off = std::fs::read_to_string(&config).unwrap();
    let reloads = || {
        metric(
            gw.admin_addr,
            "portcullis_config_reloads_total{result=\"success\"}",
        )
        .unwrap_or(0.0)
    };
    let reload = |text: &str, count: f64| {
        std::fs::write(&config, text).unwrap();
        gw.signal("HUP");
        assert!(
            eventually(Duration::from_secs(5), || reloads() == count),
            "reload {count} not taken: {}",
            gw.stderr_text()
        );
    };
    let on = format!(
        "{off}tracing:\n  otlp_endpoint: {}\n  export_interval: 100ms\n",
        receiver.endpoint()
    );
    reload(&on, 1.0);
    let r = get(gw.addr, "/health", &[("X-Request-Id", "after-reload")]);
    upstream_traceparent(&r.json());
    receiver.trace_of("after-reload");

    reload(&off, 2.0);
    let r = get(gw.addr, "/health", &[("X-Request-Id", "off-again")]);
    assert!(echoed_header_values(&r.json(), "traceparent").is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<Value> = receiver
        .records()
        .iter()
        .map(|s| attr(s, "portcullis.request_id").clone())
        .collect();
    assert!(!ids.contains(&Value::from("off-again")), "{ids:?}");
}

#[test]
fn an_http2_request_is_traced_like_an_http1_one() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(curl) = on_path("curl") else {
        return;
    };
    let echo = Echo::start();
    let yaml = format!("h2c: true\n{}", traced(&receiver, ""));
    let gw = Gateway::start(&yaml, echo.addr, &[("JWT_SECRET", TEST_SECRET)]);
    let out = Command::new(curl)
        .args(["-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}"])
        .args(["-H", "X-Request-Id: h2-1"])
        .args(["-H", &format!("traceparent: {}", client_traceparent())])
        .arg(format!("http://{}/health", gw.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').expect("curl's -w line");
    assert_eq!(version, "2", "{text}");
    let echoed: Value = serde_json::from_str(body).expect("the echo's JSON");
    let (server, trace) = receiver.trace_of("h2-1");
    assert_eq!(server["name"], "GET /health");
    assert_eq!(attr(&server, "http.response.status_code"), 200);
    assert_ne!(server["trace_id"], CLIENT_TRACE, "untrusted: a new trace");
    upstream_span(&server, &trace, &echoed);
}
