//! Embedded, versioned schema migrations, applied at connect time.
//!
//! A tiny runner instead of `sqlx::migrate!`: that macro needs sqlx's proc-macro stack and
//! one directory per migrator, while here both backends share one code path and only the
//! SQL files differ. Applied versions are recorded in `schema_migrations`.

use sqlx::AssertSqlSafe;

use super::{Backend, Store, StoreError};

/// (version, SQL) pairs in ascending order. Never edit a shipped migration: add a new one.
const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_rate_limits.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_rate_limits.sql"),
    ),
];

/// Arbitrary constant naming the PostgreSQL advisory lock that serialises replicas
/// migrating at the same time.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// Applies every migration newer than the recorded schema version, all in one transaction
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
    for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
        for statement in statements(sql) {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
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
