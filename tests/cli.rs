//! The command line: `check`, `explain` and `token` against real config files.

mod common;

use common::*;
use std::path::PathBuf;

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml").to_owned()
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_config_is_valid() {
    let (code, out, err) = portcullis(&["check", "-c", &example()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/api/admin/**"), "route table printed: {out}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn check_reports_every_problem_with_file_line_and_column() {
    let path = write_config(
        "bad",
        "auth: { issuer: i, audience: a }\nroles: [viewer, admin]\nroutes:\n  - { path: /a, roles: [admn], upstream: app }\n  - { path: /b, upstreem: app }\n",
    );
    let (code, _out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    let file = path.to_str().unwrap();
    assert!(err.contains(&format!("{file}:4:")), "{err}");
    assert!(
        err.contains(r#"unknown role "admn" (known: viewer, admin)"#)
            || err.contains(r#"unknown role "admn" (known: admin, viewer)"#),
        "{err}"
    );
    assert!(err.contains(&format!("{file}:5:")), "{err}");
    assert!(err.contains("upstreem"), "{err}");
}

#[test]
fn check_warns_about_a_shadowed_route_but_passes() {
    let path = write_config(
        "shadow",
        "upstreams: { app: { addrs: [\"127.0.0.1:3000\"] } }\nauth: { issuer: i, audience: a }\nroles: [viewer]\nroutes:\n  - { path: /api/**, upstream: app }\n  - { path: /api/x, upstream: app }\n",
    );
    let (code, _out, err) = portcullis(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("shadowed"), "{err}");
}

#[test]
fn explain_shows_the_normalized_path_route_and_requirements() {
    let (code, out, err) = portcullis(
        &[
            "explain",
            "-c",
            &example(),
            "DELETE",
            "/api//content/./42?x=1",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/api/content/42"), "{out}");
    assert!(out.contains("/api/content/{id}"), "{out}");
    assert!(out.contains("id = 42"), "{out}");
    assert!(out.contains("role in [admin]"), "{out}");
    let (_, none, _) = portcullis(&["explain", "-c", &example(), "GET", "/nowhere"], &[]);
    assert!(none.contains("none (404"), "{none}");
    let (_, unsafe_path, _) =
        portcullis(&["explain", "-c", &example(), "GET", "/api/admin%2Fx"], &[]);
    assert!(unsafe_path.contains("400"), "{unsafe_path}");
}

#[test]
fn a_cli_minted_token_is_accepted_by_the_gateway() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let config = gw.dir.join("gateway.yaml");
    let (code, out, err) = portcullis(
        &[
            "token",
            "-c",
            config.to_str().unwrap(),
            "--sub",
            "user-42",
            "--role",
            "admin",
            "--ttl",
            "5m",
        ],
        &[("JWT_SECRET", TEST_SECRET)],
    );
    assert_eq!(code, 0, "{err}");
    let t = out.trim();
    let r = get(
        gw.addr,
        "/api/admin/x",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        echoed_header_values(&r.json(), "x-user-id"),
        vec!["user-42"]
    );
}

#[test]
fn token_refuses_an_undeclared_role() {
    let (code, _out, err) = portcullis(
        &["token", "-c", &example(), "--sub", "u", "--role", "root"],
        &[("JWT_SECRET", TEST_SECRET)],
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown role \"root\""), "{err}");
}
