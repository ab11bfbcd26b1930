//! Moving an answer's body (and, after a 101, both directions) between the
//! upstream connection and the client's, as the bytes arrive. None of
//! these ends the client's answer: the caller first gives the upstream
//! connection back, then finishes it (see `direct::forward`).

use crate::proxy::chunked::{self, Decoder};
use crate::proxy::client::Client;
use crate::upstream::Conn;
use bytes::{Buf, BytesMut};
use pingora::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Room made before each read from the upstream.
pub const READ_SIZE: usize = 16 * 1024;

/// Reads what the upstream has into `buf`; 0 means it closed.
pub async fn read_more(conn: &mut Conn, buf: &mut BytesMut, t: Duration) -> Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    match tokio::time::timeout(t, conn.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Error::because(ReadError, "reading from upstream", e).into_up()),
        Err(_) => Err(Error::explain(ReadTimedout, "reading from upstream").into_up()),
    }
}

fn cut_short() -> Box<Error> {
    Error::explain(ConnectionClosed, "upstream closed mid-answer").into_up()
}

/// Copies a body of `len` bytes. True when it ended where it said it would.
pub async fn copy_length(
    client: &mut Client,
    conn: &mut Conn,
    buf: &mut BytesMut,
    len: u64,
    t: Duration,
) -> Result<bool> {
    let mut left = len;
    while left > 0 {
        if buf.is_empty() {
            client.flush().await?;
            if read_more(conn, buf, t).await? == 0 {
                return Err(cut_short());
            }
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        left -= n as u64;
        client.write_body(&buf[..n]).await?;
        buf.advance(n);
    }
    Ok(true)
}

pub async fn copy_chunked(
    client: &mut Client,
    conn: &mut Conn,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<bool> {
    let mut decoder = Decoder::default();
    loop {
        match decoder.next(buf) {
            Ok(chunked::Step::Data(data)) => client.write_body(&data).await?,
            Ok(chunked::Step::NeedMore) => {
                client.flush().await?;
                if read_more(conn, buf, t).await? == 0 {
                    return Err(cut_short());
                }
            }
            Ok(chunked::Step::Done) => {
                return Ok(true);
            }
            Err(chunked::Malformed) => {
                return Err(Error::explain(InvalidHTTPHeader, "upstream chunk framing").into_up())
            }
        }
    }
}

/// Relays bytes both ways after a 101. The client finishing first half-closes
/// toward the upstream; the upstream finishing ends the tunnel, and so does
/// `idle` without a byte either way (as nginx's read timeout does), so that
/// forgotten tunnels do not hold two connections forever.
pub async fn tunnel(
    client: &mut Client,
    conn: &mut Conn,
    buf: &mut BytesMut,
    idle: Duration,
) -> Result<()> {
    client.flush().await?;
    let (mut from_upstream, mut to_upstream) = tokio::io::split(conn);
    let mut client_open = true;
    loop {
        if !buf.is_empty() {
            client.write_raw(buf).await?;
            buf.clear();
        }
        if buf.capacity() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        tokio::select! {
            read = from_upstream.read_buf(buf) => match read {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::because(ReadError, "reading from upstream", e).into_up())
                }
            },
            data = client.read_raw(), if client_open => {
                match data? {
                    Some(data) => write_flushed(&mut to_upstream, &data)
                        .await
                        .or_err(WriteError, "writing to upstream")
                        .map_err(|e| e.into_up())?,
                    None => {
                        client_open = false;
                        let _ = to_upstream.shutdown().await;
                    }
                }
            }
            _ = sleep(idle) => return Ok(()),
        }
    }
}

/// Writes `data` and sends it on: a TLS stream holds writes until flushed.
async fn write_flushed(
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    data: &[u8],
) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

pub async fn copy_until_close(
    client: &mut Client,
    conn: &mut Conn,
    buf: &mut BytesMut,
    t: Duration,
) -> Result<()> {
    loop {
        if !buf.is_empty() {
            client.write_body(buf).await?;
            buf.clear();
        }
        client.flush().await?;
        if read_more(conn, buf, t).await? == 0 {
            return Ok(());
        }
    }
}
