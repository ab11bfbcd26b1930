//! The store's error type and the mapping from driver errors to the few cases callers act on.

use std::fmt;

/// Why a store operation failed, reduced to what the HTTP layer needs to choose a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database could not be reached in time (connection refused, pool timeout, lock
    /// timeout, server shutting down). Transient: answer 503 and let the client retry.
    Unavailable(String),
    /// A uniqueness rule was violated, e.g. the email is already registered. Answer 409.
    Conflict,
    /// The row the operation targets does not exist.
    NotFound,
    /// Anything else. The text is for logs only and must never be shown to clients.
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::Conflict => f.write_str("conflicting row already exists"),
            StoreError::NotFound => f.write_str("not found"),
            StoreError::Other(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(ref db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict,
                ErrorKind::ForeignKeyViolation => StoreError::NotFound,
                _ if db.code().is_some_and(|code| transient_code(&code)) => {
                    StoreError::Unavailable(err.to_string())
                }
                _ => StoreError::Other(err.to_string()),
            },
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// Database error codes that mean "try again later" rather than "your request is wrong".
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        // SQLite: SQLITE_BUSY, SQLITE_LOCKED (after the busy timeout ran out) and their
        // extended codes, which sqlx reports as the decimal number.
        "5" | "6" | "261" | "262" | "517" | "773"
        // PostgreSQL: serialization failure, deadlock, shutdown, too many connections.
        | "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
    ) || code.starts_with("08") // PostgreSQL connection exceptions
}
