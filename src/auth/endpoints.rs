//! The auth endpoints' HTTP adapter (docs/auth-api.md): method + sub-path + headers + body in,
//! status + headers + JSON out. The logic is in `service.rs`; this file only parses,
//! applies the cross-site rules (`csrf.rs`), and renders answers, cookies included.

mod account;
mod admin;
mod body;
mod csrf;
mod mfa;
mod tokens;

use super::service::{Login, Service, TokenPair};
use crate::authn::{self, Identity};
use crate::error::{Answer, Reject};
use crate::gateway::Gateway;
use body::object;
use http::header::COOKIE;
use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::sync::Arc;

/// Largest request body an auth endpoint reads; larger ones get 413.
pub const MAX_BODY: usize = 16 * 1024;

/// One request to the auth module, already framed and normalized by the proxy.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The normalized path, prefix included.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub client_ip: IpAddr,
    /// The request's own authority (`Host`), for the same-origin check.
    pub host: Option<&'a str>,
    pub tls: bool,
}

/// What the proxy writes back and logs.
pub struct Outcome {
    pub answer: Answer,
    /// The identity a Bearer-authenticated endpoint verified, for the access log.
    pub identity: Option<Arc<Identity>>,
    /// The auth decision to count and log, when the request was refused.
    pub decision: Option<&'static str>,
}

/// Serves one auth request at `now`.
pub async fn handle(service: &Service, gw: &Gateway, req: &Request<'_>, now: u64) -> Outcome {
    let mut identity = None;
    let result = route(service, gw, req, now, &mut identity).await;
    match result {
        Ok(answer) => Outcome {
            answer,
            identity,
            decision: None,
        },
        Err(reject) => Outcome {
            answer: reject.answer(),
            identity,
            decision: Some(reject.decision()),
        },
    }
}

async fn route(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    now: u64,
    identity: &mut Option<Arc<Identity>>,
) -> Result<Answer, Reject> {
    let auth = &gw.config.auth;
    let sub = req
        .path
        .strip_prefix(auth.prefix.trim_end_matches('/'))
        .ok_or(Reject::NotFound)?;
    if mfa::serves(sub) {
        return mfa::route(service, gw, req, sub, now, identity).await;
    }
    if tokens::serves(sub) {
        return tokens::route(service, gw, req, sub, now, identity).await;
    }
    if admin::serves(sub) {
        return admin::route(service, gw, req, sub, now, identity).await;
    }
    if account::serves(sub) {
        return account::route(service, gw, req, sub, now, identity).await;
    }
    let allowed: &'static str = match sub {
        "/signup" if !auth.signup.enabled => return Err(Reject::NotFound),
        "/signup" | "/login" | "/refresh" | "/logout" | "/logout-all" | "/switch" => "POST",
        "/me" => "GET, HEAD",
        _ => return Err(Reject::NotFound),
    };
    let method_ok = match sub {
        "/me" => req.method == Method::GET || req.method == Method::HEAD,
        _ => req.method == Method::POST,
    };
    if !method_ok {
        return Err(Reject::WrongMethod { allow: allowed });
    }
    // Every endpoint but /me is a POST that sets, reads or ends the refresh cookie's
    // sessions: the cross-site rules hold for each, and for any added to the list above.
    if sub != "/me" {
        csrf::check_origin(req, &auth.allowed_origins)?;
        csrf::check_json(req.headers)?;
    }
    match sub {
        "/signup" => {
            let body = object(req.body)?;
            let email = required(&body, "email")?;
            let password = required(&body, "password")?;
            // With verification on, one answer whether or not the address has an account.
            if let Some(mail) = auth.email.as_ref().filter(|m| m.verify_signups) {
                service
                    .signup_verified(gw, mail, req.client_ip, email, password.to_owned(), now)
                    .await?;
                let body = json!({"status": "verification_sent"});
                return Ok(json_answer(202, body, Vec::new()));
            }
            let user = service
                .signup(gw, req.client_ip, email, password.to_owned(), now)
                .await?;
            Ok(json_answer(
                201,
                json!({"user": {"id": user.id, "email": user.email, "role": user.role}}),
                Vec::new(),
            ))
        }
        "/login" => {
            let body = object(req.body)?;
            let email = required(&body, "email")?;
            let password = required(&body, "password")?;
            let workspace = optional(&body, "workspace")?;
            let origin = account::origin_of(req);
            let client = (req.client_ip, &origin);
            let login = service
                .login(gw, client, email, password.to_owned(), workspace, now)
                .await?;
            Ok(match login {
                Login::Session(pair) => tokens_answer(gw, &pair, now),
                Login::SecondFactor(t) => mfa::second_step("mfa_required", "mfa_token", t),
                Login::Enrollment(t) => {
                    mfa::second_step("mfa_enrollment_required", "enrollment_token", t)
                }
            })
        }
        "/refresh" => {
            let presented = refresh_token(gw, req)?;
            let pair = service
                .refresh(gw, req.client_ip, presented.as_deref(), now)
                .await?;
            Ok(tokens_answer(gw, &pair, now))
        }
        "/logout" => {
            let presented = refresh_token(gw, req)?;
            // A bad or expired access token does not stop a logout; it just is not revoked.
            let bearer = authn::bearer(req.headers)
                .ok()
                .flatten()
                .and_then(|t| gw.keys.verify(t, now).ok());
            service
                .logout(presented.as_deref(), bearer.as_deref(), now)
                .await?;
            *identity = bearer;
            Ok(no_content(gw))
        }
        "/switch" => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            let result = switch(service, gw, req, &id, now).await;
            *identity = Some(id);
            result
        }
        "/logout-all" => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            let result = service.logout_all(&id, now).await;
            *identity = Some(id);
            result?;
            Ok(no_content(gw))
        }
        _ => {
            let id = service.authenticate(req.headers, &gw.keys, now)?;
            let result = service.me(&id).await;
            *identity = Some(id);
            let me = result?;
            Ok(json_answer(
                200,
                json!({"id": me.id, "email": me.email, "role": me.role,
                       "workspace": me.workspace, "plan": me.plan}),
                Vec::new(),
            ))
        }
    }
}

/// `POST /switch {workspace}` for the verified bearer `id`: a new session scoped to it.
async fn switch(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    id: &Identity,
    now: u64,
) -> Result<Answer, Reject> {
    let body = object(req.body)?;
    let workspace = required(&body, "workspace")?;
    let origin = account::origin_of(req);
    let pair = service.switch(gw, id, workspace, &origin, now).await?;
    Ok(tokens_answer(gw, &pair, now))
}

/// 200 with the access token (and, if configured, the refresh token) in the body and
/// the refresh token in the cookie.
fn tokens_answer(gw: &Gateway, pair: &TokenPair, now: u64) -> Answer {
    let auth = &gw.config.auth;
    let mut body = json!({
        "access_token": pair.access.token,
        "token_type": "Bearer",
        "expires_in": pair.access.expires_at.saturating_sub(now),
    });
    if auth.refresh_in_body {
        body["refresh_token"] = Value::String(pair.refresh.clone());
    }
    let max_age = pair.session_expires_at.saturating_sub(now);
    let cookie = cookie(gw, &pair.refresh, max_age);
    json_answer(200, body, vec![("set-cookie", cookie)])
}

/// 204, clearing the refresh cookie.
fn no_content(gw: &Gateway) -> Answer {
    let headers = vec![
        ("cache-control", "no-store".to_owned()),
        ("set-cookie", cookie(gw, "", 0)),
    ];
    Answer {
        status: 204,
        headers,
        body: Vec::new(),
    }
}

/// The refresh cookie: host-only (no `Domain`), HTTPS-only, invisible to scripts, only
/// to the auth endpoints, and never sent cross-site unless `auth.cookie_same_site` says
/// otherwise (`None` for an app on another site; it stays `Secure`, as browsers require).
fn cookie(gw: &Gateway, value: &str, max_age: u64) -> String {
    let auth = &gw.config.auth;
    format!(
        "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; Secure; SameSite={}",
        auth.cookie_name,
        auth.prefix,
        auth.cookie_same_site.as_str()
    )
}

fn json_answer(status: u16, body: Value, mut headers: Vec<(&'static str, String)>) -> Answer {
    headers.push(("content-type", "application/json".to_owned()));
    headers.push(("cache-control", "no-store".to_owned()));
    Answer {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// The refresh token from the cookie, or (with `refresh_in_body`) from a JSON body.
fn refresh_token(gw: &Gateway, req: &Request<'_>) -> Result<Option<String>, Reject> {
    let auth = &gw.config.auth;
    if let Some(token) = cookie_value(req.headers, &auth.cookie_name) {
        return Ok(Some(token.to_owned()));
    }
    if !auth.refresh_in_body || req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body = object(req.body)?;
    Ok(optional(&body, "refresh_token")?.map(str::to_owned))
}

/// The first cookie called `name` in any `Cookie` header.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn required<'m>(body: &'m Map<String, Value>, field: &'static str) -> Result<&'m str, Reject> {
    optional(body, field)?
        .ok_or_else(|| Reject::BadRequest(format!("missing field \"{field}\"").into()))
}

fn optional<'m>(
    body: &'m Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'m str>, Reject> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Reject::BadRequest(
            format!("field \"{field}\" must be a string").into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            "a=1; __Secure-refresh_token=tok; b=2".parse().unwrap(),
        );
        assert_eq!(
            cookie_value(&headers, "__Secure-refresh_token"),
            Some("tok")
        );
        assert_eq!(cookie_value(&headers, "missing"), None);
    }

    #[test]
    fn bodies_must_be_json_objects_with_string_fields() {
        assert!(object(b"[]").is_err());
        assert!(object(b"{").is_err());
        assert!(object(b"").is_err());
        let map = object(br#"{"email": 5, "password": "x"}"#).unwrap();
        assert_eq!(
            required(&map, "email"),
            Err(Reject::BadRequest(
                "field \"email\" must be a string".into()
            ))
        );
        assert_eq!(
            required(&map, "workspace"),
            Err(Reject::BadRequest("missing field \"workspace\"".into()))
        );
        assert_eq!(required(&map, "password"), Ok("x"));
    }
}
