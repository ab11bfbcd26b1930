//! gRPC pass-through with real peers (Python's grpcio, `tests/grpc/peer.py`): calls from a gRPC
//! client through the gateway (h2c) to a gRPC server behind it (`protocol: h2c`), relayed as
//! HTTP/2 with their trailers, streaming and deadlines; and the gateway's own refusals of a
//! call, which are gRPC answers (HTTP 200 with `grpc-status` and `grpc-message`), a route's
//! `max_body` among them.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn config(grpc_port: u16) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin_listen: "{{ADMIN}}"
store: sqlite://data/portcullis.db
h2c: true
upstreams:
  grpc: {{ addrs: ["127.0.0.1:{grpc_port}"], protocol: h2c, read_timeout: 5s }}
  dead: {{ addrs: ["127.0.0.1:1"], protocol: h2c, connect_timeout: 1s }}
auth:
  issuer: https://gw.test
  audience: api
roles: [viewer, creator, admin]
routes:
  - {{ path: /test.Echo/Unary, upstream: grpc, max_body: 1KiB }}
  - {{ path: /test.Echo/Collect, upstream: grpc, auth: none, max_body: 1KiB }}
  - {{ path: /test.Echo/Chat, upstream: grpc, auth: none, max_body: 1KiB }}
  - {{ path: /test.Echo/Count, upstream: grpc, auth: none }}
  - {{ path: /test.Echo/Sleep, upstream: grpc, auth: none, timeout: 1s }}
  - {{ path: /test.Echo/Fail, upstream: grpc, roles: [admin] }}
  - {{ path: /limited/test.Echo/Count, upstream: grpc, auth: none, rate_limit: 1/min }}
  - {{ path: /dead/test.Echo/Count, upstream: dead, auth: none }}
"#
    )
}

struct Setup {
    server: GrpcServer,
    gw: Gateway,
}

fn start() -> Option<Setup> {
    let server = GrpcServer::start()?;
    let gw = Gateway::start(&config(server.port), free_addr(), &[]);
    Some(Setup { server, gw })
}

/// One call by grpcio's client through the gateway; its code, details and responses.
fn call(gw: &Gateway, method: &str, arg: &str, options: &[&str]) -> Value {
    let out = Command::new(python().expect("checked by start"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/peer.py"))
        .args(["call", &gw.addr.to_string(), method, arg])
        .args(options)
        .output()
        .expect("run the gRPC client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Whether the access log has a line for `route` with `status` and `decision`, within a few
/// seconds.
fn logged(gw: &Gateway, route: &str, status: u16, decision: &str) -> bool {
    let wanted = [
        format!(r#""route":"{route}""#),
        format!(r#""status":{status}"#),
        format!(r#""decision":"{decision}""#),
    ];
    eventually(Duration::from_secs(3), || {
        gw.stdout_lines()
            .iter()
            .any(|l| wanted.iter().all(|w| l.contains(w.as_str())))
    })
}

/// The wire size of the request body the server had received when its last
/// `got N BYTES` line was printed (0 when none was).
fn bytes_received(server: &GrpcServer) -> u64 {
    server
        .events()
        .iter()
        .filter_map(|e| e.strip_prefix("got "))
        .filter_map(|e| e.split(' ').nth(1)?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn code(v: &Value) -> (&str, &str) {
    (
        v["code"].as_str().unwrap_or_default(),
        v["details"].as_str().unwrap_or_default(),
    )
}

#[test]
fn a_unary_call_reaches_the_server_with_the_verified_identity_only() {
    let Some(s) = start() else {
        return;
    };
    let t = token("user-42", "creator", "");
    let r = call(
        &s.gw,
        "Unary",
        "hello",
        &["--token", &t, "--meta", "x-user-id=spoofed"],
    );
    assert_eq!(r["code"], "OK", "{r}");
    let seen: Value = serde_json::from_str(r["responses"][0].as_str().unwrap()).unwrap();
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["metadata"]["x-user-id"], "user-42", "{seen}");
    assert_eq!(seen["metadata"]["x-user-role"], "creator");
    assert!(seen["metadata"]["x-request-id"].is_string());
    assert!(eventually(Duration::from_secs(3), || s
        .gw
        .stdout_lines()
        .iter()
        .any(
            |l| l.contains(r#""route":"/test.Echo/Unary""#) && l.contains(r#""protocol":"HTTP/2""#)
        )));
}

#[test]
fn server_streaming_relays_every_message_then_the_status() {
    let Some(s) = start() else {
        return;
    };
    let r = call(&s.gw, "Count", "50", &[]);
    assert_eq!(r["code"], "OK", "{r}");
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(r["responses"], serde_json::json!(expected));
}

#[test]
fn the_servers_own_status_and_message_arrive_in_its_trailers() {
    let Some(s) = start() else {
        return;
    };
    let admin = token("root", "admin", "");
    let r = call(&s.gw, "Fail", "x", &["--token", &admin]);
    assert_eq!(code(&r), ("NOT_FOUND", "nope: x"), "{r}");
}

#[test]
fn a_client_deadline_travels_as_grpc_timeout_and_cancels_the_upstream_call() {
    let Some(s) = start() else {
        return;
    };
    let r = call(&s.gw, "Sleep", "5", &["--timeout", "0.5"]);
    assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");
    // The server learns within a moment that nobody waits any more.
    assert!(
        eventually(Duration::from_secs(3), || s
            .server
            .events()
            .contains(&"cancelled".to_owned())),
        "{:?}",
        s.server.events()
    );
}

#[test]
fn a_client_that_cancels_a_waiting_call_cancels_it_upstream() {
    let Some(server) = GrpcServer::start() else {
        return;
    };
    // No route timeout to end the call for it: only the client's cancel can.
    let yaml = config(server.port).replace(
        "path: /test.Echo/Sleep, upstream: grpc, auth: none, timeout: 1s",
        "path: /test.Echo/Sleep, upstream: grpc, auth: none, timeout: 30s",
    );
    let gw = Gateway::start(&yaml, free_addr(), &[]);
    let r = call(&gw, "Sleep", "10", &["--cancel-after", "0.5"]);
    assert_eq!(r["code"], "CANCELLED", "{r}");
    assert!(
        eventually(Duration::from_secs(3), || server
            .events()
            .contains(&"cancelled".to_owned())),
        "{:?}",
        server.events()
    );
}

#[test]
fn the_gateways_own_refusals_are_grpc_statuses() {
    let Some(s) = start() else {
        return;
    };
    // 401: no token.
    let r = call(&s.gw, "Unary", "x", &[]);
    assert_eq!(code(&r), ("UNAUTHENTICATED", "Missing token"), "{r}");
    // Logged and counted as the refusal it is, not as the HTTP 200 that carried it.
    assert!(eventually(Duration::from_secs(3), || s
        .gw
        .stdout_lines()
        .iter()
        .any(|l| {
            l.contains(r#""route":"/test.Echo/Unary""#) && l.contains(r#""status":401"#)
        })));
    assert_eq!(
        metric(
            s.gw.admin_addr,
            r#"portcullis_requests_total{method="POST",mode="proxy",route="/test.Echo/Unary",status="401"}"#
        ),
        Some(1.0)
    );
    // 403: the route wants an admin.
    let viewer = token("v", "viewer", "");
    let r = call(&s.gw, "Fail", "x", &["--token", &viewer]);
    assert_eq!(
        code(&r),
        ("PERMISSION_DENIED", "Insufficient permissions"),
        "{r}"
    );
    // 429: the route allows one call a minute (the first reaches the server, which knows
    // no such method).
    let r = call(&s.gw, "Count", "1", &["--prefix", "/limited"]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    let r = call(&s.gw, "Count", "1", &["--prefix", "/limited"]);
    assert_eq!(code(&r), ("RESOURCE_EXHAUSTED", "Too many requests"), "{r}");
    // 502: the upstream is down.
    let r = call(&s.gw, "Count", "1", &["--prefix", "/dead"]);
    assert_eq!(code(&r), ("UNAVAILABLE", "Bad gateway"), "{r}");
    // 504: the route's timeout passes before the server answers.
    let r = call(&s.gw, "Sleep", "3", &[]);
    assert_eq!(code(&r), ("DEADLINE_EXCEEDED", "Gateway timeout"), "{r}");
}

#[test]
fn protocol_h2_reaches_a_grpc_server_over_tls_by_alpn() {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir);
    let Some(server) = GrpcServer::start_tls(&dir) else {
        return;
    };
    let yaml = config(server.port).replace(
        "protocol: h2c, read_timeout: 5s",
        "protocol: h2, read_timeout: 5s",
    );
    // The gateway trusts the server's self-signed certificate as its CA bundle.
    let cert = dir.join("cert.pem").display().to_string();
    let gw = Gateway::start(&yaml, free_addr(), &[("SSL_CERT_FILE", &cert)]);
    let r = call(&gw, "Count", "3", &[]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["responses"], serde_json::json!(["0", "1", "2"]));
}

#[test]
fn a_client_stream_within_max_body_reaches_the_server_whole() {
    let Some(s) = start() else {
        return;
    };
    // 9 messages of 100 bytes are 945 bytes on the wire (5 bytes of framing each): under 1 KiB.
    let r = call(&s.gw, "Collect", "9x100", &[]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["responses"], serde_json::json!(["9"]));
    assert_eq!(bytes_received(&s.server), 945);
    assert!(s.server.events().contains(&"collected 9".to_owned()));
}

#[test]
fn a_client_stream_past_max_body_is_cut_there_with_resource_exhausted() {
    let Some(s) = start() else {
        return;
    };
    // 20 messages of 105 wire bytes: the 10th takes the body to 1050, past 1 KiB.
    let r = call(&s.gw, "Collect", "20x100", &[]);
    assert_eq!(code(&r), ("RESOURCE_EXHAUSTED", "Payload too large"), "{r}");
    // The server got the messages before the limit, none from the frame that passed it,
    // and never the stream's end.
    let got = bytes_received(&s.server);
    assert!((105..=945).contains(&got), "{:?}", s.server.events());
    assert!(
        !s.server.events().iter().any(|e| e.starts_with("collected")),
        "{:?}",
        s.server.events()
    );
    assert!(
        logged(&s.gw, "/test.Echo/Collect", 413, "public"),
        "{:?}",
        s.gw.stdout_lines()
    );
    assert_eq!(
        metric(
            s.gw.admin_addr,
            r#"portcullis_requests_total{method="POST",mode="proxy",route="/test.Echo/Collect",status="413"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn a_bidi_call_past_max_body_ends_with_resource_exhausted_in_its_trailers() {
    let Some(s) = start() else {
        return;
    };
    // The server answers each message: the answer has begun when the limit is passed.
    let r = call(&s.gw, "Chat", "20x100", &[]);
    assert_eq!(code(&r), ("RESOURCE_EXHAUSTED", "Payload too large"), "{r}");
    let answers = r["responses"].as_array().map_or(0, Vec::len);
    assert!((1..=9).contains(&answers), "{r}");
    assert!(bytes_received(&s.server) <= 945, "{:?}", s.server.events());
    // Counted as the 413 it is, not as the 200 its head said.
    assert!(
        logged(&s.gw, "/test.Echo/Chat", 413, "public"),
        "{:?}",
        s.gw.stdout_lines()
    );
}

#[test]
fn a_unary_message_over_max_body_is_refused_with_resource_exhausted() {
    let Some(s) = start() else {
        return;
    };
    let t = token("user-42", "creator", "");
    let r = call(&s.gw, "Unary", &"x".repeat(2000), &["--token", &t]);
    assert_eq!(code(&r), ("RESOURCE_EXHAUSTED", "Payload too large"), "{r}");
    assert!(
        logged(&s.gw, "/test.Echo/Unary", 413, "allow"),
        "{:?}",
        s.gw.stdout_lines()
    );
    // One under the limit still goes through.
    let r = call(&s.gw, "Unary", &"x".repeat(900), &["--token", &t]);
    assert_eq!(r["code"], "OK", "{r}");
}

#[test]
fn a_declared_length_over_max_body_is_refused_before_the_upstream_is_asked() {
    let Some(s) = start() else {
        return;
    };
    let Some(curl) = on_path("curl") else {
        return;
    };
    // grpcio sends no content-length; curl does, with the body it is given.
    let out = Command::new(curl)
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", &"m".repeat(2000)])
        .arg(format!("http://{}/test.Echo/Collect", s.gw.addr))
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("grpc-status: 8\r\n"), "{head}");
    assert!(
        head.contains("grpc-message: payload too large\r\n"),
        "{head}"
    );
    assert!(
        logged(&s.gw, "/test.Echo/Collect", 413, "public"),
        "{:?}",
        s.gw.stdout_lines()
    );
    assert_eq!(bytes_received(&s.server), 0);
}
