//! Trusted external issuers (`auth.trusted_issuers`): tokens from an identity
//! provider (Auth0, Keycloak, Okta, another service) accepted on routes beside
//! the gateway's own, verified with the keys the provider publishes as JWKS.
//!
//! Each issuer has a fetcher thread that loads its JWKS at start and every
//! `jwks_refresh`, and again when a token names a `kid` it does not know (a key
//! the issuer may just have rolled in). Only those unknown-kid fetches are
//! limited, to one per `refetch_interval` however many unknown kids arrive: the
//! start-up and periodic fetches, which no token can cause, do not count against
//! it. An unknown kid refused inside the interval is not forgotten: the fetcher
//! fetches again when the interval ends, so a rolled-in key is in use at most
//! `refetch_interval` (plus one fetch) after its first token. A failed fetch
//! keeps the last good keys.
//! A token of an issuer whose keys were never fetched is answered 503, not
//! 401: the token may be fine, the gateway cannot tell yet.
//!
//! Keys come from the configured URL only. A token's `jku`, `x5u`, `jwk` or
//! `x5c` header never causes a request (the JOSE header reader ignores them).
//!
//! The fetched keys belong to the issuer's configuration, not to one loaded
//! config: a reload that keeps an issuer's settings keeps its keys and fetcher.

mod document;
mod fetch;
mod schedule;

use crate::authn::Identity;
use crate::config::TrustedIssuer;
use crate::error::Reject;
use crate::metrics::METRICS;
use crate::token::{self, json, Answers, Expected, Key, TokenError, Typ};
use arc_swap::ArcSwapOption;
use schedule::{Ask, Fetches};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The issuers of one loaded config.
pub struct TrustedIssuers {
    list: Vec<Arc<Issuer>>,
}

/// One trusted issuer and the keys last fetched for it.
pub struct Issuer {
    config: TrustedIssuer,
    name: Arc<str>,
    /// `jwks_url` without its query, which may carry an access key: what logs show.
    logged_url: String,
    leeway: u64,
    /// `None` until a fetch has succeeded once.
    keys: ArcSwapOption<KeySet>,
    fetches: Mutex<Fetches>,
    /// Counts finished fetch attempts, so a request can wait for the next one.
    attempts: watch::Sender<u64>,
    /// Asks the fetcher for an early fetch; dropping it stops the fetcher.
    wake: mpsc::Sender<()>,
}

/// One generation of fetched keys, with the tokens verified by them.
struct KeySet {
    keys: Vec<Key>,
    answers: Answers,
}

/// Issuers alive in this process, so a reload with the same settings finds
/// the keys it already has instead of starting without any.
static LIVE: Mutex<Vec<Weak<Issuer>>> = Mutex::new(Vec::new());

impl TrustedIssuers {
    /// The issuers `configs` names, each with its fetcher running.
    pub fn start(configs: &[TrustedIssuer], leeway: Duration) -> TrustedIssuers {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        let list = configs
            .iter()
            .map(|config| {
                let same = |i: &Arc<Issuer>| i.config == *config && i.leeway == leeway.as_secs();
                if let Some(known) = live.iter().filter_map(Weak::upgrade).find(same) {
                    return known;
                }
                let issuer = Issuer::start(config.clone(), leeway.as_secs());
                live.push(Arc::downgrade(&issuer));
                issuer
            })
            .collect();
        TrustedIssuers { list }
    }

    /// The answer for a token the gateway's own keys refused: `None` when it
    /// does not claim to come from a trusted issuer (the first refusal stands).
    pub async fn verify(&self, token: &str, now: u64) -> Option<Result<Arc<Identity>, Reject>> {
        if self.list.is_empty() {
            return None;
        }
        let claimed = token::claimed_issuer(token)?;
        let issuer = self.list.iter().find(|i| i.config.issuer == claimed)?;
        Some(issuer.verify(token, now).await)
    }
}

impl Issuer {
    fn start(config: TrustedIssuer, leeway: u64) -> Arc<Issuer> {
        let (wake, wakes) = mpsc::channel(1);
        let issuer = Arc::new(Issuer {
            name: config.issuer.as_str().into(),
            logged_url: format!(
                "{}://{}{}",
                config.jwks_url.scheme_str().unwrap_or("https"),
                config.jwks_url.authority().map_or("", |a| a.as_str()),
                config.jwks_url.path()
            ),
            config,
            leeway,
            keys: ArcSwapOption::empty(),
            fetches: Mutex::new(Fetches::default()),
            attempts: watch::Sender::new(0),
            wake,
        });
        let weak = Arc::downgrade(&issuer);
        let spawned = std::thread::Builder::new()
            .name("jwks-fetch".into())
            .spawn(move || fetcher(weak, wakes));
        if let Err(e) = spawned {
            // Without a fetcher every token of this issuer gets 503, which says so.
            log::error!("jwks: cannot start the fetcher for {}: {e}", issuer.name);
        }
        issuer
    }

    async fn verify(&self, token: &str, now: u64) -> Result<Arc<Identity>, Reject> {
        let mut refetched = false;
        loop {
            let set = self.keys.load_full();
            match &set {
                Some(set) => match self.verify_with(set, token, now) {
                    Err(TokenError::UnknownKey) if !refetched => {}
                    done => return done.map_err(Reject::InvalidToken),
                },
                None if refetched => return Err(self.unavailable()),
                None => {}
            }
            // A kid we do not know may be a key the issuer just rolled in.
            if !self.refetch().await {
                return Err(match set {
                    Some(_) => Reject::InvalidToken(TokenError::UnknownKey),
                    None => self.unavailable(),
                });
            }
            refetched = true;
        }
    }

    fn unavailable(&self) -> Reject {
        Reject::Unavailable {
            retry_after: self.config.refetch_interval.as_secs(),
        }
    }

    fn verify_with(
        &self,
        set: &KeySet,
        token: &str,
        now: u64,
    ) -> Result<Arc<Identity>, TokenError> {
        set.answers.verify(token, now, || {
            let signed = token::check_signature(&set.keys, Typ::Optional, token, now)?;
            let claims = json::foreign_claims(&signed.payload, &self.config.role_claim)
                .map_err(|_| TokenError::Malformed)?;
            let (id, from, until) = self.check_claims(claims, now)?;
            Ok((id, from..until.min(signed.verify_until)))
        })
    }

    /// Registered claims as RFC 7519 defines them: `iss`, `aud`, `sub` and
    /// `exp` are required; `nbf` and `iat` are checked when present (many
    /// providers leave `nbf` out). Also answers the span of `now` over which
    /// the answer holds.
    fn check_claims(
        &self,
        c: json::ForeignClaims<'_>,
        now: u64,
    ) -> Result<(Identity, u64, u64), TokenError> {
        let expect = Expected {
            issuer: &self.config.issuer,
            audience: &self.config.audience,
            leeway: self.leeway,
        };
        let v = expect.check(c.registered, now)?;
        let from = v.nbf.max(v.iat).unwrap_or(0).saturating_sub(self.leeway);
        let mut roles = c.roles.into_iter().map(|r| r.into_owned());
        let id = Identity {
            sub: v.sub.into_owned(),
            role: roles.next(),
            more_roles: roles.collect(),
            workspace: None,
            plan: None,
            jti: v.jti.map(|j| j.into_owned()).unwrap_or_default(),
            sid: None,
            iat: v.iat.unwrap_or(0),
            exp: v.exp,
            external: Some(self.name.clone()),
            pat: None,
        };
        Ok((id, from, v.exp.saturating_add(self.leeway)))
    }

    /// Asks for a fetch now and waits for it, or joins one already running;
    /// unless the last unknown-kid fetch started less than `refetch_interval`
    /// ago, in which case the fetcher is told to fetch when it ends. True when
    /// a fetch finished meanwhile.
    async fn refetch(&self) -> bool {
        let mut finished = self.attempts.subscribe();
        let seen = *finished.borrow_and_update();
        let ask = self
            .fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ask(Instant::now(), self.config.refetch_interval);
        if ask != Ask::Join {
            // Full means a wake-up is already queued, which does as well.
            let _ = self.wake.try_send(());
        }
        if ask == Ask::Later {
            return false;
        }
        let wait = fetch::TIMEOUT + Duration::from_secs(1);
        let done = tokio::time::timeout(wait, finished.wait_for(|n| *n != seen)).await;
        matches!(done, Ok(Ok(_)))
    }

    /// One fetch; keeps the last good keys when it fails.
    async fn fetch(&self, client: &fetch::Client) -> bool {
        self.fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .start(Instant::now());
        let result = client
            .get(&self.config.jwks_url)
            .await
            .and_then(|body| document::parse(&body));
        let ok = result.is_ok();
        let failing_before = {
            let mut f = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut f.failing, !ok)
        };
        match result {
            Ok(keys) => {
                self.install(keys);
                if failing_before {
                    log::info!("jwks: {} answers again", self.logged_url);
                }
            }
            Err(why) if failing_before => log::debug!("jwks: {}: {why}", self.logged_url),
            Err(why) => log::warn!(
                "jwks: {} for issuer {}: {why}; {}",
                self.logged_url,
                self.name,
                match self.keys.load().is_some() {
                    true => "the last fetched keys stay in use",
                    false => "its tokens are answered 503 until a fetch succeeds",
                }
            ),
        }
        METRICS
            .jwks_fetches
            .with_label_values(&[&*self.name, if ok { "ok" } else { "error" }])
            .inc();
        self.fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running = false;
        self.attempts.send_modify(|n| *n += 1);
        ok
    }

    /// Swaps in `keys` unless they are the ones in use. A new generation
    /// starts with an empty cache, so nothing a dropped key verified outlives it.
    fn install(&self, keys: Vec<Key>) {
        if let Some(current) = self.keys.load().as_ref() {
            if document::same(&current.keys, &keys) {
                return;
            }
        }
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        log::info!("jwks: issuer {} now has keys {kids:?}", self.name);
        self.keys.store(Some(Arc::new(KeySet {
            keys,
            answers: Answers::new(),
        })));
    }
}

/// The fetcher thread of one issuer: fetches at once, then every
/// `jwks_refresh` (every `refetch_interval` while failing), when a request
/// claims a fetch, and when an unknown kid's interval ends; it ends when the
/// issuer is dropped.
fn fetcher(issuer: Weak<Issuer>, mut wakes: mpsc::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("jwks: cannot start the fetcher's runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let client = fetch::Client::new();
        loop {
            let Some(strong) = issuer.upgrade() else {
                return;
            };
            let ok = strong.fetch(&client).await;
            let periodic = Instant::now()
                + match ok {
                    true => strong.config.jwks_refresh,
                    false => strong.config.refetch_interval,
                };
            drop(strong);
            // Sleeps until the next fetch is due; a wake-up (a claimed fetch,
            // or an unknown kid left for later) makes it look again.
            loop {
                let Some(strong) = issuer.upgrade() else {
                    return;
                };
                let next = strong
                    .fetches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next(Instant::now(), periodic, strong.config.refetch_interval);
                drop(strong);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => break,
                    woken = wakes.recv() => {
                        if woken.is_none() {
                            return;
                        }
                    }
                }
            }
        }
    });
}
