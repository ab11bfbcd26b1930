//! Upstream pools: addresses resolved once at start, round-robin over the
//! healthy ones, new connections (plain or TLS) and kept-alive idle ones per
//! address, and a background TCP health check that takes a dead address out
//! of rotation and puts it back when it answers again.

mod conn;
mod idle;
mod multiplexed;

use async_trait::async_trait;
pub use conn::Conn;
pub use idle::Idle;
use multiplexed::Multiplexed;
use pingora::connectors::TransportConnector;
use pingora::prelude::*;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How often each address is probed, and how long a probe may take.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idle pooled connection to an upstream is kept for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One named upstream, ready to hand out peers.
pub struct Pool {
    pub name: String,
    targets: Vec<Target>,
    next: AtomicUsize,
    /// Present for TLS upstreams: pingora's TLS client (system roots, or the
    /// bundle `SSL_CERT_FILE` names), used for the handshake only.
    tls: Option<TransportConnector>,
    sni: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Present when gRPC calls go over HTTP/2 (`protocol: h2c | h2`).
    h2: Option<Multiplexed>,
}

struct Target {
    addr: SocketAddr,
    healthy: AtomicBool,
    /// Kept-alive connections, reused newest first.
    idle: Idle,
}

/// What a pool is made of: one configured upstream, in the transport's terms.
pub struct Spec<'a> {
    pub name: &'a str,
    /// `host:port` strings, resolved when the pool is made.
    pub addrs: &'a [String],
    pub tls: bool,
    pub sni: &'a str,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// gRPC calls go over HTTP/2 (with TLS: agreed by ALPN).
    pub h2: bool,
}

impl Pool {
    /// Resolves every address now: a name that does not resolve is a start-up
    /// error, never a panic inside the proxy later.
    pub fn resolve(upstream: &Spec) -> Result<Pool, String> {
        let mut targets = Vec::new();
        for addr in upstream.addrs {
            let resolved = addr
                .to_socket_addrs()
                .map_err(|e| format!("upstream {}: cannot resolve {addr}: {e}", upstream.name))?;
            let before = targets.len();
            targets.extend(resolved.map(|addr| Target {
                addr,
                healthy: AtomicBool::new(true),
                idle: Idle::default(),
            }));
            if targets.len() == before {
                return Err(format!(
                    "upstream {}: {addr} resolves to no address",
                    upstream.name
                ));
            }
        }
        Ok(Pool {
            name: upstream.name.to_owned(),
            targets,
            next: AtomicUsize::new(0),
            tls: match upstream.tls {
                true => Some(tls_client(upstream.name)?),
                false => None,
            },
            sni: upstream.sni.to_owned(),
            connect_timeout: upstream.connect_timeout,
            read_timeout: upstream.read_timeout,
            h2: upstream.h2.then(Multiplexed::default),
        })
    }

    /// The next healthy address in turn; when none is healthy, the next one
    /// anyway, so a wrong health verdict degrades to trying rather than to 502.
    pub fn pick(&self) -> SocketAddr {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .find(|t| t.healthy.load(Ordering::Relaxed))
            .unwrap_or(&self.targets[start % n])
            .addr
    }

    /// A new connection to `addr`, TLS handshake included. Errors carry
    /// pingora's connect error types, marked as the upstream's.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Conn> {
        self.connect_for(addr, false).await
    }

    /// `connect`, for HTTP/2 when `h2` (a TLS upstream is offered `h2` alone by ALPN).
    async fn connect_for(&self, addr: SocketAddr, h2: bool) -> Result<Conn> {
        let Some(connector) = &self.tls else {
            return match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(conn)) => {
                    // Request heads are written whole; waiting to coalesce only adds latency.
                    let _ = conn.set_nodelay(true);
                    Ok(Conn::Plain(conn))
                }
                Ok(Err(e)) => {
                    let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        ConnectRefused
                    } else {
                        ConnectError
                    };
                    Err(Error::because(etype, format!("connecting to {addr}"), e).into_up())
                }
                Err(_) => {
                    Err(Error::explain(ConnectTimedout, format!("connecting to {addr}")).into_up())
                }
            };
        };
        let mut peer = HttpPeer::new(addr, true, self.sni.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        if h2 {
            peer.options.alpn = pingora::protocols::ALPN::H2;
        }
        match connector.new_stream(&peer).await {
            Ok(stream) => Ok(Conn::Tls(stream)),
            Err(e) => Err(e.into_up()),
        }
    }

    /// Passive check: a refused connection takes the address out until the
    /// next successful probe.
    pub fn mark_down(&self, addr: SocketAddr) {
        if let Some(t) = self.target(addr) {
            t.healthy.store(false, Ordering::Relaxed);
        }
    }

    /// How long one read from (or write to) this upstream may wait.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An idle kept-alive connection to `addr`, if one is fit for a request.
    pub fn take_idle(&self, addr: SocketAddr) -> Option<Conn> {
        self.target(addr)?.idle.take(IDLE_TIMEOUT)
    }

    /// Keeps `conn` to `addr` for a later request.
    pub fn put_idle(&self, addr: SocketAddr, conn: Conn) {
        if let Some(t) = self.target(addr) {
            t.idle.put(conn);
        }
    }

    fn target(&self, addr: SocketAddr) -> Option<&Target> {
        self.targets.iter().find(|t| t.addr == addr)
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    async fn probe_all(&self) {
        for t in &self.targets {
            let ok = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(t.addr)).await,
                Ok(Ok(_))
            );
            let was = t.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                log::warn!(
                    "upstream {} {}: {}",
                    self.name,
                    t.addr,
                    if ok {
                        "healthy again"
                    } else {
                        "unhealthy, out of rotation"
                    }
                );
            }
        }
    }
}

/// pingora's TLS client with the platform's roots. Building it panics when
/// they cannot be loaded (a broken `SSL_CERT_FILE`, say): that is a start-up
/// error naming the upstream, not a crash.
fn tls_client(name: &str) -> Result<TransportConnector, String> {
    std::panic::catch_unwind(|| TransportConnector::new(None)).map_err(|_| {
        format!("upstream {name}: cannot load the CA certificates for tls (check SSL_CERT_FILE / SSL_CERT_DIR)")
    })
}

/// Probes the pools of the current config. Pools with one address are left
/// alone: there is nothing to fail over to.
pub struct HealthCheck {
    pub pools: Arc<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>,
}

#[async_trait]
impl BackgroundService for HealthCheck {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            }
            for pool in (self.pools)() {
                if pool.len() > 1 {
                    pool.probe_all().await;
                }
            }
        }
    }
}
