//! `rate_limit_store` and `rate_limit_sync`: the Redis server replicas share their route,
//! refresh and `/switch` counts through, and how often they synchronize with it. The
//! URL's shape is checked here, at load; whether the server answers is learnt at run
//! time, and a server that does not answer only makes the limits per replica again.

use std::time::Duration;

use super::yaml::{Fields, Problems};
use super::{parse_duration, store_url, RateLimitStore};

/// How often replicas synchronize when `rate_limit_sync` is absent.
pub const DEFAULT_SYNC: Duration = Duration::from_millis(100);
/// Shorter costs Redis a round trip per replica more often than it buys accuracy.
const MIN_SYNC: Duration = Duration::from_millis(10);
/// Longer lets a client overshoot by more than a second's worth of its requests.
const MAX_SYNC: Duration = Duration::from_secs(1);

const SHAPE: &str = "redis://[user:password@]host[:port][/db]";

/// Reads both top-level keys; `None` when there is no store (limits stay per replica).
pub(super) fn read(top: &Fields, p: &mut Problems) -> Option<RateLimitStore> {
    let sync = top.get("rate_limit_sync").and_then(|f| {
        let d = f.parsed(p, parse_duration)?;
        if !(MIN_SYNC..=MAX_SYNC).contains(&d) {
            f.fail(p, "must be between 10ms and 1s");
            return None;
        }
        Some(d)
    });
    let Some(field) = top.get("rate_limit_store") else {
        if sync.is_some() {
            p.warn(
                &top.spot_of("rate_limit_sync"),
                "has no effect without rate_limit_store",
            );
        }
        return None;
    };
    let url = field.parsed(p, |url| check_url(url).map(|()| url.to_owned()))?;
    Some(RateLimitStore {
        url,
        sync: sync.unwrap_or(DEFAULT_SYNC),
    })
}

/// Accepts `redis://[user:password@]host[:port][/db]` and nothing else, so a typo is a
/// load error rather than a replica that silently counts alone.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let shown = store_url::redact(url);
    let Some(rest) = url.strip_prefix("redis://") else {
        let why = if url.starts_with("rediss://") {
            "TLS to Redis (rediss://) is not supported; reach it over a private network"
        } else {
            "expected a redis:// URL"
        };
        return Err(format!("unsupported URL \"{shown}\": {why} ({SHAPE})"));
    };
    let bad = |what: &str| format!("invalid URL \"{shown}\": {what} ({SHAPE})");
    if rest.contains(['?', '#']) {
        return Err(bad("no query or fragment is allowed"));
    }
    // The credentials end at the last '@', as a password may hold one.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(bad("the database must be a number, like /0"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("expected :port after ]"))?,
                    ),
                ),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("missing or malformed host"));
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => Err(bad("the port must be 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_of_every_accepted_shape_pass() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://127.0.0.1",
            "redis://redis.internal:6380",
            "redis://redis.internal/3",
            "redis://:s3cret@redis.internal:6379/1",
            "redis://user:p@ss@redis.internal:6379/1",
            "redis://[::1]:6379/2",
            "redis://[::1]",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_urls_are_refused_naming_the_problem_without_the_password() {
        let cases = [
            ("http://127.0.0.1:6379", "expected a redis:// URL"),
            (
                "rediss://h:6379",
                "TLS to Redis (rediss://) is not supported",
            ),
            ("127.0.0.1:6379", "expected a redis:// URL"),
            ("redis://", "missing or malformed host"),
            ("redis://:6379/0", "missing or malformed host"),
            ("redis://h:0/0", "the port must be 1-65535"),
            ("redis://h:65536", "the port must be 1-65535"),
            ("redis://h:port", "the port must be 1-65535"),
            ("redis://h:6379/zero", "the database must be a number"),
            ("redis://h:6379/0?timeout=1", "no query or fragment"),
            ("redis://[::1:6379", "unclosed [ in the host"),
            ("redis://:hunter2@h:99999/0", "the port must be 1-65535"),
        ];
        for (url, why) in cases {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains(SHAPE), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }
}
