//! The client connection loop: requests read one after another from one
//! HTTP/1 connection, each run through the pipeline (`Proxy::handle`), until
//! the client leaves, idles past the keep-alive limit, the gateway stops, or
//! a request leaves the connection unusable; or, for an HTTP/2 client,
//! hands the connection to `streams.rs`.

use super::{respond, Proxy};
use crate::downstream::Client;
use crate::error::Reject;
use crate::http1::exchange::ReadTimer;
use crate::http1::{self, HeadError, ReadFailure, Request};
use crate::metrics::Mode;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{self, Sleep};

/// How long a client's connection may wait for its next request head: from
/// its accept, then from the end of each answer.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(60);

/// Resolves once `KEEPALIVE` has passed since `since`. The connection's one
/// timer is moved on when it fires early (at an earlier request's deadline)
/// instead of being armed afresh for every request, which cost a measurable
/// share of a refusal.
async fn idle_for(mut timer: Pin<&mut Sleep>, since: time::Instant) {
    let deadline = since + KEEPALIVE;
    loop {
        timer.as_mut().await;
        if time::Instant::now() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// What the connection does after a request.
#[derive(PartialEq)]
enum Next {
    Request,
    Close,
    /// The client sent the HTTP/2 preface instead of a first request.
    Http2,
}

/// The connection loop: HTTP/1.x requests, one after another, each through
/// `serve`, on a client connection of our own (`client`): pingora-proxy's
/// per-request state (cache, modules, retries), then pingora-core's session,
/// each cost more than the whole pipeline here.
/// A connection that negotiated `h2` (ALPN), or that opens with the HTTP/2
/// preface, is served as HTTP/2 instead (`streams.rs`).
#[async_trait]
impl ServerApp for Proxy {
    async fn process_new(self: &Arc<Self>, stream: Stream, _: &ShutdownWatch) -> Option<Stream> {
        // Lets password hashing tell this thread's load from other processes'.
        crate::proxy_cpu::enter_this_thread();
        let stream = match &self.tls {
            Some(tls) => tls.accept(stream).await?,
            None => stream,
        };
        // Once per connection: only a TLS stream can have negotiated a protocol.
        let h2 = stream.selected_alpn_proto() == Some(ALPN::H2);
        let mut client = Client::H1(http1::Client::new(stream));
        if h2 {
            self.serve_h2(client).await;
            return None;
        }
        let mut read_timer = ReadTimer::default();
        let mut since = time::Instant::now();
        let timer = time::sleep(KEEPALIVE);
        tokio::pin!(timer);
        let mut first = true;
        loop {
            let idle = idle_for(timer.as_mut(), since);
            match self.serve(&mut client, idle, &mut read_timer, first).await {
                Next::Request => since = time::Instant::now(),
                Next::Close => break,
                Next::Http2 => {
                    self.serve_h2(client).await;
                    return None;
                }
            }
            first = false;
        }
        if let Client::H1(client) = client {
            client.close().await;
        }
        None
    }

    /// Called once the listeners are closed: connections waiting for their
    /// next request end now instead of at their keep-alive timeout.
    async fn cleanup(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }
}

impl Proxy {
    /// Resolves once the gateway is shutting down.
    pub(super) async fn stopped(&self) {
        let notified = self.stop.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.stopping.load(Ordering::Acquire) {
            notified.await;
        }
    }

    /// One request, start to end: read its head, then `run` it. `first`: the
    /// connection's first, which may instead be the HTTP/2 preface.
    async fn serve(
        &self,
        client: &mut Client,
        idle: impl Future<Output = ()>,
        read_timer: &mut ReadTimer,
        first: bool,
    ) -> Next {
        let read = tokio::select! {
            // Biased: a request already sent is served, not dropped, at shutdown.
            biased;
            read = client.read_request() => read,
            _ = self.stopped() => return Next::Close,
            _ = idle => return Next::Close,
        };
        let mut req = match read {
            Ok(Some(req)) => req,
            // The client closed the connection.
            Ok(None) => return Next::Close,
            // Looked at only once HTTP/1 failed: an HTTP/1 request costs nothing for it.
            Err(ReadFailure::Head(HeadError::Malformed))
                if first && matches!(client, Client::H1(c) if c.sent_h2_preface()) =>
            {
                return Next::Http2;
            }
            Err(ReadFailure::Head(e)) => {
                self.refuse_head(client, e).await;
                client.shutdown().await;
                return Next::Close;
            }
            Err(ReadFailure::Io(e)) => {
                log::debug!("reading a request head failed: {e}");
                return Next::Close;
            }
        };
        if self.stopping.load(Ordering::Acquire) {
            client.close_after();
        }
        let ok = self.run(client, &mut req, read_timer).await;
        // Whatever was half-read or half-written after a failure, this connection is done.
        if ok && client.reusable() {
            Next::Request
        } else {
            Next::Close
        }
    }

    /// Answers a request head the transport could not take.
    pub(super) async fn refuse_head(&self, client: &mut Client, e: HeadError) {
        let mut ctx = self.new_ctx();
        // No head to take an id from; the answer still carries one.
        ctx.request_id = crate::token::random_id();
        ctx.tls = client.is_tls();
        client.close_after();
        let _ = respond::reject(client, &ctx, &Reject::from(e)).await;
    }

    /// Runs one request through the pipeline (or, on the forward-auth
    /// listener, decides it), answers any failure and logs it, on either
    /// protocol. True when it ended without a failure.
    pub(super) async fn run(
        &self,
        client: &mut Client,
        req: &mut Request,
        read_timer: &mut ReadTimer,
    ) -> bool {
        let mut ctx = self.new_ctx();
        let handled = match self.mode {
            Mode::Proxy => self.handle(client, req, &mut ctx, read_timer).await,
            Mode::ForwardAuth => self.decide(client, req, &mut ctx).await,
        };
        let failure = handled.err();
        if let Some(e) = &failure {
            self.fail(client, req, e, &mut ctx).await;
        }
        self.log(client, req, failure.is_some(), &ctx);
        failure.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_counts_from_the_last_answer_not_from_when_the_timer_was_armed() {
        let start = time::Instant::now();
        let timer = time::sleep(KEEPALIVE);
        tokio::pin!(timer);
        // A request ended 30 s in: the timer, armed at the start, fires at 60 s
        // and must be moved on to 90 s rather than end the connection.
        time::advance(Duration::from_secs(30)).await;
        let last_answer = time::Instant::now();
        idle_for(timer.as_mut(), last_answer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(90));
        // Idle from the very start: it ends at its own deadline.
        let since = time::Instant::now();
        let timer = time::sleep(KEEPALIVE);
        tokio::pin!(timer);
        idle_for(timer.as_mut(), since).await;
        assert_eq!(since.elapsed(), KEEPALIVE);
    }
}
