//! `portcullis run`: builds the pingora server (public listener, optional TLS
//! listener, admin listener, optional forward-auth listener, background tasks)
//! and owns the process signals: SIGHUP reloads the config, SIGTERM drains and
//! exits 0, SIGINT exits now.
//!
//! Everything that can refuse to start is done before pingora is handed the
//! server: the config, the TLS files and the listening sockets, so that a
//! gateway that cannot serve exits at once with one line saying why.

mod listeners;
pub mod tls;

use crate::access_log;
use crate::admin::Admin;
use crate::auth;
use crate::auth::store::Store;
use crate::config::{self, Config};
use crate::environment::Environment;
use crate::gateway::Gateway;
use crate::metrics::METRICS;
use crate::proxy::Proxy;
use crate::rate_limit::shared::SharedLimits;
use crate::upstream::HealthCheck;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use listeners::OnBound;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use pingora::tls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Loads and validates the config the way `run`, `check` and reload all do:
/// every problem at once, one per line.
pub fn load_config(path: &Path, env: &Environment) -> Result<config::Loaded, String> {
    config::load(path, &|k| env.get(k)).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A config file read and checked, with the TLS certificate it names (when it
/// has a `tls` section) and the JWT secret from the environment: all that a
/// start or a reload can refuse without the network.
pub struct Prepared {
    pub config: Config,
    pub certificate: Option<Arc<CertifiedKey>>,
    jwt_secret: Option<String>,
}

/// Reads the file at `path` and the TLS files it names, logging its warnings.
pub fn prepare(path: &Path) -> Result<Prepared, String> {
    let env = Environment::load(path);
    let loaded = load_config(path, &env)?;
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    let certificate = loaded.config.tls.as_ref().map(tls::load).transpose()?;
    Ok(Prepared {
        config: loaded.config,
        certificate,
        jwt_secret: env.get("JWT_SECRET"),
    })
}

impl Prepared {
    /// The gateway the config describes: keys, route table, upstreams resolved,
    /// trusted issuers' fetchers started. Gives the certificate back beside it.
    pub fn build(self) -> Result<(Gateway, Option<Arc<CertifiedKey>>), String> {
        let gateway = Gateway::build(self.config, self.jwt_secret.as_deref())?;
        Ok((gateway, self.certificate))
    }
}

/// The sockets of one start: public, TLS and forward-auth (when configured) and admin.
struct Sockets {
    public: listeners::Bound,
    tls: Option<listeners::Bound>,
    admin: listeners::Bound,
    forward_auth: Option<listeners::Bound>,
}

impl Sockets {
    fn bind(cfg: &Config) -> Result<Sockets, String> {
        Ok(Sockets {
            public: listeners::bind("listen", cfg.listen)?,
            tls: match &cfg.tls {
                Some(tls) => Some(listeners::bind("tls.listen", tls.listen)?),
                None => None,
            },
            admin: listeners::bind("admin_listen", cfg.admin_listen)?,
            forward_auth: match cfg.forward_auth_listen {
                Some(addr) => Some(listeners::bind("forward_auth_listen", addr)?),
                None => None,
            },
        })
    }
}

/// Opens the store named in the config and builds the auth module's state on it,
/// revocations loaded. Any failure is one line for the operator.
async fn start_auth(cfg: &Config, refresh_secret: &[u8]) -> Result<auth::Service, String> {
    let store = Store::connect(&cfg.store).await.map_err(|e| {
        let why = e.to_string().replace('\n', " ");
        format!(
            "store {} is not usable: {why}",
            crate::cli::redact_store(&cfg.store)
        )
    })?;
    let mut service = auth::Service::start(store, refresh_secret, crate::clock::now()).await?;
    if let Some(shared) = &cfg.rate_limit_store {
        // The same secret on every replica names the same buckets in the shared store.
        let mut limits = SharedLimits::new(shared, refresh_secret)?;
        service.share_limits(&mut limits);
        // On the auth runtime, beside the revocation poller: never on a proxy thread.
        // A sync task that dies would leave limits silently per replica.
        crate::supervise::exit_if_it_dies(
            "rate limits: the shared-store sync",
            tokio::spawn(limits.run()),
        );
    }
    Ok(service)
}

/// Starts the gateway and blocks until it is told to stop.
pub fn run(path: &Path) -> Result<(), String> {
    let prepared = prepare(path)?;
    // Before anything slow (name resolution, key files, the store): a gateway
    // that cannot listen says so at once.
    let sockets = Sockets::bind(&prepared.config)?;
    let (gateway, certificate) = prepared.build()?;
    // The auth module's own runtime: it owns the store's connections and the revocation
    // poller, and lives as long as the process, whatever pingora does with its runtimes.
    let auth_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("auth")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the auth runtime: {e}"))?;
    let auth = Arc::new(
        auth_runtime.block_on(start_auth(&gateway.config, gateway.keys.refresh_secret()))?,
    );
    auth_runtime.spawn(Arc::clone(&auth).maintain());
    let cfg: &Config = &gateway.config;
    let tls_config = cfg.tls.clone();
    let grace = cfg.shutdown_grace;
    let access_log_on = cfg.access_log;
    let state = Arc::new(ArcSwap::from_pointee(gateway));
    let inflight = Arc::new(AtomicUsize::new(0));
    let ready = auth.ready_flag();

    // Under `taskset` this is the number of CPUs we may use, not the machine's.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let conf = ServerConf {
        threads,
        // With one thread there is nobody to steal work from, and pingora then runs
        // each service on a current-thread runtime, which skips the multi-thread
        // scheduler's bookkeeping on every wake-up.
        work_stealing: threads > 1,
        // Pingora sleeps this long after SIGTERM; our drain watcher exits
        // sooner once the last request is done.
        grace_period_seconds: Some(grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let (listen, admin_listen) = (sockets.public.addr, sockets.admin.addr);
    let mut proxy = Proxy::new(state.clone(), Arc::clone(&auth), inflight.clone());
    let mut live_certificate = None;
    let tls_socket = match (&tls_config, certificate, sockets.tls) {
        (Some(tls_config), Some(first), Some(socket)) => {
            let live = tls::Certificate::new(first);
            proxy = proxy.terminating_tls(live.termination(tls_config));
            live_certificate = Some(live);
            Some(socket)
        }
        _ => None,
    };
    let mut public = Service::new("portcullis".to_owned(), proxy);
    // No L4 buffers: the client connection reads into its own buffer and writes each
    // answer in one piece, so pingora's would only add a copy each way.
    let tcp = |addr: std::net::SocketAddr| {
        ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::unbuffered())
    };
    public.add_listener(tcp(listen));
    let mut public_sockets = vec![sockets.public];
    if let Some(socket) = tls_socket {
        // A plain TCP listener: `Proxy` does the handshake (`tls::Termination`).
        public.add_listener(tcp(socket.addr));
        log::info!("portcullis listening for HTTPS on {}", socket.addr);
        public_sockets.push(socket);
    }
    let mut admin = Service::new("admin".to_owned(), Admin { ready });
    admin.add_tcp(&admin_listen.to_string());
    let pools_state = state.clone();
    let health = HealthCheck {
        pools: Arc::new(move || pools_state.load().pools.clone()),
    };
    server.add_service(OnBound::new(public, public_sockets));
    server.add_service(OnBound::new(admin, vec![sockets.admin]));
    if let Some(socket) = sockets.forward_auth {
        let decisions = Proxy::forward_auth(state.clone(), auth, inflight.clone());
        let mut service = Service::new("forward-auth".to_owned(), decisions);
        service.add_listener(tcp(socket.addr));
        log::info!(
            "portcullis answering forward-auth questions on {}",
            socket.addr
        );
        server.add_service(OnBound::new(service, vec![socket]));
    }
    server.add_service(background_service("upstream health", health));

    if access_log_on {
        access_log::start();
    }
    log::info!("portcullis listening on {listen} (admin {admin_listen})");
    // Handlers are in place before any listener answers: a SIGTERM that arrives
    // as soon as the gateway looks ready is a graceful stop, not the default death.
    let streams = {
        let _in_runtime = auth_runtime.enter();
        SignalStreams::install()?
    };
    let signals = Signals {
        streams: std::sync::Mutex::new(Some(streams)),
        path: path.to_path_buf(),
        state,
        certificate: live_certificate,
        inflight,
        grace,
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    drop(auth_runtime);
    Ok(())
}

/// Waits for process signals on pingora's main loop.
struct Signals {
    /// Taken by the one `recv` pingora makes.
    streams: std::sync::Mutex<Option<SignalStreams>>,
    path: PathBuf,
    state: Arc<ArcSwap<Gateway>>,
    /// The TLS listener's certificate, when it was started with one.
    certificate: Option<Arc<tls::Certificate>>,
    inflight: Arc<AtomicUsize>,
    grace: Duration,
}

impl Signals {
    /// Swaps in a new config, and the TLS listener's certificate, if they load;
    /// otherwise the old ones stay in force.
    fn reload(&self) {
        match prepare(&self.path).and_then(Prepared::build) {
            Ok((gateway, certificate)) => {
                self.warn_restart_only(&gateway.config);
                if let (Some(live), Some(certificate)) = (&self.certificate, certificate) {
                    live.replace(certificate);
                }
                self.state.store(Arc::new(gateway));
                METRICS.config_reloads.with_label_values(&["success"]).inc();
                log::info!("reload: {} loaded", self.path.display());
            }
            Err(e) => {
                METRICS.config_reloads.with_label_values(&["failure"]).inc();
                log::error!(
                    "reload refused, old config stays in force: {}",
                    e.replace('\n', "; ")
                );
            }
        }
    }

    /// Says which changes a reload cannot apply to a running process.
    fn warn_restart_only(&self, next: &Config) {
        let current = self.state.load();
        let current = &current.config;
        let tls_listen = |c: &Config| c.tls.as_ref().map(|t| t.listen);
        if next.listen != current.listen
            || next.admin_listen != current.admin_listen
            || tls_listen(next) != tls_listen(current)
            || next.forward_auth_listen != current.forward_auth_listen
        {
            log::warn!("reload: listen addresses changed; they take effect on restart");
        }
        if next.store != current.store {
            log::warn!("reload: the store changed; it takes effect on restart");
        }
    }

    /// After SIGTERM pingora stops accepting and then sleeps the whole grace
    /// period; this exits as soon as the requests in flight are done instead.
    fn drain_then_exit(&self) {
        let inflight = self.inflight.clone();
        let deadline = Instant::now() + self.grace;
        let spawned = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                // Let the listeners close and any request mid-read get its context.
                std::thread::sleep(Duration::from_millis(100));
                while inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                access_log::flush();
                crate::otel::flush();
                std::process::exit(0);
            });
        if let Err(e) = spawned {
            log::error!("cannot start the drain watcher ({e}); waiting the full grace period");
        }
    }
}

/// The signals the gateway acts on, received from the moment they are installed:
/// one that arrives before pingora asks for it waits in its stream.
struct SignalStreams {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl SignalStreams {
    /// Needs a tokio runtime context; the streams may be polled from any runtime.
    fn install() -> Result<SignalStreams, String> {
        let install =
            |kind| signal(kind).map_err(|e| format!("cannot install signal handlers: {e}"));
        Ok(SignalStreams {
            hup: install(SignalKind::hangup())?,
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let taken = self
            .streams
            .lock()
            .ok()
            .and_then(|mut streams| streams.take());
        let Some(SignalStreams {
            mut hup,
            mut term,
            mut int,
        }) = taken
        else {
            log::error!("signal handlers asked for twice; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(),
                _ = term.recv() => {
                    log::info!("SIGTERM: draining (at most {:?})", self.grace);
                    self.drain_then_exit();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    access_log::flush();
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}
