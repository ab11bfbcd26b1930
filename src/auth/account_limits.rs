//! The rate limits that protect accounts (login per IP, login per email, signup per IP).
//! On PostgreSQL, where replicas share the store, they are counted in the store, so a
//! client cannot multiply its attempts by the number of replicas behind the load
//! balancer. On SQLite (one node) the process's own memory is already the whole picture,
//! so they stay there and a login costs no write. Refresh and the routes' own
//! `rate_limit` are always in memory, per replica (`crate::rate_limit`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::store::{Store, StoreError};
use super::tokens::hex;
use crate::config::Rate;
use crate::rate_limit::{Limited, Limiter};

/// Which shared limit an attempt counts against; part of the stored key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LoginIp,
    LoginEmail,
    SignupIp,
    /// Second-factor attempts (TOTP or recovery code) per user.
    MfaUser,
    /// Mail-sending requests (forgot, resend) per client IP.
    MailIp,
    /// Mails to one address.
    MailEmail,
    /// Verification and reset token uses per client IP.
    TokenIp,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::LoginIp => b"login ip",
            Kind::LoginEmail => b"login email",
            Kind::SignupIp => b"signup ip",
            Kind::MfaUser => b"mfa user",
            Kind::MailIp => b"mail ip",
            Kind::MailEmail => b"mail email",
            Kind::TokenIp => b"token ip",
        }
    }
}

/// Login and signup limits, wherever the deployment needs them kept.
pub struct AccountLimits {
    /// `Some` when the store is shared by replicas: then every check goes to the store.
    shared: Option<SharedLimits>,
    login_ip: Limiter,
    login_email: Limiter,
    signup_ip: Limiter,
    mfa_user: Limiter,
    mail_ip: Limiter,
    mail_email: Limiter,
    token_ip: Limiter,
}

impl AccountLimits {
    /// Shared through `store` when it is shared by replicas (buckets named with `key`,
    /// which must be equal on every replica), else in memory with at most `capacity` keys
    /// per limit.
    pub fn new(store: &Store, key: [u8; 32], capacity: usize) -> AccountLimits {
        AccountLimits {
            shared: store.shared_by_replicas().then(|| SharedLimits::new(key)),
            login_ip: Limiter::new(capacity),
            login_email: Limiter::new(capacity),
            signup_ip: Limiter::new(capacity),
            mfa_user: Limiter::new(capacity),
            mail_ip: Limiter::new(capacity),
            mail_email: Limiter::new(capacity),
            token_ip: Limiter::new(capacity),
        }
    }

    /// True when the buckets live in the store (and the store's table needs purging).
    pub fn shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Counts one attempt by `who` against `kind` at `rate`, now. `Ok(Err(_))` when over
    /// the limit; `Err` only when shared and the store does not answer.
    pub async fn check(
        &self,
        store: &Store,
        kind: Kind,
        who: &str,
        rate: &Rate,
    ) -> Result<Result<(), Limited>, StoreError> {
        if let Some(shared) = &self.shared {
            return shared.check(store, kind, who, rate).await;
        }
        let limiter = match kind {
            Kind::LoginIp => &self.login_ip,
            Kind::LoginEmail => &self.login_email,
            Kind::SignupIp => &self.signup_ip,
            Kind::MfaUser => &self.mfa_user,
            Kind::MailIp => &self.mail_ip,
            Kind::MailEmail => &self.mail_email,
            Kind::TokenIp => &self.token_ip,
        };
        Ok(limiter.check(who, rate, Instant::now()))
    }

    /// Forgets in-memory buckets that are full again.
    pub fn sweep(&self, now: Instant) {
        let all = [
            &self.login_ip,
            &self.login_email,
            &self.signup_ip,
            &self.mfa_user,
            &self.mail_ip,
            &self.mail_email,
            &self.token_ip,
        ];
        for limiter in all {
            limiter.sweep(now);
        }
    }
}

/// Names the shared buckets. Keys are keyed hashes, so the table holds no address or
/// email in clear, and equal on every replica holding the same key.
struct SharedLimits {
    key: [u8; 32],
}

impl SharedLimits {
    /// `key` must be equal on every replica (it is derived from the key set's refresh
    /// secret: `JWT_SECRET` or `keys_dir/refresh.secret`), or each
    /// replica counts in buckets of its own.
    fn new(key: [u8; 32]) -> SharedLimits {
        SharedLimits { key }
    }

    /// Counts one attempt by `who` against `kind` at `rate`, now.
    async fn check(
        &self,
        store: &Store,
        kind: Kind,
        who: &str,
        rate: &Rate,
    ) -> Result<Result<(), Limited>, StoreError> {
        store
            .hit_rate_limit(&self.bucket(kind, who), rate, now_millis())
            .await
    }

    /// 128 bits of HMAC-SHA256(key, kind || 0 || who), in hex: collisions are out of reach.
    fn bucket(&self, kind: Kind, who: &str) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(kind.label());
        mac.update(&[0]);
        mac.update(who.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }
}

/// Unix milliseconds: the shared buckets need a clock every replica agrees on.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_keyed_per_kind_and_hide_the_client() {
        let limits = SharedLimits::new([7; 32]);
        let a = limits.bucket(Kind::LoginEmail, "ada@example.com");
        assert_eq!(a.len(), 32);
        assert!(!a.contains("ada"));
        assert_eq!(
            a,
            SharedLimits::new([7; 32]).bucket(Kind::LoginEmail, "ada@example.com")
        );
        assert_ne!(a, limits.bucket(Kind::LoginIp, "ada@example.com"));
        assert_ne!(
            a,
            SharedLimits::new([8; 32]).bucket(Kind::LoginEmail, "ada@example.com")
        );
    }
}
