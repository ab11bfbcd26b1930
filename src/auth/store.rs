//! Durable auth state (users, workspaces, refresh-token families, revocations) on SQLite or PostgreSQL.
//!
//! One code path serves both backends: every query goes through `sqlx::AnyPool` with
//! `$1`-style placeholders, which SQLite accepts as numbered parameters. The only
//! backend-specific pieces are connection setup, the embedded migration set and how a
//! write transaction is opened (SQLite takes its write lock up front with `BEGIN IMMEDIATE`
//! so concurrent writers queue on the busy timeout instead of failing with SQLITE_BUSY).

// Column lists as macros so they can be `concat!`ed into `&'static str` queries.
// They must match the decoders in `rows.rs`.
macro_rules! user_columns {
    () => {
        "id, email, password_hash, role, disabled, not_before, created_at"
    };
}
macro_rules! family_columns {
    () => {
        "id, user_id, workspace_id, created_at, expires_at, revoked_at"
    };
}

mod accounts;
mod error;
mod mfa;
mod migrate;
mod pats;
mod rate_limits;
mod revocation_log;
mod rows;
mod sessions;
mod signing_keys;
mod users;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Transaction};

pub use accounts::{Purpose, Reset, SessionOrigin, SessionRow};
pub use error::StoreError;
pub use mfa::StoredTotp;
pub use pats::{NewPat, StoredPat};
pub use revocation_log::{Event, EventKind, Purged, Snapshot};
pub use rows::{Family, Membership, User, Workspace};
pub use sessions::Rotation;
pub use signing_keys::{KeySetChange, Sealed, StoredKey, StoredKeySet};
pub use users::PlanChange;

/// How long a caller may wait for a pooled connection before the store reports `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite busy timeout: how long a writer waits for another writer's lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the auth database. Cloning is cheap (it shares one connection pool), so
/// clone it into every task that needs it rather than wrapping it in an `Arc`.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    ///
    /// Accepts `sqlite://<absolute path>` (the file and its parent directory are created
    /// if missing; WAL journal, 5 s busy timeout, foreign keys on) and `postgres://...` /
    /// `postgresql://...` (use the `options=-c search_path=...` URL parameter to pick a
    /// schema). Call once at startup; a failure here should stop the process.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = prepare_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let pool = match backend {
            Backend::Sqlite => {
                options
                    // Writers serialise on the file lock anyway; a few connections keep readers going.
                    .max_connections(4)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move { sqlite_session_setup(conn).await })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(10).connect(&url).await?,
        };
        if backend == Backend::Sqlite {
            // WAL is a property of the file, so setting it once is enough; doing it here, before
            // any other connection exists, avoids the exclusive lock it needs racing other users.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let store = Store { pool, backend };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Cheap round trip for readiness probes: `Err(Unavailable)` means the gateway
    /// should report itself not ready (and auth endpoints answer 503).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// True on PostgreSQL, the backend several replicas share; SQLite is one node's file.
    /// State that must hold across replicas (the account rate limits) goes to the store
    /// only then.
    pub fn shared_by_replicas(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Closes all pooled connections; call on shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that will write. On SQLite the write lock is taken immediately,
    /// so a concurrent writer waits on the busy timeout rather than failing mid-transaction.
    async fn write_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }
}

/// Per-connection SQLite settings; sqlx applies similar defaults, but stating them keeps the
/// guarantees visible and independent of driver defaults.
async fn sqlite_session_setup(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
    )))
    .await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

/// Validates the URL, picks the backend and, for SQLite, makes sure the file can be created.
/// Creates the database file owner-only (0600) if it does not exist yet: it holds
/// password hashes and session state. SQLite gives its -wal and -shm files the
/// database file's permissions.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Other(format!(
            "cannot create database file: {e}"
        ))),
    }
}

fn prepare_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(StoreError::Other(
            "database URL must start with sqlite:// or postgres://".into(),
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(StoreError::Other(
            "sqlite:// URL must name an absolute path".into(),
        ));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Other(format!("cannot create database directory: {e}")))?;
    }
    create_private(path)?;
    let url = match query {
        Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => url.to_owned(),
        Some(q) => format!("sqlite://{}?{q}&mode=rwc", path.display()),
        None => format!("sqlite://{}?mode=rwc", path.display()),
    };
    Ok((Backend::Sqlite, url))
}

/// A fresh random identifier: 16 bytes from the thread-local CSPRNG, as 32 hex characters.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    super::tokens::hex(&bytes)
}

/// Converts a duration to whole seconds for arithmetic on BIGINT timestamps.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
