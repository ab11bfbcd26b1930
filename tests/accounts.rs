//! Account mail and email verification, against the real gateway and
//! a real SMTP server (aiosmtpd, `tests/accounts/smtp_sink.py`) whose captured mails give
//! the tests their links: signup that answers the same for new and registered addresses,
//! single-use expiring verification tokens, `require_verified_email`, resend, the mail
//! rate limits, SMTP login, retries with backoff and permanent failures, templates, and
//! every endpoint's bad inputs with their exact answers. Runs with `PORTCULLIS_TEST_SMTP`
//! (.ci/run sets it; without it each test says it is skipped).

mod common;

use common::smtp::{
    assert_answer, assert_browser_rules, json_post, mail_config, python, token_error, SmtpSink,
    MAIL,
};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn verify(gw: &Gateway, token: &str) -> Response {
    json_post(gw, "/api/auth/verify-email", json!({ "token": token }), &[])
}

#[test]
fn signup_answers_202_for_new_and_registered_addresses_and_mails_each_owner() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&mail_config(smtp.port, "", &[]), echo.addr, &[]);

    let first = signup(gw.addr, "Ada@Example.com");
    assert_answer(&first, 202, json!({"status": "verification_sent"}));
    let mail = smtp.wait_mail("ada@example.com", 1, MAIL);
    assert_eq!(mail.subject, "Confirm your email address");
    assert_eq!(mail.from, "Portcullis <auth@gw.test>");
    assert_eq!(mail.content_type, "text/plain");
    assert!(
        mail.body.contains("https://app.test/verify#token="),
        "{}",
        mail.body
    );
    assert!(mail.body.contains("for 1d"), "{}", mail.body);
    assert_eq!(mail.token().len(), 43);

    // The same address again: the same answer, byte for byte; its owner is told.
    let second = signup(gw.addr, "ada@example.com");
    assert_eq!(second.status, first.status);
    assert_eq!(second.body, first.body);
    let notice = smtp.wait_mail("ada@example.com", 2, MAIL);
    assert_eq!(notice.subject, "Someone tried to sign up with your address");
    assert!(!notice.body.contains("token"), "{}", notice.body);
    assert_eq!(
        metric(
            gw.admin_addr,
            "portcullis_auth_mails_total{result=\"sent\",template=\"signup_existing\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn verification_tokens_work_once_and_unverified_logins_are_refused_after_the_password() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml = mail_config(smtp.port, "", &["require_verified_email: true"]);
    let gw = Gateway::start(&yaml, echo.addr, &[]);

    assert_eq!(signup(gw.addr, "bob@example.com").status, 202);
    let token = smtp.wait_mail("bob@example.com", 1, MAIL).token();
    // Without the password nothing is revealed; with it, the reason.
    let wrong = login(gw.addr, "bob@example.com", "not the password at all");
    assert_answer(&wrong, 401, json!({"error": "Invalid credentials"}));
    let unverified = login(gw.addr, "bob@example.com", PASSWORD);
    assert_answer(&unverified, 403, json!({"error": "Email not verified"}));
    assert_eq!(refresh_cookie(&unverified), None);

    assert_answer(&verify(&gw, &token), 200, json!({"status": "verified"}));
    assert_answer(&verify(&gw, &token), 400, token_error());
    let r = login(gw.addr, "bob@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn verification_tokens_expire() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml = mail_config(
        smtp.port,
        ", verify_ttl: 1s",
        &["require_verified_email: true"],
    );
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "cy@example.com").status, 202);
    let mail = smtp.wait_mail("cy@example.com", 1, MAIL);
    assert!(mail.body.contains("for 1s"), "{}", mail.body);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_answer(&verify(&gw, &mail.token()), 400, token_error());
    assert_eq!(login(gw.addr, "cy@example.com", PASSWORD).status, 403);
}

#[test]
fn verify_email_refuses_bad_input_with_exact_answers() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&mail_config(smtp.port, "", &[]), echo.addr, &[]);
    let path = "/api/auth/verify-email";
    let wrong = "A".repeat(43);

    assert_answer(&verify(&gw, &wrong), 400, token_error());
    assert_answer(&verify(&gw, "short"), 400, token_error());
    assert_answer(&verify(&gw, &format!("{wrong}!")), 400, token_error());
    let r = json_post(&gw, path, json!({}), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: missing field \"token\""}),
    );
    let r = json_post(&gw, path, json!({"token": 5}), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: field \"token\" must be a string"}),
    );
    let r = post(gw.addr, path, Some("{\"token\":"), &[]);
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: body is not valid JSON"}),
    );
    assert_browser_rules(&gw, path, &json!({ "token": wrong }));
}

#[test]
fn resend_mails_only_unverified_accounts_and_answers_the_same_for_any_address() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&mail_config(smtp.port, "", &[]), echo.addr, &[]);
    let resend = |email: &str| {
        json_post(
            &gw,
            "/api/auth/verify-email/resend",
            json!({ "email": email }),
            &[],
        )
    };

    assert_eq!(signup(gw.addr, "dee@example.com").status, 202);
    let first = smtp.wait_mail("dee@example.com", 1, MAIL).token();
    let unknown = resend("nobody@example.com");
    assert_answer(&unknown, 202, json!({"status": "verification_sent"}));
    let known = resend("dee@example.com");
    assert_eq!(known.body, unknown.body);
    let second = smtp.wait_mail("dee@example.com", 2, MAIL).token();
    assert_ne!(first, second);
    // Either link works, once: using one retires the other.
    assert_eq!(verify(&gw, &second).status, 200);
    assert_answer(&verify(&gw, &first), 400, token_error());

    // Verified now: the answer is unchanged, no mail goes out.
    assert_eq!(resend("dee@example.com").status, 202);
    let r = resend("not an address");
    assert_answer(
        &r,
        400,
        json!({"error": "Invalid request: email is not a valid address"}),
    );
    eventually(MAIL, || {
        metric(
            gw.admin_addr,
            "portcullis_auth_mails_total{result=\"skipped\",template=\"verify_email\"}",
        ) == Some(2.0)
    });
    assert_eq!(smtp.mails_to("dee@example.com").len(), 2);
    assert!(smtp.mails_to("nobody@example.com").is_empty());
}

#[test]
fn mail_requests_are_limited_per_ip_and_mails_per_address() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml = mail_config(smtp.port, "", &[]).replace(
        "signup: 1000/min }",
        "signup: 1000/min, mail: 3/min, mail_per_email: 1/h }",
    );
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    let forgot = |email: &str| {
        json_post(
            &gw,
            "/api/auth/password/forgot",
            json!({ "email": email }),
            &[],
        )
    };

    assert_eq!(signup(gw.addr, "eve@example.com").status, 202);
    smtp.wait_mail("eve@example.com", 1, MAIL);
    // The address had its one mail: the answer stays 202, nothing more is sent.
    assert_answer(
        &forgot("eve@example.com"),
        202,
        json!({"status": "reset_sent"}),
    );
    assert_eq!(forgot("fay@example.com").status, 202);
    assert_eq!(forgot("gus@example.com").status, 202);
    let limited = forgot("hal@example.com");
    assert_answer(&limited, 429, json!({"error": "Too many requests"}));
    assert!(limited.header("retry-after").is_some());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(smtp.mails_to("eve@example.com").len(), 1);
}

#[test]
fn the_relay_login_comes_from_password_env_and_a_refused_one_is_a_counted_failure() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, Some(("mailer", "s3cret-relay-pw")));
    let echo = Echo::start();
    let login_lines = ", username: mailer, password_env: SMTP_PASSWORD";
    let yaml = mail_config(smtp.port, login_lines, &[]);
    let gw = Gateway::start(&yaml, echo.addr, &[("SMTP_PASSWORD", "s3cret-relay-pw")]);
    assert_eq!(signup(gw.addr, "ida@example.com").status, 202);
    smtp.wait_mail("ida@example.com", 1, MAIL);

    let bad = Gateway::start(&yaml, echo.addr, &[("SMTP_PASSWORD", "wrong-password")]);
    assert_eq!(signup(bad.addr, "jon@example.com").status, 202);
    let failed = "portcullis_auth_mails_total{result=\"failed\",template=\"verify_email\"}";
    eventually(MAIL, || metric(bad.admin_addr, failed) == Some(1.0));
    let log = bad.stderr_text();
    assert!(
        log.contains("mail verify_email: attempt 1 failed, giving up"),
        "{log}"
    );
    assert!(!log.contains("wrong-password"), "{log}");
    assert!(smtp.mails_to("jon@example.com").is_empty());
}

#[test]
fn a_relay_that_is_down_is_retried_with_backoff_and_no_answer_waits_for_it() {
    let Some(python) = python() else { return };
    let port = free_addr().port();
    let echo = Echo::start();
    let gw = Gateway::start(&mail_config(port, "", &[]), echo.addr, &[]);
    let started = Instant::now();
    assert_eq!(signup(gw.addr, "kim@example.com").status, 202);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let retried = "portcullis_auth_mails_total{result=\"retried\",template=\"verify_email\"}";
    eventually(MAIL, || {
        metric(gw.admin_addr, retried).unwrap_or(0.0) >= 1.0
    });
    let log = gw.stderr_text();
    assert!(
        log.contains("mail verify_email: attempt 1 failed, retrying in"),
        "{log}"
    );

    // The relay comes up: a later attempt delivers the mail.
    let smtp = SmtpSink::start_on(&python, None, port);
    let mail = smtp.wait_mail("kim@example.com", 1, Duration::from_secs(20));
    let token = mail.token();
    assert!(!gw.stderr_text().contains(&token));
    assert_eq!(verify(&gw, &token).status, 200);
}

#[test]
fn a_recipient_the_relay_refuses_fails_at_once_without_retries() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let gw = Gateway::start(&mail_config(smtp.port, "", &[]), echo.addr, &[]);
    assert_eq!(signup(gw.addr, "reject-me@example.com").status, 202);
    let failed = "portcullis_auth_mails_total{result=\"failed\",template=\"verify_email\"}";
    eventually(MAIL, || metric(gw.admin_addr, failed) == Some(1.0));
    let retried = "portcullis_auth_mails_total{result=\"retried\",template=\"verify_email\"}";
    assert_eq!(metric(gw.admin_addr, retried), None);
}

#[test]
fn starttls_is_required_unless_turned_off() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let yaml = mail_config(smtp.port, "", &[]).replace("starttls: false, ", "");
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "lou@example.com").status, 202);
    let retried = "portcullis_auth_mails_total{result=\"retried\",template=\"verify_email\"}";
    eventually(MAIL, || {
        metric(gw.admin_addr, retried).unwrap_or(0.0) >= 1.0
    });
    assert!(smtp.mails_to("lou@example.com").is_empty());
}

#[test]
fn operators_templates_replace_the_built_in_text() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start(&python, None);
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    write_file(
        &dir.join("mail"),
        "verify_email.txt",
        "Subject: Welcome to Acme, {email}\n\nYour code: {token}\nValid {expires_in}.\n",
    );
    let yaml = mail_config(smtp.port, ", templates_dir: mail", &[]);
    let gw = Gateway::start_in(dir.clone(), &yaml, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "max@example.com").status, 202);
    let mail = smtp.wait_mail("max@example.com", 1, MAIL);
    assert_eq!(mail.subject, "Welcome to Acme, max@example.com");
    assert!(mail.body.starts_with("Your code: "), "{}", mail.body);
    assert!(mail.body.contains("Valid 1d."), "{}", mail.body);
    assert_eq!(verify(&gw, &mail.token()).status, 200);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mail_settings_are_checked_at_load() {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    write_file(
        &dir.join("mail"),
        "password_reset.txt",
        "Subject: Reset\n\nno link here\n",
    );
    let cases = [
        (
            config_with_auth(&["require_verified_email: true"]),
            "auth.require_verified_email: needs auth.email",
        ),
        (
            mail_config(25, ", templates_dir: mail", &[]),
            "password_reset.txt: must show {link} or {token}",
        ),
        (
            mail_config(25, ", username: u", &[]),
            "auth.email.username: needs password_env",
        ),
        (
            mail_config(25, ", username: u, password_env: NO_SUCH_VAR_X", &[]),
            "environment variable NO_SUCH_VAR_X is not set",
        ),
        (
            mail_config(25, "", &[]).replace("smtp://127.0.0.1:25", "smtp://h:99999"),
            "the port must be a number from 1 to 65535",
        ),
        (
            mail_config(25, ", reset_ttl: 2h", &[]),
            "auth.email.reset_ttl: must be from 1s to 1h (got 2h)",
        ),
    ];
    for (yaml, expected) in cases {
        let path = write_file(&dir, "gateway.yaml", &yaml);
        let (code, out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &[]);
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_mail_signup_is_unchanged_and_the_mail_endpoints_do_not_exist() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "ned@example.com").status, 201);
    assert_answer(
        &signup(gw.addr, "ned@example.com"),
        409,
        json!({"error": "Email already registered"}),
    );
    for path in [
        "/api/auth/verify-email",
        "/api/auth/verify-email/resend",
        "/api/auth/password/forgot",
        "/api/auth/password/reset",
    ] {
        let r = json_post(&gw, path, json!({}), &[]);
        assert_answer(&r, 404, json!({"error": "Not found"}));
    }
}
