//! The key set in a real (SQLite) store: made sealed on first start, reused,
//! rotated by hand and on schedule (once, however many ask), retired after its
//! window, imported from an earlier keys_dir, and rewrapped under a new
//! key-encryption key. Rows altered in the store are refused.

use super::*;
use crate::token::{Grant, TokenError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const T0: u64 = 1_800_000_000;
/// access_ttl 15m + leeway 5s.
const RETAIN: u64 = 905;
const KEK_A: &str = "3f1a9c0e5b7d2486af13c9e07b5d2f48a16c3e9b0d7f2a5c8e1b4d6f9a0c3e52";
const KEK_B: &str = "b7e2c91f04a65d38e1f9a27c5b0d43e6f81a2c9d5e7b03f4a6c8e1d2b5f7a9c0";
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

/// A config in `dir` (its store `dir/data/portcullis.db`) with `extra` auth lines,
/// and `.env` beside it holding `env`.
fn config(dir: &Path, extra: &str, env: &str) -> Config {
    let path = dir.join("gateway.yaml");
    let text =
        format!("auth:\n  issuer: https://gw.test\n  audience: api\n{extra}roles: [viewer]\n");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join(".env"), env).unwrap();
    crate::config::load(&path, &|_| None)
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap()
        .config
}

fn kek_env(key: &str) -> String {
    format!("{}={key}\n", kek::ENV)
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

/// Runs `work` on the config's store.
fn with_store<T: Send>(
    config: &Config,
    work: impl for<'s> FnOnce(&'s Store) -> std::pin::Pin<Box<dyn Future<Output = T> + Send + 's>>
        + Send,
) -> T {
    on_own_runtime(async {
        let store = connect(&config.store).await?;
        let out = work(&store).await;
        store.close().await;
        Ok(out)
    })
    .unwrap()
}

fn stored(config: &Config) -> StoredKeySet {
    with_store(config, |s| {
        Box::pin(async move { s.key_set().await.unwrap() })
    })
}

fn rotate(config: &Config, now: u64, scheduled: bool) {
    let kek = kek_for(config, false).unwrap();
    let auth = config.auth.clone();
    with_store(config, move |s| {
        Box::pin(async move { rotate_in(s, &kek, &auth, now, scheduled).await.unwrap() })
    });
}

#[test]
fn a_first_key_is_sealed_in_the_store_and_reused_by_every_later_start() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let first = open(&config, None, T0).unwrap();
    let token = first.issue(GRANT, T0, Duration::from_secs(60)).token;
    let second = open(&config, None, T0 + 10).unwrap();
    assert_eq!(second.signing_kid(T0 + 10), kid_of(&token));
    assert!(second.verify(&token, T0 + 10).is_ok());
    assert_eq!(first.refresh_secret(), second.refresh_secret());
    assert_eq!(first.refresh_secret().len(), 32);

    let set = stored(&config);
    assert_eq!(set.keys.len(), 1);
    let kek = kek_for(&config, false).unwrap();
    assert_eq!(set.keys[0].sealed.kek_id, kek.id());
    // Nothing of the key in clear: not its PEM, nor the base64 of its DER.
    let pem = kek
        .open(&label(&set.keys[0].kid), &set.keys[0].sealed)
        .unwrap();
    let pem = std::str::from_utf8(&pem).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!set.keys[0].sealed.text.contains(&body[..20]));
    assert!(!tmp.0.join("data/keys").exists(), "no key files any more");
}

#[test]
fn a_rotation_publishes_the_next_key_at_once_and_signs_with_it_once_every_replica_has_it() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: ES256\n", &kek_env(KEK_A));
    let before = open(&config, None, T0).unwrap();
    let old = before.signing_kid(T0);
    let old_token = before.issue(GRANT, T0, Duration::from_secs(600)).token;
    rotate(&config, T0 + 100, false);
    let after = open(&config, None, T0 + 100).unwrap();
    let kids = jwks_kids(&after, T0 + 100);
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], old);
    assert_eq!(after.signing_kid(T0 + 100 + SETTLE - 1), old);
    assert_eq!(after.signing_kid(T0 + 100 + SETTLE), kids[1]);
    assert!(after.verify(&old_token, T0 + 200).is_ok());
    // The old key verifies for one token lifetime after the new one took over, then goes.
    let retired = T0 + 100 + SETTLE + RETAIN;
    assert_eq!(jwks_kids(&after, retired - 1).len(), 2);
    assert_eq!(jwks_kids(&after, retired), vec![kids[1].clone()]);
    // The next rotation deletes its row.
    rotate(&config, retired, false);
    let set = stored(&config);
    assert_eq!(
        set.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
        [&kids[1], &set.keys[1].kid]
    );
}

#[test]
fn a_scheduled_rotation_asked_for_by_many_replicas_at_once_is_made_once() {
    let tmp = TempDir::new();
    let config = config(
        &tmp.0,
        "  algorithm: EdDSA\n  access_ttl: 1m\n  key_rotation: 1h\n",
        &kek_env(KEK_A),
    );
    open(&config, None, T0).unwrap();
    let due = T0 + 3600 - 60;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| rotate(&config, due, true));
        }
    });
    let set = stored(&config);
    assert_eq!(set.keys.len(), 2, "{:?}", set.keys);
    // Published one JWKS max-age (= access_ttl, 1m) before it signs.
    assert_eq!(set.keys[1].active_from, to_i64(T0 + 3600));
    // Not due again until the next period.
    rotate(&config, due + 30, true);
    assert_eq!(stored(&config).keys.len(), 2);
}

#[test]
fn a_changed_algorithm_gets_a_key_of_its_own_and_old_tokens_still_verify() {
    let tmp = TempDir::new();
    let ed = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let token = open(&ed, None, T0)
        .unwrap()
        .issue(GRANT, T0, Duration::from_secs(60))
        .token;
    let rs = config(&tmp.0, "  algorithm: ES256\n", &kek_env(KEK_A));
    let keys = open(&rs, None, T0 + 1).unwrap();
    let new = keys.issue(GRANT, T0 + 1 + SETTLE, Duration::from_secs(60));
    assert_ne!(kid_of(&new.token), kid_of(&token));
    assert!(keys.verify(&token, T0 + 2).is_ok());
    let set = stored(&rs);
    assert_eq!(
        set.keys.iter().map(|k| k.alg.as_str()).collect::<Vec<_>>(),
        ["EdDSA", "ES256"]
    );
}

#[test]
fn a_sealed_key_moved_onto_another_kid_does_not_open() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    open(&config, None, T0).unwrap();
    rotate(&config, T0, false);
    let url = config.store.clone();
    on_own_runtime(async move {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(
            "UPDATE signing_keys SET sealed_key = \
             (SELECT sealed_key FROM signing_keys ORDER BY seq DESC LIMIT 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        Ok(())
    })
    .unwrap();
    let e = open(&config, None, T0).map(drop).unwrap_err();
    assert!(e.contains("does not decrypt"), "{e}");
}

#[test]
fn another_key_encryption_key_cannot_open_the_set_and_says_which_it_needs() {
    let tmp = TempDir::new();
    let a = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    open(&a, None, T0).unwrap();
    let b = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_B));
    let e = open(&b, None, T0).map(drop).unwrap_err();
    let (id_a, id_b) = (
        kek_for(&a, false).unwrap().id().to_owned(),
        kek_for(&b, false).unwrap().id().to_owned(),
    );
    assert!(
        e.starts_with(&format!("{} cannot decrypt the signing keys", kek::ENV)),
        "{e}"
    );
    assert!(e.contains(&id_a) && e.contains(&id_b), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn rewrap_seals_everything_under_the_new_key_so_the_old_one_can_go() {
    let tmp = TempDir::new();
    let a = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let before = open(&a, None, T0).unwrap();
    let token = before.issue(GRANT, T0, Duration::from_secs(60)).token;
    let both = config(
        &tmp.0,
        "  algorithm: EdDSA\n",
        &format!("{}{}={KEK_A}\n", kek_env(KEK_B), kek::ENV_OLD),
    );
    // With the old key listed, the set still opens before the rewrap.
    open(&both, None, T0).unwrap();
    let out = rewrap_command(&both.path).unwrap();
    assert!(
        out.starts_with("rewrapped 2 sealed values (0 of them TOTP secrets)"),
        "{out}"
    );
    assert_eq!(
        rewrap_command(&both.path).unwrap(),
        format!(
            "nothing to rewrap: everything in the store is sealed under key-encryption key {}\n",
            kek_for(&both, false).unwrap().id()
        )
    );
    let b = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_B));
    let after = open(&b, None, T0).unwrap();
    assert!(after.verify(&token, T0 + 1).is_ok());
    assert_eq!(after.refresh_secret(), before.refresh_secret());
}

#[test]
fn an_earlier_keys_dir_is_imported_once_so_sessions_survive_the_upgrade() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("data/keys");
    std::fs::create_dir_all(&dir).unwrap();
    let (signer, pem) = files::generate("EdDSA").unwrap();
    let kid = signer.verifier().thumbprint().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(&format!("{kid}.pem"), pem.as_bytes());
    write(
        "keys.json",
        format!(
            r#"{{"keys":[{{"kid":"{kid}","alg":"EdDSA","file":"{kid}.pem","created_at":{T0},"active_from":{T0}}}]}}"#
        )
        .as_bytes(),
    );
    write("refresh.secret", &[7u8; 32]);
    let config = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let keys = open(&config, None, T0 + 5).unwrap();
    assert_eq!(keys.signing_kid(T0 + 5), kid);
    assert_eq!(keys.refresh_secret(), [7u8; 32]);
    // Imported once: a later change to keys_dir is not read.
    std::fs::remove_file(dir.join("refresh.secret")).unwrap();
    let again = open(&config, None, T0 + 6).unwrap();
    assert_eq!(again.refresh_secret(), [7u8; 32]);
    assert_eq!(stored(&config).keys.len(), 1);
}

#[test]
fn jwt_secret_keys_the_refresh_chain_when_set() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let secret = "R7#kq9!vZ2@mX4$wP8^tL1&nB6*cF3(h";
    let keys = open(&config, Some(secret), T0).unwrap();
    assert_eq!(keys.refresh_secret(), secret.as_bytes());
    let e = open(&config, Some("short"), T0).map(drop).unwrap_err();
    assert!(e.starts_with("JWT_SECRET is 5 bytes"), "{e}");
}

#[test]
fn a_single_node_without_the_variable_generates_its_key_encryption_key_once() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: EdDSA\n", "");
    if std::env::var(kek::ENV).is_ok() {
        return; // The real environment wins over the quickstart file.
    }
    let first = open(&config, None, T0).unwrap();
    let file = tmp.0.join("data/key-encryption.key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim().len(), 64);
    let second = open(&config, None, T0 + 1).unwrap();
    assert_eq!(first.signing_kid(T0), second.signing_kid(T0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn a_token_of_a_deleted_key_is_refused_as_unknown() {
    let tmp = TempDir::new();
    let config = config(&tmp.0, "  algorithm: EdDSA\n", &kek_env(KEK_A));
    let old = open(&config, None, T0).unwrap();
    let token = old.issue(GRANT, T0, Duration::from_secs(60)).token;
    rotate(&config, T0, false);
    let late = T0 + SETTLE + RETAIN;
    rotate(&config, late, false);
    let keys = open(&config, None, late).unwrap();
    assert_eq!(keys.verify(&token, late), Err(TokenError::UnknownKey));
}
