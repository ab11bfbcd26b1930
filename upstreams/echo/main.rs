//! `echo`: a tiny HTTP/1.1 upstream that answers every request with a JSON description of it.
//!
//! Usage: `echo [ADDR]` (or `ECHO_ADDR`), default `127.0.0.1:3000`. The first stdout line is
//! `listening on IP:PORT`; after that every request is also logged to stdout as one JSON line.
//!
//! It is hand-written on bare tokio on purpose: tests must see exactly what the gateway
//! forwarded (header order, name case, duplicates, body framing), which an HTTP library would
//! normalise away. Special paths: `/__status/NNN` answers NNN, `/__sleep/MS` waits MS ms first,
//! `/__close` drops the connection unanswered, and `Upgrade: websocket` gets a 101 followed by
//! a raw byte echo (no frame parsing).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ECHO_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    match run(&addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or SIGINT. Open connections are simply dropped then:
/// an echo server has no state worth draining.
async fn run(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    // Handlers first: whoever reads the line below may signal us at once.
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    // Printed before anything else so a harness that bound port 0 can learn the real port.
    log_line(&format!("listening on {}", listener.local_addr()?));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => drop(tokio::spawn(serve(stream))),
                Err(e) => {
                    // Usually fd exhaustion; back off instead of spinning.
                    eprintln!("echo: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Writes one stdout line and flushes, so a test reading the pipe sees it immediately.
fn log_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the server down.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Why a connection stops: the peer went away, or sent something we answer with 400.
enum Fail {
    Closed,
    Bad(&'static str),
}

impl From<std::io::Error> for Fail {
    fn from(_: std::io::Error) -> Fail {
        Fail::Closed
    }
}

enum Next {
    KeepAlive,
    Close,
    Abort,
}

struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let named = move |(n, _): &&(String, String)| n.eq_ignore_ascii_case(name);
        self.headers.iter().filter(named).map(|(_, v)| v.as_str())
    }
    fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values = self.values(name);
        values.any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self) -> Result<(), Fail> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Fail::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }

    async fn read_head(&mut self) -> Result<Vec<u8>, Fail> {
        loop {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(self.take(end + 4));
            }
            if find(&self.buf, b"\n\n").is_some() {
                return Err(Fail::Bad("bare LF in request head"));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Fail::Bad("request head larger than 64 KiB"));
            }
            self.fill().await?;
        }
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, Fail> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.take(i);
                self.buf.drain(..2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(Fail::Bad("chunk line too long"));
            }
            self.fill().await?;
        }
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, Fail> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.take(n))
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, Fail> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
            // Strict hex (no sign, no spaces, at most 8 digits) so odd sizes surface as 400s.
            if size.is_empty() || size.len() > 8 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err(Fail::Bad("bad chunk size"));
            }
            let size = size.iter().fold(0usize, |n, d| {
                n * 16 + (*d as char).to_digit(16).unwrap_or(0) as usize
            });
            if size == 0 {
                // Trailer fields are read and dropped.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(Fail::Bad("body too large"));
            }
            body.extend(self.read_exact(size).await?);
            if self.read_exact(2).await? != b"\r\n" {
                return Err(Fail::Bad("chunk not followed by CRLF"));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    // Every line must end in CRLF: a bare CR or LF is parsed differently by different
    // servers, which is exactly what request smuggling exploits.
    let text = &head[..head.len() - 2];
    let mut lines = Vec::new();
    let mut pieces: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    pieces.pop(); // the empty remainder after the final CRLF
    for line in pieces {
        match line.strip_suffix(b"\r") {
            Some(line) if !line.contains(&b'\r') && !line.contains(&0) => lines.push(line),
            _ => return Err("bare CR, bare LF or NUL in request head"),
        }
    }
    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or(&[]);
    let parts: Vec<&[u8]> = request_line.split(|b| *b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err("bad request line");
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err("bad request line");
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err("unsupported HTTP version"),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err("obsolete header line folding");
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or("header without colon")?;
        // A space before the colon is a smuggling vector (RFC 9112 §5.1), so the name must be a bare token.
        if !is_token(&line[..colon]) {
            return Err("bad header name");
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let name = String::from_utf8_lossy(&line[..colon]).into_owned();
        headers.push((name, value.trim_matches([' ', '\t']).to_string()));
    }
    let method = String::from_utf8_lossy(method).into_owned();
    Ok(Request {
        method,
        target: String::from_utf8_lossy(target).into_owned(),
        http10,
        headers,
    })
}

async fn serve(stream: TcpStream) {
    // Responses are single small writes; without NODELAY, Nagle + delayed ACK add ~40 ms each.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        match handle_one(&mut conn).await {
            Ok(Next::KeepAlive) => continue,
            Ok(Next::Abort) | Err(Fail::Closed) => return,
            Ok(Next::Close) => return linger_close(conn).await,
            Err(Fail::Bad(why)) => {
                let body = Value::from(why).to_string();
                let _ = conn
                    .stream
                    .write_all(&response(400, &body, false, false))
                    .await;
                return linger_close(conn).await;
            }
        }
    }
}

/// Half-closes, then drains briefly: dropping a socket with unread input sends RST,
/// which can destroy the response we just wrote before the client reads it.
async fn linger_close(mut conn: Conn) {
    let _ = conn.stream.shutdown().await;
    let drain = async {
        while conn.fill().await.is_ok() {
            conn.buf.clear()
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn handle_one(conn: &mut Conn) -> Result<Next, Fail> {
    let head = conn.read_head().await?;
    let req = parse_head(&head).map_err(Fail::Bad)?;
    let lengths: Vec<&str> = req
        .values("content-length")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let codings: Vec<String> = req
        .values("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let chunked = !codings.is_empty();
    if chunked && !lengths.is_empty() {
        return Err(Fail::Bad("both Transfer-Encoding and Content-Length"));
    }
    if chunked && codings != ["chunked"] {
        return Err(Fail::Bad("unsupported transfer coding"));
    }
    let length = match lengths.first() {
        None => 0,
        Some(first)
            if lengths.iter().all(|l| l == first) && first.bytes().all(|b| b.is_ascii_digit()) =>
        {
            first
                .parse::<usize>()
                .map_err(|_| Fail::Bad("bad Content-Length"))?
        }
        Some(_) => return Err(Fail::Bad("bad Content-Length")),
    };
    if length > MAX_BODY {
        return Err(Fail::Bad("body too large"));
    }
    // Clients such as curl pause a second for this before sending a body.
    if (chunked || length > 0) && req.has_token("expect", "100-continue") && conn.buf.is_empty() {
        conn.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let body = if chunked {
        conn.read_chunked().await?
    } else {
        conn.read_exact(length).await?
    };

    let headers = req
        .headers
        .iter()
        .map(|(n, v)| Value::from(vec![n.as_str(), v.as_str()]));
    // Built by hand so the keys stay in a readable order (serde_json's map sorts them).
    let json = format!(
        "{{\"method\":{},\"path\":{},\"headers\":{},\"body\":{}}}",
        Value::from(req.method.as_str()),
        Value::from(req.target.as_str()),
        Value::Array(headers.collect()),
        Value::from(String::from_utf8_lossy(&body)),
    );
    log_line(&json);

    if req.has_token("upgrade", "websocket") {
        websocket(conn, &req).await?;
        return Ok(Next::Abort);
    }
    if req.target.starts_with("/__close") {
        return Ok(Next::Abort);
    }
    let mut status = 200;
    if let Some(rest) = req.target.strip_prefix("/__status/") {
        status = leading_number(rest)
            .filter(|s| (200..=599).contains(s))
            .ok_or(Fail::Bad("bad /__status code"))? as u16;
    }
    if let Some(rest) = req.target.strip_prefix("/__sleep/") {
        let ms = leading_number(rest).ok_or(Fail::Bad("bad /__sleep duration"))?;
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    let keep_alive = if req.http10 {
        req.has_token("connection", "keep-alive")
    } else {
        !req.has_token("connection", "close")
    };
    conn.stream
        .write_all(&response(status, &json, keep_alive, req.method == "HEAD"))
        .await?;
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

fn leading_number(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

/// The whole response in one buffer, so it leaves in one write call.
fn response(status: u16, body: &str, keep_alive: bool, head_request: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    // 204 and 304 must not carry a body (RFC 9110 §6.4.1).
    let bodyless = status == 204 || status == 304;
    if !bodyless {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if !bodyless && !head_request {
        out.push_str(body);
    }
    out.into_bytes()
}

async fn websocket(conn: &mut Conn, req: &Request) -> Result<(), Fail> {
    let key = req
        .values("sec-websocket-key")
        .next()
        .ok_or(Fail::Bad("missing Sec-WebSocket-Key"))?;
    let accept = base64(&sha1(format!("{key}{WS_GUID}").as_bytes()));
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    conn.stream.write_all(head.as_bytes()).await?;
    // Bytes that arrived together with the handshake belong to the tunnel too.
    let early = std::mem::take(&mut conn.buf);
    conn.stream.write_all(&early).await?;
    let (mut reader, mut writer) = conn.stream.split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    Ok(())
}

/// SHA-1 (FIPS 180-4), only for the WebSocket handshake, where RFC 6455 mandates it.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (slot, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Standard padded base64 (RFC 4648 §4), as Sec-WebSocket-Accept requires.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= chunk.len() {
                ALPHABET[sextet as usize] as char
            } else {
                '='
            });
        }
    }
    out
}
