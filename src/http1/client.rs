//! One client connection, HTTP/1.x: request heads and bodies read from it,
//! answers written to it with the framing they need, and whether it can carry
//! the next request. Written for the gateway's own loop rather than taken from
//! pingora-core's session, whose header maps and per-answer header object cost
//! more than the rest of a refusal.

use super::chunked::{self, Decoder, Malformed, Step};
use super::request::{BodyFraming, HeadError, Request, MAX_HEAD};
use crate::socket::Socket;
use bytes::{Bytes, BytesMut};
use http::{Method, Version};
use pingora::prelude::*;
use pingora::protocols::Stream;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Room made before each read from the client.
const READ_SIZE: usize = 8 * 1024;
/// How long one read of a request body, or one write of an answer the socket
/// does not take at once, may wait for the client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long, and for how many bytes, a closing connection reads what the
/// client still sends (see `Client::close`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_LIMIT: usize = 1 << 20;
/// Bytes of pipelined requests kept while an answer is awaited; past this,
/// the client is not read until the answer is out.
const PIPELINE_LIMIT: usize = 1 << 20;
/// A body write up to this size is copied behind its framing and sent in one
/// write; a larger one goes out on its own.
const COALESCE: usize = 16 * 1024;

/// The error of a request body longer than the limit the pipeline set
/// (`Client::limit_body`): the client's doing, answered 413.
pub const BODY_TOO_LARGE: ErrorType = ErrorType::new("request body too large");

/// How an answer's body is delimited on the wire; the client writes the
/// matching `Content-Length` or `Transfer-Encoding` itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Out {
    /// No body follows; the head's fields are sent as given (HEAD, 204, 304, 101).
    None,
    Length(u64),
    Chunked,
    /// The body ends when the connection does (an HTTP/1.0 client's stream).
    Close,
}

/// What reading a request head can end in, besides a request.
pub enum ReadFailure {
    /// Not a head the gateway can read: answered, then the connection closes.
    Head(HeadError),
    Io(std::io::Error),
}

/// How much of the current request's body is still unread.
enum BodyIn {
    Length(u64),
    Chunked(Decoder),
    Done,
}

pub struct Client {
    stream: Socket,
    /// Read but not yet taken: the current request's body, then whatever the
    /// client sent after it.
    buf: BytesMut,
    /// Framed answer bytes not yet written.
    out_buf: Vec<u8>,
    tls: bool,
    peer: Option<IpAddr>,
    // The current request's state, reset by `begin`.
    body: BodyIn,
    /// Body bytes handed out so far, and how many may be (`limit_body`).
    body_read: u64,
    body_limit: u64,
    keepalive: bool,
    http10: bool,
    head_only: bool,
    expects_continue: bool,
    continued: bool,
    answered: Option<u16>,
    out: Out,
    upgraded: bool,
}

impl Client {
    pub fn new(stream: Stream) -> Client {
        let tls = stream.get_ssl_digest().is_some();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        Client {
            stream: Socket::accepted(stream),
            buf: BytesMut::with_capacity(READ_SIZE),
            out_buf: Vec::with_capacity(1024),
            tls,
            peer,
            body: BodyIn::Done,
            body_read: 0,
            body_limit: u64::MAX,
            keepalive: false,
            http10: false,
            head_only: false,
            expects_continue: false,
            continued: false,
            answered: None,
            out: Out::None,
            upgraded: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether what the client sent is the start of the HTTP/2 connection
    /// preface (asked only once its head failed to parse as HTTP/1, which it
    /// does at `HTTP/2.0`, the end of the preface's first line).
    pub fn sent_h2_preface(&self) -> bool {
        let preface = crate::http2::PREFACE;
        let n = self.buf.len().min(preface.len());
        n >= b"PRI * HTTP/2.0".len() && self.buf[..n] == preface[..n]
    }

    /// The connection and what was read from it but not taken, for another
    /// protocol's reader (an HTTP/2 server, after the preface).
    pub fn into_parts(self) -> (Socket, BytesMut) {
        (self.stream, self.buf)
    }

    /// The TCP peer's address.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.peer
    }

    /// The next request's head; `None` when the client closed the connection.
    pub async fn read_request(&mut self) -> Result<Option<Request>, ReadFailure> {
        if !self.buf.is_empty() {
            // A pipelined request is already here: yield now and then, so one
            // client's queue cannot keep the others' tasks from running.
            tokio::task::consume_budget().await;
        }
        // How much of `buf` is known to hold no end of a head: a head that arrives
        // a byte at a time is parsed again only when a line may have ended it, not
        // on every read (quadratic work for a slow client otherwise).
        let mut scanned = 0;
        loop {
            if self.buf.len() > scanned {
                if scanned == 0 || may_end_head(&self.buf, scanned) {
                    if let Some(req) = Request::parse(&mut self.buf).map_err(ReadFailure::Head)? {
                        self.begin(&req);
                        return Ok(Some(req));
                    }
                } else if self.buf.len() > MAX_HEAD {
                    return Err(ReadFailure::Head(HeadError::TooLarge));
                }
                scanned = self.buf.len();
            }
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            // Reading stops at a close, even mid-head: there is nobody to answer.
            if self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadFailure::Io)?
                == 0
            {
                return Ok(None);
            }
        }
    }

    /// Resets the per-request state for `req`. A body's framing is taken at
    /// its word here; `framing::check` refuses (and closes on) any doubt.
    fn begin(&mut self, req: &Request) {
        self.body = match req.body_framing() {
            BodyFraming::Chunked => BodyIn::Chunked(Decoder::default()),
            BodyFraming::Length(len) => BodyIn::Length(len),
            // `framing::check` refuses an unreadable length and closes the connection.
            BodyFraming::None | BodyFraming::Unreadable => BodyIn::Done,
        };
        self.body_read = 0;
        self.body_limit = u64::MAX;
        self.http10 = req.version == Version::HTTP_10;
        self.keepalive = if self.http10 {
            req.connection_has("keep-alive")
        } else {
            !req.connection_has("close")
        };
        self.head_only = req.method == Method::HEAD;
        self.expects_continue = req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        self.continued = false;
        self.answered = None;
        self.out = Out::None;
    }

    /// An answer head for `status`, built in this connection's output buffer
    /// (which `write_head` takes back), so an answer allocates nothing for it.
    pub fn head(&mut self, status: u16) -> Head {
        if self.out_buf.is_empty() {
            Head::in_buffer(std::mem::take(&mut self.out_buf), status)
        } else {
            Head::new(status)
        }
    }

    /// Ends the connection after this answer.
    pub fn close_after(&mut self) {
        self.keepalive = false;
    }

    /// The status of the answer written so far, if any (never an interim 100).
    pub fn answered(&self) -> Option<u16> {
        self.answered
    }

    /// Caps the current request's body at `max` bytes. A declared length over it
    /// fails here, before a byte of it is read; a chunked body fails at the first
    /// piece of the chunk whose size line would take it past `max`, before any of
    /// that chunk is handed out. The error is
    /// [`BODY_TOO_LARGE`], and the unread rest keeps the connection from carrying
    /// another request (see `reusable`).
    pub fn limit_body(&mut self, max: u64) -> Result<()> {
        self.body_limit = max;
        match self.body {
            BodyIn::Length(len) if len > max => Err(body_too_large()),
            _ => Ok(()),
        }
    }

    /// The next piece of the request body, `None` once it is all read. A client
    /// waiting for `100 Continue` is told to send it first: whoever reads the
    /// body has admitted the request.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.expects_continue && !self.continued && !matches!(self.body, BodyIn::Done) {
            self.write_continue().await?;
        }
        loop {
            // Of a chunk, bytes announced but not handed out yet: a chunk is held to
            // the limit by its size line, as a body is by its length.
            let mut announced = 0;
            let step = match &mut self.body {
                BodyIn::Done => return Ok(None),
                BodyIn::Length(0) => Step::Done,
                BodyIn::Length(left) if !self.buf.is_empty() => {
                    let n = self
                        .buf
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    Step::Data(self.buf.split_to(n).freeze())
                }
                BodyIn::Length(_) => Step::NeedMore,
                BodyIn::Chunked(decoder) => {
                    let step = decoder.next(&mut self.buf).map_err(|Malformed| {
                        Error::explain(InvalidHTTPHeader, "request chunk framing").into_down()
                    })?;
                    announced = decoder.rest_of_chunk();
                    step
                }
            };
            match step {
                Step::Data(data) => {
                    self.body_read += data.len() as u64;
                    if self.body_read.saturating_add(announced) > self.body_limit {
                        return Err(body_too_large());
                    }
                    return Ok(Some(data));
                }
                Step::Done => {
                    self.body = BodyIn::Done;
                    return Ok(None);
                }
                Step::NeedMore => self.fill().await?,
            }
        }
    }

    /// Reads more of the request body into `buf`.
    async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        match timeout(CLIENT_TIMEOUT, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => {
                Err(Error::explain(ConnectionClosed, "client closed mid-body").into_down())
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::because(ReadError, "reading the client", e).into_down()),
            Err(_) => Err(Error::explain(ReadTimedout, "client body stalled").into_down()),
        }
    }

    /// Tells a client that asked (`Expect: 100-continue`) to send its body.
    async fn write_continue(&mut self) -> Result<()> {
        self.continued = true;
        self.out_buf
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.send_out().await
    }

    /// Queues the answer's head, with the framing and connection fields the
    /// body and this connection need; it leaves with the first body bytes or
    /// at `finish`.
    pub fn write_head(&mut self, head: Head, out: Out) {
        let Head { mut bytes, status } = head;
        let mut out = out;
        if !matches!(self.body, BodyIn::Done) {
            // Answered before the body was read (a refusal): nothing after the
            // body will be read (see `reusable`), and the client is told so.
            self.keepalive = false;
        }
        if status == 101 {
            self.upgraded = true;
            out = Out::None;
            push_field(&mut bytes, b"Connection", b"Upgrade");
        } else {
            if out == Out::Close {
                self.keepalive = false;
            }
            if !self.keepalive {
                push_field(&mut bytes, b"Connection", b"close");
            } else if self.http10 {
                push_field(&mut bytes, b"Connection", b"keep-alive");
            }
        }
        match out {
            Out::Length(len) => push_field(
                &mut bytes,
                b"Content-Length",
                itoa::Buffer::new().format(len).as_bytes(),
            ),
            Out::Chunked => push_field(&mut bytes, b"Transfer-Encoding", b"chunked"),
            Out::None | Out::Close => {}
        }
        bytes.extend_from_slice(b"\r\n");
        if self.out_buf.is_empty() {
            self.out_buf = bytes;
        } else {
            self.out_buf.extend_from_slice(&bytes);
        }
        self.out = if self.head_only { Out::None } else { out };
        self.answered = Some(status);
    }

    /// Writes body bytes with the framing chosen in `write_head` (nothing for
    /// a HEAD request's answer) and sends them on.
    pub async fn write_body(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let chunked = self.out == Out::Chunked;
        match self.out {
            Out::None => return Ok(()),
            Out::Chunked => {
                let mut size = [0u8; 16];
                self.out_buf
                    .extend_from_slice(chunked::size_hex(data.len(), &mut size));
                self.out_buf.extend_from_slice(b"\r\n");
            }
            Out::Length(_) | Out::Close => {}
        }
        if data.len() <= COALESCE {
            self.out_buf.extend_from_slice(data);
        } else {
            self.send_out().await?;
            self.send(data).await?;
        }
        if chunked {
            self.out_buf.extend_from_slice(b"\r\n");
        }
        self.send_out().await
    }

    /// Sends what is queued (a head waiting for its body), before waiting on
    /// the upstream: the client should not wait for bytes we already have.
    pub async fn flush(&mut self) -> Result<()> {
        if self.out_buf.is_empty() {
            return Ok(());
        }
        self.send_out().await
    }

    /// Ends the answer: the last chunk when chunked, and everything queued sent.
    pub async fn finish(&mut self) -> Result<()> {
        if self.out == Out::Chunked {
            self.out_buf.extend_from_slice(b"0\r\n\r\n");
            self.out = Out::None;
        }
        self.send_out().await
    }

    /// Whether the connection can read another request now that the answer
    /// is out. Not when any of the request's body is unread (the gateway
    /// refused it before reading): where that body ends is the one thing two
    /// parsers in a row may disagree on, so nothing after it is read.
    pub fn reusable(&self) -> bool {
        self.keepalive && !self.upgraded && matches!(self.body, BodyIn::Done)
    }

    /// Resolves when the client has left while its answer is awaited; bytes
    /// it sends meanwhile (its next request) are kept for later.
    pub async fn gone(&mut self) -> Box<Error> {
        loop {
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Error::explain(ConnectionClosed, "client left").into_down(),
                Err(e) => return Error::because(ReadError, "client left", e).into_down(),
                // The client's next request, sent early (pipelining): kept, read on.
                Ok(_) if self.buf.len() < PIPELINE_LIMIT => {}
                // Far more than anyone pipelines: stop reading until the answer.
                Ok(_) => std::future::pending().await,
            }
        }
    }

    /// After a 101: whatever the client sends, as it arrives; `None` once it
    /// has closed its side.
    pub async fn read_raw(&mut self) -> Result<Option<Bytes>> {
        if self.buf.is_empty() {
            self.buf.reserve(READ_SIZE);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| Error::because(ReadError, "reading the client", e).into_down())?;
            if n == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.split().freeze()))
    }

    /// After a 101: bytes from the upstream, as they are.
    pub async fn write_raw(&mut self, data: &[u8]) -> Result<()> {
        self.send_out().await?;
        self.send(data).await
    }

    /// Closes the sending side (a TLS close_notify, a FIN).
    pub async fn shutdown(&mut self) {
        let _ = self.send_out().await;
        let _ = timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Ends the connection. When the client may still be sending (a body
    /// that was refused unread, pipelined requests), its bytes are read and
    /// dropped for a moment after our FIN: closing a socket with unread data
    /// makes the kernel send a reset, which can destroy the answer before the
    /// client reads it (nginx's `lingering_close` does the same).
    pub async fn close(mut self) {
        if self.buf.is_empty() && matches!(self.body, BodyIn::Done) {
            return;
        }
        self.shutdown().await;
        let discard = async {
            let mut left = LINGER_LIMIT;
            loop {
                self.buf.clear();
                self.buf.reserve(READ_SIZE);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(n) if n > 0 && n < left => left -= n,
                    _ => return,
                }
            }
        };
        let _ = timeout(LINGER_TIME, discard).await;
    }

    async fn send_out(&mut self) -> Result<()> {
        let bytes = std::mem::take(&mut self.out_buf);
        let sent = self.send(&bytes).await;
        self.out_buf = bytes;
        self.out_buf.clear();
        sent
    }

    /// Writes `bytes` and flushes them. What the socket takes at once arms no
    /// timer (most answers); the rest gets `CLIENT_TIMEOUT`.
    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let sent = match self.send_now(bytes)? {
            Some(sent) => sent,
            None => return Ok(()),
        };
        let stream = &mut self.stream;
        let rest = async {
            stream.write_all(&bytes[sent..]).await?;
            stream.flush().await
        };
        match timeout(CLIENT_TIMEOUT, rest).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_error(e)),
            Err(_) => Err(Error::explain(WriteTimedout, "client does not read").into_down()),
        }
    }

    /// Writes and flushes what the socket takes without waiting: `None` when
    /// that was everything, else how much of `bytes` left.
    fn send_now(&mut self, bytes: &[u8]) -> Result<Option<usize>> {
        let mut cx = Context::from_waker(Waker::noop());
        let stream = &mut self.stream;
        let mut sent = 0;
        while sent < bytes.len() {
            match Pin::new(&mut *stream).poll_write(&mut cx, &bytes[sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(write_error(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => return Err(write_error(e)),
                Poll::Pending => return Ok(Some(sent)),
            }
        }
        match Pin::new(&mut *stream).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(None),
            Poll::Ready(Err(e)) => Err(write_error(e)),
            Poll::Pending => Ok(Some(sent)),
        }
    }
}

fn body_too_large() -> Box<Error> {
    Error::explain(BODY_TOO_LARGE, "over the route's max_body").into_down()
}

fn write_error(e: std::io::Error) -> Box<Error> {
    Error::because(WriteError, "writing to the client", e).into_down()
}

/// Whether the bytes from `from` on (with the three before, where a line end
/// may have started) hold a blank line, the only way a head ends.
fn may_end_head(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3)..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// An answer's status line and fields, built before it is written.
pub struct Head {
    bytes: Vec<u8>,
    status: u16,
}

impl Head {
    /// `status` with its usual reason phrase.
    pub fn new(status: u16) -> Head {
        Head::in_buffer(Vec::with_capacity(512), status)
    }

    /// `new` written into `bytes`, whatever it held.
    fn in_buffer(mut bytes: Vec<u8>, status: u16) -> Head {
        bytes.clear();
        bytes.extend_from_slice(b"HTTP/1.1 ");
        bytes.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        bytes.push(b' ');
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        bytes.extend_from_slice(reason.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        Head { bytes, status }
    }

    /// Adds a field. One whose name or value could end the line early is
    /// dropped: no value, from a token or an upstream, may add a header.
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> &mut Head {
        if name.is_empty() || breaks(name) || breaks(value) || name.contains(&b':') {
            log::warn!(
                "answer field {:?} dropped: it would break the head",
                name.escape_ascii().to_string()
            );
        } else {
            push_field(&mut self.bytes, name, value);
        }
        self
    }
}

impl Head {
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The fields added so far, as (name, value): for a transport that
    /// writes them in its own encoding (HTTP/2). Every line was written by
    /// `push_field`, whose names hold no `:` and values no line break.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let start = self
            .bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(self.bytes.len(), |at| at + 2);
        self.bytes[start..]
            .split(|b| *b == b'\n')
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r")?;
                let colon = line.iter().position(|b| *b == b':')?;
                Some((&line[..colon], line[colon + 1..].trim_ascii_start()))
            })
    }

    /// Adds a field the HTTP parser already read as one (an upstream's): it
    /// cannot hold a line break, so it is not checked again.
    pub fn parsed_field(&mut self, name: &[u8], value: &[u8]) -> &mut Head {
        push_field(&mut self.bytes, name, value);
        self
    }
}

/// Whether `s` holds a byte that would end a field line early (CR, LF) or
/// that parsers treat differently (NUL). Every answer field goes through it,
/// so it looks at eight bytes at a time: a byte of `w` equals `b` exactly when
/// that byte of `w ^ splat(b)` is zero, and `(v - 0x01..) & !v & 0x80..` is
/// non-zero exactly when some byte of `v` is zero.
fn breaks(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut words = s.chunks_exact(8);
    let found = words.by_ref().any(|word| {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        has_zero(w)
            || has_zero(w ^ (ONES * u64::from(b'\r')))
            || has_zero(w ^ (ONES * u64::from(b'\n')))
    });
    found
        || words
            .remainder()
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Writes one `name: value` line of a head, request or answer.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_finds_cr_lf_and_nul_at_every_position() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!breaks(&clean), "{len}");
            // The bytes next to the ones looked for, and the high half, pass.
            let near: Vec<u8> = (0..len)
                .map(|i| [0x01, 0x0b, 0x0c, 0x0e, 0x80, 0xff, 0x8d][i % 7])
                .collect();
            assert!(!breaks(&near), "{len}");
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    let mut v = clean.clone();
                    v[at] = bad;
                    assert!(breaks(&v), "{len} {at} {bad}");
                }
            }
        }
    }

    #[test]
    fn a_head_may_end_only_where_a_blank_line_is() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        // Every split of the head: the part after `from` decides.
        for from in 0..head.len() {
            assert!(may_end_head(head, from), "{from}");
        }
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(may_end_head(b"GET / HTTP/1.1\nHost: a\n\n", 20));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: a\r\nX: yy", 26));
    }

    #[test]
    fn a_field_that_would_break_the_head_is_dropped() {
        let mut head = Head::new(200);
        head.field(b"X-Ok", b"1")
            .field(b"X-Bad", b"1\r\nSet-Cookie: a=b")
            .field(b"Bad:Name", b"1");
        assert_eq!(head.bytes, b"HTTP/1.1 200 OK\r\nX-Ok: 1\r\n");
    }
}
