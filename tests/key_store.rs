//! Signing keys kept in the store (docs/signing-keys.md), through the real binary:
//! two gateways on one PostgreSQL database with separate work dirs and no shared
//! file sign and verify with one key set, follow `keys rotate` and the schedule
//! within seconds (a scheduled rotation made by exactly one of them), and survive a
//! replica killed mid-rotation; a single node on SQLite does the same; the
//! key-encryption key is refused when missing, weak or wrong, and is rotated with
//! `keys rewrap`; an earlier version's keys_dir is imported on first start.

mod common;

use common::postgres::{server_url, Schema};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEK: &str = "3f1a9c0e5b7d2486af13c9e07b5d2f48a16c3e9b0d7f2a5c8e1b4d6f9a0c3e52";
const KEK_NEW: &str = "b7e2c91f04a65d38e1f9a27c5b0d43e6f81a2c9d5e7b03f4a6c8e1d2b5f7a9c0";
const KEK_VAR: &str = "PORTCULLIS_KEY_ENCRYPTION_KEY";
/// Issue 21: a rotation is in use on every replica within this.
const WITHIN: Duration = Duration::from_secs(5);

/// BASE_CONFIG signing with EdDSA, with `extra` lines in its auth section.
fn eddsa(extra: &str) -> String {
    let yaml = BASE_CONFIG.replace(
        "  audience: api\n",
        &format!("  audience: api\n  algorithm: EdDSA\n{extra}"),
    );
    assert!(yaml.contains("EdDSA"), "BASE_CONFIG's auth section moved");
    yaml
}

fn jwks(gw: &Gateway) -> Value {
    let resp = get(gw.addr, "/.well-known/jwks.json", &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn kids(gw: &Gateway) -> Vec<String> {
    jwks(gw)["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

fn kid_of(token: &str) -> String {
    let header = b64url_decode(token.split('.').next().expect("header")).expect("base64url");
    let header: Value = serde_json::from_slice(&header).expect("header JSON");
    header["kid"].as_str().expect("kid").to_owned()
}

fn protected(gw: &Gateway, token: &str) -> u16 {
    get_as(gw.addr, "/api/protected", token).status
}

/// `portcullis keys …` with `gw`'s config and `env`.
fn keys_command(gw_dir: &Path, command: &str, env: &[(&str, &str)]) -> String {
    let config = gw_dir.join("gateway.yaml");
    let (code, out, err) = portcullis(
        &["keys", command, "-c", config.to_str().expect("utf-8 path")],
        env,
    );
    assert_eq!(code, 0, "keys {command}: {err}");
    out
}

/// A fresh access token from `gw` by refreshing `session` (no password hash on the way).
fn fresh_access(gw: &Gateway, session: &mut String) -> String {
    let r = refresh(gw.addr, session);
    assert_eq!(r.status, 200, "{}", r.text());
    *session = refresh_cookie(&r).expect("rotated cookie");
    access_token(&r)
}

/// `portcullis run` that must refuse to start: its exit code and stderr.
fn refused_start(config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.env_remove(KEK_VAR).env_remove("JWT_SECRET");
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

/// The config `yaml` written into a fresh directory, as `Gateway::start` would.
fn config_file(yaml: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = fresh_temp_dir();
    let yaml = yaml
        .replace("{LISTEN}", &free_addr().to_string())
        .replace("{ADMIN}", &free_addr().to_string())
        .replace("{UPSTREAM}", "127.0.0.1:1");
    let path = write_file(&dir, "gateway.yaml", &yaml);
    (dir, path)
}

#[test]
fn two_replicas_on_postgres_share_one_key_set_and_follow_keys_rotate_within_5_s() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    let env = [
        ("PORTCULLIS_STORE", url.as_str()),
        (KEK_VAR, KEK),
        ("JWT_SECRET", UNSET),
    ];
    let echo = Echo::start();
    let a = Gateway::start(&eddsa(""), echo.addr, &env);
    let b = Gateway::start(&eddsa(""), echo.addr, &env);
    assert_ne!(a.dir, b.dir);
    assert_eq!(kids(&a).len(), 1, "{}", jwks(&a));
    assert_eq!(jwks(&a), jwks(&b));

    // Tokens and refresh tokens cross replicas both ways.
    let (_, old_token, session) = signed_in(a.addr, "ada@example.com");
    let mut session = session;
    assert_eq!(protected(&b, &old_token), 200);
    let from_b = fresh_access(&b, &mut session);
    assert_eq!(protected(&a, &from_b), 200);

    let out = keys_command(&b.dir, "rotate", &env);
    let rotated = Instant::now();
    let new_kid = out
        .lines()
        .find(|l| l.contains(" EdDSA next, signs from "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no next key in {out:?}"))
        .to_owned();
    // Published by both before either signs with it, then used by both.
    let mut published = [None, None];
    let mut signing = [None, None];
    while published.iter().chain(&signing).any(Option::is_none) {
        assert!(rotated.elapsed() < WITHIN, "{published:?} {signing:?}");
        for (i, gw) in [&a, &b].into_iter().enumerate() {
            if published[i].is_none() && kids(gw).contains(&new_kid) {
                published[i] = Some(rotated.elapsed());
            }
            if signing[i].is_none() && kid_of(&fresh_access(gw, &mut session)) == new_kid {
                signing[i] = Some(rotated.elapsed());
                assert!(
                    published[i].is_some(),
                    "replica {i} signs before it publishes"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("published after {published:?}, signing after {signing:?}");
    let latest_publish = published.iter().flatten().max().expect("both published");
    let first_sign = signing.iter().flatten().min().expect("both sign");
    assert!(latest_publish < first_sign, "{published:?} {signing:?}");

    assert_eq!(jwks(&a), jwks(&b));
    assert_eq!(kids(&a).len(), 2);
    let new_token = fresh_access(&a, &mut session);
    for gw in [&a, &b] {
        assert_eq!(protected(gw, &old_token), 200, "an old token stops passing");
        assert_eq!(protected(gw, &new_token), 200);
    }
    // No file holds a key: each replica's directory has only its config.
    for gw in [&a, &b] {
        assert!(!gw.dir.join("data").exists(), "{:?}", gw.dir);
    }
}

#[test]
fn a_scheduled_rotation_is_made_by_exactly_one_of_two_replicas() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    let env = [("PORTCULLIS_STORE", url.as_str()), (KEK_VAR, KEK)];
    let echo = Echo::start();
    // A key every 4 s, published max(access_ttl, 3 s) before it signs.
    let yaml = eddsa("  access_ttl: 2s\n  key_rotation: 4s\n");
    let a = Gateway::start(&yaml, echo.addr, &env);
    let b = Gateway::start(&yaml, echo.addr, &env);
    std::thread::sleep(Duration::from_secs(9));
    let made = |gw: &Gateway| -> Vec<String> {
        gw.stderr_text()
            .lines()
            .filter_map(|l| l.split("keys: new EdDSA key ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .collect()
    };
    let mut by_kid: HashMap<String, usize> = HashMap::new();
    for kid in made(&a).into_iter().chain(made(&b)) {
        *by_kid.entry(kid).or_default() += 1;
    }
    let scheduled = made(&a).len() + made(&b).len();
    assert!(scheduled >= 3, "only {scheduled} keys in 9 s: {by_kid:?}");
    assert!(by_kid.values().all(|n| *n == 1), "made twice: {by_kid:?}");
    assert!(
        eventually(Duration::from_secs(2), || jwks(&a) == jwks(&b)),
        "the replicas publish different key sets"
    );
    for kid in kids(&a) {
        assert!(by_kid.contains_key(&kid), "{kid} published but never made");
    }
}

#[test]
fn a_replica_killed_while_rotating_leaves_a_key_set_every_replica_can_use() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    let env = [("PORTCULLIS_STORE", url.as_str()), (KEK_VAR, KEK)];
    let echo = Echo::start();
    // Due all the time: every poll of either replica tries a rotation.
    let yaml = eddsa("  access_ttl: 1s\n  leeway: 1s\n  key_rotation: 1s\n");
    let b = Gateway::start(&yaml, echo.addr, &env);
    let dir = fresh_temp_dir();
    for delay in [0, 150, 400, 900, 1300] {
        let mut a = Gateway::start_in(dir.clone(), &yaml, echo.addr, &env);
        std::thread::sleep(Duration::from_millis(delay));
        a.signal("KILL");
        assert!(a.wait_exit(Duration::from_secs(5)).is_some());
        // Meanwhile `keys rotate` from the shell, killed as well.
        let config = dir.join("gateway.yaml");
        let mut cli = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["keys", "rotate", "-c", config.to_str().expect("utf-8")])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn keys rotate");
        std::thread::sleep(Duration::from_millis(delay / 3));
        cli.kill().ok();
        cli.wait().ok();
    }
    // The set in the store opens: a replica starts on it and agrees with the survivor.
    let a = Gateway::start_in(dir.clone(), &yaml, echo.addr, &env);
    assert!(
        eventually(Duration::from_secs(3), || jwks(&a) == jwks(&b)),
        "{} vs {}",
        jwks(&a),
        jwks(&b)
    );
    let (_, token, _) = signed_in(a.addr, "kill@example.com");
    assert_eq!(protected(&b, &token), 200);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_single_node_on_sqlite_follows_keys_rotate_within_5_s_and_keeps_its_keys_on_restart() {
    let echo = Echo::start();
    let env = [(KEK_VAR, KEK), ("JWT_SECRET", UNSET)];
    let dir = fresh_temp_dir();
    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &env);
    let (_, old_token, mut session) = signed_in(gw.addr, "solo@example.com");
    let before = kids(&gw);
    keys_command(&dir, "rotate", &env);
    let rotated = Instant::now();
    let mut new_token = String::new();
    assert!(
        eventually(WITHIN, || {
            new_token = fresh_access(&gw, &mut session);
            !before.contains(&kid_of(&new_token))
        }),
        "the new key does not sign"
    );
    eprintln!("signing after {:?}", rotated.elapsed());
    assert_eq!(kids(&gw).len(), 2);
    assert_eq!(protected(&gw, &old_token), 200);
    let published = jwks(&gw);
    drop(gw);

    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &env);
    assert_eq!(jwks(&gw), published);
    assert_eq!(protected(&gw, &new_token), 200);
    assert_eq!(protected(&gw, &old_token), 200);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shared_store_without_a_key_encryption_key_is_refused_with_how_to_make_one() {
    let Some(server) = server_url() else { return };
    let schema = Schema::create(&server);
    let url = schema.url();
    let (dir, config) = config_file(&eddsa(""));
    let (code, err) = refused_start(&config, &[("PORTCULLIS_STORE", url.as_str())]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end().lines().last(),
        Some(
            "PORTCULLIS_KEY_ENCRYPTION_KEY is not set: the EdDSA, ES256 and RS256 signing keys \
             in the shared store are encrypted under it; make one with `openssl rand -hex 32` \
             and give every replica the same value"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_weak_or_malformed_key_encryption_key_is_refused_in_one_line() {
    let (dir, config) = config_file(&eddsa(""));
    let cases = [
        ("00".repeat(32), "PORTCULLIS_KEY_ENCRYPTION_KEY is not random: too few distinct bytes; make one with `openssl rand -hex 32`"),
        ("hunter2".to_owned(), "PORTCULLIS_KEY_ENCRYPTION_KEY must be 32 random bytes written as 64 hex digits or in base64 (got 7 characters that are neither); make one with `openssl rand -hex 32`"),
    ];
    for (value, line) in cases {
        let (code, err) = refused_start(&config, &[(KEK_VAR, value.as_str())]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.trim_end(), line);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_key_encryption_key_cannot_open_the_keys_and_the_start_is_refused() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &[(KEK_VAR, KEK)]);
    drop(gw);
    let (code, err) = refused_start(&dir.join("gateway.yaml"), &[(KEK_VAR, KEK_NEW)]);
    assert_eq!(code, 1, "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "PORTCULLIS_KEY_ENCRYPTION_KEY cannot decrypt the signing keys in the store: signing key "
        ),
        "{err}"
    );
    assert!(last.ends_with("run `portcullis keys rewrap`"), "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_key_encryption_key_is_rotated_by_rewrap_without_breaking_a_token() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let old_env = [(KEK_VAR, KEK)];
    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &old_env);
    let (_, token, session) = signed_in(gw.addr, "rewrap@example.com");
    let published = jwks(&gw);
    drop(gw);

    let both = [
        (KEK_VAR, KEK_NEW),
        ("PORTCULLIS_KEY_ENCRYPTION_KEY_OLD", KEK),
    ];
    let out = keys_command(&dir, "rewrap", &both);
    assert!(
        out.starts_with(
            "rewrapped 2 sealed values (0 of them TOTP secrets) under key-encryption key "
        ),
        "{out}"
    );
    assert!(out.ends_with("PORTCULLIS_KEY_ENCRYPTION_KEY_OLD can now be removed\n"));

    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &[(KEK_VAR, KEK_NEW)]);
    assert_eq!(jwks(&gw), published);
    assert_eq!(protected(&gw, &token), 200);
    // The refresh secret was rewrapped too: the session goes on.
    assert_eq!(refresh(gw.addr, &session).status, 200);
    drop(gw);
    let (code, err) = refused_start(&dir.join("gateway.yaml"), &old_env);
    assert_eq!(code, 1, "the old key still opens the set: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_earlier_keys_dir_is_imported_on_first_start_so_its_tokens_still_pass() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    use std::os::unix::fs::PermissionsExt;
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let keys_dir = dir.join("data/keys");
    let key = ed25519_dalek::SigningKey::from_bytes(&sha256(b"an earlier version's key"));
    let x = b64url(key.verifying_key().as_bytes());
    let kid = b64url(&sha256(
        format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#).as_bytes(),
    ));
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let since = now() - 60;
    for (name, bytes) in [
        (format!("{kid}.pem"), pem.as_bytes().to_vec()),
        (
            "keys.json".to_owned(),
            format!(
                r#"{{"keys":[{{"kid":"{kid}","alg":"EdDSA","file":"{kid}.pem","created_at":{since},"active_from":{since}}}]}}"#
            )
            .into_bytes(),
        ),
        ("refresh.secret".to_owned(), vec![9u8; 32]),
    ] {
        let path = write_file(&keys_dir, &name, "");
        std::fs::write(&path, bytes).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // A token the earlier version signed, before the upgrade.
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#);
    let claims = claims("user-9", "viewer", "");
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    use ed25519_dalek::Signer;
    let token = format!("{input}.{}", b64url(&key.sign(input.as_bytes()).to_bytes()));

    let gw = Gateway::start_in(dir.clone(), &eddsa(""), echo.addr, &[(KEK_VAR, KEK)]);
    assert_eq!(kids(&gw), vec![kid]);
    assert_eq!(protected(&gw, &token), 200);
    assert!(
        gw.stderr_text()
            .contains("keys: imported 1 signing keys and the refresh secret from"),
        "{}",
        gw.stderr_text()
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_a_shared_store_without_a_key_encryption_key_as_run_does() {
    let (dir, config) = config_file(&eddsa(""));
    let (code, out, err) = portcullis(
        &["check", "-c", config.to_str().expect("utf-8 path")],
        &[
            (
                "PORTCULLIS_STORE",
                "postgres://portcullis@db.invalid/portcullis",
            ),
            (KEK_VAR, UNSET),
            ("JWT_SECRET", UNSET),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim_end(),
        "PORTCULLIS_KEY_ENCRYPTION_KEY is not set: the EdDSA, ES256 and RS256 signing keys \
         in the shared store are encrypted under it; make one with `openssl rand -hex 32` \
         and give every replica the same value"
    );
    let (code, out, err) = portcullis(
        &["check", "-c", config.to_str().expect("utf-8 path")],
        &[
            (
                "PORTCULLIS_STORE",
                "postgres://portcullis@db.invalid/portcullis",
            ),
            (KEK_VAR, KEK),
            ("JWT_SECRET", UNSET),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
