//! A connection as bytes in and out, on either side of the gateway: plain TCP
//! as a bare tokio socket, TLS as pingora's stream (which did the handshake and
//! the certificate checks).
//!
//! A client's plain connection is taken out of pingora's stream too
//! ([`Socket::accepted`]): that stream sits on three layers (a timing wrapper
//! that reads the clock whenever a read or write waits, a write buffer, a
//! receive-timestamp wrapper) that cost more per request than parsing the
//! request head, and the gateway uses none of what they record.

use pingora::protocols::l4::stream::Stream as PlainStream;
use pingora::protocols::Stream;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Socket {
    Plain(TcpStream),
    /// pingora's stream: TLS, or anything accepted that is not plain TCP.
    Tls(Stream),
}

impl Socket {
    /// A connection pingora accepted. Must run inside the runtime that serves
    /// it (the socket is registered with that runtime's reactor).
    pub fn accepted(stream: Stream) -> Socket {
        match own_tcp(&stream) {
            // pingora's stream is dropped: it closes its descriptor, ours stays open.
            Some(tcp) => Socket::Plain(tcp),
            None => Socket::Tls(stream),
        }
    }
}

/// A descriptor of our own for a plain TCP connection, registered with the
/// runtime; `None` for anything else (TLS, Unix sockets) or on any failure,
/// which leaves the connection in pingora's stream.
fn own_tcp(stream: &Stream) -> Option<TcpStream> {
    let plain = stream.as_any().downcast_ref::<PlainStream>()?;
    let fd = plain.as_raw_fd();
    // Only a TCP socket: a Unix one has no TCP_NODELAY to read.
    let mut nodelay: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for as long as `stream` lives; getsockopt writes
    // at most `len` bytes into `nodelay`.
    let is_tcp = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut nodelay as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    if !is_tcp {
        return None;
    }
    // SAFETY: as above; the duplicate is a new descriptor, owned by nothing else.
    let own = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if own < 0 {
        return None;
    }
    // SAFETY: `own` is an open TCP socket descriptor that only this value owns.
    let std = unsafe { std::net::TcpStream::from_raw_fd(own) };
    // The duplicate shares the original's open file, already non-blocking.
    std.set_nonblocking(true).ok()?;
    TcpStream::from_std(std).ok()
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_plain_connection_outlives_pingoras_stream_on_a_descriptor_of_its_own() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let wrapped_fd = accepted.as_raw_fd();
        let stream: Stream = Box::new(PlainStream::from(accepted));
        let mut socket = Socket::accepted(stream);
        let Socket::Plain(own) = &socket else {
            panic!("a plain TCP stream stays wrapped");
        };
        assert_ne!(own.as_raw_fd(), wrapped_fd);
        // pingora's stream is gone and its descriptor closed; the connection is not.
        peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        socket.write_all(b"pong").await.unwrap();
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // Dropping ours ends the connection: no descriptor is left open behind it.
        drop(socket);
        assert_eq!(peer.read(&mut got).await.unwrap(), 0);
    }
}
