//! Tokens signed with asymmetric keys: each algorithm round-trips, keys keep to
//! their windows, an algorithm swap is refused, and the cache never extends a token.

use super::*;
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const GRANT: Grant<'static> = Grant {
    sub: "user-1",
    role: "viewer",
    workspace: None,
    plan: None,
    sid: None,
};

fn ed25519(seed: u8) -> Signer {
    Signer::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn p256(seed: u8) -> Signer {
    Signer::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
}

/// One RSA key per test binary: generating one costs a noticeable fraction of a second.
fn rsa() -> Signer {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    let key = KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap());
    Signer::Rs256(rsa::pkcs1v15::SigningKey::new(key.clone()))
}

fn key(signer: Signer, active_from: u64, verify_until: u64) -> Key {
    Key {
        kid: signer.verifier().thumbprint().unwrap(),
        verifier: signer.verifier(),
        signer: Some(signer),
        active_from,
        verify_until,
    }
}

fn set(keys: Vec<Key>) -> Keys {
    Keys::new(
        keys,
        "https://gw.test",
        "api",
        Duration::from_secs(5),
        &[9; 32],
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn header_of(token: &str) -> serde_json::Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn tokens_of_each_algorithm_issue_and_verify() {
    for (alg, signer) in [("EdDSA", ed25519(1)), ("ES256", p256(1)), ("RS256", rsa())] {
        for cached in [true, false] {
            let mut keys = set(vec![key(signer.clone(), 0, u64::MAX)]);
            keys.set_cache(cached);
            let issued = keys.issue(GRANT, NOW, Duration::from_secs(900));
            let header = header_of(&issued.token);
            assert_eq!(header["alg"], alg);
            assert_eq!(header["typ"], "JWT");
            assert_eq!(header["kid"], signer.verifier().thumbprint().unwrap());
            for _ in 0..2 {
                let id = keys.verify(&issued.token, NOW + 1).unwrap();
                assert_eq!((id.sub.as_str(), id.exp), ("user-1", NOW + 900), "{alg}");
                assert_eq!(id.jti, issued.jti);
            }
        }
    }
}

#[test]
fn a_tampered_signature_or_payload_is_refused_for_each_algorithm() {
    for signer in [ed25519(2), p256(2), rsa()] {
        let keys = set(vec![key(signer, 0, u64::MAX)]);
        let token = keys.issue(GRANT, NOW, Duration::from_secs(900)).token;
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[3] ^= 1;
        let bad_sig = format!("{head}.{}", b64(&bytes));
        assert_eq!(keys.verify(&bad_sig, NOW), Err(TokenError::Signature));
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = keys.issue(
            Grant {
                role: "admin",
                ..GRANT
            },
            NOW,
            Duration::from_secs(900),
        );
        parts[1] = other.token.split('.').nth(1).unwrap();
        assert_eq!(
            keys.verify(&parts.join("."), NOW),
            Err(TokenError::Signature)
        );
    }
}

#[test]
fn an_hs256_token_forged_with_the_public_key_as_secret_is_refused() {
    for signer in [ed25519(3), p256(3), rsa()] {
        let k = key(signer, 0, u64::MAX);
        let keys = set(vec![k.clone()]);
        let genuine = keys.issue(GRANT, NOW, Duration::from_secs(900)).token;
        let claims = genuine.split('.').nth(1).unwrap();
        // Every public form an attacker could find: the JWK members and their raw bytes.
        let jwk = k.verifier.public_jwk().unwrap();
        let mut secrets: Vec<Vec<u8>> = jwk.iter().map(|(_, v)| v.as_bytes().to_vec()).collect();
        secrets.extend(
            jwk.iter()
                .filter_map(|(_, v)| URL_SAFE_NO_PAD.decode(v).ok()),
        );
        for secret in secrets {
            let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, k.kid);
            let input = format!("{}.{claims}", b64(header.as_bytes()));
            let mac = Signer::hs256(&secret).sign(input.as_bytes());
            let forged = format!("{input}.{}", b64(&mac));
            assert_eq!(keys.verify(&forged, NOW), Err(TokenError::Algorithm));
        }
    }
}

#[test]
fn a_token_signed_by_a_retired_key_verifies_only_until_its_window_ends() {
    // `old` signed until NOW + 100; tokens live 900 s and leeway is 5 s.
    let until = NOW + 100 + 900 + 5;
    let old = key(ed25519(4), NOW - 1000, until);
    let new = key(ed25519(5), NOW + 100, u64::MAX);
    let keys = set(vec![old.clone(), new.clone()]);
    let by_old = keys.issue(GRANT, NOW + 99, Duration::from_secs(900));
    assert_eq!(header_of(&by_old.token)["kid"], old.kid.as_str());
    let by_new = keys.issue(GRANT, NOW + 100, Duration::from_secs(900));
    assert_eq!(header_of(&by_new.token)["kid"], new.kid.as_str());
    // The last token the old key signed is good to its last second.
    assert!(keys.verify(&by_old.token, NOW + 200).is_ok());
    assert!(keys.verify(&by_old.token, NOW + 99 + 900 + 4).is_ok());
    // A token outliving the longest lifetime (15 min here) is refused outright.
    let long = keys.issue(GRANT, NOW + 99, Duration::from_secs(3600));
    assert_eq!(
        keys.verify(&long.token, NOW + 200),
        Err(TokenError::Lifetime)
    );
    // Were such lifetimes allowed, the key's window would still cut it off: verified
    // (and so cached) before the window ends, refused from its end on.
    let mut lenient = set(vec![old.clone(), new.clone()]);
    lenient.set_max_lifetime(Duration::from_secs(3600));
    let long = lenient.issue(GRANT, NOW + 99, Duration::from_secs(3600));
    assert!(lenient.verify(&long.token, NOW + 200).is_ok());
    assert!(lenient.verify(&long.token, until - 1).is_ok());
    assert_eq!(
        lenient.verify(&long.token, until),
        Err(TokenError::UnknownKey)
    );
    assert!(keys.verify(&by_new.token, until - 1).is_ok());
}

#[test]
fn a_published_key_does_not_sign_before_its_turn() {
    let current = key(p256(6), 0, NOW + 1000);
    let next = key(p256(7), NOW + 300, u64::MAX);
    let keys = set(vec![current.clone(), next.clone()]);
    assert_eq!(keys.signing_kid(NOW), current.kid);
    assert_eq!(keys.signing_kid(NOW + 300), next.kid);
    let (doc, _) = keys.jwks(NOW);
    assert!(
        doc.contains(&next.kid) && doc.contains(&current.kid),
        "{doc}"
    );
}

#[test]
fn a_cached_token_is_refused_once_expired() {
    let keys = set(vec![key(ed25519(8), 0, u64::MAX)]);
    let issued = keys.issue(GRANT, NOW, Duration::from_secs(60));
    assert!(keys.verify(&issued.token, NOW).is_ok());
    assert!(keys.verify(&issued.token, NOW + 64).is_ok());
    assert_eq!(
        keys.verify(&issued.token, NOW + 65),
        Err(TokenError::Expired)
    );
}

#[test]
fn replacing_the_keys_forgets_cached_tokens_of_dropped_keys() {
    let old = key(ed25519(9), 0, u64::MAX);
    let keys = set(vec![old]);
    let issued = keys.issue(GRANT, NOW, Duration::from_secs(600));
    assert!(keys.verify(&issued.token, NOW).is_ok());
    assert!(keys.replace(vec![key(ed25519(10), 0, u64::MAX)]));
    assert_eq!(keys.verify(&issued.token, NOW), Err(TokenError::UnknownKey));
}

#[test]
fn a_key_set_without_a_signing_key_is_refused() {
    let mut verify_only = key(ed25519(11), 0, u64::MAX);
    verify_only.signer = None;
    assert!(Keys::new(vec![verify_only.clone()], "i", "a", Duration::ZERO, &[]).is_none());
    let keys = set(vec![key(ed25519(12), 0, u64::MAX)]);
    assert!(!keys.replace(vec![verify_only]));
}

#[test]
fn the_jwks_document_publishes_public_members_only() {
    let keys = set(vec![
        key(ed25519(13), 0, u64::MAX),
        key(p256(13), 0, u64::MAX),
        key(rsa(), 0, u64::MAX),
    ]);
    let (doc, _) = keys.jwks(NOW);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k["kty"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("OKP", "EdDSA"), ("EC", "ES256"), ("RSA", "RS256")]);
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none() && k.get("p").is_none(), "{k}");
    }
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(keys[2]["e"], "AQAB");
}

#[test]
fn a_kid_is_the_rfc7638_thumbprint() {
    // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    let x = URL_SAFE_NO_PAD
        .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        .unwrap();
    let verifier =
        Verifier::EdDsa(ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap());
    assert_eq!(
        verifier.thumbprint().unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}
