//! The demo `echo` upstream as a child process, and reading what it says it received.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::eventually;
use super::process::{capture, Lines};

/// The `echo` upstream, started on a free port; killed on drop.
pub struct Echo {
    pub addr: SocketAddr,
    child: Child,
    lines: Lines,
}

impl Echo {
    /// Spawns the echo binary on 127.0.0.1:0 and waits (≤ 10 s) for its `listening on` line.
    pub fn start() -> Echo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the echo binary");
        let (tx, rx) = mpsc::channel();
        let lines = capture(child.stdout.take().expect("echo stdout is piped"), Some(tx));
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("echo did not print its `listening on` line within 10 s");
            });
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first echo line: {first:?}"));
        Echo { addr, child, lines }
    }

    /// Every request the echo has logged so far, parsed. The echo logs a request before it
    /// answers, but this harness reads the pipe on a thread, so right after a response use
    /// `wait_seen` or `eventually` rather than asserting on `seen` directly.
    pub fn seen(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("echo lines lock poisoned");
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn seen_count(&self) -> usize {
        self.seen().len()
    }

    /// Waits (≤ 5 s) until at least `n` requests were logged, then returns them all.
    pub fn wait_seen(&self, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(5), || self.seen_count() >= n);
        let seen = self.seen();
        assert!(
            seen.len() >= n,
            "echo saw {} requests, expected at least {n}: {seen:#?}",
            seen.len()
        );
        seen
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values the upstream received for header `name` (case-insensitive), read from an echo
/// response body (`{"headers": [["Name", "value"], ...]}`), in order.
pub fn echoed_header_values(echo_body: &Value, name: &str) -> Vec<String> {
    let pairs = echo_body["headers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    pairs
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .filter_map(|pair| pair[1].as_str().map(str::to_string))
        .collect()
}
