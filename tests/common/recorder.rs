//! A raw-socket upstream that records every byte each connection brings and
//! frames the requests in them itself, so a smuggling test can say exactly
//! which requests reached an upstream and whether anything else did.
//!
//! Framing is by `Content-Length` or `chunked` only, and strict: the gateway
//! writes every head and body it forwards itself, so anything else arriving
//! here is already a finding, and it is kept as raw bytes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One request as the upstream framed it (a chunked body decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The values of the fields called `name`, in any letter case.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        super::http::values_named(&self.headers, name)
    }

    /// The values of the fields whose name reads as `name` once letter case is
    /// ignored and `_` and `.` are taken for `-`, as many frameworks take them.
    pub fn headers_read_as(&self, name: &str) -> Vec<&str> {
        let fold = |s: &str| s.to_ascii_lowercase().replace(['_', '.'], "-");
        self.headers
            .iter()
            .filter(|(n, _)| fold(n) == fold(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the upstream answers one request.
pub enum Reply {
    /// These bytes; the connection then carries the next request.
    Answer(Vec<u8>),
    /// These bytes (a 101), after which the connection is a raw pipe that
    /// echoes back whatever arrives, still recorded.
    Switch(Vec<u8>),
}

impl Reply {
    /// `200 OK` with the request's target as its body, so a client can tell
    /// which request each answer belongs to.
    pub fn target_of(seen: &Seen) -> Reply {
        let body = &seen.target;
        Reply::Answer(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// What reached the upstream between two calls of [`Recorder::take`].
#[derive(Debug, Default)]
pub struct Recorded {
    /// Every request framed, in arrival order across connections.
    pub requests: Vec<Seen>,
    /// The raw bytes of each connection that received any.
    pub bytes: Vec<Vec<u8>>,
}

impl Recorded {
    /// True when not one byte arrived.
    pub fn nothing(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `needle` arrived on some connection, framed or not.
    pub fn contains(&self, needle: &[u8]) -> bool {
        self.bytes
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    }

    /// (method, target, body) of every request, for exact comparisons.
    pub fn summary(&self) -> Vec<(String, String, Vec<u8>)> {
        self.requests
            .iter()
            .map(|r| (r.method.clone(), r.target.clone(), r.body.clone()))
            .collect()
    }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

#[derive(Default)]
struct Log {
    /// Bytes received since the last `take`, one entry per connection ever accepted.
    received: Vec<Vec<u8>>,
    requests: Vec<Seen>,
    /// Clones of the accepted sockets, shut down on drop to end their threads.
    streams: Vec<TcpStream>,
}

/// An upstream on 127.0.0.1:0; its threads end when it is dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    /// Answers every request with [`Reply::target_of`].
    pub fn start() -> Recorder {
        Recorder::with_script(Reply::target_of)
    }

    /// Answers each request with what `script` says.
    pub fn with_script(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording upstream");
        let addr = listener.local_addr().expect("recording upstream address");
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (accept_log, accept_stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let index = {
                    let mut log = lock(&accept_log);
                    if let Ok(clone) = conn.try_clone() {
                        log.streams.push(clone);
                    }
                    log.received.push(Vec::new());
                    log.received.len() - 1
                };
                let (log, script) = (accept_log.clone(), script.clone());
                std::thread::spawn(move || serve(conn, index, &log, &*script));
            }
        });
        Recorder { addr, log, stop }
    }

    /// Everything that arrived since the last call, forgotten here.
    pub fn take(&self) -> Recorded {
        let mut log = lock(&self.log);
        Recorded {
            requests: std::mem::take(&mut log.requests),
            bytes: log
                .received
                .iter_mut()
                .map(std::mem::take)
                .filter(|b| !b.is_empty())
                .collect(),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for stream in &lock(&self.log).streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    // A panicking test thread must not hide what was recorded.
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// One upstream connection: record, frame, answer; after a `Switch`, echo.
fn serve(mut conn: TcpStream, index: usize, log: &Mutex<Log>, script: &Script) {
    let mut pending = Vec::new();
    let mut piped = false;
    // Bytes that frame no request: only recorded from then on.
    let mut lost = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let data = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => &chunk[..n],
        };
        lock(log).received[index].extend_from_slice(data);
        if piped {
            if conn.write_all(data).is_err() {
                return;
            }
            continue;
        }
        if lost {
            continue;
        }
        pending.extend_from_slice(data);
        loop {
            match frame(&pending) {
                Framed::Request(seen, used) => {
                    pending.drain(..used);
                    let reply = script(&seen);
                    // Logged before the answer leaves, so a client holding the
                    // answer can rely on the log.
                    lock(log).requests.push(seen);
                    let (bytes, switch) = match reply {
                        Reply::Answer(bytes) => (bytes, false),
                        Reply::Switch(bytes) => (bytes, true),
                    };
                    if conn.write_all(&bytes).is_err() {
                        return;
                    }
                    if switch {
                        piped = true;
                        if conn.write_all(&pending).is_err() {
                            return;
                        }
                        pending.clear();
                        break;
                    }
                }
                Framed::Incomplete => break,
                Framed::Garbage => {
                    lost = true;
                    break;
                }
            }
        }
    }
}

enum Framed {
    Request(Seen, usize),
    Incomplete,
    Garbage,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request at the start of `bytes`, and how many bytes it took.
fn frame(bytes: &[u8]) -> Framed {
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        return Framed::Incomplete;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let request_line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = request_line[..] else {
        return Framed::Garbage;
    };
    if !version.starts_with("HTTP/1.") {
        return Framed::Garbage;
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Framed::Garbage;
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut seen = Seen {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    let start = head_end + 4;
    let chunked = seen
        .headers_named("transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        return match dechunk(&bytes[start..]) {
            Ok(Some((body, used))) => {
                seen.body = body;
                Framed::Request(seen, start + used)
            }
            Ok(None) => Framed::Incomplete,
            Err(()) => Framed::Garbage,
        };
    }
    let length = match seen.headers_named("content-length")[..] {
        [] => 0,
        [one] => match one.parse::<usize>() {
            Ok(length) => length,
            Err(_) => return Framed::Garbage,
        },
        _ => return Framed::Garbage,
    };
    if bytes.len() < start + length {
        return Framed::Incomplete;
    }
    seen.body = bytes[start..start + length].to_vec();
    Framed::Request(seen, start + length)
}

/// A chunked body: `Ok(None)` until it is whole, `Err` when it is not chunked.
fn dechunk(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&bytes[pos..], b"\r\n").map(|e| pos + e) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[pos..line_end]).map_err(|_| ())?;
        let size = line.split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| ())?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer lines, up to the empty one.
            loop {
                let Some(end) = find(&bytes[pos..], b"\r\n").map(|e| pos + e) else {
                    return Ok(None);
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if bytes.len() < pos + size + 2 {
            return Ok(None);
        }
        if &bytes[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        body.extend_from_slice(&bytes[pos..pos + size]);
        pos += size + 2;
    }
}
