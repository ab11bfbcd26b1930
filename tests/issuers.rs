//! Trusted external issuers through the real binary: a small JWKS server on
//! 127.0.0.1 stands in for an identity provider, with its key rollover and its outage.

mod common;

use common::*;
use portcullis::token::Signer;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDP: &str = "https://idp.test/";
const AUDIENCE: &str = "https://api.test";

/// What the stand-in IdP answers at its JWKS URL.
#[derive(Clone)]
enum Answer {
    Keys(String),
    Status(u16),
}

/// A JWKS server on 127.0.0.1 that counts the requests it gets and notes when.
struct Idp {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
    times: Arc<Mutex<Vec<Instant>>>,
}

impl Idp {
    fn start(keys: &[(&str, &Signer)]) -> Idp {
        Idp::serve(
            TcpListener::bind("127.0.0.1:0").expect("bind the IdP"),
            keys,
        )
    }

    fn serve(listener: TcpListener, keys: &[(&str, &Signer)]) -> Idp {
        let idp = Idp {
            addr: listener.local_addr().expect("IdP address"),
            answer: Arc::new(Mutex::new(Answer::Keys(jwks(keys)))),
            hits: Arc::new(AtomicUsize::new(0)),
            times: Arc::default(),
        };
        let (answer, hits, times) = (idp.answer.clone(), idp.hits.clone(), idp.times.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let answer = answer.lock().expect("answer lock").clone();
                times.lock().expect("times lock").push(Instant::now());
                hits.fetch_add(1, Ordering::SeqCst);
                respond(conn, answer);
            }
        });
        idp
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().expect("answer lock") = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// When each request arrived.
    fn times(&self) -> Vec<Instant> {
        self.times.lock().expect("times lock").clone()
    }
}

fn respond(mut conn: TcpStream, answer: Answer) {
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let (status, body) = match answer {
        Answer::Keys(doc) => (200, doc),
        Answer::Status(code) => (code, "{}".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

/// A JWKS document publishing the public halves of `keys`.
fn jwks(keys: &[(&str, &Signer)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, signer)| {
            let verifier = signer.verifier();
            let mut jwk = serde_json::Map::new();
            for (name, value) in verifier.public_jwk().expect("a public key") {
                jwk.insert(name.into(), value.into());
            }
            jwk.insert("kid".into(), (*kid).into());
            jwk.insert("alg".into(), verifier.alg().into());
            jwk.insert("use".into(), "sig".into());
            Value::Object(jwk)
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn ed25519(seed: u8) -> Signer {
    Signer::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn p256(seed: u8) -> Signer {
    Signer::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("a P-256 scalar"))
}

fn rsa2048() -> Signer {
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("an RSA key");
    Signer::Rs256(rsa::pkcs1v15::SigningKey::new(key))
}

/// A token as an IdP issues it: no `nbf`, no `jti`, no `typ` (as Okta's), roles
/// inside `realm_access` (as Keycloak's), other claims of any shape.
fn idp_token(signer: &Signer, kid: &str, roles: &[&str], extra_header: &str) -> String {
    let now = now();
    let claims = serde_json::json!({
        "iss": IDP, "aud": [AUDIENCE, "other"], "sub": "idp|alice",
        "iat": now, "exp": now + 300, "realm_access": { "roles": roles },
        // Shaped unlike the gateway's own claims; only role_claim decides roles.
        "role": ["idp-internal"], "ws": { "id": 7 },
    });
    let header = format!(
        r#"{{"alg":"{}","kid":"{kid}"{extra_header}}}"#,
        signer.verifier().alg()
    );
    sign(signer, &header, &claims.to_string())
}

fn sign(signer: &Signer, header: &str, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature))
}

/// BASE_CONFIG trusting the IdP at `url`.
fn config(url: &str, refetch: &str, refresh: &str) -> String {
    with_issuer(&format!(
        "{{ issuer: \"{IDP}\", jwks_url: \"{url}\", audience: \"{AUDIENCE}\", role_claim: realm_access.roles, refetch_interval: {refetch}, jwks_refresh: {refresh} }}"
    ))
}

/// BASE_CONFIG trusting the IdP at `url` with the default fetch settings.
fn default_config(url: &str) -> String {
    with_issuer(&format!(
        "{{ issuer: \"{IDP}\", jwks_url: \"{url}\", audience: \"{AUDIENCE}\", role_claim: realm_access.roles }}"
    ))
}

fn with_issuer(issuer: &str) -> String {
    let trusted = format!("  trusted_issuers:\n    - {issuer}\n");
    let config = BASE_CONFIG.replace("  audience: api\n", &format!("  audience: api\n{trusted}"));
    assert!(
        config.contains("trusted_issuers"),
        "BASE_CONFIG's auth section moved"
    );
    config
}

fn status(gw: &Gateway, path: &str, token: &str) -> u16 {
    get(
        gw.addr,
        path,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .status
}

fn fetches(gw: &Gateway, result: &str) -> f64 {
    let series = format!("portcullis_jwks_fetches_total{{issuer=\"{IDP}\",result=\"{result}\"}}");
    metric(gw.admin_addr, &series).unwrap_or(0.0)
}

/// Waits until the gateway has finished `n` fetches, good or bad.
fn wait_fetches(gw: &Gateway, n: f64) {
    let done = eventually(Duration::from_secs(10), || {
        fetches(gw, "ok") + fetches(gw, "error") >= n
    });
    assert!(
        done,
        "{n} JWKS fetches did not happen; stderr:\n{}",
        gw.stderr_text()
    );
}

#[test]
fn idp_tokens_of_each_algorithm_are_accepted_with_roles_from_the_named_claim() {
    let (ed, ec, rs) = (ed25519(1), p256(2), rsa2048());
    let idp = Idp::start(&[("ed", &ed), ("ec", &ec), ("rs", &rs)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "1s", "10m"), echo.addr, &[]);

    for (kid, signer) in [("ed", &ed), ("ec", &ec), ("rs", &rs)] {
        let admin = idp_token(signer, kid, &["viewer", "admin"], "");
        let r = get(
            gw.addr,
            "/api/admin/reports",
            &[("Authorization", &format!("Bearer {admin}"))],
        );
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
        let seen = r.json();
        assert_eq!(
            echoed_header_values(&seen, "x-user-id"),
            ["idp|alice"],
            "{kid}"
        );
        assert_eq!(
            echoed_header_values(&seen, "x-user-role"),
            ["viewer,admin"],
            "{kid}"
        );
        let viewer = idp_token(signer, kid, &["viewer"], "");
        assert_eq!(status(&gw, "/api/admin/reports", &viewer), 403, "{kid}");
        assert_eq!(status(&gw, "/api/protected", &viewer), 200, "{kid}");
    }
    // The gateway's own tokens keep working beside the IdP's.
    assert_eq!(
        status(&gw, "/api/protected", &token("u1", "viewer", "")),
        200
    );
}

#[test]
fn idp_tokens_with_wrong_claims_or_forged_signatures_are_refused() {
    let (ed, rs) = (ed25519(3), rsa2048());
    let idp = Idp::start(&[("ed", &ed), ("rs", &rs)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "1s", "10m"), echo.addr, &[]);
    let now = now();
    let with = |claims: Value| {
        sign(
            &ed,
            r#"{"alg":"EdDSA","kid":"ed","typ":"JWT"}"#,
            &claims.to_string(),
        )
    };
    let base = serde_json::json!({"iss": IDP, "aud": AUDIENCE, "sub": "s", "exp": now + 60});
    assert_eq!(status(&gw, "/api/protected", &with(base.clone())), 200);
    let mut cases = Vec::new();
    for (name, change) in [
        ("audience", serde_json::json!({"aud": "api"})),
        ("expired", serde_json::json!({"exp": now - 60})),
        ("not yet valid", serde_json::json!({"nbf": now + 120})),
        (
            "issued in the future",
            serde_json::json!({"iat": now + 120}),
        ),
        (
            "string exp",
            serde_json::json!({"exp": (now + 60).to_string()}),
        ),
        ("no sub", serde_json::json!({"sub": null})),
    ] {
        let mut claims = base.clone();
        for (k, v) in change.as_object().expect("an object") {
            match v {
                Value::Null => claims.as_object_mut().expect("an object").remove(k),
                v => claims
                    .as_object_mut()
                    .expect("an object")
                    .insert(k.clone(), v.clone()),
            };
        }
        cases.push((name, with(claims)));
    }
    // HS256 keyed with the RSA key's public JWK, the classic algorithm confusion.
    let public = jwks(&[("rs", &rs)]);
    let claims = base.to_string();
    cases.push((
        "HS256 with the public key",
        mint_hs256(
            public.as_bytes(),
            r#"{"alg":"HS256","kid":"rs","typ":"JWT"}"#,
            &claims,
        ),
    ));
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","kid":"ed"}"#),
            b64url(claims.as_bytes())
        ),
    ));
    cases.push((
        "wrong key",
        sign(&ed25519(9), r#"{"alg":"EdDSA","kid":"ed"}"#, &claims),
    ));
    cases.push((
        "foreign typ",
        sign(
            &ed,
            r#"{"alg":"EdDSA","kid":"ed","typ":"dpop+jwt"}"#,
            &claims,
        ),
    ));
    for (name, t) in &cases {
        let r = get(
            gw.addr,
            "/api/protected",
            &[("Authorization", &format!("Bearer {t}"))],
        );
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(error_of(&r), "Invalid or expired token", "{name}");
    }
    // The auth module's own endpoints take the gateway's tokens only.
    let good = idp_token(&ed, "ed", &["admin"], "");
    assert_eq!(status(&gw, "/api/auth/me", &good), 401);
    assert_eq!(
        echo.wait_seen(1).len(),
        1,
        "only the one good token reached the upstream"
    );
}

#[test]
fn a_key_rolled_in_just_after_start_up_is_fetched_on_first_sight_and_unknown_kids_then_wait_the_interval(
) {
    let (k1, k2) = (ed25519(11), ed25519(12));
    let idp = Idp::start(&[("k1", &k1)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "3s", "1h"), echo.addr, &[]);
    wait_fetches(&gw, 1.0);
    let old = idp_token(&k1, "k1", &["viewer"], "");
    assert_eq!(status(&gw, "/api/protected", &old), 200);
    assert_eq!(idp.hits(), 1, "a known kid needs no fetch");

    // Well inside refetch_interval of the start-up fetch, which does not count against it.
    idp.set(Answer::Keys(jwks(&[("k1", &k1), ("k2", &k2)])));
    let new = idp_token(&k2, "k2", &["viewer"], "");
    assert_eq!(
        status(&gw, "/api/protected", &new),
        200,
        "the new key was fetched"
    );
    assert_eq!(idp.hits(), 2);
    let refetched = Instant::now();

    // A flood of unknown kids right after a fetch causes none.
    let ghost = idp_token(&k2, "ghost", &["viewer"], "");
    for _ in 0..20 {
        assert_eq!(status(&gw, "/api/protected", &ghost), 401);
    }
    assert!(
        refetched.elapsed() < Duration::from_secs(3),
        "the loop was too slow to tell"
    );
    assert_eq!(
        idp.hits(),
        2,
        "unknown kids within the interval fetched again"
    );

    // After the interval one more fetch happens; it finds k1 retired.
    idp.set(Answer::Keys(jwks(&[("k2", &k2)])));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(refetched.elapsed()));
    assert_eq!(status(&gw, "/api/protected", &ghost), 401);
    assert_eq!(idp.hits(), 3);
    assert_eq!(
        status(&gw, "/api/protected", &old),
        401,
        "a key the IdP dropped stops verifying"
    );
    assert_eq!(status(&gw, "/api/protected", &new), 200);
}

#[test]
fn a_key_rolled_in_right_after_an_unknown_kid_fetch_is_accepted_within_15_s_with_default_settings()
{
    let (k1, k2) = (ed25519(61), ed25519(62));
    let idp = Idp::start(&[("k1", &k1)]);
    let echo = Echo::start();
    let gw = Gateway::start(&default_config(&idp.url()), echo.addr, &[]);
    wait_fetches(&gw, 1.0);
    // The worst moment for a rollover: an unknown kid has just caused a fetch.
    let ghost = idp_token(&k1, "ghost", &["viewer"], "");
    assert_eq!(status(&gw, "/api/protected", &ghost), 401);
    assert_eq!(idp.hits(), 2);

    idp.set(Answer::Keys(jwks(&[("k1", &k1), ("k2", &k2)])));
    let new = idp_token(&k2, "k2", &["viewer"], "");
    let first_use = Instant::now();
    assert_eq!(
        status(&gw, "/api/protected", &new),
        401,
        "inside the interval: no fetch yet"
    );
    let mut tries = 1;
    let accepted = eventually(Duration::from_secs(20), || {
        tries += 1;
        std::thread::sleep(Duration::from_millis(200));
        status(&gw, "/api/protected", &new) == 200
    });
    let took = first_use.elapsed();
    assert!(accepted, "the new key was never accepted");
    assert!(took < Duration::from_secs(15), "accepted after {took:?}");
    assert_eq!(
        idp.hits(),
        3,
        "{tries} tries of the new kid caused one fetch, at the interval's end"
    );
    let times = idp.times();
    let gap = times[2] - times[1];
    assert!(
        gap >= Duration::from_millis(9_900) && gap < Duration::from_secs(12),
        "the waiting kid's fetch came {gap:?} after the last unknown-kid fetch, not at the 10 s default"
    );
}

#[test]
fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_refetch_interval() {
    let k1 = ed25519(71);
    let idp = Idp::start(&[("k1", &k1)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "2s", "1h"), echo.addr, &[]);
    wait_fetches(&gw, 1.0);
    let flood_start = Instant::now();
    let flood = Duration::from_millis(5_000);
    let gw_addr = gw.addr;
    let floods: Vec<_> = (0..4)
        .map(|thread| {
            let k1 = ed25519(71);
            std::thread::spawn(move || {
                let mut sent = 0;
                while flood_start.elapsed() < flood {
                    let ghost = idp_token(&k1, &format!("ghost-{thread}-{sent}"), &["viewer"], "");
                    let auth = format!("Bearer {ghost}");
                    let r = get(gw_addr, "/api/protected", &[("Authorization", &auth)]);
                    assert_eq!(r.status, 401);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let sent: usize = floods
        .into_iter()
        .map(|t| t.join().expect("a flood thread"))
        .sum();
    let during: Vec<Instant> = idp
        .times()
        .into_iter()
        .filter(|t| *t >= flood_start && *t < flood_start + flood)
        .collect();
    // 0 s, 2 s and 4 s into the flood: one fetch when it starts, then one as each
    // interval ends, for the unknown kids that came inside it.
    assert_eq!(during.len(), 3, "{sent} unknown kids caused {during:?}");
    for pair in during.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(1_950), "fetches {gap:?} apart");
    }
}

#[test]
fn during_an_idp_outage_the_last_keys_keep_working_across_a_reload() {
    let k1 = ed25519(21);
    let idp = Idp::start(&[("k1", &k1)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "1s", "1s"), echo.addr, &[]);
    wait_fetches(&gw, 1.0);
    let t = idp_token(&k1, "k1", &["viewer"], "");
    assert_eq!(status(&gw, "/api/protected", &t), 200);

    idp.set(Answer::Status(500));
    let errors = eventually(Duration::from_secs(10), || fetches(&gw, "error") >= 2.0);
    assert!(errors, "the refresh did not run during the outage");
    assert_eq!(
        status(&gw, "/api/protected", &t),
        200,
        "the last good keys were dropped"
    );
    let ghost = idp_token(&k1, "ghost", &["viewer"], "");
    assert_eq!(
        status(&gw, "/api/protected", &ghost),
        401,
        "known keys: an unknown kid is 401"
    );

    // A reload with the same issuer settings keeps the keys it has.
    gw.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || {
        metric(
            gw.admin_addr,
            r#"portcullis_config_reloads_total{result="success"}"#,
        ) == Some(1.0)
    });
    assert!(
        reloaded,
        "reload not counted; stderr:\n{}",
        gw.stderr_text()
    );
    assert_eq!(
        status(&gw, "/api/protected", &t),
        200,
        "a reload lost the fetched keys"
    );
}

#[test]
fn an_issuer_whose_keys_were_never_fetched_gets_503_until_they_are() {
    let k1 = ed25519(31);
    let port = TcpListener::bind("127.0.0.1:0").expect("bind a port to reserve");
    let addr = port.local_addr().expect("reserved address");
    drop(port); // nothing listens there: the IdP is down from the start
    let url = format!("http://{addr}/.well-known/jwks.json");
    let echo = Echo::start();
    let gw = Gateway::start(&config(&url, "1s", "10m"), echo.addr, &[]);
    let t = idp_token(&k1, "k1", &["viewer"], "");
    let r = get(
        gw.addr,
        "/api/protected",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(error_of(&r), "Service unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(fetches(&gw, "error") >= 1.0);
    // The gateway's own tokens do not depend on the IdP.
    assert_eq!(
        status(&gw, "/api/protected", &token("u1", "viewer", "")),
        200
    );

    let _idp = Idp::serve(
        TcpListener::bind(addr).expect("rebind the IdP port"),
        &[("k1", &k1)],
    );
    let back = eventually(Duration::from_secs(10), || {
        status(&gw, "/api/protected", &t) == 200
    });
    assert!(back, "the IdP came back but its tokens are still refused");
    // The echo's log is read on a thread: wait for the second line rather than race it.
    assert_eq!(
        echo.wait_seen(2).len(),
        2,
        "only the two 200s reached the upstream"
    );
}

#[test]
fn key_urls_in_a_token_never_make_the_gateway_fetch() {
    let k1 = ed25519(41);
    let idp = Idp::start(&[("k1", &k1)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "1s", "10m"), echo.addr, &[]);
    wait_fetches(&gw, 1.0);
    let bait = TcpListener::bind("127.0.0.1:0").expect("bind the bait");
    bait.set_nonblocking(true).expect("nonblocking bait");
    let url = format!(
        "http://{}/keys.json",
        bait.local_addr().expect("bait address")
    );
    // Signed by the configured key: accepted, and the URL in it is not touched.
    for member in ["jku", "x5u"] {
        let t = idp_token(&k1, "k1", &["viewer"], &format!(r#","{member}":"{url}""#));
        assert_eq!(status(&gw, "/api/protected", &t), 200, "{member}");
    }
    // Signed by the attacker's key, embedded or linked: refused.
    let attacker = ed25519(42);
    let embedded = format!(
        r#","jwk":{}"#,
        jwks(&[("evil", &attacker)])
            .trim_start_matches(r#"{"keys":["#)
            .trim_end_matches("]}")
    );
    let t = idp_token(&attacker, "evil", &["viewer"], &embedded);
    assert_eq!(status(&gw, "/api/protected", &t), 401);
    let t = idp_token(
        &attacker,
        "evil",
        &["viewer"],
        &format!(r#","jku":"{url}","x5c":["AAAA"]"#),
    );
    assert_eq!(status(&gw, "/api/protected", &t), 401);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        bait.accept().is_err(),
        "the gateway connected to a URL named in a token"
    );
}

#[test]
fn es256_signatures_with_r_or_s_zero_are_refused() {
    let ec = p256(51);
    let idp = Idp::start(&[("ec", &ec)]);
    let echo = Echo::start();
    let gw = Gateway::start(&config(&idp.url(), "1s", "10m"), echo.addr, &[]);
    let good = idp_token(&ec, "ec", &["viewer"], "");
    assert_eq!(status(&gw, "/api/protected", &good), 200);
    let (input, sig) = good.rsplit_once('.').expect("a signature part");
    let sig = b64url_decode(sig).expect("base64url signature");
    assert_eq!(sig.len(), 64, "r || s, 32 bytes each");
    let zero = [0u8; 32];
    for (name, forged) in [
        ("r = s = 0", [zero, zero].concat()),
        ("r = 0", [&zero[..], &sig[32..]].concat()),
        ("s = 0", [&sig[..32], &zero[..]].concat()),
    ] {
        let t = format!("{input}.{}", b64url(&forged));
        assert_eq!(status(&gw, "/api/protected", &t), 401, "{name}");
    }
    assert_eq!(
        echo.wait_seen(1).len(),
        1,
        "only the good token reached the upstream"
    );
}

/// RFC 8725 §3.8: a `sub` is unique only within its issuer. The upstream is told
/// which issuer vouched, and `owner:` counts only the gateway's own users unless
/// a route names other issuers.
#[test]
fn a_trusted_issuers_sub_equal_to_a_local_id_owns_nothing_unless_the_route_names_it() {
    let ed = ed25519(5);
    let idp = Idp::start(&[("ed", &ed)]);
    let echo = Echo::start();
    let foreign = {
        let now = now();
        let claims = serde_json::json!({"iss": IDP, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 60});
        sign(&ed, r#"{"alg":"EdDSA","kid":"ed"}"#, &claims.to_string())
    };
    let own = token("u1", "viewer", "");
    let path = "/api/users/u1/files";
    let seen_issuer = |gw: &Gateway, token: &str| {
        let r = get(
            gw.addr,
            path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("X-User-Issuer", "https://spoofed.test/"),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        echoed_header_values(&r.json(), "x-user-issuer")
    };

    let gw = Gateway::start(&config(&idp.url(), "1s", "10m"), echo.addr, &[]);
    assert_eq!(seen_issuer(&gw, &own), ["https://gw.test"]);
    assert_eq!(
        status(&gw, path, &foreign),
        403,
        "the IdP's u1 is not our u1"
    );
    // The IdP's identity still passes rules that are not about ownership.
    assert_eq!(status(&gw, "/api/protected", &foreign), 200);
    drop(gw);

    let named = config(&idp.url(), "1s", "10m").replace(
        "owner: user }",
        &format!("owner: user, owner_issuers: [\"{IDP}\"] }}"),
    );
    assert!(
        named.contains("owner_issuers"),
        "BASE_CONFIG's owner route moved"
    );
    let gw = Gateway::start(&named, echo.addr, &[]);
    assert_eq!(seen_issuer(&gw, &foreign), [IDP]);
    assert_eq!(seen_issuer(&gw, &own), ["https://gw.test"]);
}
