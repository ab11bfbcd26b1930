//! One connection to an upstream, plain or TLS, as the direct exchange and the
//! idle stack see it: a [`Socket`](crate::socket::Socket) (plain TCP stays a
//! bare tokio socket, so the common case pays no indirection), with what only
//! the upstream side asks of it.

pub use crate::socket::Socket as Conn;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

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
