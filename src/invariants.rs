//! Properties the security-critical stages must hold for ANY input, shared by
//! the `cargo fuzz` targets in `fuzz/` and by the regression test that replays
//! their seed corpora in `cargo test` (`tests/invariants.rs`). Each function
//! panics when its property is violated; that panic is what a fuzzer reports.

mod http1;

pub use http1::{chunked_decoding, request_head_framing, request_round_trip, upstream_answer_head};

use crate::authn::Identity;
use crate::config::IdentityHeaders;
use crate::http1::Request;
use crate::identity_headers;
use crate::route::{normalize, MethodSet, Pattern, RouteTable};
use crate::token::{self, Keys};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderName, Method};
use std::path::Path;
use std::time::Duration;

/// The secret the token target verifies with; seeds may be signed with it.
pub const FUZZ_SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";

/// Verification never panics, and whatever it accepts carries the claims
/// verification promises.
pub fn token_verification(input: &[u8]) {
    let keys = Keys::hs256(
        FUZZ_SECRET,
        "hs256",
        "https://gw.test",
        "api",
        Duration::from_secs(5),
    );
    // A trusted issuer's claims are read before its keys are chosen: that
    // reader must hold on any bytes, raw or inside a token.
    foreign_claims_hold(input);
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Some(payload) = text
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
    {
        foreign_claims_hold(&payload);
    }
    let _ = token::claimed_issuer(text);
    if let Ok(id) = keys.verify(text, 1_800_000_000) {
        assert!(
            !id.sub.is_empty() && !id.jti.is_empty(),
            "accepted a token without sub/jti"
        );
        assert!(id.exp + 5 > 1_800_000_000, "accepted an expired token");
    }
}

/// Parsing never panics, and roles found at a path are the strings there.
fn foreign_claims_hold(bytes: &[u8]) {
    for claim in ["realm_access.roles", "role"] {
        if let Ok(c) = token::json::foreign_claims(bytes, claim) {
            assert!(c.roles.len() <= bytes.len(), "more roles than bytes");
        }
    }
}

fn table() -> RouteTable {
    let routes = [
        ("/api/admin/**", MethodSet::any()),
        ("/api/users/{user}/**", MethodSet::any()),
        ("/api/*/public", MethodSet::any()),
        (
            "/api/items/{id}",
            MethodSet::parse_list(["GET"]).unwrap_or(MethodSet::any()),
        ),
        ("/", MethodSet::any()),
    ];
    RouteTable::new(
        routes
            .iter()
            .filter_map(|(p, m)| Some((Pattern::parse(p).ok()?, m.clone())))
            .collect(),
    )
}

/// Normalizing twice changes nothing; a normalized path is plain ASCII with
/// no dot or empty segments; and the routing decision for a path equals the
/// decision for its normalized form.
pub fn path_normalization(input: &[u8]) {
    let Ok(raw) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(once) = normalize(raw) else { return };
    assert_eq!(
        normalize(&once).as_deref(),
        Ok(once.as_str()),
        "not idempotent for {raw:?}"
    );
    assert!(once.is_ascii() && once.starts_with('/'), "{once:?}");
    assert!(
        !once.split('/').any(|s| s == "." || s == ".."),
        "dot segment survived: {once:?}"
    );
    assert!(!once.contains("//"), "empty segment survived: {once:?}");
    let t = table();
    let decide = |p: &str| t.find(&Method::GET, p).map(|m| m.index);
    assert_eq!(decide(&once), decide(&normalize(&once).unwrap_or_default()));
}

/// After sanitizing, no identity or rewrite header the client sent survives,
/// whatever the names, values and `Connection` tokens were. Input: lines of
/// `name: value`.
pub fn header_sanitizing(input: &[u8]) {
    let names = IdentityHeaders::default();
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        // Only lines that are fields: anything else would not reach sanitizing.
        if HeaderName::from_bytes(name).is_err()
            || http::HeaderValue::from_bytes(value).is_err()
            || value.contains(&b'\r')
        {
            continue;
        }
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let Ok(Some(mut req)) = Request::parse(&mut bytes::BytesMut::from(&head[..])) else {
        return;
    };
    identity_headers::sanitize(&mut req, &names);
    for (name, _) in req.fields() {
        let folded = String::from_utf8_lossy(name)
            .to_ascii_lowercase()
            .replace(['_', '.'], "-");
        assert!(
            ![
                "x-user-id",
                "x-user-role",
                "x-workspace-id",
                "x-user-plan",
                "x-user-issuer",
                "x-http-method-override",
                "forwarded"
            ]
            .contains(&folded.as_str()),
            "{folded} survived sanitizing"
        );
    }
    let id = Identity::with_role("u", "r");
    let mut added = Vec::new();
    identity_headers::inject(&mut added, &names, &id, "https://gw.test");
    let injected = added
        .split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"x-user-id: "))
        .count();
    assert_eq!(
        injected + req.all("x-user-id").count(),
        1,
        "exactly one X-User-Id after injection"
    );
}

/// Loading any text as gateway.yaml returns a config or errors, never panics,
/// and every error names the file.
pub fn config_loading(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let path = Path::new("/fuzz/gateway.yaml");
    if let Err(errors) = crate::config::parse(path, text, &|_| None) {
        assert!(!errors.is_empty());
        for e in errors {
            assert!(e.to_string().starts_with("/fuzz/gateway.yaml"), "{e}");
        }
    }
}
