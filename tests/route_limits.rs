//! Per-route limits through the real binary: `max_body` refuses a declared length
//! at once and cuts a chunked body at the limit (413, the connection closed, the
//! upstream given nothing past the limit), 10 MiB unless set; `timeout` replaces
//! the upstream's `read_timeout` (504); `explain` shows both.

mod common;

use common::recorder::Recorder;
use common::*;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
listen: "{LISTEN}"
admin_listen: "{ADMIN}"
store: sqlite://data/portcullis.db
upstreams:
  app: { addrs: ["{UPSTREAM}"], connect_timeout: 1s, read_timeout: 5s }
auth:
  issuer: https://gw.test
  audience: api
roles: [viewer]
routes:
  - { path: /api/auth/**, auth: none }
  - { path: /small/**, upstream: app, auth: none, max_body: 1KiB }
  - { path: "/__sleep/*", upstream: app, auth: none, timeout: 500ms }
  - { path: /**, upstream: app, auth: none }
"#;

fn head(target: &str, fields: &str) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: gw.test\r\n{fields}\r\n").into_bytes()
}

#[test]
fn a_declared_length_over_max_body_is_refused_at_once_and_nothing_reaches_the_upstream() {
    let upstream = Recorder::start();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    // The head alone, asking to continue: the refusal comes instead of a 100, and
    // the connection closes without waiting for a body.
    let started = Instant::now();
    let bytes = raw(
        gw.addr,
        &head(
            "/small/upload",
            "Content-Length: 1025\r\nExpect: 100-continue\r\n",
        ),
        Duration::from_secs(5),
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let answers = parse_responses(&bytes);
    assert_eq!(answers.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(answers[0].status, 413);
    assert_eq!(error_of(&answers[0]), "Payload too large");
    assert_eq!(answers[0].header("connection"), Some("close"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(upstream.take().nothing());
}

#[test]
fn a_chunked_body_is_cut_at_max_body_with_nothing_past_it_forwarded() {
    let upstream = Recorder::start();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let mut conn = Conn::open(gw.addr);
    let mut first = head("/small/upload", "Transfer-Encoding: chunked\r\n");
    first.extend_from_slice(format!("3e8\r\n{}\r\n", "a".repeat(1000)).as_bytes());
    conn.send(&first);
    // Within the limit so far: it goes on to the upstream as it comes.
    let mut forwarded = Vec::new();
    let all_a = vec![b'a'; 1000];
    assert!(
        eventually(Duration::from_secs(5), || {
            upstream
                .take()
                .bytes
                .iter()
                .for_each(|b| forwarded.extend(b));
            forwarded.windows(1000).any(|w| w == all_a)
        }),
        "the first 1000 bytes were forwarded: {:?}",
        String::from_utf8_lossy(&forwarded)
    );
    assert!(forwarded.starts_with(b"POST /small/upload HTTP/1.1\r\n"));
    // A chunk of 25 more passes the 1 KiB limit: refused at its size line, none of
    // it forwarded even though its first bytes would still fit and arrive alone,
    // and the body is never finished.
    let started = Instant::now();
    conn.send(format!("19\r\n{}", "Z".repeat(5)).as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    conn.send(format!("{}\r\n", "Z".repeat(20)).as_bytes());
    let answer = conn
        .try_read_response(false, Duration::from_secs(2))
        .expect("an answer without the rest of the body");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(error_of(&answer), "Payload too large");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(200));
    let recorded = upstream.take();
    assert!(recorded.requests.is_empty(), "{:?}", recorded.summary());
    recorded.bytes.iter().for_each(|b| forwarded.extend(b));
    // The body only: the head carries a random request id, which may hold a `Z`.
    let body_at = forwarded
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the forwarded head")
        + 4;
    assert!(
        !forwarded[body_at..].contains(&b'Z'),
        "nothing past the limit: {:?}",
        String::from_utf8_lossy(&forwarded[body_at..])
    );
}

#[test]
fn a_body_of_exactly_max_body_goes_through_whole() {
    let upstream = Recorder::start();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let body = vec![b'b'; 1024];
    let r = request(gw.addr, "POST", "/small/upload", &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    let chunked = format!("400\r\n{}\r\n0\r\n\r\n", "c".repeat(1024));
    let r = request(
        gw.addr,
        "POST",
        "/small/upload",
        &[("Transfer-Encoding", "chunked")],
        Some(chunked.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let recorded = upstream.take();
    let bodies: Vec<Vec<u8>> = recorded.requests.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, vec![body, vec![b'c'; 1024]]);
}

#[test]
fn proxied_routes_take_ten_mebibytes_unless_they_say_otherwise() {
    let upstream = Recorder::start();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let bytes = raw(
        gw.addr,
        &head("/files", &format!("Content-Length: {}\r\n", (10 << 20) + 1)),
        Duration::from_secs(5),
    );
    let answers = parse_responses(&bytes);
    assert_eq!(answers.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(answers[0].status, 413);
    let body = vec![b'd'; 10 << 20];
    let r = request(gw.addr, "POST", "/files", &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    let recorded = upstream.take();
    assert_eq!(recorded.requests.len(), 1);
    assert_eq!(recorded.requests[0].body.len(), 10 << 20);
}

#[test]
fn a_route_timeout_answers_504_before_the_upstreams_read_timeout() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let started = Instant::now();
    let r = get(gw.addr, "/__sleep/3000", &[]);
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(error_of(&r), "Gateway timeout");
    // The route's 500 ms, not the upstream's 5 s (nor the echo's 3 s).
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    // An upstream quicker than the route's timeout is answered as usual.
    let r = get(gw.addr, "/__sleep/50", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `LINE:COL` of the value after `key: ` where `key_value` first appears in `text`.
fn value_at(text: &str, key_value: &str) -> String {
    let (line, row) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(key_value))
        .expect("the key is in the config");
    let key_len = key_value.find(": ").expect("key: value") + 2;
    let col = row.find(key_value).unwrap_or_default() + key_len + 1;
    format!("{}:{col}", line + 1)
}

fn config_file(text: &str) -> (std::path::PathBuf, String) {
    let dir = fresh_temp_dir();
    let text = text
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let path = write_file(&dir, "gateway.yaml", &text);
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

#[test]
fn explain_shows_each_routes_body_limit_timeout_and_cors() {
    let with_cors = CONFIG.replace(
        "roles: [viewer]\n",
        "roles: [viewer]\ncors: { origins: [\"https://app.test\"], credentials: true, max_age: 10m }\n",
    );
    let (dir, path) = config_file(&with_cors);
    let explain = |method: &str, target: &str| {
        let (code, out, err) = portcullis(&["explain", "-c", &path, method, target], &[]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = explain("POST", "/small/upload");
    assert!(out.contains("max_body:   1KiB\n"), "{out}");
    assert!(
        out.contains("timeout:    5s (upstream app's read_timeout)\n"),
        "{out}"
    );
    assert!(
        out.contains("cors:       origins https://app.test; methods GET, HEAD, POST; headers authorization, content-type; credentials; max_age 10m\n"),
        "{out}"
    );
    let out = explain("GET", "/__sleep/1");
    assert!(out.contains("max_body:   10MiB\n"), "{out}");
    assert!(out.contains("timeout:    500ms (route)\n"), "{out}");
    let out = explain("POST", "/api/auth/login");
    assert!(out.contains("max_body:   16KiB (auth module)\n"), "{out}");
    assert!(out.contains("cors:       none"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_limits_are_refused_at_their_positions() {
    let bad = CONFIG
        .replace("max_body: 1KiB", "max_body: 1KB2")
        .replace("timeout: 500ms", "timeout: 0s")
        .replace(
            "{ path: /api/auth/**, auth: none }",
            "{ path: /api/auth/**, auth: none, max_body: 1MiB }",
        );
    let (dir, path) = config_file(&bad);
    let (code, _out, err) = portcullis(&["check", "-c", &path], &[]);
    assert_eq!(code, 2, "{err}");
    for expected in [
        format!(
            "{path}:{}: routes[0].max_body: not for a route of the auth module",
            value_at(&bad, "max_body: 1MiB")
        ),
        format!(
            "{path}:{}: routes[1].max_body: invalid size \"1KB2\"",
            value_at(&bad, "max_body: 1KB2")
        ),
        format!(
            "{path}:{}: routes[2].timeout: must be longer than 0",
            value_at(&bad, "timeout: 0s")
        ),
    ] {
        assert!(err.contains(&expected), "{expected}\nin:\n{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
