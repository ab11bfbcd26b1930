//! The client's side of a connection through the real binary: what keeps it
//! open for the next request, what closes it, and what a head too large for
//! the gateway gets. Each test speaks raw HTTP/1.x on one TCP connection.

mod common;

use common::*;
use std::time::Duration;

fn start() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    (echo, gw)
}

#[test]
fn a_request_head_over_the_size_limit_gets_the_json_431_and_the_connection_closes() {
    let (echo, gw) = start();
    let padding = "a".repeat(70 * 1024);
    let bytes = raw(
        gw.addr,
        format!("GET /health HTTP/1.1\r\nHost: a\r\nX-Padding: {padding}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(responses[0].status, 431);
    assert_eq!(
        responses[0].json()["error"],
        "Request header fields too large"
    );
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_refused_request_with_an_unread_body_is_answered_and_its_connection_closed() {
    let (echo, gw) = start();
    let good = token("u1", "creator", "");
    let mut conn = Conn::open(gw.addr);
    // A bad token on an upload: refused before its body is read.
    let body = "x".repeat(3000);
    conn.send(
        format!(
            "POST /api/upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer nope\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let refused = conn.read_response();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("connection"), Some("close"));
    // Where an unread body ends is what two parsers may disagree on: nothing
    // after it is read as a request, not even one that is fine.
    let smuggled = format!(
        "POST /api/upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {good}\r\nContent-Length: 2\r\n\r\nok"
    );
    conn.send(smuggled.as_bytes());
    assert!(
        conn.closed_within(Duration::from_secs(5)),
        "closed after the refusal"
    );
    assert!(
        !eventually(Duration::from_millis(500), || echo.seen_count() > 0),
        "nothing sent after the refused body reached the upstream"
    );
    // A new connection is served as usual.
    let mut conn = Conn::open(gw.addr);
    conn.send(smuggled.as_bytes());
    let accepted = conn.read_response();
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(accepted.json()["body"], "ok");
    // The echo logs what it saw after answering: wait for its line.
    assert!(
        eventually(Duration::from_secs(3), || echo.seen_count() >= 1),
        "the accepted upload reached the upstream"
    );
    assert_eq!(echo.seen_count(), 1, "only the accepted upload reached it");
}

#[test]
fn a_refusal_of_a_request_that_awaits_100_continue_closes_the_connection() {
    let (echo, gw) = start();
    let mut conn = Conn::open(gw.addr);
    // The body was never asked for, so it may never come: the connection
    // cannot be read past it.
    conn.send(
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer nope\r\n\
          Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let refused = conn.read_response();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(3)));
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn pipelined_requests_through_the_gateway_are_answered_in_order() {
    let (echo, gw) = start();
    let t = token("u1", "viewer", "");
    let bytes = raw(
        gw.addr,
        format!(
            "GET /api/browse/a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n\
             GET /api/admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n\
             POST /api/browse/c HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\
             Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
             GET /api/browse/d HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    let responses = parse_responses(&bytes);
    let statuses: Vec<_> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 403, 200, 200],
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(responses[2].json()["body"], "abc");
    assert_eq!(responses[3].json()["path"], "/api/browse/d");
    assert_eq!(responses[3].header("connection"), Some("close"));
    assert!(
        eventually(Duration::from_secs(3), || echo.seen_count() >= 3),
        "the three admitted requests reached the upstream"
    );
    assert_eq!(echo.seen_count(), 3, "the refused one did not");
}

#[test]
fn an_http_1_0_client_is_kept_alive_only_when_it_asks() {
    let (_echo, gw) = start();
    let mut conn = Conn::open(gw.addr);
    conn.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let first = conn.read_response();
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("connection").map(str::to_ascii_lowercase),
        Some("keep-alive".into())
    );
    conn.send(b"GET /health HTTP/1.0\r\n\r\n");
    let second = conn.read_response();
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(3)));
}

#[test]
fn a_head_that_arrives_a_few_bytes_at_a_time_is_served() {
    let (_echo, gw) = start();
    let t = token("u1", "viewer", "");
    let head =
        format!("GET /api/browse/slow HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n");
    let mut conn = Conn::open(gw.addr);
    // Pieces of 3 bytes: the blank line that ends the head is itself split.
    for piece in head.as_bytes().chunks(3) {
        conn.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = conn.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/api/browse/slow");
}

#[test]
fn an_auth_endpoint_answers_100_continue_before_reading_the_body() {
    let (_echo, gw) = start();
    let body = br#"{"email":"nobody@example.test","password":"correct horse battery"}"#;
    let mut conn = Conn::open(gw.addr);
    conn.send(
        format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // Nothing of the body has left the client yet.
    assert_eq!(
        conn.read_bytes(25, Duration::from_secs(5)),
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    conn.send(body);
    let r = conn.read_response();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "Invalid credentials");
}
