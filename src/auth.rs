//! The embedded auth module: accounts, refresh-token families, revocation state and
//! password hashing (`service`, with no HTTP types), and the thin HTTP adapter that
//! serves them under `auth.prefix` (`endpoints`).

pub mod account_limits;
pub mod email;
pub mod endpoints;
pub mod mail;
pub mod password;
pub mod pat;
pub mod revocations;
pub mod secret_strength;
pub mod service;
pub mod store;
pub mod tokens;
pub mod wordlists;

pub use service::Service;
