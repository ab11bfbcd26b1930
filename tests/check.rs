//! `portcullis check` knows what `run` knows: besides the file itself, it refuses
//! a missing or weak JWT secret (from the environment or `.env`) and TLS files that
//! cannot be read or do not belong together, with the very lines `run` would print,
//! and warns (without failing) about upstream names that do not resolve.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// BASE_CONFIG with its placeholders filled plus `extra`, written to a fresh
/// directory; returns the directory and the config's path. Port 0 everywhere, so
/// that a `run` refusing it for another reason never finds its port taken.
fn config_file(extra: &str) -> (PathBuf, String) {
    let dir = fresh_temp_dir();
    let text = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let path = write_file(&dir, "gateway.yaml", &format!("{text}{extra}"));
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

/// A self-signed P-256 certificate and its key, made with the openssl CLI.
fn self_signed(dir: &Path, cert: &str, key: &str) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
        ])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_section(cert: &str, key: &str) -> String {
    format!("tls: {{ listen: \"127.0.0.1:0\", cert: {cert}, key: {key} }}\n")
}

/// Runs `run` on a config that it must refuse before listening; its (code, stderr).
fn refused_run(path: &str, env: &[(&str, &str)]) -> (i32, String) {
    let (code, _out, err) = portcullis(&["run", "-c", path], env);
    (code, err)
}

#[test]
fn check_refuses_an_hs256_config_without_jwt_secret_with_the_line_run_prints() {
    let (dir, path) = config_file("");
    let env = [("JWT_SECRET", UNSET)];
    let (code, out, err) = portcullis(&["check", "-c", &path], &env);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err,
        "JWT_SECRET is not set (HS256 needs a secret of at least 32 bytes, in the environment or in .env beside the config)\n"
    );
    assert_eq!(out, "");
    assert_eq!(refused_run(&path, &env), (1, err));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_reads_the_jwt_secret_from_dotenv_beside_the_config() {
    let (dir, path) = config_file("");
    let env = [("JWT_SECRET", UNSET)];
    write_file(&dir, ".env", &format!("JWT_SECRET={TEST_SECRET}\n"));
    let (code, out, err) = portcullis(&["check", "-c", &path], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("{path}: ok\n")), "{out}");

    write_file(
        &dir,
        ".env",
        "JWT_SECRET=12345678901234567890123456789012\n",
    );
    let (code, out, err) = portcullis(&["check", "-c", &path], &env);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.starts_with("JWT_SECRET is a published secret"), "{err}");
    assert_eq!(refused_run(&path, &env), (1, err));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_refuses_a_weak_jwt_secret_beside_asymmetric_keys_and_creates_no_keys() {
    let (dir, path) = config_file("");
    let text = std::fs::read_to_string(&path).expect("the config");
    let eddsa = text.replace("  audience: api\n", "  audience: api\n  algorithm: EdDSA\n");
    std::fs::write(&path, eddsa).expect("write the config");
    for (secret, expected) in [
        (
            "short",
            "JWT_SECRET is 5 bytes; it must be at least 32 (or unset, to keep a random refresh secret in the store)",
        ),
        (
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "JWT_SECRET is too easy to guess",
        ),
    ] {
        let env = [("JWT_SECRET", secret)];
        let (code, out, err) = portcullis(&["check", "-c", &path], &env);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.starts_with(expected), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("data").exists(), "check made key files");
        // `run` refuses with check's line, before it makes any key.
        let (code, run_err) = refused_run(&path, &env);
        assert_eq!(code, 1);
        assert_eq!(run_err.lines().last(), err.lines().last());
        assert!(!dir.join("data").exists(), "run made keys");
    }
    let (code, out, err) = portcullis(&["check", "-c", &path], &[("JWT_SECRET", UNSET)]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_refuses_tls_files_that_cannot_be_read_or_do_not_match_with_every_problem_at_once() {
    let (dir, path) = config_file(&tls_section("cert.pem", "key.pem"));
    let env = [("JWT_SECRET", UNSET)];
    let (code, out, err) = portcullis(&["check", "-c", &path], &env);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err,
        format!(
            "JWT_SECRET is not set (HS256 needs a secret of at least 32 bytes, in the environment or in .env beside the config)\n\
             tls.cert: cannot read {}: No such file or directory\n",
            dir.join("cert.pem").display()
        )
    );

    self_signed(&dir, "cert.pem", "key.pem");
    self_signed(&dir, "other-cert.pem", "other-key.pem");
    std::fs::copy(dir.join("other-key.pem"), dir.join("key.pem")).expect("swap the key");
    let (code, out, err) = portcullis(&["check", "-c", &path], &[]);
    assert_eq!(code, 2, "{out}{err}");
    let mismatch = format!(
        "tls: the private key in {} does not belong to the certificate in {}\n",
        dir.join("key.pem").display(),
        dir.join("cert.pem").display()
    );
    assert_eq!(err, mismatch);
    assert_eq!(refused_run(&path, &[]), (1, mismatch));

    std::fs::copy(dir.join("other-cert.pem"), dir.join("cert.pem")).expect("its certificate");
    let (code, out, err) = portcullis(&["check", "-c", &path], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_warns_but_passes_when_an_upstream_name_does_not_resolve() {
    let (dir, path) = config_file("");
    let text = std::fs::read_to_string(&path).expect("the config");
    // .invalid never resolves (RFC 6761).
    let unresolvable = text.replace("127.0.0.1:3000", "app.invalid:3000");
    std::fs::write(&path, unresolvable).expect("write the config");
    let (code, out, err) = portcullis(&["check", "-c", &path], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("{path}: ok\n")), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("warning: upstream app: cannot resolve app.invalid:3000: "),
        "{err}"
    );
    assert!(
        lines[0].ends_with(" (`run` refuses to start until it resolves)"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}
