//! The HTTP/2 connection loop: streams accepted one after another on one
//! connection, each run through the same pipeline as an HTTP/1 request
//! (`Proxy::run`) in a task of its own, until the client leaves, breaks the
//! protocol, idles past the keep-alive limit or the gateway stops (a
//! graceful GOAWAY: streams under way finish). The h2 crate does the
//! framing, HPACK, flow control and the protocol's own checks, within the
//! bounds of `http2::server`.

use super::connection::KEEPALIVE;
use super::Proxy;
use crate::downstream::Client;
use crate::http1::exchange::ReadTimer;
use crate::http2::{self, Primed};
use crate::metrics::Mode;
use crate::socket::Socket;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{self, timeout};

/// How long streams still running when their connection ends may take to
/// notice it and log themselves.
const STREAMS_DRAIN: Duration = Duration::from_secs(5);

impl Proxy {
    /// Serves `client`'s connection as HTTP/2 from here on (whatever its HTTP/1
    /// reader had read is read again by the HTTP/2 server). Off (`h2c: false`,
    /// `tls.http2: false`, the forward-auth listener), a prior-knowledge client is refused with
    /// the protocol's own answer, a GOAWAY with `HTTP_1_1_REQUIRED`.
    pub(super) async fn serve_h2(self: &Arc<Self>, client: Client) {
        let Client::H1(client) = client else {
            return;
        };
        let (tls, peer) = (client.is_tls(), client.peer_ip());
        let gateway = self.state.load();
        let config = &gateway.config;
        let allowed = self.mode == Mode::Proxy
            && match &config.tls {
                Some(t) if tls => t.http2,
                _ => config.h2c,
            };
        drop(gateway);
        let (socket, read) = client.into_parts();
        let io = Primed::new(read, socket);
        let handshake = http2::server().handshake::<Primed<Socket>, Bytes>(io);
        let mut conn = match timeout(http2::HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                log::debug!("HTTP/2 handshake failed: {e}");
                return;
            }
            Err(_) => {
                log::debug!("HTTP/2 handshake timed out");
                return;
            }
        };
        if !allowed {
            log::debug!("HTTP/2 preface on the plain listener refused (h2c is off)");
            conn.abrupt_shutdown(Reason::HTTP_1_1_REQUIRED);
            // Sends the GOAWAY; a client that keeps the connection open is not waited for.
            let _ = timeout(Duration::from_secs(1), conn.accept()).await;
            return;
        }
        let mut streams = JoinSet::new();
        let mut closing = false;
        let idle = time::sleep(KEEPALIVE);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                accepted = conn.accept() => match accepted {
                    Some(Ok((req, respond))) => {
                        let proxy = self.clone();
                        streams.spawn(async move { proxy.serve_stream(req, respond, tls, peer).await });
                    }
                    Some(Err(e)) => {
                        log::debug!("HTTP/2 connection ended: {e}");
                        break;
                    }
                    None => break,
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {
                    if streams.is_empty() {
                        idle.as_mut().reset(time::Instant::now() + KEEPALIVE);
                    }
                }
                _ = self.stopped(), if !closing => {
                    closing = true;
                    conn.graceful_shutdown();
                }
                _ = idle.as_mut(), if !closing && streams.is_empty() => {
                    closing = true;
                    conn.graceful_shutdown();
                }
            }
        }
        let drained = timeout(STREAMS_DRAIN, async {
            while streams.join_next().await.is_some() {}
        });
        let _ = drained.await;
    }

    /// One stream: its request made the pipeline's, run, answered and logged.
    async fn serve_stream(
        self: Arc<Self>,
        req: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        tls: bool,
        peer: Option<IpAddr>,
    ) {
        let (parts, body) = req.into_parts();
        let converted = http2::request::request_of(&parts, !body.is_end_stream());
        let mut client = Client::H2(http2::Stream::new(respond, body, &parts, tls, peer));
        match converted {
            Ok(mut req) => {
                if self.stopping.load(Ordering::Acquire) {
                    client.close_after();
                }
                let mut read_timer = ReadTimer::default();
                self.run(&mut client, &mut req, &mut read_timer).await;
            }
            Err(e) => self.refuse_head(&mut client, e).await,
        }
        if let Client::H2(stream) = &mut client {
            stream.linger().await;
        }
    }
}
