//! Authentication: the request's bearer token → a verified [`Identity`], or a refusal.

use crate::error::Reject;
use crate::token::{Keys, TokenError, MAX_TOKEN_LEN};
use http::header::AUTHORIZATION;
use http::HeaderMap;
use std::sync::Arc;

/// Who the verified token says the caller is. Built only by token verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub role: Option<String>,
    /// Further roles, when a trusted issuer's role claim holds a list.
    pub more_roles: Vec<String>,
    pub workspace: Option<String>,
    pub plan: Option<String>,
    pub jti: String,
    /// The refresh family the token came from, when it came from a login.
    pub sid: Option<String>,
    pub iat: u64,
    pub exp: u64,
    /// The trusted issuer (`auth.trusted_issuers`) that vouched for the token;
    /// `None` for the gateway's own tokens.
    pub external: Option<Arc<str>>,
    /// The scopes and id of the personal access token presented, when it was one.
    pub pat: Option<Arc<crate::auth::pat::Grant>>,
}

impl Identity {
    /// Every role the token grants.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.role
            .as_deref()
            .into_iter()
            .chain(self.more_roles.iter().map(String::as_str))
    }

    /// Whether the token grants any of `wanted`.
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        self.roles().any(|r| wanted.iter().any(|w| w == r))
    }

    /// A gateway-issued identity with only `sub` and `role` set, for tests and the
    /// fuzz properties (which fill in the rest with struct update syntax).
    pub(crate) fn with_role(sub: &str, role: &str) -> Identity {
        Identity {
            sub: sub.into(),
            role: Some(role.into()),
            more_roles: Vec::new(),
            workspace: None,
            plan: None,
            jti: "j".into(),
            sid: None,
            iat: 0,
            exp: 0,
            external: None,
            pat: None,
        }
    }
}

/// The token of the request's single `Authorization: Bearer` header, if any.
///
/// Two `Authorization` headers are refused outright: components that pick
/// different ones (first vs last) are how one request gets two identities.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Reject> {
    bearer_of(headers.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes()))
}

/// [`bearer`] for the values of a request's `Authorization` fields, in order.
pub fn bearer_of<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a str>, Reject> {
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reject::BadRequest(
            "more than one Authorization header".into(),
        ));
    }
    // Scheme (7) + space + the longest token we accept.
    if value.len() > MAX_TOKEN_LEN + 16 {
        return Err(Reject::InvalidToken(TokenError::Malformed));
    }
    // ASCII, checked a word at a time (UTF-8 validation cost four times as
    // much); a control byte then fails its base64url decoding as malformed.
    if !value.is_ascii() {
        return Err(Reject::InvalidToken(TokenError::Malformed));
    }
    // SAFETY: ASCII, checked just above, is UTF-8.
    let value = unsafe { std::str::from_utf8_unchecked(value) };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Basic or another scheme carries no bearer token.
        return Ok(None);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(token))
}

/// Verifies the request's bearer token at `now` (unix seconds).
/// Revocation is checked by the caller against the auth module's state.
pub fn authenticate(headers: &HeaderMap, keys: &Keys, now: u64) -> Result<Arc<Identity>, Reject> {
    match bearer(headers)? {
        None => Err(Reject::MissingToken),
        Some(token) => keys.verify(token, now).map_err(Reject::InvalidToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Grant;
    use http::HeaderValue;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;

    fn keys() -> Keys {
        Keys::hs256(
            b"0123456789abcdef0123456789abcdef",
            "hs256",
            "iss",
            "aud",
            Duration::ZERO,
        )
    }

    fn token(k: &Keys) -> String {
        let grant = Grant {
            sub: "u1",
            role: "viewer",
            workspace: None,
            plan: None,
            sid: None,
        };
        k.issue(grant, NOW, Duration::from_secs(60)).token
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_bearer_value_with_non_ascii_bytes_is_a_malformed_token() {
        let k = keys();
        let t = token(&k);
        for value in [
            format!("Bearer {t}\u{e9}").into_bytes(),
            [b"Bearer ".as_slice(), t.as_bytes(), &[0xff]].concat(),
        ] {
            assert_eq!(
                bearer_of(std::iter::once(value.as_slice())),
                Err(Reject::InvalidToken(TokenError::Malformed))
            );
        }
        let plain = format!("Bearer {t}");
        assert_eq!(
            bearer_of(std::iter::once(plain.as_bytes())),
            Ok(Some(t.as_str()))
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let k = keys();
        let t = token(&k);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let id = authenticate(&headers(&[&format!("{scheme} {t}")]), &k, NOW).unwrap();
            assert_eq!(id.sub, "u1");
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_a_missing_token() {
        let k = keys();
        assert_eq!(
            authenticate(&headers(&[]), &k, NOW),
            Err(Reject::MissingToken)
        );
        assert_eq!(
            authenticate(&headers(&["Basic dTpw"]), &k, NOW),
            Err(Reject::MissingToken)
        );
        assert_eq!(
            authenticate(&headers(&["Bearer "]), &k, NOW),
            Err(Reject::MissingToken)
        );
    }

    #[test]
    fn two_authorization_headers_are_a_bad_request() {
        let k = keys();
        let t = format!("Bearer {}", token(&k));
        let got = authenticate(&headers(&[&t, &t]), &k, NOW);
        assert!(matches!(got, Err(Reject::BadRequest(_))), "{got:?}");
    }

    #[test]
    fn an_oversized_header_is_an_invalid_token() {
        let k = keys();
        let huge = format!("Bearer {}", "a".repeat(10_000));
        assert_eq!(
            authenticate(&headers(&[&huge]), &k, NOW),
            Err(Reject::InvalidToken(TokenError::Malformed))
        );
    }
}
