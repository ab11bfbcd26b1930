//! gRPC pass-through with real peers (Python's grpcio, `tests/grpc/peer.py`): calls from a gRPC
//! client through the gateway (h2c) to a gRPC server behind it (`protocol: h2c`), relayed as
//! HTTP/2 with their trailers, streaming and deadlines; and the gateway's own refusals of a
//! call, which are gRPC answers (HTTP 200 with `grpc-status` and `grpc-message`).

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
  - {{ path: /test.Echo/Unary, upstream: grpc }}
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
