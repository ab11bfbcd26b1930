//! The TOTP second factor through the real binary, with codes computed
//! by an independent implementation (PyPI's `pyotp`, from `PORTCULLIS_TEST_PYOTP`, which
//! `.ci/run` sets): enrollment and confirmation, the login's second step, no replay of
//! a code, single-use tickets and recovery codes, attempts limited per user, enrollment
//! required for a role, turning it off, admin and CLI resets, and two replicas on
//! PostgreSQL sharing all of it.

mod common;

use common::postgres::{server_url, Schema};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// A key-encryption key for the PostgreSQL replicas (the TOTP secrets are sealed under it).
const KEK: &str = "1f7cb14d6299321f718e4f01f4fce64d9089c6aa454b171a1a1860ef517a7cfc";

/// The Python with pyotp, or `None` (the test is skipped, saying so) outside CI.
fn pyotp() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_PYOTP") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            println!("skipped: PORTCULLIS_TEST_PYOTP not set (.ci/run sets it)");
            None
        }
    }
}

/// pyotp's code for `secret` at now + `offset` seconds.
fn code(python: &str, secret: &str, offset: i64) -> String {
    let script = "import pyotp, sys, time\nprint(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))";
    python_out(python, script, &[secret, &offset.to_string()])
}

fn python_out(python: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the pyotp python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> Response {
    auth_call(gw.addr, method, path, body, bearer)
}

fn answer(r: &Response) -> (u16, Value) {
    (r.status, r.json())
}

fn err(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "error": message }))
}

/// Enrolls and confirms TOTP with `bearer` (a session or an enrollment token); returns
/// the secret and the recovery codes.
fn enroll(gw: &Gateway, python: &str, bearer: &str) -> (String, Vec<String>) {
    let r = call(gw, "POST", "/mfa/totp/enroll", None, Some(bearer));
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().expect("secret").to_owned();
    let r = call(
        gw,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": code(python, &secret, 0)})),
        Some(bearer),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let codes = r.json()["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    (secret, codes)
}

/// A password login that must answer `mfa_required`; returns its ticket.
fn mfa_ticket(gw: &Gateway, email: &str) -> String {
    let r = login(gw.addr, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        refresh_cookie(&r).is_none(),
        "a cookie before the second factor"
    );
    let body = r.json();
    assert_eq!(body["mfa_required"], json!(true), "{body}");
    assert!(body.get("access_token").is_none());
    body["mfa_token"].as_str().expect("mfa_token").to_owned()
}

fn second_step(gw: &Gateway, ticket: &str, proof: Value) -> Response {
    let mut body = proof;
    body["mfa_token"] = json!(ticket);
    call(gw, "POST", "/login/mfa", Some(body), None)
}

#[test]
fn enrolled_users_log_in_with_a_code_once_and_recovery_codes_once() {
    let Some(py) = pyotp() else { return };
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (_, session, _) = signed_in(gw.addr, "ada@example.com");

    let r = call(&gw, "POST", "/mfa/totp/enroll", None, Some(&session));
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let uri = r.json()["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with("otpauth://totp/gw.test:ada%40example.com?secret="),
        "{uri}"
    );
    // pyotp reads the URI as an authenticator app would, and agrees on the code.
    let from_uri = python_out(
        &py,
        "import pyotp, sys\nprint(pyotp.parse_uri(sys.argv[1]).now())",
        &[&uri],
    );
    assert_eq!(from_uri, code(&py, &secret, 0));

    let wrong = if code(&py, &secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = call(
        &gw,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": wrong})),
        Some(&session),
    );
    assert_eq!(answer(&r), err(401, "Invalid code"));
    let now_code = code(&py, &secret, 0);
    let r = call(
        &gw,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": now_code})),
        Some(&session),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<String> = serde_json::from_value(r.json()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3),
        "{codes:?}"
    );
    let r = call(
        &gw,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": now_code})),
        Some(&session),
    );
    assert_eq!(answer(&r), err(409, "No MFA enrollment pending"));
    let r = call(&gw, "POST", "/mfa/totp/enroll", None, Some(&session));
    assert_eq!(answer(&r), err(409, "MFA already enabled"));

    // The code that confirmed cannot log in (same time step); the next step's can, once.
    let ticket = mfa_ticket(&gw, "ada@example.com");
    assert_eq!(
        answer(&second_step(&gw, &ticket, json!({"code": now_code}))),
        err(401, "Invalid code")
    );
    let next = code(&py, &secret, 30);
    let r = second_step(&gw, &ticket, json!({"code": next}));
    assert_eq!(r.status, 200, "{}", r.text());
    let access = access_token(&r);
    assert!(refresh_cookie(&r).is_some());
    assert_eq!(get_as(gw.addr, "/api/protected", &access).status, 200);
    // The ticket is spent, and the code too, whatever ticket it comes with.
    let r = second_step(&gw, &ticket, json!({"recovery_code": codes[0]}));
    assert_eq!(answer(&r), err(401, "Invalid or expired MFA token"));
    let ticket = mfa_ticket(&gw, "ada@example.com");
    assert_eq!(
        answer(&second_step(&gw, &ticket, json!({"code": next}))),
        err(401, "Invalid code")
    );
    // A recovery code works once, typed in any case, with or without dashes.
    let r = second_step(
        &gw,
        &ticket,
        json!({"recovery_code": codes[0].replace('-', "").to_uppercase()}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    assert!(
        metric(
            gw.admin_addr,
            r#"portcullis_mfa_verifications_total{result="replayed"}"#
        )
        .unwrap_or(0.0)
            >= 2.0
    );
    assert_eq!(
        metric(
            gw.admin_addr,
            r#"portcullis_mfa_verifications_total{result="recovery_code"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn bad_requests_to_the_mfa_endpoints_get_exact_answers_and_attempts_are_limited_per_user() {
    let Some(py) = pyotp() else { return };
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (_, session, _) = signed_in(gw.addr, "bo@example.com");
    let (secret, codes) = enroll(&gw, &py, &session);

    let ticket = mfa_ticket(&gw, "bo@example.com");
    let bad = |proof: Value, detail: &str| {
        assert_eq!(
            answer(&second_step(&gw, &ticket, proof)),
            err(400, &format!("Invalid request: {detail}"))
        );
    };
    bad(
        json!({}),
        "give exactly one of \"code\" and \"recovery_code\"",
    );
    bad(
        json!({"code": "123456", "recovery_code": codes[1]}),
        "give exactly one of \"code\" and \"recovery_code\"",
    );
    bad(json!({"code": 123456}), "field \"code\" must be a string");
    let r = call(
        &gw,
        "POST",
        "/login/mfa",
        Some(json!({"code": "123456"})),
        None,
    );
    assert_eq!(
        answer(&r),
        err(400, "Invalid request: missing field \"mfa_token\"")
    );
    let r = second_step(&gw, "made-up", json!({"code": "123456"}));
    assert_eq!(answer(&r), err(401, "Invalid or expired MFA token"));
    let body = json!({"mfa_token": ticket, "code": "123456"}).to_string();
    let r = post(
        gw.addr,
        "/api/auth/login/mfa",
        Some(&body),
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(
        answer(&r),
        err(415, "Content-Type must be application/json")
    );
    let r = post(
        gw.addr,
        "/api/auth/login/mfa",
        Some(&body),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(answer(&r), err(403, "Cross-origin request refused"));
    let huge = json!({"mfa_token": ticket, "code": "1".repeat(20_000)}).to_string();
    let r = post(gw.addr, "/api/auth/login/mfa", Some(&huge), &[]);
    assert_eq!(answer(&r), err(413, "Payload too large"));
    let r = request(gw.addr, "GET", "/api/auth/login/mfa", &[], None);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = call(&gw, "POST", "/mfa/totp/enroll", None, None);
    assert_eq!(answer(&r), err(401, "Missing token"));
    let r = call(
        &gw,
        "POST",
        "/mfa/totp/enroll",
        None,
        Some("pcl_mfa_made-up"),
    );
    assert_eq!(answer(&r), err(401, "Invalid or expired MFA token"));
    let r = call(&gw, "DELETE", "/users/someone/mfa", None, Some(&session));
    assert_eq!(answer(&r), err(403, "Insufficient permissions"));

    // Ten attempts per five minutes per user, right or wrong (one went on confirming):
    // malformed, wrong, then refused even with the right code.
    assert_eq!(
        answer(&second_step(&gw, &ticket, json!({"code": "12345"}))),
        err(401, "Invalid code")
    );
    for _ in 0..8 {
        let wrong = if code(&py, &secret, 0) == "999999" {
            "999998"
        } else {
            "999999"
        };
        assert_eq!(
            answer(&second_step(&gw, &ticket, json!({"code": wrong}))),
            err(401, "Invalid code")
        );
    }
    let r = second_step(&gw, &ticket, json!({"code": code(&py, &secret, 0)}));
    assert_eq!(answer(&r), err(429, "Too many requests"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        metric(
            gw.admin_addr,
            r#"portcullis_mfa_verifications_total{result="rate_limited"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn turning_mfa_off_needs_the_password_and_a_fresh_code_and_admins_can_reset_it() {
    let Some(py) = pyotp() else { return };
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (_, session, _) = signed_in(gw.addr, "cy@example.com");
    let (secret, _) = enroll(&gw, &py, &session);
    let used = code(&py, &secret, 0);
    let off = |password: &str, code: &str| {
        call(
            &gw,
            "DELETE",
            "/mfa/totp",
            Some(json!({"password": password, "code": code})),
            Some(&session),
        )
    };
    assert_eq!(
        answer(&off("not the password at all", &code(&py, &secret, 30))),
        err(401, "Invalid credentials")
    );
    assert_eq!(answer(&off(PASSWORD, &used)), err(401, "Invalid code"));
    let r = call(
        &gw,
        "DELETE",
        "/mfa/totp",
        Some(json!({"password": PASSWORD})),
        Some(&session),
    );
    assert_eq!(
        answer(&r),
        err(400, "Invalid request: missing field \"code\"")
    );
    assert_eq!(off(PASSWORD, &code(&py, &secret, 30)).status, 204);
    assert_eq!(
        answer(&off(PASSWORD, &code(&py, &secret, 30))),
        err(409, "MFA not enabled")
    );
    assert_eq!(login(gw.addr, "cy@example.com", PASSWORD).status, 200);
    assert!(login(gw.addr, "cy@example.com", PASSWORD).json()["access_token"].is_string());

    // An admin resets a user's second factor through the API; the CLI does it too.
    let (dee_id, dee, _) = signed_in(gw.addr, "dee@example.com");
    enroll(&gw, &py, &dee);
    mfa_ticket(&gw, "dee@example.com");
    let config = gw.dir.join("gateway.yaml");
    let config = config.to_str().unwrap();
    add_user_with(&gw, "root@example.com", "admin", &[]);
    let root = access_token(&login(gw.addr, "root@example.com", PASSWORD));
    let r = call(
        &gw,
        "DELETE",
        &format!("/users/{dee_id}/mfa"),
        None,
        Some(&root),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(login(gw.addr, "dee@example.com", PASSWORD).json()["access_token"].is_string());
    let r = call(&gw, "DELETE", "/users/nobody/mfa", None, Some(&root));
    assert_eq!(answer(&r), err(404, "Not found"));

    let dee = access_token(&login(gw.addr, "dee@example.com", PASSWORD));
    enroll(&gw, &py, &dee);
    mfa_ticket(&gw, "dee@example.com");
    let (status, out, err_text) = portcullis_with_stdin(
        &[
            "user",
            "reset-mfa",
            "--email",
            "dee@example.com",
            "-c",
            config,
        ],
        &[],
        "",
    );
    assert_eq!(status, 0, "{out}{err_text}");
    assert_eq!(out.trim(), "dee@example.com: second factor removed");
    assert!(login(gw.addr, "dee@example.com", PASSWORD).json()["access_token"].is_string());
}

#[test]
fn a_role_that_requires_mfa_gets_a_token_that_only_reaches_enrollment() {
    let Some(py) = pyotp() else { return };
    let echo = Echo::start();
    let yaml = config_with_auth(&["require_mfa_for_roles: [admin]"]);
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    add_user_with(&gw, "root@example.com", "admin", &[]);
    // Viewers are not asked.
    signed_in(gw.addr, "viewer@example.com");

    let r = login(gw.addr, "root@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(refresh_cookie(&r).is_none());
    assert_eq!(r.json()["mfa_enrollment_required"], json!(true));
    let enrollment = r.json()["enrollment_token"].as_str().unwrap().to_owned();
    assert!(enrollment.starts_with("pcl_mfa_"), "{enrollment}");
    // It opens nothing but enrollment.
    assert_eq!(get_as(gw.addr, "/api/protected", &enrollment).status, 401);
    assert_eq!(get_as(gw.addr, "/api/auth/me", &enrollment).status, 401);
    assert_eq!(
        call(&gw, "GET", "/tokens", None, Some(&enrollment)).status,
        401
    );

    let (secret, _) = enroll(&gw, &py, &enrollment);
    let r = call(&gw, "POST", "/mfa/totp/enroll", None, Some(&enrollment));
    assert_eq!(answer(&r), err(401, "Invalid or expired MFA token"));
    let ticket = mfa_ticket(&gw, "root@example.com");
    let r = second_step(&gw, &ticket, json!({"code": code(&py, &secret, 30)}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get_as(gw.addr, "/api/admin/x", &access_token(&r)).status,
        200
    );
}

#[test]
fn two_replicas_share_mfa_state_tickets_steps_and_attempt_limits() {
    let Some(py) = pyotp() else { return };
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let echo = Echo::start();
    let url = schema.url();
    let env = [
        ("PORTCULLIS_STORE", url.as_str()),
        ("PORTCULLIS_KEY_ENCRYPTION_KEY", KEK),
    ];
    let a = Gateway::start(BASE_CONFIG, echo.addr, &env);
    let b = Gateway::start(BASE_CONFIG, echo.addr, &env);
    let (_, session, _) = signed_in(a.addr, "eve@example.com");

    // Enrolled on A, confirmed on B: the sealed secret opens on both.
    let r = call(&a, "POST", "/mfa/totp/enroll", None, Some(&session));
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let r = call(
        &b,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": code(&py, &secret, 0)})),
        Some(&session),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A ticket from A completes on B; that code is then spent on A too.
    let ticket = mfa_ticket(&a, "eve@example.com");
    let next = code(&py, &secret, 30);
    assert_eq!(second_step(&b, &ticket, json!({"code": next})).status, 200);
    assert_eq!(
        answer(&second_step(&a, &ticket, json!({"code": next}))),
        err(401, "Invalid or expired MFA token")
    );
    let ticket = mfa_ticket(&b, "eve@example.com");
    assert_eq!(
        answer(&second_step(&a, &ticket, json!({"code": next}))),
        err(401, "Invalid code")
    );
    // Attempts count across replicas: 3 so far; 7 more anywhere, then 429 on both.
    for gw in [&a, &b, &a, &b, &a, &b, &a] {
        assert_eq!(
            answer(&second_step(gw, &ticket, json!({"code": "12345"}))),
            err(401, "Invalid code")
        );
    }
    assert_eq!(
        second_step(&b, &ticket, json!({"code": "12345"})).status,
        429
    );
    assert_eq!(
        second_step(&a, &ticket, json!({"code": "12345"})).status,
        429
    );
}

/// The code an authenticator app that scanned `otpauth_uri` shows at now + `offset`
/// seconds (totp-rs, so the key-encryption tests run without pyotp).
fn app_code(otpauth_uri: &str, offset: u64) -> String {
    let totp = totp_rs::Totp::from_url(otpauth_uri).expect("an otpauth URI");
    totp.generate(now() + offset).to_string()
}

/// A second key-encryption key, the one rotated to.
const KEK_NEW: &str = "b7e2c91f04a65d38e1f9a27c5b0d43e6f81a2c9d5e7b03f4a6c8e1d2b5f7a9c0";
const KEK_VAR: &str = "PORTCULLIS_KEY_ENCRYPTION_KEY";

/// Enrolls a user under `KEK` on an HS256 gateway (no signing keys in the store), then
/// rotates to `KEK_NEW`: the user's code is refused with a 503 until `keys rewrap`
/// reseals the TOTP secret, and accepted once it has, with the old key gone.
fn rewrap_keeps_mfa_users_able_to_log_in(store: &[(&str, &str)]) {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let with = |kek: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        store.iter().chain(kek).copied().collect()
    };
    let gw = Gateway::start_in(
        dir.clone(),
        BASE_CONFIG,
        echo.addr,
        &with(&[(KEK_VAR, KEK)]),
    );
    let (_, session, _) = signed_in(gw.addr, "kek@example.com");
    let r = call(&gw, "POST", "/mfa/totp/enroll", None, Some(&session));
    assert_eq!(r.status, 200, "{}", r.text());
    let uri = r.json()["otpauth_uri"].as_str().expect("uri").to_owned();
    let r = call(
        &gw,
        "POST",
        "/mfa/totp/confirm",
        Some(json!({"code": app_code(&uri, 0)})),
        Some(&session),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    drop(gw);

    // The old key dropped before the rewrap: a clear refusal, the cause in the log only.
    let new_only = with(&[(KEK_VAR, KEK_NEW)]);
    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &new_only);
    let ticket = mfa_ticket(&gw, "kek@example.com");
    let r = second_step(&gw, &ticket, json!({"code": app_code(&uri, 30)}));
    assert_eq!(answer(&r), err(503, "Service unavailable"));
    assert!(r.header("retry-after").is_some());
    // The log line is written before the answer, but read from the pipe by a thread.
    let said =
        |log: &str| log.contains("cannot check the TOTP code") && log.contains("keys rewrap");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !said(&gw.stderr_text()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(said(&gw.stderr_text()), "{}", gw.stderr_text());
    drop(gw);

    let config = dir.join("gateway.yaml");
    let rewrap = || {
        let both = with(&[
            (KEK_VAR, KEK_NEW),
            ("PORTCULLIS_KEY_ENCRYPTION_KEY_OLD", KEK),
        ]);
        let (code, out, e) = portcullis(
            &["keys", "rewrap", "-c", config.to_str().expect("utf-8 path")],
            &both,
        );
        assert_eq!(code, 0, "{e}");
        out
    };
    let out = rewrap();
    assert!(
        out.starts_with(
            "rewrapped 1 sealed values (1 of them TOTP secrets) under key-encryption key "
        ),
        "{out}"
    );
    assert!(
        rewrap().starts_with("nothing to rewrap: everything in the store is sealed under"),
        "a second run has nothing left"
    );

    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &new_only);
    let ticket = mfa_ticket(&gw, "kek@example.com");
    let r = second_step(&gw, &ticket, json!({"code": app_code(&uri, 30)}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["access_token"].is_string());
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_rewrap_reseals_totp_secrets_on_sqlite_so_the_old_key_can_go() {
    rewrap_keeps_mfa_users_able_to_log_in(&[]);
}

#[test]
fn keys_rewrap_reseals_totp_secrets_on_postgres_so_the_old_key_can_go() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    rewrap_keeps_mfa_users_able_to_log_in(&[("PORTCULLIS_STORE", url.as_str())]);
}
