//! HTTP/2 from clients: prior knowledge (h2c) on the plain listener, `h2` by ALPN on the TLS
//! one, each stream through the same pipeline as an HTTP/1 request; the protocol's own checks
//! (RFC 9113 §8.2.2) and the known attacks, sent frame by frame by `tests/http2/frames.py`.
//!
//! Real clients: curl (with nghttp2), h2load (Debian's nghttp2-client) and Python's `hpack`
//! (from the `h2` package) in the venv .ci/run makes (`common::peers`).

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn h2c_config() -> String {
    format!("h2c: true\n{BASE_CONFIG}")
}

fn start_h2c() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(&h2c_config(), echo.addr, &[]);
    (echo, gw)
}

/// Runs a scenario of `frames.py` against `gw` and returns its JSON line.
fn frames(gw: &Gateway, args: &[&str]) -> Option<Value> {
    let python = python()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http2/frames.py");
    let out = Command::new(python)
        .arg(script)
        .arg("127.0.0.1")
        .arg(gw.addr.port().to_string())
        .args(args)
        .output()
        .expect("run frames.py");
    assert!(
        out.status.success(),
        "frames.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Some(serde_json::from_str(text.trim()).expect("frames.py prints one JSON line"))
}

/// curl's answer: status, negotiated HTTP version, headers and body.
struct Curl {
    status: u16,
    version: String,
    headers: String,
    body: String,
}

fn curl(args: &[&str]) -> Option<Curl> {
    let curl = on_path("curl")?;
    let out = Command::new(curl)
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rest, last) = text.rsplit_once('\n').expect("curl's -w line");
    let (code, version) = last.split_once(' ').expect("code and version");
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Some(Curl {
        status: code.parse().unwrap_or(0),
        version: version.to_owned(),
        headers: headers.to_lowercase(),
        body: body.to_owned(),
    })
}

fn url(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.addr)
}

fn gateway_rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A plain HTTP/2 request still answers on `gw` (the gateway is up and serving).
fn still_serves(gw: &Gateway) {
    let r = curl(&["--http2-prior-knowledge", &url(gw, "/health")]).unwrap();
    assert_eq!((r.status, r.version.as_str()), (200, "2"), "{}", r.body);
}

#[test]
fn prior_knowledge_requests_go_through_the_same_pipeline_as_http1() {
    let (_echo, gw) = start_h2c();
    let Some(r) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "x-user-id: spoofed",
        &url(&gw, "/health"),
    ]) else {
        return;
    };
    assert_eq!((r.status, r.version.as_str()), (200, "2"), "{}", r.body);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        echoed_header_values(&seen, "x-user-id").is_empty(),
        "{seen}"
    );
    assert!(r.headers.contains("x-request-id: "), "{}", r.headers);

    let r = curl(&["--http2-prior-knowledge", &url(&gw, "/api/protected")]).unwrap();
    assert_eq!((r.status, r.version.as_str()), (401, "2"));
    assert_eq!(r.body, r#"{"error":"Missing token"}"#);
    assert!(
        r.headers.contains("www-authenticate: bearer"),
        "{}",
        r.headers
    );

    let t = token("user-42", "creator", "");
    let auth = format!("Authorization: Bearer {t}");
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &auth,
        "-H",
        "x-user-role: admin",
        "--data-binary",
        "hello over h2",
        &url(&gw, "/api/upload?x=1"),
    ])
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/upload?x=1");
    assert_eq!(seen["body"], "hello over h2");
    assert_eq!(echoed_header_values(&seen, "x-user-id"), ["user-42"]);
    assert_eq!(echoed_header_values(&seen, "x-user-role"), ["creator"]);

    // A viewer is refused by the route's rule, and an encoded slash by normalization.
    let viewer = format!("Authorization: Bearer {}", token("v", "viewer", ""));
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &viewer,
        "-d",
        "x",
        &url(&gw, "/api/upload"),
    ])
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let r = curl(&[
        "--http2-prior-knowledge",
        "--path-as-is",
        &url(&gw, "/api/browse/a%2Fb"),
    ])
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);

    assert!(eventually(Duration::from_secs(3), || {
        gw.stdout_lines()
            .iter()
            .filter(|l| l.contains(r#""protocol":"HTTP/2""#))
            .count()
            >= 5
    }));
    let line = gw
        .stdout_lines()
        .into_iter()
        .find(|l| l.contains(r#""route":"/api/upload""#) && l.contains(r#""status":200"#))
        .expect("the upload's access-log line");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["user"], "user-42");
    assert_eq!(
        metric(
            gw.admin_addr,
            r#"portcullis_requests_total{method="POST",mode="proxy",route="/api/upload",status="200"}"#
        ),
        Some(1.0)
    );
    // HTTP/1 on the same listener is unchanged, and logged as such.
    let r = get(gw.addr, "/health", &[]);
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(3), || gw
        .stdout_lines()
        .iter()
        .any(|l| l.contains(r#""protocol":"HTTP/1.1""#))));
}

#[test]
fn a_body_without_a_length_is_streamed_to_the_upstream_chunked() {
    let (_echo, gw) = start_h2c();
    let Some(curl_bin) = on_path("curl") else {
        return;
    };
    let body = "x".repeat(300_000);
    let mut child = Command::new(curl_bin)
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-T",
            "-",
            "--max-time",
            "10",
        ])
        .arg(url(&gw, "/health"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the echo's JSON");
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["body"].as_str().map(str::len), Some(body.len()));
    assert_eq!(
        echoed_header_values(&seen, "transfer-encoding"),
        ["chunked"]
    );
}

#[test]
fn a_route_body_limit_refuses_an_http2_body_with_413() {
    let echo = Echo::start();
    let config = h2c_config().replace(
        "  - { path: /health, upstream: app, auth: none }",
        "  - { path: /health, upstream: app, auth: none, max_body: 1KiB }",
    );
    let gw = Gateway::start(&config, echo.addr, &[]);
    let big = "y".repeat(4096);
    let Some(r) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &big,
        &url(&gw, "/health"),
    ]) else {
        return;
    };
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body, r#"{"error":"Payload too large"}"#);
    assert_eq!(echo.seen_count(), 0);
    still_serves(&gw);
}

#[test]
fn with_h2c_off_a_preface_is_refused_with_http_1_1_required() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let Some(hello) = frames(&gw, &["hello"]) else {
        return;
    };
    // HTTP_1_1_REQUIRED (RFC 9113 §7), before any stream.
    assert_eq!(hello["goaway"], 13, "{hello}");
    let r = curl(&["--http2-prior-knowledge", &url(&gw, "/health")]).unwrap();
    assert_ne!(r.status, 200);
    assert_eq!(get(gw.addr, "/health", &[]).status, 200);
    assert_eq!(echo.wait_seen(1).len(), 1);
}

#[test]
fn h2load_gets_a_2xx_for_every_request() {
    let (_echo, gw) = start_h2c();
    let Some(h2load) = on_path("h2load") else {
        return;
    };
    let out = Command::new(h2load)
        .args(["-n", "2000", "-c", "4", "-m", "16"])
        .arg(url(&gw, "/health"))
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{text}"
    );
    assert!(
        text.contains("status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx"),
        "{text}"
    );
}

#[test]
fn connection_specific_fields_are_stream_errors_and_the_connection_goes_on() {
    let (echo, gw) = start_h2c();
    for (name, value) in [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        let Some(r) = frames(&gw, &["field", name, value]) else {
            return;
        };
        // RST_STREAM with PROTOCOL_ERROR (RFC 9113 §8.1.1), then the next stream is served.
        assert_eq!(r["first"]["reset"], 1, "{name}: {r}");
        assert_eq!(r["second"]["status"], 200, "{name}: {r}");
    }
    let r = frames(&gw, &["field", "te", "trailers"]).unwrap();
    assert_eq!(r["first"]["status"], 200, "{r}");
    // Only the plain requests (and the TE: trailers one) reached the upstream.
    assert_eq!(echo.wait_seen(8).len(), 8);
}

/// `frames.py` `scenario` with a field h2 cannot decode on stream 1: RST_STREAM(PROTOCOL_ERROR)
/// on it, a 200 on stream 3 of the same connection.
fn refused_then_served(gw: &Gateway, args: &[&str]) -> Option<()> {
    let r = frames(gw, args)?;
    assert_eq!(r["first"]["reset"], 1, "{args:?}: {r}");
    assert_eq!(r["second"]["status"], 200, "{args:?}: {r}");
    Some(())
}

/// Waits for `n` requests at the upstream, gives a stray one time to arrive, and returns them.
fn seen_exactly(echo: &Echo, n: usize) -> Vec<Value> {
    echo.wait_seen(n);
    std::thread::sleep(Duration::from_millis(300));
    let seen = echo.seen();
    assert_eq!(seen.len(), n, "{seen:#?}");
    seen
}

#[test]
fn an_uppercase_field_name_is_a_stream_error_and_the_connection_goes_on() {
    let (echo, gw) = start_h2c();
    // RFC 9113 §8.2.1: a malformed request, a stream error. The h2 crate alone would end the
    // connection; the screen in front of it (src/http2/screen.rs) refuses the stream instead.
    if refused_then_served(&gw, &["field", "X-Upper", "1"]).is_none() {
        return;
    }
    refused_then_served(&gw, &["field", "x-upper-Z", "1"]).unwrap();
    refused_then_served(&gw, &["huffman", "X-Upper", "1"]).unwrap();
    // Only the plain requests on stream 3 reached the upstream.
    let seen = seen_exactly(&echo, 3);
    assert!(seen
        .iter()
        .all(|r| echoed_header_values(r, "x-upper").is_empty()));
    assert!(seen
        .iter()
        .all(|r| echoed_header_values(r, "x-upper-z").is_empty()));
}

#[test]
fn names_and_values_h2_cannot_decode_are_stream_errors() {
    let (echo, gw) = start_h2c();
    for (name, value) in [
        ("x-nul", "a\\x00b"),
        ("x-crlf", "a\\r\\nx-injected: 1"),
        ("x-lf", "a\\nb"),
        ("x space", "1"),
        (":unknown", "1"),
    ] {
        if refused_then_served(&gw, &["field", name, value]).is_none() {
            return;
        }
    }
    refused_then_served(&gw, &["huffman", "x-nul", "a\\x00b"]).unwrap();
    let seen = seen_exactly(&echo, 6);
    assert!(seen
        .iter()
        .all(|r| echoed_header_values(r, "x-injected").is_empty()));
}

#[test]
fn a_refused_name_in_the_dynamic_table_is_refused_by_index_too_and_the_rest_of_the_table_still_serves(
) {
    let (echo, gw) = start_h2c();
    // Stream 1 inserts `x-lower: kept` and `X-Upper: 1`; stream 3 sends `X-Upper` by its index,
    // stream 5 `x-lower` by its index.
    let Some(r) = frames(&gw, &["table", "X-Upper"]) else {
        return;
    };
    assert_eq!(r["first"]["reset"], 1, "{r}");
    assert_eq!(r["second"]["reset"], 1, "{r}");
    assert_eq!(r["third"]["status"], 200, "{r}");
    let seen = seen_exactly(&echo, 1);
    assert_eq!(echoed_header_values(&seen[0], "x-lower"), ["kept"]);
    // The same scenario with a name h2 accepts: every stream is served.
    let r = frames(&gw, &["table", "x-upper"]).unwrap();
    for stream in ["first", "second", "third"] {
        assert_eq!(r[stream]["status"], 200, "{stream}: {r}");
    }
    let seen = seen_exactly(&echo, 4);
    assert_eq!(echoed_header_values(&seen[2], "x-upper"), ["1"]);
    assert_eq!(echoed_header_values(&seen[3], "x-lower"), ["kept"]);
}

#[test]
fn a_header_block_over_headers_and_continuation_frames_is_screened_whole() {
    let (echo, gw) = start_h2c();
    let Some(r) = frames(&gw, &["split", "x-split", "yes"]) else {
        return;
    };
    assert_eq!(r["first"]["status"], 200, "{r}");
    assert_eq!(r["second"]["status"], 200, "{r}");
    let seen = seen_exactly(&echo, 2);
    assert_eq!(echoed_header_values(&seen[0], "x-split"), ["yes"]);
    refused_then_served(&gw, &["split", "X-Split", "yes"]).unwrap();
    seen_exactly(&echo, 3);
}

#[test]
fn a_rapid_reset_flood_is_cut_off_with_enhance_your_calm() {
    let (_echo, gw) = start_h2c();
    let Some(r) = frames(&gw, &["rapid_reset", "1000"]) else {
        return;
    };
    assert_eq!(r["goaway"], 11, "ENHANCE_YOUR_CALM: {r}");
    still_serves(&gw);
}

#[test]
fn a_continuation_flood_is_cut_off_before_the_header_block_grows() {
    let (_echo, gw) = start_h2c();
    let before = gateway_rss_kib(&gw);
    let Some(r) = frames(&gw, &["continuation_flood", "10000"]) else {
        return;
    };
    assert_eq!(r["goaway"], 11, "{r}");
    assert_eq!(r["debug"], "too_many_continuations", "{r}");
    // 16 KiB per frame: the connection ended long before the 10,000th.
    assert!(r["sent"].as_u64().unwrap() < 1000, "{r}");
    assert!(gateway_rss_kib(&gw) < before + 32 * 1024);
    still_serves(&gw);
}

#[test]
fn an_oversized_header_list_is_431_and_a_far_oversized_one_ends_the_connection() {
    let (echo, gw) = start_h2c();
    let Some(r) = frames(&gw, &["oversized", "70000"]) else {
        return;
    };
    assert_eq!(r["first"]["status"], 431, "{r}");
    assert_eq!(r["second"]["status"], 200, "{r}");
    let r = frames(&gw, &["oversized", "300000"]).unwrap();
    assert_eq!(r["first"]["goaway"], 11, "{r}");
    assert_eq!(echo.wait_seen(1).len(), 1);
    still_serves(&gw);
}

#[test]
fn concurrent_streams_are_bounded_and_the_ones_over_are_refused() {
    let (_echo, gw) = start_h2c();
    let Some(r) = frames(&gw, &["concurrency", "130"]) else {
        return;
    };
    assert_eq!(r["max_concurrent_streams"], 128, "{r}");
    // Streams 257 and 259 are the 129th and 130th: REFUSED_STREAM, safe to retry.
    assert_eq!(r["refused"], serde_json::json!([257, 259]), "{r}");
    still_serves(&gw);
}

#[test]
fn window_update_floods_are_harmless_and_an_overflow_is_a_flow_control_error() {
    let (_echo, gw) = start_h2c();
    let Some(r) = frames(&gw, &["window_flood", "50000"]) else {
        return;
    };
    assert_eq!(r["first"]["status"], 200, "{r}");
    let r = frames(&gw, &["window_overflow"]).unwrap();
    assert_eq!(r["goaway"], 3, "FLOW_CONTROL_ERROR: {r}");
    still_serves(&gw);
}

#[test]
fn a_ping_flood_is_back_pressured_not_queued() {
    let (_echo, gw) = start_h2c();
    let before = gateway_rss_kib(&gw);
    let Some(r) = frames(&gw, &["ping_flood", "2000000"]) else {
        return;
    };
    // The gateway answers one PING at a time and stops reading while its answer waits:
    // the flood fills the sockets' buffers, not the gateway's memory.
    assert_eq!(r["blocked"], true, "{r}");
    let grown = gateway_rss_kib(&gw).saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    still_serves(&gw);
}

#[test]
fn over_tls_alpn_negotiates_h2_and_the_answer_carries_hsts() {
    let echo = Echo::start();
    let (gw, tls_addr, dir) = tls_gateway(&echo, "");
    let cert = dir.join("cert.pem");
    let cert = cert.display().to_string();
    let https = format!("https://127.0.0.1:{}/health", tls_addr.port());
    let Some(r) = curl(&[
        "--http2",
        "--cacert",
        &cert,
        "-H",
        "x-user-id: spoofed",
        &https,
    ]) else {
        return;
    };
    assert_eq!((r.status, r.version.as_str()), (200, "2"), "{}", r.body);
    assert!(
        r.headers.contains("strict-transport-security: max-age="),
        "{}",
        r.headers
    );
    let seen: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echoed_header_values(&seen, "x-forwarded-proto"), ["https"]);
    assert!(echoed_header_values(&seen, "x-user-id").is_empty());
    // A client that offers only HTTP/1.1 still gets it.
    let r = curl(&["--http1.1", "--cacert", &cert, &https]).unwrap();
    assert_eq!((r.status, r.version.as_str()), (200, "1.1"));
    // Many streams on one TLS connection, all answered.
    let h2load = on_path("h2load").unwrap();
    let out = Command::new(h2load)
        .args(["-n", "500", "-c", "2", "-m", "8"])
        .arg(&https)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(
        text.contains("status codes: 500 2xx, 0 3xx, 0 4xx, 0 5xx"),
        "{text}"
    );
    drop(gw);
}

#[test]
fn over_tls_http2_false_offers_only_http1() {
    let echo = Echo::start();
    let (_gw, tls_addr, dir) = tls_gateway(&echo, ", http2: false");
    let cert = dir.join("cert.pem");
    let https = format!("https://127.0.0.1:{}/health", tls_addr.port());
    let Some(r) = curl(&["--http2", "--cacert", &cert.display().to_string(), &https]) else {
        return;
    };
    assert_eq!((r.status, r.version.as_str()), (200, "1.1"), "{}", r.body);
}

#[test]
fn at_sigterm_a_stream_under_way_finishes_and_the_gateway_exits() {
    let (_echo, mut gw) = start_h2c();
    let Some(curl_bin) = on_path("curl") else {
        return;
    };
    let slow = Command::new(curl_bin)
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{http_version}"])
        .arg(url(&gw, "/__sleep/1500"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The request is in flight (the upstream sleeps), then the gateway is told to stop.
    std::thread::sleep(Duration::from_millis(500));
    gw.signal("TERM");
    let out = slow.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
    let status = gw
        .wait_exit(Duration::from_secs(8))
        .expect("still running 8 s after SIGTERM");
    assert!(status.success(), "{status:?}");
}
