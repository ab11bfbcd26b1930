//! The account lifecycle in the store: one-time tokens (email verification, password
//! reset) kept only as hashes and claimed with one conditional UPDATE, so of any number of
//! concurrent uses exactly one succeeds; password changes; and the sessions list.

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::revocation_log::{record, EventKind};
use super::rows::{family_from, Family};
use super::sessions::insert_token;
use super::users::end_sessions;
use super::{new_id, Store, StoreError};

/// What a one-time token is for; part of its row, so a token of one kind never works
/// as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

/// Where a session was started, as the sessions list shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    pub user_agent: Option<String>,
    /// The client's /24 (IPv4) or /48 (IPv6), never its full address.
    pub ip_prefix: Option<String>,
}

/// One live session of a user, for `GET /sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub family: Family,
    pub origin: SessionOrigin,
    /// When its newest refresh token was issued (the login, or the last refresh).
    pub last_used_at: i64,
}

/// What a password reset did: whose password, and their new `not_before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    pub user_id: String,
    pub not_before: i64,
}

impl Store {
    /// Like [`Store::start_family`], remembering where the session was started.
    pub async fn start_family_from(
        &self,
        user_id: &str,
        workspace_id: Option<&str>,
        token_hash: &str,
        now: i64,
        expires_at: i64,
        origin: &SessionOrigin,
    ) -> Result<Family, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO families (id, user_id, workspace_id, created_at, expires_at, revoked_at, \
             user_agent, ip_prefix) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7) RETURNING ",
            family_columns!()
        ))
        .bind(new_id())
        .bind(user_id)
        .bind(workspace_id)
        .bind(now)
        .bind(expires_at)
        .bind(origin.user_agent.as_deref())
        .bind(origin.ip_prefix.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        let family = family_from(&row)?;
        insert_token(&mut tx, token_hash, &family.id, now).await?;
        tx.commit().await?;
        Ok(family)
    }

    /// Stores a one-time token (by `tokens::hash`) for `user_id`, sent to `email`. A new
    /// reset token retires the user's older unused ones: only the newest mail works.
    pub async fn insert_account_token(
        &self,
        purpose: Purpose,
        token_hash: &str,
        user_id: &str,
        email: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        if purpose == Purpose::PasswordReset {
            retire_tokens(&mut tx, user_id, purpose, now).await?;
        }
        sqlx::query(
            "INSERT INTO account_tokens (hash, purpose, user_id, email, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(user_id)
        .bind(email)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the token exists, is unused and unexpired: a cheap check before a reset
    /// spends a password hash on it. The claim itself is [`Store::reset_password`].
    pub async fn account_token_live(
        &self,
        purpose: Purpose,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS live FROM account_tokens \
             WHERE hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Uses a verification token: marks the address it was sent to verified (if it is
    /// still the account's) and retires the user's other verification tokens. `Ok(None)`
    /// for an unknown, used or expired token.
    pub async fn verify_email(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some((user_id, email)) = claim(&mut tx, Purpose::VerifyEmail, token_hash, now).await?
        else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE users SET email_verified_at = $1 \
             WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .bind(&email)
        .execute(&mut *tx)
        .await?;
        retire_tokens(&mut tx, &user_id, Purpose::VerifyEmail, now).await?;
        tx.commit().await?;
        Ok(Some(user_id))
    }

    /// Whether the user's current address is verified.
    pub async fn email_verified(&self, user_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT email_verified_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let at: Option<i64> = match row {
            Some(row) => row.try_get("email_verified_at")?,
            None => None,
        };
        Ok(at.is_some())
    }

    /// Uses a reset token: sets the new password, ends every session and access token of
    /// the user (as logout-all does, events included, so every replica refuses them
    /// within its next poll), and counts the address as verified, since the mail reached
    /// it. One transaction. `Ok(None)` for an unknown, used or expired token.
    pub async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<Reset>, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some((user_id, email)) =
            claim(&mut tx, Purpose::PasswordReset, token_hash, now).await?
        else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE users SET password_hash = $1, \
             email_verified_at = CASE WHEN email = $2 THEN COALESCE(email_verified_at, $3) \
             ELSE email_verified_at END WHERE id = $4",
        )
        .bind(password_hash)
        .bind(&email)
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        retire_tokens(&mut tx, &user_id, Purpose::PasswordReset, now).await?;
        let not_before = end_sessions(&mut tx, &user_id, now).await?;
        tx.commit().await?;
        Ok(Some(Reset {
            user_id,
            not_before,
        }))
    }

    /// Sets a new password and ends the user's sessions except `keep` (the caller's own),
    /// each with its revocation event; unused reset tokens die too. Returns the ended
    /// sessions' ids. `Err(NotFound)` for an unknown user.
    pub async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: Option<&str>,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        retire_tokens(&mut tx, user_id, Purpose::PasswordReset, now).await?;
        // Family ids are never empty, so "" keeps nothing.
        let rows = sqlx::query(
            "UPDATE families SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id",
        )
        .bind(now)
        .bind(user_id)
        .bind(keep.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            record(&mut tx, EventKind::Family, &id, now, None).await?;
            ended.push(id);
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// The user's live sessions, newest first.
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            family_columns!(),
            ", user_agent, ip_prefix, \
             (SELECT MAX(t.created_at) FROM refresh_tokens t WHERE t.family_id = families.id) \
             AS last_used_at FROM families \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from).collect()
    }

    /// Ends one of the user's sessions. `Err(NotFound)` when no live session of theirs
    /// has that id (another user's is indistinguishable from none).
    pub async fn end_session(
        &self,
        user_id: &str,
        family_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE families SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(family_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        record(&mut tx, EventKind::Family, family_id, now, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops one-time tokens past their expiry; returns how many.
    pub async fn purge_account_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM account_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Marks a live token of `purpose` used; (user id, email it was sent to), or `None`.
async fn claim(
    conn: &mut AnyConnection,
    purpose: Purpose,
    token_hash: &str,
    now: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "UPDATE account_tokens SET used_at = $1 \
         WHERE hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, email",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some((row.try_get("user_id")?, row.try_get("email")?))),
        None => Ok(None),
    }
}

async fn retire_tokens(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: Purpose,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE account_tokens SET used_at = $1 \
         WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn session_from(row: &AnyRow) -> Result<SessionRow, StoreError> {
    let family = family_from(row)?;
    let last_used_at: Option<i64> = row.try_get("last_used_at")?;
    Ok(SessionRow {
        last_used_at: last_used_at.unwrap_or(family.created_at),
        origin: SessionOrigin {
            user_agent: row.try_get("user_agent")?,
            ip_prefix: row.try_get("ip_prefix")?,
        },
        family,
    })
}
