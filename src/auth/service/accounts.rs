//! The account lifecycle: email verification, password forgot / reset /
//! change, and the caller's sessions. Mail goes through the outbox (`auth::mail`), so no
//! answer waits for SMTP, and answers about an address are the same whether or not it
//! has an account: the lookup happens in the mail worker, after the answer.

use std::net::IpAddr;
use std::sync::Arc;

use super::{signed, unsigned, Service, MAX_ACCESS_TTL};
use crate::auth::account_limits::Kind;
use crate::auth::email;
use crate::auth::mail::Job;
use crate::auth::password;
use crate::auth::store::{Purpose, SessionOrigin, SessionRow, StoreError};
use crate::auth::tokens;
use crate::authn::Identity;
use crate::config::{Auth, Email};
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::metrics::METRICS;
use http::HeaderMap;

/// A user agent longer than this is cut: it is shown to the user, not parsed.
const MAX_USER_AGENT: usize = 256;
/// One-time tokens are 43 base64url characters; anything else is refused before a query.
const TOKEN_LEN: usize = 43;

/// Where a request comes from, as a session remembers it: the `User-Agent` (cut, control
/// characters dropped) and the client's /24 or /48, never the full address.
pub fn session_origin(ip: IpAddr, headers: &HeaderMap) -> SessionOrigin {
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect::<String>()
        })
        .filter(|ua| !ua.trim().is_empty());
    SessionOrigin {
        user_agent,
        ip_prefix: Some(ip_prefix(ip)),
    }
}

/// `203.0.113.0/24` or `2001:db8:1::/48` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn ip_prefix(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{prefix}/48")
        }
    }
}

impl Service {
    /// `POST /signup` with verification on: the same 202 for a new address (which gets
    /// a verification link) and a registered one (whose owner is told someone tried).
    /// Both paths hash the password and write to the store once, so they also take
    /// about the same time.
    pub async fn signup_verified(
        &self,
        gw: &Gateway,
        settings: &Arc<Email>,
        ip: IpAddr,
        email: &str,
        password: String,
        now: u64,
    ) -> Result<(), Reject> {
        let (email, created) = self.new_account(gw, ip, email, password, now).await?;
        let auth = &gw.config.auth;
        match created {
            Ok(user) => {
                if self.mail_budget(auth, &user.email).await? {
                    let job = Job::Verify {
                        user_id: user.id,
                        email: user.email,
                    };
                    self.outbox.push(job, settings);
                }
            }
            Err(StoreError::Conflict) => {
                if self.mail_budget(auth, &email).await? {
                    self.outbox.push(Job::SignupExisting { email }, settings);
                }
            }
            Err(e) => return Err(self.unavailable("signup", e)),
        }
        Ok(())
    }

    /// `POST /verify-email/resend {email}`: a new link if the address has an unverified
    /// account; the answer is the same either way.
    pub async fn resend_verification(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        email: &str,
    ) -> Result<(), Reject> {
        self.queue_for_address(gw, ip, email, |email| Job::Resend { email })
            .await
    }

    /// `POST /password/forgot {email}`: a reset link if the address has an account; the
    /// answer is the same either way.
    pub async fn forgot_password(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        email: &str,
    ) -> Result<(), Reject> {
        self.queue_for_address(gw, ip, email, |email| Job::Reset { email })
            .await
    }

    /// `POST /verify-email {token}`: marks the address the token was sent to verified.
    pub async fn verify_email(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        token: &str,
        now: u64,
    ) -> Result<(), Reject> {
        self.account_token_limits(gw, ip).await?;
        let token = plausible_token(token)?;
        match self
            .store
            .verify_email(&tokens::hash(token), signed(now))
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Reject::InvalidAccountToken),
            Err(e) => Err(self.unavailable("verify-email", e)),
        }
    }

    /// `POST /password/reset {token, password}`: sets the password (signup's policy) and
    /// ends every session and access token of the user, on every replica within a poll.
    pub async fn reset_password(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        token: &str,
        password: String,
        now: u64,
    ) -> Result<(), Reject> {
        self.account_token_limits(gw, ip).await?;
        let token = plausible_token(token)?;
        password::acceptable_new(&password).map_err(|why| Reject::BadRequest(why.into()))?;
        let hash = tokens::hash(token);
        // A hash costs far more than this lookup: spend it only on a live token.
        let live = self
            .store
            .account_token_live(Purpose::PasswordReset, &hash, signed(now))
            .await
            .map_err(|e| self.unavailable("password reset", e))?;
        if !live {
            return Err(Reject::InvalidAccountToken);
        }
        let password_hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|e| super::hasher_failed("password reset", e))?;
        let reset = self
            .store
            .reset_password(&hash, &password_hash, signed(now))
            .await
            .map_err(|e| self.unavailable("password reset", e))?
            .ok_or(Reject::InvalidAccountToken)?;
        let horizon = now.saturating_add(MAX_ACCESS_TTL.as_secs());
        self.revocations
            .set_not_before(&reset.user_id, unsigned(reset.not_before), horizon);
        self.sync_now().await;
        log::info!(
            "password reset: every session of user {} ended",
            reset.user_id
        );
        Ok(())
    }

    /// `POST /password/change {current_password, new_password}` for the bearer `id`:
    /// ends the user's other sessions; the caller's own goes on.
    pub async fn change_password(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        id: &Identity,
        current: String,
        new: String,
        now: u64,
    ) -> Result<(), Reject> {
        let auth = &gw.config.auth;
        self.available()?;
        // A guess at the current password costs the same budget as a login attempt.
        let limits = &auth.rate_limits;
        self.shared_limit(Kind::LoginIp, &ip.to_string(), &limits.login)
            .await?;
        let user = self
            .store
            .user_by_id(&id.sub)
            .await
            .map_err(|e| self.unavailable("password change", e))?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Reject::Revoked);
        };
        self.shared_limit(Kind::LoginEmail, &user.email, &limits.login_per_email)
            .await?;
        password::acceptable_new(&new).map_err(|why| Reject::BadRequest(why.into()))?;
        let matched = password::acceptable(&current).is_ok()
            && self
                .hasher
                .verify(current, Some(user.password_hash.clone()))
                .await
                .map_err(|e| super::hasher_failed("password change", e))?;
        if !matched {
            return Err(Reject::InvalidCredentials);
        }
        let password_hash = self
            .hasher
            .hash(new)
            .await
            .map_err(|e| super::hasher_failed("password change", e))?;
        let ended = self
            .store
            .change_password(&user.id, &password_hash, id.sid.as_deref(), signed(now))
            .await
            .map_err(|e| self.unavailable("password change", e))?;
        let horizon = now.saturating_add(MAX_ACCESS_TTL.as_secs());
        for family in &ended {
            self.revocations.revoke_family(family, horizon);
        }
        self.sync_now().await;
        Ok(())
    }

    /// `GET /sessions`: the bearer's live sessions, newest first.
    pub async fn sessions(&self, id: &Identity, now: u64) -> Result<Vec<SessionRow>, Reject> {
        self.available()?;
        self.store
            .sessions_of(&id.sub, signed(now))
            .await
            .map_err(|e| self.unavailable("sessions", e))
    }

    /// `DELETE /sessions/{id}`: ends one of the bearer's sessions at once (its refresh
    /// token and every access token minted from it). 404 for anyone else's.
    pub async fn end_session(&self, id: &Identity, session: &str, now: u64) -> Result<(), Reject> {
        self.available()?;
        if session.len() != 32 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Reject::NotFound);
        }
        match self.store.end_session(&id.sub, session, signed(now)).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(Reject::NotFound),
            Err(e) => return Err(self.unavailable("end session", e)),
        }
        let horizon = now.saturating_add(MAX_ACCESS_TTL.as_secs());
        self.revocations.revoke_family(session, horizon);
        self.sync_now().await;
        Ok(())
    }

    /// After the password matched: 403 when `require_verified_email` holds and the
    /// user's address is not verified.
    pub(super) async fn require_verified(&self, auth: &Auth, user_id: &str) -> Result<(), Reject> {
        if !auth.require_verified_email || auth.email.is_none() {
            return Ok(());
        }
        let verified = self
            .store
            .email_verified(user_id)
            .await
            .map_err(|e| self.unavailable("login", e))?;
        if verified {
            Ok(())
        } else {
            METRICS.logins.with_label_values(&["failure"]).inc();
            Err(Reject::EmailNotVerified)
        }
    }

    /// The shared start of forgot and resend: per-IP limit (429), address shape (400),
    /// then, within the address's mail budget, the job; 202 either way.
    async fn queue_for_address(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        email: &str,
        job: impl FnOnce(String) -> Job,
    ) -> Result<(), Reject> {
        let auth = &gw.config.auth;
        let settings = auth.email.as_ref().ok_or(Reject::NotFound)?;
        self.available()?;
        self.shared_limit(Kind::MailIp, &ip.to_string(), &auth.rate_limits.mail)
            .await?;
        let email = email::valid(email).map_err(|why| Reject::BadRequest(why.into()))?;
        if self.mail_budget(auth, &email).await? {
            self.outbox.push(job(email), settings);
        }
        Ok(())
    }

    /// Counts a mail to `email` against `mail_per_email`; `false` (nothing to send, the
    /// answer unchanged) when the address has had its share.
    async fn mail_budget(&self, auth: &Auth, email: &str) -> Result<bool, Reject> {
        let rate = &auth.rate_limits.mail_per_email;
        match self.shared_limit(Kind::MailEmail, email, rate).await {
            Ok(()) => Ok(true),
            Err(Reject::TooManyRequests { .. }) => {
                METRICS.mails.with_label_values(&["any", "skipped"]).inc();
                log::debug!("mail not sent: the address had its share");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn account_token_limits(&self, gw: &Gateway, ip: IpAddr) -> Result<(), Reject> {
        let auth = &gw.config.auth;
        if auth.email.is_none() {
            return Err(Reject::NotFound);
        }
        self.available()?;
        let rate = &auth.rate_limits.account_tokens;
        self.shared_limit(Kind::TokenIp, &ip.to_string(), rate)
            .await
    }
}

/// A one-time token as we issue them (43 base64url characters), or 400.
fn plausible_token(token: &str) -> Result<&str, Reject> {
    let shaped = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if shaped {
        Ok(token)
    } else {
        Err(Reject::InvalidAccountToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_show_the_network_not_the_address() {
        assert_eq!(ip_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(ip_prefix("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            ip_prefix("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn user_agents_are_cut_and_cleaned() {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "curl/8.5.0".parse().unwrap());
        let o = session_origin("127.0.0.1".parse().unwrap(), &headers);
        assert_eq!(o.user_agent.as_deref(), Some("curl/8.5.0"));
        headers.insert("user-agent", "x".repeat(1000).parse().unwrap());
        let o = session_origin("127.0.0.1".parse().unwrap(), &headers);
        assert_eq!(o.user_agent.map(|u| u.len()), Some(MAX_USER_AGENT));
    }
}
