//! The embedded auth module: accounts, refresh-token families, revocation
//! state and password hashing. Nothing in here knows about HTTP.

pub mod password;
pub mod revocations;
pub mod store;
pub mod tokens;
