//! Moving an answer's body (and, after a 101, both directions) between the
//! upstream connection and the client's, as the bytes arrive. None of
//! these ends the client's answer: the caller first gives the upstream
//! connection back, then finishes it (see `exchange::forward`).

use crate::downstream::Client;
use crate::http1::chunked::{self, Decoder};
use crate::upstream::Conn;
use bytes::{Buf, BytesMut};
use pingora::prelude::*;
use std::cell::RefCell;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, Instant, Sleep};

/// Room made before each read from the upstream.
pub const READ_SIZE: usize = 16 * 1024;

/// The deadline of an upstream read, one per client connection, moved on
/// for each read. A tokio timer armed and dropped per read cost about as much
/// as parsing the answer; moving a registered one later is a store.
pub struct ReadTimer(Pin<Box<Sleep>>);

impl Default for ReadTimer {
    fn default() -> ReadTimer {
        // Registered with the runtime's timer at its first read, not before.
        ReadTimer(Box::pin(sleep(Duration::ZERO)))
    }
}

/// What reads an upstream's answer: the bytes read and not yet passed on,
/// and how long any one read may take.
pub struct Reader<'t> {
    pub buf: BytesMut,
    timeout: Duration,
    timer: &'t mut ReadTimer,
}

thread_local! {
    /// Read buffers this thread's finished exchanges gave back: a fresh 16 KiB
    /// buffer per request was one of the costlier allocations on the path.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}
/// Spare buffers kept per thread, at most: as many as the exchanges one
/// thread usually has under way, not as many as it ever had.
const MAX_SPARE: usize = 64;

impl<'t> Reader<'t> {
    pub fn new(timer: &'t mut ReadTimer, timeout: Duration) -> Reader<'t> {
        let buf = SPARE
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE));
        Reader {
            buf,
            timeout,
            timer,
        }
    }

    /// Reads what the upstream has into `buf`; 0 means it closed.
    pub async fn read_more(&mut self, conn: &mut Conn) -> Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        let timer = &mut self.timer.0;
        timer.as_mut().reset(Instant::now() + self.timeout);
        tokio::select! {
            biased;
            read = conn.read_buf(&mut self.buf) => {
                read.map_err(|e| Error::because(ReadError, "reading from upstream", e).into_up())
            }
            () = timer.as_mut() => Err(Error::explain(ReadTimedout, "reading from upstream").into_up()),
        }
    }
}

impl Drop for Reader<'_> {
    /// Gives the buffer back for this thread's next exchange, unless one
    /// answer made it grow well past the usual size.
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if buf.capacity() <= 4 * READ_SIZE {
            SPARE.with_borrow_mut(|spare| {
                if spare.len() < MAX_SPARE {
                    spare.push(buf);
                }
            });
        }
    }
}

fn cut_short() -> Box<Error> {
    Error::explain(ConnectionClosed, "upstream closed mid-answer").into_up()
}

/// Copies a body of `len` bytes. True when it ended where it said it would.
pub async fn copy_length(
    client: &mut Client,
    conn: &mut Conn,
    rd: &mut Reader<'_>,
    len: u64,
) -> Result<bool> {
    let mut left = len;
    while left > 0 {
        if rd.buf.is_empty() {
            client.flush().await?;
            if rd.read_more(conn).await? == 0 {
                return Err(cut_short());
            }
        }
        let n = rd
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        left -= n as u64;
        client.write_body(&rd.buf[..n]).await?;
        rd.buf.advance(n);
    }
    Ok(true)
}

pub async fn copy_chunked(
    client: &mut Client,
    conn: &mut Conn,
    rd: &mut Reader<'_>,
) -> Result<bool> {
    let mut decoder = Decoder::default();
    loop {
        match decoder.next(&mut rd.buf) {
            Ok(chunked::Step::Data(data)) => client.write_body(&data).await?,
            Ok(chunked::Step::NeedMore) => {
                client.flush().await?;
                if rd.read_more(conn).await? == 0 {
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
/// the read timeout passing without a byte either way (as nginx's does), so
/// that forgotten tunnels do not hold two connections forever.
pub async fn tunnel(client: &mut Client, conn: &mut Conn, rd: &mut Reader<'_>) -> Result<()> {
    let (buf, idle) = (&mut rd.buf, rd.timeout);
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
    rd: &mut Reader<'_>,
) -> Result<()> {
    loop {
        if !rd.buf.is_empty() {
            client.write_body(&rd.buf).await?;
            rd.buf.clear();
        }
        client.flush().await?;
        if rd.read_more(conn).await? == 0 {
            return Ok(());
        }
    }
}
