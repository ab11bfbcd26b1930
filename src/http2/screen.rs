//! The header-block screen between a client's connection and the h2 server: it reads
//! every header block before h2 does and makes a field h2 would refuse while decoding it
//! (an uppercase name, a control byte in a value; see [`field::is_refused`]) a stream
//! error, where h2 on its own ends the whole connection (RFC 9113 §8.2.1 asks for a
//! stream error). h2 keeps its HPACK decoder private, so the screen keeps a shadow of
//! the client's HPACK table with the `httlib-hpack` crate ([`block`]); everything else
//! passes unchanged ([`frames`]). Why and what it costs: docs/http2.md.

mod block;
mod field;
mod frames;
mod span;

use bytes::BytesMut;
use frames::{Next, Screen};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Read from the client at a time: `input` holds at most one frame of up to 16 KiB
/// being collected and one read past it.
const READ_CHUNK: usize = 16 * 1024;

/// A client's connection as the h2 server reads it: the bytes an HTTP/1 reader already
/// took (the preface) first, then the socket, with every header block screened.
/// Writes go straight to the socket.
pub struct Screened<S> {
    io: S,
    screen: Screen,
}

impl<S> Screened<S> {
    pub fn new(read: BytesMut, io: S) -> Screened<S> {
        Screened {
            io,
            screen: Screen::new(read),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Screened<S> {
    /// Fills `buf` with as much screened input as is ready, reading from the client only
    /// when nothing is.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining();
        while buf.remaining() > 0 {
            match this.screen.next() {
                Next::Bytes => {
                    let ready = this.screen.bytes();
                    let n = ready.len().min(buf.remaining());
                    buf.put_slice(&ready[..n]);
                    this.screen.consume(n);
                }
                Next::Input if buf.remaining() < room => break,
                Next::Input => {
                    let input = this.screen.input();
                    input.reserve(READ_CHUNK);
                    let io = Pin::new(&mut this.io);
                    // At the end of the client's bytes, h2 is told so as it would be without us.
                    if ready!(tokio_util::io::poll_read_buf(io, cx, input))? == 0 {
                        break;
                    }
                }
                Next::Broken => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "HTTP/2 header block past what the screen can take apart",
                    )))
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Screened<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::PREFACE;
    use tokio::io::AsyncReadExt;

    /// A client that sends one byte per read.
    struct Trickle(Vec<u8>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.0.is_empty() {
                buf.put_slice(&[self.0.remove(0)]);
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn h2_reads_a_clean_connection_unchanged_when_it_arrives_byte_by_byte() {
        let mut frames = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
        frames.extend(b"12345678");
        // HEADERS, END_STREAM | END_HEADERS, stream 1: GET http /, `:authority: a`.
        frames.extend([0, 0, 6, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 1, b'a']);
        let (primed, rest) = PREFACE.split_at(10);
        let client = Trickle([rest, &frames].concat());
        let mut screened = Screened::new(BytesMut::from(primed), client);
        let mut read = Vec::new();
        screened.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, [PREFACE, &frames].concat());
    }
}
