//! Limits shared by replicas through Redis (`rate_limit_store`), without Redis on the
//! request path. Each replica decides from its own buckets, as without a store; every
//! `sync` interval a background task pushes the admissions it made since the last push,
//! per key, to Redis, which adds them to the cluster's GCRA time for that key (one Lua
//! script, on Redis's clock), and the answer replaces the local bucket's time. So a
//! replica's view of a key is the whole cluster's as of its last sync plus its own
//! admissions since; what it cannot see is what the other replicas admitted in the
//! meantime, which is the overshoot docs/deployment.md ("Overshoot bound") bounds. An overshoot
//! moves the cluster's time ahead, so it is paid back by later refusals.
//!
//! When Redis does not answer, the limiters stop counting for it and decide alone
//! (per replica), with one log line and `portcullis_rate_limit_store_fallbacks_total`;
//! the task reconnects every second and sharing resumes by itself.

use super::{Delta, KeyHash, Limiter};
use crate::config::{store_url, RateLimitStore};
use crate::metrics::METRICS;
use hmac::{Hmac, Mac};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};
use sha2::Sha256;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// Adds each key's admissions to its stored TAT (microseconds on Redis's clock, a full
/// bucket when absent or past) and answers how far ahead of now each TAT now is. The key
/// expires when its bucket is full again, so Redis holds only keys in use.
const PUSH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[2 * i - 1]) * tonumber(ARGV[2 * i])
  local ahead = tat - now
  if ahead > 0 then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil(ahead / 1000))
  end
  out[i] = ahead
end
return out
";
/// Keys per script call, so one call never holds Redis for long.
const BATCH: usize = 512;
/// How often a store that does not answer is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Connecting and each call give up after this; the limits then fall back.
const TIMEOUT: Duration = Duration::from_secs(1);
/// With nothing to push for this long, a PING keeps the up/down state true.
const PING_AFTER: Duration = Duration::from_secs(5);

/// The shared store and the limiters counted in it. Build the limiters with
/// [`SharedLimits::limiter`], then spawn [`SharedLimits::run`] on a runtime.
pub struct SharedLimits {
    client: Client,
    /// The URL with its password masked, for logs.
    shown: String,
    sync: Duration,
    k0: u64,
    k1: u64,
    limiters: Vec<(&'static str, Limiter)>,
}

impl SharedLimits {
    /// Checks nothing over the network: an unreachable store is found (and fallen back
    /// from) by `run`. `secret` must be equal on every replica (the key set's refresh
    /// secret): it keys the bucket names, so Redis never sees a client address or user id.
    pub fn new(store: &RateLimitStore, secret: &[u8]) -> Result<SharedLimits, String> {
        let shown = store_url::redact(&store.url);
        let client = Client::open(store.url.as_str())
            .map_err(|e| format!("rate_limit_store {shown} is not usable: {e}"))?;
        let (k0, k1) = name_keys(secret);
        Ok(SharedLimits {
            client,
            shown,
            sync: store.sync,
            k0,
            k1,
            limiters: Vec::new(),
        })
    }

    /// A limiter whose buckets are shared by every replica's limiter of the same `name`.
    pub fn limiter(&mut self, name: &'static str, capacity: usize) -> Limiter {
        let limiter = Limiter::with_keys(capacity, KeyHash::Shared(self.k0, self.k1));
        let handle = Limiter {
            core: std::sync::Arc::clone(&limiter.core),
        };
        self.limiters.push((name, handle));
        limiter
    }

    /// Synchronizes every `sync` interval for as long as the runtime lives.
    pub async fn run(self) {
        log::info!(
            "rate limits shared through {} (synchronized every {:?})",
            self.shown,
            self.sync
        );
        let mut conn: Option<MultiplexedConnection> = None;
        let mut state = State::Unknown;
        let mut retry_at = Instant::now();
        let mut last_call = Instant::now();
        let mut deltas = Vec::new();
        let mut ticker = tokio::time::interval(self.sync);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = match conn.as_mut() {
                Some(c) => self.sync_once(c, &mut deltas, &mut last_call).await,
                None if Instant::now() < retry_at => continue,
                None => self.connect().await.map(|c| {
                    conn = Some(c);
                }),
            };
            match result {
                Ok(()) => state = self.up(state),
                Err(e) => {
                    conn = None;
                    retry_at = Instant::now() + RECONNECT_EVERY;
                    state = self.down(state, &e);
                }
            }
        }
    }

    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }

    /// Pushes every limiter's admissions and writes the cluster's answer back.
    async fn sync_once(
        &self,
        conn: &mut MultiplexedConnection,
        deltas: &mut Vec<Delta>,
        last_call: &mut Instant,
    ) -> RedisResult<()> {
        let started = Instant::now();
        let mut called = false;
        for (name, limiter) in &self.limiters {
            deltas.clear();
            limiter.take_deltas(deltas);
            for chunk in deltas.chunks(BATCH) {
                let aheads: Vec<i64> = push(name, chunk).query_async(conn).await?;
                let at = Instant::now();
                for (delta, ahead) in chunk.iter().zip(aheads) {
                    let ahead = Duration::from_micros(u64::try_from(ahead).unwrap_or(0));
                    limiter.apply(delta.hash, ahead, at);
                }
                called = true;
            }
        }
        if called {
            METRICS
                .rate_limit_sync_duration
                .observe(started.elapsed().as_secs_f64());
        } else if last_call.elapsed() >= PING_AFTER {
            redis::cmd("PING").query_async::<()>(conn).await?;
            called = true;
        }
        if called {
            *last_call = Instant::now();
        }
        Ok(())
    }

    fn up(&self, was: State) -> State {
        if was != State::Up {
            if was == State::Down {
                log::info!(
                    "rate_limit_store {} answers again: limits are shared by the replicas",
                    self.shown
                );
            }
            self.set_counting(true);
            METRICS.rate_limit_store_up.set(1);
        }
        State::Up
    }

    fn down(&self, was: State, e: &redis::RedisError) -> State {
        if was != State::Down {
            log::warn!(
                "rate_limit_store {} does not answer ({e}): route, refresh and /switch limits \
                 are counted per replica until it does",
                self.shown
            );
            self.set_counting(false);
            METRICS.rate_limit_store_up.set(0);
            METRICS.rate_limit_store_fallbacks.inc();
        } else {
            log::debug!("rate_limit_store {} still does not answer: {e}", self.shown);
        }
        State::Down
    }

    fn set_counting(&self, on: bool) {
        for (_, limiter) in &self.limiters {
            limiter.set_counting(on);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Unknown,
    Up,
    Down,
}

/// One script call adding `chunk`'s admissions to the buckets of limiter `name`.
fn push(name: &str, chunk: &[Delta]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(PUSH).arg(chunk.len());
    for delta in chunk {
        cmd.arg(bucket_name(name, delta.hash));
    }
    for delta in chunk {
        // Microseconds, at least 1: Lua numbers are doubles, exact to 2^53 µs.
        cmd.arg(delta.count).arg((delta.step / 1_000).max(1));
    }
    cmd
}

/// `portcullis:rl:routes:0123456789abcdef`.
fn bucket_name(limiter: &str, hash: u64) -> String {
    format!("portcullis:rl:{limiter}:{hash:016x}")
}

/// The SipHash keys naming buckets: HMAC-SHA256(secret, label), so they are equal on
/// every replica holding the secret and reveal nothing of it.
fn name_keys(secret: &[u8]) -> (u64, u64) {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"portcullis shared rate limits v1");
    let bytes = mac.finalize().into_bytes();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    (word(0), word(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn store() -> RateLimitStore {
        RateLimitStore {
            url: "redis://127.0.0.1:1/0".into(),
            sync: Duration::from_millis(100),
        }
    }

    #[test]
    fn replicas_with_one_secret_name_a_clients_bucket_alike_and_others_do_not() {
        let name = |secret: &[u8]| {
            let mut shared = SharedLimits::new(&store(), secret).unwrap();
            let limiter = shared.limiter("routes", 100);
            limiter.core.hash(("/api/x", ("ip", "203.0.113.7")))
        };
        assert_eq!(name(b"one secret"), name(b"one secret"));
        assert_ne!(name(b"one secret"), name(b"another secret"));
        let shown = bucket_name("routes", name(b"one secret"));
        assert!(shown.starts_with("portcullis:rl:routes:"), "{shown}");
        assert!(!shown.contains("203.0.113.7"));
    }

    #[test]
    fn admissions_are_pushed_once_and_the_clusters_answer_replaces_the_bucket() {
        let mut shared = SharedLimits::new(&store(), b"s").unwrap();
        let limiter = shared.limiter("routes", 100);
        let rate = Rate {
            count: 10,
            per: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        // Not counting (the store never answered): nothing to push.
        limiter.check("k", &rate, t0).unwrap();
        let mut deltas = Vec::new();
        limiter.take_deltas(&mut deltas);
        assert!(deltas.is_empty());

        limiter.set_counting(true);
        for _ in 0..3 {
            limiter.check("k", &rate, t0).unwrap();
        }
        limiter.take_deltas(&mut deltas);
        let hash = limiter.core.hash("k");
        let step = 1_000_000_000;
        assert_eq!(
            deltas,
            vec![Delta {
                hash,
                count: 3,
                step
            }]
        );
        deltas.clear();
        limiter.take_deltas(&mut deltas);
        assert!(deltas.is_empty(), "pushed once");

        // One more admission after the push was taken; then the cluster answers that the
        // bucket is 9 s ahead (other replicas used 6 slots): with the later admission on
        // top, it is full.
        limiter.check("k", &rate, t0).unwrap();
        limiter.apply(hash, Duration::from_secs(9), t0);
        let refused = limiter.check("k", &rate, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        limiter.take_deltas(&mut deltas);
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].count, 1);
    }
}
