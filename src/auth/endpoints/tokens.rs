//! Personal access tokens' HTTP adapter, under `auth.prefix`:
//!
//! | request | answer |
//! |---|---|
//! | `POST /tokens {name, expires_in, scopes, workspace?}` | 201 the token, with `token` shown this once |
//! | `GET /tokens` | 200 `{"tokens": [token, …]}`, the caller's live tokens |
//! | `DELETE /tokens/{id}` | 204; the owner's own, or anyone's for an admin |
//! | `GET /users/{id}/tokens` | 200 `{"tokens": […]}`, an admin only |
//!
//! where a token is `{"id", "name", "prefix", "scopes", "workspace", "created_at",
//! "expires_at", "last_used_at"}`. Checks run in this order: path (404), method (405),
//! a foreign `Origin` on POST and DELETE (403), `Content-Type` on POST (415), the
//! session's Bearer token (401; a personal access token is not a session), the admin
//! role where needed (403), then the body (400).

use super::{csrf, json_answer, object, Request};
use crate::auth::pat;
use crate::auth::service::{listed_pat, require_admin, NewToken, Service, MAX_NAME_CHARS};
use crate::authn::Identity;
use crate::config::parse_duration;
use crate::error::{Answer, Reject};
use crate::gateway::Gateway;
use http::Method;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Longest token id accepted in a path (ids are 32 hex characters).
const MAX_ID_LEN: usize = 64;

enum Endpoint<'p> {
    Mine,
    One(&'p str),
    OfUser(&'p str),
}

/// True when `sub` (the path after the prefix) is a token endpoint.
pub(super) fn serves(sub: &str) -> bool {
    sub == "/tokens"
        || sub.starts_with("/tokens/")
        || (sub.starts_with("/users/") && sub.ends_with("/tokens"))
}

fn parse(sub: &str) -> Option<Endpoint<'_>> {
    let segments: Vec<&str> = sub.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        ["tokens"] => Some(Endpoint::Mine),
        ["tokens", id] if plausible_id(id) => Some(Endpoint::One(id)),
        ["users", user, "tokens"] if !user.is_empty() => Some(Endpoint::OfUser(user)),
        _ => None,
    }
}

fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Serves one token request; `identity` receives the verified bearer for the access log.
pub(super) async fn route(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    sub: &str,
    now: u64,
    identity: &mut Option<Arc<Identity>>,
) -> Result<Answer, Reject> {
    let endpoint = parse(sub).ok_or(Reject::NotFound)?;
    let get = req.method == Method::GET || req.method == Method::HEAD;
    let (allow, method_ok) = match endpoint {
        Endpoint::Mine => ("GET, HEAD, POST", get || req.method == Method::POST),
        Endpoint::One(_) => ("DELETE", req.method == Method::DELETE),
        Endpoint::OfUser(_) => ("GET, HEAD", get),
    };
    if !method_ok {
        return Err(Reject::WrongMethod { allow });
    }
    if !get {
        csrf::check_origin(req, &gw.config.auth.allowed_origins)?;
    }
    if req.method == Method::POST {
        csrf::check_json(req.headers)?;
    }
    let id = service.authenticate(req.headers, &gw.keys, now)?;
    *identity = Some(Arc::clone(&id));
    match endpoint {
        Endpoint::Mine if get => tokens_answer(service.list_pats(&id.sub, now).await?),
        Endpoint::Mine => {
            let body = object(req.body)?;
            let new = new_token(&body)?;
            let created = service.create_pat(gw, &id, new, now).await?;
            let mut shown = listed_pat(&created.row);
            shown["token"] = Value::String(created.token);
            Ok(json_answer(201, shown, Vec::new()))
        }
        Endpoint::One(token_id) => {
            service.revoke_pat(&id, token_id, now).await?;
            Ok(Answer {
                status: 204,
                headers: vec![("cache-control", "no-store".to_owned())],
                body: Vec::new(),
            })
        }
        Endpoint::OfUser(user) => {
            require_admin(&id)?;
            tokens_answer(service.list_pats(user, now).await?)
        }
    }
}

fn tokens_answer(rows: Vec<crate::auth::store::StoredPat>) -> Result<Answer, Reject> {
    let tokens: Vec<Value> = rows.iter().map(listed_pat).collect();
    Ok(json_answer(200, json!({ "tokens": tokens }), Vec::new()))
}

/// The create request's fields, each checked and named when wrong.
fn new_token(body: &Map<String, Value>) -> Result<NewToken<'_>, Reject> {
    let known = ["name", "expires_in", "scopes", "workspace"];
    if let Some(field) = body.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(format!("unknown field \"{field}\"")));
    }
    let name = match body.get("name") {
        Some(Value::String(n)) => n.trim(),
        None | Some(Value::Null) => return Err(bad("missing field \"name\"".into())),
        Some(_) => return Err(bad("field \"name\" must be a string".into())),
    };
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "field \"name\" must be 1 to {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
        Some(Value::String(s)) => parse_duration(s).ok(),
        None | Some(Value::Null) => return Err(bad("missing field \"expires_in\"".into())),
        Some(_) => None,
    }
    .ok_or_else(|| {
        bad("field \"expires_in\" must be whole seconds or a duration such as \"30d\"".into())
    })?;
    let scopes_value = body
        .get("scopes")
        .filter(|v| !v.is_null())
        .ok_or_else(|| bad("missing field \"scopes\"".into()))?;
    let scopes = pat::parse_scopes(scopes_value).map_err(bad)?;
    let workspace = match body.get("workspace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ws)) if crate::auth::service::valid_workspace_id(ws) => {
            Some(ws.as_str())
        }
        Some(_) => return Err(bad("field \"workspace\" must be a workspace id".into())),
    };
    let scopes_json = pat::scopes_json(&scopes).to_string();
    Ok(NewToken {
        name,
        expires_in,
        scopes,
        scopes_json,
        workspace,
    })
}

fn bad(detail: String) -> Reject {
    Reject::BadRequest(detail.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths_parse_by_shape_and_refuse_the_rest() {
        assert!(matches!(parse("/tokens"), Some(Endpoint::Mine)));
        assert!(matches!(parse("/tokens/ab12"), Some(Endpoint::One("ab12"))));
        assert!(matches!(
            parse("/users/u1/tokens"),
            Some(Endpoint::OfUser("u1"))
        ));
        for other in [
            "/tokens/",
            "/tokens/a/b",
            "/tokens/a%20b",
            "/users//tokens",
            "/tokenss",
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
        assert!(parse(&format!("/tokens/{}", "a".repeat(65))).is_none());
    }

    #[test]
    fn create_bodies_are_checked_field_by_field() {
        let cases = [
            (
                r#"{"expires_in": 60, "scopes": []}"#,
                "missing field \"name\"",
            ),
            (
                r#"{"name": "ci", "scopes": []}"#,
                "missing field \"expires_in\"",
            ),
            (
                r#"{"name": "ci", "expires_in": -1, "scopes": []}"#,
                "field \"expires_in\" must be whole seconds or a duration such as \"30d\"",
            ),
            (
                r#"{"name": "ci", "expires_in": "soon", "scopes": []}"#,
                "field \"expires_in\" must be whole seconds or a duration such as \"30d\"",
            ),
            (
                r#"{"name": "ci", "expires_in": 60}"#,
                "missing field \"scopes\"",
            ),
            (
                r#"{"name": "", "expires_in": 60, "scopes": []}"#,
                "field \"name\" must be 1 to 100 characters, without control characters",
            ),
            (
                r#"{"name": "ci", "expires_in": 60, "scopes": [], "admin": true}"#,
                "unknown field \"admin\"",
            ),
            (
                r#"{"name": "ci", "expires_in": 60, "scopes": [{"path": "/a", "methods": ["GET"]}], "workspace": "a b"}"#,
                "field \"workspace\" must be a workspace id",
            ),
        ];
        for (body, detail) in cases {
            let map = object(body.as_bytes()).unwrap();
            assert_eq!(new_token(&map).err(), Some(bad(detail.into())), "{body}");
        }
        let map = object(br#"{"name": "ci", "expires_in": "30d", "scopes": [{"path": "/a/**", "methods": ["GET"]}]}"#).unwrap();
        let new = new_token(&map).unwrap();
        assert_eq!(new.expires_in, Duration::from_secs(30 * 86_400));
        assert_eq!(
            new.scopes_json,
            r#"[{"methods":["GET","HEAD"],"path":"/a/**"}]"#
        );
    }
}
