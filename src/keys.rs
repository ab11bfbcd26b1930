//! Signing keys kept in files, for `auth.algorithm: EdDSA | ES256 | RS256`:
//! generated on first start, rotated by `portcullis keys rotate` or on the
//! `auth.key_rotation` schedule, and published at `/.well-known/jwks.json`.
//!
//! ```text
//! keys_dir/ (0700)
//!   keys.json        the index: which key signs when (see index.rs)
//!   <kid>.pem        one PKCS#8 private key per kid (0600)
//!   refresh.secret   32 random bytes keying the refresh chain when JWT_SECRET is unset (0600)
//! ```
//!
//! A running gateway rereads the index when its file changes (checked every
//! second), so a rotation made by the CLI reaches it without a restart.

mod files;
pub mod index;
pub mod jwks;

use crate::config::{Algorithm, Auth};
use crate::gateway::MIN_SECRET_LEN;
use crate::token::{Key, Keys};
use index::{Entry, Index, Policy};
use rand::RngCore;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const INDEX_FILE: &str = "keys.json";
const REFRESH_SECRET_FILE: &str = "refresh.secret";
/// Longest time an upstream may cache the JWKS document.
const MAX_JWKS_AGE: u64 = 300;
/// How often a running gateway looks at the index and the rotation schedule.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

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

/// The key set for an asymmetric `auth.algorithm`: loads keys_dir, creating
/// the directory and a first key when there are none, and making a new key
/// current when the configured algorithm changed or a scheduled rotation is due.
pub fn open(auth: &Auth, jwt_secret: Option<&str>, now: u64) -> Result<Keys, String> {
    let dir = auth.keys_dir.as_path();
    files::ensure_dir(dir)?;
    let mut index = read_index(dir)?;
    if index.due(now, &policy(auth)).is_some() {
        index = update(auth, now, false)?;
    }
    let refresh = refresh_secret(dir, jwt_secret)?;
    let ring = load(dir, &index, now, policy(auth).retain)?;
    let mut keys = Keys::new(ring, &auth.issuer, &auth.audience, auth.leeway, &refresh)
        .ok_or_else(|| format!("{}: no key signs", dir.join(INDEX_FILE).display()))?;
    keys.set_jwks_max_age(jwks_max_age(auth));
    Ok(keys)
}

/// `portcullis keys rotate`: a new key signs from now on; the others keep
/// verifying until the tokens they signed have expired.
pub fn rotate(auth: &Auth, now: u64) -> Result<Index, String> {
    if auth.algorithm == Algorithm::HS256 {
        return Err("auth.algorithm is HS256, whose key is JWT_SECRET: change the secret to rotate it (or use EdDSA, ES256 or RS256 for key files)".into());
    }
    files::ensure_dir(&auth.keys_dir)?;
    update(auth, now, true)
}

/// Adds a key under the lock when `force` or the policy asks for one, drops
/// the keys past their window, and writes the index. Returns the index as written.
fn update(auth: &Auth, now: u64, force: bool) -> Result<Index, String> {
    let dir = auth.keys_dir.as_path();
    let _lock = files::Lock::acquire(dir)?;
    // Read again under the lock: another process may have just done this.
    let mut index = read_index(dir)?;
    let policy = policy(auth);
    let active_from = match index.due(now, &policy) {
        Some(at) => Some(at),
        None if force => Some(now),
        None => None,
    };
    if let Some(active_from) = active_from {
        let (signer, pem) = files::generate(policy.alg)?;
        let kid = signer
            .verifier()
            .thumbprint()
            .ok_or("a generated key has no public half")?;
        let file = format!("{kid}.pem");
        // The key file exists before the index names it.
        files::write_private(dir, &file, pem.as_bytes())?;
        index.push(Entry {
            kid: kid.clone(),
            alg: policy.alg.to_owned(),
            file,
            created_at: now,
            active_from,
        });
        log::info!(
            "keys: new {} key {kid} signs from {active_from}",
            policy.alg
        );
    }
    let retired = index.prune(now, policy.retain);
    let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
    files::write_private(dir, INDEX_FILE, text.as_bytes())?;
    for entry in retired {
        files::remove(dir, &entry.file);
    }
    Ok(index)
}

/// The index, or an empty one when keys_dir has none yet.
fn read_index(dir: &Path) -> Result<Index, String> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        return Ok(Index::default());
    }
    let bytes = files::read_private(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The keys of `index` still verifying at `now`, read and checked against their kids.
fn load(dir: &Path, index: &Index, now: u64, retain: u64) -> Result<Vec<Key>, String> {
    let mut keys = Vec::with_capacity(index.keys.len());
    for (i, entry) in index.keys.iter().enumerate() {
        let verify_until = index.verify_until(i, retain);
        if verify_until <= now {
            continue;
        }
        let path = dir.join(&entry.file);
        let pem = files::read_private(&path)?;
        let pem = String::from_utf8(pem).map_err(|_| format!("{} is not PEM", path.display()))?;
        let signer = files::parse(&entry.alg, &pem, &path)?;
        let verifier = signer.verifier();
        if verifier.thumbprint().as_deref() != Some(entry.kid.as_str()) {
            return Err(format!(
                "{} does not hold the key {} that {INDEX_FILE} names",
                path.display(),
                entry.kid
            ));
        }
        keys.push(Key {
            kid: entry.kid.clone(),
            verifier,
            signer: Some(signer),
            active_from: entry.active_from,
            verify_until,
        });
    }
    Ok(keys)
}

/// The refresh chain key: `JWT_SECRET` when set, else a random secret kept in keys_dir.
fn refresh_secret(dir: &Path, jwt_secret: Option<&str>) -> Result<Vec<u8>, String> {
    if let Some(secret) = jwt_secret {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "JWT_SECRET is {} bytes; it must be at least {MIN_SECRET_LEN} (or unset, to keep a random refresh secret in keys_dir)",
                secret.len()
            ));
        }
        // Whoever can guess the chain key can compute a stolen session's successors.
        crate::auth::secret_strength::check_jwt_secret(secret)?;
        return Ok(secret.as_bytes().to_vec());
    }
    let path = dir.join(REFRESH_SECRET_FILE);
    let read = |path: &Path| -> Result<Vec<u8>, String> {
        let bytes = files::read_private(path)?;
        if bytes.len() != 32 {
            return Err(format!("{} must hold exactly 32 bytes", path.display()));
        }
        Ok(bytes)
    };
    if path.exists() {
        return read(&path);
    }
    let _lock = files::Lock::acquire(dir)?;
    if path.exists() {
        return read(&path);
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    files::write_private(dir, REFRESH_SECRET_FILE, &secret)?;
    Ok(secret)
}

/// Keeps `keys` current while the gateway holding them lives: reloads them when
/// keys.json changes (a CLI rotation, another replica) and performs scheduled
/// rotations. Stops by itself once a reload has dropped that gateway.
pub fn watch(keys: &Keys, auth: &Auth) {
    let ring = keys.weak_ring();
    let auth = auth.clone();
    let spawned = std::thread::Builder::new()
        .name("keys".into())
        .spawn(move || {
            let path = auth.keys_dir.join(INDEX_FILE);
            // Unknown at first: the index may have changed since the keys were read.
            let mut seen = None;
            while ring.alive() {
                std::thread::sleep(WATCH_INTERVAL);
                let now = crate::clock::now();
                if let Err(e) = refresh(&auth, &path, &mut seen, &ring, now) {
                    log::error!("keys: {e}; the current keys stay in use");
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("keys: cannot start the key watcher ({e}); rotations need a restart or SIGHUP");
    }
}

/// One look at the schedule and the index file.
fn refresh(
    auth: &Auth,
    path: &Path,
    seen: &mut Option<(u64, i64, i64)>,
    ring: &crate::token::WeakRing,
    now: u64,
) -> Result<(), String> {
    let dir = auth.keys_dir.as_path();
    if auth.key_rotation.is_some() && read_index(dir)?.due(now, &policy(auth)).is_some() {
        update(auth, now, false)?;
    }
    let current = stamp(path);
    if current != *seen {
        let index = read_index(dir)?;
        let keys = load(dir, &index, now, policy(auth).retain)?;
        if ring.replace(keys) {
            log::info!("keys: reloaded {}", path.display());
        }
        *seen = current;
    }
    Ok(())
}

/// What tells one version of the index from the next: a rename gives a new inode.
fn stamp(path: &Path) -> Option<(u64, i64, i64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.mtime(), meta.mtime_nsec()))
}

/// Runs `portcullis keys rotate` for the config at `config_path`; the lines to print.
pub fn rotate_command(config_path: &Path) -> Result<String, String> {
    let env = crate::environment::Environment::load(config_path);
    let loaded = crate::server::load_config(config_path, &env)?;
    let auth = &loaded.config.auth;
    let now = crate::clock::now();
    let index = rotate(auth, now)?;
    let retain = policy(auth).retain;
    let mut out = String::new();
    for (i, entry) in index.keys.iter().enumerate() {
        let until = index.verify_until(i, retain);
        let role = if Some(i) == index.signer_at(now) {
            "signing".to_owned()
        } else if entry.active_from > now {
            format!("published, signs from {}", entry.active_from)
        } else {
            format!("retired, verifies until {until}")
        };
        out.push_str(&format!("{} {} {role}\n", entry.kid, entry.alg));
    }
    out.push_str("a running gateway picks this up within a second\n");
    Ok(out)
}

#[cfg(test)]
mod tests;
