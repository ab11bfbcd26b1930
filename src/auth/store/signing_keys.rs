//! The signing key set (`crate::keys`) as rows: sealed private keys with their
//! schedule, and one row holding the set's generation and the sealed refresh secret.
//!
//! Every change is one transaction that first moves the generation on from the value
//! the writer read (`UPDATE … WHERE generation = $read`): of two replicas changing the
//! set at once, exactly one does, and the other learns it lost and reads again.
//! Replicas poll the generation alone to learn that the set changed.

use sqlx::Row;

use super::{Store, StoreError};

/// A private key sealed under a key-encryption key, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key-encryption key sealed it (`crate::keys::kek`).
    pub kek_id: String,
    /// base64 of nonce ‖ ciphertext ‖ tag.
    pub text: String,
}

/// One row of `signing_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed: Sealed,
    pub created_at: i64,
    /// When it becomes the signing key (unix seconds).
    pub active_from: i64,
}

/// The whole key set as read at one generation (or later: rows are read after it).
#[derive(Debug, Clone, Default)]
pub struct StoredKeySet {
    pub generation: i64,
    /// In signing order: by `active_from`, then in the order they were added.
    pub keys: Vec<StoredKey>,
    pub refresh_secret: Option<Sealed>,
}

impl StoredKeySet {
    /// True before the first key or refresh secret was written.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.refresh_secret.is_none()
    }
}

/// What one change does to the set; applied whole or not at all.
#[derive(Debug, Clone, Default)]
pub struct KeySetChange {
    pub add: Vec<StoredKey>,
    /// Kids of keys past their window.
    pub remove: Vec<String>,
    /// Keys sealed again under another key-encryption key (`keys rewrap`).
    pub reseal: Vec<(String, Sealed)>,
    pub refresh_secret: Option<Sealed>,
}

impl KeySetChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.reseal.is_empty()
            && self.refresh_secret.is_none()
    }
}

impl Store {
    /// The key set's generation: one small query, polled by every replica.
    pub async fn key_set_generation(&self) -> Result<i64, StoreError> {
        let generation: i64 =
            sqlx::query_scalar("SELECT generation FROM signing_key_set WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(generation)
    }

    /// The key set. The generation is read first, so the rows are at least that new:
    /// a change committed in between shows as a newer generation at the next poll.
    pub async fn key_set(&self) -> Result<StoredKeySet, StoreError> {
        let head = sqlx::query(
            "SELECT generation, sealed_refresh_secret, refresh_kek_id \
             FROM signing_key_set WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let generation: i64 = head.try_get(0)?;
        let refresh_text: Option<String> = head.try_get(1)?;
        let refresh_kek: Option<String> = head.try_get(2)?;
        let rows = sqlx::query(
            "SELECT kid, alg, sealed_key, kek_id, created_at, active_from \
             FROM signing_keys ORDER BY active_from, seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let keys = rows
            .iter()
            .map(|row| {
                Ok(StoredKey {
                    kid: row.try_get(0)?,
                    alg: row.try_get(1)?,
                    sealed: Sealed {
                        text: row.try_get(2)?,
                        kek_id: row.try_get(3)?,
                    },
                    created_at: row.try_get(4)?,
                    active_from: row.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(StoredKeySet {
            generation,
            keys,
            refresh_secret: refresh_text
                .zip(refresh_kek)
                .map(|(text, kek_id)| Sealed { kek_id, text }),
        })
    }

    /// Applies `change` if the set is still at generation `read`, moving it to
    /// `read + 1`; `Ok(false)`, with nothing written, when another writer got there first.
    pub async fn change_key_set(
        &self,
        read: i64,
        change: &KeySetChange,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        // On PostgreSQL a concurrent writer waits for this row's lock and then finds
        // the generation moved; on SQLite the write lock is already ours.
        let moved = sqlx::query(
            "UPDATE signing_key_set SET generation = generation + 1 \
             WHERE id = 1 AND generation = $1",
        )
        .bind(read)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for kid in &change.remove {
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        for key in &change.add {
            sqlx::query(
                "INSERT INTO signing_keys \
                 (kid, alg, sealed_key, kek_id, created_at, active_from, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.sealed.text)
            .bind(&key.sealed.kek_id)
            .bind(key.created_at)
            .bind(key.active_from)
            .bind(read + 1)
            .execute(&mut *tx)
            .await?;
        }
        for (kid, sealed) in &change.reseal {
            sqlx::query("UPDATE signing_keys SET sealed_key = $1, kek_id = $2 WHERE kid = $3")
                .bind(&sealed.text)
                .bind(&sealed.kek_id)
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(secret) = &change.refresh_secret {
            sqlx::query(
                "UPDATE signing_key_set SET sealed_refresh_secret = $1, refresh_kek_id = $2 \
                 WHERE id = 1",
            )
            .bind(&secret.text)
            .bind(&secret.kek_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
