//! Personal access tokens through the real binary: created with a
//! session, shown once, verified on proxied routes from the in-memory index, limited to
//! their scopes and to what their owner may do *now*, revoked at once, listed and
//! revoked by admins (API and CLI), and followed by a second replica on PostgreSQL
//! within a second.

mod common;

use common::postgres::{server_url, Schema};
use common::*;
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};

/// A call to an auth endpoint with a Bearer token and, when given, a JSON body.
fn call(gw: &Gateway, method: &str, path: &str, body: Option<Value>, bearer: &str) -> Response {
    auth_call(gw.addr, method, path, body, Some(bearer))
}

fn status_as(gw: &Gateway, method: &str, path: &str, bearer: &str) -> u16 {
    request(
        gw.addr,
        method,
        path,
        &[("Authorization", &format!("Bearer {bearer}"))],
        None,
    )
    .status
}

/// Creates a token with `scopes`; returns (id, secret).
fn create(gw: &Gateway, session: &str, scopes: Value) -> (String, String) {
    let body = json!({"name": "ci", "expires_in": "1d", "scopes": scopes});
    let r = call(gw, "POST", "/tokens", Some(body), session);
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().expect("id").to_owned(),
        v["token"].as_str().expect("token").to_owned(),
    )
}

fn cli(gw: &Gateway, args: &[&str], stdin: &str) -> (i32, String, String) {
    cli_on(gw, args, stdin, &[])
}

/// The CLI against `gw`'s config, with `env` (say, the store it was started with).
fn cli_on(gw: &Gateway, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let config = gw.dir.join("gateway.yaml");
    let mut all = args.to_vec();
    all.extend_from_slice(&["-c", config.to_str().expect("utf-8 path")]);
    portcullis_with_stdin(&all, env, stdin)
}

fn add_user(gw: &Gateway, email: &str, role: &str) {
    add_user_on(gw, email, role, &[]);
}

fn add_user_on(gw: &Gateway, email: &str, role: &str, env: &[(&str, &str)]) {
    add_user_with(gw, email, role, env);
}

fn assert_invalid_token(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json(), json!({"error": "Invalid or expired token"}));
}

fn pat_metric(gw: &Gateway, result: &str) -> f64 {
    metric(
        gw.admin_addr,
        &format!(r#"portcullis_pat_verifications_total{{result="{result}"}}"#),
    )
    .unwrap_or(0.0)
}

#[test]
fn a_token_is_shown_once_acts_as_its_owner_within_its_scopes_and_is_revoked_at_once() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (user_id, session, _) = signed_in(gw.addr, "ci@example.com");
    let (id, token) = create(
        &gw,
        &session,
        json!([{"path": "/api/browse/**", "methods": ["GET"]}]),
    );
    assert_eq!(token.len(), 46, "{token}");
    assert!(token.starts_with("pcl_pat_"), "{token}");

    // In scope: the upstream sees the owner, the method and the token id, never the secret,
    // and no client-sent copy of those headers.
    let r = request(
        gw.addr,
        "GET",
        "/api/browse/a",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-Auth-Method", "jwt"),
            ("X-Token-Id", "forged"),
            ("X-User-Id", "forged"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(
        echoed_header_values(&seen, "x-user-id"),
        vec![user_id.clone()]
    );
    assert_eq!(
        echoed_header_values(&seen, "x-user-role"),
        vec!["viewer".to_owned()]
    );
    assert_eq!(
        echoed_header_values(&seen, "x-auth-method"),
        vec!["pat".to_owned()]
    );
    assert_eq!(echoed_header_values(&seen, "x-token-id"), vec![id.clone()]);
    assert!(
        !seen.to_string().contains(&token),
        "the secret reached the upstream: {seen}"
    );

    // A session's request carries none of them, whatever the client sends.
    let r = request(
        gw.addr,
        "GET",
        "/api/browse/a",
        &[
            ("Authorization", &format!("Bearer {session}")),
            ("X-Auth-Method", "pat"),
            ("X-Token-Id", &id),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(echoed_header_values(&r.json(), "x-auth-method").is_empty());
    assert!(echoed_header_values(&r.json(), "x-token-id").is_empty());

    // Out of scope: another method, another path.
    assert_eq!(status_as(&gw, "DELETE", "/api/browse/a", &token), 403);
    assert_eq!(status_as(&gw, "GET", "/api/protected", &token), 403);
    // A token is not a session: the auth endpoints refuse it.
    assert_invalid_token(&call(
        &gw,
        "GET",
        "/api/auth/tokens".trim_start_matches("/api/auth"),
        None,
        &token,
    ));
    assert_invalid_token(&call(&gw, "GET", "/me", None, &token));

    // Listed without the secret; last use recorded within the batch interval.
    let listed = eventually(Duration::from_secs(8), || {
        call(&gw, "GET", "/tokens", None, &session).json()["tokens"][0]["last_used_at"].is_u64()
    });
    assert!(listed, "last_used_at never recorded");
    let list = call(&gw, "GET", "/tokens", None, &session);
    assert_eq!(list.status, 200);
    let tokens = list.json()["tokens"].as_array().expect("tokens").clone();
    assert_eq!(tokens.len(), 1);
    let t = &tokens[0];
    assert_eq!(t["id"], json!(id));
    assert_eq!(t["name"], json!("ci"));
    assert_eq!(t["prefix"], json!(&token[..12]));
    assert_eq!(
        t["scopes"],
        json!([{"path": "/api/browse/**", "methods": ["GET", "HEAD"]}])
    );
    assert!(t.get("token").is_none() && !list.text().contains(&token));
    assert_eq!(
        t["expires_at"].as_u64().unwrap() - t["created_at"].as_u64().unwrap(),
        86_400
    );

    // Another user can neither see nor revoke it.
    let (_, other, _) = signed_in(gw.addr, "other@example.com");
    assert_eq!(
        call(&gw, "GET", "/tokens", None, &other).json(),
        json!({"tokens": []})
    );
    let r = call(&gw, "DELETE", &format!("/tokens/{id}"), None, &other);
    assert_eq!((r.status, r.json()), (404, json!({"error": "Not found"})));

    // Revoked: refused on the very next request; a second revocation is a 404.
    let r = call(&gw, "DELETE", &format!("/tokens/{id}"), None, &session);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_invalid_token(&get_as(gw.addr, "/api/browse/a", &token));
    assert_eq!(
        call(&gw, "DELETE", &format!("/tokens/{id}"), None, &session).status,
        404
    );
    assert_eq!(
        call(&gw, "GET", "/tokens", None, &session).json(),
        json!({"tokens": []})
    );

    assert!(pat_metric(&gw, "ok") >= 1.0);
    assert_eq!(pat_metric(&gw, "forbidden"), 2.0);
    assert_eq!(pat_metric(&gw, "unknown"), 1.0);
}

#[test]
fn bad_requests_to_the_token_endpoints_get_exact_answers() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (_, session, _) = signed_in(gw.addr, "bad@example.com");
    let scopes = json!([{"path": "/api/browse/**", "methods": ["GET"]}]);
    let bad = |body: Value, detail: &str| {
        let r = call(&gw, "POST", "/tokens", Some(body.clone()), &session);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({"error": format!("Invalid request: {detail}")}),
            "{body}"
        );
    };
    bad(
        json!({"expires_in": 60, "scopes": scopes}),
        "missing field \"name\"",
    );
    bad(
        json!({"name": "x", "scopes": scopes}),
        "missing field \"expires_in\"",
    );
    bad(
        json!({"name": "x", "expires_in": "91d", "scopes": scopes}),
        "field \"expires_in\" must be from 1s to 90d",
    );
    bad(
        json!({"name": "x", "expires_in": 0, "scopes": scopes}),
        "field \"expires_in\" must be from 1s to 90d",
    );
    bad(
        json!({"name": "x", "expires_in": "later", "scopes": scopes}),
        "field \"expires_in\" must be whole seconds or a duration such as \"30d\"",
    );
    bad(
        json!({"name": "x", "expires_in": 60}),
        "missing field \"scopes\"",
    );
    bad(
        json!({"name": "x", "expires_in": 60, "scopes": []}),
        "field \"scopes\" must not be empty",
    );
    bad(
        json!({"name": "x", "expires_in": 60, "scopes": [{"path": "/a//b", "methods": ["GET"]}]}),
        "scopes[0]: \"path\": pattern has an empty segment (`//`)",
    );
    bad(json!({"name": "x", "expires_in": 60, "scopes": [{"path": "/a", "methods": ["TRACE"]}]}), "scopes[0]: \"methods\": method TRACE cannot be routed (it is always answered with 405); allowed: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    bad(
        json!({"name": "x".repeat(101), "expires_in": 60, "scopes": scopes}),
        "field \"name\" must be 1 to 100 characters, without control characters",
    );
    bad(
        json!({"name": "x", "expires_in": 60, "scopes": scopes, "role": "admin"}),
        "unknown field \"role\"",
    );

    let path = "/api/auth/tokens";
    let auth = format!("Bearer {session}");
    let body = json!({"name": "x", "expires_in": 60, "scopes": scopes}).to_string();
    // Not JSON, wrong content type, a foreign page, no session, too large, wrong method.
    let r = post(gw.addr, path, Some("{"), &[("Authorization", &auth)]);
    assert_eq!(
        (r.status, error_of(&r)),
        (400, "Invalid request: body is not valid JSON".to_owned())
    );
    let r = post(
        gw.addr,
        path,
        Some(&body),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
    );
    assert_eq!(
        (r.status, error_of(&r)),
        (415, "Content-Type must be application/json".to_owned())
    );
    let r = post(
        gw.addr,
        path,
        Some(&body),
        &[("Authorization", &auth), ("Origin", "https://evil.example")],
    );
    assert_eq!(
        (r.status, error_of(&r)),
        (403, "Cross-origin request refused".to_owned())
    );
    let r = request(
        gw.addr,
        "DELETE",
        "/api/auth/tokens/abc",
        &[("Authorization", &auth), ("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(
        (r.status, error_of(&r)),
        (403, "Cross-origin request refused".to_owned())
    );
    let r = post(gw.addr, path, Some(&body), &[]);
    assert_eq!((r.status, error_of(&r)), (401, "Missing token".to_owned()));
    let huge = json!({"name": "x", "expires_in": 60, "scopes": scopes, "pad": "x".repeat(20_000)})
        .to_string();
    let r = post(gw.addr, path, Some(&huge), &[("Authorization", &auth)]);
    assert_eq!(
        (r.status, error_of(&r)),
        (413, "Payload too large".to_owned())
    );
    let r = request(gw.addr, "PUT", path, &[("Authorization", &auth)], None);
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, POST"))
    );
    let r = request(
        gw.addr,
        "GET",
        "/api/auth/tokens/abc",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("DELETE")));
    // A workspace the user is not a member of; the admin listing for a non-admin.
    let r = call(
        &gw,
        "POST",
        "/tokens",
        Some(json!({"name": "x", "expires_in": 60, "scopes": scopes, "workspace": "acme"})),
        &session,
    );
    assert_eq!(
        (r.status, error_of(&r)),
        (403, "Not a member of this workspace".to_owned())
    );
    let r = call(&gw, "GET", "/users/someone/tokens", None, &session);
    assert_eq!(
        (r.status, error_of(&r)),
        (403, "Insufficient permissions".to_owned())
    );

    // Presented tokens: a wrong checksum, a made-up one, an expired one.
    let (_, token) = create(&gw, &session, scopes.clone());
    let mut altered = token.clone().into_bytes();
    altered[12] = if altered[12] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_invalid_token(&get_as(gw.addr, "/api/browse/a", &altered));
    assert_invalid_token(&get_as(gw.addr, "/api/browse/a", "pcl_pat_short"));
    assert_eq!(pat_metric(&gw, "malformed"), 2.0);
    let r = call(
        &gw,
        "POST",
        "/tokens",
        Some(json!({"name": "brief", "expires_in": 1, "scopes": scopes})),
        &session,
    );
    assert_eq!(r.status, 201);
    let brief = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(get_as(gw.addr, "/api/browse/a", &brief).status, 200);
    thread::sleep(Duration::from_millis(2_100));
    assert_invalid_token(&get_as(gw.addr, "/api/browse/a", &brief));
    assert_eq!(pat_metric(&gw, "expired"), 1.0);
    assert_eq!(get_as(gw.addr, "/api/browse/a", &token).status, 200);
}

#[test]
fn a_token_follows_its_owners_current_role_and_admins_list_and_revoke_anyones() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    add_user(&gw, "root@example.com", "admin");
    add_user(&gw, "ops@example.com", "admin");
    let root = access_token(&login(gw.addr, "root@example.com", PASSWORD));
    let ops = access_token(&login(gw.addr, "ops@example.com", PASSWORD));
    let ops_id = get_as(gw.addr, "/api/auth/me", &ops).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (id, token) = create(
        &gw,
        &ops,
        json!([{"path": "/api/admin/**", "methods": ["GET"]}]),
    );
    assert_eq!(status_as(&gw, "GET", "/api/admin/x", &token), 200);

    // Downgraded: limited on the next request; disabled: refused; re-enabled and
    // promoted again: back.
    let user = format!("/users/{ops_id}");
    assert_eq!(
        call(&gw, "PATCH", &user, Some(json!({"role": "viewer"})), &root).status,
        200
    );
    assert_eq!(status_as(&gw, "GET", "/api/admin/x", &token), 403);
    assert_eq!(
        call(&gw, "PATCH", &user, Some(json!({"disabled": true})), &root).status,
        200
    );
    assert_invalid_token(&get_as(gw.addr, "/api/admin/x", &token));
    assert!(pat_metric(&gw, "owner_inactive") >= 1.0);
    assert_eq!(
        call(
            &gw,
            "PATCH",
            &user,
            Some(json!({"disabled": false, "role": "admin"})),
            &root
        )
        .status,
        200
    );
    assert_eq!(status_as(&gw, "GET", "/api/admin/x", &token), 200);

    // From the shell, against the running gateway: a downgrade bites within the poll.
    let set_role = |role: &str, want: u16| {
        let args = [
            "user",
            "set-role",
            "--email",
            "ops@example.com",
            "--role",
            role,
        ];
        let (code, out, err) = cli(&gw, &args, "");
        assert_eq!(code, 0, "{out}{err}");
        let status = || status_as(&gw, "GET", "/api/admin/x", &token);
        assert!(
            eventually(Duration::from_secs(1), || status() == want),
            "{role}"
        );
    };
    set_role("viewer", 403);
    set_role("admin", 200);

    // Admins list anyone's tokens and revoke them, by API and CLI.
    let r = call(&gw, "GET", &format!("/users/{ops_id}/tokens"), None, &root);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tokens"][0]["id"], json!(id));
    let r = call(&gw, "DELETE", &format!("/tokens/{id}"), None, &root);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_invalid_token(&get_as(gw.addr, "/api/admin/x", &token));

    let ops = access_token(&login(gw.addr, "ops@example.com", PASSWORD));
    let (id, token) = create(
        &gw,
        &ops,
        json!([{"path": "/api/admin/**", "methods": ["GET"]}]),
    );
    let (code, out, err) = cli(&gw, &["pat", "list", "--email", "ops@example.com"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&id) && out.contains(&token[..12]) && !out.contains(&token),
        "{out}"
    );
    let (code, out, err) = cli(&gw, &["pat", "revoke", &id], "");
    assert_eq!(code, 0, "{out}{err}");
    let at = Instant::now();
    assert!(eventually(Duration::from_secs(1), || status_as(
        &gw,
        "GET",
        "/api/admin/x",
        &token
    ) == 401));
    eprintln!("CLI revocation bit after {:?}", at.elapsed());
    let (code, _, err) = cli(&gw, &["pat", "revoke", &id], "");
    assert_eq!(
        (code, err.trim()),
        (1, format!("no live token with id \"{id}\"").as_str())
    );
}

#[test]
fn a_workspace_token_acts_with_the_membership_role_and_dies_with_the_membership() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    add_user(&gw, "root@example.com", "admin");
    let root = access_token(&login(gw.addr, "root@example.com", PASSWORD));
    let (code, out, err) = cli(&gw, &["workspace", "set-plan", "acme", "pro"], "");
    assert_eq!(code, 0, "{out}{err}");
    let (sam_id, sam, _) = signed_in(gw.addr, "sam@example.com");
    let membership = format!("/users/{sam_id}/workspaces/acme");
    assert_eq!(
        call(
            &gw,
            "PUT",
            &membership,
            Some(json!({"role": "viewer"})),
            &root
        )
        .status,
        200
    );
    let body = json!({"name": "ws", "expires_in": 3600, "workspace": "acme",
                      "scopes": [{"path": "/api/workspaces/**", "methods": ["GET"]}]});
    let r = call(&gw, "POST", "/tokens", Some(body), &sam);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["workspace"], json!("acme"));
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = get_as(gw.addr, "/api/workspaces/acme/x", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        echoed_header_values(&r.json(), "x-workspace-id"),
        vec!["acme".to_owned()]
    );
    assert_eq!(
        echoed_header_values(&r.json(), "x-user-plan"),
        vec!["pro".to_owned()]
    );
    assert_eq!(
        status_as(&gw, "GET", "/api/workspaces/other/x", &token),
        403
    );
    assert_eq!(call(&gw, "DELETE", &membership, None, &root).status, 204);
    assert_invalid_token(&get_as(gw.addr, "/api/workspaces/acme/x", &token));
}

/// Polls `gw` with `token` on `path` until the status is `want`; how long that took.
fn status_within(gw: &Gateway, path: &str, token: &str, want: u16, since: Instant) -> Duration {
    loop {
        let status = status_as(gw, "GET", path, token);
        if status == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still {status} after 5 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tokens_created_downgraded_and_revoked_on_one_replica_follow_on_the_other_within_a_second() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let env = [("PORTCULLIS_STORE", schema.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Gateway::start(BASE_CONFIG, echo.addr, &env);
    let b = Gateway::start(BASE_CONFIG, echo.addr, &env);
    add_user_on(&a, "root@example.com", "admin", &env);
    add_user_on(&a, "ops@example.com", "admin", &env);
    let root = access_token(&login(a.addr, "root@example.com", PASSWORD));
    let ops = access_token(&login(a.addr, "ops@example.com", PASSWORD));
    let ops_id = get_as(a.addr, "/api/auth/me", &ops).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_path = "/api/admin/x";

    let (id, token) = create(
        &a,
        &ops,
        json!([{"path": "/api/admin/**", "methods": ["GET"]}]),
    );
    let took = status_within(&b, admin_path, &token, 200, Instant::now());
    eprintln!("created on A, accepted on B after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let user = format!("/users/{ops_id}");
    let r = call(&a, "PATCH", &user, Some(json!({"role": "viewer"})), &root);
    let at = Instant::now();
    assert_eq!(r.status, 200);
    let took = status_within(&b, admin_path, &token, 403, at);
    eprintln!("downgraded on A, limited on B after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let r = call(&a, "PATCH", &user, Some(json!({"disabled": true})), &root);
    let at = Instant::now();
    assert_eq!(r.status, 200);
    let took = status_within(&b, admin_path, &token, 401, at);
    eprintln!("disabled on A, refused on B after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    let r = call(
        &a,
        "PATCH",
        &user,
        Some(json!({"disabled": false, "role": "admin"})),
        &root,
    );
    assert_eq!(r.status, 200);
    status_within(&b, admin_path, &token, 200, Instant::now());
    let r = call(&a, "DELETE", &format!("/tokens/{id}"), None, &root);
    let at = Instant::now();
    assert_eq!(r.status, 204);
    let took = status_within(&b, admin_path, &token, 401, at);
    eprintln!("revoked on A, refused on B after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A restarted replica loads live tokens from the store.
    let ops = access_token(&login(b.addr, "ops@example.com", PASSWORD));
    let (_, token) = create(
        &b,
        &ops,
        json!([{"path": "/api/admin/**", "methods": ["GET"]}]),
    );
    drop(a);
    let c = Gateway::start(BASE_CONFIG, echo.addr, &env);
    assert_eq!(status_as(&c, "GET", admin_path, &token), 200);
}
