//! One store test suite, run against SQLite always and against PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES` names a database (each run in its own throwaway schema).

use std::future::Future;
use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor};

use super::*;
use crate::auth::revocations::Revocations;
use crate::auth::tokens::{hash, new_refresh_token, successor};

const NOW: i64 = 1_700_000_000;
const GRACE: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(900);
const DAY: i64 = 86_400;
const CHAIN_KEY: &[u8] = b"test chain key, 32 bytes or more";

/// Runs `suite` on a fresh SQLite file in a fresh directory (so directory creation is
/// exercised too), then deletes it; re-raises the suite's panic after cleaning up.
async fn on_sqlite<F, Fut>(suite: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("portcullis-store-test-{}", new_id()));
    let url = format!("sqlite://{}", dir.join("auth.db").display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    let outcome = tokio::spawn(suite(store.clone())).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Runs `suite` in a new PostgreSQL schema selected through the URL's `options`
/// parameter, then drops the schema; skips when no server is configured.
async fn on_postgres<F, Fut>(suite: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
        println!("skipped: PORTCULLIS_TEST_POSTGRES not set");
        return;
    };
    sqlx::any::install_default_drivers();
    let schema = format!("portcullis_test_{}", &new_id()[..16]);
    let mut admin = AnyConnection::connect(&base)
        .await
        .expect("connect postgres");
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let store = Store::connect(&url).await.expect("connect store");
    let outcome = tokio::spawn(suite(store.clone())).await;
    store.close().await;
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $suite() {
                    super::on_sqlite(super::$suite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $suite() {
                    super::on_postgres(super::$suite).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_created_user_is_found_by_normalised_email_and_by_id,
    registering_a_taken_email_is_a_conflict,
    rotation_then_grace_retry_then_reuse_after_the_window_revokes_the_family,
    presenting_the_grandparent_token_within_the_grace_window_is_reuse,
    two_concurrent_rotations_yield_one_rotated_one_grace_and_one_successor,
    ten_concurrent_rotations_yield_one_rotated_nine_grace_and_one_successor,
    an_expired_family_or_unknown_token_is_invalid,
    set_role_set_disabled_and_logout_all_set_not_before_and_revoke_families,
    memberships_are_listed_with_plans_and_changes_or_removal_end_sessions,
    revocations_appear_in_the_snapshot_and_the_event_feed_in_order,
    purging_drops_expired_revocations_and_dead_families_with_their_tokens,
    a_shared_rate_limit_admits_a_burst_then_says_how_long_to_wait_and_purges_full_buckets,
    concurrent_attempts_on_one_key_never_take_more_than_the_burst,
    ten_concurrent_uses_of_a_reset_token_let_exactly_one_through,
    a_password_change_ends_every_session_but_the_kept_one,
);

async fn user(store: &Store, email: &str) -> User {
    store
        .create_user(email, "$argon2id$fake", "member", NOW)
        .await
        .expect("create user")
}

/// A logged-in session: (family, its first refresh token).
async fn session(store: &Store, user: &User) -> (Family, String) {
    let token = new_refresh_token();
    let family = store
        .start_family(&user.id, None, &hash(&token), NOW, NOW + 30 * DAY)
        .await
        .expect("start family");
    (family, token)
}

async fn tokens_in(store: &Store, family_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1")
        .bind(family_id)
        .fetch_one(&store.pool)
        .await
        .expect("count tokens")
}

async fn rotate(store: &Store, presented: &str, at: i64) -> Rotation {
    let next = successor(CHAIN_KEY, presented);
    store
        .rotate(&hash(presented), &hash(&next), at, GRACE)
        .await
        .expect("rotate")
}

async fn a_created_user_is_found_by_normalised_email_and_by_id(store: Store) {
    let created = user(&store, " Alice@Example.COM ").await;
    assert_eq!(created.email, "alice@example.com");
    assert_eq!(
        (created.role.as_str(), created.disabled, created.not_before),
        ("member", false, 0)
    );
    let by_email = store
        .user_by_email("ALICE@example.com")
        .await
        .expect("query");
    assert_eq!(by_email.as_ref(), Some(&created));
    assert_eq!(
        store.user_by_id(&created.id).await.expect("query"),
        Some(created.clone())
    );
    assert_eq!(
        store.user_by_email("bob@example.com").await.expect("query"),
        None
    );
    assert_eq!(store.list_users().await.expect("list"), vec![created]);
    store.ping().await.expect("ping");
}

async fn registering_a_taken_email_is_a_conflict(store: Store) {
    user(&store, "carol@example.com").await;
    let again = store
        .create_user("CAROL@example.com", "$argon2id$x", "admin", NOW)
        .await;
    assert_eq!(again, Err(StoreError::Conflict));
    assert_eq!(store.list_users().await.expect("list").len(), 1);
}

async fn rotation_then_grace_retry_then_reuse_after_the_window_revokes_the_family(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let (family, t0) = session(&store, &alice).await;
    match rotate(&store, &t0, NOW + 100).await {
        Rotation::Rotated { family: f, user: u } => {
            assert_eq!(
                (f.id.as_str(), u.id.as_str()),
                (family.id.as_str(), alice.id.as_str())
            );
        }
        other => panic!("expected Rotated, got {other:?}"),
    }
    assert_eq!(tokens_in(&store, &family.id).await, 2);
    assert!(matches!(
        rotate(&store, &t0, NOW + 100 + 10).await,
        Rotation::Grace { .. }
    ));
    assert_eq!(
        tokens_in(&store, &family.id).await,
        2,
        "grace must not add a successor"
    );
    match rotate(&store, &t0, NOW + 100 + 11).await {
        Rotation::Reused { family: f } => assert_eq!(f.revoked_at, Some(NOW + 111)),
        other => panic!("expected Reused, got {other:?}"),
    }
    let t1 = successor(CHAIN_KEY, &t0);
    assert_eq!(rotate(&store, &t1, NOW + 112).await, Rotation::Invalid);
    let stored = store
        .family(&family.id)
        .await
        .expect("query")
        .expect("family");
    assert_eq!(stored.revoked_at, Some(NOW + 111));
}

async fn presenting_the_grandparent_token_within_the_grace_window_is_reuse(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let (family, t0) = session(&store, &alice).await;
    let t1 = successor(CHAIN_KEY, &t0);
    let t2 = successor(CHAIN_KEY, &t1);
    assert!(matches!(
        rotate(&store, &t0, NOW).await,
        Rotation::Rotated { .. }
    ));
    assert!(matches!(
        rotate(&store, &t1, NOW + 1).await,
        Rotation::Rotated { .. }
    ));
    assert!(matches!(
        rotate(&store, &t0, NOW + 2).await,
        Rotation::Reused { .. }
    ));
    assert_eq!(rotate(&store, &t2, NOW + 3).await, Rotation::Invalid);
    assert_eq!(tokens_in(&store, &family.id).await, 3);
}

async fn concurrent_rotations(store: Store, callers: usize) {
    let alice = user(&store, "alice@example.com").await;
    let (family, t0) = session(&store, &alice).await;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (store, t0) = (store.clone(), t0.clone());
            tokio::spawn(async move { rotate(&store, &t0, NOW + 1).await })
        })
        .collect();
    let (mut rotated, mut grace) = (0, 0);
    for task in tasks {
        match task.await.expect("join") {
            Rotation::Rotated { .. } => rotated += 1,
            Rotation::Grace { .. } => grace += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rotated, grace), (1, callers - 1));
    assert_eq!(tokens_in(&store, &family.id).await, 2);
}

async fn two_concurrent_rotations_yield_one_rotated_one_grace_and_one_successor(store: Store) {
    concurrent_rotations(store, 2).await;
}

async fn ten_concurrent_rotations_yield_one_rotated_nine_grace_and_one_successor(store: Store) {
    concurrent_rotations(store, 10).await;
}

async fn an_expired_family_or_unknown_token_is_invalid(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let token = new_refresh_token();
    let family = store
        .start_family(&alice.id, None, &hash(&token), NOW, NOW + 10)
        .await
        .expect("start family");
    assert_eq!(rotate(&store, &token, NOW + 10).await, Rotation::Invalid);
    assert_eq!(
        rotate(&store, &new_refresh_token(), NOW).await,
        Rotation::Invalid
    );
    let stored = store
        .family(&family.id)
        .await
        .expect("query")
        .expect("family");
    assert_eq!(
        stored.revoked_at, None,
        "an invalid token must not revoke anything"
    );
    let unknown_user = store
        .start_family("nobody", None, &hash("x"), NOW, NOW + 10)
        .await;
    assert_eq!(unknown_user, Err(StoreError::NotFound));
}

async fn set_role_set_disabled_and_logout_all_set_not_before_and_revoke_families(store: Store) {
    let alice = user(&store, "alice@example.com").await;

    let (f1, t1) = session(&store, &alice).await;
    assert_eq!(
        store.set_role(&alice.id, "admin", NOW + 5).await,
        Ok(NOW + 5)
    );
    let f1 = store.family(&f1.id).await.expect("query").expect("family");
    assert_eq!(f1.revoked_at, Some(NOW + 5));
    assert_eq!(rotate(&store, &t1, NOW + 6).await, Rotation::Invalid);

    let (f2, t2) = session(&store, &alice).await;
    assert_eq!(
        store.set_disabled(&alice.id, true, NOW + 7).await,
        Ok(NOW + 7)
    );
    let f2 = store.family(&f2.id).await.expect("query").expect("family");
    assert_eq!(f2.revoked_at, Some(NOW + 7));
    assert_eq!(rotate(&store, &t2, NOW + 8).await, Rotation::Invalid);
    let now_user = store
        .user_by_id(&alice.id)
        .await
        .expect("query")
        .expect("user");
    assert_eq!(
        (
            now_user.role.as_str(),
            now_user.disabled,
            now_user.not_before
        ),
        ("admin", true, NOW + 7)
    );
    assert_eq!(
        store.set_disabled(&alice.id, false, NOW + 8).await,
        Ok(NOW + 7)
    );

    let (f3, _) = session(&store, &alice).await;
    assert_eq!(
        store.revoke_user_sessions(&alice.id, NOW + 9).await,
        Ok(NOW + 9)
    );
    let f3 = store.family(&f3.id).await.expect("query").expect("family");
    assert_eq!(f3.revoked_at, Some(NOW + 9));
    // A clock running behind must not move the watermark backwards.
    assert_eq!(
        store.revoke_user_sessions(&alice.id, NOW).await,
        Ok(NOW + 9)
    );
    assert_eq!(
        store.set_role("nobody", "admin", NOW).await,
        Err(StoreError::NotFound)
    );
}

async fn memberships_are_listed_with_plans_and_changes_or_removal_end_sessions(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let ws = store
        .create_workspace("free", NOW)
        .await
        .expect("workspace");
    assert_eq!(
        store.workspace(&ws.id).await.expect("query"),
        Some(ws.clone())
    );
    assert_eq!(
        store
            .set_membership(&alice.id, &ws.id, "owner", NOW + 1)
            .await,
        Ok(false)
    );
    assert_eq!(
        store
            .set_membership(&alice.id, &ws.id, "owner", NOW + 2)
            .await,
        Ok(false)
    );
    assert_eq!(
        store
            .user_by_id(&alice.id)
            .await
            .expect("q")
            .expect("u")
            .not_before,
        0
    );
    // A plan change ends the members' sessions (tokens carry the plan); no change, no end.
    assert_eq!(
        store.set_plan(&ws.id, "pro", NOW + 2).await,
        Ok(PlanChange {
            created: false,
            ended: vec![(alice.id.clone(), NOW + 2)]
        })
    );
    assert_eq!(
        store.put_workspace(&ws.id, "pro", NOW + 2).await,
        Ok(PlanChange::default())
    );
    assert_eq!(
        store.put_workspace("fresh", "free", NOW).await,
        Ok(PlanChange {
            created: true,
            ended: vec![]
        })
    );
    let listed = store.memberships(&alice.id).await.expect("memberships");
    assert_eq!(
        listed,
        vec![Membership {
            workspace_id: ws.id.clone(),
            role: "owner".into(),
            plan: "pro".into()
        }]
    );
    assert_eq!(
        store.all_memberships().await.expect("all memberships"),
        vec![(alice.id.clone(), listed[0].clone())]
    );

    let (family, _) = session(&store, &alice).await;
    assert_eq!(
        store
            .set_membership(&alice.id, &ws.id, "viewer", NOW + 3)
            .await,
        Ok(true)
    );
    assert_eq!(
        store
            .user_by_id(&alice.id)
            .await
            .expect("q")
            .expect("u")
            .not_before,
        NOW + 3
    );
    let family = store.family(&family.id).await.expect("q").expect("family");
    assert_eq!(family.revoked_at, Some(NOW + 3));

    store
        .remove_membership(&alice.id, &ws.id, NOW + 4)
        .await
        .expect("remove");
    assert_eq!(
        store
            .user_by_id(&alice.id)
            .await
            .expect("q")
            .expect("u")
            .not_before,
        NOW + 4
    );
    assert_eq!(
        store.memberships(&alice.id).await.expect("memberships"),
        vec![]
    );
    assert_eq!(
        store.remove_membership(&alice.id, &ws.id, NOW + 5).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .set_membership(&alice.id, "no-such-ws", "owner", NOW)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.set_plan("no-such-ws", "pro", NOW).await,
        Err(StoreError::NotFound)
    );
}

async fn revocations_appear_in_the_snapshot_and_the_event_feed_in_order(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let (family, _) = session(&store, &alice).await;
    store
        .revoke_jti("jti-1", NOW + 600)
        .await
        .expect("revoke jti");
    store
        .revoke_jti("jti-1", NOW + 600)
        .await
        .expect("idempotent");
    store
        .revoke_family(&family.id, NOW + 10)
        .await
        .expect("logout");
    store
        .revoke_family(&family.id, NOW + 20)
        .await
        .expect("logout again");
    store
        .revoke_user_sessions(&alice.id, NOW + 30)
        .await
        .expect("logout all");
    assert_eq!(
        store.revoke_family("nope", NOW).await,
        Err(StoreError::NotFound)
    );

    let events = store.events_after(0, 100).await.expect("events");
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.seq, e.kind, e.subject.as_str(), e.at, e.until))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, EventKind::Jti, "jti-1", NOW + 600, Some(NOW + 600)),
            (2, EventKind::Family, family.id.as_str(), NOW + 10, None),
            (3, EventKind::User, alice.id.as_str(), NOW + 30, None),
        ]
    );
    assert_eq!(store.events_after(2, 100).await.expect("events").len(), 1);

    let snapshot = store
        .revocation_snapshot(NOW + 60, TTL)
        .await
        .expect("snapshot");
    assert_eq!(snapshot.cursor, 3);
    assert_eq!(snapshot.jtis, vec![("jti-1".to_string(), NOW + 600)]);
    assert_eq!(snapshot.families, vec![(family.id.clone(), NOW + 10)]);
    assert_eq!(snapshot.users, vec![(alice.id.clone(), NOW + 30)]);
    assert!(store
        .events_after(snapshot.cursor, 100)
        .await
        .expect("events")
        .is_empty());

    let set = Revocations::new(TTL);
    set.load(&snapshot);
    let iat = u64::try_from(NOW + 29).expect("positive");
    assert!(set.is_revoked("jti-1", None, "someone", iat));
    assert!(set.is_revoked("other", Some(&family.id), "someone", iat));
    assert!(set.is_revoked("other", None, &alice.id, iat));
    assert!(!set.is_revoked("other", None, &alice.id, iat + 1));

    let later = store
        .revocation_snapshot(NOW + 10 + 900, TTL)
        .await
        .expect("snapshot");
    assert_eq!(
        (later.jtis.len(), later.families.len(), later.users.len()),
        (0, 0, 1)
    );
}

async fn purging_drops_expired_revocations_and_dead_families_with_their_tokens(store: Store) {
    let alice = user(&store, "alice@example.com").await;
    let (live, live_token) = session(&store, &alice).await;
    let short = store
        .start_family(&alice.id, None, &hash("short"), NOW, NOW + 10)
        .await
        .expect("short family");
    let (revoked, _) = session(&store, &alice).await;
    store.revoke_family(&revoked.id, NOW).await.expect("logout");
    store.revoke_jti("old", NOW + 5).await.expect("jti");
    store.revoke_jti("young", NOW + 5_000).await.expect("jti");

    let purged = store.purge_expired(NOW + 1_000, TTL).await.expect("purge");
    assert_eq!(
        purged,
        Purged {
            jtis: 1,
            families: 2,
            refresh_tokens: 2,
            events: 2
        }
    );
    assert_eq!(store.family(&short.id).await.expect("q"), None);
    assert_eq!(store.family(&revoked.id).await.expect("q"), None);
    assert!(store.family(&live.id).await.expect("q").is_some());
    assert!(matches!(
        rotate(&store, &live_token, NOW + 1_001).await,
        Rotation::Rotated { .. }
    ));
    let remaining: Vec<_> = store
        .events_after(0, 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.subject)
        .collect();
    assert_eq!(remaining, vec!["young".to_string()]);
}

#[tokio::test]
async fn data_survives_reopening_the_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("portcullis-store-test-{}", new_id()));
    let url = format!("sqlite://{}", dir.join("nested").join("auth.db").display());
    let first = Store::connect(&url).await.expect("connect");
    let alice = user(&first, "alice@example.com").await;
    let (family, _) = session(&first, &alice).await;
    first.close().await;

    let second = Store::connect(&url)
        .await
        .expect("reconnect runs migrations idempotently");
    assert_eq!(
        second.user_by_email("alice@example.com").await.expect("q"),
        Some(alice)
    );
    assert_eq!(second.family(&family.id).await.expect("q"), Some(family));
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&second.pool)
        .await
        .expect("pragma");
    assert_eq!(journal, "wal");
    use std::os::unix::fs::PermissionsExt;
    for file in ["auth.db", "auth.db-wal"] {
        let mode = std::fs::metadata(dir.join("nested").join(file))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by others");
    }
    second.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn database_urls_must_be_sqlite_with_an_absolute_path_or_postgres() {
    assert!(matches!(
        prepare_url("mysql://x"),
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        prepare_url("sqlite://relative.db"),
        Err(StoreError::Other(_))
    ));
    let dir = std::env::temp_dir().join(format!("portcullis-url-test-{}", new_id()));
    let path = dir.join("a.db");
    let (backend, url) = prepare_url(&format!("sqlite://{}", path.display())).expect("sqlite url");
    assert_eq!(
        (backend, url),
        (
            Backend::Sqlite,
            format!("sqlite://{}?mode=rwc", path.display())
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (backend, _) = prepare_url("postgres://postgres@127.0.0.1/test").expect("pg url");
    assert_eq!(backend, Backend::Postgres);
}

const MS: i64 = 1_700_000_000_000;

fn per_second(count: u32) -> crate::config::Rate {
    crate::config::Rate {
        count,
        per: Duration::from_secs(1),
    }
}

async fn a_shared_rate_limit_admits_a_burst_then_says_how_long_to_wait_and_purges_full_buckets(
    store: Store,
) {
    let rate = per_second(2);
    let hit = |key: &'static str, at: i64| {
        let store = store.clone();
        async move { store.hit_rate_limit(key, &rate, at).await.expect("hit") }
    };
    assert_eq!(hit("a", MS).await, Ok(()));
    assert_eq!(hit("a", MS + 100).await, Ok(()));
    let refused = hit("a", MS + 200)
        .await
        .expect_err("third attempt in a second");
    // TAT is MS + 1000 after two; one more fits once it is within 500 ms of now.
    assert_eq!(refused.retry_after, Duration::from_millis(300));
    assert_eq!(hit("b", MS + 200).await, Ok(()), "keys are independent");
    assert_eq!(hit("a", MS + 500).await, Ok(()), "one more per interval");
    assert!(hit("a", MS + 600).await.is_err());
    // At MS + 1000 bucket "b" (TAT MS + 700) is full again and forgotten; "a" is not.
    assert_eq!(store.purge_rate_limits(MS + 1_000).await.expect("purge"), 1);
    assert_eq!(store.purge_rate_limits(MS + 5_000).await.expect("purge"), 1);
    assert_eq!(hit("a", MS + 5_000).await, Ok(()));
}

async fn concurrent_attempts_on_one_key_never_take_more_than_the_burst(store: Store) {
    let rate = per_second(5);
    let attempts = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.hit_rate_limit("k", &rate, MS).await })
    });
    let mut admitted = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        if attempt.await.expect("join").expect("hit").is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

async fn ten_concurrent_uses_of_a_reset_token_let_exactly_one_through(store: Store) {
    let ada = user(&store, "ada@example.com").await;
    let (family, _) = session(&store, &ada).await;
    let token = hash(&new_refresh_token());
    store
        .insert_account_token(
            Purpose::PasswordReset,
            &token,
            &ada.id,
            &ada.email,
            NOW,
            NOW + 900,
        )
        .await
        .expect("insert token");
    assert!(store
        .account_token_live(Purpose::PasswordReset, &token, NOW)
        .await
        .unwrap());
    // A reset token is no verification token.
    assert_eq!(store.verify_email(&token, NOW).await.unwrap(), None);
    let uses = (0..10).map(|i| {
        let store = store.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let new_hash = format!("$argon2id$new{i}");
            store.reset_password(&token, &new_hash, NOW + 1).await
        })
    });
    let mut through = Vec::new();
    for handle in uses.collect::<Vec<_>>() {
        if let Some(reset) = handle.await.expect("join").expect("reset") {
            through.push(reset);
        }
    }
    assert_eq!(through.len(), 1, "{through:?}");
    assert_eq!(through[0].user_id, ada.id);
    assert_eq!(through[0].not_before, NOW + 1);
    let revoked = store.family(&family.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(NOW + 1));
    assert!(store.email_verified(&ada.id).await.unwrap());
    assert!(!store
        .account_token_live(Purpose::PasswordReset, &token, NOW + 2)
        .await
        .unwrap());
}

async fn a_password_change_ends_every_session_but_the_kept_one(store: Store) {
    let bob = user(&store, "bob@example.com").await;
    let (kept, _) = session(&store, &bob).await;
    let (other, _) = session(&store, &bob).await;
    let ended = store
        .change_password(&bob.id, "$argon2id$changed", Some(&kept.id), NOW + 5)
        .await
        .expect("change");
    assert_eq!(ended, vec![other.id.clone()]);
    let live = store.sessions_of(&bob.id, NOW + 5).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].family.id, kept.id);
    assert_eq!(
        store.end_session("someone else", &kept.id, NOW + 6).await,
        Err(StoreError::NotFound)
    );
    store
        .end_session(&bob.id, &kept.id, NOW + 6)
        .await
        .expect("end");
    assert!(store
        .sessions_of(&bob.id, NOW + 6)
        .await
        .unwrap()
        .is_empty());
    let changed = store.user_by_id(&bob.id).await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "$argon2id$changed");
}
