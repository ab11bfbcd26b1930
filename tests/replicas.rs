//! Several replicas on one PostgreSQL database (docs/deployment.md): two real gateway
//! processes share users, sessions and revocations; a revocation on one is enforced by the
//! other within 1 s; a refresh token raced to both yields one successor; login and signup
//! limits hold across them; and a store outage leaves proxying alone, turns auth endpoints
//! and `/readyz` to 503, and heals without a restart. Runs only with
//! `PORTCULLIS_TEST_POSTGRES`.

mod common;

use common::postgres::{server_addr, server_url, Relay, Schema};
use common::*;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// docs/deployment.md, What replicas share: a revocation made on one replica is
/// enforced by all within this.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A gateway on `store`, with `yaml` (BASE_CONFIG or a variant).
fn replica(yaml: &str, echo: &Echo, store: &str) -> Gateway {
    Gateway::start(yaml, echo.addr, &[("PORTCULLIS_STORE", store)])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Polls `gw` with `token` until it is refused; returns how long that took after `since`.
fn refused_after(gw: &Gateway, token: &str, since: Instant) -> Duration {
    loop {
        let r = get_as(gw.addr, "/api/protected", token);
        if r.status == 401 {
            assert_eq!(error_of(&r), "Invalid or expired token");
            return since.elapsed();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "token still accepted after 5 s"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn assert_propagated(what: &str, took: Duration) {
    eprintln!("{what}: refused on the other replica after {took:?}");
    assert!(took < PROPAGATION, "{what} took {took:?}");
}

#[test]
fn revocations_on_one_replica_are_enforced_by_the_other_within_a_second() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let a = replica(BASE_CONFIG, &echo, &schema.url());
    let b = replica(BASE_CONFIG, &echo, &schema.url());

    // Logout on A: the access token is refused on B.
    let (_, access, refresh_token) = signed_in(a.addr, "ada@example.com");
    assert_eq!(get_as(b.addr, "/api/protected", &access).status, 200);
    let cookie = format!("{REFRESH_COOKIE}={refresh_token}");
    let r = post(
        a.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &bearer(&access)), ("Cookie", &cookie)],
    );
    let at = Instant::now();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_propagated("logout", refused_after(&b, &access, at));
    assert_eq!(refresh(b.addr, &refresh_token).status, 401);

    // Logout-all on B ends a session started on A.
    let first = access_token(&login(a.addr, "ada@example.com", PASSWORD));
    let second = access_token(&login(b.addr, "ada@example.com", PASSWORD));
    let r = post(
        b.addr,
        "/api/auth/logout-all",
        None,
        &[("Authorization", &bearer(&second))],
    );
    let at = Instant::now();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_propagated("logout-all", refused_after(&a, &first, at));

    // Reuse detected on B revokes the family everywhere, including A's newest token.
    let r = login(a.addr, "ada@example.com", PASSWORD);
    let r0 = refresh_cookie(&r).expect("cookie");
    let r1 = refresh_cookie(&refresh(a.addr, &r0)).expect("rotated");
    let rotated = refresh(a.addr, &r1);
    assert_eq!(rotated.status, 200);
    let newest = access_token(&rotated);
    let reuse = refresh(b.addr, &r0);
    let at = Instant::now();
    assert_eq!(reuse.status, 401);
    assert_eq!(error_of(&reuse), "Invalid or reused token");
    assert_propagated("reuse", refused_after(&a, &newest, at));

    // Disabling from the shell (the CLI writes the same log) reaches both replicas.
    let token = access_token(&login(a.addr, "ada@example.com", PASSWORD));
    let config = b.dir.join("gateway.yaml");
    let url = schema.url();
    let (code, out, err) = portcullis_with_stdin(
        &[
            "user",
            "disable",
            "--email",
            "ada@example.com",
            "-c",
            config.to_str().expect("utf-8 path"),
        ],
        &[("PORTCULLIS_STORE", url.as_str())],
        "",
    );
    let at = Instant::now();
    assert_eq!(code, 0, "{out}{err}");
    assert_propagated("disable, on A", refused_after(&a, &token, at));
    assert_propagated("disable, on B", refused_after(&b, &token, at));
}

#[test]
fn a_refresh_token_raced_to_both_replicas_yields_one_successor() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let a = replica(BASE_CONFIG, &echo, &schema.url());
    let b = replica(BASE_CONFIG, &echo, &schema.url());
    signed_in(a.addr, "tabs@example.com");
    let rounds = 5;
    for _ in 0..rounds {
        let r0 = refresh_cookie(&login(b.addr, "tabs@example.com", PASSWORD)).expect("cookie");
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [a.addr, b.addr]
            .into_iter()
            .map(|addr| {
                let (barrier, r0) = (barrier.clone(), r0.clone());
                thread::spawn(move || {
                    barrier.wait();
                    refresh(addr, &r0)
                })
            })
            .collect();
        let answers: Vec<Response> = racers
            .into_iter()
            .map(|t| t.join().expect("racer"))
            .collect();
        for r in &answers {
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let successors: Vec<String> = answers
            .iter()
            .map(|r| refresh_cookie(r).expect("rotated cookie"))
            .collect();
        assert_eq!(successors[0], successors[1], "two branches");
        assert_ne!(successors[0], r0);
        // The one successor is current: it rotates (no reuse was detected) on either replica.
        assert_eq!(refresh(a.addr, &successors[0]).status, 200);
    }
    let count = |result: &str| {
        let series = format!(r#"portcullis_refreshes_total{{result="{result}"}}"#);
        metric(a.admin_addr, &series).unwrap_or(0.0) + metric(b.admin_addr, &series).unwrap_or(0.0)
    };
    assert_eq!(count("rotated"), f64::from(2 * rounds));
    assert_eq!(count("grace"), f64::from(rounds));
    assert_eq!(count("reused"), 0.0);
}

#[test]
fn login_and_signup_limits_hold_across_replicas_while_refresh_limits_are_per_replica() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let yaml = BASE_CONFIG.replacen(
        "rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 1000/min, signup: 1000/min }",
        "rate_limits: { login: 4/min, login_per_email: 2/min, refresh: 2/min, signup: 2/min }",
        1,
    );
    assert_ne!(yaml, BASE_CONFIG, "BASE_CONFIG's rate_limits line changed");
    let a = replica(&yaml, &echo, &schema.url());
    let b = replica(&yaml, &echo, &schema.url());
    // A password too short to exist fails fast: only the limits cost time.
    let attempt = |gw: &Gateway, email: &str| login(gw.addr, email, "short");
    let limited = |r: Response| {
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(error_of(&r), "Too many requests");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    };

    // Per email: two attempts anywhere, the third is refused on either replica.
    assert_eq!(attempt(&a, "x@example.com").status, 401);
    assert_eq!(attempt(&b, "X@example.com").status, 401);
    limited(attempt(&a, "x@example.com"));
    // Per IP: that was the third attempt from this address; one more passes, then none.
    assert_eq!(attempt(&b, "y@example.com").status, 401);
    limited(attempt(&a, "z@example.com"));
    limited(attempt(&b, "z@example.com"));

    // Signup per IP, shared.
    let weak = |gw: &Gateway, email: &str| {
        post(
            gw.addr,
            "/api/auth/signup",
            Some(&credentials(email, "short")),
            &[],
        )
    };
    assert_eq!(weak(&a, "s1@example.com").status, 400);
    assert_eq!(weak(&b, "s2@example.com").status, 400);
    limited(weak(&a, "s3@example.com"));
    limited(weak(&b, "s3@example.com"));

    // Refresh per IP stays per replica (it guards this replica's CPU, not an account).
    assert_eq!(refresh(a.addr, "not-a-real-token").status, 401);
    assert_eq!(refresh(a.addr, "not-a-real-token").status, 401);
    limited(refresh(a.addr, "not-a-real-token"));
    assert_eq!(refresh(b.addr, "not-a-real-token").status, 401);
}

#[test]
fn a_store_outage_gives_503_on_auth_endpoints_keeps_proxying_and_heals_after_catching_up() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let relay = Relay::start(server_addr(&server));
    let echo = Echo::start();
    // A reaches the database directly; B through the relay the test cuts.
    let a = replica(BASE_CONFIG, &echo, &schema.url());
    let b = replica(BASE_CONFIG, &echo, &schema.url_via(&relay));
    let ready = |gw: &Gateway| get(gw.admin_addr, "/readyz", &[]).status;
    assert_eq!(ready(&b), 200);

    let (_, kept, kept_refresh) = signed_in(b.addr, "kept@example.com");
    let (_, known, _) = signed_in(a.addr, "known@example.com");
    let r = post(
        a.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &bearer(&known))],
    );
    assert_eq!(r.status, 204);
    refused_after(&b, &known, Instant::now());
    let (_, missed, _) = signed_in(a.addr, "missed@example.com");
    assert_eq!(get_as(b.addr, "/api/protected", &missed).status, 200);

    relay.cut();
    let cut = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || ready(&b) == 503),
        "/readyz still 200 on B"
    );
    eprintln!("B not ready {:?} after the cut", cut.elapsed());
    assert_eq!(ready(&a), 200, "A still has its database");

    let unavailable = |r: Response| {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"error": "Service unavailable"})
        );
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(retry >= 1);
    };
    unavailable(signup(b.addr, "new@example.com"));
    unavailable(login(b.addr, "kept@example.com", PASSWORD));
    unavailable(refresh(b.addr, &kept_refresh));
    // Proxying needs no store: issued tokens still pass, known revocations still bite.
    assert_eq!(get_as(b.addr, "/api/protected", &kept).status, 200);
    assert_eq!(get_as(b.addr, "/api/protected", &known).status, 401);

    // A revocation B cannot see yet, made while it is cut off.
    let r = post(
        a.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &bearer(&missed))],
    );
    assert_eq!(r.status, 204);
    thread::sleep(Duration::from_millis(500));

    relay.restore();
    let restored = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || ready(&b) == 200),
        "/readyz not 200 again on B"
    );
    eprintln!("B ready {:?} after the restore", restored.elapsed());
    // Ready means caught up: the revocation made during the outage already bites.
    assert_eq!(get_as(b.addr, "/api/protected", &missed).status, 401);
    assert_eq!(get_as(b.addr, "/api/protected", &kept).status, 200);
    assert_eq!(signup(b.addr, "new@example.com").status, 201);
    assert_eq!(refresh(b.addr, &kept_refresh).status, 200);
}

#[test]
fn every_auth_operation_works_on_postgres_through_the_binary() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let gw = replica(BASE_CONFIG, &echo, &schema.url());

    let created = signup(gw.addr, " Pg@Example.com ");
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["user"]["email"], "pg@example.com");
    assert_eq!(created.json()["user"]["role"], "viewer");
    let taken = signup(gw.addr, "pg@example.com");
    assert_eq!(taken.status, 409);
    assert_eq!(error_of(&taken), "Email already registered");
    assert_eq!(
        error_of(&login(gw.addr, "pg@example.com", "wrong password")),
        "Invalid credentials"
    );

    let r = login(gw.addr, "pg@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let (access, r0) = (access_token(&r), refresh_cookie(&r).expect("cookie"));
    let me = get_as(gw.addr, "/api/auth/me", &access);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["email"], "pg@example.com");
    let id = me.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(get_as(gw.addr, "/api/protected", &access).status, 200);
    let seen = echo.wait_seen(1);
    assert_eq!(
        echoed_header_values(seen.last().expect("one request"), "x-user-id"),
        vec![id]
    );

    // Rotation, the grace-window twin, then logout ends the session.
    let rotated = refresh(gw.addr, &r0);
    assert_eq!(rotated.status, 200);
    let r1 = refresh_cookie(&rotated).expect("rotated");
    assert_ne!(r1, r0);
    assert_eq!(refresh_cookie(&refresh(gw.addr, &r0)), Some(r1.clone()));
    let access = access_token(&rotated);
    let cookie = format!("{REFRESH_COOKIE}={r1}");
    let r = post(
        gw.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &bearer(&access)), ("Cookie", &cookie)],
    );
    assert_eq!(r.status, 204);
    assert_eq!(get_as(gw.addr, "/api/protected", &access).status, 401);
    assert_eq!(error_of(&refresh(gw.addr, &r1)), "Invalid or reused token");

    // Workspaces and the user CLI on the same database.
    let config = gw.dir.join("gateway.yaml");
    let config = config.to_str().expect("utf-8 path");
    let url = schema.url();
    let env = [("PORTCULLIS_STORE", url.as_str())];
    let (code, out, err) = portcullis_with_stdin(
        &[
            "user",
            "add",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
            "--workspace",
            "acme:creator:pro",
            "--password-stdin",
            "-c",
            config,
        ],
        &env,
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let scoped = post(
        gw.addr,
        "/api/auth/login",
        Some(
            r#"{"email":"boss@example.com","password":"correct horse battery staple","workspace":"acme"}"#,
        ),
        &[],
    );
    assert_eq!(scoped.status, 200, "{}", scoped.text());
    let me = get_as(gw.addr, "/api/auth/me", &access_token(&scoped)).json();
    assert_eq!(
        (&me["role"], &me["workspace"], &me["plan"]),
        (
            &serde_json::json!("creator"),
            &serde_json::json!("acme"),
            &serde_json::json!("pro")
        )
    );
    let foreign = post(
        gw.addr,
        "/api/auth/login",
        Some(
            r#"{"email":"boss@example.com","password":"correct horse battery staple","workspace":"other"}"#,
        ),
        &[],
    );
    assert_eq!(error_of(&foreign), "Not a member of this workspace");
    let (code, out, _) = portcullis_with_stdin(&["user", "list", "-c", config], &env, "");
    assert_eq!(code, 0);
    assert!(
        out.contains("boss@example.com") && out.contains("pg@example.com"),
        "{out}"
    );

    // Logout-all ends every session of the user.
    let (t1, t2) = (
        access_token(&login(gw.addr, "pg@example.com", PASSWORD)),
        access_token(&login(gw.addr, "pg@example.com", PASSWORD)),
    );
    let r = post(
        gw.addr,
        "/api/auth/logout-all",
        None,
        &[("Authorization", &bearer(&t1))],
    );
    assert_eq!(r.status, 204);
    assert_eq!(get_as(gw.addr, "/api/protected", &t2).status, 401);
}
