//! Route, refresh and `/switch` limits shared by replicas through Redis (`rate_limit_store`):
//! two real gateway processes on one real Redis admit a limit about once between them, not
//! once each, within the overshoot bound docs/deployment.md states; with Redis unreachable each
//! replica limits on its own, stays ready, and says so once. Needs a Redis at
//! `PORTCULLIS_TEST_REDIS` (default `redis://127.0.0.1:6379`; `.ci/run` starts one) and
//! skips, saying so, without one.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The replicas' sync interval in these tests (`rate_limit_sync`).
const SYNC: Duration = Duration::from_millis(100);
/// Room for a Redis round trip and a late timer on a busy test machine.
const SLACK: Duration = Duration::from_millis(100);

const CONFIG: &str = r#"
listen: "{LISTEN}"
admin_listen: "{ADMIN}"
store: sqlite://data/portcullis.db
rate_limit_store: "{REDIS}"
rate_limit_sync: 100ms
upstreams:
  app: { addrs: ["{UPSTREAM}"], connect_timeout: 1s, read_timeout: 2s }
auth:
  issuer: https://gw.test
  audience: api
  rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 10/min, signup: 1000/min }
roles: [viewer, creator, admin]
routes:
  - { path: /api/auth/**, auth: none }
  - { path: /limited, upstream: app, auth: none, rate_limit: "{LIMIT}" }
"#;

/// `redis://host:port` of the test server, or `None` (after saying why) when it does not
/// answer a PING. Set explicitly (as `.ci/run` does), a Redis that does not answer fails the test instead.
fn redis() -> Option<String> {
    let named = std::env::var("PORTCULLIS_TEST_REDIS")
        .ok()
        .filter(|u| !u.is_empty());
    let url = named
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    let pong = TcpStream::connect(addr).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(buf)
    });
    match pong {
        Ok(buf) if &buf == b"+PONG\r\n" => Some(format!("redis://{addr}")),
        _ if named.is_some() => panic!("PORTCULLIS_TEST_REDIS={url} does not answer PING"),
        _ => {
            println!("skipped: no Redis answers at {url} (set PORTCULLIS_TEST_REDIS)");
            None
        }
    }
}

/// A secret of this run's own: it names the buckets, so runs never share one.
fn fresh_secret() -> String {
    hex(&rand::random::<[u8; 32]>())
}

fn replica(store: &str, limit: &str, echo: &Echo, secret: &str) -> Gateway {
    let yaml = CONFIG.replace("{REDIS}", store).replace("{LIMIT}", limit);
    Gateway::start(&yaml, echo.addr, &[("JWT_SECRET", secret)])
}

/// Waits until the replica's limits are shared (its first sync connected).
fn wait_shared(gw: &Gateway) {
    assert!(
        eventually(Duration::from_secs(5), || metric(
            gw.admin_addr,
            "portcullis_rate_limit_store_up"
        ) == Some(1.0)),
        "limits never shared; stderr:\n{}",
        gw.stderr_text()
    );
}

/// Sends `total` requests, `per_second` of them a second, alternating between the
/// replicas; returns how many were not refused with 429, and the time it took.
fn paced(
    replicas: [&Gateway; 2],
    total: u32,
    per_second: u32,
    send: impl Fn(SocketAddr) -> u16,
) -> (u32, Duration) {
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..total {
        let due = started + Duration::from_secs_f64(f64::from(i) / f64::from(per_second));
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let status = send(replicas[(i % 2) as usize].addr);
        if status != 429 {
            admitted += 1;
        }
    }
    (admitted, started.elapsed())
}

/// docs/deployment.md, Overshoot bound: beyond what one gateway would admit (`count` plus the
/// refill over `elapsed`), each of the other N-1 replicas can add what it admits in two
/// sync intervals plus a round trip, and never more than a full bucket.
fn bound(count: u32, per: Duration, elapsed: Duration, per_replica_rate: f64) -> f64 {
    let single = f64::from(count) + f64::from(count) * elapsed.as_secs_f64() / per.as_secs_f64();
    let blind = per_replica_rate * (2 * SYNC + SLACK).as_secs_f64();
    single + blind.min(single)
}

#[test]
fn two_replicas_admit_a_route_limit_once_between_them_within_the_documented_bound() {
    let Some(redis) = redis() else { return };
    let (echo, secret) = (Echo::start(), fresh_secret());
    let store = format!("{redis}/11");
    let a = replica(&store, "40/min", &echo, &secret);
    let b = replica(&store, "40/min", &echo, &secret);
    wait_shared(&a);
    wait_shared(&b);

    // 240 requests in 3 s, 40 a second to each replica: alone, each would admit 40 (and
    // one refill), 82 in all.
    let (admitted, took) = paced([&a, &b], 240, 80, |addr| get(addr, "/limited", &[]).status);
    let limit = bound(40, Duration::from_secs(60), took, 40.0);
    eprintln!(
        "route limit 40/min, 2 replicas, 80 req/s for {took:?}: {admitted} admitted (bound {limit:.1})"
    );
    assert!(admitted >= 40, "the whole limit is usable: {admitted}");
    assert!(
        f64::from(admitted) <= limit,
        "{admitted} > bound {limit:.1}"
    );
    assert!(admitted <= 60, "well below twice the limit: {admitted}");
}

#[test]
fn refresh_and_switch_limits_are_shared_by_the_replicas() {
    let Some(redis) = redis() else { return };
    let (echo, secret) = (Echo::start(), fresh_secret());
    let store = format!("{redis}/12");
    let a = replica(&store, "1000/min", &echo, &secret);
    let b = replica(&store, "1000/min", &echo, &secret);
    wait_shared(&a);
    wait_shared(&b);

    // refresh: 10/min per IP. An unknown token is refused with 401 once the limit let the
    // attempt through; 20 attempts, 10 a second to each replica.
    let (refreshes, took) = paced([&a, &b], 20, 20, |addr| {
        refresh(addr, "not-a-token-we-issued-not-a-token-we-issue").status
    });
    let limit = bound(10, Duration::from_secs(60), took, 10.0);
    eprintln!("refresh 10/min, 2 replicas: {refreshes} of 20 let through (bound {limit:.1})");
    assert!((10..=13).contains(&refreshes), "{refreshes}");
    assert!(f64::from(refreshes) <= limit);

    // /switch: per user at the refresh rate. The user has no account on either replica's
    // store, so a switch the limit lets through is refused with 401.
    let claims = claims("u-shared", "viewer", "");
    let access = mint_hs256(secret.as_bytes(), HEADER, &claims);
    let bearer = format!("Bearer {access}");
    let (switches, took) = paced([&a, &b], 20, 20, |addr| {
        post(
            addr,
            "/api/auth/switch",
            Some(r#"{"workspace":"acme"}"#),
            &[("Authorization", &bearer)],
        )
        .status
    });
    let limit = bound(10, Duration::from_secs(60), took, 10.0);
    eprintln!("switch 10/min, 2 replicas: {switches} of 20 let through (bound {limit:.1})");
    assert!((10..=13).contains(&switches), "{switches}");
}

#[test]
fn with_redis_unreachable_each_replica_limits_alone_stays_ready_and_says_so_once() {
    // A port nothing listens on.
    let closed = free_addr();
    let store = format!("redis://{closed}/0");
    let (echo, secret) = (Echo::start(), fresh_secret());
    let a = replica(&store, "5/min", &echo, &secret);
    let b = replica(&store, "5/min", &echo, &secret);
    for gw in [&a, &b] {
        let statuses: Vec<u16> = (0..7)
            .map(|_| get(gw.addr, "/limited", &[]).status)
            .collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429], "per replica");
        assert_eq!(get(gw.admin_addr, "/readyz", &[]).status, 200);
    }
    // Several reconnection attempts (one a second) later: still one line, one fallback.
    thread::sleep(Duration::from_millis(2_500));
    for gw in [&a, &b] {
        assert_eq!(get(gw.admin_addr, "/readyz", &[]).status, 200);
        let stderr = gw.stderr_text();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("rate_limit_store"))
            .filter(|l| l.contains("does not answer"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(&format!(
                "rate_limit_store redis://{closed}/0 does not answer"
            )) && lines[0].contains("counted per replica until it does"),
            "{}",
            lines[0]
        );
        let m = |series| metric(gw.admin_addr, series);
        assert_eq!(m("portcullis_rate_limit_store_fallbacks_total"), Some(1.0));
        assert_eq!(m("portcullis_rate_limit_store_up"), Some(0.0));
    }
}

#[test]
fn a_bad_rate_limit_store_is_refused_at_load_naming_line_column_and_key() {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "rate_limit_store: http://cache:6379/0\n",
            "gateway.yaml:5:19: rate_limit_store: unsupported URL \"http://cache:6379/0\": \
             expected a redis:// URL (redis://[user:password@]host[:port][/db])",
        ),
        (
            "rate_limit_store: redis://:hunter2@cache:99999/0\n",
            "gateway.yaml:5:19: rate_limit_store: invalid URL \"redis://:***@cache:99999/0\": \
             the port must be 1-65535",
        ),
        (
            "rate_limit_store: redis://cache/0\nrate_limit_sync: 5s\n",
            "gateway.yaml:6:18: rate_limit_sync: must be between 10ms and 1s",
        ),
    ];
    for (extra, message) in cases {
        let yaml = format!(
            "roles: [viewer]\nauth: {{ issuer: https://gw.test, audience: api }}\n\
             routes:\n  - {{ path: /api/auth/**, auth: none }}\n{extra}"
        );
        let path = write_file(&dir, "gateway.yaml", &yaml);
        let (code, out, err) = portcullis(
            &["check", "-c", path.to_str().unwrap()],
            &[("JWT_SECRET", &fresh_secret())],
        );
        assert_ne!(code, 0, "{out}{err}");
        assert!(err.contains(message), "{extra}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    std::fs::remove_dir_all(dir).ok();
}
