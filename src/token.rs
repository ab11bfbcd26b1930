//! Access tokens: the one place where Portcullis signs the compact JWS it issues
//! and verifies the ones it is shown, so both always agree on the format
//! (docs/security.md, Tokens).

mod cache;
pub(crate) mod json;
mod material;

use crate::authn::Identity;
use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
pub(crate) use cache::Answers;
pub use material::{Signer, Verifier};
use rand::RngCore;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Longest token we look at; longer ones are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The longest token lifetime until `set_max_lifetime` says otherwise: the largest
/// `access_ttl` the config allows.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Why a token was refused. The client only ever learns "Invalid or expired
/// token"; `reason()` is the stable id that goes into the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    Algorithm,
    Type,
    UnknownKey,
    CriticalHeader,
    Signature,
    MissingClaim(&'static str),
    Issuer,
    Audience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// `exp − iat` exceeds the longest lifetime the gateway issues (`access_ttl`):
    /// minted by someone else holding the key, or by a misused `portcullis token`.
    Lifetime,
}

impl TokenError {
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::Type => "type",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::CriticalHeader => "crit",
            TokenError::Signature => "signature",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::Lifetime => "lifetime",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::MissingClaim(c) => write!(f, "missing claim {c}"),
            other => f.write_str(other.reason()),
        }
    }
}

/// One key of a key set and the window in which it works: it signs from
/// `active_from` (until a newer key's turn) and verifies until `verify_until`,
/// when the last token it can have signed has expired.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub verifier: Verifier,
    /// `None` for a key that only verifies.
    pub signer: Option<Signer>,
    pub active_from: u64,
    /// Exclusive; `u64::MAX` for a key nothing has replaced.
    pub verify_until: u64,
}

/// One immutable generation of keys. A rotation builds a new one and swaps it in
/// whole, so a request never sees half a key set.
struct Ring {
    keys: Vec<Key>,
    /// Verification answers for these keys; gone with them.
    answers: Option<Answers>,
}

impl Ring {
    /// The key that signs at `now`: the newest one already active (or, with a
    /// clock behind every key, the oldest).
    fn signer(&self, now: u64) -> (&Key, &Signer) {
        let signing = || {
            self.keys
                .iter()
                .filter_map(|k| k.signer.as_ref().map(|s| (k, s)))
        };
        let found = signing()
            .filter(|(k, _)| k.active_from <= now)
            .max_by_key(|(k, _)| k.active_from)
            .or_else(|| signing().min_by_key(|(k, _)| k.active_from));
        match found {
            Some(found) => found,
            // `Keys::new` and `replace` refuse a key list without a signing key.
            None => unreachable!("every ring has a signing key"),
        }
    }
}

fn can_sign(keys: &[Key]) -> bool {
    keys.iter().any(|k| k.signer.is_some())
}

/// What a token is issued for. Never personal data: the email stays in the store.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub sub: &'a str,
    pub role: &'a str,
    pub workspace: Option<&'a str>,
    pub plan: Option<&'a str>,
    /// The refresh family the token belongs to; `None` for CLI-minted tokens.
    pub sid: Option<&'a str>,
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a str>,
}

#[derive(Serialize)]
struct JoseHeader<'a> {
    alg: &'a str,
    typ: &'static str,
    kid: &'a str,
}

/// The signing key and every key that still verifies, with the issuer and
/// audience they are bound to. Built once at start (and on reload); the key
/// ring inside can be swapped by `crate::keys` when a rotation happens.
pub struct Keys {
    issuer: String,
    audience: String,
    leeway: u64,
    /// The longest `exp − iat` accepted, in seconds, before leeway.
    max_lifetime: u64,
    ring: Arc<ArcSwap<Ring>>,
    refresh_secret: Arc<[u8]>,
    jwks_max_age: u64,
    cached: bool,
}

impl Keys {
    /// HS256 with a shared secret; the caller has already refused secrets under 32 bytes.
    pub fn hs256(secret: &[u8], kid: &str, issuer: &str, audience: &str, leeway: Duration) -> Keys {
        let signer = Signer::hs256(secret);
        let key = Key {
            kid: kid.to_owned(),
            verifier: signer.verifier(),
            signer: Some(signer),
            active_from: 0,
            verify_until: u64::MAX,
        };
        // The cache pays off even here: a hit costs about a tenth of an HMAC
        // check plus claims parsing (benches/hot_path.rs, verify/hs256*).
        match Keys::new(vec![key], issuer, audience, leeway, secret) {
            Some(keys) => keys,
            None => unreachable!("the one key above signs"),
        }
    }

    /// A key set from keys `crate::keys` loaded; `None` unless one of them
    /// signs. `refresh_secret` keys the auth module's refresh chain.
    pub fn new(
        keys: Vec<Key>,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        refresh_secret: &[u8],
    ) -> Option<Keys> {
        if !can_sign(&keys) {
            return None;
        }
        Some(Keys {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: leeway.as_secs(),
            max_lifetime: DEFAULT_MAX_LIFETIME.as_secs(),
            ring: Arc::new(ArcSwap::from_pointee(Ring {
                keys,
                answers: Some(Answers::new()),
            })),
            refresh_secret: refresh_secret.into(),
            jwks_max_age: 300,
            cached: true,
        })
    }

    /// Whether verified tokens are remembered (on by default: see `hs256`).
    pub fn set_cache(&mut self, on: bool) {
        self.cached = on;
        let keys = self.ring.load().keys.clone();
        self.replace(keys);
    }

    /// Whether verified tokens are remembered.
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// The longest lifetime (`exp − iat`) a token of ours may have: `access_ttl`, which
    /// is all the gateway ever issues (Envoy's `max_lifetime`). A longer one, leeway
    /// aside, was not issued by the auth module, whoever holds the key. Set at build time.
    pub fn set_max_lifetime(&mut self, lifetime: Duration) {
        self.max_lifetime = lifetime.as_secs();
    }

    /// How long upstreams may cache the JWKS document, in seconds.
    pub fn set_jwks_max_age(&mut self, seconds: u64) {
        self.jwks_max_age = seconds;
    }

    /// Swaps in a new generation of keys (after a rotation); false, and nothing
    /// changes, unless one of them signs. The verified-token cache starts empty,
    /// so nothing verified by a dropped key outlives it.
    pub fn replace(&self, keys: Vec<Key>) -> bool {
        self.weak_ring().replace(keys)
    }

    /// A handle the key watcher holds without keeping the key set alive.
    pub(crate) fn weak_ring(&self) -> WeakRing {
        WeakRing(Arc::downgrade(&self.ring), self.cached)
    }

    /// The key of the auth module's refresh chain: `JWT_SECRET`, or for the
    /// asymmetric algorithms without one, the random `refresh.secret` in keys_dir.
    pub fn refresh_secret(&self) -> &[u8] {
        &self.refresh_secret
    }

    /// The kid that signs at `now`.
    pub fn signing_kid(&self, now: u64) -> String {
        self.ring.load().signer(now).0.kid.clone()
    }

    /// The public keys that verify at `now`, as a JWKS document (RFC 7517 §5),
    /// and how long it may be cached. Shared secrets are never published.
    pub fn jwks(&self, now: u64) -> (String, u64) {
        let ring = self.ring.load();
        let keys: Vec<serde_json::Value> = ring
            .keys
            .iter()
            .filter(|k| now < k.verify_until)
            .filter_map(|k| {
                let mut jwk = serde_json::Map::new();
                for (name, value) in k.verifier.public_jwk()? {
                    jwk.insert(name.to_owned(), value.into());
                }
                jwk.insert("kid".into(), k.kid.clone().into());
                jwk.insert("alg".into(), k.verifier.alg().into());
                jwk.insert("use".into(), "sig".into());
                Some(serde_json::Value::Object(jwk))
            })
            .collect();
        let doc = serde_json::json!({ "keys": keys });
        (doc.to_string(), self.jwks_max_age)
    }

    /// Signs an access token valid from `now` for `ttl`.
    pub fn issue(&self, grant: Grant<'_>, now: u64, ttl: Duration) -> Issued {
        let jti = random_id();
        let expires_at = now + ttl.as_secs();
        let ring = self.ring.load();
        let (key, signer) = ring.signer(now);
        let header = JoseHeader {
            alg: key.verifier.alg(),
            typ: "JWT",
            kid: &key.kid,
        };
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: grant.sub,
            iat: now,
            nbf: now,
            exp: expires_at,
            jti: &jti,
            sid: grant.sid,
            role: grant.role,
            ws: grant.workspace,
            plan: grant.plan,
        };
        let mut token = String::with_capacity(512);
        // Serializing plain structs of strings and integers cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        URL_SAFE_NO_PAD.encode_string(header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = signer.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Issued {
            token,
            jti,
            expires_at,
        }
    }

    /// Checks everything docs/security.md (Tokens) asks of a token except revocation, which
    /// needs the auth module's state and is the caller's next step (a cached
    /// token is checked for revocation like any other).
    /// Shared: a token the cache remembers costs a pointer copy, not an identity's strings.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Identity>, TokenError> {
        let ring = self.ring.load();
        match &ring.answers {
            Some(answers) => answers.verify(token, now, || self.verify_in(&ring, token, now)),
            None => self
                .verify_in(&ring, token, now)
                .map(|(id, _)| Arc::new(id)),
        }
    }

    /// Verification itself, answering also the span of `now` over which the
    /// answer stays the same: from `nbf`/`iat` (less leeway) until the token
    /// expires or its key stops verifying.
    fn verify_in(
        &self,
        ring: &Ring,
        token: &str,
        now: u64,
    ) -> Result<(Identity, Range<u64>), TokenError> {
        let signed = check_signature(&ring.keys, Typ::Required, token, now)?;
        let claims = json::claims(&signed.payload).map_err(|_| TokenError::Malformed)?;
        let (id, nbf) = self.check_claims(claims, now)?;
        let from = nbf.max(id.iat).saturating_sub(self.leeway);
        let until = id.exp.saturating_add(self.leeway).min(signed.verify_until);
        Ok((id, from..until))
    }

    /// The identity the claims carry, and their `nbf`.
    fn check_claims(
        &self,
        c: json::RawClaims<'_>,
        now: u64,
    ) -> Result<(Identity, u64), TokenError> {
        let expect = Expected {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
        };
        let v = expect.check(c.registered, now)?;
        // Ours always carry these (docs/security.md, Tokens); another issuer's may not.
        let iat = v.iat.ok_or(TokenError::MissingClaim("iat"))?;
        let nbf = v.nbf.ok_or(TokenError::MissingClaim("nbf"))?;
        let jti = v.jti.ok_or(TokenError::MissingClaim("jti"))?;
        if jti.is_empty() {
            return Err(TokenError::Malformed);
        }
        if v.exp.saturating_sub(iat) > self.max_lifetime.saturating_add(self.leeway) {
            return Err(TokenError::Lifetime);
        }
        let (sub, exp) = (v.sub, v.exp);
        let id = Identity {
            sub: sub.into_owned(),
            role: c.role.map(|r| r.into_owned()),
            more_roles: Vec::new(),
            workspace: c.ws.map(|w| w.into_owned()),
            plan: c.plan.map(|p| p.into_owned()),
            jti: jti.into_owned(),
            sid: c.sid.map(|s| s.into_owned()),
            iat,
            exp,
            external: None,
            pat: None,
        };
        Ok((id, nbf))
    }
}

/// What an accepted token's registered claims must say, ours or a trusted
/// issuer's.
pub(crate) struct Expected<'e> {
    pub issuer: &'e str,
    pub audience: &'e str,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: u64,
}

/// Registered claims that passed [`Expected::check`].
pub(crate) struct Valid<'a> {
    pub sub: Cow<'a, str>,
    pub exp: u64,
    pub iat: Option<u64>,
    pub nbf: Option<u64>,
    pub jti: Option<Cow<'a, str>>,
}

impl Expected<'_> {
    /// `iss`, `aud`, `sub` and `exp` must be present and right; `nbf` and `iat`,
    /// when present, must not be in the future. Whether those two and `jti` are
    /// required is the caller's to say.
    pub(crate) fn check<'a>(
        &self,
        c: json::Registered<'a>,
        now: u64,
    ) -> Result<Valid<'a>, TokenError> {
        let iss = c.iss.ok_or(TokenError::MissingClaim("iss"))?;
        let aud = c.aud.ok_or(TokenError::MissingClaim("aud"))?;
        let sub = c.sub.ok_or(TokenError::MissingClaim("sub"))?;
        let exp = c.exp.ok_or(TokenError::MissingClaim("exp"))?;
        if iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if !aud.contains(self.audience) {
            return Err(TokenError::Audience);
        }
        if now >= exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if c.iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if sub.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(Valid {
            sub,
            exp,
            iat: c.iat,
            nbf: c.nbf,
            jti: c.jti,
        })
    }
}

/// A token whose signature one key of a key set vouches for: its decoded
/// payload, not yet looked at, and when that key stops verifying.
pub(crate) struct Signed {
    pub payload: Vec<u8>,
    pub verify_until: u64,
}

/// What a token's `typ` header must say.
#[derive(Clone, Copy)]
pub(crate) enum Typ {
    /// `JWT`, as the gateway issues (docs/security.md, Tokens).
    Required,
    /// Absent, `JWT`, or the `at+jwt` of RFC 9068, as identity providers send.
    Optional,
}

/// Checks the JOSE header and the signature of a compact JWS against `keys` at
/// `now`, for the gateway's own keys and other issuers' alike. The key is chosen
/// by `kid` and must verify exactly the `alg` the header names.
pub(crate) fn check_signature(
    keys: &[Key],
    typ: Typ,
    token: &str,
    now: u64,
) -> Result<Signed, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_bytes = decode(header_b64)?;
    let header = json::header(&header_bytes).map_err(|_| TokenError::Malformed)?;
    if header.crit {
        return Err(TokenError::CriticalHeader);
    }
    let typ_ok = match (header.typ.as_deref(), typ) {
        (Some(t), _) if t.eq_ignore_ascii_case("JWT") => true,
        (Some(t), Typ::Optional) => t.eq_ignore_ascii_case("at+jwt"),
        (None, Typ::Optional) => true,
        _ => false,
    };
    if !typ_ok {
        return Err(TokenError::Type);
    }
    let alg = header.alg.as_deref().ok_or(TokenError::Algorithm)?;
    let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
    // A retired key whose last token has expired is as unknown as one never seen.
    let key = keys
        .iter()
        .find(|k| k.kid == kid && now < k.verify_until)
        .ok_or(TokenError::UnknownKey)?;
    // One algorithm per key, compared exactly: "none", "hs256", an HS256
    // token keyed with a public key, or another family never reach a verifier.
    if alg != key.verifier.alg() {
        return Err(TokenError::Algorithm);
    }
    let signature = decode(signature_b64)?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    if !key
        .verifier
        .verify(&token.as_bytes()[..signed_len], &signature)
    {
        return Err(TokenError::Signature);
    }
    // Only now, with the signature good, is the payload worth decoding.
    Ok(Signed {
        payload: decode(payload_b64)?,
        verify_until: key.verify_until,
    })
}

/// The `iss` a token claims, read before any check: it only chooses which
/// issuer's keys to try, and those keys decide. `None` when unreadable.
pub(crate) fn claimed_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = decode(token.split('.').nth(1)?).ok()?;
    json::issuer(&payload).map(|i| i.into_owned())
}

/// base64url without padding, canonical only: padding, `+`/`/` and stray
/// trailing bits are refused so one token has exactly one spelling.
fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

/// 128 random bits, base64url: token ids and request ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64url_16(&bytes)
}

/// `URL_SAFE_NO_PAD.encode` for exactly 16 bytes, unrolled: the general
/// engine cost more than the random bits on every request without an id.
fn base64url_16(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = [0u8; 22];
    // Five groups of three bytes become four characters each; the last byte's
    // eight bits take two more.
    for group in 0..5 {
        let at = group * 3;
        let v =
            u32::from(bytes[at]) << 16 | u32::from(bytes[at + 1]) << 8 | u32::from(bytes[at + 2]);
        for k in 0..4 {
            out[group * 4 + k] = ALPHABET[(v >> (18 - 6 * k) & 63) as usize];
        }
    }
    out[20] = ALPHABET[usize::from(bytes[15] >> 2)];
    out[21] = ALPHABET[usize::from(bytes[15] & 3) << 4];
    // Always ASCII, from the alphabet above.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// The key watcher's grip on a key set: it can swap keys in while the
/// gateway lives and lets go when a reload drops the gateway.
pub(crate) struct WeakRing(Weak<ArcSwap<Ring>>, bool);

impl WeakRing {
    /// Swaps `keys` in; false once the key set is gone.
    pub(crate) fn replace(&self, keys: Vec<Key>) -> bool {
        let Some(ring) = self.0.upgrade() else {
            return false;
        };
        if !can_sign(&keys) {
            return false;
        }
        ring.store(Arc::new(Ring {
            keys,
            answers: self.1.then(Answers::new),
        }));
        true
    }

    /// Whether the key set still exists.
    pub(crate) fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

#[cfg(test)]
mod asymmetric_tests;
#[cfg(test)]
mod tests;
