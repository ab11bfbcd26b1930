//! Micro-benchmarks of the per-request stages: path normalization, route
//! matching, token verification and the identity-header rewrite. Run with
//! `cargo bench`; CI only builds them (`cargo bench --no-run`). Throughput is
//! judged by ../shared/bench, not here: these are for finding regressions.

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use portcullis::authn::Identity;
use portcullis::config::IdentityHeaders;
use portcullis::http1::Request;
use portcullis::identity_headers;
use portcullis::route::{normalize, MethodSet, Pattern, RouteTable};
use portcullis::token::{Grant, Key, Keys, Signer};
use std::hint::black_box;
use std::time::Duration;

fn table() -> RouteTable {
    let routes = [
        ("/api/auth/**", MethodSet::any()),
        ("/health", MethodSet::any()),
        ("/api/protected", MethodSet::any()),
        ("/api/admin/**", MethodSet::any()),
        ("/api/browse/**", MethodSet::any()),
        ("/api/users/{user}/**", MethodSet::any()),
        ("/api/workspaces/{ws}/**", MethodSet::any()),
        ("/api/reports/**", MethodSet::any()),
        ("/api/upload/**", MethodSet::any()),
    ];
    RouteTable::new(
        routes
            .iter()
            .map(|(p, m)| (Pattern::parse(p).expect("valid pattern"), m.clone()))
            .collect(),
    )
}

fn stages(c: &mut Criterion) {
    c.bench_function("normalize/plain", |b| {
        b.iter(|| normalize(black_box("/api/upload")))
    });
    c.bench_function("normalize/tricky", |b| {
        b.iter(|| normalize(black_box("/api//admin/./x/../users/%7Ebob/files")))
    });

    let t = table();
    c.bench_function("match/last_of_nine", |b| {
        b.iter(|| {
            t.find(black_box(&Method::GET), black_box("/api/upload"))
                .map(|m| m.index)
        })
    });
    c.bench_function("match/capture", |b| {
        b.iter(|| {
            t.find(
                black_box(&Method::GET),
                black_box("/api/users/u-42/files/1"),
            )
            .map(|m| m.index)
        })
    });

    let keys = Keys::hs256(
        b"0123456789abcdef0123456789abcdef",
        "hs256",
        "iss",
        "api",
        Duration::from_secs(5),
    );
    let grant = Grant {
        sub: "user-42",
        role: "creator",
        workspace: None,
        plan: None,
        sid: None,
    };
    let now = portcullis::clock::now();
    let token = keys.issue(grant, now, Duration::from_secs(900)).token;
    c.bench_function("verify/hs256", |b| {
        b.iter(|| keys.verify(black_box(&token), now).is_ok())
    });
    let mut uncached = Keys::hs256(
        b"0123456789abcdef0123456789abcdef",
        "hs256",
        "iss",
        "api",
        Duration::from_secs(5),
    );
    uncached.set_cache(false);
    c.bench_function("verify/hs256_uncached", |b| {
        b.iter(|| uncached.verify(black_box(&token), now).is_ok())
    });
    for (name, signer) in asymmetric_signers() {
        for cache in [false, true] {
            let key = Key {
                kid: "k".into(),
                verifier: signer.verifier(),
                signer: Some(signer.clone()),
                active_from: 0,
                verify_until: u64::MAX,
            };
            let mut keys = Keys::new(vec![key], "iss", "api", Duration::from_secs(5), &[0; 32])
                .expect("a signing key");
            keys.set_cache(cache);
            let token = keys.issue(grant, now, Duration::from_secs(900)).token;
            let label = if cache { "" } else { "_uncached" };
            c.bench_function(&format!("verify/{name}{label}"), |b| {
                b.iter(|| keys.verify(black_box(&token), now).is_ok())
            });
        }
    }
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    c.bench_function("verify/hs256_bad_signature", |b| {
        b.iter(|| keys.verify(black_box(&forged), now).is_err())
    });

    let names = IdentityHeaders::default();
    let id = Identity {
        sub: "user-42".into(),
        more_roles: Vec::new(),
        external: None,
        pat: None,
        role: Some("creator".into()),
        workspace: None,
        plan: None,
        jti: "j".into(),
        sid: None,
        iat: now,
        exp: now + 900,
    };
    const HEAD: &[u8] = b"GET /api/upload HTTP/1.1\r\nhost: 127.0.0.1\r\n\
        authorization: Bearer x\r\nx-user-id: spoofed\r\n\r\n";
    c.bench_function("identity_headers/parse_and_rewrite", |b| {
        b.iter(|| {
            let mut buf = bytes::BytesMut::from(black_box(HEAD));
            let mut req = Request::parse(&mut buf).ok().flatten().expect("a head");
            identity_headers::sanitize(&mut req, &names);
            let mut added = Vec::with_capacity(64);
            identity_headers::inject(&mut added, &names, &id, "https://bench.test");
            (req, added)
        })
    });
}

/// One key of each asymmetric algorithm, built from fixed bytes (RSA: generated once).
fn asymmetric_signers() -> Vec<(&'static str, Signer)> {
    let rsa = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("an RSA key");
    vec![
        (
            "eddsa",
            Signer::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        ),
        (
            "es256",
            Signer::Es256(p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a scalar")),
        ),
        ("rs256", Signer::Rs256(rsa::pkcs1v15::SigningKey::new(rsa))),
    ]
}

criterion_group!(benches, stages);
criterion_main!(benches);
