//! Rate limits (SPEC §6): token buckets kept as one timestamp per key, in a sharded map
//! with a hard cap, so memory stays bounded however many client addresses churn through.
//!
//! Each key holds its GCRA "theoretical arrival time" (TAT): a bucket of `count` tokens
//! refilled at `count` per `per`. A key whose TAT has passed is a full bucket, so it can
//! be dropped at any time without changing a decision; that is what `sweep` and the
//! eviction on a full shard rely on. The rate is passed on every check rather than stored,
//! so a config reload that changes a limit applies at once to existing keys.

use crate::config::Rate;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Independent locks; a power of two so a hash picks one with a mask.
const SHARDS: usize = 16;

/// A refused attempt: how long until one more would be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up and never 0.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// One family of limits (say "login per IP"), keyed by anything hashable.
/// Keys are stored as 64-bit keyed hashes: fixed-size entries, no client text kept.
pub struct Limiter {
    shards: Vec<Mutex<HashMap<u64, u64>>>,
    per_shard: usize,
    hasher: RandomState,
    epoch: Instant,
}

impl Limiter {
    /// A limiter remembering at most about `capacity` keys at once.
    pub fn new(capacity: usize) -> Limiter {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Counts one attempt for `key` at `now` under `rate`; `Err` when over the limit
    /// (the refused attempt is not counted).
    pub fn check(&self, key: impl Hash, rate: &Rate, now: Instant) -> Result<(), Limited> {
        let hash = self.hash(key);
        let now = self.nanos(now);
        let count = u64::from(rate.count.max(1));
        let per = u64::try_from(rate.per.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let interval = (per / count).max(1);
        // A full bucket admits `count` at once: the TAT may run this far ahead of now.
        let tolerance = per.saturating_sub(interval);
        let mut shard = self.shard(hash);
        let tat = shard.get(&hash).copied().unwrap_or(0).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(Limited {
                retry_after: Duration::from_nanos(ahead - tolerance),
            });
        }
        if !shard.contains_key(&hash) && shard.len() >= self.per_shard {
            make_room(&mut shard, now, self.per_shard);
        }
        shard.insert(hash, tat + interval);
        Ok(())
    }

    /// Drops every key whose bucket is full again; returns how many keys remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let now = self.nanos(now);
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                shard.retain(|_, tat| *tat > now);
                shard.len()
            })
            .sum()
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, HashMap<u64, u64>> {
        // The low bits pick the shard; SHARDS is a power of two.
        lock(&self.shards[(hash as usize) & (SHARDS - 1)])
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A poisoned shard only means another thread panicked mid-update of plain integers.
fn lock(m: &Mutex<HashMap<u64, u64>>) -> MutexGuard<'_, HashMap<u64, u64>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees one slot in a full shard: first every full bucket, else the key nearest to full
/// (the one whose limit matters least), so a flood of new addresses cannot grow memory.
fn make_room(shard: &mut HashMap<u64, u64>, now: u64, limit: usize) {
    shard.retain(|_, tat| *tat > now);
    if shard.len() < limit {
        return;
    }
    if let Some(victim) = shard.iter().min_by_key(|(_, tat)| **tat).map(|(k, _)| *k) {
        shard.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, per_secs: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(per_secs),
        }
    }

    #[test]
    fn a_full_bucket_admits_count_then_refuses_with_the_wait_for_one_slot() {
        let limiter = Limiter::new(100);
        let t0 = Instant::now();
        let r = rate(3, 60);
        for _ in 0..3 {
            assert_eq!(limiter.check("ip", &r, t0), Ok(()));
        }
        let refused = limiter.check("ip", &r, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert_eq!(refused.retry_after_secs(), 20);
        // Other keys are independent.
        assert_eq!(limiter.check("other", &r, t0), Ok(()));
        // One slot frees after per/count.
        assert_eq!(
            limiter.check("ip", &r, t0 + Duration::from_secs(20)),
            Ok(())
        );
        assert!(limiter
            .check("ip", &r, t0 + Duration::from_secs(20))
            .is_err());
        // After a whole period the bucket is full again.
        let later = t0 + Duration::from_secs(80);
        for _ in 0..3 {
            assert_eq!(limiter.check("ip", &r, later), Ok(()));
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limited = Limited {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(limited.retry_after_secs(), 1);
        let limited = Limited {
            retry_after: Duration::from_millis(2_500),
        };
        assert_eq!(limited.retry_after_secs(), 3);
    }

    #[test]
    fn memory_stays_bounded_when_keys_churn() {
        let limiter = Limiter::new(64);
        let t0 = Instant::now();
        let r = rate(5, 60);
        for i in 0..10_000u32 {
            let _ = limiter.check(i, &r, t0);
        }
        assert!(limiter.len() <= 64 + SHARDS, "{}", limiter.len());
    }

    #[test]
    fn sweep_forgets_keys_whose_bucket_is_full_again() {
        let limiter = Limiter::new(100);
        let t0 = Instant::now();
        let r = rate(2, 10);
        limiter.check("a", &r, t0).unwrap();
        limiter.check("b", &r, t0 + Duration::from_secs(8)).unwrap();
        assert_eq!(limiter.sweep(t0 + Duration::from_secs(9)), 1);
        assert_eq!(limiter.sweep(t0 + Duration::from_secs(20)), 0);
        assert!(limiter.is_empty());
    }
}
