//! The key-encryption key (KEK): private signing keys and the refresh secret are
//! sealed with AES-256-GCM under it before they reach the store, each bound to what
//! it is (a key's kid) as associated data, so a row copied onto another kid does not
//! open. The KEK comes from `PORTCULLIS_KEY_ENCRYPTION_KEY`; older ones listed in
//! `PORTCULLIS_KEY_ENCRYPTION_KEY_OLD` still open what they sealed, until
//! `portcullis keys rewrap` has sealed everything under the current one.
//!
//! A single node on SQLite may run without the variable: a KEK is then generated
//! once into the database's directory (0600), as the zero-setup quickstart needs.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::auth::store::Sealed;

pub const ENV: &str = "PORTCULLIS_KEY_ENCRYPTION_KEY";
pub const ENV_OLD: &str = "PORTCULLIS_KEY_ENCRYPTION_KEY_OLD";
/// The quickstart's generated KEK, beside the SQLite database.
const QUICKSTART_FILE: &str = "key-encryption.key";
const NONCE_LEN: usize = 12;
const HOW: &str = "make one with `openssl rand -hex 32`";

/// The KEK that seals, and the older ones that may still open.
pub struct Kek {
    current: Secret,
    old: Vec<Secret>,
}

struct Secret {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl Secret {
    fn new(key: Zeroizing<[u8; 32]>) -> Secret {
        // Names the key in the store without revealing anything of 32 random bytes.
        let mut hash = Sha256::new();
        hash.update(b"portcullis key-encryption key id\0");
        hash.update(key.as_ref());
        let id = crate::auth::tokens::hex(&hash.finalize()[..8]);
        Secret { id, key }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }
}

/// Where the KEK comes from for a store, read with `get` (the environment and `.env`).
/// `create` allows the quickstart file to be generated (`run`), not merely read (`check`).
pub fn load(
    get: &dyn Fn(&str) -> Option<String>,
    store_url: &str,
    create: bool,
) -> Result<Kek, String> {
    let old = match get(ENV_OLD) {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|text| parse(ENV_OLD, text).map(Secret::new))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let current = match get(ENV) {
        Some(text) => parse(ENV, &text)?,
        None => match quickstart_path(store_url) {
            Some(path) => quickstart(&path, create)?,
            None => {
                return Err(format!(
                    "{ENV} is not set: the EdDSA, ES256 and RS256 signing keys in the shared store \
                     are encrypted under it; {HOW} and give every replica the same value"
                ))
            }
        },
    };
    Ok(Kek {
        current: Secret::new(current),
        old,
    })
}

impl Kek {
    /// The id of the KEK that seals.
    pub fn id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` under the current KEK, bound to `label` (what it is: a kid).
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<Sealed, String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad(label),
                },
            )
            .map_err(|_| format!("cannot seal {label}"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(Sealed {
            kek_id: self.current.id.clone(),
            text: STANDARD.encode(bytes),
        })
    }

    /// Opens what `seal` sealed for `label`, with whichever known KEK sealed it.
    pub fn open(&self, label: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, String> {
        let Some(secret) = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|s| s.id == sealed.kek_id)
        else {
            let old: Vec<&str> = self.old.iter().map(|s| s.id.as_str()).collect();
            let old = match old.is_empty() {
                true => String::new(),
                false => format!(" ({ENV_OLD} holds {})", old.join(", ")),
            };
            return Err(format!(
                "{ENV} cannot decrypt the signing keys in the store: {label} was sealed under \
                 key-encryption key {}, and {ENV} is {}{old}; set the key it was sealed under, \
                 or list that one in {ENV_OLD} and run `portcullis keys rewrap`",
                sealed.kek_id, self.current.id
            ));
        };
        let bytes = STANDARD
            .decode(&sealed.text)
            .ok()
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| format!("{label} in the store is not a sealed key"))?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().unwrap_or_default();
        secret
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad(label),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                format!(
                    "{label} in the store does not decrypt under key-encryption key {}: \
                     its row was altered or copied from another key",
                    secret.id
                )
            })
    }

    /// Whether `sealed` is under the current KEK (else `keys rewrap` has work).
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.kek_id == self.current.id
    }
}

/// The associated data binding a sealed value to what it is.
fn aad(label: &str) -> Vec<u8> {
    let mut aad = b"portcullis sealed v1\0".to_vec();
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// 32 bytes from 64 hex digits or base64 (standard or URL-safe, padded or not),
/// refused when they do not look random.
pub fn parse(name: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let text = text.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex_decode(text)
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
    };
    let bytes = Zeroizing::new(decoded.unwrap_or_default());
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return Err(format!(
            "{name} must be 32 random bytes written as 64 hex digits or in base64 \
             (got {} characters that are neither); {HOW}",
            text.len()
        ));
    };
    let key = Zeroizing::new(key);
    if let Some(why) = weakness(&key) {
        return Err(format!("{name} is not random: {why}; {HOW}"));
    }
    Ok(key)
}

/// Why 32 bytes cannot be the random bytes a KEK must be: each test below fails for
/// truly random bytes with odds under 2^-40.
fn weakness(key: &[u8; 32]) -> Option<&'static str> {
    let mut seen = [false; 256];
    for b in key {
        seen[usize::from(*b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < 16 {
        return Some("too few distinct bytes");
    }
    if key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Some("every byte is printable text, as in a passphrase, not random bytes");
    }
    let step = key[1].wrapping_sub(key[0]);
    if key.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        return Some("its bytes are a counting sequence");
    }
    None
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The quickstart KEK's file: beside a SQLite database; none for a shared store.
fn quickstart_path(store_url: &str) -> Option<PathBuf> {
    let rest = store_url.strip_prefix("sqlite://")?;
    let path = Path::new(rest.split('?').next().unwrap_or(rest));
    Some(path.parent()?.join(QUICKSTART_FILE))
}

/// Reads the quickstart KEK, generating it first when allowed and absent.
fn quickstart(path: &Path, create: bool) -> Result<Zeroizing<[u8; 32]>, String> {
    let name = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    if !path.exists() {
        if !create {
            // `run` generates it; nothing to check yet.
            return Ok(Zeroizing::new(random_key()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let key = Zeroizing::new(random_key());
        let text = Zeroizing::new(format!("{}\n", crate::auth::tokens::hex(key.as_ref())));
        super::files::write_new_private(path, text.as_bytes())?;
        log::warn!(
            "keys: {ENV} is not set, so a key-encryption key for the signing keys in the \
             store was generated into {name} (0600); fine for one node, but keep a copy \
             apart from the database, or set {ENV} ({HOW})"
        );
    }
    let text = super::files::read_private(path)?;
    let text = Zeroizing::new(String::from_utf8(text).unwrap_or_default());
    parse(&name, &text)
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3f1a9c0e5b7d2486af13c9e07b5d2f48a16c3e9b0d7f2a5c8e1b4d6f9a0c3e52";

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn hex_and_base64_spellings_of_one_key_are_the_same_key() {
        let from_hex = parse(ENV, HEX).unwrap();
        let b64 = STANDARD.encode(from_hex.as_ref());
        assert_eq!(parse(ENV, &b64).unwrap(), from_hex);
        let url = URL_SAFE_NO_PAD.encode(from_hex.as_ref());
        assert_eq!(parse(ENV, &url).unwrap(), from_hex);
    }

    #[test]
    fn short_textual_and_patterned_keys_are_refused_with_how_to_make_one() {
        let cases = [
            ("abc", "must be 32 random bytes"),
            (&"00".repeat(32), "too few distinct bytes"),
            (
                "correct-horse-battery-staple-and-more-words!",
                "must be 32 random bytes",
            ),
            (
                &STANDARD.encode(b"Quick zebras jump over 17 dogs!!"),
                "printable text",
            ),
            (
                &(0u8..32).map(|b| format!("{b:02x}")).collect::<String>(),
                "counting sequence",
            ),
        ];
        for (text, why) in cases {
            let e = parse(ENV, text).map(drop).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.ends_with("make one with `openssl rand -hex 32`"), "{e}");
        }
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_label_and_its_key() {
        let kek = load(&env(&[(ENV, HEX)]), "postgres://db/x", true).unwrap();
        let sealed = kek.seal("kid-a", b"private").unwrap();
        assert_eq!(kek.open("kid-a", &sealed).unwrap().as_slice(), b"private");
        assert!(kek
            .open("kid-b", &sealed)
            .unwrap_err()
            .contains("does not decrypt"));
        let other = load(
            &env(&[(
                ENV,
                "b7e2c91f04a65d38e1f9a27c5b0d43e6f81a2c9d5e7b03f4a6c8e1d2b5f7a9c0",
            )]),
            "postgres://db/x",
            true,
        )
        .unwrap();
        let e = other.open("kid-a", &sealed).unwrap_err();
        assert!(e.starts_with(&format!("{ENV} cannot decrypt")), "{e}");
        let mut tampered = sealed.clone();
        tampered.text.replace_range(20..21, "A");
        if tampered != sealed {
            assert!(kek.open("kid-a", &tampered).is_err());
        }
    }

    #[test]
    fn an_old_key_still_opens_what_it_sealed() {
        let old = load(&env(&[(ENV, HEX)]), "postgres://db/x", true).unwrap();
        let sealed = old.seal("kid-a", b"private").unwrap();
        let rotated = load(
            &env(&[
                (
                    ENV,
                    "b7e2c91f04a65d38e1f9a27c5b0d43e6f81a2c9d5e7b03f4a6c8e1d2b5f7a9c0",
                ),
                (ENV_OLD, HEX),
            ]),
            "postgres://db/x",
            true,
        )
        .unwrap();
        assert!(!rotated.is_current(&sealed));
        assert_eq!(
            rotated.open("kid-a", &sealed).unwrap().as_slice(),
            b"private"
        );
    }

    #[test]
    fn a_shared_store_without_the_variable_is_refused() {
        let e = load(&env(&[]), "postgres://db/x", true)
            .map(drop)
            .unwrap_err();
        assert!(e.starts_with(&format!("{ENV} is not set")), "{e}");
    }
}
