//! In-memory revocation state consulted on every proxied request: no I/O, no global lock.
//!
//! Sharded maps (`DashMap`) keep readers from contending, and an "anything revoked at all"
//! flag lets an idle set answer with a single atomic load. Entries carry an `until` time
//! after which they cannot matter (the affected tokens have expired) so `sweep` keeps memory
//! bounded. All updates merge monotonically, so snapshot and event feed may overlap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::store::{Event, EventKind, Snapshot};

/// Revoked access tokens, sessions and per-user watermarks. Share one behind an `Arc`.
#[derive(Debug)]
pub struct Revocations {
    /// jti -> until.
    jtis: DashMap<String, u64>,
    /// family id (sid) -> until.
    families: DashMap<String, u64>,
    /// user id -> (not_before, until).
    users: DashMap<String, (u64, u64)>,
    /// False only while all maps are empty; lets `is_revoked` skip the map lookups.
    any: AtomicBool,
    /// Longest access-token lifetime; bounds how long a session or user revocation matters.
    max_access_ttl: u64,
}

impl Revocations {
    /// An empty set for access tokens that live at most `max_access_ttl`.
    pub fn new(max_access_ttl: Duration) -> Revocations {
        Revocations {
            jtis: DashMap::new(),
            families: DashMap::new(),
            users: DashMap::new(),
            any: AtomicBool::new(false),
            max_access_ttl: max_access_ttl.as_secs(),
        }
    }

    /// Per-request check of a validated access token: revoked if its `jti` was revoked,
    /// its session (`sid`) was revoked, or it was issued before the user's `not_before`.
    pub fn is_revoked(&self, jti: &str, sid: Option<&str>, sub: &str, iat: u64) -> bool {
        if !self.any.load(Ordering::SeqCst) {
            return false;
        }
        if self.jtis.contains_key(jti) {
            return true;
        }
        if sid.is_some_and(|sid| self.families.contains_key(sid)) {
            return true;
        }
        self.users
            .get(sub)
            .is_some_and(|entry| iat < entry.value().0)
    }

    /// Revokes one access token until `until` (its `exp`).
    pub fn revoke_jti(&self, jti: &str, until: u64) {
        merge_until(&self.jtis, jti, until);
        self.mark_nonempty();
    }

    /// Revokes a session until `until` (revocation time + longest access-token lifetime).
    pub fn revoke_family(&self, sid: &str, until: u64) {
        merge_until(&self.families, sid, until);
        self.mark_nonempty();
    }

    /// Rejects the user's tokens issued before `at`, remembered until `until`. A later
    /// watermark wins; an earlier one (a stale event) is ignored.
    pub fn set_not_before(&self, user: &str, at: u64, until: u64) {
        self.users
            .entry(user.to_owned())
            .and_modify(|entry| {
                if at > entry.0 {
                    *entry = (at, until.max(entry.1));
                }
            })
            .or_insert((at, until));
        self.mark_nonempty();
    }

    /// Merges a store snapshot into the set (startup, or resync after a long outage).
    pub fn load(&self, snapshot: &Snapshot) {
        for (jti, expires_at) in &snapshot.jtis {
            self.revoke_jti(jti, unsigned(*expires_at));
        }
        for (sid, revoked_at) in &snapshot.families {
            self.revoke_family(sid, self.horizon(*revoked_at));
        }
        for (user, not_before) in &snapshot.users {
            self.set_not_before(user, unsigned(*not_before), self.horizon(*not_before));
        }
    }

    /// Applies events from the store's feed; safe to re-apply.
    pub fn apply(&self, events: &[Event]) {
        for event in events {
            match event.kind {
                EventKind::Jti => {
                    let until = event.until.unwrap_or(event.at);
                    self.revoke_jti(&event.subject, unsigned(until));
                }
                EventKind::Family => self.revoke_family(&event.subject, self.horizon(event.at)),
                EventKind::User => {
                    let at = unsigned(event.at);
                    self.set_not_before(&event.subject, at, self.horizon(event.at));
                }
                // The token index (`auth::pat`) follows these.
                EventKind::Pat | EventKind::Account => {}
            }
        }
    }

    /// Drops entries whose `until` has passed; run every few seconds. Returns how many.
    pub fn sweep(&self, now: u64) -> usize {
        let before = self.len();
        self.jtis.retain(|_, until| *until > now);
        self.families.retain(|_, until| *until > now);
        self.users.retain(|_, (_, until)| *until > now);
        // Clear the flag first, then re-raise it if anything is left: an insert racing with
        // this either is seen by the emptiness check or raises the flag after the clear.
        self.any.store(false, Ordering::SeqCst);
        if !(self.jtis.is_empty() && self.families.is_empty() && self.users.is_empty()) {
            self.any.store(true, Ordering::SeqCst);
        }
        before.saturating_sub(self.len())
    }

    /// Number of entries held, for metrics.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.families.len() + self.users.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mark_nonempty(&self) {
        self.any.store(true, Ordering::SeqCst);
    }

    /// Time after which a revocation effective at `at` can no longer affect a live token.
    fn horizon(&self, at: i64) -> u64 {
        unsigned(at).saturating_add(self.max_access_ttl)
    }
}

/// Inserts `key` or extends its `until`; never shortens an existing revocation.
fn merge_until(map: &DashMap<String, u64>, key: &str, until: u64) {
    map.entry(key.to_owned())
        .and_modify(|current| *current = (*current).max(until))
        .or_insert(until);
}

/// Store timestamps are signed; anything before the epoch is treated as the epoch.
fn unsigned(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(900);

    #[test]
    fn an_empty_set_revokes_nothing() {
        let set = Revocations::new(TTL);
        assert!(!set.is_revoked("j", Some("s"), "u", 0));
        assert_eq!(set.len(), 0);
        assert!(set.is_empty());
    }

    #[test]
    fn jti_family_and_not_before_each_revoke() {
        let set = Revocations::new(TTL);
        set.revoke_jti("j1", 2_000);
        set.revoke_family("s1", 2_000);
        set.set_not_before("u1", 1_000, 1_900);
        assert!(set.is_revoked("j1", None, "other", 5_000));
        assert!(set.is_revoked("j2", Some("s1"), "other", 5_000));
        assert!(!set.is_revoked("j2", Some("s2"), "other", 5_000));
        assert!(!set.is_revoked("j2", None, "other", 5_000));
        assert!(set.is_revoked("j2", None, "u1", 999));
        assert!(!set.is_revoked("j2", None, "u1", 1_000));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_stale_not_before_never_lowers_the_watermark() {
        let set = Revocations::new(TTL);
        set.set_not_before("u", 1_000, 1_900);
        set.set_not_before("u", 500, 1_400);
        assert!(set.is_revoked("j", None, "u", 999));
    }

    #[test]
    fn sweep_drops_only_entries_past_their_until_and_resets_the_fast_path() {
        let set = Revocations::new(TTL);
        set.revoke_jti("old", 100);
        set.revoke_jti("new", 300);
        set.revoke_family("s", 100);
        set.set_not_before("u", 50, 100);
        assert_eq!(set.sweep(200), 3);
        assert_eq!(set.len(), 1);
        assert!(set.is_revoked("new", None, "u", 0));
        assert!(!set.is_revoked("old", Some("s"), "u", 0));
        assert_eq!(set.sweep(300), 1);
        assert!(set.is_empty());
        assert!(!set.any.load(Ordering::SeqCst));
        set.revoke_jti("again", 1_000);
        assert!(set.is_revoked("again", None, "u", 0));
    }

    #[test]
    fn load_and_apply_add_the_access_ttl_to_session_and_user_revocations() {
        let set = Revocations::new(TTL);
        set.load(&Snapshot {
            cursor: 3,
            jtis: vec![("j".into(), 1_500)],
            families: vec![("s".into(), 1_000)],
            users: vec![("u".into(), 1_000)],
        });
        set.apply(&[Event {
            seq: 4,
            kind: EventKind::Family,
            subject: "s2".into(),
            at: 1_200,
            until: None,
        }]);
        assert!(set.is_revoked("j", None, "x", 0));
        assert!(set.is_revoked("x", Some("s2"), "x", 0));
        assert_eq!(set.sweep(1_499), 0);
        // j at its exp (1_500); s and u at 1_000 + 900.
        assert_eq!(set.sweep(1_900), 3);
        assert_eq!(set.sweep(2_100), 1); // s2 at 1_200 + 900
        assert!(set.is_empty());
    }
}
