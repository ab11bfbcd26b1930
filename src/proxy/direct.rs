//! The direct exchange with a plain HTTP/1.1 upstream. A bodiless request is
//! one write of its head and, for a small answer, one read, on a kept-alive
//! connection from `upstream::Idle`; a body is streamed after the head; an
//! upgrade (WebSocket) becomes a tunnel after the upstream's 101. pingora's
//! proxy path spends about four times our own per-request work on its generic
//! machinery (docs/benchmarks.md, issue 7); TLS upstreams and requests that
//! expect a `100 Continue` still take that path.

use super::chunked::{self, Decoder};
use super::{respond, Additions, Ctx};
use crate::upstream::Pool;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Version};
use pingora::http::{HeaderNameVariant, RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head larger than this (or with more header lines than
/// `MAX_HEADERS`) is refused as a bad gateway rather than buffered.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Room made before each read from the upstream.
const READ_SIZE: usize = 16 * 1024;
/// Idle connections tried for one request before a fresh one is opened.
const STALE_TRIES: usize = 3;
/// How long the upstream may work before we also watch for the client leaving.
const CLIENT_WATCH_AFTER: Duration = Duration::from_millis(20);

/// Whether `req` can take the direct exchange to `pool`: plain TCP, and no
/// interim answer to negotiate before the body.
pub fn eligible(req: &RequestHeader, pool: &Pool) -> bool {
    let h = &req.headers;
    !pool.tls()
        && req.method != Method::CONNECT
        && (!h.contains_key(header::UPGRADE) || is_upgrade(req))
        && !h.contains_key(header::EXPECT)
}

/// How the request's body (already checked by `framing::check`) is sent on.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Body {
    None,
    /// As many bytes as its `Content-Length` says, passed as they come.
    Length,
    /// Decoded by pingora as it is read, so chunked again on the way out.
    Chunked,
}

fn request_body(req: &RequestHeader) -> Body {
    let h = &req.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        Body::Chunked
    } else if h
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes() != b"0")
    {
        Body::Length
    } else {
        Body::None
    }
}

/// Sends the request to the upstream of `pool` and the answer to the client.
/// Errors carry pingora's types and sources, so `fail_to_proxy` maps them to
/// 502/504 exactly as for the proxy path.
pub async fn forward(
    session: &mut Session,
    ctx: &mut Ctx,
    index: usize,
    adds: &Additions<'_>,
) -> Result<()> {
    let gateway = ctx.gateway.clone();
    let pool = &gateway.pools[index];
    let req = session.req_header();
    let head = request_head(req, adds);
    let method = req.method.clone();
    let downstream_h11 = req.version == Version::HTTP_11;
    let upgrade = is_upgrade(req);
    let body = request_body(req);

    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut stale_tries = STALE_TRIES;
    let mut body_cut = false;
    ctx.upstream_start = Some(std::time::Instant::now());
    let (mut conn, addr, answer) = loop {
        let (mut conn, addr, reused) = connection(pool, stale_tries > 0).await?;
        ctx.upstream = Some((index, addr));
        let t = pool.read_timeout();
        let mut exchanged = write_head(&mut conn, &head, t).await;
        if exchanged.is_ok() && body != Body::None {
            // From here the client's body is being consumed: the request can no
            // longer be sent again, whatever happens.
            stale_tries = 0;
            if let Err(e) = send_body(session, &mut conn, body, t).await {
                if *e.esource() == ErrorSource::Downstream {
                    return Err(e);
                }
                // The upstream stopped reading. It may have answered (a 413, a 401)
                // before closing: that answer is better than a 502. Neither
                // connection can carry another request after a cut body.
                session.set_keepalive(None);
                body_cut = true;
                exchanged = Err(Failure {
                    error: e,
                    nothing_back: false,
                    unsent: false,
                });
                if let Ok(answer) = read_answer(&mut conn, &mut buf, t, &method, upgrade).await {
                    break (conn, addr, answer);
                }
            }
        }
        let exchanged = match exchanged {
            Ok(()) => tokio::select! {
                biased;
                answer = read_answer(&mut conn, &mut buf, t, &method, upgrade) => answer,
                gone = client_gone(session) => return Err(gone),
            },
            Err(failure) => Err(failure),
        };
        match exchanged {
            Ok(answer) => break (conn, addr, answer),
            // A kept-alive connection the upstream closed just as we sent: nothing
            // reached it that it acted on, unless the method says a repeat could harm.
            Err(failure)
                if reused
                    && failure.nothing_back
                    && stale_tries > 0
                    && retry_safe(&method, &failure) =>
            {
                stale_tries -= 1;
                buf.clear();
            }
            Err(failure) => return Err(failure.error),
        }
    };
    super::observe_upstream(ctx);

    let Answer {
        mut resp,
        framing,
        keep_alive,
    } = answer;
    match framing {
        // Re-framed in chunks, so the client's connection can stay open.
        Framing::Close if downstream_h11 => {
            resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        // An HTTP/1.0 client knows no chunks: its answer ends with the connection.
        Framing::Close | Framing::Chunked if !downstream_h11 => {
            resp.remove_header(&header::TRANSFER_ENCODING);
            session.set_keepalive(None);
        }
        _ => {}
    }
    respond::common_headers(&mut resp, ctx)?;
    if framing == Framing::Tunnel {
        resp.insert_header(header::CONNECTION, "Upgrade")?;
    }
    let done = matches!(framing, Framing::Empty | Framing::Length(0));
    session
        .write_response_header(Box::new(resp), done)
        .await
        .map_err(|e| e.into_down())?;
    let read_timeout = pool.read_timeout();
    let clean = match framing {
        Framing::Empty | Framing::Length(0) => true,
        Framing::Length(len) => {
            copy_length(session, &mut conn, &mut buf, len, read_timeout).await?
        }
        Framing::Chunked => copy_chunked(session, &mut conn, &mut buf, read_timeout).await?,
        Framing::Close => {
            copy_until_close(session, &mut conn, &mut buf, read_timeout).await?;
            false
        }
        Framing::Tunnel => {
            tunnel(session, &mut conn, &mut buf).await?;
            false
        }
    };
    // Bytes past the end of the answer mean the upstream and we disagree on
    // framing: that connection carries no further request.
    if clean && keep_alive && !body_cut && buf.is_empty() {
        pool.put_idle(addr, conn);
    }
    Ok(())
}

/// The request head the upstream receives: the client's request line and
/// headers as sent (names in their case), minus hop-by-hop ones and those
/// the gateway sets, then the gateway's own.
fn request_head(req: &RequestHeader, adds: &Additions) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    match &adds.target {
        Some(target) => out.extend_from_slice(target.as_bytes()),
        None => out.extend_from_slice(req.raw_path()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let _ = req.map(|name, value| {
        let name = match name {
            HeaderNameVariant::Case(name) => name.as_slice(),
            HeaderNameVariant::Titled(name) => name.as_bytes(),
        };
        let ours = adds
            .headers
            .iter()
            .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name));
        if !ours && !is_hop_by_hop(name) {
            push_header(&mut out, name, value.as_bytes());
        }
        Ok(())
    });
    for (name, value) in &adds.headers {
        push_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if is_upgrade(req) {
        // The client's `Connection` stays on its side; this one asks our hop.
        push_header(&mut out, b"Connection", b"Upgrade");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An HTTP/1.1 request to switch protocols (pingora's own test, so both sides
/// of the session agree on it).
fn is_upgrade(req: &RequestHeader) -> bool {
    req.version == Version::HTTP_11 && req.headers.contains_key(header::UPGRADE)
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Headers that describe one connection, never forwarded across it.
fn is_hop_by_hop(name: &[u8]) -> bool {
    [&b"connection"[..], b"keep-alive", b"proxy-connection"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// Resolves when the client has left (or broke the protocol) while the
/// upstream is still working on its answer, so the request ends as a 499
/// instead of waiting. The watch starts late: most answers come sooner, and
/// watching costs a read.
async fn client_gone(session: &mut Session) -> Box<Error> {
    sleep(CLIENT_WATCH_AFTER).await;
    match session.as_downstream_mut().read_body_or_idle(true).await {
        Err(e) if matches!(e.etype(), ConnectionClosed | ReadError) => e.into_down(),
        // The client sent its next request early (pipelining). The watch took a
        // byte of it, so this connection ends after this answer; the answer stands.
        _ => {
            session.set_keepalive(None);
            std::future::pending().await
        }
    }
}

/// A connection to the next address in turn: a kept-alive one when allowed
/// and available (then `true`), else a new one.
async fn connection(pool: &Pool, use_idle: bool) -> Result<(TcpStream, SocketAddr, bool)> {
    let addr = pool.pick();
    if use_idle {
        if let Some(conn) = pool.take_idle(addr) {
            return Ok((conn, addr, true));
        }
    }
    let (conn, addr) = connect(pool, addr).await?;
    Ok((conn, addr, false))
}

/// A new connection, to `first` and then each other address in turn until
/// one accepts: nothing has been sent yet, so trying the next is always safe.
async fn connect(pool: &Pool, first: SocketAddr) -> Result<(TcpStream, SocketAddr)> {
    let mut last = Error::new_up(ConnectError);
    for attempt in 0..pool.len() {
        let addr = if attempt == 0 { first } else { pool.pick() };
        let failure = match timeout(pool.connect_timeout(), TcpStream::connect(addr)).await {
            Ok(Ok(conn)) => {
                // Request heads are written whole; waiting to coalesce only adds latency.
                let _ = conn.set_nodelay(true);
                return Ok((conn, addr));
            }
            Ok(Err(e)) => {
                let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    ConnectRefused
                } else {
                    ConnectError
                };
                Error::because(etype, format!("connecting to {addr}"), e)
            }
            Err(_) => Error::explain(ConnectTimedout, format!("connecting to {addr}")),
        };
        if pool.len() > 1 {
            pool.mark_down(addr);
        }
        last = failure.into_up();
    }
    Err(last)
}

/// How the upstream's answer body is delimited.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
    /// Switched protocols: bytes flow both ways until either side ends.
    Tunnel,
}

struct Answer {
    resp: ResponseHeader,
    framing: Framing,
    /// The upstream will read another request on this connection.
    keep_alive: bool,
}

struct Failure {
    error: Box<Error>,
    /// Not one byte of an answer arrived.
    nothing_back: bool,
    /// The request head never left completely.
    unsent: bool,
}

/// Whether a request that failed on a kept-alive connection may be sent again:
/// always if it never left, otherwise only when repeating it is harmless.
fn retry_safe(method: &Method, failure: &Failure) -> bool {
    failure.unsent
        || matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        )
}

async fn write_up(conn: &mut TcpStream, bytes: &[u8], t: Duration) -> Result<()> {
    match timeout(t, conn.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::because(WriteError, "writing to upstream", e).into_up()),
        Err(_) => Err(Error::explain(WriteTimedout, "writing to upstream").into_up()),
    }
}

async fn write_head(
    conn: &mut TcpStream,
    head: &[u8],
    t: Duration,
) -> std::result::Result<(), Failure> {
    write_up(conn, head, t).await.map_err(|error| Failure {
        error,
        nothing_back: true,
        unsent: true,
    })
}

/// Streams the client's body to the upstream as it arrives. Errors reading
/// the client are marked as the client's, errors writing as the upstream's.
async fn send_body(
    session: &mut Session,
    conn: &mut TcpStream,
    body: Body,
    t: Duration,
) -> Result<()> {
    let mut framed = Vec::new();
    while let Some(data) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        if data.is_empty() {
            continue;
        }
        if body == Body::Chunked {
            framed.clear();
            framed.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            write_up(conn, &framed, t).await?;
        } else {
            write_up(conn, &data, t).await?;
        }
    }
    if body == Body::Chunked {
        write_up(conn, b"0\r\n\r\n", t).await?;
    }
    Ok(())
}

/// Reads the answer's head (interim 1xx answers skipped). What followed the
/// head stays in `buf`.
async fn read_answer(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    read_timeout: Duration,
    method: &Method,
    upgrade: bool,
) -> std::result::Result<Answer, Failure> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            match parse_head(buf, method, upgrade) {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure {
                        error: e,
                        nothing_back: false,
                        unsent: false,
                    })
                }
            }
            if buf.len() >= MAX_HEAD {
                return Err(Failure {
                    error: Error::explain(InvalidHTTPHeader, "upstream answer head too large")
                        .into_up(),
                    nothing_back: false,
                    unsent: false,
                });
            }
        }
        match read_more(conn, buf, read_timeout).await {
            Ok(0) => {
                return Err(Failure {
                    error: Error::explain(ConnectionClosed, "upstream closed before answering")
                        .into_up(),
                    nothing_back: !received,
                    unsent: false,
                })
            }
            Ok(_) => {}
            Err(e) => {
                let timed_out = *e.etype() == ReadTimedout;
                return Err(Failure {
                    error: e,
                    // A timeout is an upstream that is slow, not one that left.
                    nothing_back: !received && !timed_out,
                    unsent: false,
                });
            }
        }
    }
}

/// One complete, final answer head taken off the front of `buf`, `None` if
/// more bytes are needed. Interim (1xx) answers are consumed and skipped.
fn parse_head(buf: &mut BytesMut, method: &Method, upgrade: bool) -> Result<Option<Answer>> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let outcome = parsed.parse(buf);
        let len = match outcome {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Error::because(InvalidHTTPHeader, "upstream answer head", e).into_up())
            }
        };
        let status = parsed.code.unwrap_or(0);
        if status == 101 && !upgrade {
            return Error::e_explain(InvalidHTTPHeader, "upstream switched protocols unasked")
                .map_err(|e| e.into_up());
        }
        if (100..200).contains(&status) && status != 101 {
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        // Values are sliced out of the head rather than copied: note where they are.
        let base = buf.as_ptr() as usize;
        let mut fields: Vec<(HeaderName, Range<usize>)> = Vec::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .or_err(InvalidHTTPHeader, "upstream header name")
                .map_err(|e| e.into_up())?;
            let start = h.value.as_ptr() as usize - base;
            fields.push((name, start..start + h.value.len()));
        }
        let head = buf.split_to(len).freeze();
        return build_answer(status, http10, &head, fields, method).map(Some);
    }
}

fn build_answer(
    status: u16,
    http10: bool,
    head: &Bytes,
    fields: Vec<(HeaderName, Range<usize>)>,
    method: &Method,
) -> Result<Answer> {
    let bad = |what: &'static str| Error::explain(InvalidHTTPHeader, what).into_up();
    let mut resp =
        ResponseHeader::build_no_case(status, Some(fields.len() + 4)).map_err(|e| e.into_up())?;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = http10;
    for (name, range) in fields {
        let value = &head[range.clone()];
        if name == header::CONNECTION {
            for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
            continue;
        }
        // Server would be dropped and Date replaced on the way out (respond::common_headers,
        // pingora's writer): not adding them saves both steps.
        if is_hop_by_hop(name.as_str().as_bytes()) || name == header::SERVER || name == header::DATE
        {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let n = parse_length(value).ok_or_else(|| bad("upstream content-length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(bad("upstream sent two content-lengths"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .or_err(InvalidHTTPHeader, "upstream header value")
            .map_err(|e| e.into_up())?;
        resp.append_header(name, value).map_err(|e| e.into_up())?;
    }
    if chunked.is_some() && length.is_some() {
        // Transfer-Encoding wins (RFC 9112 §6.3); a length beside it is a smuggling shape.
        resp.remove_header(&header::CONTENT_LENGTH);
    }
    let framing = if status == 101 {
        Framing::Tunnel
    } else if *method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    Ok(Answer {
        resp,
        framing,
        keep_alive: !close && framing != Framing::Close,
    })
}

fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Reads what the upstream has into `buf`; 0 means it closed.
async fn read_more(conn: &mut TcpStream, buf: &mut BytesMut, t: Duration) -> Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    match timeout(t, conn.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Error::because(ReadError, "reading from upstream", e).into_up()),
        Err(_) => Err(Error::explain(ReadTimedout, "reading from upstream").into_up()),
    }
}

async fn send(session: &mut Session, data: Bytes, end: bool) -> Result<()> {
    session
        .write_response_body(Some(data), end)
        .await
        .map_err(|e| e.into_down())
}

fn cut_short() -> Box<Error> {
    Error::explain(ConnectionClosed, "upstream closed mid-answer").into_up()
}

/// Copies a body of `len` bytes. True when it ended where it said it would.
async fn copy_length(
    session: &mut Session,
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    len: u64,
    t: Duration,
) -> Result<bool> {
    let mut left = len;
    while left > 0 {
        if buf.is_empty() && read_more(conn, buf, t).await? == 0 {
            return Err(cut_short());
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        left -= n as u64;
        send(session, buf.split_to(n).freeze(), left == 0).await?;
    }
    Ok(true)
}

async fn copy_chunked(
    session: &mut Session,
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<bool> {
    let mut decoder = Decoder::default();
    loop {
        match decoder.next(buf) {
            Ok(chunked::Step::Data(data)) => send(session, data, false).await?,
            Ok(chunked::Step::NeedMore) => {
                if read_more(conn, buf, t).await? == 0 {
                    return Err(cut_short());
                }
            }
            Ok(chunked::Step::Done) => {
                send(session, Bytes::new(), true).await?;
                return Ok(true);
            }
            Err(chunked::Malformed) => {
                return Err(Error::explain(InvalidHTTPHeader, "upstream chunk framing").into_up())
            }
        }
    }
}

/// Relays bytes both ways after a 101. An upgraded connection may idle for
/// long, so no read timeout applies here. The client finishing first half-
/// closes toward the upstream; the upstream finishing ends the tunnel.
async fn tunnel(session: &mut Session, conn: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    let (mut from_upstream, mut to_upstream) = conn.split();
    let mut client_open = true;
    loop {
        if !buf.is_empty() {
            send(session, buf.split().freeze(), false).await?;
        }
        if buf.capacity() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        tokio::select! {
            read = from_upstream.read_buf(buf) => match read {
                Ok(0) => return send(session, Bytes::new(), true).await,
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::because(ReadError, "reading from upstream", e).into_up())
                }
            },
            data = session.read_request_body(), if client_open => {
                match data.map_err(|e| e.into_down())? {
                    Some(data) => to_upstream
                        .write_all(&data)
                        .await
                        .or_err(WriteError, "writing to upstream")
                        .map_err(|e| e.into_up())?,
                    None => {
                        client_open = false;
                        let _ = to_upstream.shutdown().await;
                    }
                }
            }
        }
    }
}

async fn copy_until_close(
    session: &mut Session,
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<()> {
    loop {
        if !buf.is_empty() {
            send(session, buf.split().freeze(), false).await?;
        }
        if read_more(conn, buf, t).await? == 0 {
            return send(session, Bytes::new(), true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(wire: &[u8], method: Method) -> (Option<Answer>, BytesMut) {
        let mut buf = BytesMut::from(wire);
        let answer = parse_head(&mut buf, &method, false).unwrap();
        (answer, buf)
    }

    fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
        a.resp.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn a_length_framed_answer_keeps_its_headers_and_leaves_the_body() {
        let (a, rest) = answer(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.resp.status, 201);
        assert_eq!(a.framing, Framing::Length(5));
        assert!(a.keep_alive);
        assert_eq!(header(&a, "content-type"), Some("text/plain"));
        let two: Vec<_> = a.resp.headers.get_all("x-two").iter().collect();
        assert_eq!(two, ["a", "b"]);
        assert!(header(&a, "connection").is_none());
        assert!(header(&a, "keep-alive").is_none());
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn interim_answers_are_skipped_and_a_partial_head_waits() {
        let (a, _) = answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le",
            Method::GET,
        );
        assert!(a.is_none());
        let (a, _) = answer(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.resp.status, 204);
        assert_eq!(a.framing, Framing::Empty);
        assert!(header(&a, "link").is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |wire: &[u8], method| answer(wire, method).0.unwrap().framing;
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::GET
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                Method::HEAD
            ),
            Framing::Empty
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::GET
            ),
            Framing::Empty
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET),
            Framing::Close
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Method::GET
            ),
            Framing::Close
        );
    }

    #[test]
    fn an_answer_with_many_headers_keeps_them_all() {
        let mut wire = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..100 {
            wire.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        wire.push_str("Content-Length: 0\r\n\r\n");
        let (a, _) = answer(wire.as_bytes(), Method::GET);
        let a = a.unwrap();
        assert_eq!(a.resp.headers.len(), 101);
        assert_eq!(header(&a, "x-h99"), Some("99"));
        let mut wire = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_HEADERS + 1 {
            wire.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        wire.push_str("\r\n");
        let mut buf = BytesMut::from(wire.as_bytes());
        assert!(parse_head(&mut buf, &Method::GET, false).is_err());
    }

    #[test]
    fn chunked_beside_a_length_drops_the_length() {
        let (a, _) = answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.framing, Framing::Chunked);
        assert!(header(&a, "content-length").is_none());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let keep = |wire: &[u8]| answer(wire, Method::GET).0.unwrap().keep_alive;
        assert!(keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn bad_heads_are_errors_not_guesses() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(wire);
            let e = parse_head(&mut buf, &Method::GET, false)
                .err()
                .expect("refused");
            assert_eq!(*e.esource(), ErrorSource::Upstream, "{wire:?}");
        }
    }

    #[test]
    fn the_request_head_keeps_client_case_and_drops_hop_by_hop_and_ours() {
        let mut req = RequestHeader::build("GET", b"/a/../b?q=1", None).unwrap();
        req.append_header("Host", "example.test").unwrap();
        req.append_header("X-Custom-Case", "1").unwrap();
        req.append_header("Connection", "keep-alive").unwrap();
        req.append_header("Keep-Alive", "timeout=5").unwrap();
        req.append_header("X-Request-Id", "client").unwrap();
        let adds = Additions {
            target: Some("/b?q=1".into()),
            headers: vec![(
                &super::super::X_REQUEST_ID,
                HeaderValue::from_static("ours"),
            )],
        };
        let head = String::from_utf8(request_head(&req, &adds)).unwrap();
        assert_eq!(
            head,
            "GET /b?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Custom-Case: 1\r\nx-request-id: ours\r\n\r\n"
        );
    }

    #[test]
    fn plain_requests_are_eligible_unless_they_wait_for_100_continue() {
        let pool = Pool::resolve(&crate::config::Upstream {
            name: "app".into(),
            addrs: vec!["127.0.0.1:1".into()],
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            tls: false,
            sni: String::new(),
        })
        .unwrap();
        let req = |pairs: &[(&str, &str)]| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            for (k, v) in pairs {
                r.append_header(k.to_string(), *v).unwrap();
            }
            r
        };
        assert!(eligible(&req(&[]), &pool));
        assert!(eligible(&req(&[("content-length", "0")]), &pool));
        assert!(eligible(&req(&[("content-length", "3")]), &pool));
        assert!(eligible(&req(&[("transfer-encoding", "chunked")]), &pool));
        assert!(eligible(&req(&[("upgrade", "websocket")]), &pool));
        assert!(!eligible(&req(&[("expect", "100-continue")]), &pool));
    }
}
