//! Asymmetric signing keys through the real binary: a key made in the store on first
//! start, the JWKS document, tokens minted by `portcullis token`, and `portcullis keys
//! rotate` (tests/key_store.rs has replicas, the key-encryption key and imports).

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// BASE_CONFIG signing with `alg` key files instead of an HS256 secret.
fn config(alg: &str) -> String {
    let config = BASE_CONFIG.replace(
        "  audience: api\n",
        &format!("  audience: api\n  algorithm: {alg}\n"),
    );
    assert!(config.contains(alg), "BASE_CONFIG's auth section moved");
    config
}

const NO_SECRET: &[(&str, &str)] = &[("JWT_SECRET", UNSET)];

fn jwks(gw: &Gateway) -> Value {
    let resp = get(gw.addr, "/.well-known/jwks.json", &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    resp.json()
}

fn kids(doc: &Value) -> Vec<String> {
    doc["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// `portcullis token` for the gateway's config, without JWT_SECRET.
fn cli_token(gw: &Gateway, sub: &str) -> String {
    let config = gw.dir.join("gateway.yaml");
    let config = config.to_str().expect("utf-8 path");
    let (code, out, err) = portcullis(
        &["token", "-c", config, "--sub", sub, "--role", "viewer"],
        NO_SECRET,
    );
    assert_eq!(code, 0, "portcullis token: {err}");
    out.trim().to_owned()
}

fn header_of(token: &str) -> Value {
    let header = b64url_decode(token.split('.').next().expect("header")).expect("base64url");
    serde_json::from_slice(&header).expect("header JSON")
}

fn protected(gw: &Gateway, token: &str) -> u16 {
    get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .status
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn an_eddsa_gateway_without_a_secret_publishes_the_key_that_verifies_its_tokens() {
    let echo = Echo::start();
    let gw = Gateway::start(&config("EdDSA"), echo.addr, NO_SECRET);
    let resp = get(gw.addr, "/.well-known/jwks.json", &[]);
    assert_eq!(resp.header("cache-control"), Some("public, max-age=300"));
    let doc = jwks(&gw);
    let keys = doc["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{doc}");
    let jwk = &keys[0];
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
        (
            &Value::from("OKP"),
            &Value::from("Ed25519"),
            &Value::from("EdDSA"),
            &Value::from("sig")
        )
    );
    assert!(jwk.get("d").is_none(), "no private member: {jwk}");
    let kid = jwk["kid"].as_str().expect("kid");
    let x = jwk["x"].as_str().expect("x");
    // The kid is the RFC 7638 thumbprint of the published key.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    assert_eq!(kid, b64url(&sha256(canonical.as_bytes())));

    let token = cli_token(&gw, "user-7");
    let header = header_of(&token);
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("EdDSA"), Some(kid))
    );
    // Verify it as an upstream would, with nothing but the JWKS.
    let public: [u8; 32] = b64url_decode(x).expect("x").try_into().expect("32 bytes");
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("a curve point");
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    let signature: [u8; 64] = b64url_decode(signature)
        .expect("sig")
        .try_into()
        .expect("64 bytes");
    public
        .verify_strict(
            input.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .expect("the published key verifies the CLI's token");

    let resp = get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echoed_header_values(&resp.json(), "x-user-id"), ["user-7"]);

    // The quickstart's key-encryption key, generated beside the SQLite store; no key files.
    assert_eq!(mode(&gw.dir.join("data/key-encryption.key")), 0o600);
    assert!(!gw.dir.join("data/keys").exists());
}

#[test]
fn an_hs256_token_forged_with_the_public_key_as_secret_is_refused() {
    let echo = Echo::start();
    let gw = Gateway::start(&config("EdDSA"), echo.addr, NO_SECRET);
    let doc = jwks(&gw);
    let (kid, x) = (
        doc["keys"][0]["kid"].as_str().expect("kid"),
        doc["keys"][0]["x"].as_str().expect("x"),
    );
    let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#);
    let claims = claims("mallory", "admin", "");
    for secret in [x.as_bytes().to_vec(), b64url_decode(x).expect("x")] {
        let forged = mint_hs256(&secret, &header, &claims);
        let resp = get(
            gw.addr,
            "/api/protected",
            &[("Authorization", &format!("Bearer {forged}"))],
        );
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.json(),
            serde_json::json!({"error": "Invalid or expired token"})
        );
    }
}

#[test]
fn keys_in_the_store_are_reused_on_restart_so_earlier_tokens_still_verify() {
    let echo = Echo::start();
    let dir = fresh_temp_dir();
    let first = Gateway::start_in(dir.clone(), &config("ES256"), echo.addr, NO_SECRET);
    let kid = kids(&jwks(&first));
    let token = cli_token(&first, "user-1");
    assert_eq!(protected(&first, &token), 200);
    drop(first);

    let second = Gateway::start_in(dir.clone(), &config("ES256"), echo.addr, NO_SECRET);
    assert_eq!(kids(&jwks(&second)), kid);
    assert_eq!(jwks(&second)["keys"][0]["crv"], "P-256");
    assert_eq!(protected(&second, &token), 200);
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_rotate_publishes_a_new_signing_key_while_old_tokens_still_verify() {
    let echo = Echo::start();
    let gw = Gateway::start(&config("RS256"), echo.addr, NO_SECRET);
    let before = kids(&jwks(&gw));
    assert_eq!(before.len(), 1);
    assert_eq!(jwks(&gw)["keys"][0]["e"], "AQAB");
    let old_token = cli_token(&gw, "user-1");

    let config = gw.dir.join("gateway.yaml");
    let (code, out, err) = portcullis(
        &["keys", "rotate", "-c", config.to_str().expect("utf-8")],
        NO_SECRET,
    );
    assert_eq!(code, 0, "keys rotate: {err}");
    let new_kid = out
        .lines()
        .find(|l| l.contains(" RS256 next, signs from "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no next key in {out:?}"))
        .to_owned();
    assert_ne!(new_kid, before[0]);
    assert!(
        out.contains(&format!("{} RS256 signing\n", before[0])),
        "{out}"
    );

    // The running gateway publishes the new key within a second or so.
    let mut published = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            published = kids(&jwks(&gw));
            published.len() == 2
        }),
        "JWKS after rotate: {published:?}"
    );
    assert_eq!(published, [before[0].clone(), new_kid.clone()]);
    // It signs a few seconds later, once every replica can have loaded it.
    let mut new_token = String::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            new_token = cli_token(&gw, "user-2");
            header_of(&new_token)["kid"] == new_kid.as_str()
        }),
        "the new key does not sign"
    );
    assert_eq!(protected(&gw, &new_token), 200);
    assert_eq!(protected(&gw, &old_token), 200);
}

#[test]
fn an_hs256_gateway_publishes_no_keys_and_refuses_to_rotate() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let resp = get(gw.addr, "/.well-known/jwks.json", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), r#"{"keys":[]}"#);
    let config = gw.dir.join("gateway.yaml");
    let (code, _, err) = portcullis(
        &["keys", "rotate", "-c", config.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("auth.algorithm is HS256"), "{err}");
}
