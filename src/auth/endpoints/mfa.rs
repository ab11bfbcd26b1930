//! The TOTP second factor's HTTP adapter, under `auth.prefix`:
//!
//! | request | answer |
//! |---|---|
//! | `POST /mfa/totp/enroll` | 200 `{"secret", "otpauth_uri"}` |
//! | `POST /mfa/totp/confirm {code}` | 200 `{"recovery_codes": [10 codes]}` |
//! | `POST /login/mfa {mfa_token, code \| recovery_code}` | 200 tokens and cookie, as `/login` |
//! | `DELETE /mfa/totp {password, code}` | 204 |
//! | `DELETE /users/{id}/mfa` | 204, an admin only |
//!
//! Enroll and confirm take a session's Bearer token or the enrollment token a login
//! hands a role that must enroll. Checks run in this order: path (404), method (405),
//! a foreign `Origin` (403), `Content-Type` where a body is read (415), the caller
//! (401), the admin role where needed (403), the body (400), then the second factor.

use super::{csrf, json_answer, object, optional, required, tokens_answer, Request};
use crate::auth::service::{require_admin, Proof, Service};
use crate::authn::Identity;
use crate::error::{Answer, Reject};
use crate::gateway::Gateway;
use http::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// True when `sub` (the path after the prefix) is an MFA endpoint.
pub(super) fn serves(sub: &str) -> bool {
    sub.starts_with("/mfa/")
        || sub == "/login/mfa"
        || (sub.starts_with("/users/") && sub.ends_with("/mfa"))
}

/// Serves one MFA request; `identity` receives the verified bearer for the access log.
pub(super) async fn route(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    sub: &str,
    now: u64,
    identity: &mut Option<Arc<Identity>>,
) -> Result<Answer, Reject> {
    let user_reset = sub
        .strip_prefix("/users/")
        .and_then(|rest| rest.strip_suffix("/mfa"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let (allow, has_body) = match sub {
        "/mfa/totp/enroll" => ("POST", false),
        "/mfa/totp/confirm" | "/login/mfa" => ("POST", true),
        "/mfa/totp" => ("DELETE", true),
        _ if user_reset.is_some() => ("DELETE", false),
        _ => return Err(Reject::NotFound),
    };
    if req.method.as_str() != allow {
        return Err(Reject::WrongMethod { allow });
    }
    csrf::check_origin(req, &gw.config.auth.allowed_origins)?;
    if has_body || req.method == Method::POST {
        csrf::check_json(req.headers)?;
    }
    match (sub, user_reset) {
        ("/login/mfa", _) => {
            let body = object(req.body)?;
            let ticket = required(&body, "mfa_token")?;
            let proof = match (optional(&body, "code")?, optional(&body, "recovery_code")?) {
                (Some(code), None) => Proof::Code(code),
                (None, Some(code)) => Proof::RecoveryCode(code),
                _ => return Err(bad("give exactly one of \"code\" and \"recovery_code\"")),
            };
            let origin = super::account::origin_of(req);
            let pair = service
                .complete_login(gw, ticket, proof, &origin, now)
                .await?;
            Ok(tokens_answer(gw, &pair, now))
        }
        ("/mfa/totp/enroll", _) => {
            let who = service.enrollee(req.headers, &gw.keys, now).await?;
            identity.clone_from(&who.identity);
            let enrollment = service.enroll_totp(gw, &who, now).await?;
            Ok(json_answer(
                200,
                json!({"secret": enrollment.secret, "otpauth_uri": enrollment.otpauth_uri}),
                Vec::new(),
            ))
        }
        ("/mfa/totp/confirm", _) => {
            let who = service.enrollee(req.headers, &gw.keys, now).await?;
            identity.clone_from(&who.identity);
            let body = object(req.body)?;
            let code = required(&body, "code")?;
            let codes = service.confirm_totp(gw, &who, code, now).await?;
            Ok(json_answer(
                200,
                json!({ "recovery_codes": codes }),
                Vec::new(),
            ))
        }
        ("/mfa/totp", _) => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            *identity = Some(Arc::clone(&id));
            let body = object(req.body)?;
            let password = required(&body, "password")?;
            let code = required(&body, "code")?;
            service
                .disable_totp(gw, &id, password.to_owned(), code, now)
                .await?;
            Ok(no_content())
        }
        (_, Some(user)) => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            *identity = Some(Arc::clone(&id));
            require_admin(&id)?;
            service.reset_mfa(user).await?;
            Ok(no_content())
        }
        _ => Err(Reject::NotFound),
    }
}

fn no_content() -> Answer {
    Answer {
        status: 204,
        headers: vec![("cache-control", "no-store".to_owned())],
        body: Vec::new(),
    }
}

fn bad(detail: &'static str) -> Reject {
    Reject::BadRequest(detail.into())
}

/// The `/login` answer when a second step is due: no tokens, no cookie.
pub(super) fn second_step(field: &'static str, token_field: &'static str, token: String) -> Answer {
    let mut body = json!({ field: true });
    body[token_field] = Value::String(token);
    json_answer(200, body, Vec::new())
}
