//! The client side of one request, whichever protocol it came in on: an
//! HTTP/1 connection (which carries one request at a time) or an HTTP/2
//! stream. The pipeline and the upstream exchange answer through this, so
//! one policy serves both; each operation goes to its transport.

use crate::http1::{self, Head, Out, ReadFailure, Request};
use crate::http2;
use bytes::Bytes;
use pingora::prelude::*;
use std::net::IpAddr;

pub enum Client {
    H1(http1::Client),
    H2(http2::Stream),
}

impl Client {
    pub fn is_tls(&self) -> bool {
        match self {
            Client::H1(c) => c.is_tls(),
            Client::H2(s) => s.is_tls(),
        }
    }

    /// The TCP peer's address.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        match self {
            Client::H1(c) => c.peer_ip(),
            Client::H2(s) => s.peer_ip(),
        }
    }

    /// The next request's head on an HTTP/1 connection; `None` when the
    /// client closed it (and always on a stream, which carries one request).
    pub async fn read_request(&mut self) -> Result<Option<Request>, ReadFailure> {
        match self {
            Client::H1(c) => c.read_request().await,
            Client::H2(_) => Ok(None),
        }
    }

    /// An answer head for `status`.
    pub fn head(&mut self, status: u16) -> Head {
        match self {
            Client::H1(c) => c.head(status),
            Client::H2(_) => Head::new(status),
        }
    }

    /// Ends an HTTP/1 connection after this answer. An HTTP/2 stream's
    /// framing leaves no doubt about where a request ends: nothing to do.
    pub fn close_after(&mut self) {
        if let Client::H1(c) = self {
            c.close_after();
        }
    }

    /// The status of the answer written so far, if any.
    pub fn answered(&self) -> Option<u16> {
        match self {
            Client::H1(c) => c.answered(),
            Client::H2(s) => s.answered(),
        }
    }

    /// Makes `status` the one logged and counted for the answer just written,
    /// when the wire's says less: a refused gRPC call is an HTTP 200 carrying
    /// its refusal, and is counted as the refusal (401, 403, 429 ...).
    pub fn count_as(&mut self, status: u16) {
        if let Client::H2(s) = self {
            s.answered = Some(status);
        }
    }

    pub fn limit_body(&mut self, max: u64) -> Result<()> {
        match self {
            Client::H1(c) => c.limit_body(max),
            Client::H2(s) => s.limit_body(max),
        }
    }

    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        match self {
            Client::H1(c) => c.read_body().await,
            Client::H2(s) => s.read_body().await,
        }
    }

    /// Queues (HTTP/1) or sends (HTTP/2) the answer's head. A stream that
    /// can no longer take it fails its next write.
    pub fn write_head(&mut self, head: Head, out: Out) {
        match self {
            Client::H1(c) => c.write_head(head, out),
            Client::H2(s) => {
                if let Err(e) = s.write_head(head, out) {
                    log::debug!("answer head not sent: {e}");
                }
            }
        }
    }

    pub async fn write_body(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Client::H1(c) => c.write_body(data).await,
            Client::H2(s) => s.write_body(data).await,
        }
    }

    pub async fn flush(&mut self) -> Result<()> {
        match self {
            Client::H1(c) => c.flush().await,
            Client::H2(_) => Ok(()),
        }
    }

    pub async fn finish(&mut self) -> Result<()> {
        match self {
            Client::H1(c) => c.finish().await,
            Client::H2(s) => s.finish(),
        }
    }

    /// Resolves when the client has left (or reset its stream) while its
    /// answer is awaited.
    pub async fn gone(&mut self) -> Box<Error> {
        match self {
            Client::H1(c) => c.gone().await,
            Client::H2(s) => s.gone().await,
        }
    }

    /// After a 101, which only an HTTP/1 client can be given.
    pub async fn read_raw(&mut self) -> Result<Option<Bytes>> {
        match self {
            Client::H1(c) => c.read_raw().await,
            Client::H2(_) => Err(no_tunnel()),
        }
    }

    pub async fn write_raw(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Client::H1(c) => c.write_raw(data).await,
            Client::H2(_) => Err(no_tunnel()),
        }
    }

    /// Whether an HTTP/1 connection can read another request.
    pub fn reusable(&self) -> bool {
        match self {
            Client::H1(c) => c.reusable(),
            Client::H2(_) => false,
        }
    }

    pub async fn shutdown(&mut self) {
        if let Client::H1(c) = self {
            c.shutdown().await;
        }
    }
}

fn no_tunnel() -> Box<Error> {
    Error::explain(InternalError, "no tunnel on an HTTP/2 stream").into_down()
}
