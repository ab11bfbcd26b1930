//! Reads a JWKS document (RFC 7517 §5) into verify-only keys.

use crate::token::{Key, Verifier};

/// More keys than any real issuer publishes; the rest are ignored.
const MAX_KEYS: usize = 64;

/// The signature keys of a JWKS document. A key without a `kid`, meant for
/// encryption, of a type we do not verify, or whose `alg` is not the one its
/// type gives is left out (and logged): an issuer may publish keys for other
/// uses beside its signing keys. No usable key at all is an error.
pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no \"keys\" list")?;
    let mut keys: Vec<Key> = Vec::new();
    for jwk in list.iter().take(MAX_KEYS) {
        match key(jwk) {
            Ok(k) if keys.iter().any(|known| known.kid == k.kid) => {
                log::warn!("jwks: kid {:?} appears twice; the first one is used", k.kid);
            }
            Ok(k) => keys.push(k),
            Err(why) => log::debug!("jwks: key left out: {why}"),
        }
    }
    if keys.is_empty() {
        return Err("no usable signature key".into());
    }
    Ok(keys)
}

fn key(jwk: &serde_json::Value) -> Result<Key, String> {
    let jwk = jwk.as_object().ok_or("a key is not an object")?;
    let kid = jwk
        .get("kid")
        .and_then(|k| k.as_str())
        .filter(|k| !k.is_empty())
        .ok_or("no kid")?;
    let member = |name: &str| {
        jwk.get(name)
            .map(|v| v.as_str().ok_or(format!("{name} is not a string")))
    };
    if let Some(usage) = member("use").transpose()? {
        if usage != "sig" {
            return Err(format!("kid {kid:?} is for {usage:?}"));
        }
    }
    let verifier = Verifier::from_public_jwk(jwk).map_err(|e| format!("kid {kid:?}: {e}"))?;
    if let Some(alg) = member("alg").transpose()? {
        if alg != verifier.alg() {
            return Err(format!("kid {kid:?}: alg {alg} is not supported"));
        }
    }
    Ok(Key {
        kid: kid.to_owned(),
        verifier,
        signer: None,
        active_from: 0,
        verify_until: u64::MAX,
    })
}

/// Whether two key lists name the same keys with the same material.
pub fn same(a: &[Key], b: &[Key]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.kid == y.kid
                && x.verifier.alg() == y.verifier.alg()
                && x.verifier.public_jwk() == y.verifier.public_jwk()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Signer;

    fn ed25519_jwk(seed: u8, kid: &str, extra: &str) -> String {
        let signer = Signer::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
        let members = signer.verifier().public_jwk().unwrap();
        let mut out = format!("{{\"kid\":\"{kid}\"{extra}");
        for (name, value) in members {
            out.push_str(&format!(",\"{name}\":\"{value}\""));
        }
        out.push('}');
        out
    }

    #[test]
    fn signature_keys_are_kept_and_the_rest_left_out() {
        let doc = format!(
            r#"{{"keys":[{},{},{},{},{{"kty":"oct","kid":"s","k":"c2VjcmV0"}},{}]}}"#,
            ed25519_jwk(1, "a", r#","use":"sig","alg":"EdDSA""#),
            ed25519_jwk(2, "enc", r#","use":"enc""#),
            ed25519_jwk(3, "wrong-alg", r#","alg":"RS256""#),
            ed25519_jwk(4, "", ""),
            ed25519_jwk(5, "a", ""),
        );
        let keys = parse(doc.as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a"]);
        assert!(keys[0].signer.is_none());
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(parse(b"{\"keys\":[]}").is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(b"not json").is_err());
        let private = ed25519_jwk(1, "a", r#","d":"AAAA""#);
        assert!(parse(format!(r#"{{"keys":[{private}]}}"#).as_bytes()).is_err());
    }

    #[test]
    fn the_same_keys_are_recognized() {
        let one = parse(format!(r#"{{"keys":[{}]}}"#, ed25519_jwk(1, "a", "")).as_bytes()).unwrap();
        let again =
            parse(format!(r#"{{"keys":[{}]}}"#, ed25519_jwk(1, "a", "")).as_bytes()).unwrap();
        let other =
            parse(format!(r#"{{"keys":[{}]}}"#, ed25519_jwk(2, "a", "")).as_bytes()).unwrap();
        assert!(same(&one, &again));
        assert!(!same(&one, &other));
    }
}
