//! A bounded memory of recently verified tokens, so a client repeating its token
//! does not pay for an asymmetric signature check on every request.
//!
//! Only tokens that passed verification get in, so invalid tokens cannot churn it.
//! The whole token is the key (compared byte for byte, not by a hash that could
//! collide), and an entry is good until its token expires or its key stops
//! verifying, whichever is first. Revocation is not cached: the caller checks it
//! after every `verify`, cached or not.
//!
//! Set-associative: a token's signature hashes (SipHash with a per-process random
//! key, so nobody can aim tokens at one set) to one of `SETS` small sets of `WAYS`
//! entries, each behind its own mutex; no lock covers the whole cache.

use crate::authn::Identity;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::{Arc, Mutex};

const SETS: usize = 1024;
const WAYS: usize = 4;
/// Longer tokens are verified every time rather than held in memory.
const MAX_CACHED_LEN: usize = 2048;
/// How many trailing bytes pick a token's set: an HS256 signature is 43.
const TAIL: usize = 48;

struct Entry {
    token: Box<str>,
    /// Shared so a hit clones a pointer under the lock and the strings after it.
    identity: Arc<Identity>,
    /// The unix seconds at which verification gives this same answer.
    valid: Range<u64>,
}

#[derive(Default)]
struct Set {
    entries: [Option<Entry>; WAYS],
    /// The way evicted next when no entry is free or expired (round robin).
    next: usize,
}

/// At most `SETS * WAYS` verified tokens.
pub struct Cache {
    sets: Box<[Mutex<Set>]>,
    hasher: RandomState,
}

impl Cache {
    pub fn new() -> Cache {
        Cache {
            sets: (0..SETS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn set(&self, token: &str) -> std::sync::MutexGuard<'_, Set> {
        // Only the tail is hashed: it is the signature, which differs between any
        // two tokens that verify, so it spreads them as well as the whole token
        // would, at a fraction of the hashing on every request.
        let tail = &token.as_bytes()[token.len().saturating_sub(TAIL)..];
        let index = (self.hasher.hash_one(tail) as usize) % SETS;
        // A panic while holding the lock leaves at worst a stale entry behind,
        // which still carries its own expiry; keep using the set.
        self.sets[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The identity `token` was verified to carry, while it is still valid at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Identity> {
        if token.len() > MAX_CACHED_LEN {
            return None;
        }
        let found = {
            let mut set = self.set(token);
            let slot = set
                .entries
                .iter_mut()
                .find(|e| e.as_ref().is_some_and(|e| &*e.token == token))?;
            match slot {
                Some(entry) if entry.valid.contains(&now) => Some(entry.identity.clone()),
                // Before its span (a clock stepped back) is rare: drop it as well.
                _ => {
                    *slot = None;
                    None
                }
            }
        };
        found.map(|id| Identity::clone(&id))
    }

    /// Remembers that `token` verifies to `identity` at any time in `valid`.
    pub fn insert(&self, token: &str, identity: &Identity, valid: Range<u64>) {
        if token.len() > MAX_CACHED_LEN {
            return;
        }
        let entry = Entry {
            token: token.into(),
            identity: Arc::new(identity.clone()),
            valid,
        };
        let mut set = self.set(token);
        let way = set
            .entries
            .iter()
            .position(|e| e.as_ref().is_none_or(|e| &*e.token == token))
            .unwrap_or_else(|| {
                let way = set.next;
                set.next = (way + 1) % WAYS;
                way
            });
        set.entries[way] = Some(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sub: &str, exp: u64) -> Identity {
        Identity {
            sub: sub.into(),
            more_roles: Vec::new(),
            external: None,
            role: Some("viewer".into()),
            workspace: None,
            plan: None,
            jti: format!("j-{sub}"),
            sid: None,
            iat: 0,
            exp,
        }
    }

    #[test]
    fn a_cached_token_is_returned_only_within_its_validity() {
        let cache = Cache::new();
        cache.insert("a.b.c", &id("u1", 100), 10..105);
        assert_eq!(cache.get("a.b.c", 9), None);
        cache.insert("a.b.c", &id("u1", 100), 10..105);
        assert_eq!(cache.get("a.b.c", 10).map(|i| i.sub), Some("u1".into()));
        assert_eq!(cache.get("a.b.c", 104).map(|i| i.sub), Some("u1".into()));
        assert_eq!(cache.get("a.b.c", 105), None);
        // The expired entry is gone, not merely hidden.
        assert_eq!(cache.get("a.b.c", 50), None);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = Cache::new();
        cache.insert("a.b.c", &id("u1", 100), 10..105);
        assert_eq!(cache.get("a.b.d", 50), None);
        assert_eq!(cache.get("a.b.c ", 50), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = Cache::new();
        for i in 0..(SETS * WAYS * 3) {
            cache.insert(&format!("t{i}"), &id("u", 100), 10..105);
        }
        let held: usize = cache
            .sets
            .iter()
            .map(|s| s.lock().unwrap().entries.iter().flatten().count())
            .sum();
        assert!(held <= SETS * WAYS, "{held}");
        // The newest insertion is always found.
        let last = format!("t{}", SETS * WAYS * 3 - 1);
        assert!(cache.get(&last, 50).is_some());
    }

    #[test]
    fn oversized_tokens_are_not_cached() {
        let cache = Cache::new();
        let long = "x".repeat(MAX_CACHED_LEN + 1);
        cache.insert(&long, &id("u", 100), 10..105);
        assert_eq!(cache.get(&long, 50), None);
    }
}
