//! Real peers from outside the crate: tools on PATH (curl, h2load) and the Python venv that
//! .ci/run makes under target/h2-tools (Python's `h2` for raw frames, `grpcio` for gRPC).
//! `PORTCULLIS_TEST_HTTP2` (set by .ci/run) makes a missing one a failure instead of a skip.

use super::process::{capture, Lines};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `path` when it exists; else `None` (the test is skipped, saying so) unless CI requires it.
pub fn http2_tool(path: PathBuf) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("PORTCULLIS_TEST_HTTP2").is_none(),
        "{} is missing but PORTCULLIS_TEST_HTTP2 is set: .ci/run installs it",
        path.display()
    );
    println!(
        "skipped: {} not found (.ci/run installs it)",
        path.display()
    );
    None
}

/// A program on PATH, as [`http2_tool`].
pub fn on_path(name: &str) -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    http2_tool(found.unwrap_or_else(|| PathBuf::from(name)))
}

/// The Python of the venv .ci/run installs `h2` and `grpcio` into.
pub fn python() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    http2_tool(target.join("h2-tools/bin/python"))
}

/// The gRPC server of `tests/grpc/peer.py` (grpcio), on a free port; killed on drop.
pub struct GrpcServer {
    pub port: u16,
    child: Child,
    lines: Lines,
}

impl GrpcServer {
    pub fn start() -> Option<GrpcServer> {
        GrpcServer::start_with(&[])
    }

    /// Over TLS, with the `cert.pem` and `key.pem` in `dir`.
    pub fn start_tls(dir: &std::path::Path) -> Option<GrpcServer> {
        GrpcServer::start_with(&[dir.to_str().expect("a UTF-8 path")])
    }

    fn start_with(args: &[&str]) -> Option<GrpcServer> {
        let mut child = Command::new(python()?)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/peer.py"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the gRPC server");
        let (tx, rx) = mpsc::channel();
        let lines = capture(child.stdout.take().expect("piped stdout"), Some(tx));
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the gRPC server's listening line");
        let port = first
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .expect("listening on PORT");
        Some(GrpcServer { port, child, lines })
    }

    /// What its handlers printed so far (`cancelled`, `slept`).
    pub fn events(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
