//! Signing keys for `auth.algorithm: EdDSA | ES256 | RS256`, kept in the store so
//! that every replica signs and verifies with the same set: made on first start (or
//! imported from the `keys_dir` of an earlier version), rotated by `portcullis keys
//! rotate` or on the `auth.key_rotation` schedule, and published at
//! `/.well-known/jwks.json`.
//!
//! Private keys and the refresh secret are sealed under the key-encryption key
//! (kek.rs) before they reach the store. Every change to the set moves its
//! generation on with a conditional update, so of several replicas rotating at once
//! exactly one does; each running gateway polls the generation every second and
//! swaps a changed set into its `Keys` whole, off the request path.

mod files;
pub mod index;
pub mod jwks;
pub mod kek;

use crate::auth::store::{KeySetChange, Store, StoredKey, StoredKeySet};
use crate::config::{Algorithm, Auth, Config};
use crate::gateway::MIN_SECRET_LEN;
use crate::token::{Key, Keys, WeakRing};
use index::{Entry, Index, Policy, SETTLE};
use kek::Kek;
use rand::RngCore;
use std::future::Future;
use std::time::Duration;
use zeroize::Zeroizing;

/// Longest time an upstream may cache the JWKS document.
const MAX_JWKS_AGE: u64 = 300;
/// How often a running gateway polls the key set's generation and the schedule.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// What the refresh secret's sealing is bound to.
const REFRESH_LABEL: &str = "the refresh secret";
/// Rounds of read-and-change before giving up on a set that keeps changing.
const MAX_ATTEMPTS: usize = 10;

/// The policy `auth` describes.
fn policy(auth: &Auth) -> Policy<'_> {
    Policy {
        alg: auth.algorithm.as_str(),
        retain: auth.access_ttl.as_secs() + auth.leeway.as_secs(),
        rotation: auth.key_rotation.map(|d| d.as_secs()),
        lead: jwks_max_age(auth),
    }
}

/// The JWKS `max-age`: short enough that a key published one max-age before
/// it signs is in every upstream's copy by then.
fn jwks_max_age(auth: &Auth) -> u64 {
    auth.access_ttl.as_secs().min(MAX_JWKS_AGE)
}

/// What a signing key's sealing is bound to, and how errors name it.
fn label(kid: &str) -> String {
    format!("signing key {kid}")
}

/// The key set as one generation of the store holds it, opened.
struct Loaded {
    generation: i64,
    index: Index,
    /// The keys still verifying when it was loaded.
    keys: Vec<Key>,
    refresh_secret: Zeroizing<Vec<u8>>,
}

/// The key set for an asymmetric `auth.algorithm`, from the config's store: made
/// there on first start (or imported from keys_dir), with a new key when the
/// configured algorithm changed or a scheduled rotation is due.
pub fn open(config: &Config, jwt_secret: Option<&str>, now: u64) -> Result<Keys, String> {
    let chain_key = jwt_secret.map(check_jwt_secret).transpose()?;
    let kek = kek_for(config, true)?;
    let auth = &config.auth;
    let loaded = on_own_runtime(async {
        let store = connect(&config.store).await?;
        let loaded = prepare(&store, &kek, auth, now).await;
        store.close().await;
        loaded
    })?;
    let refresh = chain_key.unwrap_or_else(|| loaded.refresh_secret.to_vec());
    let mut keys = Keys::new(
        loaded.keys,
        &auth.issuer,
        &auth.audience,
        auth.leeway,
        &refresh,
    )
    .ok_or("the key set in the store has no key that signs")?;
    keys.set_jwks_max_age(jwks_max_age(auth));
    Ok(keys)
}

/// `JWT_SECRET`, when set beside asymmetric keys, keys the refresh chain: whoever
/// can guess it can compute a stolen session's successors.
fn check_jwt_secret(secret: &str) -> Result<Vec<u8>, String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "JWT_SECRET is {} bytes; it must be at least {MIN_SECRET_LEN} (or unset, to keep a random refresh secret in the store)",
            secret.len()
        ));
    }
    crate::auth::secret_strength::check_jwt_secret(secret)?;
    Ok(secret.as_bytes().to_vec())
}

/// The key-encryption key for the config's store, from the environment and `.env`.
pub fn kek_for(config: &Config, create: bool) -> Result<Kek, String> {
    let env = crate::environment::Environment::load(&config.path);
    kek::load(&|name| env.get(name), &config.store, create)
}

/// Opens the store the keys live in; one line when it cannot be used.
async fn connect(url: &str) -> Result<Store, String> {
    Store::connect(url).await.map_err(|e| {
        let why = e.to_string().replace('\n', " ");
        format!(
            "store {} is not usable: {why}",
            crate::cli::redact_store(url)
        )
    })
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own, so
/// it can be called from anywhere, a tokio worker (a reload) included.
fn on_own_runtime<T: Send>(
    work: impl Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime for the key store: {e}"))?
                .block_on(work)
        });
        worker
            .join()
            .unwrap_or_else(|_| Err("the key store's thread panicked".into()))
    })
}

/// Brings the stored set to what the config asks (imported, a first key, a refresh
/// secret, a key of a changed algorithm, a due rotation) and opens it.
async fn prepare(store: &Store, kek: &Kek, auth: &Auth, now: u64) -> Result<Loaded, String> {
    let policy = policy(auth);
    for _ in 0..MAX_ATTEMPTS {
        let set = store.key_set().await.map_err(|e| e.to_string())?;
        if set.is_empty() {
            if let Some(change) = import(kek, auth)? {
                if store
                    .change_key_set(set.generation, &change)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    log::info!(
                        "keys: imported {} signing keys{} from {} into the store; keys_dir is not read any more",
                        change.add.len(),
                        if change.refresh_secret.is_some() { " and the refresh secret" } else { "" },
                        auth.keys_dir.display()
                    );
                }
                continue;
            }
        }
        let index = index_of(&set);
        let mut change = KeySetChange::default();
        if set.refresh_secret.is_none() {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(secret.as_mut());
            change.refresh_secret = Some(kek.seal(REFRESH_LABEL, secret.as_ref())?);
        }
        if let Some(active_from) = index.due(now, &policy) {
            add_key(&mut change, index, &policy, kek, now, active_from)?;
        }
        if change.is_empty() {
            return open_set(set, kek, policy.retain, now);
        }
        if store
            .change_key_set(set.generation, &change)
            .await
            .map_err(|e| e.to_string())?
        {
            log_added(&change, "");
        }
    }
    Err("the key set in the store kept changing while it was read; try again".into())
}

/// The change that imports an earlier version's keys_dir, if it holds keys.
fn import(kek: &Kek, auth: &Auth) -> Result<Option<KeySetChange>, String> {
    let Some(legacy) = files::read_legacy(&auth.keys_dir)? else {
        return Ok(None);
    };
    let mut change = KeySetChange::default();
    for (entry, pem) in &legacy.keys {
        change.add.push(StoredKey {
            kid: entry.kid.clone(),
            alg: entry.alg.clone(),
            sealed: kek.seal(&label(&entry.kid), pem.as_bytes())?,
            created_at: to_i64(entry.created_at),
            active_from: to_i64(entry.active_from),
        });
    }
    if let Some(secret) = &legacy.refresh_secret {
        change.refresh_secret = Some(kek.seal(REFRESH_LABEL, secret)?);
    }
    Ok(Some(change))
}

/// Adds to `change` a new key signing from `active_from`, and drops the keys past
/// their window.
fn add_key(
    change: &mut KeySetChange,
    mut index: Index,
    policy: &Policy<'_>,
    kek: &Kek,
    now: u64,
    active_from: u64,
) -> Result<(), String> {
    let (signer, pem) = files::generate(policy.alg)?;
    let kid = signer
        .verifier()
        .thumbprint()
        .ok_or("a generated key has no public half")?;
    change.add.push(StoredKey {
        sealed: kek.seal(&label(&kid), pem.as_bytes())?,
        kid,
        alg: policy.alg.to_owned(),
        created_at: to_i64(now),
        active_from: to_i64(active_from),
    });
    change.remove = index
        .prune(now, policy.retain)
        .into_iter()
        .map(|e| e.kid)
        .collect();
    Ok(())
}

fn log_added(change: &KeySetChange, why: &str) {
    for key in &change.add {
        log::info!(
            "keys: new {} key {} signs from {}{why}",
            key.alg,
            key.kid,
            key.active_from
        );
    }
}

/// The schedule of a stored set.
fn index_of(set: &StoredKeySet) -> Index {
    Index {
        keys: set
            .keys
            .iter()
            .map(|k| Entry {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                created_at: to_u64(k.created_at),
                active_from: to_u64(k.active_from),
            })
            .collect(),
    }
}

/// Opens the keys of `set` still verifying at `now`, each checked against its kid.
fn open_set(set: StoredKeySet, kek: &Kek, retain: u64, now: u64) -> Result<Loaded, String> {
    let index = index_of(&set);
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, stored) in set.keys.iter().enumerate() {
        let verify_until = index.verify_until(i, retain);
        if verify_until <= now {
            continue;
        }
        let what = label(&stored.kid);
        let pem = kek.open(&what, &stored.sealed)?;
        let pem = std::str::from_utf8(&pem).map_err(|_| format!("{what} is not PEM"))?;
        let signer = files::parse(&stored.alg, pem, &what)?;
        let verifier = signer.verifier();
        if verifier.thumbprint().as_deref() != Some(stored.kid.as_str()) {
            return Err(format!("{what} in the store holds another key"));
        }
        keys.push(Key {
            kid: stored.kid.clone(),
            verifier,
            signer: Some(signer),
            active_from: to_u64(stored.active_from),
            verify_until,
        });
    }
    let sealed = set
        .refresh_secret
        .as_ref()
        .ok_or("the key set in the store has no refresh secret")?;
    let refresh_secret = kek.open(REFRESH_LABEL, sealed)?;
    Ok(Loaded {
        generation: set.generation,
        index,
        keys,
        refresh_secret,
    })
}

fn to_i64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn to_u64(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// Adds a key to the stored set that signs from `active_from` (now + [`SETTLE`]
/// when `None`: a manual rotation), retrying while other writers get there first.
/// With `scheduled`, only adds one while the schedule still asks for it, so of
/// replicas racing for a due rotation one makes the key and the others nothing.
async fn rotate_in(
    store: &Store,
    kek: &Kek,
    auth: &Auth,
    now: u64,
    scheduled: bool,
) -> Result<(), String> {
    let policy = policy(auth);
    for _ in 0..MAX_ATTEMPTS {
        let set = store.key_set().await.map_err(|e| e.to_string())?;
        let index = index_of(&set);
        let active_from = match scheduled {
            true => match index.scheduled(now, &policy) {
                Some(at) => at,
                None => return Ok(()),
            },
            false => now + SETTLE,
        };
        let mut change = KeySetChange::default();
        add_key(&mut change, index, &policy, kek, now, active_from)?;
        if store
            .change_key_set(set.generation, &change)
            .await
            .map_err(|e| e.to_string())?
        {
            log_added(&change, if scheduled { " (scheduled)" } else { "" });
            return Ok(());
        }
    }
    Err("the key set in the store kept changing; try again".into())
}

/// Keeps `keys` current while the gateway holding them lives: polls the store's
/// key set every second, swaps in a changed one, and performs scheduled rotations.
/// Stops by itself once a reload has dropped that gateway.
pub fn watch(keys: &Keys, config: &Config) {
    let ring = keys.weak_ring();
    let config = config.clone();
    let spawned = std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let watched = match runtime {
                Ok(runtime) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(watch_store(ring, config))
                }))
                .map_err(|_| "it panicked".to_owned()),
                Err(e) => Err(format!("no runtime: {e}")),
            };
            if let Err(why) = watched {
                watcher_lost(&why);
            }
        });
    if let Err(e) = spawned {
        watcher_lost(&e.to_string());
    }
}

/// A replica that no longer follows the shared key set would refuse the
/// others' tokens while still answering ready: it ends instead, so that its
/// supervisor restarts it.
fn watcher_lost(why: &str) -> ! {
    log::error!("keys: the key watcher stopped ({why}); exiting");
    crate::access_log::flush();
    std::process::exit(1)
}

/// What the key watcher remembers between polls.
struct Watch {
    store: Option<Store>,
    /// The generation in `ring`; unknown at first, the set may have changed since.
    seen: Option<i64>,
    index: Index,
}

async fn watch_store(ring: WeakRing, config: Config) {
    let kek = match kek_for(&config, true) {
        Ok(kek) => kek,
        Err(e) => watcher_lost(&e),
    };
    let mut watch = Watch {
        store: None,
        seen: None,
        index: Index::default(),
    };
    let mut failing: Option<String> = None;
    while ring.alive() {
        tokio::time::sleep(WATCH_INTERVAL).await;
        match poll(&mut watch, &kek, &config, &ring).await {
            Ok(()) => {
                if failing.take().is_some() {
                    log::info!("keys: the key set in the store is readable again");
                }
            }
            // One line per distinct problem, not one a second.
            Err(e) if failing.as_ref() != Some(&e) => {
                log::error!("keys: {e}; the current keys stay in use");
                failing = Some(e);
            }
            Err(_) => {}
        }
    }
    if let Some(store) = watch.store {
        store.close().await;
    }
}

/// One look at the schedule and at the store's generation.
async fn poll(
    watch: &mut Watch,
    kek: &Kek,
    config: &Config,
    ring: &WeakRing,
) -> Result<(), String> {
    let store = match &watch.store {
        Some(store) => store,
        None => watch.store.insert(connect(&config.store).await?),
    };
    let auth = &config.auth;
    let now = crate::clock::now();
    if watch.index.scheduled(now, &policy(auth)).is_some() {
        rotate_in(store, kek, auth, now, true).await?;
    }
    let generation = store
        .key_set_generation()
        .await
        .map_err(|e| e.to_string())?;
    if watch.seen == Some(generation) {
        return Ok(());
    }
    let set = store.key_set().await.map_err(|e| e.to_string())?;
    let loaded = open_set(set, kek, policy(auth).retain, now)?;
    let signing = loaded
        .index
        .signer_at(now)
        .map(|i| loaded.index.keys[i].kid.clone());
    if ring.replace(loaded.keys) && watch.seen.is_some() {
        log::info!(
            "keys: key set generation {} loaded from the store ({} signs now)",
            loaded.generation,
            signing.as_deref().unwrap_or("no key yet")
        );
    }
    watch.seen = Some(loaded.generation);
    watch.index = loaded.index;
    Ok(())
}

/// The lines `keys rotate` prints: each key with its state at `now`.
fn describe(index: &Index, retain: u64, now: u64) -> String {
    let mut out = String::new();
    let signer = index.signer_at(now);
    for (i, entry) in index.keys.iter().enumerate() {
        let state = if Some(i) == signer {
            "signing".to_owned()
        } else if entry.active_from > now {
            format!("next, signs from {}", entry.active_from)
        } else {
            format!("retired, verifies until {}", index.verify_until(i, retain))
        };
        out.push_str(&format!("{} {} {state}\n", entry.kid, entry.alg));
    }
    out
}

/// The config at `config_path` with the key set in its store, for a `keys` command.
fn keys_config(config_path: &std::path::Path) -> Result<Config, String> {
    let env = crate::environment::Environment::load(config_path);
    let config = crate::server::load_config(config_path, &env)?.config;
    if config.auth.algorithm == Algorithm::HS256 {
        return Err("auth.algorithm is HS256, whose key is JWT_SECRET: change the secret to rotate it (or use EdDSA, ES256 or RS256 for keys kept in the store)".into());
    }
    Ok(config)
}

/// `portcullis keys rotate`: a new key is published at once and signs from
/// [`SETTLE`] seconds on, when every running gateway has loaded it; the others
/// keep verifying until the tokens they signed have expired. The lines to print.
pub fn rotate_command(config_path: &std::path::Path) -> Result<String, String> {
    let config = keys_config(config_path)?;
    let kek = kek_for(&config, true)?;
    let auth = &config.auth;
    let now = crate::clock::now();
    let set = on_own_runtime(async {
        let store = connect(&config.store).await?;
        let done = async {
            prepare(&store, &kek, auth, now).await?;
            rotate_in(&store, &kek, auth, now, false).await?;
            store.key_set().await.map_err(|e| e.to_string())
        }
        .await;
        store.close().await;
        done
    })?;
    let mut out = describe(&index_of(&set), policy(auth).retain, now);
    out.push_str(&format!(
        "every running gateway loads the new key within a second or two; it signs from {}\n",
        now + SETTLE
    ));
    Ok(out)
}

/// `portcullis keys rewrap`: seals every key, the refresh secret and every TOTP
/// secret under the current key-encryption key, opening them with whichever known
/// key sealed them. HS256 configs have TOTP secrets in the store, if no keys.
pub fn rewrap_command(config_path: &std::path::Path) -> Result<String, String> {
    let env = crate::environment::Environment::load(config_path);
    let config = crate::server::load_config(config_path, &env)?.config;
    let kek = kek_for(&config, true)?;
    let (keys, totp) = on_own_runtime(async {
        let store = connect(&config.store).await?;
        let done = async {
            let keys = rewrap(&store, &kek).await?;
            Ok((keys, crate::auth::service::rewrap_totp(&store, &kek).await?))
        }
        .await;
        store.close().await;
        done
    })?;
    Ok(match keys + totp {
        0 => format!(
            "nothing to rewrap: everything in the store is sealed under key-encryption key {}\n",
            kek.id()
        ),
        n => format!(
            "rewrapped {n} sealed values ({totp} of them TOTP secrets) under key-encryption key {}; \
             {} can now be removed\n",
            kek.id(),
            kek::ENV_OLD
        ),
    })
}

/// Seals again what is not under the current KEK; how many values that was.
async fn rewrap(store: &Store, kek: &Kek) -> Result<usize, String> {
    for _ in 0..MAX_ATTEMPTS {
        let set = store.key_set().await.map_err(|e| e.to_string())?;
        let mut change = KeySetChange::default();
        for key in set.keys.iter().filter(|k| !kek.is_current(&k.sealed)) {
            let what = label(&key.kid);
            let plain = kek.open(&what, &key.sealed)?;
            change
                .reseal
                .push((key.kid.clone(), kek.seal(&what, &plain)?));
        }
        if let Some(sealed) = set.refresh_secret.as_ref().filter(|s| !kek.is_current(s)) {
            let plain = kek.open(REFRESH_LABEL, sealed)?;
            change.refresh_secret = Some(kek.seal(REFRESH_LABEL, &plain)?);
        }
        let count = change.reseal.len() + usize::from(change.refresh_secret.is_some());
        if count == 0 {
            return Ok(0);
        }
        if store
            .change_key_set(set.generation, &change)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(count);
        }
    }
    Err("the key set in the store kept changing; try again".into())
}

#[cfg(test)]
mod tests;
