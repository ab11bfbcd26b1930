//! The request pipeline through the real binary: authentication, authorization,
//! identity headers and path normalization, as the upstream sees them.

mod common;

use common::*;

fn start() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    (echo, gw)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn an_authorized_request_reaches_the_upstream_with_the_verified_identity() {
    let (_echo, gw) = start();
    let t = token("user-42", "creator", "");
    let r = request(
        gw.addr,
        "POST",
        "/api/upload?x=1",
        &[("Authorization", &bearer(&t))],
        Some(b"hi"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/upload?x=1");
    assert_eq!(seen["body"], "hi");
    assert_eq!(echoed_header_values(&seen, "x-user-id"), vec!["user-42"]);
    assert_eq!(echoed_header_values(&seen, "x-user-role"), vec!["creator"]);
    assert!(echoed_header_values(&seen, "x-workspace-id").is_empty());
}

#[test]
fn a_request_without_a_token_is_401_with_a_bearer_challenge() {
    let (echo, gw) = start();
    let r = get(gw.addr, "/api/protected", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), serde_json::json!({"error": "Missing token"}));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_token_signed_with_another_secret_is_401_invalid_token() {
    let (echo, gw) = start();
    let forged = mint_hs256(
        b"another-secret-another-secret-another",
        HEADER,
        &claims("user-42", "admin", ""),
    );
    let r = get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &bearer(&forged))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "Invalid or expired token"})
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn expired_and_alg_none_tokens_are_refused() {
    let (echo, gw) = start();
    let expired = claims_until("u", "admin", "", now() - 120);
    let cases = [
        mint_hs256(TEST_SECRET.as_bytes(), HEADER, &expired),
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT","kid":"hs256"}"#),
            b64url(claims("u", "admin", "").as_bytes())
        ),
        "not.a.jwt".to_owned(),
    ];
    for t in cases {
        let r = get(gw.addr, "/api/protected", &[("Authorization", &bearer(&t))]);
        assert_eq!(r.status, 401, "{t}");
        assert_eq!(r.json()["error"], "Invalid or expired token");
    }
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn a_wrong_role_is_403_and_never_reaches_the_upstream() {
    let (echo, gw) = start();
    let t = token("user-1", "viewer", "");
    let r = request(
        gw.addr,
        "POST",
        "/api/upload",
        &[("Authorization", &bearer(&t))],
        Some(b"x"),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "Insufficient permissions"})
    );
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn owner_workspace_and_plan_rules_use_the_token() {
    let (_echo, gw) = start();
    let scoped = token("u1", "viewer", r#","ws":"acme","plan":"pro""#);
    let free = token("u1", "viewer", r#","ws":"acme","plan":"free""#);
    let auth = |t: &str| bearer(t);
    let cases = [
        ("/api/users/u1/files", &scoped, 200),
        ("/api/users/u2/files", &scoped, 403),
        ("/api/workspaces/acme/docs", &scoped, 200),
        ("/api/workspaces/globex/docs", &scoped, 403),
        ("/api/reports/q1", &scoped, 200),
        ("/api/reports/q1", &free, 403),
    ];
    for (path, t, want) in cases {
        let r = get(gw.addr, path, &[("Authorization", &auth(t))]);
        assert_eq!(r.status, want, "{path}: {}", r.text());
        if want == 200 {
            let seen = r.json();
            assert_eq!(echoed_header_values(&seen, "x-workspace-id"), vec!["acme"]);
            assert_eq!(echoed_header_values(&seen, "x-user-plan"), vec!["pro"]);
        }
    }
}

#[test]
fn spoofed_identity_headers_are_replaced_in_every_spelling() {
    let (_echo, gw) = start();
    let t = token("user-42", "creator", "");
    let r = request(
        gw.addr,
        "POST",
        "/api/upload",
        &[
            ("Authorization", &bearer(&t)),
            ("X-User-Id", "spoofed"),
            ("x-user-id", "again"),
            ("X_User_Id", "underscore"),
            ("X-User-Role", "admin"),
            ("X-Workspace-Id", "other"),
            ("X-HTTP-Method-Override", "DELETE"),
        ],
        Some(b""),
    );
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(echoed_header_values(&seen, "x-user-id"), vec!["user-42"]);
    assert!(echoed_header_values(&seen, "x_user_id").is_empty());
    assert_eq!(echoed_header_values(&seen, "x-user-role"), vec!["creator"]);
    assert!(echoed_header_values(&seen, "x-workspace-id").is_empty());
    assert!(echoed_header_values(&seen, "x-http-method-override").is_empty());
}

#[test]
fn public_routes_strip_identity_headers_too() {
    let (_echo, gw) = start();
    let r = get(
        gw.addr,
        "/health",
        &[("X-User-Id", "admin"), ("X-User-Role", "admin")],
    );
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert!(echoed_header_values(&seen, "x-user-id").is_empty());
    assert!(echoed_header_values(&seen, "x-user-role").is_empty());
}

#[test]
fn connection_cannot_remove_the_injected_identity() {
    let (_echo, gw) = start();
    let t = token("user-42", "viewer", "");
    let r = get(
        gw.addr,
        "/api/protected",
        &[
            ("Authorization", &bearer(&t)),
            ("Connection", "close, X-User-Id, X-Extra"),
            ("X-Extra", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(echoed_header_values(&seen, "x-user-id"), vec!["user-42"]);
    assert!(echoed_header_values(&seen, "x-extra").is_empty());
}

#[test]
fn path_tricks_cannot_bypass_a_role_rule() {
    let (echo, gw) = start();
    let viewer = bearer(&token("u1", "viewer", ""));
    let cases = [
        ("/api/admin/../admin/x", 403),
        ("//api/admin/x", 403),
        ("/api/browse/../admin/x", 403),
        ("/api/./admin/x", 403),
        ("/api/%61dmin/x", 403),
        ("/api/admin%2Fx", 400),
        ("/api/admin%2fx", 400),
        ("/api/%2e%2e/admin/x", 400),
        ("/api/admin;x=1/y", 400),
        ("/api/admin\\x", 400),
        ("/api/admin/%00", 400),
        ("/../api/admin/x", 400),
        ("/API/admin/x", 404),
    ];
    for (path, want) in cases {
        let r = get(gw.addr, path, &[("Authorization", &viewer)]);
        assert_eq!(r.status, want, "{path}: {}", r.text());
        if want == 400 {
            assert!(
                r.json()["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("Invalid request: "),
                "{path}"
            );
        }
    }
    assert_eq!(echo.seen_count(), 0, "nothing reached the upstream");
}

#[test]
fn the_upstream_receives_the_path_that_was_matched() {
    let (_echo, gw) = start();
    let admin = bearer(&token("u9", "admin", ""));
    let r = get(
        gw.addr,
        "/api/admin/../admin//x/./y?q=a%2Fb",
        &[("Authorization", &admin)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/api/admin/x/y?q=a%2Fb");
}

#[test]
fn methods_limit_a_route_and_get_covers_head() {
    let (_echo, gw) = start();
    let admin = bearer(&token("u9", "admin", ""));
    // /api/upload is POST-only, and no later route matches a GET on it.
    assert_eq!(
        get(gw.addr, "/api/upload", &[("Authorization", &admin)]).status,
        404
    );
    let head = request(
        gw.addr,
        "HEAD",
        "/api/browse/x",
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(head.status, 200);
    let trace = request(
        gw.addr,
        "TRACE",
        "/api/browse/x",
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(trace.status, 405);
    assert_eq!(
        trace.json(),
        serde_json::json!({"error": "Method not allowed"})
    );
}

#[test]
fn an_unmatched_path_is_404() {
    let (echo, gw) = start();
    let r = get(gw.addr, "/nowhere", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), serde_json::json!({"error": "Not found"}));
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn two_authorization_headers_are_a_bad_request() {
    let (echo, gw) = start();
    let t = bearer(&token("u1", "admin", ""));
    let r = get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &t), ("Authorization", &t)],
    );
    assert_eq!(r.status, 400);
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn an_oversized_authorization_header_is_refused() {
    let (echo, gw) = start();
    let huge = format!("Bearer {}", "a".repeat(9 * 1024));
    let r = get(gw.addr, "/api/protected", &[("Authorization", &huge)]);
    assert!(r.status == 401 || r.status == 431, "{}", r.status);
    assert_eq!(echo.seen_count(), 0);
}

#[test]
fn smuggling_shapes_are_refused_and_the_upstream_sees_nothing() {
    let (echo, gw) = start();
    let t = token("u1", "admin", "");
    let attacks = [
        format!("POST /api/browse/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/admin/x HTTP/1.1\r\nHost: a\r\n\r\n"),
        format!("POST /api/browse/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"),
        format!("POST /api/browse/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST /api/browse/x HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    for attack in &attacks {
        let bytes = raw(
            gw.addr,
            attack.as_bytes(),
            std::time::Duration::from_secs(3),
        );
        let responses = parse_responses(&bytes);
        assert!(!responses.is_empty(), "no answer to {attack:?}");
        assert_eq!(responses[0].status, 400, "{attack:?}");
        assert_eq!(
            responses.len(),
            1,
            "a second request was answered: {attack:?}"
        );
    }
    assert_eq!(echo.seen_count(), 0);
}
