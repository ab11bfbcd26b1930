//! Password forgot, reset and change against the real gateway and a
//! real SMTP server (aiosmtpd): `/password/forgot` answers the same for any address and
//! takes the same time, reset tokens work once and expire, a reset ends every session at
//! once (on another replica too, on PostgreSQL), a change ends the others, and each
//! endpoint's bad inputs get their exact answers. Runs with `PORTCULLIS_TEST_SMTP`.

mod common;

use common::postgres::{server_url, Schema};
use common::smtp::{
    assert_answer, assert_browser_rules, json_post, mail_config, python, token_error, SmtpSink,
    MAIL,
};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const NEW_PASSWORD: &str = "a new and different passphrase";

/// The shared mail config, with the mail limits out of the way.
fn password_config(port: u16, email_extra: &str) -> String {
    mail_config(port, email_extra, &[]).replace(
        "signup: 1000/min }",
        "signup: 1000/min, mail: 1000/min, mail_per_email: 1000/h }",
    )
}

fn forgot(gw: &Gateway, email: &str) -> Response {
    json_post(
        gw,
        "/api/auth/password/forgot",
        json!({ "email": email }),
        &[],
    )
}

fn reset(gw: &Gateway, token: &str, password: &str) -> Response {
    let body = json!({ "token": token, "password": password });
    json_post(gw, "/api/auth/password/reset", body, &[])
}

fn change(gw: &Gateway, access: &str, current: &str, new: &str) -> Response {
    let body = json!({ "current_password": current, "new_password": new });
    let bearer = format!("Bearer {access}");
    json_post(
        gw,
        "/api/auth/password/change",
        body,
        &[("Authorization", &bearer)],
    )
}

/// Signs `email` up and logs in twice (two sessions); returns both (access, refresh).
fn two_sessions(gw: &Gateway, email: &str) -> [(String, String); 2] {
    assert_eq!(signup(gw.addr, email).status, 202);
    [0, 1].map(|_| {
        let r = login(gw.addr, email, PASSWORD);
        assert_eq!(r.status, 200, "{}", r.text());
        (
            access_token(&r),
            refresh_cookie(&r).expect("refresh cookie"),
        )
    })
}

#[test]
fn forgot_answers_the_same_body_and_time_for_any_address() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&password_config(smtp.port, ""), echo.addr, &[]);
    assert_eq!(signup(gw.addr, "ada@example.com").status, 202);

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        let at = Instant::now();
        let r = forgot(&gw, "ada@example.com");
        known.push(at.elapsed());
        assert_answer(&r, 202, json!({"status": "reset_sent"}));
        let at = Instant::now();
        let r = forgot(&gw, &format!("nobody{i}@example.com"));
        unknown.push(at.elapsed());
        assert_answer(&r, 202, json!({"status": "reset_sent"}));
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2], unknown[2]);
    eprintln!("median answer: known {k:?}, unknown {u:?}");
    assert!(
        k.abs_diff(u) < Duration::from_millis(50),
        "known {k:?}, unknown {u:?}"
    );
    let mail = smtp.wait_mail("ada@example.com", 6, MAIL);
    assert_eq!(mail.subject, "Reset your password");
    assert!(
        mail.body.contains("https://app.test/reset#token="),
        "{}",
        mail.body
    );
    assert!(mail.body.contains("for 15m"), "{}", mail.body);
    // The worker prepares mails concurrently, so arrival order is not issue order:
    // of the five links exactly one (the last stored) works, and only once.
    let answers: Vec<u16> = smtp.mails_to("ada@example.com")[1..]
        .iter()
        .map(|m| reset(&gw, &m.token(), NEW_PASSWORD).status)
        .collect();
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 400).count(),
        4,
        "{answers:?}"
    );
    assert_eq!(
        smtp.mails()
            .iter()
            .filter(|m| m.to[0].starts_with("nobody"))
            .count(),
        0
    );
}

#[test]
fn a_reset_sets_the_password_once_and_ends_every_session_at_once() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&password_config(smtp.port, ""), echo.addr, &[]);
    let sessions = two_sessions(&gw, "bob@example.com");
    smtp.wait_mail("bob@example.com", 1, MAIL);
    assert_eq!(forgot(&gw, "bob@example.com").status, 202);
    let token = smtp.wait_mail("bob@example.com", 2, MAIL).token();

    // A password the policy refuses does not use the token up.
    let weak = reset(&gw, &token, "short");
    assert_eq!(weak.status, 400, "{}", weak.text());
    assert!(
        error_of(&weak).starts_with("Invalid request: "),
        "{}",
        weak.text()
    );
    assert_answer(
        &reset(&gw, &token, NEW_PASSWORD),
        200,
        json!({"status": "password_reset"}),
    );
    assert_answer(&reset(&gw, &token, NEW_PASSWORD), 400, token_error());

    for (access, refresh_token) in &sessions {
        assert_eq!(get_as(gw.addr, "/api/protected", access).status, 401);
        assert_eq!(refresh(gw.addr, refresh_token).status, 401);
    }
    assert_eq!(login(gw.addr, "bob@example.com", PASSWORD).status, 401);
    assert_eq!(login(gw.addr, "bob@example.com", NEW_PASSWORD).status, 200);
}

#[test]
fn reset_tokens_expire() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(
        &password_config(smtp.port, ", reset_ttl: 1s"),
        echo.addr,
        &[],
    );
    assert_eq!(signup(gw.addr, "cy@example.com").status, 202);
    assert_eq!(forgot(&gw, "cy@example.com").status, 202);
    let token = smtp.wait_mail("cy@example.com", 2, MAIL).token();
    std::thread::sleep(Duration::from_millis(2_100));
    assert_answer(&reset(&gw, &token, NEW_PASSWORD), 400, token_error());
    assert_eq!(login(gw.addr, "cy@example.com", PASSWORD).status, 200);
}

#[test]
fn password_endpoints_refuse_bad_input_with_exact_answers() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml =
        password_config(smtp.port, "").replace("1000/h }", "1000/h, account_tokens: 8/min }");
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    let wrong = "B".repeat(43);
    let reset_path = "/api/auth/password/reset";

    assert_answer(&reset(&gw, &wrong, NEW_PASSWORD), 400, token_error());
    assert_answer(&reset(&gw, "x", NEW_PASSWORD), 400, token_error());
    let r = json_post(&gw, reset_path, json!({"token": wrong}), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: missing field \"password\""}),
    );
    let r = post(gw.addr, reset_path, Some("[]"), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: body must be a JSON object"}),
    );
    let body = json!({ "token": wrong, "password": NEW_PASSWORD });
    assert_browser_rules(&gw, reset_path, &body);
    // Token uses are limited per IP: 8 a minute here, 2 spent above (the others were
    // refused before the limit counts).
    for _ in 0..6 {
        assert_eq!(reset(&gw, &wrong, NEW_PASSWORD).status, 400);
    }
    let limited = reset(&gw, &wrong, NEW_PASSWORD);
    assert_answer(&limited, 429, json!({"error": "Too many requests"}));

    let forgot_path = "/api/auth/password/forgot";
    let r = json_post(&gw, forgot_path, json!({"email": ["a@b.c"]}), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: field \"email\" must be a string"}),
    );
    let r = json_post(&gw, forgot_path, json!({"email": "no-at-sign"}), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: email is not a valid address"}),
    );
    assert_browser_rules(&gw, forgot_path, &json!({ "email": "a@b.c" }));
    let resend = "/api/auth/verify-email/resend";
    assert_browser_rules(&gw, resend, &json!({ "email": "a@b.c" }));
}

#[test]
fn a_change_needs_the_current_password_and_ends_the_other_sessions() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&password_config(smtp.port, ""), echo.addr, &[]);
    let [(mine, my_refresh), (other, other_refresh)] = two_sessions(&gw, "dee@example.com");

    let r = change(&gw, &mine, "not my password at all", NEW_PASSWORD);
    assert_answer(&r, 401, json!({"error": "Invalid credentials"}));
    let r = change(&gw, &mine, PASSWORD, "short");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = change(&gw, "not.a.token", PASSWORD, NEW_PASSWORD);
    assert_answer(&r, 401, json!({"error": "Invalid or expired token"}));
    let body = json!({"current_password": PASSWORD}).to_string();
    let bearer = format!("Bearer {mine}");
    let r = post(
        gw.addr,
        "/api/auth/password/change",
        Some(&body),
        &[("Authorization", &bearer)],
    );
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: missing field \"new_password\""}),
    );
    let r = post(
        gw.addr,
        "/api/auth/password/change",
        Some(&body),
        &[
            ("Authorization", &bearer),
            ("Origin", "https://evil.example"),
        ],
    );
    assert_answer(&r, 403, json!({"error": "Cross-origin request refused"}));

    let body = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    assert_browser_rules(&gw, "/api/auth/password/change", &body);
    let r = change(&gw, &mine, PASSWORD, NEW_PASSWORD);
    assert_answer(&r, 200, json!({"status": "password_changed"}));
    assert_eq!(get_as(gw.addr, "/api/protected", &other).status, 401);
    assert_eq!(refresh(gw.addr, &other_refresh).status, 401);
    assert_eq!(get_as(gw.addr, "/api/protected", &mine).status, 200);
    assert_eq!(refresh(gw.addr, &my_refresh).status, 200);
    assert_eq!(login(gw.addr, "dee@example.com", PASSWORD).status, 401);
    assert_eq!(login(gw.addr, "dee@example.com", NEW_PASSWORD).status, 200);
}

#[test]
fn a_reset_on_one_replica_ends_the_sessions_on_the_other_within_a_second() {
    let Some(python) = python() else { return };
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml = password_config(smtp.port, "");
    let env = [("PORTCULLIS_STORE", schema.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Gateway::start(&yaml, echo.addr, &env);
    let b = Gateway::start(&yaml, echo.addr, &env);

    assert_eq!(signup(a.addr, "eve@example.com").status, 202);
    // Verified on B with the link mailed by A: both share the store.
    let verify = smtp.wait_mail("eve@example.com", 1, MAIL).token();
    let r = json_post(&b, "/api/auth/verify-email", json!({"token": verify}), &[]);
    assert_answer(&r, 200, json!({"status": "verified"}));
    let r = login(b.addr, "eve@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let (access, refresh_token) = (access_token(&r), refresh_cookie(&r).expect("cookie"));
    assert_eq!(get_as(b.addr, "/api/protected", &access).status, 200);

    assert_eq!(forgot(&a, "eve@example.com").status, 202);
    let token = smtp.wait_mail("eve@example.com", 2, MAIL).token();
    assert_eq!(reset(&a, &token, NEW_PASSWORD).status, 200);
    let at = Instant::now();
    loop {
        let r = get_as(b.addr, "/api/protected", &access);
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "still accepted on B after 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("reset on A: refused on B after {:?}", at.elapsed());
    assert_eq!(refresh(b.addr, &refresh_token).status, 401);
    // The token was used on A: B refuses it too.
    assert_answer(&reset(&b, &token, NEW_PASSWORD), 400, token_error());
    assert_eq!(login(b.addr, "eve@example.com", NEW_PASSWORD).status, 200);
}
