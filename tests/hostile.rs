//! Hostile input through the real binary: forged and malformed tokens, header
//! and path tricks. Every case asserts the status, the body and that the
//! upstream saw nothing it should not have.

mod common;

use common::*;
use std::net::TcpListener;
use std::time::Duration;

fn start() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    (echo, gw)
}

fn signed(header: &str, claims: &str) -> String {
    mint_hs256(TEST_SECRET.as_bytes(), header, claims)
}

fn with_exp(value: &str) -> String {
    let c = claims("mallory", "admin", "");
    let start = c.find("\"exp\":").unwrap() + 6;
    let end = start + c[start..].find(',').unwrap();
    format!("{}{value}{}", &c[..start], &c[end..])
}

#[test]
fn forged_and_malformed_tokens_are_refused_and_never_forwarded() {
    let (echo, gw) = start();
    let good = claims("mallory", "admin", "");
    let valid = signed(HEADER, &good);
    let (h, p, s) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
        )
    };
    let none_body = |alg: &str| {
        format!(
            "{}.{}.",
            b64url(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"hs256"}}"#).as_bytes()),
            p
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none_body("none")),
        ("alg None", none_body("None")),
        ("alg NONE", none_body("NONE")),
        ("alg nOnE", none_body("nOnE")),
        ("stripped signature", format!("{h}.{p}.")),
        (
            "foreign signature",
            format!("{h}.{p}.{}", b64url(&[7u8; 32])),
        ),
        (
            "swapped payload",
            format!("{h}.{}.{s}", b64url(claims("root", "admin", "").as_bytes())),
        ),
        (
            "kid traversal",
            signed(
                r#"{"alg":"HS256","typ":"JWT","kid":"../../../../dev/null"}"#,
                &good,
            ),
        ),
        (
            "kid injection",
            signed(
                r#"{"alg":"HS256","typ":"JWT","kid":"hs256' OR '1'='1"}"#,
                &good,
            ),
        ),
        (
            "kid oversized",
            signed(
                &format!(
                    r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#,
                    "k".repeat(4000)
                ),
                &good,
            ),
        ),
        (
            "crit",
            signed(
                r#"{"alg":"HS256","typ":"JWT","kid":"hs256","crit":["b64"],"b64":false}"#,
                &good,
            ),
        ),
        (
            "string exp",
            signed(HEADER, &with_exp(&format!("\"{}\"", now() + 600))),
        ),
        (
            "float exp",
            signed(HEADER, &with_exp(&format!("{}.0", now() + 600))),
        ),
        ("negative exp", signed(HEADER, &with_exp("-1"))),
        (
            "duplicate sub",
            signed(
                HEADER,
                &good.replace(
                    "\"sub\":\"mallory\"",
                    "\"sub\":\"mallory\",\"sub\":\"admin\"",
                ),
            ),
        ),
        (
            "duplicate alg",
            signed(
                r#"{"alg":"none","alg":"HS256","typ":"JWT","kid":"hs256"}"#,
                &good,
            ),
        ),
        (
            "missing sub",
            signed(HEADER, &good.replace("\"sub\":\"mallory\",", "")),
        ),
        ("padded", format!("{h}=.{p}.{s}")),
        (
            "standard alphabet",
            format!("{}.{p}.{s}", h.replace('_', "/").replace('-', "+") + "+"),
        ),
        ("whitespace inside", format!("{h} .{p}.{s}")),
        ("array header", signed("[]", &good)),
        ("four parts", format!("{valid}.x")),
        ("many dots", ".".repeat(7000)),
    ];
    for (name, token) in &cases {
        let r = get(
            gw.addr,
            "/api/admin/x",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert!(matches!(r.status, 400 | 401), "{name}: {}", r.status);
        if r.status == 401 {
            assert_eq!(
                r.json(),
                serde_json::json!({"error": "Invalid or expired token"}),
                "{name}"
            );
        }
    }
    // The 100k-dot token is over any header limit: refused before it is parsed.
    let huge = format!("Bearer {}", ".".repeat(100_000));
    let r = get(gw.addr, "/api/admin/x", &[("Authorization", &huge)]);
    assert!(matches!(r.status, 400 | 401 | 431), "{}", r.status);
    assert_eq!(echo.seen_count(), 0, "a refused token reached the upstream");
    // And the genuine token still works, so the refusals were about the tokens.
    assert_eq!(
        get(
            gw.addr,
            "/api/admin/x",
            &[("Authorization", &format!("Bearer {valid}"))]
        )
        .status,
        200
    );
}

#[test]
fn key_url_headers_are_never_followed() {
    let (_echo, gw) = start();
    let bait = TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let url = format!("http://{}/keys.json", bait.local_addr().unwrap());
    for member in ["jku", "x5u"] {
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"other","{member}":"{url}"}}"#);
        let t = signed(&header, &claims("m", "admin", ""));
        let r = get(
            gw.addr,
            "/api/admin/x",
            &[("Authorization", &format!("Bearer {t}"))],
        );
        assert_eq!(r.status, 401, "{member}");
    }
    let embedded = r#"{"alg":"HS256","typ":"JWT","kid":"other","jwk":{"kty":"oct","k":"AAAA"}}"#;
    let t = signed(embedded, &claims("m", "admin", ""));
    assert_eq!(
        get(
            gw.addr,
            "/api/admin/x",
            &[("Authorization", &format!("Bearer {t}"))]
        )
        .status,
        401
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        bait.accept().is_err(),
        "the gateway connected to a URL named in a token"
    );
}

#[test]
fn rewrite_and_forwarding_headers_from_the_client_do_not_reach_the_upstream() {
    let (_echo, gw) = start();
    let t = format!("Bearer {}", token("u1", "viewer", ""));
    let r = get(
        gw.addr,
        "/api/browse/x",
        &[
            ("Authorization", &t),
            ("X-Original-URL", "/api/admin/x"),
            ("X-Rewrite-URL", "/api/admin/x"),
            ("X-HTTP-Method", "DELETE"),
            ("X-Method-Override", "DELETE"),
            ("Forwarded", "for=10.0.0.1;proto=https"),
            ("X_Forwarded_Proto", "https"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = r.json();
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method",
        "x-method-override",
        "forwarded",
    ] {
        assert!(
            echoed_header_values(&seen, name).is_empty(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/api/browse/x");
}

#[test]
fn encoded_and_overlong_path_tricks_are_refused() {
    let (echo, gw) = start();
    let t = format!("Bearer {}", token("u1", "viewer", ""));
    for path in [
        "/api/%C0%AE%C0%AE/admin/x",
        "/api/admin%5cx",
        "/api/browse/%2e%2E/..%2Fadmin",
        "/api/browse/x%00",
        "/api/browse/x%0d%0aX-User-Id:%20admin",
        "/api/browse/%FF",
    ] {
        let r = get(gw.addr, path, &[("Authorization", &t)]);
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid request: "),
            "{path}"
        );
    }
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_refused_request_closes_the_connection_so_nothing_can_follow_it() {
    let (echo, gw) = start();
    let t = token("u1", "admin", "");
    // A bad path, then a second request pipelined behind it on the same connection.
    let bytes = raw(
        gw.addr,
        format!(
            "GET /api/admin%2Fx HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n\
             GET /api/admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(3),
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(responses[0].status, 400);
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn chunked_that_is_not_final_is_refused() {
    let (echo, gw) = start();
    let t = token("u1", "admin", "");
    let attack = format!(
        "POST /api/browse/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\
         Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
    );
    let responses = parse_responses(&raw(gw.addr, attack.as_bytes(), Duration::from_secs(3)));
    assert_eq!(responses.first().map(|r| r.status), Some(400));
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_raw_fragment_in_the_request_target_is_refused() {
    let (echo, gw) = start();
    let t = token("u1", "admin", "");
    let bytes = raw(
        gw.addr,
        format!("GET /api/browse/x#/../../admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n").as_bytes(),
        Duration::from_secs(3),
    );
    let responses = parse_responses(&bytes);
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(400),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_request_head_that_cannot_be_parsed_gets_the_json_400_and_the_connection_closes() {
    let (echo, gw) = start();
    // A space inside a header name: no parser may guess where the name ends.
    let bytes = raw(
        gw.addr,
        b"GET /health HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(responses[0].status, 400);
    assert_eq!(
        responses[0].json()["error"],
        "Invalid request: malformed request"
    );
    assert!(responses[0]
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(echo.seen_count(), 0);
}
