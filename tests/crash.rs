//! `kill -9` in the middle of a burst of refreshes. After a restart on the same
//! store, no rotation a client saw is lost, and no used refresh token works again.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 6;
/// Long enough that a restart under a loaded CI machine fits inside it.
const GRACE: Duration = Duration::from_secs(10);

/// One refresh on a fresh connection; `None` when the gateway is gone
/// (refused, reset, or closed before a whole answer).
fn try_refresh(addr: SocketAddr, token: &str) -> Option<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST /api/auth/refresh HTTP/1.1\r\nHost: {addr}\r\nCookie: {REFRESH_COOKIE}={token}\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    parse_responses(&bytes).into_iter().next()
}

/// Refreshes in a loop until the gateway stops answering; returns the chain of
/// refresh tokens whose rotation the client saw (each one answered 200 with the next).
fn refresh_until_gone(addr: SocketAddr, first: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut chain = vec![first];
    while !stop.load(Ordering::SeqCst) {
        let current = chain.last().expect("the chain starts with a token");
        let Some(r) = try_refresh(addr, current) else {
            break;
        };
        assert_eq!(
            r.status,
            200,
            "a refresh failed before the kill: {}",
            r.text()
        );
        chain.push(refresh_cookie(&r).expect("a successor refresh token"));
    }
    chain
}

#[test]
fn kill_9_during_a_refresh_burst_loses_no_rotation_and_revives_no_used_token() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    // The clients refresh as fast as the store allows, from one address: on a
    // fast disk that is past BASE_CONFIG's 1000/min, which is not under test here.
    let config = config_with_auth(&["refresh_grace: 10s"]).replacen(
        "refresh: 1000/min",
        "refresh: 1000000/min",
        1,
    );
    assert!(
        config.contains("refresh: 1000000/min"),
        "BASE_CONFIG's rate_limits line changed"
    );
    let mut gw = Gateway::start_in(dir.clone(), &config, echo.addr, &[]);
    let firsts: Vec<String> = (0..CLIENTS)
        .map(|i| signed_in(gw.addr, &format!("burst{i}@example.com")).2)
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = firsts
        .into_iter()
        .map(|first| {
            let (addr, stop) = (gw.addr, stop.clone());
            std::thread::spawn(move || refresh_until_gone(addr, first, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    gw.signal("KILL");
    let killed_at = Instant::now();
    assert!(
        gw.wait_exit(Duration::from_secs(5)).is_some(),
        "kill -9 did not end it"
    );
    stop.store(true, Ordering::SeqCst);
    let chains: Vec<Vec<String>> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread panicked"))
        .collect();
    let rotations: usize = chains.iter().map(|c| c.len() - 1).sum();
    assert!(
        rotations >= CLIENTS * 3,
        "too few refreshes before the kill: {rotations}"
    );
    eprintln!("{rotations} rotations seen by {CLIENTS} clients before kill -9");
    drop(gw);

    let gw = Gateway::start_in(dir.clone(), &config, echo.addr, &[]);
    assert!(
        killed_at.elapsed() < GRACE,
        "the restart took longer than the grace window, so the check below cannot tell"
    );
    // The newest token each client holds still works: either its last request never
    // committed, or it did and the grace window hands out the same successor.
    let mut continued = Vec::new();
    for chain in &chains {
        let last = chain.last().expect("a chain is never empty");
        let r = refresh(gw.addr, last);
        assert_eq!(
            r.status,
            200,
            "the newest token a client held was lost: {}",
            r.text()
        );
        let next = refresh_cookie(&r).expect("a successor");
        let r = refresh(gw.addr, &next);
        assert_eq!(r.status, 200, "the chain does not go on after the restart");
        continued.push(refresh_cookie(&r).expect("a successor"));
    }

    // Once the grace window is over, every token whose rotation a client saw is
    // spent: presenting one is reuse, which also ends that client's whole family.
    std::thread::sleep(GRACE.saturating_sub(killed_at.elapsed()) + Duration::from_millis(500));
    for (chain, newest) in chains.iter().zip(&continued) {
        // A client whose first refresh was still waiting (SQLite has one writer) at
        // the kill saw no rotation before it; its token was spent after the restart.
        let used = &chain[chain.len().saturating_sub(2)];
        let r = refresh(gw.addr, used);
        assert_eq!(
            r.status, 401,
            "a used refresh token worked again after the crash"
        );
        assert_eq!(
            refresh(gw.addr, newest).status,
            401,
            "reuse did not revoke the family"
        );
        for earlier in &chain[..chain.len().saturating_sub(2)] {
            assert_eq!(refresh(gw.addr, earlier).status, 401);
        }
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
