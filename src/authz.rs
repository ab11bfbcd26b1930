//! Authorization: a matched route's rules against the verified identity.
//! Decided from the token alone: no store lookup on the request path.

use crate::authn::Identity;
use crate::config::Route;
use crate::error::Reject;
use crate::route::Captures;

/// Allows the request when every rule the route declares holds; rules combine with AND.
pub fn authorize(route: &Route, id: &Identity, captures: &Captures<'_>) -> Result<(), Reject> {
    if !route.roles.is_empty() && !id.has_any_role(&route.roles) {
        return Err(Reject::Forbidden);
    }
    let plan = id.plan.as_deref();
    if !route.plans.is_empty() && !plan.is_some_and(|p| route.plans.iter().any(|x| x == p)) {
        return Err(Reject::Forbidden);
    }
    if let Some(name) = &route.owner {
        let bypass = id.has_any_role(&route.owner_bypass);
        // A `sub` is unique only within its issuer: another issuer's user with
        // the same id as ours is not the owner unless the route says so.
        let issuer_counts = match id.external.as_deref() {
            None => true,
            Some(iss) => route.owner_issuers.iter().any(|o| o.as_str() == iss),
        };
        let owns = issuer_counts && capture_is(captures, name, &id.sub);
        if !(bypass || owns) {
            return Err(Reject::Forbidden);
        }
    }
    if let Some(name) = &route.workspace {
        let Some(ws) = id.workspace.as_deref() else {
            return Err(Reject::Forbidden);
        };
        if !capture_is(captures, name, ws) {
            return Err(Reject::Forbidden);
        }
    }
    Ok(())
}

/// Compares a captured segment with a claim. Normalized paths keep reserved
/// characters percent-encoded, so a claim like `a@b` arrives as `a%40b`.
fn capture_is(captures: &Captures<'_>, name: &str, claim: &str) -> bool {
    let Some(segment) = captures.get(name) else {
        return false;
    };
    if !segment.contains('%') {
        return segment == claim;
    }
    percent_decode(segment).is_some_and(|bytes| bytes == claim.as_bytes())
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;
    use crate::route::{MethodSet, Pattern};

    fn route(path: &str) -> Route {
        Route {
            pattern: Pattern::parse(path).unwrap(),
            methods: MethodSet::any(),
            upstream: Some(0),
            auth: AuthMode::Required,
            roles: vec![],
            plans: vec![],
            owner: None,
            owner_bypass: vec![],
            owner_issuers: vec![],
            workspace: None,
            rate_limit: None,
            cors: None,
            max_body: 0,
            timeout: None,
            line: 1,
        }
    }

    fn id(sub: &str, role: &str, ws: Option<&str>, plan: Option<&str>) -> Identity {
        Identity {
            workspace: ws.map(Into::into),
            plan: plan.map(Into::into),
            ..Identity::with_role(sub, role)
        }
    }

    fn decide(r: &Route, i: &Identity, path: &str) -> Result<(), Reject> {
        let caps = r.pattern.matches(path).expect("path matches the pattern");
        authorize(r, i, &caps)
    }

    #[test]
    fn rules_decide_from_the_token_alone() {
        let mut roles = route("/api/admin/**");
        roles.roles = vec!["admin".into()];
        let mut plans = route("/api/reports/**");
        plans.plans = vec!["pro".into(), "enterprise".into()];
        let mut owner = route("/api/users/{user}/**");
        owner.owner = Some("user".into());
        let mut owner_admin = owner.clone();
        owner_admin.owner_bypass = vec!["admin".into()];
        let mut ws = route("/api/workspaces/{ws}/**");
        ws.workspace = Some("ws".into());

        let viewer = id("u1", "viewer", None, None);
        let admin = id("u9", "admin", None, None);
        let pro = id("u1", "viewer", Some("acme"), Some("pro"));
        let free = id("u1", "viewer", Some("acme"), Some("free"));
        let email_sub = id("a@b.c", "viewer", None, None);
        // Another issuer's user whose `sub` equals our u1.
        let foreign = Identity {
            external: Some("https://idp.test/".into()),
            ..id("u1", "viewer", None, None)
        };
        let mut owner_idp = owner.clone();
        owner_idp.owner_issuers = vec!["https://idp.test/".into()];

        let table: Vec<(&str, &Route, &Identity, &str, bool)> = vec![
            ("role listed", &roles, &admin, "/api/admin/x", true),
            ("role not listed", &roles, &viewer, "/api/admin/x", false),
            ("plan listed", &plans, &pro, "/api/reports/q1", true),
            ("plan not listed", &plans, &free, "/api/reports/q1", false),
            ("no plan claim", &plans, &viewer, "/api/reports/q1", false),
            (
                "owner matches sub",
                &owner,
                &viewer,
                "/api/users/u1/files",
                true,
            ),
            (
                "owner is someone else",
                &owner,
                &viewer,
                "/api/users/u2/files",
                false,
            ),
            (
                "admin without bypass",
                &owner,
                &admin,
                "/api/users/u2/files",
                false,
            ),
            (
                "admin with bypass",
                &owner_admin,
                &admin,
                "/api/users/u2/files",
                true,
            ),
            (
                "a trusted issuer's identical sub is not the owner",
                &owner,
                &foreign,
                "/api/users/u1/files",
                false,
            ),
            (
                "unless the route names that issuer",
                &owner_idp,
                &foreign,
                "/api/users/u1/files",
                true,
            ),
            (
                "our own user still owns with issuers listed",
                &owner_idp,
                &viewer,
                "/api/users/u1/files",
                true,
            ),
            (
                "encoded capture equals sub",
                &owner,
                &email_sub,
                "/api/users/a%40b.c/x",
                true,
            ),
            (
                "workspace matches",
                &ws,
                &pro,
                "/api/workspaces/acme/docs",
                true,
            ),
            (
                "other workspace",
                &ws,
                &pro,
                "/api/workspaces/globex/docs",
                false,
            ),
            (
                "unscoped token",
                &ws,
                &viewer,
                "/api/workspaces/acme/docs",
                false,
            ),
        ];
        for (name, r, i, path, allowed) in table {
            let got = decide(r, i, path);
            assert_eq!(got.is_ok(), allowed, "{name}: {got:?}");
            if !allowed {
                assert_eq!(got, Err(Reject::Forbidden), "{name}");
            }
        }
    }
}
