//! A raw HTTP/1.1 client: requests written byte for byte as the test gives them, and a
//! response parser that accepts whatever the gateway sends so tests can assert on it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The values of the fields called `name` in `headers`, in any letter case, in order.
pub(super) fn values_named<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

impl Response {
    /// The first header with this name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        values_named(&self.headers, name).first().copied()
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        values_named(&self.headers, name)
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

    pub(super) fn from_stream(stream: TcpStream) -> Conn {
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
