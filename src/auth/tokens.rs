//! Refresh-token material: random tokens, deterministic successors and storage hashes.
//!
//! Only SHA-256 hashes of refresh tokens are stored, so a database leak yields nothing
//! presentable. Because the successor is an HMAC of the presented token, a client retrying
//! inside the grace window receives the same successor without the store keeping it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256's block size: HMAC keys are padded or hashed to this length.
const BLOCK: usize = 64;

/// A fresh refresh token for a new session: 256 random bits, base64url without padding.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token that replaces `presented` on rotation: base64url(HMAC-SHA256(chain_key, presented)).
/// `chain_key` is a server secret (at least 32 random bytes) shared by all replicas;
/// rotating it invalidates grace-window retries in flight, nothing else.
pub fn successor(chain_key: &[u8], presented: &str) -> String {
    let mut mac = Hmac::<Sha256>::new(&key_block(chain_key).into());
    mac.update(presented.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The form in which a refresh token is stored and looked up: lower-case hex SHA-256.
/// Lookups go by this hash, so no secret is ever compared in application code.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// RFC 2104 key preparation (hash if longer than a block, then zero-pad), done here so
/// HMAC construction is infallible instead of going through `new_from_slice`'s `Result`.
fn key_block(key: &[u8]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    block
}

/// Lower-case hex encoding.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_256_bit_base64url_and_distinct() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn successor_is_deterministic_and_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let mac = URL_SAFE_NO_PAD
            .decode(successor(b"Jefe", "what do ya want for nothing?"))
            .expect("base64url");
        assert_eq!(hex(&mac), expected);
        assert_eq!(successor(b"k", "t"), successor(b"k", "t"));
        assert_ne!(successor(b"k", "t"), successor(b"k2", "t"));
    }

    #[test]
    fn successor_with_a_long_key_equals_the_hmac_crate() {
        let key = [7u8; 131];
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(b"token");
        let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(successor(&key, "token"), expected);
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
