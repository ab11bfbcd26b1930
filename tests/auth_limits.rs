//! Rate limits (docs/auth-api.md, Rate limits): login per IP and per
//! email, refresh and signup per IP, and the routes' own `rate_limit`;
//! each trips with 429 + Retry-After and resets.

mod common;

use common::*;
use std::time::Duration;

const DEFAULT_LIMITS: &str =
    "rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 1000/min, signup: 1000/min }";

fn config(limits: &str, trust_forwarded_for: bool) -> String {
    assert!(
        BASE_CONFIG.contains(DEFAULT_LIMITS),
        "BASE_CONFIG's rate_limits line changed"
    );
    let mut yaml = BASE_CONFIG.replacen(DEFAULT_LIMITS, limits, 1);
    yaml.push_str("  - { path: /limited, upstream: app, auth: none, rate_limit: 2/s }\n");
    yaml.push_str("  - { path: /api/limited, upstream: app, rate_limit: 2/s }\n");
    if trust_forwarded_for {
        yaml.push_str("trust_forwarded_for: true\n");
    }
    yaml
}

/// A login that fails fast (the password is too short to exist): only the limits cost time.
fn quick_login(gw: &Gateway, email: &str, headers: &[(&str, &str)]) -> Response {
    post(
        gw.addr,
        "/api/auth/login",
        Some(&credentials(email, "short")),
        headers,
    )
}

fn assert_limited(r: &Response) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"error": "Too many requests"}));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
}

#[test]
fn login_is_limited_per_client_ip_and_per_email_and_resets() {
    let echo = Echo::start();
    let limits =
        "rate_limits: { login: 3/s, login_per_email: 2/s, refresh: 1000/min, signup: 1000/min }";
    let gw = Gateway::start(&config(limits, false), echo.addr, &[]);

    // Per email (the normalized one): the third attempt on one account is refused.
    assert_eq!(quick_login(&gw, "a@example.com", &[]).status, 401);
    assert_eq!(quick_login(&gw, "A@example.com ", &[]).status, 401);
    assert_limited(&quick_login(&gw, "a@example.com", &[]));
    // Per IP: three attempts from this address were counted, so a fourth on another
    // account is refused too, and a client-sent X-Forwarded-For does not make a new client.
    assert_limited(&quick_login(
        &gw,
        "b@example.com",
        &[("X-Forwarded-For", "203.0.113.9")],
    ));

    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(
        quick_login(&gw, "a@example.com", &[]).status,
        401,
        "the limits reset"
    );

    let m = gw.admin_addr;
    assert_eq!(
        metric(m, r#"portcullis_logins_total{result="rate_limited"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(
            m,
            r#"portcullis_auth_decisions_total{decision="rate_limited",mode="proxy"}"#
        ),
        Some(2.0)
    );
}

#[test]
fn refresh_and_signup_are_limited_per_client_ip_and_reset() {
    let echo = Echo::start();
    let limits =
        "rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 2/s, signup: 2/s }";
    let gw = Gateway::start(&config(limits, false), echo.addr, &[]);
    for _ in 0..2 {
        assert_eq!(refresh(gw.addr, "not-a-real-token").status, 401);
    }
    assert_limited(&refresh(gw.addr, "not-a-real-token"));
    let weak = |email: &str| {
        post(
            gw.addr,
            "/api/auth/signup",
            Some(&credentials(email, "short")),
            &[],
        )
    };
    assert_eq!(weak("x@example.com").status, 400);
    assert_eq!(weak("y@example.com").status, 400);
    assert_limited(&weak("z@example.com"));

    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(refresh(gw.addr, "not-a-real-token").status, 401);
    assert_eq!(weak("z@example.com").status, 400);
}

#[test]
fn a_route_rate_limit_counts_per_user_or_per_ip_when_public() {
    let echo = Echo::start();
    let gw = Gateway::start(&config(DEFAULT_LIMITS, false), echo.addr, &[]);
    let alice = format!("Bearer {}", token("alice", "viewer", ""));
    let bob = format!("Bearer {}", token("bob", "viewer", ""));
    for _ in 0..2 {
        assert_eq!(
            get(gw.addr, "/api/limited", &[("Authorization", &alice)]).status,
            200
        );
    }
    assert_limited(&get(gw.addr, "/api/limited", &[("Authorization", &alice)]));
    assert_eq!(
        get(gw.addr, "/api/limited", &[("Authorization", &bob)]).status,
        200
    );

    for _ in 0..2 {
        assert_eq!(get(gw.addr, "/limited", &[]).status, 200);
    }
    assert_limited(&get(gw.addr, "/limited", &[]));
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(get(gw.addr, "/limited", &[]).status, 200);
    assert_eq!(
        get(gw.addr, "/api/limited", &[("Authorization", &alice)]).status,
        200
    );
}

#[test]
fn with_trust_forwarded_for_the_rightmost_hop_is_the_client() {
    let echo = Echo::start();
    let gw = Gateway::start(&config(DEFAULT_LIMITS, true), echo.addr, &[]);
    let from = |ip: &str| {
        get(
            gw.addr,
            "/limited",
            &[("X-Forwarded-For", &format!("198.51.100.1, {ip}"))],
        )
    };
    assert_eq!(from("203.0.113.1").status, 200);
    assert_eq!(from("203.0.113.1").status, 200);
    assert_limited(&from("203.0.113.1"));
    assert_eq!(
        from("203.0.113.2").status,
        200,
        "another client behind the trusted proxy"
    );
}
