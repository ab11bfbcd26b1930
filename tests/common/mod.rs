//! Integration-test harness: starts the real `portcullis` and `echo` binaries and talks raw HTTP/1.1 to them.
//!
//! Only std and serde_json on purpose: tests send malformed and smuggling requests as raw
//! bytes, and an HTTP client crate would refuse to send them or would repair them.
//! Every test binary uses a different subset of this module, hence the module-wide allow.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod auth;
mod fixtures;
pub mod postgres;
pub mod recorder;
#[allow(unused_imports)] // not every test binary uses the fixtures
pub use auth::*;
#[allow(unused_imports)] // not every test binary uses the fixtures
pub use fixtures::*;

/// The JWT secret every gateway gets unless a test overrides `JWT_SECRET`: 32 random bytes
/// in hex (`openssl rand -hex 32`), as the gateway's strength check wants.
pub const TEST_SECRET: &str = "9f4c2a7e1b8d3f60c5e2a9b47d1f8e03a6c4b2d9e7f1a3c5b8d0e2f4a6c9b1d3";

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Lines captured from a child's pipe by a background thread, so the pipe never fills and
/// blocks the child, and tests can inspect output while it runs.
type Lines = Arc<Mutex<Vec<String>>>;

fn capture(pipe: impl Read + Send + 'static, first_line: Option<mpsc::Sender<String>>) -> Lines {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut first_line = first_line;
        let mut raw = Vec::new();
        // read_until rather than lines(): a non-UTF-8 line must not end the capture.
        while reader
            .read_until(b'\n', &mut raw)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            raw.clear();
            match first_line.take() {
                Some(tx) => drop(tx.send(line)),
                None => sink.lock().expect("capture lock poisoned").push(line),
            }
        }
    });
    lines
}

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

fn portcullis_bin() -> &'static str {
    // option_env! so crates without the gateway binary (the echo's own scratch crate) still compile.
    match option_env!("CARGO_BIN_EXE_portcullis") {
        Some(path) => path,
        None => panic!(
            "the `portcullis` binary is not part of this crate: Gateway and portcullis() need it"
        ),
    }
}

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

/// Adds `JWT_SECRET=TEST_SECRET` unless the test set it itself.
fn with_default_secret<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "JWT_SECRET") {
        all.insert(0, ("JWT_SECRET", TEST_SECRET));
    }
    all
}

/// An env value meaning "remove this variable" (no real value holds a NUL), e.g.
/// `("JWT_SECRET", UNSET)` for a gateway that runs on key files alone.
pub const UNSET: &str = "\0";

/// Applies `env` (after `with_default_secret`) to a child, honoring [`UNSET`].
fn apply_env(command: &mut Command, env: &[(&str, &str)]) {
    for (name, value) in with_default_secret(env) {
        if value == UNSET {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
}

/// A running `portcullis run`; SIGKILLed on drop, and its temp dir removed unless caller-chosen.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    stdout: Lines,
    stderr: Lines,
    remove_dir: bool,
    exited: Option<ExitStatus>,
}

impl Gateway {
    /// Starts a gateway in a fresh temp dir. In `yaml`, `{LISTEN}` and `{ADMIN}` become free
    /// 127.0.0.1 ports, `{UPSTREAM}` the given address and `{DIR}` the directory. The process
    /// runs with that directory as its working directory, so relative paths land there too.
    /// Waits (≤ 30 s) until the admin `/healthz` answers 200.
    pub fn start(yaml: &str, upstream: SocketAddr, env: &[(&str, &str)]) -> Gateway {
        let mut gateway = Gateway::start_in(fresh_temp_dir(), yaml, upstream, env);
        gateway.remove_dir = true;
        gateway
    }

    /// Like `start`, in a caller-chosen directory (e.g. to restart on the same data dir),
    /// which is then left in place on drop.
    pub fn start_in(
        dir: PathBuf,
        yaml: &str,
        upstream: SocketAddr,
        env: &[(&str, &str)],
    ) -> Gateway {
        std::fs::create_dir_all(&dir).expect("create the gateway test dir");
        // Both listeners are held at once so the two ports differ.
        let (listen, admin) = (
            TcpListener::bind("127.0.0.1:0"),
            TcpListener::bind("127.0.0.1:0"),
        );
        let addr = listen
            .and_then(|l| l.local_addr())
            .expect("free listen port");
        let admin_addr = admin.and_then(|l| l.local_addr()).expect("free admin port");
        let config = yaml
            .replace("{LISTEN}", &addr.to_string())
            .replace("{ADMIN}", &admin_addr.to_string())
            .replace("{UPSTREAM}", &upstream.to_string())
            .replace("{DIR}", &dir.display().to_string());
        let config_path = dir.join("gateway.yaml");
        std::fs::write(&config_path, config).expect("write gateway.yaml");
        let mut command = Command::new(portcullis_bin());
        apply_env(&mut command, env);
        let mut child = command
            .args(["run", "-c"])
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the portcullis binary");
        let stdout = capture(child.stdout.take().expect("gateway stdout is piped"), None);
        let stderr = capture(child.stderr.take().expect("gateway stderr is piped"), None);
        let mut gateway = Gateway {
            addr,
            admin_addr,
            dir,
            child,
            stdout,
            stderr,
            remove_dir: false,
            exited: None,
        };
        gateway.wait_healthy(Duration::from_secs(30));
        gateway
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                std::thread::sleep(Duration::from_millis(100)); // let the capture threads catch up
                panic!(
                    "gateway exited during startup ({status}); stderr:\n{}",
                    self.stderr_text()
                );
            }
            // The admin and public listeners start on separate runtimes: wait for both.
            if healthz_ok(self.admin_addr) && TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "gateway /healthz not 200 within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Access-log lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock poisoned").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock poisoned").join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name ("TERM", "HUP", ...) through `kill -s`, to this child only.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -s {sig} {} failed: {status}",
            self.child.id()
        );
    }

    /// Waits up to `timeout` for the gateway to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited.is_none() {
                self.exited = self.child.try_wait().expect("try_wait on the gateway");
            }
            if self.exited.is_some() || Instant::now() >= deadline {
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows the gateway's own account of what happened.
        if std::thread::panicking() {
            eprintln!(
                "--- gateway stderr ---\n{}\n--- end gateway stderr ---",
                self.stderr_text()
            );
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn healthz_ok(admin: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&admin, Duration::from_millis(500)) else {
        return false;
    };
    let mut conn = Conn::from_stream(stream);
    conn.send(
        format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    matches!(conn.try_read_response(false, Duration::from_secs(2)), Some(r) if r.status == 200)
}

/// Runs the portcullis CLI to completion (e.g. `check -c <path>`, `explain`, `token`), with
/// `JWT_SECRET=TEST_SECRET` unless `env` sets it. Returns (exit code, stdout, stderr);
/// the code is -1 if a signal ended it.
pub fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(portcullis_bin());
    apply_env(&mut command, env);
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the portcullis binary");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Writes `contents` to `dir/name` and returns the path (for configs passed to `portcullis check`).
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// One client connection, for tests that need several exchanges on the same socket
/// (keep-alive, pipelining, WebSocket tunnels).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Conn::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Reads more bytes into the buffer; false once the peer closed, reset, or `deadline` passed.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if self.eof || left.is_zero() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("set read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => self.eof = true, // a reset counts as a close
        }
        !self.eof
    }

    /// The next final response (1xx other than 101 are skipped), or `None` on close/timeout.
    /// `head_request` tells the parser that no body follows.
    pub fn try_read_response(&mut self, head_request: bool, timeout: Duration) -> Option<Response> {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_one(&self.buf, head_request, self.eof) {
                Parsed::Done(response, used) => {
                    self.buf.drain(..used);
                    if (100..200).contains(&response.status) && response.status != 101 {
                        continue;
                    }
                    return Some(response);
                }
                Parsed::Invalid => panic!(
                    "not an HTTP/1.1 response: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Parsed::Incomplete if self.eof => return None,
                Parsed::Incomplete => {
                    if !self.fill(deadline) && !self.eof {
                        return None;
                    }
                }
            }
        }
    }

    /// The next response, within 10 s; panics (showing what arrived) otherwise.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false, RESPONSE_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no complete response within 10 s; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })
    }

    /// Exactly `n` raw bytes (e.g. tunnelled WebSocket data); panics on close or timeout.
    pub fn read_bytes(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < n {
            if !self.fill(deadline) {
                panic!(
                    "wanted {n} bytes, got {:?} before close/timeout",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// True if the peer closes the connection within `timeout` (any unread data is discarded).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline) {}
        self.eof
    }
}

fn build_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Sends one request on a fresh connection and reads one response (10 s timeout).
/// Adds `Host` and `Content-Length` unless given; `headers` go out verbatim, in order.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut conn = Conn::open(addr);
    // A write error is not fatal: the server may answer (say 431) and close before reading it all.
    let _ = conn
        .stream
        .write_all(&build_request(addr, method, path, headers, body));
    conn.try_read_response(method == "HEAD", RESPONSE_TIMEOUT)
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} to {addr}: no complete response within 10 s; received {:?}",
                String::from_utf8_lossy(&conn.buf)
            )
        })
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None)
}

/// Writes raw bytes and returns everything read until the peer closes or `timeout` passes.
/// Write errors are ignored: a server may reject and close before the bytes are all sent.
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut conn = Conn::open(addr);
    let _ = conn.stream.write_all(bytes);
    conn.closed_within(timeout);
    conn.buf
}

/// Every complete HTTP/1.1 response in `bytes`, in order. Stops at the first thing that is not
/// a response, after a 101, or at an incomplete tail. Bodies framed by neither Content-Length
/// nor chunked run to the end of `bytes`.
pub fn parse_responses(bytes: &[u8]) -> Vec<Response> {
    let mut responses = Vec::new();
    let mut rest = bytes;
    while let Parsed::Done(response, used) = parse_one(rest, false, true) {
        rest = &rest[used..];
        let upgraded = response.status == 101;
        responses.push(response);
        if upgraded {
            break;
        }
    }
    responses
}

enum Parsed {
    Done(Response, usize),
    Incomplete,
    Invalid,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response at the start of `bytes`; `eof` says no more bytes will come.
fn parse_one(bytes: &[u8], head_request: bool, eof: bool) -> Parsed {
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        let looks_like_response = bytes.len() < 5 || bytes.starts_with(b"HTTP/");
        return if looks_like_response {
            Parsed::Incomplete
        } else {
            Parsed::Invalid
        };
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    };
    let Some(status) = status else {
        return Parsed::Invalid;
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Invalid;
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let start = head_end + 4;
    let body_range = if head_request || status < 200 || status == 204 || status == 304 {
        Some((start, start, start))
    } else if response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        return match dechunk(&bytes[start..]) {
            Some((body, used)) => Parsed::Done(Response { body, ..response }, start + used),
            None => Parsed::Incomplete,
        };
    } else if let Some(length) = response.header("content-length") {
        let Ok(length) = length.parse::<usize>() else {
            return Parsed::Invalid;
        };
        (bytes.len() >= start + length).then_some((start, start + length, start + length))
    } else {
        eof.then_some((start, bytes.len(), bytes.len()))
    };
    match body_range {
        Some((from, to, used)) => Parsed::Done(
            Response {
                body: bytes[from..to].to_vec(),
                ..response
            },
            used,
        ),
        None => Parsed::Incomplete,
    }
}

/// Decodes a chunked body; returns it and the bytes consumed, or `None` if incomplete.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = pos + find(&bytes[pos..], b"\r\n")?;
        let line = String::from_utf8_lossy(&bytes[pos..line_end]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                let end = pos + find(&bytes[pos..], b"\r\n")?;
                let was_empty = end == pos;
                pos = end + 2;
                if was_empty {
                    return Some((body, pos));
                }
            }
        }
        if bytes.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[pos..pos + size]);
        pos += size + 2;
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

// ---------------------------------------------------------------------------------------------
// HS256 JWT minting (SHA-256, HMAC, base64url by hand, so hostile tokens can be crafted freely)
// ---------------------------------------------------------------------------------------------

/// Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A compact JWS over the raw `header_json` and `claims_json` strings, signed HMAC-SHA256.
/// Raw strings let tests craft duplicate keys, `alg: none` headers and other hostile shapes.
pub fn mint_hs256(secret: &[u8], header_json: &str, claims_json: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header_json.as_bytes()),
        b64url(claims_json.as_bytes())
    );
    let signature = hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&signature))
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes unpadded base64url; `None` on any other character (to read tokens the CLI mints).
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let mut inner = pad(0x36);
    inner.extend_from_slice(message);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// SHA-256 (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (slot, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Lower-case hex, for comparing digests with published test vectors.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
