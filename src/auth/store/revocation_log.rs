//! The revocation log: a snapshot for warming the in-memory set, an ordered event feed
//! that other replicas poll, and purging of rows that can no longer matter.

use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::Row;

use super::{secs, Store, StoreError};

/// What a revocation event revokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// One access token, by `jti`.
    Jti,
    /// One session, by family id (`sid`).
    Family,
    /// Every token of a user issued before the event's `at` (`not_before`).
    User,
    /// A personal access token was created or revoked (by token id): reload it.
    Pat,
    /// A user's state changed without revoking anything (re-enabled, MFA reset): reload
    /// what the in-memory token index holds about them.
    Account,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Jti => "jti",
            EventKind::Family => "family",
            EventKind::User => "user",
            EventKind::Pat => "pat",
            EventKind::Account => "account",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        match s {
            "jti" => Some(EventKind::Jti),
            "family" => Some(EventKind::Family),
            "user" => Some(EventKind::User),
            "pat" => Some(EventKind::Pat),
            "account" => Some(EventKind::Account),
            _ => None,
        }
    }
}

/// One revocation, in commit order. Applying events is idempotent, so re-reading an
/// overlapping range is harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing in commit order; poll with the largest one seen.
    pub seq: i64,
    pub kind: EventKind,
    /// The jti, family id or user id.
    pub subject: String,
    /// When it took effect: revocation time, or the user's new `not_before`.
    pub at: i64,
    /// For `Jti` only: the token's expiry, after which the entry is useless.
    pub until: Option<i64>,
}

/// Everything needed to build the in-memory revocation set at startup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Poll `events_after(cursor)` from here; events up to it are reflected below.
    pub cursor: i64,
    /// Revoked access tokens not yet expired: (jti, expires_at).
    pub jtis: Vec<(String, i64)>,
    /// Families revoked recently enough that their access tokens may still be live.
    pub families: Vec<(String, i64)>,
    /// Users whose `not_before` still affects live access tokens.
    pub users: Vec<(String, i64)>,
}

/// Row counts removed by [`Store::purge_expired`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub jtis: u64,
    pub families: u64,
    pub refresh_tokens: u64,
    pub events: u64,
}

/// Appends an event inside the caller's write transaction. Incrementing the single-row
/// clock serialises revoking transactions, so `seq` order is commit order and a poller
/// can never see seq N+1 committed while N is still pending.
pub(super) async fn record(
    conn: &mut AnyConnection,
    kind: EventKind,
    subject: &str,
    at: i64,
    until: Option<i64>,
) -> Result<i64, StoreError> {
    let seq: i64 =
        sqlx::query_scalar("UPDATE revocation_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO revocation_events (seq, kind, subject, effective_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(kind.as_str())
    .bind(subject)
    .bind(at)
    .bind(until)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

impl Store {
    /// Reads the revocations that can still affect an access token at `now`, given that
    /// no access token lives longer than `max_access_ttl`. Call at startup, then poll
    /// [`Store::events_after`] from `snapshot.cursor`.
    pub async fn revocation_snapshot(
        &self,
        now: i64,
        max_access_ttl: Duration,
    ) -> Result<Snapshot, StoreError> {
        // The cursor is read first: anything committed later is replayed by the event feed.
        let cursor: i64 = sqlx::query_scalar("SELECT seq FROM revocation_clock WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let horizon = now.saturating_sub(secs(max_access_ttl));
        let jtis = pairs(
            &self.pool,
            "SELECT jti, expires_at FROM revoked_jtis WHERE expires_at > $1",
            now,
        )
        .await?;
        let families = pairs(
            &self.pool,
            "SELECT id, revoked_at FROM families WHERE revoked_at IS NOT NULL AND revoked_at > $1",
            horizon,
        )
        .await?;
        let users = pairs(
            &self.pool,
            "SELECT id, not_before FROM users WHERE not_before > $1",
            horizon,
        )
        .await?;
        Ok(Snapshot {
            cursor,
            jtis,
            families,
            users,
        })
    }

    /// Up to `limit` events with `seq > after`, oldest first. Replicas poll this every
    /// few seconds with the largest `seq` they have applied.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, effective_at, expires_at FROM revocation_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let kind = EventKind::parse(&kind).ok_or_else(|| {
                StoreError::Other(format!("unknown revocation event kind {kind:?}"))
            })?;
            events.push(Event {
                seq: row.try_get("seq")?,
                kind,
                subject: row.try_get("subject")?,
                at: row.try_get("effective_at")?,
                until: row.try_get("expires_at")?,
            });
        }
        Ok(events)
    }

    /// Deletes what can no longer matter: expired jti revocations, sessions that are past
    /// their absolute expiry or were revoked longer than `max_access_ttl` ago (with all their
    /// refresh tokens), and events no replica needs any more. Run periodically.
    pub async fn purge_expired(
        &self,
        now: i64,
        max_access_ttl: Duration,
    ) -> Result<Purged, StoreError> {
        let horizon = now.saturating_sub(secs(max_access_ttl));
        let mut tx = self.write_tx().await?;
        let jtis = sqlx::query("DELETE FROM revoked_jtis WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // A revoked family stays until its access tokens have expired, so the snapshot can
        // still report it; until then its used tokens also keep reuse detection working.
        let refresh_tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE family_id IN (SELECT id FROM families \
             WHERE (revoked_at IS NULL AND expires_at <= $1) OR revoked_at <= $2)",
        )
        .bind(now)
        .bind(horizon)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let families = sqlx::query(
            "DELETE FROM families WHERE (revoked_at IS NULL AND expires_at <= $1) OR revoked_at <= $2",
        )
        .bind(now)
        .bind(horizon)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query(
            "DELETE FROM revocation_events WHERE \
             (kind = 'jti' AND expires_at <= $1) OR (kind <> 'jti' AND effective_at <= $2)",
        )
        .bind(now)
        .bind(horizon)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Purged {
            jtis,
            families,
            refresh_tokens,
            events,
        })
    }
}

async fn pairs(
    pool: &sqlx::AnyPool,
    sql: &'static str,
    bound: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(sql).bind(bound).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push((row.try_get(0)?, row.try_get(1)?));
    }
    Ok(out)
}
