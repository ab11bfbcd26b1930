//! Portcullis: an edge gateway on Pingora that authenticates and authorizes
//! every request before it reaches the services behind it.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod downstream;
pub mod environment;
pub mod error;
pub mod gateway;
pub mod http1;
pub mod http2;
pub mod identity_headers;
pub mod invariants;
pub mod issuers;
pub mod keys;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod otel;
pub mod proxy;
pub mod proxy_cpu;
pub mod rate_limit;
pub mod route;
pub mod server;
pub mod socket;
pub mod supervise;
pub mod token;
pub mod upstream;
