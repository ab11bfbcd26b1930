//! The key directory on disk: a 0700 directory of 0600 files, each written
//! to a temp file and renamed into place, so a crash never leaves half a key or
//! half an index; and a lock file so a gateway and `portcullis keys rotate`
//! never rewrite the index at the same time.

use crate::token::Signer;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;
const LOCK_FILE: &str = "keys.lock";
/// A lock older than this was left by a process that died mid-write.
const STALE_LOCK: Duration = Duration::from_secs(30);
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Creates `dir` (0700) if needed; warns when an existing one is open to others.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("keys_dir: cannot create {}: {e}", parent.display()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let mode = fs::metadata(dir)
                .map_err(|e| format!("keys_dir: {}: {e}", dir.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "keys_dir {} is open to group or others (mode {:o}); chmod 700 it",
                    dir.display(),
                    mode & 0o777
                );
            }
            Ok(())
        }
        Err(e) => Err(format!("keys_dir: cannot create {}: {e}", dir.display())),
    }
}

/// Writes `bytes` to `dir/name` (mode 0600) atomically: temp file, fsync, rename.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let mut suffix = [0u8; 6];
    rand::rng().fill_bytes(&mut suffix);
    let tmp = dir.join(format!(
        ".{name}.{:x}.tmp",
        u64::from_le_bytes([
            suffix[0], suffix[1], suffix[2], suffix[3], suffix[4], suffix[5], 0, 0
        ])
    ));
    let target = dir.join(name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        // Make the rename itself durable; a failure here loses nothing already written.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<_, std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", target.display())
    })
}

/// Reads a file that must be private to its owner, as ssh insists for its keys.
pub fn read_private(path: &Path) -> Result<Vec<u8>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Removes a retired key's file; a file already gone is fine.
pub fn remove(dir: &Path, name: &str) {
    if let Err(e) = fs::remove_file(dir.join(name)) {
        if e.kind() != ErrorKind::NotFound {
            log::warn!("cannot remove retired key {name}: {e}");
        }
    }
}

/// Held while the index is read, changed and written; released on drop.
pub struct Lock(PathBuf);

impl Lock {
    /// Waits (up to 10 s) for the directory's lock. A lock left by a crashed
    /// writer is broken after 30 s.
    pub fn acquire(dir: &Path) -> Result<Lock, String> {
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(Lock(path)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "{} is held by another portcullis; remove it if none is rotating keys",
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A new private key for `alg` and its PKCS#8 PEM.
pub fn generate(alg: &str) -> Result<(Signer, String), String> {
    let pem = |r: Result<zeroize::Zeroizing<String>, ed25519_dalek::pkcs8::Error>| {
        r.map(|p| p.to_string())
            .map_err(|e| format!("cannot encode a new {alg} key: {e}"))
    };
    match alg {
        "EdDSA" => {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(seed.as_mut());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let text = pem(key.to_pkcs8_pem(LineEnding::LF))?;
            Ok((Signer::EdDsa(key), text))
        }
        "ES256" => {
            // A random 32-byte string is a valid P-256 scalar but with odds of ~2^-32.
            let key = loop {
                let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(bytes.as_mut());
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
                    break key;
                }
            };
            let text = pem(key.to_pkcs8_pem(LineEnding::LF))?;
            Ok((Signer::Es256(key), text))
        }
        "RS256" => {
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, MIN_RSA_BITS)
                .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
            let text = pem(key.to_pkcs8_pem(LineEnding::LF))?;
            Ok((Signer::Rs256(rsa::pkcs1v15::SigningKey::new(key)), text))
        }
        other => Err(format!("no key files for algorithm {other}")),
    }
}

/// Reads a PKCS#8 PEM private key for `alg`.
pub fn parse(alg: &str, pem: &str, path: &Path) -> Result<Signer, String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!("{} is not a PKCS#8 {alg} private key: {e}", path.display())
    };
    match alg {
        "EdDSA" => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Signer::EdDsa)
            .map_err(|e| bad(&e)),
        "ES256" => p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(Signer::Es256)
            .map_err(|e| bad(&e)),
        "RS256" => {
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| bad(&e))?;
            if key.size() * 8 < MIN_RSA_BITS {
                return Err(bad(&format!("shorter than {MIN_RSA_BITS} bits")));
            }
            Ok(Signer::Rs256(rsa::pkcs1v15::SigningKey::new(key)))
        }
        other => Err(format!("{}: unknown algorithm {other}", path.display())),
    }
}
