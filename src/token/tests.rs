//! Table tests for token verification: each hostile or broken token and the reason it is refused.

use super::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn keys() -> Keys {
    Keys::hs256(
        SECRET,
        "hs256",
        "https://gw.test",
        "api",
        Duration::from_secs(5),
    )
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

/// Signs arbitrary header and claims text with `secret`, so tests can craft what an attacker would.
fn craft(secret: &[u8], header: &str, claims: &str) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

const GOOD_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs256"}"#;

fn claims_with(extra: &str) -> String {
    let base = format!(
        r#""iss":"https://gw.test","aud":"api","sub":"u1","iat":{NOW},"nbf":{NOW},"exp":{},"jti":"j1","role":"viewer""#,
        NOW + 600
    );
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

#[test]
fn an_issued_token_verifies_with_its_claims() {
    let k = keys();
    let grant = Grant {
        sub: "user-1",
        role: "creator",
        workspace: Some("acme"),
        plan: Some("pro"),
        sid: Some("fam-1"),
    };
    let issued = k.issue(grant, NOW, Duration::from_secs(900));
    let id = k.verify(&issued.token, NOW + 10).unwrap();
    assert_eq!(id.sub, "user-1");
    assert_eq!(id.role.as_deref(), Some("creator"));
    assert_eq!(id.workspace.as_deref(), Some("acme"));
    assert_eq!(id.plan.as_deref(), Some("pro"));
    assert_eq!(id.sid.as_deref(), Some("fam-1"));
    assert_eq!(id.jti, issued.jti);
    assert_eq!(id.exp, NOW + 900);
    assert_eq!(issued.expires_at, NOW + 900);
}

#[test]
fn issued_tokens_carry_no_personal_data_and_unique_ids() {
    let k = keys();
    let grant = Grant {
        sub: "u",
        role: "viewer",
        workspace: None,
        plan: None,
        sid: None,
    };
    let a = k.issue(grant, NOW, Duration::from_secs(60));
    let b = k.issue(grant, NOW, Duration::from_secs(60));
    assert_ne!(a.jti, b.jti);
    let payload = a.token.split('.').nth(1).unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(!text.contains("email"), "{text}");
    assert!(
        !text.contains("\"ws\""),
        "unscoped tokens have no ws: {text}"
    );
}

#[test]
fn crafted_tokens_are_refused_for_the_right_reason() {
    let k = keys();
    let h = GOOD_HEADER;
    let ok = claims_with("");
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "wrong secret",
            craft(b"another-secret-another-secret-xx", h, &ok),
            TokenError::Signature,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT","kid":"hs256"}"#),
                b64(&ok)
            ),
            TokenError::Algorithm,
        ),
        (
            "alg None",
            craft(SECRET, r#"{"alg":"None","typ":"JWT","kid":"hs256"}"#, &ok),
            TokenError::Algorithm,
        ),
        (
            "alg hs256 lower",
            craft(SECRET, r#"{"alg":"hs256","typ":"JWT","kid":"hs256"}"#, &ok),
            TokenError::Algorithm,
        ),
        (
            "alg HS512",
            craft(SECRET, r#"{"alg":"HS512","typ":"JWT","kid":"hs256"}"#, &ok),
            TokenError::Algorithm,
        ),
        (
            "alg missing",
            craft(SECRET, r#"{"typ":"JWT","kid":"hs256"}"#, &ok),
            TokenError::Algorithm,
        ),
        (
            "unknown kid",
            craft(SECRET, r#"{"alg":"HS256","typ":"JWT","kid":"other"}"#, &ok),
            TokenError::UnknownKey,
        ),
        (
            "kid traversal",
            craft(
                SECRET,
                r#"{"alg":"HS256","typ":"JWT","kid":"../../dev/null"}"#,
                &ok,
            ),
            TokenError::UnknownKey,
        ),
        (
            "no kid",
            craft(SECRET, r#"{"alg":"HS256","typ":"JWT"}"#, &ok),
            TokenError::UnknownKey,
        ),
        (
            "crit",
            craft(
                SECRET,
                r#"{"alg":"HS256","typ":"JWT","kid":"hs256","crit":["exp"]}"#,
                &ok,
            ),
            TokenError::CriticalHeader,
        ),
        (
            "typ other",
            craft(
                SECRET,
                r#"{"alg":"HS256","typ":"JOSE+JSON","kid":"hs256"}"#,
                &ok,
            ),
            TokenError::Type,
        ),
        (
            "typ missing",
            craft(SECRET, r#"{"alg":"HS256","kid":"hs256"}"#, &ok),
            TokenError::Type,
        ),
        (
            "duplicate alg",
            craft(
                SECRET,
                r#"{"alg":"HS256","alg":"HS256","typ":"JWT","kid":"hs256"}"#,
                &ok,
            ),
            TokenError::Malformed,
        ),
        (
            "duplicate sub",
            craft(SECRET, h, &claims_with(r#""sub":"admin""#)),
            TokenError::Malformed,
        ),
        (
            "string exp",
            craft(
                SECRET,
                h,
                &claims_with("").replace(
                    &format!("\"exp\":{}", NOW + 600),
                    &format!("\"exp\":\"{}\"", NOW + 600),
                ),
            ),
            TokenError::Malformed,
        ),
        (
            "float exp",
            craft(
                SECRET,
                h,
                &claims_with("").replace(
                    &format!("\"exp\":{}", NOW + 600),
                    &format!("\"exp\":{}.5", NOW + 600),
                ),
            ),
            TokenError::Malformed,
        ),
        (
            "expired",
            craft(
                SECRET,
                h,
                &claims_with("").replace(
                    &format!("\"exp\":{}", NOW + 600),
                    &format!("\"exp\":{}", NOW - 6),
                ),
            ),
            TokenError::Expired,
        ),
        (
            "nbf future",
            craft(
                SECRET,
                h,
                &claims_with("")
                    .replace(&format!("\"nbf\":{NOW}"), &format!("\"nbf\":{}", NOW + 60)),
            ),
            TokenError::NotYetValid,
        ),
        (
            "iat future",
            craft(
                SECRET,
                h,
                &claims_with("")
                    .replace(&format!("\"iat\":{NOW}"), &format!("\"iat\":{}", NOW + 60)),
            ),
            TokenError::IssuedInFuture,
        ),
        (
            "lifetime over access_ttl + leeway",
            craft(
                SECRET,
                h,
                &claims_with("").replace(
                    &format!("\"exp\":{}", NOW + 600),
                    &format!("\"exp\":{}", NOW + 15 * 60 + 5 + 1),
                ),
            ),
            TokenError::Lifetime,
        ),
        (
            "wrong issuer",
            craft(
                SECRET,
                h,
                &claims_with("").replace("https://gw.test", "https://evil.test"),
            ),
            TokenError::Issuer,
        ),
        (
            "wrong audience",
            craft(
                SECRET,
                h,
                &claims_with("").replace("\"aud\":\"api\"", "\"aud\":\"web\""),
            ),
            TokenError::Audience,
        ),
        (
            "missing exp",
            craft(
                SECRET,
                h,
                &claims_with("").replace(&format!(",\"exp\":{}", NOW + 600), ""),
            ),
            TokenError::MissingClaim("exp"),
        ),
        (
            "missing jti",
            craft(SECRET, h, &claims_with("").replace(",\"jti\":\"j1\"", "")),
            TokenError::MissingClaim("jti"),
        ),
        (
            "two parts",
            format!("{}.{}", b64(h), b64(&ok)),
            TokenError::Malformed,
        ),
        (
            "four parts",
            format!("{}.x", craft(SECRET, h, &ok)),
            TokenError::Malformed,
        ),
        ("garbage", "not.a.jwt".to_owned(), TokenError::Malformed),
        ("many dots", ".".repeat(100_000), TokenError::Malformed),
        (
            "padded",
            {
                let t = craft(SECRET, h, &ok);
                format!("{t}=")
            },
            TokenError::Malformed,
        ),
        (
            "standard alphabet",
            craft(SECRET, h, &ok).replace('-', "+").replace('_', "/") + "+",
            TokenError::Malformed,
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(k.verify(&token, NOW), Err(want), "case {name}: {token}");
    }
}

#[test]
fn leeway_is_applied_to_exp_and_nbf() {
    let k = keys();
    let expired_3s_ago = claims_with("").replace(
        &format!("\"exp\":{}", NOW + 600),
        &format!("\"exp\":{}", NOW - 3),
    );
    assert!(k
        .verify(&craft(SECRET, GOOD_HEADER, &expired_3s_ago), NOW)
        .is_ok());
    let nbf_in_4s =
        claims_with("").replace(&format!("\"nbf\":{NOW}"), &format!("\"nbf\":{}", NOW + 4));
    assert!(k
        .verify(&craft(SECRET, GOOD_HEADER, &nbf_in_4s), NOW)
        .is_ok());
}

#[test]
fn a_lifetime_up_to_access_ttl_plus_leeway_is_accepted_and_no_longer() {
    let mut k = keys();
    k.set_max_lifetime(Duration::from_secs(300));
    let living = |seconds: u64| {
        let claims = claims_with("").replace(
            &format!("\"exp\":{}", NOW + 600),
            &format!("\"exp\":{}", NOW + seconds),
        );
        k.verify(&craft(SECRET, GOOD_HEADER, &claims), NOW)
            .map(|_| ())
    };
    assert_eq!(living(300), Ok(()));
    assert_eq!(living(305), Ok(()), "leeway");
    assert_eq!(living(306), Err(TokenError::Lifetime));
    assert_eq!(living(7200), Err(TokenError::Lifetime));
}

#[test]
fn audience_may_be_a_list_and_foreign_headers_are_ignored() {
    let k = keys();
    let claims = claims_with("").replace("\"aud\":\"api\"", "\"aud\":[\"web\",\"api\"]");
    let header = r#"{"alg":"HS256","typ":"JWT","kid":"hs256","jku":"http://127.0.0.1:1/keys"}"#;
    assert!(k.verify(&craft(SECRET, header, &claims), NOW).is_ok());
}

#[test]
fn an_oversized_token_is_refused_before_decoding() {
    let k = keys();
    let token = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(k.verify(&token, NOW), Err(TokenError::Malformed));
}

#[test]
fn the_unrolled_id_encoding_is_base64url_without_padding() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    // Every byte value in every position, and the edges of the alphabet.
    let mut inputs: Vec<[u8; 16]> = vec![[0; 16], [0xff; 16], [0xfb; 16], [0x3e; 16]];
    for value in 0..=255u8 {
        for position in 0..16 {
            let mut bytes = [0x5a; 16];
            bytes[position] = value;
            inputs.push(bytes);
        }
    }
    for bytes in inputs {
        assert_eq!(super::base64url_16(&bytes), URL_SAFE_NO_PAD.encode(bytes));
    }
    assert_eq!(random_id().len(), 22);
    assert_ne!(random_id(), random_id());
}
