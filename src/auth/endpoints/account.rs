//! The account endpoints' HTTP adapter, under `auth.prefix`:
//!
//! | request | answer |
//! |---|---|
//! | `POST /verify-email {token}` | 200 `{"status":"verified"}` |
//! | `POST /verify-email/resend {email}` | 202 `{"status":"verification_sent"}`, whatever the address |
//! | `POST /password/forgot {email}` | 202 `{"status":"reset_sent"}`, whatever the address |
//! | `POST /password/reset {token, password}` | 200 `{"status":"password_reset"}` |
//! | `POST /password/change {current_password, new_password}` (Bearer) | 200 `{"status":"password_changed"}` |
//! | `GET /sessions` (Bearer) | 200 `{"sessions": [session, …]}` |
//! | `DELETE /sessions/{id}` (Bearer) | 204 |
//!
//! The first four need `auth.email` (else 404). Checks run in this order: path (404),
//! method (405), the cross-site rules (403 foreign `Origin`, 415 not JSON; `DELETE` has
//! no body, so only `Origin`), Bearer token (401), body (400), rate limit (429), then
//! the store.

use super::{csrf, json_answer, object, required, Request};
use crate::auth::service::{session_origin, Service};
use crate::auth::store::SessionRow;
use crate::authn::Identity;
use crate::error::{Answer, Reject};
use crate::gateway::Gateway;
use http::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// The account endpoints, by sub-path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint<'p> {
    VerifyEmail,
    Resend,
    Forgot,
    Reset,
    Change,
    Sessions,
    Session(&'p str),
}

/// True when `sub` (the path after the prefix) is an account endpoint.
pub(super) fn serves(sub: &str) -> bool {
    parse(sub).is_some()
}

fn parse(sub: &str) -> Option<Endpoint<'_>> {
    Some(match sub {
        "/verify-email" => Endpoint::VerifyEmail,
        "/verify-email/resend" => Endpoint::Resend,
        "/password/forgot" => Endpoint::Forgot,
        "/password/reset" => Endpoint::Reset,
        "/password/change" => Endpoint::Change,
        "/sessions" => Endpoint::Sessions,
        _ => match sub.strip_prefix("/sessions/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Endpoint::Session(id),
            _ => return None,
        },
    })
}

/// Serves one account request; `identity` receives the verified bearer for the access log.
pub(super) async fn route(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    sub: &str,
    now: u64,
    identity: &mut Option<Arc<Identity>>,
) -> Result<Answer, Reject> {
    let endpoint = parse(sub).ok_or(Reject::NotFound)?;
    let auth = &gw.config.auth;
    let needs_mail = !matches!(
        endpoint,
        Endpoint::Change | Endpoint::Sessions | Endpoint::Session(_)
    );
    if needs_mail && auth.email.is_none() {
        return Err(Reject::NotFound);
    }
    let (allow, method_ok) = match endpoint {
        Endpoint::Sessions => (
            "GET, HEAD",
            req.method == Method::GET || req.method == Method::HEAD,
        ),
        Endpoint::Session(_) => ("DELETE", req.method == Method::DELETE),
        _ => ("POST", req.method == Method::POST),
    };
    if !method_ok {
        return Err(Reject::WrongMethod { allow });
    }
    match endpoint {
        Endpoint::Sessions => {}
        Endpoint::Session(_) => csrf::check_origin(req, &auth.allowed_origins)?,
        _ => {
            csrf::check_origin(req, &auth.allowed_origins)?;
            csrf::check_json(req.headers)?;
        }
    }
    let ip = req.client_ip;
    match endpoint {
        Endpoint::VerifyEmail => {
            let body = object(req.body)?;
            service
                .verify_email(gw, ip, required(&body, "token")?, now)
                .await?;
            Ok(status(200, "verified"))
        }
        Endpoint::Resend => {
            let body = object(req.body)?;
            service
                .resend_verification(gw, ip, required(&body, "email")?)
                .await?;
            Ok(status(202, "verification_sent"))
        }
        Endpoint::Forgot => {
            let body = object(req.body)?;
            service
                .forgot_password(gw, ip, required(&body, "email")?)
                .await?;
            Ok(status(202, "reset_sent"))
        }
        Endpoint::Reset => {
            let body = object(req.body)?;
            let token = required(&body, "token")?;
            let password = required(&body, "password")?.to_owned();
            service.reset_password(gw, ip, token, password, now).await?;
            Ok(status(200, "password_reset"))
        }
        Endpoint::Change | Endpoint::Sessions | Endpoint::Session(_) => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            let result = with_bearer(service, gw, req, endpoint, &id, now).await;
            *identity = Some(id);
            result
        }
    }
}

/// The Bearer-authenticated account endpoints, for the verified `id`.
async fn with_bearer(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    endpoint: Endpoint<'_>,
    id: &Identity,
    now: u64,
) -> Result<Answer, Reject> {
    match endpoint {
        Endpoint::Change => {
            let body = object(req.body)?;
            let current = required(&body, "current_password")?.to_owned();
            let new = required(&body, "new_password")?.to_owned();
            service
                .change_password(gw, req.client_ip, id, current, new, now)
                .await?;
            Ok(status(200, "password_changed"))
        }
        Endpoint::Session(session) => {
            service.end_session(id, session, now).await?;
            Ok(Answer {
                status: 204,
                headers: vec![("cache-control", "no-store".to_owned())],
                body: Vec::new(),
            })
        }
        _ => {
            let sessions = service.sessions(id, now).await?;
            let list: Vec<Value> = sessions
                .iter()
                .map(|s| session_json(s, id.sid.as_deref()))
                .collect();
            Ok(json_answer(200, json!({ "sessions": list }), Vec::new()))
        }
    }
}

fn session_json(s: &SessionRow, current: Option<&str>) -> Value {
    json!({
        "id": s.family.id,
        "current": current == Some(s.family.id.as_str()),
        "created_at": s.family.created_at,
        "last_used_at": s.last_used_at,
        "expires_at": s.family.expires_at,
        "workspace": s.family.workspace_id,
        "user_agent": s.origin.user_agent,
        "ip_prefix": s.origin.ip_prefix,
    })
}

fn status(code: u16, status: &str) -> Answer {
    json_answer(code, json!({ "status": status }), Vec::new())
}

/// Where a new session comes from, for login and switch.
pub(super) fn origin_of(req: &Request<'_>) -> crate::auth::store::SessionOrigin {
    session_origin(req.client_ip, req.headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_paths_are_recognized_exactly() {
        assert!(serves("/verify-email"));
        assert!(serves("/password/forgot"));
        assert!(serves("/sessions/abc"));
        assert!(!serves("/sessions/"));
        assert!(!serves("/sessions/a/b"));
        assert!(!serves("/password"));
    }
}
