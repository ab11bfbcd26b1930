//! Key files on disk: created private, reused, rotated on demand and on schedule,
//! retired after their window, and refused when tampered with.

use super::*;
use crate::token::{Grant, TokenError};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const T0: u64 = 1_800_000_000;
/// access_ttl 15m + leeway 5s.
const RETAIN: u64 = 905;
const GRANT: Grant<'static> = Grant {
    sub: "u1",
    role: "viewer",
    workspace: None,
    plan: None,
    sid: None,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("portcullis-keys-{}", crate::token::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn auth(dir: &Path, extra: &str) -> Auth {
    let path = dir.join("gateway.yaml");
    let text =
        format!("auth:\n  issuer: https://gw.test\n  audience: api\n{extra}roles: [viewer]\n");
    std::fs::write(&path, text).unwrap();
    crate::config::load(&path, &|_| None)
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap()
        .config
        .auth
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn jwks_kids(keys: &Keys, now: u64) -> Vec<String> {
    let (doc, _) = keys.jwks(now);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn key_files_are_created_private_on_first_start_and_reused_after() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let dir = tmp.0.join("data/keys");
    assert_eq!(auth.keys_dir, dir);
    let first = open(&auth, None, T0).unwrap();
    let kid = first.signing_kid(T0);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("keys.json")), 0o600);
    assert_eq!(mode(&dir.join(format!("{kid}.pem"))), 0o600);
    assert_eq!(mode(&dir.join("refresh.secret")), 0o600);
    let pem = std::fs::read_to_string(dir.join(format!("{kid}.pem"))).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(first.refresh_secret().len(), 32);

    let token = first.issue(GRANT, T0, Duration::from_secs(900)).token;
    let again = open(&auth, None, T0 + 60).unwrap();
    assert_eq!(again.signing_kid(T0 + 60), kid);
    assert_eq!(again.refresh_secret(), first.refresh_secret());
    assert_eq!(
        again.verify(&token, T0 + 60).map(|id| id.sub.clone()),
        Ok("u1".into())
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temp or lock files left: {names:?}");
}

#[test]
fn each_algorithm_gets_its_own_key_file() {
    for alg in ["ES256", "RS256"] {
        let tmp = TempDir::new();
        let auth = auth(&tmp.0, &format!("  algorithm: {alg}\n"));
        let keys = open(&auth, None, T0).unwrap();
        let token = keys.issue(GRANT, T0, Duration::from_secs(900)).token;
        let reopened = open(&auth, None, T0).unwrap();
        assert!(reopened.verify(&token, T0).is_ok(), "{alg}");
    }
}

#[test]
fn rotating_makes_a_new_key_current_and_retires_the_old_one_after_its_window() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let before = open(&auth, None, T0).unwrap();
    let old_kid = before.signing_kid(T0);
    let old_token = before.issue(GRANT, T0 + 10, Duration::from_secs(900)).token;

    let index = rotate(&auth, T0 + 10).unwrap();
    assert_eq!(index.keys.len(), 2);
    let after = open(&auth, None, T0 + 10).unwrap();
    let new_kid = after.signing_kid(T0 + 10);
    assert_ne!(new_kid, old_kid);
    assert_eq!(
        jwks_kids(&after, T0 + 10),
        [old_kid.clone(), new_kid.clone()]
    );
    let new_token = after.issue(GRANT, T0 + 10, Duration::from_secs(900)).token;
    assert_eq!(kid_of(&new_token), new_kid);
    assert!(after.verify(&old_token, T0 + 11).is_ok());

    // One second before the window ends the old key still verifies; at its end it is gone.
    let late = open(&auth, None, T0 + 10 + RETAIN - 1).unwrap();
    assert_eq!(jwks_kids(&late, T0 + 10 + RETAIN - 1).len(), 2);
    assert_eq!(jwks_kids(&late, T0 + 10 + RETAIN), vec![new_kid.clone()]);
    let crafted_late = late.verify(&old_token, T0 + 10 + RETAIN);
    assert_eq!(crafted_late, Err(TokenError::UnknownKey));

    // The next rotation drops the retired key from the index and its file from disk.
    rotate(&auth, T0 + 10 + RETAIN).unwrap();
    let dir = &auth.keys_dir;
    assert!(!dir.join(format!("{old_kid}.pem")).exists());
    assert!(dir.join(format!("{new_kid}.pem")).exists());
    let index = read_index(dir).unwrap();
    assert_eq!(index.keys.len(), 2);
    assert_eq!(index.keys[0].kid, new_kid);
}

#[test]
fn a_scheduled_rotation_publishes_the_next_key_before_it_signs() {
    let tmp = TempDir::new();
    // Max-age and lead are min(300 s, access_ttl) = 300 s.
    let auth = auth(&tmp.0, "  algorithm: ES256\n  key_rotation: 1d\n");
    let first = open(&auth, None, T0).unwrap();
    let kid = first.signing_kid(T0);
    assert_eq!(
        open(&auth, None, T0 + 86_400 - 301)
            .unwrap()
            .jwks(T0)
            .0
            .matches("\"kid\"")
            .count(),
        1
    );
    let published = open(&auth, None, T0 + 86_400 - 300).unwrap();
    let kids = jwks_kids(&published, T0 + 86_400 - 300);
    assert_eq!(kids.len(), 2);
    assert_eq!(published.signing_kid(T0 + 86_400 - 1), kid);
    assert_eq!(published.signing_kid(T0 + 86_400), kids[1]);
    assert_eq!(published.jwks(T0).1, 300);
}

#[test]
fn a_changed_algorithm_makes_a_new_key_current_and_old_tokens_still_verify() {
    let tmp = TempDir::new();
    let ed = open(&auth(&tmp.0, "  algorithm: EdDSA\n"), None, T0).unwrap();
    let ed_token = ed.issue(GRANT, T0, Duration::from_secs(900)).token;
    let es = open(&auth(&tmp.0, "  algorithm: ES256\n"), None, T0 + 5).unwrap();
    let es_token = es.issue(GRANT, T0 + 5, Duration::from_secs(900)).token;
    let header = es_token.split('.').next().unwrap();
    assert!(
        header.starts_with("eyJhbGciOiJFUzI1NiI"),
        "ES256 header: {header}"
    );
    assert!(es.verify(&ed_token, T0 + 6).is_ok());
}

#[test]
fn a_key_file_open_to_others_is_refused() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let kid = open(&auth, None, T0).unwrap().signing_kid(T0);
    let file = auth.keys_dir.join(format!("{kid}.pem"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = open(&auth, None, T0).err().unwrap();
    assert!(
        err.ends_with("is readable by group or others (mode 644); chmod 600 it"),
        "{err}"
    );
}

#[test]
fn a_key_file_that_does_not_hold_its_kid_is_refused() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let first = open(&auth, None, T0).unwrap().signing_kid(T0);
    rotate(&auth, T0 + 1).unwrap();
    let second = open(&auth, None, T0 + 1).unwrap().signing_kid(T0 + 1);
    let dir = &auth.keys_dir;
    std::fs::copy(
        dir.join(format!("{second}.pem")),
        dir.join(format!("{first}.pem")),
    )
    .unwrap();
    let err = open(&auth, None, T0 + 1).err().unwrap();
    assert!(
        err.ends_with(&format!(
            "does not hold the key {first} that keys.json names"
        )),
        "{err}"
    );
}

#[test]
fn jwt_secret_keys_the_refresh_chain_when_set() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let secret = "5d8f0b3a9c2e47f1a6b8d0c3e5f7a9b1c2d4e6f8a0b2c4d6e8f0a1b3c5d7e9f2";
    let keys = open(&auth, Some(secret), T0).unwrap();
    assert_eq!(keys.refresh_secret(), secret.as_bytes());
    assert!(!auth.keys_dir.join("refresh.secret").exists());
    let err = open(&auth, Some("short"), T0).err().unwrap();
    assert!(
        err.starts_with("JWT_SECRET is 5 bytes; it must be at least 32"),
        "{err}"
    );
    // As guessable as a weak HS256 key: the chain key names every session's successor.
    let err = open(&auth, Some(&"s".repeat(32)), T0).err().unwrap();
    assert!(err.starts_with("JWT_SECRET is too easy to guess"), "{err}");
}

#[test]
fn rotating_an_hs256_key_is_refused() {
    let tmp = TempDir::new();
    let err = rotate(&auth(&tmp.0, ""), T0).unwrap_err();
    assert!(err.starts_with("auth.algorithm is HS256"), "{err}");
}

#[test]
fn a_lock_left_by_a_live_writer_is_waited_for_and_released() {
    let tmp = TempDir::new();
    let lock = files::Lock::acquire(&tmp.0).unwrap();
    let dir = tmp.0.clone();
    let waiter = std::thread::spawn(move || files::Lock::acquire(&dir).map(|_| ()));
    std::thread::sleep(Duration::from_millis(100));
    drop(lock);
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert!(!tmp.0.join("keys.lock").exists());
}

#[test]
fn leftovers_of_a_rotation_cut_short_leave_a_valid_key_set() {
    let tmp = TempDir::new();
    let auth = auth(&tmp.0, "  algorithm: EdDSA\n");
    let keys = open(&auth, None, T0).unwrap();
    let kid = keys.signing_kid(T0);
    let token = keys.issue(GRANT, T0, Duration::from_secs(900)).token;
    // A crash after the new key file was written but before the index named it,
    // and one in the middle of writing the index's temp file.
    let dir = &auth.keys_dir;
    let (_, pem) = files::generate("EdDSA").unwrap();
    files::write_private(dir, "orphan.pem", pem.as_bytes()).unwrap();
    std::fs::write(dir.join(".keys.json.1234.tmp"), b"{\"keys\": [").unwrap();
    let restarted = open(&auth, None, T0 + 1).unwrap();
    assert_eq!(restarted.signing_kid(T0 + 1), kid);
    assert!(restarted.verify(&token, T0 + 1).is_ok());
    // The interrupted rotation can simply be run again.
    rotate(&auth, T0 + 2).unwrap();
    let rotated = open(&auth, None, T0 + 2).unwrap();
    assert_ne!(rotated.signing_kid(T0 + 2), kid);
    assert!(rotated.verify(&token, T0 + 2).is_ok());
}
