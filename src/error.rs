//! Every refusal the gateway can give, and the one function that turns it into
//! the status, headers and JSON body every refusal gets. Causes are logged by the caller,
//! never sent: the client sees only the message in this file.

use crate::http1::framing::Refused;
use crate::http1::HeadError;
use crate::token::TokenError;
use std::borrow::Cow;

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed input (bad JSON, missing field, unsafe path, bad framing).
    BadRequest(Cow<'static, str>),
    MissingToken,
    InvalidToken(TokenError),
    /// A valid signature on a token that was logged out or otherwise revoked.
    Revoked,
    InvalidCredentials,
    InvalidRefreshToken,
    /// 401: a wrong, replayed or malformed second-factor code or recovery code.
    InvalidCode,
    /// 401: an `mfa_token` (or enrollment token) that is unknown, used or expired.
    InvalidMfaToken,
    /// 409: the second factor is not in the state the request needs (the message says which).
    MfaConflict(&'static str),
    Forbidden,
    CrossOrigin,
    NotMember,
    NotFound,
    MethodNotAllowed,
    /// 405 from an auth endpoint that exists but takes other methods (listed in `Allow`).
    WrongMethod {
        allow: &'static str,
    },
    EmailTaken,
    /// 403 at login: the password matched, the address is not verified yet.
    EmailNotVerified,
    /// 400: an email-verification or password-reset token that is unknown, used or expired.
    InvalidAccountToken,
    PayloadTooLarge,
    /// 415: an auth endpoint's body that is not declared `application/json`.
    UnsupportedMediaType,
    /// 431: a request head over the gateway's limit (size or field count).
    HeadersTooLarge,
    TooManyRequests {
        retry_after: u64,
    },
    BadGateway,
    GatewayTimeout,
    /// The store does not answer (auth endpoints), or a trusted issuer's keys
    /// were never fetched (its tokens may be fine; nobody can tell yet).
    Unavailable {
        retry_after: u64,
    },
    Internal,
}

/// A request head the transport could not take.
impl From<HeadError> for Reject {
    fn from(e: HeadError) -> Reject {
        match e {
            HeadError::TooLarge => Reject::HeadersTooLarge,
            HeadError::Malformed => Reject::BadRequest("malformed request".into()),
            HeadError::Refused(why) => Reject::BadRequest(why.into()),
        }
    }
}

/// A request whose framing or target the transport refused.
impl From<Refused> for Reject {
    fn from(Refused(why): Refused) -> Reject {
        Reject::BadRequest(why.into())
    }
}

/// What goes on the wire for a [`Reject`].
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reject {
    pub fn status(&self) -> u16 {
        match self {
            Reject::BadRequest(_) | Reject::InvalidAccountToken => 400,
            Reject::MissingToken
            | Reject::InvalidToken(_)
            | Reject::Revoked
            | Reject::InvalidCredentials
            | Reject::InvalidRefreshToken
            | Reject::InvalidCode
            | Reject::InvalidMfaToken => 401,
            Reject::Forbidden
            | Reject::CrossOrigin
            | Reject::NotMember
            | Reject::EmailNotVerified => 403,
            Reject::NotFound => 404,
            Reject::MethodNotAllowed | Reject::WrongMethod { .. } => 405,
            Reject::EmailTaken | Reject::MfaConflict(_) => 409,
            Reject::PayloadTooLarge => 413,
            Reject::UnsupportedMediaType => 415,
            Reject::HeadersTooLarge => 431,
            Reject::TooManyRequests { .. } => 429,
            Reject::Internal => 500,
            Reject::BadGateway => 502,
            Reject::Unavailable { .. } => 503,
            Reject::GatewayTimeout => 504,
        }
    }

    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Reject::BadRequest(detail) => return Cow::Owned(format!("Invalid request: {detail}")),
            Reject::MissingToken => "Missing token",
            Reject::InvalidToken(_) | Reject::Revoked => "Invalid or expired token",
            Reject::InvalidCredentials => "Invalid credentials",
            Reject::InvalidRefreshToken => "Invalid or reused token",
            Reject::InvalidCode => "Invalid code",
            Reject::InvalidMfaToken => "Invalid or expired MFA token",
            Reject::MfaConflict(message) => message,
            Reject::Forbidden => "Insufficient permissions",
            Reject::CrossOrigin => "Cross-origin request refused",
            Reject::NotMember => "Not a member of this workspace",
            Reject::NotFound => "Not found",
            Reject::MethodNotAllowed | Reject::WrongMethod { .. } => "Method not allowed",
            Reject::EmailTaken => "Email already registered",
            Reject::EmailNotVerified => "Email not verified",
            Reject::InvalidAccountToken => "Invalid, expired or already used token",
            Reject::PayloadTooLarge => "Payload too large",
            Reject::UnsupportedMediaType => "Content-Type must be application/json",
            Reject::HeadersTooLarge => "Request header fields too large",
            Reject::TooManyRequests { .. } => "Too many requests",
            Reject::Internal => "Internal error",
            Reject::BadGateway => "Bad gateway",
            Reject::Unavailable { .. } => "Service unavailable",
            Reject::GatewayTimeout => "Gateway timeout",
        })
    }

    /// The status of the gRPC answer to a call the gateway refuses (which is
    /// an HTTP 200 carrying it, with the message as `grpc-message`).
    pub fn grpc_status(&self) -> u8 {
        match self.status() {
            400 => 3,             // INVALID_ARGUMENT
            401 => 16,            // UNAUTHENTICATED
            403 => 7,             // PERMISSION_DENIED
            404 | 405 => 12,      // UNIMPLEMENTED
            413 | 429 | 431 => 8, // RESOURCE_EXHAUSTED
            502 | 503 => 14,      // UNAVAILABLE
            504 => 4,             // DEADLINE_EXCEEDED
            _ => 13,              // INTERNAL
        }
    }

    /// The `decision` label of `portcullis_auth_decisions_total` and the access log.
    pub fn decision(&self) -> &'static str {
        match self {
            Reject::MissingToken => "missing_token",
            Reject::InvalidToken(_) => "invalid_token",
            Reject::Revoked => "revoked",
            Reject::Forbidden => "forbidden",
            Reject::TooManyRequests { .. } => "rate_limited",
            Reject::NotFound => "no_route",
            Reject::MethodNotAllowed
            | Reject::WrongMethod { .. }
            | Reject::BadRequest(_)
            | Reject::UnsupportedMediaType
            | Reject::HeadersTooLarge => "bad_request",
            _ => "refused",
        }
    }

    /// Renders the refusal: JSON `{"error": ...}` plus the headers a client needs.
    pub fn answer(&self) -> Answer {
        let mut headers = vec![(CONTENT_TYPE, JSON.to_owned())];
        headers.extend(self.field().map(|(name, value)| (name, value.into_owned())));
        Answer {
            status: self.status(),
            headers,
            body: self.body(),
        }
    }

    /// The one field besides `content-type` a client may need to act on the
    /// refusal: the auth scheme, when to retry, the allowed methods.
    pub fn field(&self) -> Option<(&'static str, Cow<'static, str>)> {
        let value = match self {
            Reject::MissingToken => "Bearer",
            Reject::InvalidToken(_) | Reject::Revoked => r#"Bearer error="invalid_token""#,
            Reject::TooManyRequests { retry_after } | Reject::Unavailable { retry_after } => {
                return Some(("retry-after", retry_after.max(&1).to_string().into()))
            }
            Reject::MethodNotAllowed => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            Reject::WrongMethod { allow } => allow,
            _ => return None,
        };
        let name = match self {
            Reject::MethodNotAllowed | Reject::WrongMethod { .. } => "allow",
            _ => "www-authenticate",
        };
        Some((name, Cow::Borrowed(value)))
    }

    /// The JSON body, `{"error":"<message>"}`, written straight from the message:
    /// no `Value` tree or intermediate buffer on a path that refuses floods of bad tokens.
    pub fn body(&self) -> Vec<u8> {
        let message = self.message();
        let mut body = Vec::with_capacity(message.len() + 16);
        body.extend_from_slice(b"{\"error\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, message.as_ref());
        body.push(b'}');
        body
    }
}

/// The content type of every refusal.
pub const CONTENT_TYPE: &str = "content-type";
pub const JSON: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_the_spec_status_and_json_body() {
        let cases = [
            (
                Reject::BadRequest("encoded slash in path".into()),
                400,
                "Invalid request: encoded slash in path",
            ),
            (Reject::MissingToken, 401, "Missing token"),
            (
                Reject::InvalidToken(TokenError::Expired),
                401,
                "Invalid or expired token",
            ),
            (Reject::Revoked, 401, "Invalid or expired token"),
            (Reject::InvalidCredentials, 401, "Invalid credentials"),
            (Reject::InvalidRefreshToken, 401, "Invalid or reused token"),
            (Reject::InvalidCode, 401, "Invalid code"),
            (Reject::InvalidMfaToken, 401, "Invalid or expired MFA token"),
            (
                Reject::MfaConflict("MFA already enabled"),
                409,
                "MFA already enabled",
            ),
            (Reject::Forbidden, 403, "Insufficient permissions"),
            (Reject::CrossOrigin, 403, "Cross-origin request refused"),
            (Reject::NotMember, 403, "Not a member of this workspace"),
            (Reject::NotFound, 404, "Not found"),
            (Reject::MethodNotAllowed, 405, "Method not allowed"),
            (Reject::EmailTaken, 409, "Email already registered"),
            (Reject::EmailNotVerified, 403, "Email not verified"),
            (
                Reject::InvalidAccountToken,
                400,
                "Invalid, expired or already used token",
            ),
            (Reject::PayloadTooLarge, 413, "Payload too large"),
            (
                Reject::TooManyRequests { retry_after: 7 },
                429,
                "Too many requests",
            ),
            (Reject::BadGateway, 502, "Bad gateway"),
            (
                Reject::Unavailable { retry_after: 1 },
                503,
                "Service unavailable",
            ),
            (Reject::GatewayTimeout, 504, "Gateway timeout"),
        ];
        for (reject, status, message) in cases {
            let answer = reject.answer();
            assert_eq!(answer.status, status, "{reject:?}");
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(body, serde_json::json!({ "error": message }));
            assert!(answer
                .headers
                .contains(&("content-type", "application/json".to_owned())));
        }
    }

    #[test]
    fn token_refusals_carry_the_bearer_challenge() {
        let missing = Reject::MissingToken.answer();
        assert!(missing
            .headers
            .contains(&("www-authenticate", "Bearer".to_owned())));
        let invalid = Reject::InvalidToken(TokenError::Signature).answer();
        assert!(invalid.headers.contains(&(
            "www-authenticate",
            r#"Bearer error="invalid_token""#.to_owned()
        )));
    }

    #[test]
    fn refused_grpc_calls_get_the_matching_grpc_status() {
        let cases = [
            (Reject::MissingToken, 16),
            (Reject::InvalidToken(TokenError::Expired), 16),
            (Reject::Forbidden, 7),
            (Reject::TooManyRequests { retry_after: 1 }, 8),
            (Reject::BadGateway, 14),
            (Reject::Unavailable { retry_after: 1 }, 14),
            (Reject::GatewayTimeout, 4),
            (Reject::NotFound, 12),
            (Reject::PayloadTooLarge, 8),
            (Reject::Internal, 13),
        ];
        for (reject, status) in cases {
            assert_eq!(reject.grpc_status(), status, "{reject:?}");
        }
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let answer = Reject::TooManyRequests { retry_after: 12 }.answer();
        assert!(answer.headers.contains(&("retry-after", "12".to_owned())));
    }
}
