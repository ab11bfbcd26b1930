//! Refresh-token families: login, rotation with a grace window and reuse detection, logout.

use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::Row;

use super::revocation_log::{record, EventKind};
use super::rows::{family_from, user_from, Family, User};
use super::{secs, Store, StoreError};

/// What happened to a presented refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; it is now used and the caller's successor is stored.
    /// Hand the successor token and a fresh access token to the client.
    Rotated { family: Family, user: User },
    /// The token was rotated moments ago (within the grace window) and its successor is
    /// still unused: a retry or a racing duplicate request. Hand out the same successor
    /// (re-derived by the caller); nothing was written.
    Grace { family: Family, user: User },
    /// An already-rotated token was presented again outside the grace window, or an older
    /// one than the immediate predecessor: assume theft. The family is now revoked.
    Reused { family: Family },
    /// Unknown token, or its session is revoked or expired, or the user is disabled.
    Invalid,
}

impl Store {
    /// Login: creates a session (family) and stores its first refresh token, atomically.
    /// `token_hash` is `tokens::hash` of the token handed to the client. `Err(NotFound)`
    /// if the user or workspace does not exist.
    pub async fn start_family(
        &self,
        user_id: &str,
        workspace_id: Option<&str>,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Family, StoreError> {
        let origin = super::SessionOrigin::default();
        self.start_family_from(user_id, workspace_id, token_hash, now, expires_at, &origin)
            .await
    }

    /// Refresh: marks the presented token used and stores `successor_hash` as the family's
    /// newest token, or classifies the request as a grace-window retry, a reuse (which
    /// revokes the family) or invalid. One transaction; of any number of concurrent calls
    /// with the same token exactly one gets `Rotated` and no second successor is ever stored.
    pub async fn rotate(
        &self,
        presented_hash: &str,
        successor_hash: &str,
        now: i64,
        grace: Duration,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.write_tx().await?;
        // The conditional UPDATE is the arbiter: row locks (PostgreSQL) or the database write
        // lock (SQLite) make concurrent callers see the winner's `used_at` and match nothing.
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1, successor_hash = $2 \
             WHERE hash = $3 AND used_at IS NULL AND EXISTS ( \
                 SELECT 1 FROM families f JOIN users u ON u.id = f.user_id \
                 WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL \
                   AND f.expires_at > $1 AND u.disabled = 0) \
             RETURNING family_id",
        )
        .bind(now)
        .bind(successor_hash)
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = claimed {
            let family_id: String = row.try_get("family_id")?;
            insert_token(&mut tx, successor_hash, &family_id, now).await?;
            let (family, user) = family_and_user(&mut tx, &family_id).await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { family, user });
        }

        let row = sqlx::query(
            "SELECT t.family_id, t.used_at, s.hash AS next_hash, s.used_at AS next_used_at \
             FROM refresh_tokens t LEFT JOIN refresh_tokens s ON s.hash = t.successor_hash \
             WHERE t.hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let family_id: String = row.try_get("family_id")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let next_hash: Option<String> = row.try_get("next_hash")?;
        let next_used_at: Option<i64> = row.try_get("next_used_at")?;
        let (family, user) = family_and_user(&mut tx, &family_id).await?;
        if family.revoked_at.is_some() || family.expires_at <= now || user.disabled {
            return Ok(Rotation::Invalid);
        }
        let Some(used_at) = used_at else {
            // Unused yet not claimable means the family check failed between statements.
            return Ok(Rotation::Invalid);
        };
        let successor_is_newest = next_hash.is_some() && next_used_at.is_none();
        if successor_is_newest && now.saturating_sub(used_at) <= secs(grace) {
            return Ok(Rotation::Grace { family, user });
        }
        let family = revoke_family_in(&mut tx, &family_id, now)
            .await?
            .unwrap_or(family);
        tx.commit().await?;
        Ok(Rotation::Reused { family })
    }

    /// Logout: revokes one session. Idempotent for an already revoked family (returns it
    /// unchanged); `Err(NotFound)` for an unknown id.
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> Result<Family, StoreError> {
        let mut tx = self.write_tx().await?;
        let family = match revoke_family_in(&mut tx, family_id, now).await? {
            Some(family) => family,
            None => match family_in(&mut tx, family_id).await? {
                Some(family) => family,
                None => return Err(StoreError::NotFound),
            },
        };
        tx.commit().await?;
        Ok(family)
    }

    /// The session a refresh token (by `tokens::hash`) belongs to, used or not: logout
    /// with a cookie. `Ok(None)` for an unknown token.
    pub async fn family_of_token(&self, token_hash: &str) -> Result<Option<Family>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            family_columns!(),
            " FROM families WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(family_from).transpose()?)
    }

    /// Looks a session up by id (the `sid` claim).
    pub async fn family(&self, family_id: &str) -> Result<Option<Family>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        family_in(&mut conn, family_id).await
    }

    /// Revokes one access token by its `jti` until `expires_at` (its `exp`), after which
    /// the token is rejected for being expired anyway. Idempotent.
    pub async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO revoked_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            record(&mut tx, EventKind::Jti, jti, expires_at, Some(expires_at)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

pub(super) async fn insert_token(
    conn: &mut AnyConnection,
    hash: &str,
    family_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(family_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn family_in(conn: &mut AnyConnection, id: &str) -> Result<Option<Family>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        family_columns!(),
        " FROM families WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(family_from).transpose()?)
}

async fn family_and_user(
    conn: &mut AnyConnection,
    family_id: &str,
) -> Result<(Family, User), StoreError> {
    let family = family_in(conn, family_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(&family.user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((family, user_from(&row)?))
}

/// Revokes a live family and records the event; `None` if it was already revoked or unknown.
async fn revoke_family_in(
    conn: &mut AnyConnection,
    family_id: &str,
    now: i64,
) -> Result<Option<Family>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING ",
        family_columns!()
    ))
    .bind(now)
    .bind(family_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let family = family_from(&row)?;
    record(conn, EventKind::Family, family_id, now, None).await?;
    Ok(Some(family))
}
