//! A bounded memory of recent verification answers, so a client repeating its
//! token does not pay for an asymmetric signature check on every request.
//!
//! Two are kept per key set, so one kind of answer cannot churn the other: one of
//! verified tokens (with their identity), and one of tokens whose signature a
//! known key refused (a flood of one forged RS256 token would otherwise cost a
//! signature check per request). The whole token is the key (compared byte for byte, not by a hash that could
//! collide), and an entry is good until its token expires or its key stops
//! verifying, whichever is first. Revocation is not cached: the caller checks it
//! after every `verify`, cached or not.
//!
//! Set-associative: a token's signature hashes (SipHash with a per-process random
//! key, so nobody can aim tokens at one set) to one of `SETS` small sets of `WAYS`
//! entries, each behind its own mutex; no lock covers the whole cache.

use super::TokenError;
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

struct Entry<V> {
    token: Box<str>,
    value: V,
    /// The unix seconds at which verification gives this same answer.
    valid: Range<u64>,
}

struct Set<V> {
    entries: [Option<Entry<V>>; WAYS],
    /// The way evicted next when no entry is free or expired (round robin).
    next: usize,
}

impl<V> Default for Set<V> {
    fn default() -> Self {
        Set {
            entries: std::array::from_fn(|_| None),
            next: 0,
        }
    }
}

/// At most `SETS * WAYS` tokens, each with the answer `V` that verifying it gives.
struct Cache<V> {
    sets: Box<[Mutex<Set<V>>]>,
    hasher: RandomState,
}

impl<V: Clone> Cache<V> {
    fn new() -> Cache<V> {
        Cache {
            sets: (0..SETS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn set(&self, token: &str) -> std::sync::MutexGuard<'_, Set<V>> {
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

    /// The answer remembered for `token`, while it is still the answer at `now`.
    /// (For identities, `V` is an `Arc`: a hit clones a pointer under the lock.)
    fn get(&self, token: &str, now: u64) -> Option<V> {
        if token.len() > MAX_CACHED_LEN {
            return None;
        }
        let mut set = self.set(token);
        let slot = set
            .entries
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| &*e.token == token))?;
        match slot {
            Some(entry) if entry.valid.contains(&now) => Some(entry.value.clone()),
            // Before its span (a clock stepped back) is rare: drop it as well.
            _ => {
                *slot = None;
                None
            }
        }
    }

    /// Remembers that verifying `token` answers `value` at any time in `valid`.
    fn insert(&self, token: &str, value: V, valid: Range<u64>) {
        if token.len() > MAX_CACHED_LEN {
            return;
        }
        let entry = Entry {
            token: token.into(),
            value,
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

/// The answers remembered for one key set: identities of verified tokens, and
/// the tokens whose signature one of its keys refused. A refusal is remembered
/// only when it cannot change while the key set lives: an unknown kid may be a
/// key that is about to be fetched, and claims checks depend on the clock.
pub struct Answers {
    verified: Cache<Arc<Identity>>,
    refused: Cache<TokenError>,
}

impl Answers {
    pub fn new() -> Answers {
        Answers {
            verified: Cache::new(),
            refused: Cache::new(),
        }
    }

    /// The remembered answer for `token` at `now`, or else `verify`'s, which is
    /// the identity and the span of `now` over which it holds.
    pub fn verify(
        &self,
        token: &str,
        now: u64,
        verify: impl FnOnce() -> Result<(Identity, Range<u64>), TokenError>,
    ) -> Result<Arc<Identity>, TokenError> {
        if let Some(id) = self.verified.get(token, now) {
            return Ok(id);
        }
        if let Some(refused) = self.refused.get(token, now) {
            return Err(refused);
        }
        match verify() {
            Ok((id, valid)) => {
                let id = Arc::new(id);
                self.verified.insert(token, Arc::clone(&id), valid);
                Ok(id)
            }
            Err(e) => {
                if e == TokenError::Signature {
                    self.refused.insert(token, e, 0..u64::MAX);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sub: &str, exp: u64) -> Arc<Identity> {
        Arc::new(Identity {
            jti: format!("j-{sub}"),
            exp,
            ..Identity::with_role(sub, "viewer")
        })
    }

    #[test]
    fn a_cached_token_is_returned_only_within_its_validity() {
        let cache: Cache<Arc<Identity>> = Cache::new();
        cache.insert("a.b.c", id("u1", 100), 10..105);
        assert_eq!(cache.get("a.b.c", 9), None);
        cache.insert("a.b.c", id("u1", 100), 10..105);
        assert_eq!(
            cache.get("a.b.c", 10).map(|i| i.sub.clone()),
            Some("u1".into())
        );
        assert_eq!(
            cache.get("a.b.c", 104).map(|i| i.sub.clone()),
            Some("u1".into())
        );
        assert_eq!(cache.get("a.b.c", 105), None);
        // The expired entry is gone, not merely hidden.
        assert_eq!(cache.get("a.b.c", 50), None);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache: Cache<Arc<Identity>> = Cache::new();
        cache.insert("a.b.c", id("u1", 100), 10..105);
        assert_eq!(cache.get("a.b.d", 50), None);
        assert_eq!(cache.get("a.b.c ", 50), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache: Cache<Arc<Identity>> = Cache::new();
        for i in 0..(SETS * WAYS * 3) {
            cache.insert(&format!("t{i}"), id("u", 100), 10..105);
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
        let cache: Cache<Arc<Identity>> = Cache::new();
        let long = "x".repeat(MAX_CACHED_LEN + 1);
        cache.insert(&long, id("u", 100), 10..105);
        assert_eq!(cache.get(&long, 50), None);
    }

    #[test]
    fn only_signature_refusals_are_remembered_and_never_in_the_verified_memory() {
        let answers = Answers::new();
        let calls = std::cell::Cell::new(0);
        let verify = |answer: Result<(Identity, Range<u64>), TokenError>| {
            calls.set(calls.get() + 1);
            answer
        };
        for _ in 0..3 {
            let got = answers.verify("forged", 50, || verify(Err(TokenError::Signature)));
            assert_eq!(got.map(|i| i.sub.clone()), Err(TokenError::Signature));
        }
        assert_eq!(calls.get(), 1, "a refused signature is checked once");
        // Refusals that may change (a kid not fetched yet, the clock) are asked again.
        for e in [
            TokenError::UnknownKey,
            TokenError::NotYetValid,
            TokenError::Expired,
        ] {
            for _ in 0..2 {
                let got = answers.verify("other", 50, || verify(Err(e)));
                assert_eq!(got.map(|i| i.sub.clone()), Err(e));
            }
        }
        assert_eq!(calls.get(), 7);
        // The refused token never reads as verified, and a verified one is remembered.
        let ok = answers.verify("good", 50, || {
            verify(Ok(((*id("u1", 100)).clone(), 10..105)))
        });
        assert_eq!(ok.map(|i| i.sub.clone()), Ok("u1".into()));
        let again = answers.verify("good", 60, || verify(Err(TokenError::Signature)));
        assert_eq!(again.map(|i| i.sub.clone()), Ok("u1".into()));
        assert_eq!(calls.get(), 8);
    }
}
