//! The direct exchange with an HTTP/1.1 upstream, plain or TLS. A bodiless
//! request is one write of its head and, for a small answer, one read, on a
//! kept-alive connection from `upstream::Idle`; a body is streamed after the
//! head; an upgrade (WebSocket) becomes a tunnel after the upstream's 101.
//! pingora's generic proxy path did far more work per request than this.
//! What the gateway adds to the answer comes from the pipeline, through
//! [`Answering`].

pub mod answer;
mod relay;
mod request_head;

use super::chunked;
use super::client::{Head, Out};
use super::request::{BodyFraming, Request};
use crate::downstream::Client;
use crate::upstream::{Conn, Pool};
use answer::{parse_head, Answer, Framing};
use http::{Method, Version};
use pingora::prelude::*;
pub use relay::ReadTimer;
use relay::{copy_chunked, copy_length, copy_until_close, tunnel, Reader};
pub use request_head::{request_head, Additions};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// The pipeline's part in an exchange: it may shorten the wait for the
/// upstream, learns when the upstream answered and writes its own fields on
/// the client's answer.
pub trait Answering {
    /// How long a read from (or write to) the upstream may take for this
    /// request, when not the pool's `read_timeout`.
    fn read_timeout(&self) -> Option<Duration> {
        None
    }
    /// The upstream's answer head arrived `waited` after the exchange began.
    fn upstream_answered(&mut self, waited: Duration);
    /// Whether an upstream answer field is one the gateway writes itself
    /// (it is dropped from the upstream's, so it appears once).
    fn replaces(&self, name: &[u8]) -> bool;
    /// Writes the gateway's own fields after the upstream's.
    fn own_fields(&self, head: &mut Head);
}

/// An answer head larger than this is refused as a bad gateway rather than buffered.
const MAX_HEAD: usize = 64 * 1024;
/// Idle connections tried for one request before a fresh one is opened.
const STALE_TRIES: usize = 3;

/// Sends the request (`head`, then the client's body) to the upstream of
/// `pool` and the answer to the client. `accept`: the request is a WebSocket
/// handshake ([`super::websocket`]) and a 101 must carry this value. Errors
/// carry pingora's types and sources, which the pipeline maps to 502/504 (or
/// nothing, when the client left).
pub async fn forward(
    client: &mut Client,
    req: &Request,
    pool: &Pool,
    head: Vec<u8>,
    accept: Option<String>,
    timer: &mut ReadTimer,
    answering: &mut impl Answering,
) -> Result<()> {
    let method = &req.method;
    let downstream_h11 = req.version == Version::HTTP_11;
    // A 101 completes a WebSocket handshake only with this accept value.
    let upgrade = accept.as_deref().map(str::as_bytes);
    // Already checked by `framing::check`. A length is passed on as it comes; a
    // chunked body is decoded as it is read, so it is chunked again on the way out.
    let body = req.body_framing();

    let read_timeout = answering
        .read_timeout()
        .unwrap_or_else(|| pool.read_timeout());
    let mut rd = Reader::new(timer, read_timeout);
    let mut stale_tries = STALE_TRIES;
    let mut body_cut = false;
    let started = Instant::now();
    let (mut conn, addr, answer) = loop {
        let (mut conn, addr, reused) = connection(pool, stale_tries > 0).await?;
        let t = read_timeout;
        let mut exchanged = write_head(&mut conn, &head, t).await;
        if exchanged.is_ok() && body != BodyFraming::None {
            // From here the client's body is being consumed: the request can no
            // longer be sent again, whatever happens.
            stale_tries = 0;
            // A client awaiting `100 Continue` gets it from the first body read:
            // the request is admitted and its upstream reached. The upstream gets
            // the body without being asked (nginx does the same).
            let rechunk = body == BodyFraming::Chunked;
            if let Err(e) = send_body(client, &mut conn, rechunk, t).await {
                if *e.esource() == ErrorSource::Downstream {
                    return Err(e);
                }
                // The upstream stopped reading. It may have answered (a 413, a 401)
                // before closing: that answer is better than a 502. Neither
                // connection can carry another request after a cut body.
                client.close_after();
                body_cut = true;
                exchanged = Err(Failure {
                    error: e,
                    nothing_back: false,
                    unsent: false,
                });
                if let Ok(answer) = read_answer(&mut conn, &mut rd, method, upgrade).await {
                    break (conn, addr, answer);
                }
            }
        }
        let exchanged = match exchanged {
            Ok(()) => tokio::select! {
                biased;
                answer = read_answer(&mut conn, &mut rd, method, upgrade) => answer,
                gone = client.gone() => return Err(gone),
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
                    && retry_safe(method, &failure) =>
            {
                stale_tries -= 1;
                rd.buf.clear();
            }
            Err(failure) => return Err(failure.error),
        }
    };
    answering.upstream_answered(started.elapsed());

    let out = match answer.framing {
        Framing::Empty | Framing::Tunnel => Out::None,
        Framing::Length(len) => Out::Length(len),
        // Re-framed in chunks, so the client's connection can stay open; an
        // HTTP/1.0 client knows no chunks: its answer ends with the connection.
        Framing::Chunked | Framing::Close if downstream_h11 => Out::Chunked,
        Framing::Chunked | Framing::Close => Out::Close,
    };
    let head = answer_head(client.head(answer.status), &answer, answering);
    client.write_head(head, out);
    let clean = match answer.framing {
        Framing::Empty | Framing::Length(0) => true,
        Framing::Length(len) => copy_length(client, &mut conn, &mut rd, len).await?,
        Framing::Chunked => copy_chunked(client, &mut conn, &mut rd).await?,
        Framing::Close => {
            copy_until_close(client, &mut conn, &mut rd).await?;
            false
        }
        Framing::Tunnel => {
            tunnel(client, &mut conn, &mut rd).await?;
            false
        }
    };
    // Bytes past the end of the answer mean the upstream and we disagree on
    // framing: that connection carries no further request. It goes back before
    // the client's answer ends, or the client's next request could find it
    // missing and open another.
    if clean && answer.keep_alive && !body_cut && rd.buf.is_empty() {
        pool.put_idle(addr, conn);
    } else {
        drop(conn);
    }
    client.finish().await
}

/// The client's answer head, started with the upstream's status: its fields,
/// minus the ones the gateway sets, plus those.
fn answer_head(mut head: Head, answer: &Answer, answering: &impl Answering) -> Head {
    for (name, value) in answer.fields() {
        if !answering.replaces(name) {
            head.parsed_field(name, value);
        }
    }
    answering.own_fields(&mut head);
    head
}

/// Headers that describe one connection, never forwarded across it.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    [&b"connection"[..], b"keep-alive", b"proxy-connection"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
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
async fn send_body(client: &mut Client, conn: &mut Conn, rechunk: bool, t: Duration) -> Result<()> {
    let mut framed = Vec::new();
    while let Some(data) = client.read_body().await? {
        if data.is_empty() {
            continue;
        }
        if rechunk {
            framed.clear();
            let mut size = [0u8; 16];
            framed.extend_from_slice(chunked::size_hex(data.len(), &mut size));
            framed.extend_from_slice(b"\r\n");
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            write_up(conn, &framed, t).await?;
        } else {
            write_up(conn, &data, t).await?;
        }
    }
    if rechunk {
        write_up(conn, b"0\r\n\r\n", t).await?;
    }
    Ok(())
}

/// Reads the answer's head (interim 1xx answers skipped). What followed the
/// head stays in `buf`.
async fn read_answer(
    conn: &mut Conn,
    rd: &mut Reader<'_>,
    method: &Method,
    upgrade: Option<&[u8]>,
) -> std::result::Result<Answer, Failure> {
    let mut received = false;
    loop {
        if !rd.buf.is_empty() {
            received = true;
            match parse_head(&mut rd.buf, method, upgrade) {
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
            if rd.buf.len() >= MAX_HEAD {
                return Err(Failure {
                    error: Error::explain(InvalidHTTPHeader, "upstream answer head too large")
                        .into_up(),
                    nothing_back: false,
                    unsent: false,
                });
            }
        }
        match rd.read_more(conn).await {
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
