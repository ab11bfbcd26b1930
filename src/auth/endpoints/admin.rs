//! The admin API's HTTP adapter (docs/auth-api.md, Admin API), under `auth.prefix`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /users` | 200 `{"users": [account, …]}` |
//! | `PATCH /users/{id} {role?, disabled?}` | 200 `{"user": account}` |
//! | `PUT /users/{id}/workspaces/{ws} {role}` | 200 `{"user": account}` |
//! | `DELETE /users/{id}/workspaces/{ws}` | 204 |
//! | `PUT /workspaces/{ws} {plan}` | 200 `{"workspace": {"id", "plan"}}`, created if new |
//!
//! where an account is `{"id", "email", "role", "disabled", "memberships": [{"workspace",
//! "role", "plan"}]}`. Checks run in this order: path (404), method (405), Bearer token
//! (401), global admin role (403), body (400), then the store (404 for an unknown user,
//! workspace or membership).

use super::{json_answer, object, Request};
use crate::auth::service::{require_admin, valid_workspace_id, Account, Service, UserChange};
use crate::authn::Identity;
use crate::config::Config;
use crate::error::{Answer, Reject};
use crate::gateway::Gateway;
use http::Method;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The admin endpoints, by sub-path shape.
enum Endpoint<'p> {
    Users,
    User(&'p str),
    Membership(&'p str, &'p str),
    Workspace(&'p str),
}

/// True when `sub` (the path after the prefix) belongs to the admin API.
pub(super) fn serves(sub: &str) -> bool {
    sub == "/users" || sub.starts_with("/users/") || sub.starts_with("/workspaces/")
}

/// Serves one admin request; `identity` receives the verified bearer for the access log.
pub(super) async fn route(
    service: &Service,
    gw: &Gateway,
    req: &Request<'_>,
    sub: &str,
    now: u64,
    identity: &mut Option<Arc<Identity>>,
) -> Result<Answer, Reject> {
    let endpoint = parse(sub).ok_or(Reject::NotFound)?;
    let (allow, method_ok) = match endpoint {
        Endpoint::Users => (
            "GET, HEAD",
            req.method == Method::GET || req.method == Method::HEAD,
        ),
        Endpoint::User(_) => ("PATCH", req.method == Method::PATCH),
        Endpoint::Membership(..) => (
            "PUT, DELETE",
            req.method == Method::PUT || req.method == Method::DELETE,
        ),
        Endpoint::Workspace(_) => ("PUT", req.method == Method::PUT),
    };
    if !method_ok {
        return Err(Reject::WrongMethod { allow });
    }
    let id = service.authenticate(req.headers, &gw.keys, now)?;
    let allowed = require_admin(&id);
    *identity = Some(id);
    allowed?;
    let cfg = &gw.config;
    match endpoint {
        Endpoint::Users => {
            let accounts = service.list_accounts().await?;
            let users: Vec<Value> = accounts.iter().map(account_json).collect();
            Ok(json_answer(200, json!({ "users": users }), Vec::new()))
        }
        Endpoint::User(user) => {
            let body = object(req.body)?;
            only_fields(&body, &["role", "disabled"])?;
            let role = match body.get("role") {
                None | Some(Value::Null) => None,
                Some(Value::String(role)) => Some(declared_role(cfg, role)?),
                Some(_) => return Err(bad("field \"role\" must be a string")),
            };
            let disabled = match body.get("disabled") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(bad("field \"disabled\" must be true or false")),
            };
            let account = service
                .update_account(user, UserChange { role, disabled }, now)
                .await?;
            Ok(user_answer(&account))
        }
        Endpoint::Membership(user, ws) if req.method == Method::DELETE => {
            service.delete_membership(user, ws, now).await?;
            Ok(no_content_json())
        }
        Endpoint::Membership(user, ws) => {
            let body = object(req.body)?;
            only_fields(&body, &["role"])?;
            let role = match body.get("role") {
                Some(Value::String(role)) => declared_role(cfg, role)?,
                None | Some(Value::Null) => return Err(bad("missing field \"role\"")),
                Some(_) => return Err(bad("field \"role\" must be a string")),
            };
            let account = service.put_membership(user, ws, role, now).await?;
            Ok(user_answer(&account))
        }
        Endpoint::Workspace(ws) => {
            let body = object(req.body)?;
            only_fields(&body, &["plan"])?;
            let plan = match body.get("plan") {
                Some(Value::String(plan)) => declared_plan(cfg, plan)?,
                None | Some(Value::Null) => return Err(bad("missing field \"plan\"")),
                Some(_) => return Err(bad("field \"plan\" must be a string")),
            };
            service.put_workspace(ws, plan, now).await?;
            Ok(json_answer(
                200,
                json!({"workspace": {"id": ws, "plan": plan}}),
                Vec::new(),
            ))
        }
    }
}

/// `/users`, `/users/{id}`, `/users/{id}/workspaces/{ws}`, `/workspaces/{ws}`; anything
/// else (an empty segment, a trailing slash, a malformed workspace id) is `None`.
fn parse(sub: &str) -> Option<Endpoint<'_>> {
    let segments: Vec<&str> = sub.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        ["users"] => Some(Endpoint::Users),
        ["users", id] if !id.is_empty() => Some(Endpoint::User(id)),
        ["users", id, "workspaces", ws] if !id.is_empty() && valid_workspace_id(ws) => {
            Some(Endpoint::Membership(id, ws))
        }
        ["workspaces", ws] if valid_workspace_id(ws) => Some(Endpoint::Workspace(ws)),
        _ => None,
    }
}

fn declared_role<'b>(cfg: &Config, role: &'b str) -> Result<&'b str, Reject> {
    if cfg.roles.iter().any(|r| r == role) {
        return Ok(role);
    }
    Err(Reject::BadRequest(
        format!("unknown role \"{role}\" (known: {})", cfg.roles.join(", ")).into(),
    ))
}

/// A plan must be one of `plans:` when the config declares them; otherwise any
/// non-empty name goes.
fn declared_plan<'b>(cfg: &Config, plan: &'b str) -> Result<&'b str, Reject> {
    match &cfg.plans {
        Some(plans) if !plans.iter().any(|p| p == plan) => Err(Reject::BadRequest(
            format!("unknown plan \"{plan}\" (known: {})", plans.join(", ")).into(),
        )),
        _ if plan.is_empty() => Err(bad("field \"plan\" must not be empty")),
        _ => Ok(plan),
    }
}

/// Refuses fields the endpoint does not know, so a typo (`"disable": true`) is a 400
/// instead of a silent no-op.
fn only_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), Reject> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(field) => Err(Reject::BadRequest(
            format!("unknown field \"{field}\"").into(),
        )),
        None => Ok(()),
    }
}

fn bad(detail: &'static str) -> Reject {
    Reject::BadRequest(detail.into())
}

fn account_json(a: &Account) -> Value {
    let memberships: Vec<Value> = a
        .memberships
        .iter()
        .map(|m| json!({"workspace": m.workspace_id, "role": m.role, "plan": m.plan}))
        .collect();
    json!({
        "id": a.id,
        "email": a.email,
        "role": a.role,
        "disabled": a.disabled,
        "memberships": memberships,
    })
}

fn user_answer(account: &Account) -> Answer {
    json_answer(200, json!({ "user": account_json(account) }), Vec::new())
}

/// 204 without touching the refresh cookie (unlike logout's `no_content`).
fn no_content_json() -> Answer {
    Answer {
        status: 204,
        headers: vec![("cache-control", "no-store".to_owned())],
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_parse_by_shape_and_refuse_the_rest() {
        assert!(matches!(parse("/users"), Some(Endpoint::Users)));
        assert!(matches!(parse("/users/u1"), Some(Endpoint::User("u1"))));
        assert!(matches!(
            parse("/users/u1/workspaces/acme"),
            Some(Endpoint::Membership("u1", "acme"))
        ));
        assert!(matches!(
            parse("/workspaces/acme"),
            Some(Endpoint::Workspace("acme"))
        ));
        for other in [
            "/users/",
            "/users/u1/",
            "/users/u1/workspaces",
            "/users/u1/workspaces/a%20b",
            "/workspaces/",
            "/workspaces/a/b",
            "/userss",
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let body = object(br#"{"disable": true}"#).unwrap();
        assert_eq!(
            only_fields(&body, &["role", "disabled"]),
            Err(Reject::BadRequest("unknown field \"disable\"".into()))
        );
    }
}
