//! Rate limits every replica shares (login per IP and per email, signup per IP): the same
//! GCRA token bucket as `crate::rate_limit`, kept as one row per key and advanced by a
//! single atomic upsert, so concurrent attempts on different replicas cannot both take
//! the last token.

use std::time::Duration;

use super::{Store, StoreError};
use crate::config::Rate;
use crate::rate_limit::Limited;

impl Store {
    /// Counts one attempt for `key` at `now_ms` (unix milliseconds) under `rate`.
    /// `Ok(Err(limited))` when over the limit; a refused attempt is not counted.
    /// `key` should be a keyed hash, never a client's address or email in clear.
    pub async fn hit_rate_limit(
        &self,
        key: &str,
        rate: &Rate,
        now_ms: i64,
    ) -> Result<Result<(), Limited>, StoreError> {
        let (interval, tolerance) = bucket(rate);
        // A missing row is a full bucket. An existing one is advanced only while its TAT
        // runs at most `tolerance` ahead of now; otherwise the WHERE leaves it untouched
        // and nothing is returned. The row lock (PostgreSQL) or the write lock (SQLite)
        // serialises concurrent attempts on the same key.
        let admitted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (key) DO UPDATE SET \
                 tat = (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3 \
             WHERE rate_limits.tat - $2 <= $4 \
             RETURNING tat",
        )
        .bind(key)
        .bind(now_ms)
        .bind(interval)
        .bind(tolerance)
        .fetch_optional(&self.pool)
        .await?;
        if admitted.is_some() {
            return Ok(Ok(()));
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        // The row may have been purged in between: then the next attempt would pass.
        let wait = tat.map_or(1, |tat| (tat - now_ms - tolerance).max(1));
        Ok(Err(Limited {
            retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(1)),
        }))
    }

    /// Deletes every bucket that is full again at `now_ms`; forgetting one changes no
    /// decision. Run every few seconds to keep the table as small as the live keys.
    pub async fn purge_rate_limits(&self, now_ms: i64) -> Result<u64, StoreError> {
        let purged = sqlx::query("DELETE FROM rate_limits WHERE tat <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(purged)
    }
}

/// (emission interval, burst tolerance) in milliseconds: `count` per `per` admits a burst
/// of `count`, then one every `per / count`.
fn bucket(rate: &Rate) -> (i64, i64) {
    let per = i64::try_from(rate.per.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let interval = (per / i64::from(rate.count.max(1))).max(1);
    (interval, per - interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_a_burst_of_count_then_one_per_interval() {
        let rate = Rate {
            count: 10,
            per: Duration::from_secs(60),
        };
        assert_eq!(bucket(&rate), (6_000, 54_000));
        let one = Rate {
            count: 1,
            per: Duration::from_secs(1),
        };
        assert_eq!(bucket(&one), (1_000, 0));
    }
}
