//! The TOTP second factor (RFC 6238 via `totp-rs`): enrollment and
//! confirmation with ten single-use recovery codes, the login's second step behind a
//! short-lived single-use ticket, enrollment required for `auth.require_mfa_for_roles`,
//! turning it off (password and code) and an admin reset.
//!
//! The secret is sealed at rest with AES-256-GCM under the key-encryption key that seals
//! the signing keys (`PORTCULLIS_KEY_ENCRYPTION_KEY`, or the quickstart's generated file
//! on SQLite), bound to the user id. A code is accepted once: the last accepted time step
//! is advanced with a conditional write, so neither this replica nor another takes it
//! again. Attempts are limited per user (in the store when replicas share it).

use super::{hasher_failed, signed, Login, Scope, Service, TokenPair};
use crate::auth::account_limits::Kind;
use crate::auth::store::{Store, StoreError, StoredTotp};
use crate::auth::tokens;
use crate::authn::{self, Identity};
use crate::config::Rate;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::keys::kek::Kek;
use crate::metrics::METRICS;
use crate::token::Keys;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use totp_rs::{Builder, Totp};

/// How long the ticket between password and code lives.
const TICKET_TTL: u64 = 5 * 60;
/// How long an enrollment token (for a role that must enroll) lives.
const ENROLL_TTL: u64 = 15 * 60;
/// What an enrollment token starts with: never a JWT, never a personal access token,
/// so no proxied route accepts it.
pub const ENROLL_PREFIX: &str = "pcl_mfa_";
/// Second-factor attempts per user, right or wrong (a limit that counted only wrong
/// ones would still let a guesser learn from a refusal which guess was right): ten per
/// five minutes keeps a guesser, with three codes valid at a time, near one in a
/// hundred a day.
const ATTEMPTS: Rate = Rate {
    count: 10,
    per: Duration::from_secs(5 * 60),
};
const RECOVERY_CODES: usize = 10;
/// The TOTP secret's length: 160 bits, RFC 4226's recommendation.
const SECRET_LEN: usize = 20;

/// The key-encryption key, read once per process on the first MFA request.
static KEK: OnceLock<Arc<Kek>> = OnceLock::new();

/// How the login's second step is proven.
pub enum Proof<'a> {
    Code(&'a str),
    RecoveryCode(&'a str),
}

/// Who calls an enrollment endpoint: a session, or an enrollment token.
pub struct Enrollee {
    pub user: String,
    /// The session's identity, for the access log.
    pub identity: Option<Arc<Identity>>,
    /// The enrollment token's hash, consumed when enrollment is confirmed.
    ticket: Option<String>,
}

/// What `POST /mfa/totp/enroll` shows, once.
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

impl Service {
    /// After a login's password (and workspace) check: the second step it needs, if any.
    pub(super) async fn second_factor(
        &self,
        gw: &Gateway,
        user: &crate::auth::store::User,
        scope: &Scope,
        now: u64,
    ) -> Result<Option<Login>, Reject> {
        let totp = self.stored_totp(&user.id).await?;
        if totp.is_some_and(|t| t.confirmed_at.is_some()) {
            let ticket = tokens::new_refresh_token();
            self.store
                .create_mfa_ticket(
                    &ticket_hash("login", &ticket),
                    &user.id,
                    scope.workspace.as_deref(),
                    signed(now + TICKET_TTL),
                )
                .await
                .map_err(|e| self.unavailable("mfa ticket", e))?;
            return Ok(Some(Login::SecondFactor(ticket)));
        }
        let required = &gw.config.auth.require_mfa_for_roles;
        if required.iter().any(|r| *r == user.role || *r == scope.role) {
            let token = format!("{ENROLL_PREFIX}{}", tokens::new_refresh_token());
            self.store
                .create_mfa_ticket(
                    &ticket_hash("enroll", &token),
                    &user.id,
                    None,
                    signed(now + ENROLL_TTL),
                )
                .await
                .map_err(|e| self.unavailable("mfa ticket", e))?;
            return Ok(Some(Login::Enrollment(token)));
        }
        Ok(None)
    }

    /// The caller of an enrollment endpoint: an enrollment token, or a session.
    pub async fn enrollee(
        &self,
        headers: &HeaderMap,
        keys: &Keys,
        now: u64,
    ) -> Result<Enrollee, Reject> {
        if let Some(token) = authn::bearer(headers)?.filter(|t| t.starts_with(ENROLL_PREFIX)) {
            self.available()?;
            let hash = ticket_hash("enroll", token);
            let found = self
                .store
                .mfa_ticket(&hash, signed(now))
                .await
                .map_err(|e| self.unavailable("mfa ticket", e))?;
            let (user, _) = found.ok_or(Reject::InvalidMfaToken)?;
            return Ok(Enrollee {
                user,
                identity: None,
                ticket: Some(hash),
            });
        }
        let id = self.authenticate(headers, keys, now)?;
        Ok(Enrollee {
            user: id.sub.clone(),
            identity: Some(id),
            ticket: None,
        })
    }

    /// `POST /mfa/totp/enroll`: a new secret, pending until a code confirms it.
    pub async fn enroll_totp(
        &self,
        gw: &Gateway,
        who: &Enrollee,
        now: u64,
    ) -> Result<Enrollment, Reject> {
        self.available()?;
        let user = self
            .store
            .user_by_id(&who.user)
            .await
            .map_err(|e| self.unavailable("mfa enroll", e))?
            .filter(|u| !u.disabled)
            .ok_or(Reject::Revoked)?;
        let secret: [u8; SECRET_LEN] = rand::random();
        let totp = totp(
            &secret,
            Some((&issuer_label(&gw.config.auth.issuer), &user.email)),
        )?;
        let otpauth_uri = totp.to_url().map_err(|e| internal("otpauth uri", &e))?;
        let sealed = kek(gw)?
            .seal(&label(&user.id), &secret)
            .map_err(|e| internal("seal totp secret", &e))?;
        match self
            .store
            .put_pending_totp(&user.id, &sealed, signed(now))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Reject::MfaConflict("MFA already enabled")),
            Err(e) => return Err(self.unavailable("mfa enroll", e)),
        }
        Ok(Enrollment {
            secret: totp.secret().to_base32(),
            otpauth_uri,
        })
    }

    /// `POST /mfa/totp/confirm {code}`: activates the pending secret; returns the
    /// recovery codes, shown this once.
    pub async fn confirm_totp(
        &self,
        gw: &Gateway,
        who: &Enrollee,
        code: &str,
        now: u64,
    ) -> Result<Vec<String>, Reject> {
        self.available()?;
        let stored = self
            .stored_totp(&who.user)
            .await?
            .filter(|t| t.confirmed_at.is_none())
            .ok_or(Reject::MfaConflict("No MFA enrollment pending"))?;
        self.limit_mfa(&who.user).await?;
        self.check_code(gw, &who.user, &stored, code, now).await?;
        if let Some(ticket) = &who.ticket {
            // The token's one purpose is this enrollment: spent first, so a
            // store failure leaves it unconfirmed rather than leaving the token
            // alive, and two confirmations racing on one token cannot both pass.
            let spent = self
                .store
                .consume_mfa_ticket(ticket, signed(now))
                .await
                .map_err(|e| self.unavailable("mfa confirm", e))?;
            if !spent {
                return Err(Reject::InvalidMfaToken);
            }
        }
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        let confirmed = self
            .store
            .confirm_totp(&who.user, &hashes, signed(now))
            .await
            .map_err(|e| self.unavailable("mfa confirm", e))?;
        if !confirmed {
            return Err(Reject::MfaConflict("No MFA enrollment pending"));
        }
        log::info!("user {}: TOTP second factor enabled", who.user);
        Ok(codes)
    }

    /// `POST /login/mfa {mfa_token, code | recovery_code}`: the login's second step.
    pub async fn complete_login(
        &self,
        gw: &Gateway,
        mfa_token: &str,
        proof: Proof<'_>,
        origin: &crate::auth::store::SessionOrigin,
        now: u64,
    ) -> Result<TokenPair, Reject> {
        self.available()?;
        let hash = ticket_hash("login", mfa_token);
        let (user_id, workspace) = self
            .store
            .mfa_ticket(&hash, signed(now))
            .await
            .map_err(|e| self.unavailable("mfa login", e))?
            .ok_or(Reject::InvalidMfaToken)?;
        self.limit_mfa(&user_id).await?;
        match proof {
            Proof::Code(code) => {
                let stored = self
                    .stored_totp(&user_id)
                    .await?
                    .filter(|t| t.confirmed_at.is_some())
                    .ok_or(Reject::InvalidMfaToken)?;
                self.check_code(gw, &user_id, &stored, code, now).await?;
            }
            Proof::RecoveryCode(code) => {
                let used = self
                    .store
                    .use_recovery_code(&user_id, &recovery_hash(code), signed(now))
                    .await
                    .map_err(|e| self.unavailable("mfa login", e))?;
                if !used {
                    METRICS.mfa.with_label_values(&["failure"]).inc();
                    return Err(Reject::InvalidCode);
                }
                METRICS.mfa.with_label_values(&["recovery_code"]).inc();
                log::warn!("user {user_id}: logged in with a recovery code");
            }
        }
        let consumed = self
            .store
            .consume_mfa_ticket(&hash, signed(now))
            .await
            .map_err(|e| self.unavailable("mfa login", e))?;
        if !consumed {
            return Err(Reject::InvalidMfaToken);
        }
        let user = self
            .store
            .user_by_id(&user_id)
            .await
            .map_err(|e| self.unavailable("mfa login", e))?
            .filter(|u| !u.disabled)
            .ok_or(Reject::InvalidMfaToken)?;
        let scope = match workspace.as_deref() {
            None => Scope::global(&user),
            Some(ws) => self
                .membership(&user.id, ws)
                .await?
                .ok_or(Reject::NotMember)?,
        };
        let expires_at = now.saturating_add(gw.config.auth.refresh_ttl.as_secs());
        let pair = self
            .start_session(gw, &user.id, &scope, (now, expires_at), origin, "login")
            .await?;
        METRICS.logins.with_label_values(&["success"]).inc();
        Ok(pair)
    }

    /// `DELETE /mfa/totp {password, code}`: turns the second factor off.
    pub async fn disable_totp(
        &self,
        gw: &Gateway,
        id: &Identity,
        password: String,
        code: &str,
        now: u64,
    ) -> Result<(), Reject> {
        self.available()?;
        self.limit_mfa(&id.sub).await?;
        let user = self
            .store
            .user_by_id(&id.sub)
            .await
            .map_err(|e| self.unavailable("mfa disable", e))?
            .ok_or(Reject::Revoked)?;
        let matched = self
            .hasher
            .verify(password, Some(user.password_hash.clone()))
            .await
            .map_err(|e| hasher_failed("mfa disable", e))?;
        if !matched {
            return Err(Reject::InvalidCredentials);
        }
        let stored = self
            .stored_totp(&id.sub)
            .await?
            .filter(|t| t.confirmed_at.is_some())
            .ok_or(Reject::MfaConflict("MFA not enabled"))?;
        self.check_code(gw, &id.sub, &stored, code, now).await?;
        self.store
            .delete_totp(&id.sub)
            .await
            .map_err(|e| self.unavailable("mfa disable", e))?;
        log::info!("user {}: TOTP second factor disabled", id.sub);
        Ok(())
    }

    /// The admin API's and the CLI's reset: the user's second factor is gone (they
    /// enroll again at their next login if their role requires it). 404 for an unknown user.
    pub async fn reset_mfa(&self, user: &str) -> Result<(), Reject> {
        self.account(user).await?;
        self.store
            .delete_totp(user)
            .await
            .map_err(|e| self.unavailable("mfa reset", e))?;
        log::warn!("user {user}: second factor reset by an admin");
        Ok(())
    }

    async fn stored_totp(&self, user: &str) -> Result<Option<StoredTotp>, Reject> {
        self.store
            .totp(user)
            .await
            .map_err(|e| self.unavailable("mfa", e))
    }

    async fn limit_mfa(&self, user: &str) -> Result<(), Reject> {
        let limited = self.shared_limit(Kind::MfaUser, user, &ATTEMPTS).await;
        if matches!(limited, Err(Reject::TooManyRequests { .. })) {
            METRICS.mfa.with_label_values(&["rate_limited"]).inc();
        }
        limited
    }

    /// Accepts `code` for `stored` once: 401 when wrong, or when its time step (or a
    /// later one) was already used.
    async fn check_code(
        &self,
        gw: &Gateway,
        user: &str,
        stored: &StoredTotp,
        code: &str,
        now: u64,
    ) -> Result<(), Reject> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            METRICS.mfa.with_label_values(&["failure"]).inc();
            return Err(Reject::InvalidCode);
        }
        let secret = kek(gw)?.open(&label(user), &stored.sealed).map_err(|e| {
            // A KEK dropped before `keys rewrap` resealed this secret: the operator's
            // fix, not the user's, so the log says which key and the client a 503.
            log::error!("user {user}: cannot check the TOTP code: {e}");
            Reject::Unavailable {
                retry_after: super::STORE_RETRY_AFTER,
            }
        })?;
        let step = totp(&secret, None)?.check(code, now);
        let Some(step) = step else {
            METRICS.mfa.with_label_values(&["failure"]).inc();
            return Err(Reject::InvalidCode);
        };
        let fresh = self
            .store
            .use_totp_step(user, i64::try_from(step).unwrap_or(i64::MAX))
            .await
            .map_err(|e| self.unavailable("mfa", e))?;
        if !fresh {
            METRICS.mfa.with_label_values(&["replayed"]).inc();
            return Err(Reject::InvalidCode);
        }
        METRICS.mfa.with_label_values(&["success"]).inc();
        Ok(())
    }
}

/// RFC 6238's defaults (SHA-1, 6 digits, 30 s, one step of skew), as every authenticator
/// app reads them; `account` is (issuer, account name) for the otpauth URI.
fn totp(secret: &[u8], account: Option<(&str, &str)>) -> Result<Totp, Reject> {
    let mut builder = Builder::new().with_secret(secret.to_vec());
    if let Some((issuer, name)) = account {
        builder = builder
            .with_issuer(Some(issuer.replace(':', "")))
            .with_account_name(name.replace(':', ""));
    }
    builder.build().map_err(|e| internal("totp", &e))
}

/// The issuer shown in authenticator apps: `auth.issuer`'s host (a URL's colon would
/// break the otpauth label).
fn issuer_label(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    rest.split(['/', ':']).next().unwrap_or(rest).to_owned()
}

/// Seals again, under the current KEK, every TOTP secret sealed under another one
/// (`portcullis keys rewrap`), one conditional write per row; how many it sealed.
pub(crate) async fn rewrap_totp(store: &Store, kek: &Kek) -> Result<usize, String> {
    let stale = store
        .totp_sealed_elsewhere(kek.id())
        .await
        .map_err(|e| e.to_string())?;
    let mut count = 0;
    for (user, sealed) in stale {
        let what = label(&user);
        let plain = kek.open(&what, &sealed)?;
        let fresh = kek.seal(&what, &plain)?;
        if store
            .reseal_totp(&user, &sealed, &fresh)
            .await
            .map_err(|e| e.to_string())?
        {
            count += 1;
        }
    }
    Ok(count)
}

/// The sealing label: the secret opens only for the user it was sealed for.
fn label(user: &str) -> String {
    format!("totp:{user}")
}

fn kek(gw: &Gateway) -> Result<Arc<Kek>, Reject> {
    if let Some(kek) = KEK.get() {
        return Ok(Arc::clone(kek));
    }
    match crate::keys::kek_for(&gw.config, true) {
        Ok(kek) => Ok(Arc::clone(KEK.get_or_init(|| Arc::new(kek)))),
        Err(e) => {
            log::error!("the TOTP second factor needs the key-encryption key: {e}");
            Err(Reject::Unavailable {
                retry_after: super::STORE_RETRY_AFTER,
            })
        }
    }
}

/// Tickets are stored by a hash that names their purpose, so a login ticket never
/// passes for an enrollment token or the other way round.
fn ticket_hash(purpose: &str, ticket: &str) -> String {
    tokens::hash(&format!("{purpose}:{ticket}"))
}

/// `xxxx-xxxx-xxxx-xxxx` in lower-case base32 (80 bits): typed by hand, hashed at rest.
fn recovery_code() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes: [u8; 16] = rand::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The stored form of a recovery code: SHA-256 of it without dashes or spaces, lower-case.
fn recovery_hash(code: &str) -> String {
    let plain: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    crate::auth::tokens::hex(&Sha256::digest(plain.as_bytes()))
}

fn internal(during: &str, e: &dyn std::fmt::Display) -> Reject {
    log::error!("{during}: {e}");
    Reject::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_four_groups_and_hash_without_dashes_or_case() {
        let code = recovery_code();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(
            recovery_hash(&code),
            recovery_hash(&code.replace('-', "").to_uppercase())
        );
        assert_ne!(recovery_code(), code);
    }

    #[test]
    fn the_issuer_label_is_the_issuers_host() {
        assert_eq!(issuer_label("https://gw.test"), "gw.test");
        assert_eq!(
            issuer_label("https://auth.example.com:8443/x"),
            "auth.example.com"
        );
        assert_eq!(issuer_label("portcullis"), "portcullis");
    }

    #[test]
    fn codes_match_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, truncated to 6 digits.
        let t = totp(b"12345678901234567890", None).unwrap();
        assert_eq!(t.check("287082", 59), Some(1));
        assert_eq!(t.check("081804", 1_111_111_109), Some(37_037_036));
        assert_eq!(t.check("000000", 59), None);
    }

    #[test]
    fn tickets_of_one_purpose_never_pass_for_another() {
        assert_ne!(ticket_hash("login", "t"), ticket_hash("enroll", "t"));
    }
}
