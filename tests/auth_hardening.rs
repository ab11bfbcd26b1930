//! Issue 20's findings, through the real binary: guessable HS256 secrets, login CSRF,
//! breached passwords, unnormalized emails, duplicate JSON members, over-long tokens
//! and store passwords in the log.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(yaml: &str) -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(yaml, echo.addr, &[]);
    (echo, gw)
}

/// BASE_CONFIG written to a fresh directory, for commands that never serve.
fn config_file() -> (PathBuf, PathBuf) {
    let dir = fresh_temp_dir();
    let config = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:1");
    let path = write_file(&dir, "gateway.yaml", &config);
    (dir, path)
}

/// `portcullis run` that is expected to refuse to start: (exit code, stderr). Killed,
/// and the test failed, if it is still running after 20 s.
fn refused_start(config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args(["run", "-c"])
        .arg(config)
        .current_dir(config.parent().expect("config has a directory"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll portcullis").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("portcullis started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("portcullis output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn random_secret() -> String {
    hex(&rand::random::<[u8; 32]>())
}

// 1. HS256 secrets --------------------------------------------------------------------

#[test]
fn startup_refuses_a_published_jwt_secret_and_says_how_to_make_a_good_one() {
    let (dir, path) = config_file();
    let secret = "12345678901234567890123456789012";
    let (code, err) = refused_start(&path, &[("JWT_SECRET", secret)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "JWT_SECRET is a published secret: it is in the wordlists JWT cracking tools try first"
        ),
        "{err}"
    );
    assert!(
        err.contains("make a random one with `openssl rand -hex 32`"),
        "{err}"
    );
    assert!(!err.contains(secret), "the secret was echoed: {err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn startup_refuses_guessable_secrets_however_long() {
    let (dir, path) = config_file();
    for secret in [
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnop",
        "0123456789abcdef0123456789abcdef-test-secret",
        "my-super-secret-key-for-jwt-2024!",
        "passwordpasswordpasswordpassword1234",
    ] {
        let (code, err) = refused_start(&path, &[("JWT_SECRET", secret)]);
        assert_eq!(code, 1, "{secret}: {err}");
        assert!(
            err.contains("JWT_SECRET is too easy to guess: about "),
            "{secret}: {err}"
        );
        assert!(
            err.contains("at least 128 needed; make a random one with `openssl rand -hex 32`"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_refuses_a_weak_secret_and_accepts_a_random_one() {
    let (dir, path) = config_file();
    let path = path.to_str().unwrap();
    let (code, out, err) = portcullis(
        &["check", "-c", path],
        &[("JWT_SECRET", "12345678901234567890123456789012")],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("JWT_SECRET is a published secret"), "{err}");
    assert!(!out.contains(": ok"), "{out}");
    let (code, out, err) = portcullis(
        &["check", "-c", path],
        &[(
            "JWT_SECRET",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        )],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("JWT_SECRET is too easy to guess"), "{err}");
    let (code, out, err) = portcullis(&["check", "-c", path], &[("JWT_SECRET", &random_secret())]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok"), "{out}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_gateway_with_a_random_secret_starts_and_serves() {
    let echo = Echo::start();
    let secret = random_secret();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[("JWT_SECRET", &secret)]);
    let token = mint_hs256(secret.as_bytes(), HEADER, &claims("u1", "viewer", ""));
    assert_eq!(get_as(gw.addr, "/api/protected", &token).status, 200);
}

// 2. Cross-site requests to the cookie endpoints ---------------------------------------

const COOKIE_ENDPOINTS: [&str; 6] = [
    "/api/auth/signup",
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/auth/logout-all",
    "/api/auth/switch",
];

#[test]
fn every_cookie_endpoint_refuses_a_body_not_declared_json_with_415() {
    let (_echo, gw) = start(BASE_CONFIG);
    let body = credentials("form@example.com", PASSWORD);
    for path in COOKIE_ENDPOINTS {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = post(
                gw.addr,
                path,
                Some(&body),
                &[("Content-Type", content_type)],
            );
            assert_eq!(r.status, 415, "{path} {content_type}: {}", r.text());
            assert_eq!(
                r.json(),
                json!({"error": "Content-Type must be application/json"})
            );
        }
        // No Content-Type at all is refused too, body or not.
        let r = request(gw.addr, "POST", path, &[], Some(body.as_bytes()));
        assert_eq!(r.status, 415, "{path}: {}", r.text());
        let r = request(gw.addr, "POST", path, &[], None);
        assert_eq!(r.status, 415, "{path}: {}", r.text());
    }
    // None of those created the account.
    assert_eq!(signup(gw.addr, "form@example.com").status, 201);
}

#[test]
fn every_cookie_endpoint_refuses_a_foreign_or_null_origin_and_cross_site_fetches() {
    let (_echo, gw) = start(&config_with_auth(&[
        "allowed_origins: [https://app.example.com]",
    ]));
    let body = credentials("csrf@example.com", PASSWORD);
    for path in COOKIE_ENDPOINTS {
        for refused in [
            &[("Origin", "https://evil.example.com")][..],
            &[("Origin", "null")],
            &[("Sec-Fetch-Site", "cross-site")],
            &[
                ("Origin", "https://evil.example.com"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ] {
            let r = post(gw.addr, path, Some(&body), refused);
            assert_eq!(r.status, 403, "{path} {refused:?}: {}", r.text());
            assert_eq!(r.json(), json!({"error": "Cross-origin request refused"}));
            assert!(r.headers_named("set-cookie").is_empty());
        }
    }
    assert_eq!(signup(gw.addr, "csrf@example.com").status, 201);
}

#[test]
fn a_plain_html_form_on_another_site_cannot_log_a_browser_in() {
    let (_echo, gw) = start(BASE_CONFIG);
    assert_eq!(signup(gw.addr, "attacker@example.com").status, 201);
    // What <form enctype="text/plain"> with one field named '{"email":…,"x":"' sends.
    let form_body =
        format!(r#"{{"email":"attacker@example.com","password":"{PASSWORD}","x":"=1"}}"#);
    let r = request(
        gw.addr,
        "POST",
        "/api/auth/login",
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "https://evil.example.com"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        Some(form_body.as_bytes()),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.headers_named("set-cookie").is_empty());
    // The same form from a browser that sends no Fetch Metadata still fails on the type.
    let r = request(
        gw.addr,
        "POST",
        "/api/auth/login",
        &[("Content-Type", "text/plain")],
        Some(form_body.as_bytes()),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.headers_named("set-cookie").is_empty());
}

#[test]
fn json_requests_without_origin_or_from_the_same_origin_keep_working() {
    let (_echo, gw) = start(BASE_CONFIG);
    let a = gw.addr;
    let (_, access, refresh1) = signed_in(a, "plain@example.com");
    let cookie = format!("{REFRESH_COOKIE}={refresh1}");
    let own = format!("http://{a}");
    let r = post(
        a,
        "/api/auth/refresh",
        None,
        &[
            ("Cookie", &cookie),
            ("Origin", &own),
            ("Sec-Fetch-Site", "same-origin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh2 = refresh_cookie(&r).unwrap();
    let r = post(
        a,
        "/api/auth/refresh",
        None,
        &[("Cookie", &format!("{REFRESH_COOKIE}={refresh2}"))],
    );
    assert_eq!(r.status, 200, "no Origin (curl): {}", r.text());
    let bearer = format!("Bearer {access}");
    let r = post(
        a,
        "/api/auth/logout-all",
        None,
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 204, "{}", r.text());
}

// 3. Breached passwords ----------------------------------------------------------------

#[test]
fn common_passwords_are_refused_at_signup_without_being_echoed() {
    let (_echo, gw) = start(BASE_CONFIG);
    for (i, password) in [
        "password",
        "12345678",
        "qwertyuiop",
        "Password1",
        "iloveyou",
    ]
    .iter()
    .enumerate()
    {
        let email = format!("common{i}@example.com");
        let r = post(
            gw.addr,
            "/api/auth/signup",
            Some(&credentials(&email, password)),
            &[],
        );
        assert_eq!(r.status, 400, "{password}: {}", r.text());
        // The one fixed message: the password is never echoed.
        assert_eq!(
            r.json(),
            json!({"error": "Invalid request: password is too common: it appears in lists of breached passwords"})
        );
    }
    // The length rules still come first.
    let r = post(
        gw.addr,
        "/api/auth/signup",
        Some(&credentials("short@example.com", "1234567")),
        &[],
    );
    assert_eq!(
        r.json(),
        json!({"error": "Invalid request: password must be at least 8 characters"})
    );
    assert_eq!(signup(gw.addr, "common0@example.com").status, 201);
}

#[test]
fn user_add_validates_email_and_password_as_signup_does() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let config = gw.dir.join("gateway.yaml");
    let add = |email: &str, password: &str| {
        portcullis_with_stdin(
            &[
                "user",
                "add",
                "--email",
                email,
                "--role",
                "viewer",
                "--password-stdin",
                "-c",
                config.to_str().unwrap(),
            ],
            &[],
            &format!("{password}\n"),
        )
    };
    let (code, _, err) = add("notanemail", PASSWORD);
    assert_eq!(code, 1);
    assert!(err.contains("email is not a valid address"), "{err}");
    let (code, _, err) = add("cli@example.com", "qwertyuiop");
    assert_eq!(code, 1);
    assert!(
        err.contains("password is too common: it appears in lists of breached passwords"),
        "{err}"
    );
    assert!(!err.contains("qwertyuiop"), "{err}");
    let (code, out, err) = add("ＣＬＩ@Example.com", PASSWORD);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created cli@example.com"), "{out}");
    assert_eq!(login(gw.addr, "cli@example.com", PASSWORD).status, 200);
}

// 4. Email normalization ---------------------------------------------------------------

#[test]
fn one_address_written_many_ways_is_one_account() {
    let (_echo, gw) = start(BASE_CONFIG);
    let a = gw.addr;
    let precomposed = "Jos\u{e9}@Example.com";
    let r = signup(a, precomposed);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["user"]["email"], "jos\u{e9}@example.com");
    for other in [
        "jose\u{301}@example.com",
        "ＪＯＳＥ\u{301}@ｅｘａｍｐｌｅ.com",
        " JOS\u{c9}@EXAMPLE.COM ",
    ] {
        let r = signup(a, other);
        assert_eq!(r.status, 409, "{other:?}: {}", r.text());
        let r = login(a, other, PASSWORD);
        assert_eq!(r.status, 200, "{other:?}: {}", r.text());
    }
    assert_eq!(signup(a, "ａlice@example.com").status, 201);
    assert_eq!(signup(a, "alice@example.com").status, 409);
}

#[test]
fn the_per_email_login_limit_counts_every_spelling_of_an_address() {
    let (_echo, gw) =
        start(&BASE_CONFIG.replacen("login_per_email: 1000/min", "login_per_email: 2/min", 1));
    for spelling in ["Limit@example.com", "ｌｉｍｉｔ@example.com"] {
        let r = login(gw.addr, spelling, "short");
        assert_eq!(r.status, 401, "{spelling}: {}", r.text());
    }
    let r = login(gw.addr, "limit@EXAMPLE.com ", "short");
    assert_eq!(r.status, 429, "{}", r.text());
}

/// Rolls a store back to schema version 2 with `sql` applied, as an older binary left it.
fn downgrade_sqlite(dir: &Path, sql: &[&str]) {
    let url = format!("sqlite://{}", dir.join("data/portcullis.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for statement in sql
            .iter()
            .copied()
            .chain(["DELETE FROM schema_migrations WHERE version = 3"])
        {
            sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn.close().await.unwrap();
    });
}

#[test]
fn stored_sqlite_emails_are_normalized_when_the_schema_is_upgraded() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "old@example.com").status, 201);
    drop(gw);
    downgrade_sqlite(
        &dir,
        &["UPDATE users SET email = 'ＯＬＤ@example.com' WHERE email = 'old@example.com'"],
    );
    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &[]);
    let r = login(gw.addr, "old@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let me = get_as(gw.addr, "/api/auth/me", &access_token(&r));
    assert_eq!(me.json()["email"], "old@example.com");
    drop(gw);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn startup_refuses_sqlite_rows_whose_emails_would_collide_and_changes_nothing() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &[]);
    assert_eq!(signup(gw.addr, "twin@example.com").status, 201);
    assert_eq!(signup(gw.addr, "other@example.com").status, 201);
    drop(gw);
    downgrade_sqlite(
        &dir,
        &["UPDATE users SET email = 'TWIN@example.com' WHERE email = 'other@example.com'"],
    );
    let config = dir.join("gateway.yaml");
    let (code, err) = refused_start(&config, &[("JWT_SECRET", TEST_SECRET)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot normalize stored emails: users "),
        "{err}"
    );
    assert!(
        err.contains(r#"would both become "twin@example.com"; give one of them another email"#),
        "{err}"
    );
    // Nothing was changed: after the operator renames one, the upgrade goes through.
    downgrade_sqlite(
        &dir,
        &["UPDATE users SET email = 'other@example.com' WHERE email = 'TWIN@example.com'"],
    );
    let gw = Gateway::start_in(dir.clone(), BASE_CONFIG, echo.addr, &[]);
    assert_eq!(login(gw.addr, "other@example.com", PASSWORD).status, 200);
    drop(gw);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn stored_postgres_emails_are_normalized_and_collisions_refused() {
    let Some(server) = postgres::server_url() else {
        return;
    };
    let schema = postgres::Schema::create(&server);
    let echo = Echo::start();
    let env = [("PORTCULLIS_STORE", schema.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &env);
    assert_eq!(signup(gw.addr, "pg@example.com").status, 201);
    assert_eq!(signup(gw.addr, "pg2@example.com").status, 201);
    drop(gw);
    let s = &schema.name;
    schema.execute(&format!(
        "UPDATE {s}.users SET email = 'ＰＧ@Example.com' WHERE email = 'pg@example.com'; \
         DELETE FROM {s}.schema_migrations WHERE version = 3"
    ));
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &env);
    assert_eq!(login(gw.addr, "pg@example.com", PASSWORD).status, 200);
    drop(gw);

    schema.execute(&format!(
        "UPDATE {s}.users SET email = 'PG@example.com' WHERE email = 'pg2@example.com'; \
         DELETE FROM {s}.schema_migrations WHERE version = 3"
    ));
    let (dir, config) = config_file();
    let mut env = env.clone();
    env.push(("JWT_SECRET", TEST_SECRET));
    let (code, err) = refused_start(&config, &env);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(r#"would both become "pg@example.com""#),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

// 5. Duplicate JSON members ------------------------------------------------------------

#[test]
fn an_auth_body_naming_a_field_twice_is_refused() {
    let (_echo, gw) = start(BASE_CONFIG);
    assert_eq!(signup(gw.addr, "alice@example.com").status, 201);
    let body = format!(
        r#"{{"email":"nobody@example.com","email":"alice@example.com","password":"{PASSWORD}"}}"#
    );
    let r = post(gw.addr, "/api/auth/login", Some(&body), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"error": "Invalid request: field \"email\" appears more than once"})
    );
    assert!(r.headers_named("set-cookie").is_empty());
    let body = format!(r#"{{"email":"dup@example.com","password":"{PASSWORD}","password":"x"}}"#);
    let r = post(gw.addr, "/api/auth/signup", Some(&body), &[]);
    assert_eq!(
        r.json(),
        json!({"error": "Invalid request: field \"password\" appears more than once"})
    );
}

// 7. Token lifetime --------------------------------------------------------------------

#[test]
fn a_token_of_ours_living_longer_than_access_ttl_and_leeway_is_refused() {
    let (_echo, gw) = start(&config_with_auth(&["access_ttl: 5m", "leeway: 5s"]));
    let lasting = |seconds: u64| {
        let iat = now();
        let claims = format!(
            r#"{{"iss":"https://gw.test","aud":"api","sub":"u1","iat":{iat},"nbf":{iat},"exp":{},"jti":"life-{seconds}","role":"viewer"}}"#,
            iat + seconds
        );
        let token = mint_hs256(TEST_SECRET.as_bytes(), HEADER, &claims);
        get_as(gw.addr, "/api/protected", &token)
    };
    assert_eq!(lasting(300).status, 200);
    assert_eq!(lasting(305).status, 200);
    for seconds in [306, 2 * 3600] {
        let r = lasting(seconds);
        assert_eq!(r.status, 401, "{seconds}");
        assert_eq!(r.json(), json!({"error": "Invalid or expired token"}));
    }
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stdout_lines()
            .iter()
            .any(|l| l.contains(r#""reason":"lifetime""#))),
        "no access-log line with reason lifetime"
    );
}

#[test]
fn max_lifetime_lets_a_load_harness_use_longer_tokens_and_no_longer() {
    let (_echo, gw) = start(&config_with_auth(&["max_lifetime: 1h"]));
    let lasting = |seconds: u64| {
        let iat = now();
        let claims = format!(
            r#"{{"iss":"https://gw.test","aud":"api","sub":"u1","iat":{iat},"nbf":{iat},"exp":{},"jti":"harness-{seconds}","role":"viewer"}}"#,
            iat + seconds
        );
        let token = mint_hs256(TEST_SECRET.as_bytes(), HEADER, &claims);
        get_as(gw.addr, "/api/protected", &token).status
    };
    assert_eq!(lasting(3600), 200);
    assert_eq!(lasting(3600 + 6), 401);

    let (dir, path) = config_file();
    let config = std::fs::read_to_string(&path).unwrap();
    let shorter = config.replacen(
        "  audience: api\n",
        "  audience: api\n  max_lifetime: 5m\n",
        1,
    );
    std::fs::write(&path, shorter).unwrap();
    let (code, _, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("auth.max_lifetime: must be from access_ttl (15m) to 1d, got 5m"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn portcullis_token_refuses_a_ttl_over_access_ttl() {
    let (dir, path) = config_file();
    let path = path.to_str().unwrap();
    let args = |ttl: &'static str| {
        [
            "token", "--sub", "u1", "--role", "viewer", "--ttl", ttl, "-c", path,
        ]
    };
    let (code, out, err) = portcullis(&args("2h"), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--ttl: must be longer than 0 and at most auth.access_ttl (15m), got 2h"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    let (code, out, err) = portcullis(&args("15m"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().split('.').count(), 3, "{out}");
    std::fs::remove_dir_all(dir).ok();
}

// 8. Store URL redaction ---------------------------------------------------------------

#[test]
fn a_store_password_with_at_signs_colons_or_escapes_never_reaches_the_output() {
    let (dir, path) = config_file();
    for (url, shown, password) in [
        (
            "postgres://u:p@ss@127.0.0.1:1/db",
            "postgres://u:***@127.0.0.1:1/db",
            "p@ss",
        ),
        (
            "postgres://u:a:b@c@127.0.0.1:1/db",
            "postgres://u:***@127.0.0.1:1/db",
            "a:b@c",
        ),
        (
            "postgres://u:p%40ss%3Aword@127.0.0.1:1/db",
            "postgres://u:***@127.0.0.1:1/db",
            "p%40ss",
        ),
    ] {
        let env = [("PORTCULLIS_STORE", url), ("JWT_SECRET", TEST_SECRET)];
        let (code, err) = refused_start(&path, &env);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("store {shown} is not usable")),
            "{err}"
        );
        assert!(!err.contains(password), "{url} leaked: {err}");
        let (code, out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &env);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("store {shown}")), "{out}");
        assert!(
            !out.contains(password) && !err.contains(password),
            "{out}{err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
