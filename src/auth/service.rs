//! The auth module's logic (docs/auth-api.md): signup, login, refresh rotation, logout and
//! revocation, rate limits. No HTTP types here: `endpoints.rs` adapts requests to these
//! calls, and `Reject` (the one request-path error) carries the outcome back.
//!
//! A [`Service`] lives for the whole process, beside the per-config `Gateway`: the store,
//! the in-memory revocation set, the hasher and the rate limiters survive config reloads,
//! while every call reads its settings and signing keys from the current `Gateway`.

mod accounts;
mod admin;
mod mfa;
pub(crate) use mfa::rewrap_totp;
mod pats;
mod switch;

pub use accounts::session_origin;
pub use admin::{require_admin, valid_workspace_id, Account, UserChange, ADMIN_ROLE};
pub use mfa::{Enrollee, Enrollment, Proof, ENROLL_PREFIX};
pub use pats::{listed as listed_pat, Created as CreatedPat, NewToken, MAX_NAME_CHARS};

use super::account_limits::{AccountLimits, Kind};
use super::email;
use super::mail::Outbox;
use super::password::{self, Hasher};
use super::revocations::Revocations;
use super::store::{Family, Rotation, SessionOrigin, Store, StoreError, User};
use super::tokens;
use super::wordlists;
use crate::authn::{self, Identity};
use crate::config::Rate;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::metrics::METRICS;
use crate::rate_limit::Limiter;
use crate::token::{Grant, Issued, Keys};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// `Retry-After` when the store does not answer: long enough for a restart or failover.
pub const STORE_RETRY_AFTER: u64 = 5;
/// The longest access-token lifetime the config allows; bounds how long a revoked
/// session or user watermark must be remembered, whatever a reload sets `access_ttl` to.
const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Keys each rate limiter remembers at most (16 bytes each, plus map overhead).
const LIMITER_CAPACITY: usize = 100_000;
/// Events read per store round trip when catching up on revocations.
const EVENT_BATCH: i64 = 500;
/// How often the revocation log is polled: a revocation made on another replica bites
/// here within this interval plus one query (docs/deployment.md, What replicas share: within 1 s).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// A poll that takes longer counts as the store being down (a silently dropped network
/// would otherwise hold readiness at 200 for the pool's whole acquire timeout).
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often expired in-memory entries and full shared rate-limit buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often dead sessions and revocations are purged from the store.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How often personal access tokens' last-used times are written, in one batch.
const LAST_USED_EVERY: Duration = Duration::from_secs(5);
/// A refresh token we issued is 43 base64url characters; anything far longer is junk
/// and is refused before it costs a store query.
const MAX_REFRESH_TOKEN_LEN: usize = 128;

/// Rate limits: login and signup shared by every replica (in the store on PostgreSQL);
/// refresh per IP and the routes' own limits in memory, per replica unless
/// `rate_limit_store` shares them ([`Service::share_limits`]).
struct Limits {
    accounts: AccountLimits,
    refresh_ip: Limiter,
    routes: Limiter,
}

/// Auth state shared by every request, across config reloads. Share behind an `Arc`.
pub struct Service {
    store: Store,
    revocations: Revocations,
    /// Live personal access tokens, following the same feed as `revocations`.
    pats: super::pat::Index,
    hasher: Hasher,
    limits: Limits,
    /// HMAC key deriving a refresh token's successor; equal on every replica.
    chain_key: [u8; 32],
    /// The last revocation event applied; held while catching up so two syncs never interleave.
    cursor: Mutex<i64>,
    /// True while the store answers; read by `/readyz` and the auth endpoints.
    ready: Arc<AtomicBool>,
    /// Account mail waiting for the worker that `maintain` runs.
    outbox: Outbox,
}

/// A login or refresh result: what goes into the response body and the cookie.
pub struct TokenPair {
    pub access: Issued,
    pub refresh: String,
    /// When the session (refresh family) ends, absolutely; the cookie's Max-Age counts down to it.
    pub session_expires_at: u64,
}

/// What a password login leads to.
pub enum Login {
    /// A session.
    Session(TokenPair),
    /// A second factor is due: the single-use ticket for `POST /login/mfa`.
    SecondFactor(String),
    /// The user's role must enroll a second factor first: a token for the enroll
    /// endpoints only.
    Enrollment(String),
}

/// What `GET /me` shows: the account plus the scope of the presented token.
pub struct Me {
    pub id: String,
    pub email: String,
    pub role: Option<String>,
    pub workspace: Option<String>,
    pub plan: Option<String>,
}

/// The refresh chain key for an HS256 deployment: every replica holding `JWT_SECRET`
/// derives the same key, so a grace-window retry may land on any of them.
pub fn chain_key(secret: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"portcullis refresh chain v1");
    mac.finalize().into_bytes().into()
}

impl Service {
    /// Opens nothing itself: takes a connected store, loads the revocation snapshot (so no
    /// revoked token is honoured from the first request on) and prepares the hasher.
    /// `secret` is the key set's refresh secret: `JWT_SECRET`, or with asymmetric keys
    /// the `refresh.secret` file in keys_dir, so replicas sharing either agree on successors.
    pub async fn start(store: Store, secret: &[u8], now: u64) -> Result<Service, String> {
        let key = chain_key(secret);
        // The breached-password set is built now, not by the first signup.
        tokio::task::spawn_blocking(wordlists::load)
            .await
            .map_err(|e| format!("password list: {e}"))?;
        let hasher = tokio::task::spawn_blocking(Hasher::with_cpu_limit)
            .await
            .map_err(|e| format!("password hasher: {e}"))?
            .map_err(|e| format!("password hasher: {e}"))?;
        let revocations = Revocations::new(MAX_ACCESS_TTL);
        let snapshot = store
            .revocation_snapshot(signed(now), MAX_ACCESS_TTL)
            .await
            .map_err(|e| format!("store: cannot read revocations: {e}"))?;
        revocations.load(&snapshot);
        let pats = pats::load_index(&store, now)
            .await
            .map_err(|e| format!("store: cannot read personal access tokens: {e}"))?;
        // The chain key is equal on every replica and secret: it names the shared buckets.
        let accounts = AccountLimits::new(&store, key, LIMITER_CAPACITY);
        Ok(Service {
            store,
            revocations,
            pats,
            hasher,
            limits: Limits {
                accounts,
                refresh_ip: Limiter::new(LIMITER_CAPACITY),
                routes: Limiter::new(LIMITER_CAPACITY),
            },
            chain_key: key,
            cursor: Mutex::new(snapshot.cursor),
            ready: Arc::new(AtomicBool::new(true)),
            outbox: Outbox::default(),
        })
    }

    /// The readiness flag, for the admin listener.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Authenticates a proxied request or a Bearer-authenticated endpoint: the token
    /// checks of docs/security.md, Tokens, then the in-memory revocation set. No I/O.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        keys: &Keys,
        now: u64,
    ) -> Result<Arc<Identity>, Reject> {
        let identity = authn::authenticate(headers, keys, now)?;
        self.check_revoked(&identity)?;
        Ok(identity)
    }

    /// `Err(Revoked)` when the token's `jti`, its session or (by `iat`) its user was revoked.
    pub fn check_revoked(&self, id: &Identity) -> Result<(), Reject> {
        if self
            .revocations
            .is_revoked(&id.jti, id.sid.as_deref(), &id.sub, id.iat)
        {
            return Err(Reject::Revoked);
        }
        Ok(())
    }

    /// Counts the refresh, `/switch` and routes' own limits across replicas in `shared`'s
    /// store (`rate_limit_store`) instead of per replica. Call before serving.
    pub fn share_limits(&mut self, shared: &mut crate::rate_limit::shared::SharedLimits) {
        self.limits.refresh_ip = shared.limiter("refresh", LIMITER_CAPACITY);
        self.limits.routes = shared.limiter("routes", LIMITER_CAPACITY);
    }

    /// A route's own `rate_limit`, per `who` (the user, or the client IP on public routes).
    pub fn limit_route(&self, route: &str, who: impl Hash, rate: &Rate) -> Result<(), Reject> {
        limit(&self.limits.routes, (route, who), rate)
    }

    /// `POST /signup`: a new account with the configured default role.
    pub async fn signup(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        email: &str,
        password: String,
        now: u64,
    ) -> Result<User, Reject> {
        match self.new_account(gw, ip, email, password, now).await?.1 {
            Ok(user) => Ok(user),
            Err(StoreError::Conflict) => Err(Reject::EmailTaken),
            Err(e) => Err(self.unavailable("signup", e)),
        }
    }

    /// Signup's checks (limit, address, password policy), the hash, then the insert:
    /// the normalized address and what the store said.
    async fn new_account(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        email: &str,
        password: String,
        now: u64,
    ) -> Result<(String, Result<User, StoreError>), Reject> {
        let auth = &gw.config.auth;
        self.available()?;
        self.shared_limit(Kind::SignupIp, &ip.to_string(), &auth.rate_limits.signup)
            .await?;
        let email = email::valid(email).map_err(|why| Reject::BadRequest(why.into()))?;
        password::acceptable_new(&password).map_err(|why| Reject::BadRequest(why.into()))?;
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|e| hasher_failed("signup", e))?;
        let role = &auth.signup.default_role;
        let created = self
            .store
            .create_user(&email, &hash, role, signed(now))
            .await;
        Ok((email, created))
    }

    /// `POST /login`: checks the password (always hashing, so an unknown email and a wrong
    /// password take the same time), then starts a session, scoped to `workspace` if given.
    pub async fn login(
        &self,
        gw: &Gateway,
        (ip, origin): (IpAddr, &SessionOrigin),
        email: &str,
        password: String,
        workspace: Option<&str>,
        now: u64,
    ) -> Result<Login, Reject> {
        let auth = &gw.config.auth;
        let email = email::normalize(email);
        self.available()?;
        // Per IP first: an attempt the IP limit refuses is not counted against the email.
        let limits = &auth.rate_limits;
        let mut limited = self
            .shared_limit(Kind::LoginIp, &ip.to_string(), &limits.login)
            .await;
        if limited.is_ok() {
            limited = self
                .shared_limit(Kind::LoginEmail, &email, &limits.login_per_email)
                .await;
        }
        if let Err(reject) = limited {
            if matches!(reject, Reject::TooManyRequests { .. }) {
                METRICS.logins.with_label_values(&["rate_limited"]).inc();
            }
            return Err(reject);
        }
        if password::acceptable(&password).is_err() {
            // No account has such a password: refuse without spending a hash on it.
            return Err(login_failed());
        }
        let user = self
            .store
            .user_by_email(&email)
            .await
            .map_err(|e| self.unavailable("login", e))?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let matched = self
            .hasher
            .verify(password, stored)
            .await
            .map_err(|e| hasher_failed("login", e))?;
        let user = match user {
            Some(user) if matched && !user.disabled => user,
            _ => return Err(login_failed()),
        };
        self.require_verified(auth, &user.id).await?;
        let scope = match workspace {
            None => Scope::global(&user),
            Some(ws) => match self.membership(&user.id, ws).await? {
                Some(scope) => scope,
                None => {
                    METRICS.logins.with_label_values(&["failure"]).inc();
                    return Err(Reject::NotMember);
                }
            },
        };
        if let Some(step) = self.second_factor(gw, &user, &scope, now).await? {
            return Ok(step);
        }
        let expires_at = now.saturating_add(auth.refresh_ttl.as_secs());
        let session = self
            .start_session(gw, &user.id, &scope, (now, expires_at), origin, "login")
            .await?;
        METRICS.logins.with_label_values(&["success"]).inc();
        Ok(Login::Session(session))
    }

    /// `POST /refresh`: rotates the presented refresh token. A retry within the grace
    /// window gets the same successor; any other reuse revokes the whole session.
    pub async fn refresh(
        &self,
        gw: &Gateway,
        ip: IpAddr,
        presented: Option<&str>,
        now: u64,
    ) -> Result<TokenPair, Reject> {
        let auth = &gw.config.auth;
        limit(&self.limits.refresh_ip, ip, &auth.rate_limits.refresh)?;
        let Some(presented) = presented.filter(|t| plausible_refresh_token(t)) else {
            return Err(refresh_refused("invalid"));
        };
        self.available()?;
        let successor = tokens::successor(&self.chain_key, presented);
        let rotation = self
            .store
            .rotate(
                &tokens::hash(presented),
                &tokens::hash(&successor),
                signed(now),
                auth.refresh_grace,
            )
            .await
            .map_err(|e| self.unavailable("refresh", e))?;
        let (result, family, user) = match rotation {
            Rotation::Rotated { family, user } => ("rotated", family, user),
            Rotation::Grace { family, user } => ("grace", family, user),
            Rotation::Reused { family } => {
                // The store revoked the family; make it bite here at once, then catch up.
                self.revocations
                    .revoke_family(&family.id, now.saturating_add(MAX_ACCESS_TTL.as_secs()));
                self.sync_now().await;
                log::warn!("refresh token reuse: session {} revoked", family.id);
                return Err(refresh_refused("reused"));
            }
            Rotation::Invalid => return Err(refresh_refused("invalid")),
        };
        let scope = match &family.workspace_id {
            None => Scope::global(&user),
            Some(ws) => match self.membership(&user.id, ws).await? {
                Some(scope) => scope,
                // Removing a membership ends the sessions; this is a race with that.
                None => return Err(refresh_refused("invalid")),
            },
        };
        METRICS.refreshes.with_label_values(&[result]).inc();
        Ok(issue(gw, &user.id, &scope, &family, successor, now))
    }

    /// `POST /logout`: revokes the session of the presented refresh token and of the
    /// presented access token, and that access token itself. Unknown tokens are ignored:
    /// logging out is idempotent.
    pub async fn logout(
        &self,
        refresh: Option<&str>,
        bearer: Option<&Identity>,
        now: u64,
    ) -> Result<(), Reject> {
        self.available()?;
        let horizon = now.saturating_add(MAX_ACCESS_TTL.as_secs());
        let mut families = Vec::new();
        if let Some(token) = refresh.filter(|t| plausible_refresh_token(t)) {
            let family = self
                .store
                .family_of_token(&tokens::hash(token))
                .await
                .map_err(|e| self.unavailable("logout", e))?;
            families.extend(family.map(|f| f.id));
        }
        if let Some(id) = bearer {
            self.store
                .revoke_jti(&id.jti, signed(id.exp))
                .await
                .map_err(|e| self.unavailable("logout", e))?;
            self.revocations.revoke_jti(&id.jti, id.exp);
            families.extend(id.sid.clone());
        }
        families.dedup();
        for family in &families {
            match self.store.revoke_family(family, signed(now)).await {
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(self.unavailable("logout", e)),
            }
            self.revocations.revoke_family(family, horizon);
        }
        self.sync_now().await;
        Ok(())
    }

    /// `POST /logout-all`: ends every session of the user and refuses every access token
    /// issued to them so far.
    pub async fn logout_all(&self, id: &Identity, now: u64) -> Result<(), Reject> {
        self.available()?;
        let horizon = now.saturating_add(MAX_ACCESS_TTL.as_secs());
        match self.store.revoke_user_sessions(&id.sub, signed(now)).await {
            Ok(not_before) => {
                self.revocations
                    .set_not_before(&id.sub, unsigned(not_before), horizon);
            }
            // A CLI-minted token for a user the store does not know: revoke just this token.
            Err(StoreError::NotFound) => {
                self.store
                    .revoke_jti(&id.jti, signed(id.exp))
                    .await
                    .map_err(|e| self.unavailable("logout-all", e))?;
                self.revocations.revoke_jti(&id.jti, id.exp);
            }
            Err(e) => return Err(self.unavailable("logout-all", e)),
        }
        if let Some(sid) = &id.sid {
            self.revocations.revoke_family(sid, horizon);
        }
        self.sync_now().await;
        Ok(())
    }

    /// `GET /me`: the account behind a valid token. A token for an account that no
    /// longer exists or is disabled is refused like any invalid token.
    pub async fn me(&self, id: &Identity) -> Result<Me, Reject> {
        self.available()?;
        let user = self
            .store
            .user_by_id(&id.sub)
            .await
            .map_err(|e| self.unavailable("me", e))?;
        match user {
            Some(user) if !user.disabled => Ok(Me {
                id: user.id,
                email: user.email,
                role: id.role.clone(),
                workspace: id.workspace.clone(),
                plan: id.plan.clone(),
            }),
            _ => Err(Reject::Revoked),
        }
    }

    /// Applies revocation events committed since the last call (by this process or any
    /// replica). Returns how many were applied.
    pub async fn sync(&self) -> Result<usize, StoreError> {
        let mut cursor = self.cursor.lock().await;
        let mut applied = 0;
        loop {
            let events = self.store.events_after(*cursor, EVENT_BATCH).await?;
            let Some(last) = events.last() else { break };
            self.follow_pats(&events, crate::clock::now()).await?;
            *cursor = last.seq;
            self.revocations.apply(&events);
            applied += events.len();
            if events.len() < usize::try_from(EVENT_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        Ok(applied)
    }

    /// Background upkeep, forever: polls revocation events every 250 ms (how replicas
    /// converge, and how CLI changes reach a running gateway), keeps the readiness flag
    /// current, sweeps expired in-memory entries and purges dead rows.
    ///
    /// Readiness is the outcome of the poll itself: after an outage the flag turns true
    /// only once every event committed meanwhile has been applied, so a replica that a
    /// load balancer sends traffic to again enforces the revocations it missed.
    pub async fn maintain(self: Arc<Self>) {
        let mail = Arc::clone(&self);
        // A dead mail worker would leave signups and resets answering 202 with no mail.
        crate::supervise::exit_if_it_dies(
            "mail: the outbox worker",
            tokio::spawn(async move { mail.outbox.run(mail.store.clone()).await }),
        );
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        let mut last_purge = Instant::now();
        let mut last_used = Instant::now();
        loop {
            tick.tick().await;
            let synced = match tokio::time::timeout(POLL_TIMEOUT, self.sync()).await {
                Ok(synced) => synced,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "revocation poll took over {POLL_TIMEOUT:?}"
                ))),
            };
            let was_ready = self.ready.load(Ordering::Acquire);
            let ok = match synced {
                Ok(applied) => {
                    if !was_ready {
                        log::info!("store answers again; caught up on {applied} revocation events");
                    }
                    true
                }
                Err(e) => {
                    if was_ready {
                        log::error!("store not answering, auth endpoints answer 503: {e}");
                    }
                    false
                }
            };
            self.ready.store(ok, Ordering::Release);
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.sweep();
                if ok && self.limits.accounts.shared() {
                    let now_ms = signed(crate::clock::now()).saturating_mul(1_000);
                    if let Err(e) = self.store.purge_rate_limits(now_ms).await {
                        log::warn!("purging full rate-limit buckets failed: {e}");
                    }
                }
            }
            if ok && last_used.elapsed() >= LAST_USED_EVERY {
                last_used = Instant::now();
                self.flush_pat_uses().await;
            }
            if ok && last_purge.elapsed() >= PURGE_EVERY {
                last_purge = Instant::now();
                let now = signed(crate::clock::now());
                match self.store.purge_expired(now, MAX_ACCESS_TTL).await {
                    Ok(purged) => log::debug!("purged {purged:?}"),
                    Err(e) => log::warn!("purging expired sessions failed: {e}"),
                }
                if let Err(e) = self.store.purge_mfa_tickets(now).await {
                    log::warn!("purging expired MFA tickets failed: {e}");
                }
                if let Err(e) = self.store.purge_account_tokens(now).await {
                    log::warn!("purging expired account tokens failed: {e}");
                }
            }
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.revocations.sweep(crate::clock::now());
        self.pats.sweep(crate::clock::now());
        for limiter in [&self.limits.refresh_ip, &self.limits.routes] {
            limiter.sweep(now);
        }
        self.limits.accounts.sweep(now);
    }

    /// After a revocation this process wrote: pick up its events (and any others) now,
    /// so the effect does not wait for the next poll. A failure is left to the poller.
    async fn sync_now(&self) {
        if let Err(e) = self.sync().await {
            log::warn!("revocation sync failed, the poller will retry: {e}");
        }
    }

    /// The token scope a membership gives, or `None` when the user is not a member.
    async fn membership(&self, user: &str, workspace: &str) -> Result<Option<Scope>, Reject> {
        let memberships = self
            .store
            .memberships(user)
            .await
            .map_err(|e| self.unavailable("memberships", e))?;
        Ok(memberships
            .into_iter()
            .find(|m| m.workspace_id == workspace)
            .map(|m| Scope {
                role: m.role,
                workspace: Some(m.workspace_id),
                plan: Some(m.plan),
            }))
    }

    /// Counts one attempt against a login or signup limit: 429 when over it, 503 when
    /// the limit is kept in the store and the store does not answer.
    async fn shared_limit(&self, kind: Kind, who: &str, rate: &Rate) -> Result<(), Reject> {
        match self
            .limits
            .accounts
            .check(&self.store, kind, who, rate)
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(limited)) => Err(Reject::TooManyRequests {
                retry_after: limited.retry_after_secs(),
            }),
            Err(e) => Err(self.unavailable("rate limit", e)),
        }
    }

    /// Fails fast while the poller sees the store down, instead of waiting on a pool timeout.
    fn available(&self) -> Result<(), Reject> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Reject::Unavailable {
                retry_after: STORE_RETRY_AFTER,
            })
        }
    }

    /// Any store failure on an auth endpoint is a 503 to the client; the cause is logged.
    /// Starts a refresh family for `scope` that ends at `expires_at` and issues its
    /// first token pair: the shared end of login and switch.
    async fn start_session(
        &self,
        gw: &Gateway,
        user_id: &str,
        scope: &Scope,
        (now, expires_at): (u64, u64),
        origin: &SessionOrigin,
        during: &str,
    ) -> Result<TokenPair, Reject> {
        let refresh = tokens::new_refresh_token();
        let family = self
            .store
            .start_family_from(
                user_id,
                scope.workspace.as_deref(),
                &tokens::hash(&refresh),
                signed(now),
                signed(expires_at),
                origin,
            )
            .await
            .map_err(|e| self.unavailable(during, e))?;
        Ok(issue(gw, user_id, scope, &family, refresh, now))
    }

    fn unavailable(&self, during: &str, e: StoreError) -> Reject {
        log::error!("{during}: {e}");
        Reject::Unavailable {
            retry_after: STORE_RETRY_AFTER,
        }
    }
}

/// Role and workspace claims of a token.
struct Scope {
    role: String,
    workspace: Option<String>,
    plan: Option<String>,
}

impl Scope {
    fn global(user: &User) -> Scope {
        Scope {
            role: user.role.clone(),
            workspace: None,
            plan: None,
        }
    }
}

fn issue(
    gw: &Gateway,
    user: &str,
    scope: &Scope,
    family: &Family,
    refresh: String,
    now: u64,
) -> TokenPair {
    let grant = Grant {
        sub: user,
        role: &scope.role,
        workspace: scope.workspace.as_deref(),
        plan: scope.plan.as_deref(),
        sid: Some(&family.id),
    };
    TokenPair {
        access: gw.keys.issue(grant, now, gw.config.auth.access_ttl),
        refresh,
        session_expires_at: unsigned(family.expires_at),
    }
}

fn limit(limiter: &Limiter, key: impl Hash, rate: &Rate) -> Result<(), Reject> {
    limiter
        .check(key, rate, Instant::now())
        .map_err(|limited| Reject::TooManyRequests {
            retry_after: limited.retry_after_secs(),
        })
}

/// A hash that could not run: 503 when every hasher stayed busy (a login flood, or
/// a proxy that keeps the CPU to itself), else an internal error.
fn hasher_failed(during: &str, e: password::PasswordError) -> Reject {
    if e == password::PasswordError::Busy {
        log::debug!("{during}: {e}");
        return Reject::Unavailable {
            retry_after: password::HASH_WAIT.as_secs(),
        };
    }
    log::error!("{during}: {e}");
    Reject::Internal
}

fn login_failed() -> Reject {
    METRICS.logins.with_label_values(&["failure"]).inc();
    Reject::InvalidCredentials
}

fn refresh_refused(result: &str) -> Reject {
    METRICS.refreshes.with_label_values(&[result]).inc();
    Reject::InvalidRefreshToken
}

fn plausible_refresh_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_REFRESH_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Store timestamps are signed 64-bit seconds.
fn signed(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn unsigned(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_key_is_an_hmac_of_the_secret_and_differs_per_secret() {
        assert_eq!(chain_key(b"secret-one"), chain_key(b"secret-one"));
        assert_ne!(chain_key(b"secret-one"), chain_key(b"secret-two"));
    }

    #[test]
    fn only_base64url_tokens_of_sane_length_reach_the_store() {
        assert!(plausible_refresh_token(&tokens::new_refresh_token()));
        assert!(!plausible_refresh_token(""));
        assert!(!plausible_refresh_token("a b"));
        assert!(!plausible_refresh_token(&"a".repeat(200)));
    }
}
