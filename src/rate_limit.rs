//! Rate limits (docs/auth-api.md, Rate limits): token buckets kept as one timestamp
//! per key, in a sharded map with a hard cap, so memory stays bounded however many
//! client addresses churn through.
//!
//! Each key holds its GCRA "theoretical arrival time" (TAT): a bucket of `count` tokens
//! refilled at `count` per `per`. A key whose TAT has passed is a full bucket, so it can
//! be dropped at any time without changing a decision; that is what `sweep` and the
//! eviction on a full shard rely on. The rate is passed on every check rather than stored,
//! so a config reload that changes a limit applies at once to existing keys.
//!
//! A limiter made by [`shared::SharedLimits`] also counts, per key, the admissions not yet
//! pushed to the replicas' common store; a background task pushes them and writes the
//! cluster's TAT back into the bucket. The check itself stays the same local decision.

pub mod shared;

use crate::config::Rate;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Shared with the sync task when the limiter is shared by replicas.
    core: Arc<Core>,
}

struct Core {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    keys: KeyHash,
    epoch: Instant,
    /// True while the shared store answers: admissions are then counted for the next sync.
    counting: AtomicBool,
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<u64, Bucket>,
    /// Keys admitted since the last sync, each once (its bucket's `dirty` says so).
    dirty: Vec<u64>,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Nanoseconds since `Core::epoch`.
    tat: u64,
    /// Admissions the shared store has not been told of yet.
    unsynced: u32,
    /// The emission interval of the last admission, in nanoseconds, for the push.
    step: u64,
    /// Listed in the shard's `dirty`.
    dirty: bool,
}

/// How a key becomes the 64-bit name of its bucket.
enum KeyHash {
    /// Per process: nobody can predict or compare names.
    Local(RandomState),
    /// SipHash-2-4 under a secret every replica holds, so replicas name a client's bucket
    /// alike (the store sees only these names).
    Shared(u64, u64),
}

/// One key's admissions since the last sync, taken for the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    pub hash: u64,
    pub count: u32,
    /// Emission interval in nanoseconds.
    pub step: u64,
}

impl Limiter {
    /// A limiter remembering at most about `capacity` keys at once.
    pub fn new(capacity: usize) -> Limiter {
        Limiter::with_keys(capacity, KeyHash::Local(RandomState::new()))
    }

    fn with_keys(capacity: usize, keys: KeyHash) -> Limiter {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Limiter {
            core: Arc::new(Core {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard,
                keys,
                epoch: Instant::now(),
                counting: AtomicBool::new(false),
            }),
        }
    }

    /// Counts one attempt for `key` at `now` under `rate`; `Err` when over the limit
    /// (the refused attempt is not counted).
    pub fn check(&self, key: impl Hash, rate: &Rate, now: Instant) -> Result<(), Limited> {
        let core = &*self.core;
        let hash = core.hash(key);
        let now = core.nanos(now);
        let count = u64::from(rate.count.max(1));
        let per = u64::try_from(rate.per.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let interval = (per / count).max(1);
        // A full bucket admits `count` at once: the TAT may run this far ahead of now.
        let tolerance = per.saturating_sub(interval);
        let mut guard = core.shard(hash);
        let shard = &mut *guard;
        let known = shard.buckets.get(&hash).copied();
        let tat = known.map_or(0, |b| b.tat).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(Limited {
                retry_after: Duration::from_nanos(ahead - tolerance),
            });
        }
        if known.is_none() && shard.buckets.len() >= core.per_shard {
            make_room(&mut shard.buckets, now, core.per_shard);
        }
        let bucket = shard.buckets.entry(hash).or_default();
        bucket.tat = tat + interval;
        if core.counting.load(Ordering::Relaxed) {
            bucket.unsynced = bucket.unsynced.saturating_add(1);
            bucket.step = interval;
            if !bucket.dirty {
                bucket.dirty = true;
                shard.dirty.push(hash);
            }
        }
        Ok(())
    }

    /// Drops every key whose bucket is full again; returns how many keys remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let now = self.core.nanos(now);
        self.core
            .shards
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                shard.buckets.retain(|_, b| b.tat > now || b.dirty);
                shard.buckets.len()
            })
            .sum()
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.core.shards.iter().map(|s| lock(s).buckets.len()).sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts or stops counting admissions for the shared store (stopped: per replica).
    pub(crate) fn set_counting(&self, on: bool) {
        self.core.counting.store(on, Ordering::Relaxed);
    }

    /// Moves every key's unsynced admissions into `out`, zeroing them in the buckets.
    pub(crate) fn take_deltas(&self, out: &mut Vec<Delta>) {
        for shard in &self.core.shards {
            let mut guard = lock(shard);
            let shard = &mut *guard;
            for hash in shard.dirty.drain(..) {
                let Some(b) = shard.buckets.get_mut(&hash) else {
                    continue; // evicted meanwhile
                };
                if b.dirty && b.unsynced > 0 {
                    out.push(Delta {
                        hash,
                        count: b.unsynced,
                        step: b.step,
                    });
                }
                b.dirty = false;
                b.unsynced = 0;
            }
        }
    }

    /// The cluster's TAT for `hash` was `ahead` of `at` after our push: the bucket now
    /// holds it, plus what this replica admitted since the push was taken.
    pub(crate) fn apply(&self, hash: u64, ahead: Duration, at: Instant) {
        let core = &*self.core;
        let base = core
            .nanos(at)
            .saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX));
        if let Some(b) = core.shard(hash).buckets.get_mut(&hash) {
            b.tat = base.saturating_add(u64::from(b.unsynced).saturating_mul(b.step));
        }
    }
}

impl Core {
    fn hash(&self, key: impl Hash) -> u64 {
        match &self.keys {
            KeyHash::Local(state) => state.hash_one(key),
            KeyHash::Shared(k0, k1) => {
                // SipHash-2-4 with chosen keys; std deprecated this type only in favour of
                // RandomState, whose keys cannot be chosen (and so differ per replica).
                #[allow(deprecated)]
                let mut h = std::hash::SipHasher::new_with_keys(*k0, *k1);
                key.hash(&mut h);
                h.finish()
            }
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The low bits pick the shard; SHARDS is a power of two.
        lock(&self.shards[(hash as usize) & (SHARDS - 1)])
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A poisoned shard only means another thread panicked mid-update of plain integers.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees one slot in a full shard: first every full bucket not awaiting a sync, else the
/// key nearest to full (the one whose limit matters least), so a flood of new addresses
/// cannot grow memory.
fn make_room(buckets: &mut HashMap<u64, Bucket>, now: u64, limit: usize) {
    buckets.retain(|_, b| b.tat > now || b.dirty);
    if buckets.len() < limit {
        return;
    }
    if let Some(victim) = buckets.iter().min_by_key(|(_, b)| b.tat).map(|(k, _)| *k) {
        buckets.remove(&victim);
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
