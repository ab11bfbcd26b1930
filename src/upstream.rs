//! Upstream pools: addresses resolved once at start, round-robin over the
//! healthy ones, and a background TCP health check that takes a dead address
//! out of rotation and puts it back when it answers again.

mod idle;

use crate::config;
use async_trait::async_trait;
pub use idle::Idle;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    tls: bool,
    sni: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

struct Target {
    addr: SocketAddr,
    healthy: AtomicBool,
    /// Kept-alive connections of the direct exchange (pingora's proxy path keeps its own).
    idle: Idle,
}

impl Pool {
    /// Resolves every address now: a name that does not resolve is a start-up
    /// error, never a panic inside the proxy later.
    pub fn resolve(upstream: &config::Upstream) -> Result<Pool, String> {
        let mut targets = Vec::new();
        for addr in &upstream.addrs {
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
            name: upstream.name.clone(),
            targets,
            next: AtomicUsize::new(0),
            tls: upstream.tls,
            sni: upstream.sni.clone(),
            connect_timeout: upstream.connect_timeout,
            read_timeout: upstream.read_timeout,
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

    /// A peer for `addr` with this upstream's timeouts and TLS settings.
    pub fn peer(&self, addr: SocketAddr) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(addr, self.tls, self.sni.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(IDLE_TIMEOUT);
        Box::new(peer)
    }

    /// Passive check: a refused connection takes the address out until the
    /// next successful probe.
    pub fn mark_down(&self, addr: SocketAddr) {
        if let Some(t) = self.target(addr) {
            t.healthy.store(false, Ordering::Relaxed);
        }
    }

    /// Whether requests to this upstream go over TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long one read from (or write to) this upstream may wait.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An idle kept-alive connection to `addr`, if one is fit for a request.
    pub fn take_idle(&self, addr: SocketAddr) -> Option<tokio::net::TcpStream> {
        self.target(addr)?.idle.take(IDLE_TIMEOUT)
    }

    /// Keeps `conn` to `addr` for a later request.
    pub fn put_idle(&self, addr: SocketAddr, conn: tokio::net::TcpStream) {
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
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(t.addr)).await,
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
