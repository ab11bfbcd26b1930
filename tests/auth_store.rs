//! The auth module and its store: the CLI manages users in the same SQLite file a running
//! gateway uses, a store that stops answering gives 503 without stopping the proxy, and
//! startup refuses a store it cannot reach.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn user_cmd(gw: &Gateway, args: &[&str], stdin: &str) -> (i32, String, String) {
    let config = gw.dir.join("gateway.yaml");
    let mut all = vec!["user"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-c", config.to_str().unwrap()]);
    portcullis_with_stdin(&all, &[], stdin)
}

#[test]
fn a_user_added_from_the_cli_can_log_in_and_role_changes_and_disabling_end_sessions() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (code, out, err) = user_cmd(
        &gw,
        &[
            "add",
            "--email",
            "Root@Example.com",
            "--role",
            "admin",
            "--workspace",
            "acme:creator:pro",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("root@example.com"), "{out}");
    let (code, _, err) = user_cmd(
        &gw,
        &[
            "add",
            "--email",
            "root@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert_eq!(code, 1);
    assert!(err.contains("already registered"), "{err}");
    let (code, _, err) = user_cmd(
        &gw,
        &[
            "add",
            "--email",
            "x@example.com",
            "--role",
            "root",
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert_eq!(code, 1);
    assert!(err.contains(r#"unknown role "root""#), "{err}");

    let r = login(gw.addr, "root@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let admin = access_token(&r);
    assert_eq!(get_as(gw.addr, "/api/admin/x", &admin).status, 200);

    // Scoped to the workspace: the membership's role and the workspace's plan.
    let body =
        serde_json::json!({"email": "root@example.com", "password": PASSWORD, "workspace": "acme"})
            .to_string();
    let scoped = post(gw.addr, "/api/auth/login", Some(&body), &[]);
    assert_eq!(scoped.status, 200, "{}", scoped.text());
    let scoped = access_token(&scoped);
    let me = get_as(gw.addr, "/api/auth/me", &scoped).json();
    assert_eq!(
        (
            me["role"].as_str(),
            me["workspace"].as_str(),
            me["plan"].as_str()
        ),
        (Some("creator"), Some("acme"), Some("pro"))
    );
    assert_eq!(get_as(gw.addr, "/api/reports/q1", &scoped).status, 200);
    assert_eq!(get_as(gw.addr, "/api/admin/x", &scoped).status, 403);
    let body = serde_json::json!({"email": "root@example.com", "password": PASSWORD, "workspace": "globex"}).to_string();
    let outsider = post(gw.addr, "/api/auth/login", Some(&body), &[]);
    assert_eq!(outsider.status, 403);
    assert_eq!(
        outsider.json(),
        serde_json::json!({"error": "Not a member of this workspace"})
    );

    let (code, out, _) = user_cmd(&gw, &["list"], "");
    assert_eq!(code, 0);
    assert!(
        out.contains("root@example.com") && out.contains("admin"),
        "{out}"
    );

    let (code, _, err) = user_cmd(
        &gw,
        &[
            "set-role",
            "--email",
            "root@example.com",
            "--role",
            "viewer",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        eventually(Duration::from_secs(2), || get_as(
            gw.addr,
            "/api/admin/x",
            &admin
        )
        .status
            == 401),
        "role change reaches the running gateway"
    );
    let r = login(gw.addr, "root@example.com", PASSWORD);
    let viewer = access_token(&r);
    assert_eq!(get_as(gw.addr, "/api/admin/x", &viewer).status, 403);

    let (code, _, err) = user_cmd(&gw, &["disable", "--email", "root@example.com"], "");
    assert_eq!(code, 0, "{err}");
    assert!(eventually(Duration::from_secs(2), || get_as(
        gw.addr,
        "/api/protected",
        &viewer
    )
    .status
        == 401));
    assert_eq!(
        error_of(&login(gw.addr, "root@example.com", PASSWORD)),
        "Invalid credentials"
    );
}

#[test]
fn a_store_that_stops_answering_gives_503_on_auth_endpoints_while_proxying_goes_on() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let (_, access, _) = signed_in(gw.addr, "olga@example.com");
    assert_eq!(get(gw.admin_addr, "/readyz", &[]).status, 200);

    // Another process takes the database's write lock and keeps it.
    let url = format!("sqlite://{}", gw.dir.join("data/portcullis.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut locker = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the test's own connection");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        conn
    });

    let started = Instant::now();
    let r = signup(gw.addr, "pat@example.com");
    eprintln!("503 after {:?}", started.elapsed());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "Service unavailable"})
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Already-issued tokens keep working: the proxy path does no store I/O.
    assert_eq!(get_as(gw.addr, "/api/protected", &access).status, 200);

    runtime.block_on(async {
        sqlx::query("ROLLBACK")
            .execute(&mut locker)
            .await
            .expect("release the lock");
    });
    assert_eq!(signup(gw.addr, "pat@example.com").status, 201);
}

#[test]
fn startup_refuses_an_unreachable_store_with_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("portcullis-auth-nostore-{}", std::process::id()));
    let config = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:1");
    let path = write_file(&dir, "gateway.yaml", &config);
    let (code, _out, err) = portcullis(
        &["run", "-c", path.to_str().unwrap()],
        &[(
            "PORTCULLIS_STORE",
            "postgres://portcullis:hunter2@127.0.0.1:1/portcullis",
        )],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("store")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("postgres://portcullis:***@127.0.0.1:1/portcullis is not usable"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
    std::fs::remove_dir_all(&dir).ok();
}
