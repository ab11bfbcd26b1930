//! The runtime form of one loaded config: compiled route table, signing keys
//! and resolved upstream pools. Built once per load or reload and swapped in
//! whole, so a request sees one consistent config from start to end.

use crate::config::{Algorithm, Config};
use crate::issuers::TrustedIssuers;
use crate::metrics::RouteSeries;
use crate::route::RouteTable;
use crate::token::Keys;
use crate::upstream::{self, Pool};
use std::sync::Arc;

/// Everything the request path reads, immutable once built.
pub struct Gateway {
    pub config: Config,
    pub routes: RouteTable,
    pub keys: Keys,
    /// `auth.trusted_issuers`, with the keys fetched for them.
    pub issuers: TrustedIssuers,
    pub pools: Vec<Arc<Pool>>,
    /// Each route's metric series, by route index; then those of requests
    /// that matched no route.
    pub series: Vec<RouteSeries>,
    pub unrouted: RouteSeries,
    /// The OpenTelemetry exporter when `tracing` is configured; `None` = off, and then
    /// the request path does nothing else for tracing.
    pub tracing: Option<Arc<crate::otel::Tracing>>,
}

/// The HS256 secret's shortest accepted length (docs/security.md, Guessable HS256 secrets).
pub const MIN_SECRET_LEN: usize = 32;

impl Gateway {
    /// Compiles `config` with the secret from the environment. Every error is
    /// one line an operator can act on.
    pub fn build(config: Config, jwt_secret: Option<&str>) -> Result<Gateway, String> {
        let keys = signing_keys(&config, jwt_secret)?;
        if config.auth.algorithm != Algorithm::HS256 {
            crate::keys::watch(&keys, &config);
        }
        let routes = RouteTable::new(
            config
                .routes
                .iter()
                .map(|r| (r.pattern.clone(), r.methods.clone()))
                .collect(),
        );
        let pools = config
            .upstreams
            .iter()
            .map(|u| {
                let spec = upstream::Spec {
                    name: &u.name,
                    addrs: &u.addrs,
                    tls: u.tls,
                    sni: &u.sni,
                    connect_timeout: u.connect_timeout,
                    read_timeout: u.read_timeout,
                    h2: u.protocol != crate::config::UpstreamProtocol::Http1,
                };
                Pool::resolve(&spec).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let issuers = TrustedIssuers::start(&config.auth.trusted_issuers, config.auth.leeway);
        let series = config
            .routes
            .iter()
            .map(|r| RouteSeries::new(r.pattern.as_str()))
            .collect();
        let tracing = crate::otel::install(config.tracing.as_ref())?;
        Ok(Gateway {
            tracing,
            config,
            routes,
            keys,
            issuers,
            pools,
            series,
            unrouted: RouteSeries::new("none"),
        })
    }
}

/// The keys the configured algorithm needs: the HS256 secret, or the key set
/// in the store (created on first use, sealed under the key-encryption key).
/// They refuse tokens living longer than `auth.max_lifetime` (`access_ttl` unless set).
pub fn signing_keys(config: &Config, jwt_secret: Option<&str>) -> Result<Keys, String> {
    let mut keys = algorithm_keys(config, jwt_secret)?;
    keys.set_max_lifetime(config.auth.max_lifetime);
    Ok(keys)
}

fn algorithm_keys(config: &Config, jwt_secret: Option<&str>) -> Result<Keys, String> {
    let auth = &config.auth;
    match auth.algorithm {
        Algorithm::HS256 => {
            let secret = jwt_secret.ok_or("JWT_SECRET is not set (HS256 needs a secret of at least 32 bytes, in the environment or in .env beside the config)")?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "JWT_SECRET is {} bytes; HS256 needs at least {MIN_SECRET_LEN}",
                    secret.len()
                ));
            }
            crate::auth::secret_strength::check_jwt_secret(secret)?;
            Ok(Keys::hs256(
                secret.as_bytes(),
                &auth.key_id,
                &auth.issuer,
                &auth.audience,
                auth.leeway,
            ))
        }
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => {
            crate::keys::open(config, jwt_secret, crate::clock::now())
        }
    }
}
