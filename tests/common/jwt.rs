//! Token minting for tests: HS256 JWTs over raw JSON strings, so hostile tokens
//! (duplicate members, `alg: none`, wrong types) can be crafted freely, and the
//! digests and encodings tests compare against. The crypto and base64url come from
//! the crates the gateway itself builds (`sha2`, `hmac`, `base64`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A compact JWS over the raw `header_json` and `claims_json` strings, signed HMAC-SHA256.
/// Raw strings let tests craft duplicate keys, `alg: none` headers and other hostile shapes.
pub fn mint_hs256(secret: &[u8], header_json: &str, claims_json: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header_json.as_bytes()),
        b64url(claims_json.as_bytes())
    );
    let signature = hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&signature))
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded, canonical base64url; `None` on anything else (to read tokens the
/// gateway and the CLI mint).
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // Infallible: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// SHA-256 (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex, for secrets made of random bytes and for comparing digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
