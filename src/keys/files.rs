//! Private keys as PKCS#8 PEM (made, parsed, checked), the files of the quickstart
//! key-encryption key, and the `keys_dir` of earlier versions, whose keys are
//! imported into the store on first start.

use super::index::Entry;
use crate::token::Signer;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use serde::Deserialize;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// Creates `path` (0600) holding `bytes`, unless it exists: written to a temp file
/// and linked into place, so a reader never sees it half written, and of two
/// processes creating it at once one wins and the other reads the winner's.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 8];
    rand::rng().fill_bytes(&mut suffix);
    let tmp = dir.join(format!(".tmp-{:x}", u64::from_le_bytes(suffix)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
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

/// `keys.json` of a `keys_dir` written before the keys moved into the store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyIndex {
    keys: Vec<LegacyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyEntry {
    kid: String,
    alg: String,
    file: String,
    created_at: u64,
    active_from: u64,
}

/// What a `keys_dir` of an earlier version holds: its keys in signing order, each
/// with its PKCS#8 PEM, and the refresh secret.
pub struct Legacy {
    pub keys: Vec<(Entry, Zeroizing<String>)>,
    pub refresh_secret: Option<Zeroizing<Vec<u8>>>,
}

/// Reads the key files `keys_dir` holds, if any, checking each against its kid.
pub fn read_legacy(dir: &Path) -> Result<Option<Legacy>, String> {
    let index_path = dir.join("keys.json");
    let secret_path = dir.join("refresh.secret");
    if !index_path.exists() && !secret_path.exists() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    if index_path.exists() {
        let bytes = read_private(&index_path)?;
        let index: LegacyIndex =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", index_path.display()))?;
        for entry in index.keys {
            let path = dir.join(&entry.file);
            let pem = Zeroizing::new(
                String::from_utf8(read_private(&path)?)
                    .map_err(|_| format!("{} is not PEM", path.display()))?,
            );
            let signer = parse(&entry.alg, &pem, &path.display().to_string())?;
            if signer.verifier().thumbprint().as_deref() != Some(entry.kid.as_str()) {
                return Err(format!(
                    "{} does not hold the key {} that keys.json names",
                    path.display(),
                    entry.kid
                ));
            }
            let kept = Entry {
                kid: entry.kid,
                alg: entry.alg,
                created_at: entry.created_at,
                active_from: entry.active_from,
            };
            keys.push((kept, pem));
        }
    }
    let refresh_secret = match secret_path.exists() {
        true => {
            let bytes = Zeroizing::new(read_private(&secret_path)?);
            if bytes.len() != 32 {
                return Err(format!(
                    "{} must hold exactly 32 bytes",
                    secret_path.display()
                ));
            }
            Some(bytes)
        }
        false => None,
    };
    Ok(Some(Legacy {
        keys,
        refresh_secret,
    }))
}

/// A new private key for `alg` and its PKCS#8 PEM.
pub fn generate(alg: &str) -> Result<(Signer, Zeroizing<String>), String> {
    let pem = |r: Result<Zeroizing<String>, ed25519_dalek::pkcs8::Error>| {
        r.map_err(|e| format!("cannot encode a new {alg} key: {e}"))
    };
    match alg {
        "EdDSA" => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(seed.as_mut());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let text = pem(key.to_pkcs8_pem(LineEnding::LF))?;
            Ok((Signer::EdDsa(key), text))
        }
        "ES256" => {
            // A random 32-byte string is a valid P-256 scalar but with odds of ~2^-32.
            let key = loop {
                let mut bytes = Zeroizing::new([0u8; 32]);
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
        other => Err(format!("no signing keys for algorithm {other}")),
    }
}

/// Reads a PKCS#8 PEM private key for `alg`; `what` names it in errors.
pub fn parse(alg: &str, pem: &str, what: &str) -> Result<Signer, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{what} is not a PKCS#8 {alg} private key: {e}");
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
        other => Err(format!("{what}: unknown algorithm {other}")),
    }
}
