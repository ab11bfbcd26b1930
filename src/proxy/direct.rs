//! The direct exchange with an HTTP/1.1 upstream, plain or TLS. A bodiless
//! request is one write of its head and, for a small answer, one read, on a
//! kept-alive connection from `upstream::Idle`; a body is streamed after the
//! head; an upgrade (WebSocket) becomes a tunnel after the upstream's 101.
//! pingora's generic proxy spent about four times this per request
//! (docs/benchmarks.md, issue 7).

mod answer;
mod chunked;
mod relay;

use super::{respond, Additions, Ctx, Session};
use crate::upstream::{Conn, Pool};
use answer::{parse_head, Answer, Framing};
use bytes::BytesMut;
use http::header;
use http::{Method, Version};
use pingora::http::{HeaderNameVariant, RequestHeader};
use pingora::prelude::*;
use relay::{copy_chunked, copy_length, copy_until_close, read_more, tunnel, READ_SIZE};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An answer head larger than this is refused as a bad gateway rather than buffered.
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections tried for one request before a fresh one is opened.
const STALE_TRIES: usize = 3;
/// How long the upstream may work before we also watch for the client leaving.
const CLIENT_WATCH_AFTER: Duration = Duration::from_millis(20);

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
/// Errors carry pingora's types and sources, which `Proxy::fail` maps to
/// 502/504 (or nothing, when the client left).
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
    // Answered here, once the request is admitted and its upstream reached; the
    // upstream then gets the body without being asked (nginx does the same).
    let expects_continue = req
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));

    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut stale_tries = STALE_TRIES;
    let mut body_cut = false;
    ctx.upstream_start = Some(std::time::Instant::now());
    let (mut conn, addr, answer) = loop {
        let (mut conn, addr, reused) = connection(pool, stale_tries > 0).await?;
        let t = pool.read_timeout();
        let mut exchanged = write_head(&mut conn, &head, t).await;
        if exchanged.is_ok() && body != Body::None {
            // From here the client's body is being consumed: the request can no
            // longer be sent again, whatever happens.
            stale_tries = 0;
            if expects_continue {
                session
                    .write_continue_response()
                    .await
                    .map_err(|e| e.into_down())?;
            }
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
    session
        .write_response_header(Box::new(resp))
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
            tunnel(session, &mut conn, &mut buf, read_timeout).await?;
            false
        }
    };
    // Bytes past the end of the answer mean the upstream and we disagree on
    // framing: that connection carries no further request. It goes back before
    // the client's answer ends, or the client's next request could find it
    // missing and open another.
    if clean && keep_alive && !body_cut && buf.is_empty() {
        pool.put_idle(addr, conn);
    } else {
        drop(conn);
    }
    session.finish_body().await.map_err(|e| e.into_down())
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
        if !ours && !is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"expect") {
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
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
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
    match session.read_body_or_idle(true).await {
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
async fn connection(pool: &Pool, use_idle: bool) -> Result<(Conn, SocketAddr, bool)> {
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
async fn connect(pool: &Pool, first: SocketAddr) -> Result<(Conn, SocketAddr)> {
    let mut last = Error::new_up(ConnectError);
    for attempt in 0..pool.len() {
        let addr = if attempt == 0 { first } else { pool.pick() };
        match pool.connect(addr).await {
            Ok(conn) => return Ok((conn, addr)),
            Err(e) => last = e,
        }
        if pool.len() > 1 {
            pool.mark_down(addr);
        }
    }
    Err(last)
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

async fn write_up(conn: &mut Conn, bytes: &[u8], t: Duration) -> Result<()> {
    let sent = conn
        .write_now(bytes)
        .map_err(|e| Error::because(WriteError, "writing to upstream", e).into_up())?;
    let Some(rest) = bytes.get(sent..).filter(|rest| !rest.is_empty()) else {
        return Ok(());
    };
    // A TLS stream buffers what it is given; the flush sends it (free on TCP).
    let write = async {
        conn.write_all(rest).await?;
        conn.flush().await
    };
    match timeout(t, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::because(WriteError, "writing to upstream", e).into_up()),
        Err(_) => Err(Error::explain(WriteTimedout, "writing to upstream").into_up()),
    }
}

async fn write_head(conn: &mut Conn, head: &[u8], t: Duration) -> std::result::Result<(), Failure> {
    write_up(conn, head, t).await.map_err(|error| Failure {
        error,
        nothing_back: true,
        unsent: true,
    })
}

/// Streams the client's body to the upstream as it arrives. Errors reading
/// the client are marked as the client's, errors writing as the upstream's.
async fn send_body(session: &mut Session, conn: &mut Conn, body: Body, t: Duration) -> Result<()> {
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
    conn: &mut Conn,
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

#[cfg(test)]
mod tests {
    use super::*;

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
                http::HeaderValue::from_static("ours"),
            )],
        };
        let head = String::from_utf8(request_head(&req, &adds)).unwrap();
        assert_eq!(
            head,
            "GET /b?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Custom-Case: 1\r\nx-request-id: ours\r\n\r\n"
        );
    }
}
