//! Access tokens: the one place where Portcullis signs the compact JWS it issues
//! and verifies the ones it is shown, so both always agree on the format (SPEC §3).

mod json;

use crate::authn::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// Longest token we look at; longer ones are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

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

/// A key that signs and verifies. HS256 keeps the HMAC state already keyed,
/// so each verification clones 200 bytes instead of re-hashing the secret.
#[derive(Clone)]
enum KeyMaterial {
    Hs256(Hmac<Sha256>),
}

impl KeyMaterial {
    fn alg(&self) -> &'static str {
        match self {
            KeyMaterial::Hs256(_) => "HS256",
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            KeyMaterial::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Constant-time: `verify_slice` compares with `subtle`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            KeyMaterial::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

struct Key {
    kid: String,
    material: KeyMaterial,
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
/// audience they are bound to. Built once at start (and on reload).
pub struct Keys {
    issuer: String,
    audience: String,
    leeway: u64,
    signing: Key,
    verifying: Vec<Key>,
}

impl Keys {
    /// HS256 with a shared secret; the caller has already refused secrets under 32 bytes.
    pub fn hs256(secret: &[u8], kid: &str, issuer: &str, audience: &str, leeway: Duration) -> Keys {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        let key = || Key {
            kid: kid.to_owned(),
            material: KeyMaterial::Hs256(mac.clone()),
        };
        Keys {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: leeway.as_secs(),
            signing: key(),
            verifying: vec![key()],
        }
    }

    /// Signs an access token valid from `now` for `ttl`.
    pub fn issue(&self, grant: Grant<'_>, now: u64, ttl: Duration) -> Issued {
        let jti = random_id();
        let expires_at = now + ttl.as_secs();
        let header = JoseHeader {
            alg: self.signing.material.alg(),
            typ: "JWT",
            kid: &self.signing.kid,
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
        let signature = self.signing.material.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Issued {
            token,
            jti,
            expires_at,
        }
    }

    /// Checks everything SPEC §3 asks of a token except revocation, which
    /// needs the auth module's state and is the caller's next step.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
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
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::Type);
        }
        let alg = header.alg.as_deref().ok_or(TokenError::Algorithm)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self
            .verifying
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        // One algorithm per key, compared exactly: "none", "hs256" or an
        // algorithm of another family never reach a verifier.
        if alg != key.material.alg() {
            return Err(TokenError::Algorithm);
        }
        let signature = decode(signature_b64)?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        if !key
            .material
            .verify(&token.as_bytes()[..signed_len], &signature)
        {
            return Err(TokenError::Signature);
        }
        // Only now, with the signature good, is the payload worth parsing.
        let payload = decode(payload_b64)?;
        let claims = json::claims(&payload).map_err(|_| TokenError::Malformed)?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, c: json::RawClaims<'_>, now: u64) -> Result<Identity, TokenError> {
        let iss = c.iss.ok_or(TokenError::MissingClaim("iss"))?;
        let aud = c.aud.ok_or(TokenError::MissingClaim("aud"))?;
        let sub = c.sub.ok_or(TokenError::MissingClaim("sub"))?;
        let exp = c.exp.ok_or(TokenError::MissingClaim("exp"))?;
        let iat = c.iat.ok_or(TokenError::MissingClaim("iat"))?;
        let nbf = c.nbf.ok_or(TokenError::MissingClaim("nbf"))?;
        let jti = c.jti.ok_or(TokenError::MissingClaim("jti"))?;
        if iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if !aud.contains(&self.audience) {
            return Err(TokenError::Audience);
        }
        if now >= exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if nbf > now + self.leeway {
            return Err(TokenError::NotYetValid);
        }
        if iat > now + self.leeway {
            return Err(TokenError::IssuedInFuture);
        }
        if sub.is_empty() || jti.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(Identity {
            sub: sub.into_owned(),
            role: c.role.map(|r| r.into_owned()),
            workspace: c.ws.map(|w| w.into_owned()),
            plan: c.plan.map(|p| p.into_owned()),
            jti: jti.into_owned(),
            sid: c.sid.map(|s| s.into_owned()),
            iat,
            exp,
        })
    }
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
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
