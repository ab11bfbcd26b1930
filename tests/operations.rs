//! What an operator relies on: admin endpoints, metrics, the access log,
//! signals (reload, graceful stop) and start-up refusals.

mod common;

use common::*;
use std::time::Duration;

fn start() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    (echo, gw)
}

#[test]
fn health_and_readiness_answer_on_the_admin_listener() {
    let (_echo, gw) = start();
    assert_eq!(get(gw.admin_addr, "/healthz", &[]).status, 200);
    assert_eq!(get(gw.admin_addr, "/readyz", &[]).status, 200);
    // Not on the public listener: no route there.
    assert_eq!(get(gw.addr, "/metrics", &[]).status, 404);
}

#[test]
fn metrics_count_requests_by_route_pattern_and_decisions() {
    let (_echo, gw) = start();
    let t = token("u1", "viewer", "");
    get(
        gw.addr,
        "/api/users/u1/profile",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    get(
        gw.addr,
        "/api/admin/x",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    get(gw.addr, "/api/protected", &[]);
    // Counters move in the logging phase, just after the response is written, and
    // the three requests may be logged in any order.
    let settled = eventually(Duration::from_secs(3), || {
        let metrics = get(gw.admin_addr, "/metrics", &[]).text();
        ["allow", "forbidden", "missing_token"]
            .iter()
            .all(|d| metrics.contains(&format!(r#"decision="{d}",mode="proxy"}} 1"#)))
    });
    assert!(settled);
    let metrics = get(gw.admin_addr, "/metrics", &[]).text();
    assert!(
        metrics.contains(
            r#"portcullis_requests_total{method="GET",mode="proxy",route="/api/users/{user}/**",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("/api/users/u1"),
        "raw paths must not become labels"
    );
    assert!(
        metrics.contains(r#"portcullis_auth_decisions_total{decision="allow",mode="proxy"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"portcullis_auth_decisions_total{decision="forbidden",mode="proxy"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"portcullis_auth_decisions_total{decision="missing_token",mode="proxy"} 1"#));
    assert!(metrics.contains("portcullis_request_duration_seconds_bucket"));
    assert!(metrics.contains("portcullis_upstream_duration_seconds_bucket"));
    assert!(metrics.contains(r#"portcullis_config_reloads_total{result="success"} 0"#));
}

#[test]
fn made_up_methods_share_one_metric_label_so_clients_cannot_grow_the_series() {
    let (_echo, gw) = start();
    for method in ["BREW", "WHEN", "PROPFIND"] {
        let answer = raw(
            gw.addr,
            format!("{method} /api/protected HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        );
        // No route lists them, so none matches: an extension method reaches an
        // upstream only through a route written with it in mind.
        assert!(answer.starts_with(b"HTTP/1.1 404"), "{method}");
    }
    let counted = eventually(Duration::from_secs(3), || {
        get(gw.admin_addr, "/metrics", &[]).text().contains(
            r#"portcullis_requests_total{method="OTHER",mode="proxy",route="none",status="404"} 3"#,
        )
    });
    let metrics = get(gw.admin_addr, "/metrics", &[]).text();
    assert!(counted, "{metrics}");
    for method in ["BREW", "WHEN", "PROPFIND"] {
        assert!(!metrics.contains(method), "{method} became a label");
    }
}

#[test]
fn the_access_log_has_one_json_line_per_request_and_never_the_token() {
    let (_echo, gw) = start();
    let t = token("user-7", "viewer", "");
    get(
        gw.addr,
        "/api/protected?access_token=secret-in-query",
        &[
            ("Authorization", &format!("Bearer {t}")),
            ("X-Request-Id", "log-1"),
        ],
    );
    get(
        gw.addr,
        "/api/protected",
        &[
            ("Authorization", "Bearer not.a.jwt"),
            ("X-Request-Id", "log-2"),
        ],
    );
    let found = eventually(Duration::from_secs(3), || gw.stdout_lines().len() >= 2);
    assert!(found, "no access log lines: {:?}", gw.stdout_lines());
    let lines = gw.stdout_lines();
    let all = lines.join("\n");
    assert!(!all.contains(&t), "token in the log");
    assert!(!all.contains("secret-in-query"), "query in the log");
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = entries.iter().find(|e| e["request_id"] == "log-1").unwrap();
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/api/protected");
    assert_eq!(ok["route"], "/api/protected");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["user"], "user-7");
    assert_eq!(ok["decision"], "allow");
    assert!(ok["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(ok["ts"].as_str().unwrap().ends_with('Z'));
    let bad = entries.iter().find(|e| e["request_id"] == "log-2").unwrap();
    assert_eq!(bad["status"], 401);
    assert_eq!(bad["decision"], "invalid_token");
    assert_eq!(bad["reason"], "malformed");
    assert!(bad["user"].is_null());
}

#[test]
fn sigterm_exits_zero_within_a_few_seconds() {
    let (_echo, mut gw) = start();
    let started = std::time::Instant::now();
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(8))
        .expect("still running 8 s after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let (_echo, mut gw) = start();
    let addr = gw.addr;
    let slow = std::thread::spawn(move || get(addr, "/__sleep/1000", &[]));
    std::thread::sleep(Duration::from_millis(300));
    gw.signal("TERM");
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(gw
        .wait_exit(Duration::from_secs(8))
        .expect("exited")
        .success());
}

#[test]
fn sighup_reloads_the_rules_and_refuses_a_broken_file() {
    let (_echo, gw) = start();
    let t = format!("Bearer {}", token("u1", "viewer", ""));
    assert_eq!(
        get(gw.addr, "/api/protected", &[("Authorization", &t)]).status,
        200
    );
    let path = gw.dir.join("gateway.yaml");
    let original = std::fs::read_to_string(&path).unwrap();

    let tightened = original.replace(
        "- { path: /api/protected, upstream: app }",
        "- { path: /api/protected, upstream: app, roles: [admin] }",
    );
    assert_ne!(tightened, original);
    std::fs::write(&path, &tightened).unwrap();
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || {
        get(gw.addr, "/api/protected", &[("Authorization", &t)]).status == 403
    }));

    std::fs::write(&path, "routes: [ { path: /x, rolez: [admin] } ]").unwrap();
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || {
        get(gw.admin_addr, "/metrics", &[])
            .text()
            .contains(r#"portcullis_config_reloads_total{result="failure"} 1"#)
    }));
    assert_eq!(
        get(gw.addr, "/api/protected", &[("Authorization", &t)]).status,
        403,
        "old config stays"
    );
    let metrics = get(gw.admin_addr, "/metrics", &[]).text();
    assert!(
        metrics.contains(r#"portcullis_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
}

#[test]
fn startup_refuses_a_short_secret_with_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("portcullis-short-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:1");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let (code, _out, err) = portcullis(
        &["run", "-c", path.to_str().unwrap()],
        &[("JWT_SECRET", "too-short")],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("JWT_SECRET is 9 bytes; HS256 needs at least 32"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_client_that_leaves_before_the_answer_is_counted_as_499_not_as_a_bad_gateway() {
    let (_echo, gw) = start();
    let mut conn = Conn::open(gw.addr);
    conn.send(b"GET /__sleep/600 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(150));
    drop(conn);
    let line = |lines: Vec<String>| {
        lines
            .into_iter()
            .find(|l| l.contains(r#""path":"/__sleep/600""#))
    };
    let logged = eventually(Duration::from_secs(5), || line(gw.stdout_lines()).is_some());
    assert!(logged, "no access log line: {:?}", gw.stdout_lines());
    let entry: serde_json::Value = serde_json::from_str(&line(gw.stdout_lines()).unwrap()).unwrap();
    assert_eq!(entry["status"], 499, "{entry}");
    let metrics = get(gw.admin_addr, "/metrics", &[]).text();
    assert!(metrics.contains(r#"status="499"} 1"#), "{metrics}");
    assert!(!metrics.contains(r#"status="502""#), "{metrics}");
}

#[test]
fn every_access_log_line_is_out_within_a_second_and_none_is_lost_on_hup_or_term() {
    let (_echo, mut gw) = start();
    let t = token("user-7", "viewer", "");
    let auth = format!("Bearer {t}");
    let sent = std::time::Instant::now();
    get(gw.addr, "/api/protected", &[("Authorization", &auth)]);
    assert!(
        eventually(Duration::from_secs(1), || gw.stdout_lines().len() == 1),
        "a line took more than 1 s: {:?}",
        gw.stdout_lines()
    );
    assert!(sent.elapsed() < Duration::from_secs(1));
    let burst = |gw: &Gateway, n: usize| {
        let mut conn = Conn::open(gw.addr);
        for _ in 0..n {
            conn.send(
                format!("GET /api/protected HTTP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(conn.read_response().status, 200);
        }
    };
    // A reload right after a burst: every line of it still arrives.
    burst(&gw, 50);
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(2), || gw.stdout_lines().len() == 51),
        "lines lost around SIGHUP: {}",
        gw.stdout_lines().len()
    );
    // A stop right after a burst: the lines are written before the process exits.
    burst(&gw, 50);
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(8)).is_some());
    assert!(
        eventually(Duration::from_secs(2), || gw.stdout_lines().len() == 101),
        "lines lost at SIGTERM: {}",
        gw.stdout_lines().len()
    );
    let ids: std::collections::HashSet<String> = gw
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 101, "every line is a distinct request");
}
