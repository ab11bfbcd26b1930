//! Integration-test harness: starts the real `portcullis` and `echo` binaries and talks raw
//! HTTP/1.1 to them. One module per job, all re-exported here, so a test says `use common::*`:
//!
//! - `process`: a running gateway (`Gateway`) and one-shot CLI runs (`portcullis`);
//! - `upstream`: the `echo` upstream (`Echo`) and what it received;
//! - `http`: the raw HTTP/1.1 client (`request`, `get`, `raw`, `Conn`, `Response`);
//! - `jwt`: HS256 tokens over raw JSON, base64url, SHA-256 and HMAC;
//! - `fixtures`: the config and tokens most tests share; `auth`: helpers for the auth
//!   endpoints; `recorder`: a raw-socket upstream; `postgres`: schemas and a cuttable relay;
//!   `peers`: curl, h2load and the Python venv (raw HTTP/2 frames, a gRPC server).
//!
//! The HTTP client is std only on purpose: tests send malformed and smuggling requests as
//! raw bytes, and an HTTP client crate would refuse to send them or would repair them.
//! Every test binary uses a different subset of this module, hence the module-wide allow.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod auth;
mod fixtures;
mod http;
mod jwt;
mod peers;
pub mod postgres;
mod process;
pub mod recorder;
pub mod smtp;
mod upstream;
// Not every test binary uses every part.
#[allow(unused_imports)]
pub use auth::*;
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use jwt::*;
#[allow(unused_imports)]
pub use peers::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use upstream::*;

/// The JWT secret every gateway gets unless a test overrides `JWT_SECRET`: 32 random bytes
/// in hex (`openssl rand -hex 32`), as the gateway's strength check wants.
pub const TEST_SECRET: &str = "9f4c2a7e1b8d3f60c5e2a9b47d1f8e03a6c4b2d9e7f1a3c5b8d0e2f4a6c9b1d3";

/// A free loopback port: bind :0, read the port, release it. Racy in principle, fine on a test box.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local addr of a bound listener")
}

/// A temp dir path no other test uses (not created).
pub fn fresh_temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "portcullis-test-{}-{n}-{nanos}",
        std::process::id()
    ))
}

/// Writes `contents` to `dir/name` and returns the path (for configs passed to `portcullis check`).
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

/// Calls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = f();
        if ok || Instant::now() >= deadline {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
