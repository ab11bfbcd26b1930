//! Personal access tokens: rows keyed by the SHA-256 of the token, and the events that
//! keep every replica's in-memory index (`auth::pat`) current.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::revocation_log::{record, EventKind};
use super::{new_id, Store, StoreError};

/// Columns of `personal_access_tokens`, in the order [`pat_from`] reads them.
const COLUMNS: &str = "id, user_id, name, token_hash, display_prefix, scopes, workspace_id, \
                       created_at, expires_at, last_used_at, revoked_at";

/// A personal access token as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPat {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// Lower-case hex SHA-256 of the whole token.
    pub token_hash: String,
    /// What listings show of the token (its fixed prefix and a few characters).
    pub display_prefix: String,
    /// The JSON list of `{path, methods}` scopes.
    pub scopes: String,
    pub workspace_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What a new token row holds besides its generated id.
pub struct NewPat<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub display_prefix: &'a str,
    pub scopes: &'a str,
    pub workspace_id: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

fn pat_from(row: &AnyRow) -> Result<StoredPat, StoreError> {
    Ok(StoredPat {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        token_hash: row.try_get(3)?,
        display_prefix: row.try_get(4)?,
        scopes: row.try_get(5)?,
        workspace_id: row.try_get(6)?,
        created_at: row.try_get(7)?,
        expires_at: row.try_get(8)?,
        last_used_at: row.try_get(9)?,
        revoked_at: row.try_get(10)?,
    })
}

impl Store {
    /// Stores a new token and announces it to the replicas, in one transaction.
    /// `NotFound` when the user does not exist.
    pub async fn create_pat(&self, new: &NewPat<'_>) -> Result<StoredPat, StoreError> {
        let id = new_id();
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO personal_access_tokens (id, user_id, name, token_hash, display_prefix, \
             scopes, workspace_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        )))
        .bind(&id)
        .bind(new.user_id)
        .bind(new.name)
        .bind(new.token_hash)
        .bind(new.display_prefix)
        .bind(new.scopes)
        .bind(new.workspace_id)
        .bind(new.created_at)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        record(&mut tx, EventKind::Pat, &id, new.created_at, None).await?;
        tx.commit().await?;
        pat_from(&row)
    }

    /// One token by id, revoked or not.
    pub async fn pat(&self, id: &str) -> Result<Option<StoredPat>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM personal_access_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pat_from).transpose()
    }

    /// A user's tokens that are neither revoked nor expired at `now`, oldest first.
    pub async fn pats_of_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<StoredPat>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM personal_access_tokens WHERE user_id = $1 \
             AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, id"
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pat_from).collect()
    }

    /// Every token that is neither revoked nor expired at `now`: the index's start.
    pub async fn live_pats(&self, now: i64) -> Result<Vec<StoredPat>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM personal_access_tokens \
             WHERE revoked_at IS NULL AND expires_at > $1"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pat_from).collect()
    }

    /// Revokes a token, if `owner` is `None` (an admin) or owns it, and announces it.
    /// `NotFound` for an unknown id, another user's token or one already revoked.
    pub async fn revoke_pat(
        &self,
        id: &str,
        owner: Option<&str>,
        now: i64,
    ) -> Result<StoredPat, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE personal_access_tokens SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3) \
             RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        record(&mut tx, EventKind::Pat, id, now, None).await?;
        tx.commit().await?;
        pat_from(&row)
    }

    /// Records when tokens were last used, from the index's batch; never moves a time back.
    pub async fn touch_pats(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE personal_access_tokens SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
