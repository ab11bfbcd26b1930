//! One connection to an upstream, plain or TLS, as the direct exchange and the
//! idle stack see it. Plain TCP stays a bare tokio socket (the common case pays
//! no indirection); TLS is pingora's stream, which did the handshake and the
//! certificate checks.

use pingora::protocols::Stream;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Conn {
    Plain(TcpStream),
    Tls(Stream),
}

impl Conn {
    /// Writes what the socket takes without waiting (plain TCP only; 0 for
    /// TLS). A request head almost always fits, and then no timer is armed.
    pub fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(tcp) => match tcp.try_write(bytes) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                written => written,
            },
            Conn::Tls(_) => Ok(0),
        }
    }

    /// True when reading would block: no data and no end of stream is waiting.
    /// An idle connection only becomes readable when the upstream closed it or
    /// sent bytes nobody asked for; either way it must not carry a request.
    pub fn is_quiet(&mut self) -> bool {
        match self {
            Conn::Plain(tcp) => {
                let mut byte = [0u8; 1];
                matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
            Conn::Tls(stream) => {
                // One poll without a real waker: TLS records that carry no data
                // (session tickets) are consumed inside and still read as Pending.
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = Context::from_waker(Waker::noop());
                matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
