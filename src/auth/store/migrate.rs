//! Embedded, versioned schema migrations, applied at connect time.
//!
//! A tiny runner instead of `sqlx::migrate!`: that macro needs sqlx's proc-macro stack and
//! one directory per migrator, while here both backends share one code path and only the
//! SQL files differ. Applied versions are recorded in `schema_migrations`.

use std::collections::HashMap;

use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::users::normalize_email;
use super::{Backend, Store, StoreError};

/// One schema change: a SQL file, or a data change SQL cannot express.
enum Step {
    Sql(&'static str),
    /// Rewrites every stored email in `auth::email::normalize`'s form (NFKC, lower-cased,
    /// trimmed), refusing, with nothing changed, when two accounts would collide.
    NormalizeEmails,
}

/// (version, step) pairs in ascending order. Never edit a shipped migration: add a new one.
const SQLITE: &[(i64, Step)] = &[
    (
        1,
        Step::Sql(include_str!("../../../migrations/sqlite/0001_init.sql")),
    ),
    (
        2,
        Step::Sql(include_str!(
            "../../../migrations/sqlite/0002_rate_limits.sql"
        )),
    ),
    (3, Step::NormalizeEmails),
    (
        4,
        Step::Sql(include_str!(
            "../../../migrations/sqlite/0004_signing_keys.sql"
        )),
    ),
    (
        5,
        Step::Sql(include_str!("../../../migrations/sqlite/0005_accounts.sql")),
    ),
    (
        6,
        Step::Sql(include_str!(
            "../../../migrations/sqlite/0006_tokens_and_mfa.sql"
        )),
    ),
];
const POSTGRES: &[(i64, Step)] = &[
    (
        1,
        Step::Sql(include_str!("../../../migrations/postgres/0001_init.sql")),
    ),
    (
        2,
        Step::Sql(include_str!(
            "../../../migrations/postgres/0002_rate_limits.sql"
        )),
    ),
    (3, Step::NormalizeEmails),
    (
        4,
        Step::Sql(include_str!(
            "../../../migrations/postgres/0004_signing_keys.sql"
        )),
    ),
    (
        5,
        Step::Sql(include_str!(
            "../../../migrations/postgres/0005_accounts.sql"
        )),
    ),
    (
        6,
        Step::Sql(include_str!(
            "../../../migrations/postgres/0006_tokens_and_mfa.sql"
        )),
    ),
];

/// Arbitrary constant naming the PostgreSQL advisory lock that serialises replicas
/// migrating at the same time.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// Applies every migration not yet recorded, all in one transaction
/// (DDL is transactional on both backends), so a failed upgrade leaves the old schema intact.
pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.write_tx().await?;
    let migrations = match store.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => {
            // Wrapped in a subquery because the function returns `void`, a type the Any
            // driver cannot describe.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS migration_lock")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            POSTGRES
        }
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
            version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
    if let Some((newest, _)) = migrations.last() {
        if current > *newest {
            return Err(StoreError::Other(format!(
                "database schema version {current} is newer than this binary ({newest})"
            )));
        }
    }
    // Every migration not recorded, in order: normally those newer than `current`, but
    // also one whose record was removed to apply it again (as tests of migration 3 do).
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for (version, step) in migrations.iter().filter(|(v, _)| !applied.contains(v)) {
        match step {
            Step::Sql(sql) => {
                for statement in statements(sql) {
                    sqlx::query(AssertSqlSafe(statement))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            Step::NormalizeEmails => normalize_emails(&mut tx).await?,
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Migration 3: stored emails were only trimmed and lower-cased; now they are NFKC too.
/// Every changed row is rewritten in the migration's transaction, or, when two accounts
/// would end up with one address, none is and the store refuses to open with both named,
/// so the operator decides which account keeps it.
async fn normalize_emails(tx: &mut Transaction<'_, Any>) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT id, email FROM users ORDER BY created_at, id")
        .fetch_all(&mut **tx)
        .await?;
    let mut owners: HashMap<String, (String, String)> = HashMap::new();
    let mut changes = Vec::new();
    for row in rows {
        let id: String = row.try_get(0)?;
        let email: String = row.try_get(1)?;
        let normalized = normalize_email(&email);
        if let Some((other_id, other_email)) = owners.get(&normalized) {
            return Err(StoreError::Other(format!(
                "cannot normalize stored emails: users {other_id} ({other_email:?}) and {id} \
                 ({email:?}) would both become {normalized:?}; give one of them another \
                 email in the database (UPDATE users SET email = '...' WHERE id = '...'), \
                 then start again"
            )));
        }
        if normalized != email {
            changes.push((id.clone(), normalized.clone()));
        }
        owners.insert(normalized, (id, email));
    }
    // A changed address cannot take one still held by another row: that row's address is
    // already normalized (or it would be changing too), so the two would have collided above.
    for (id, email) in changes {
        sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Splits a migration file into statements: drops `--` comment lines, then splits on `;`.
/// Migration files therefore must not contain `;` inside a statement.
fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
