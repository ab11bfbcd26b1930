//! The TOTP second factor's state: the sealed secret and last accepted time step per
//! user, single-use recovery codes, and the short-lived tickets between a password and
//! a code. Every single-use rule is one conditional write, so two replicas racing on
//! the same code or ticket cannot both win.

use sqlx::Row;

use super::{Sealed, Store, StoreError};

/// A user's authenticator as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTotp {
    pub sealed: Sealed,
    /// `None` while enrollment waits for its first code.
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
}

impl Store {
    /// Starts (or restarts) an enrollment with a new sealed secret. `Conflict` when the
    /// user already has a confirmed authenticator; `NotFound` for an unknown user.
    pub async fn put_pending_totp(
        &self,
        user: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO mfa_totp (user_id, sealed_secret, kek_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             kek_id = excluded.kek_id, created_at = excluded.created_at, last_step = 0 \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user)
        .bind(&sealed.text)
        .bind(&sealed.kek_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// The user's authenticator, pending or confirmed.
    pub async fn totp(&self, user: &str) -> Result<Option<StoredTotp>, StoreError> {
        let row = sqlx::query(
            "SELECT sealed_secret, kek_id, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredTotp {
            sealed: Sealed {
                text: row.try_get(0)?,
                kek_id: row.try_get(1)?,
            },
            confirmed_at: row.try_get(2)?,
            last_step: row.try_get(3)?,
        }))
    }

    /// Every authenticator whose secret is not sealed under key-encryption key `kek_id`.
    pub async fn totp_sealed_elsewhere(
        &self,
        kek_id: &str,
    ) -> Result<Vec<(String, Sealed)>, StoreError> {
        let rows =
            sqlx::query("SELECT user_id, sealed_secret, kek_id FROM mfa_totp WHERE kek_id <> $1")
                .bind(kek_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let sealed = Sealed {
                    text: r.try_get(1)?,
                    kek_id: r.try_get(2)?,
                };
                Ok((r.try_get(0)?, sealed))
            })
            .collect()
    }

    /// Replaces the user's sealed secret with `new` only while it is still `old`, so a
    /// re-enrollment racing a rewrap keeps its own secret; whether it was replaced.
    pub async fn reseal_totp(
        &self,
        user: &str,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mfa_totp SET sealed_secret = $1, kek_id = $2 \
             WHERE user_id = $3 AND sealed_secret = $4 AND kek_id = $5",
        )
        .bind(&new.text)
        .bind(&new.kek_id)
        .bind(user)
        .bind(&old.text)
        .bind(&old.kek_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Accepts time step `step` for the user once: false when it (or a later one) was
    /// already used, so a code cannot be replayed within its window, on any replica.
    pub async fn use_totp_step(&self, user: &str, step: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE mfa_totp SET last_step = $1 WHERE user_id = $2 AND last_step < $1")
                .bind(step)
                .bind(user)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Activates a pending authenticator and replaces the recovery codes with `codes`
    /// (their hashes). False when there was no pending enrollment.
    pub async fn confirm_totp(
        &self,
        user: &str,
        codes: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = $1 WHERE user_id = $2 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        for hash in codes {
            sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Uses one recovery code (by hash) once; false when unknown or already used.
    pub async fn use_recovery_code(
        &self,
        user: &str,
        hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the authenticator and its recovery codes; false when there was none.
    pub async fn delete_totp(&self, user: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a ticket (by hash) for `user`, scoped to `workspace`, until `expires_at`.
    pub async fn create_mfa_ticket(
        &self,
        hash: &str,
        user: &str,
        workspace: Option<&str>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_tickets (hash, user_id, workspace_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user)
        .bind(workspace)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The (user, workspace) of an unused, unexpired ticket.
    pub async fn mfa_ticket(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, workspace_id FROM mfa_tickets \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Uses a ticket once; false when it was used, expired or unknown.
    pub async fn consume_mfa_ticket(&self, hash: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mfa_tickets SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes tickets past their expiry; run periodically.
    pub async fn purge_mfa_tickets(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM mfa_tickets WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
