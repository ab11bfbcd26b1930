//! The caller's sessions: `GET /sessions` lists the live refresh
//! families with their user agent and network (never the full address), and
//! `DELETE /sessions/{id}` ends one of the caller's own at once; anyone else's is a 404.
//! Needs no mail: runs on the plain BASE_CONFIG.

mod common;

use common::*;
use serde_json::{json, Value};

fn login_as(gw: &Gateway, email: &str, user_agent: &str) -> (String, String) {
    let r = post(
        gw.addr,
        "/api/auth/login",
        Some(&credentials(email, PASSWORD)),
        &[("User-Agent", user_agent)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    (
        access_token(&r),
        refresh_cookie(&r).expect("refresh cookie"),
    )
}

fn sessions(gw: &Gateway, access: &str) -> Vec<Value> {
    let r = get_as(gw.addr, "/api/auth/sessions", access);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["sessions"]
        .as_array()
        .expect("a sessions list")
        .clone()
}

fn end(gw: &Gateway, access: &str, id: &str, extra: &[(&str, &str)]) -> Response {
    let bearer = format!("Bearer {access}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    request(
        gw.addr,
        "DELETE",
        &format!("/api/auth/sessions/{id}"),
        &headers,
        None,
    )
}

#[test]
fn sessions_list_the_callers_live_sessions_with_agent_and_network_only() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "ada@example.com").status, 201);
    let (laptop, laptop_refresh) = login_as(&gw, "ada@example.com", "Firefox/140.0");
    // Sessions are ordered by their start, in whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let (phone, _) = login_as(&gw, "ada@example.com", "MobileSafari/19");
    assert_eq!(signup(gw.addr, "bob@example.com").status, 201);
    login_as(&gw, "bob@example.com", "curl/8.5.0");

    let list = sessions(&gw, &laptop);
    assert_eq!(list.len(), 2, "{list:#?}");
    // Newest first; the caller's own marked.
    assert_eq!(list[0]["user_agent"], "MobileSafari/19");
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["user_agent"], "Firefox/140.0");
    assert_eq!(list[1]["current"], true);
    for s in &list {
        assert_eq!(s["ip_prefix"], "127.0.0.0/24");
        assert_eq!(s["workspace"], Value::Null);
        assert_eq!(s["id"].as_str().map(str::len), Some(32));
        let created = s["created_at"].as_i64().unwrap();
        assert!(s["last_used_at"].as_i64().unwrap() >= created);
        assert!(s["expires_at"].as_i64().unwrap() > created);
        assert!(!s.to_string().contains("127.0.0.1"), "{s}");
    }
    // A refresh moves "last used" and keeps the session (and its id).
    let before = list[1]["last_used_at"].as_i64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(refresh(gw.addr, &laptop_refresh).status, 200);
    let list = sessions(&gw, &phone);
    assert_eq!(list.len(), 2);
    assert!(
        list[1]["last_used_at"].as_i64().unwrap() > before,
        "{list:#?}"
    );
    assert_eq!(list[0]["current"], true);
}

#[test]
fn ending_a_session_revokes_its_tokens_at_once_and_only_the_callers_own() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "cy@example.com").status, 201);
    let (mine, _) = login_as(&gw, "cy@example.com", "A");
    let (stolen, stolen_refresh) = login_as(&gw, "cy@example.com", "B");
    assert_eq!(signup(gw.addr, "dee@example.com").status, 201);
    let (theirs, theirs_refresh) = login_as(&gw, "dee@example.com", "C");
    let their_id = sessions(&gw, &theirs)[0]["id"].as_str().unwrap().to_owned();
    let stolen_id = sessions(&gw, &mine)
        .iter()
        .find(|s| s["user_agent"] == "B")
        .and_then(|s| s["id"].as_str().map(str::to_owned))
        .unwrap();

    // Someone else's session: indistinguishable from none, and untouched.
    let r = end(&gw, &mine, &their_id, &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json(), json!({"error": "Not found"}));
    assert_eq!(get_as(gw.addr, "/api/protected", &theirs).status, 200);
    assert_eq!(refresh(gw.addr, &theirs_refresh).status, 200);

    let r = end(&gw, &mine, &stolen_id, &[]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(get_as(gw.addr, "/api/protected", &stolen).status, 401);
    assert_eq!(refresh(gw.addr, &stolen_refresh).status, 401);
    assert_eq!(get_as(gw.addr, "/api/protected", &mine).status, 200);
    assert_eq!(sessions(&gw, &mine).len(), 1);
    // Ended already: 404, as for an unknown id.
    assert_eq!(end(&gw, &mine, &stolen_id, &[]).status, 404);
}

#[test]
fn session_endpoints_refuse_bad_input_with_exact_answers() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "eve@example.com").status, 201);
    let (access, _) = login_as(&gw, "eve@example.com", "A");
    let id = sessions(&gw, &access)[0]["id"].as_str().unwrap().to_owned();
    let answer = |r: &Response, status: u16, error: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json(), json!({ "error": error }));
    };

    answer(
        &get(gw.addr, "/api/auth/sessions", &[]),
        401,
        "Missing token",
    );
    let r = get_as(gw.addr, "/api/auth/sessions", "not.a.token");
    answer(&r, 401, "Invalid or expired token");
    let r = post(gw.addr, "/api/auth/sessions", None, &[]);
    answer(&r, 405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = request(
        gw.addr,
        "GET",
        &format!("/api/auth/sessions/{id}"),
        &[],
        None,
    );
    answer(&r, 405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("DELETE"));
    answer(&end(&gw, &access, "zz", &[]), 404, "Not found");
    answer(&end(&gw, &access, &"f".repeat(200), &[]), 404, "Not found");
    answer(
        &request(gw.addr, "DELETE", "/api/auth/sessions/", &[], None),
        404,
        "Not found",
    );
    let r = request(
        gw.addr,
        "DELETE",
        &format!("/api/auth/sessions/{id}"),
        &[],
        None,
    );
    answer(&r, 401, "Missing token");
    let r = end(&gw, &access, &id, &[("Origin", "https://evil.example")]);
    answer(&r, 403, "Cross-origin request refused");
    // None of that ended the session.
    assert_eq!(get_as(gw.addr, "/api/protected", &access).status, 200);
}
