//! Workspaces, plans and ownership through the real binary: the Slack pattern (one user,
//! a different role in each workspace), the Stripe pattern (a tenant never reaches
//! another tenant's rows, plans gate features), owner rules, and `POST /switch`.

mod common;

use common::*;
use serde_json::json;

/// BASE_CONFIG's listeners, store and upstreams with the seed's three scenarios as rules.
fn tenant_config() -> String {
    let head = BASE_CONFIG
        .split("roles:")
        .next()
        .expect("BASE_CONFIG declares roles");
    format!(
        r#"{head}roles: [viewer, creator, admin, member, guest]
plans: [free, pro, enterprise]
routes:
  - {{ path: /api/auth/**, auth: none }}
  - {{ path: "/api/workspaces/{{ws}}/invoices/**", upstream: app, workspace: ws, plans: [pro, enterprise] }}
  - {{ path: "/api/workspaces/{{ws}}/channels/{{ch}}", methods: [DELETE], upstream: app, workspace: ws, roles: [admin] }}
  - {{ path: "/api/workspaces/{{ws}}/messages", methods: [POST], upstream: app, workspace: ws, roles: [admin, member] }}
  - {{ path: "/api/workspaces/{{ws}}/**", methods: [GET], upstream: app, workspace: ws }}
  - {{ path: "/api/creators/{{user}}/content/{{id}}", methods: [DELETE], upstream: app, roles: [creator, admin], owner: user, owner_bypass: [admin] }}
  - {{ path: "/api/users/{{user}}/**", upstream: app, owner: user }}
"#
    )
}

fn start() -> (Echo, Gateway) {
    let echo = Echo::start();
    let gw = Gateway::start(&tenant_config(), echo.addr, &[]);
    (echo, gw)
}

/// `portcullis user add` against the gateway's store; each `workspaces` entry is W:ROLE[:PLAN].
fn add_user(gw: &Gateway, email: &str, role: &str, workspaces: &[&str]) {
    let config = gw.dir.join("gateway.yaml");
    let mut args = vec![
        "user",
        "add",
        "--email",
        email,
        "--role",
        role,
        "--password-stdin",
    ];
    for w in workspaces {
        args.extend_from_slice(&["--workspace", w]);
    }
    args.extend_from_slice(&["-c", config.to_str().expect("utf-8 path")]);
    let (code, out, err) = portcullis_with_stdin(&args, &[], &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{out}{err}");
}

/// Logs in scoped to `workspace`.
fn login_to(gw: &Gateway, email: &str, workspace: &str) -> Response {
    let body = json!({"email": email, "password": PASSWORD, "workspace": workspace}).to_string();
    post(gw.addr, "/api/auth/login", Some(&body), &[])
}

fn switch(gw: &Gateway, access: &str, workspace: &str) -> Response {
    let body = json!({ "workspace": workspace }).to_string();
    post(
        gw.addr,
        "/api/auth/switch",
        Some(&body),
        &[("Authorization", &format!("Bearer {access}"))],
    )
}

fn send_as(gw: &Gateway, method: &str, path: &str, access: &str) -> Response {
    request(
        gw.addr,
        method,
        path,
        &[("Authorization", &format!("Bearer {access}"))],
        None,
    )
}

/// The statuses of (read, post a message, delete a channel) in one workspace.
type Decisions = (u16, u16, u16);

/// (read, post a message, delete a channel) in `ws` with `access`.
fn decisions(gw: &Gateway, ws: &str, access: &str) -> Decisions {
    (
        send_as(gw, "GET", &format!("/api/workspaces/{ws}/channels"), access).status,
        send_as(
            gw,
            "POST",
            &format!("/api/workspaces/{ws}/messages"),
            access,
        )
        .status,
        send_as(
            gw,
            "DELETE",
            &format!("/api/workspaces/{ws}/channels/general"),
            access,
        )
        .status,
    )
}

/// The Slack user: admin in acme, member in globex, guest in initech.
fn slack_user(gw: &Gateway) {
    add_user(
        gw,
        "sam@example.com",
        "viewer",
        &["acme:admin:pro", "globex:member:free", "initech:guest:pro"],
    );
}

/// (workspace, Sam's role there, its plan, what that role may do).
const EXPECTED: [(&str, &str, &str, Decisions); 3] = [
    ("acme", "admin", "pro", (200, 200, 200)),
    ("globex", "member", "free", (200, 200, 403)),
    ("initech", "guest", "pro", (200, 403, 403)),
];

#[test]
fn one_user_gets_each_workspaces_role_from_a_login_scoped_to_it() {
    let (_echo, gw) = start();
    slack_user(&gw);
    for (ws, role, plan, want) in EXPECTED {
        let r = login_to(&gw, "sam@example.com", ws);
        assert_eq!(r.status, 200, "{}", r.text());
        let access = access_token(&r);
        assert_eq!(decisions(&gw, ws, &access), want, "{ws} as {role}");
        // The upstream learns the scope from the identity headers.
        let seen = send_as(
            &gw,
            "GET",
            &format!("/api/workspaces/{ws}/channels"),
            &access,
        )
        .json();
        assert_eq!(echoed_header_values(&seen, "x-user-role"), vec![role]);
        assert_eq!(echoed_header_values(&seen, "x-workspace-id"), vec![ws]);
        assert_eq!(echoed_header_values(&seen, "x-user-plan"), vec![plan]);
    }
}

#[test]
fn one_user_gets_each_workspaces_role_after_switching_to_it() {
    let (_echo, gw) = start();
    slack_user(&gw);
    let r = login(gw.addr, "sam@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut access = access_token(&r);
    // An unscoped token carries the global role and reaches no workspace.
    assert_eq!(decisions(&gw, "acme", &access), (403, 403, 403));
    for (ws, role, plan, want) in EXPECTED {
        let r = switch(&gw, &access, ws);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.json()["token_type"], "Bearer");
        assert!(refresh_cookie(&r).is_some_and(|c| !c.is_empty()));
        access = access_token(&r);
        assert_eq!(decisions(&gw, ws, &access), want, "{ws} as {role}");
        let me = get_as(gw.addr, "/api/auth/me", &access).json();
        assert_eq!(
            (
                me["role"].as_str(),
                me["workspace"].as_str(),
                me["plan"].as_str()
            ),
            (Some(role), Some(ws), Some(plan))
        );
    }
}

#[test]
fn switching_starts_a_new_session_and_the_old_token_keeps_only_the_old_scope() {
    let (_echo, gw) = start();
    slack_user(&gw);
    let r = login_to(&gw, "sam@example.com", "acme");
    let acme = access_token(&r);
    let acme_refresh = refresh_cookie(&r).expect("refresh cookie");
    let r = switch(&gw, &acme, "initech");
    assert_eq!(r.status, 200, "{}", r.text());
    let initech = access_token(&r);
    let initech_refresh = refresh_cookie(&r).expect("refresh cookie");
    assert_ne!(initech_refresh, acme_refresh);

    // The acme token is still acme's admin, and gained nothing in initech.
    assert_eq!(decisions(&gw, "acme", &acme), (200, 200, 200));
    assert_eq!(decisions(&gw, "initech", &acme), (403, 403, 403));
    // The initech token is a guest there and nothing in acme.
    assert_eq!(decisions(&gw, "initech", &initech), (200, 403, 403));
    assert_eq!(decisions(&gw, "acme", &initech), (403, 403, 403));

    // Each session refreshes into its own scope.
    let r = refresh(gw.addr, &initech_refresh);
    assert_eq!(r.status, 200, "{}", r.text());
    let me = get_as(gw.addr, "/api/auth/me", &access_token(&r)).json();
    assert_eq!(me["workspace"], "initech");
    let r = refresh(gw.addr, &acme_refresh);
    assert_eq!(r.status, 200, "{}", r.text());
    let me = get_as(gw.addr, "/api/auth/me", &access_token(&r)).json();
    assert_eq!(me["workspace"], "acme");

    // Logging out the new session leaves the old one alone.
    let r = post(
        gw.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &format!("Bearer {initech}"))],
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        send_as(&gw, "GET", "/api/workspaces/initech/channels", &initech).status,
        401
    );
    assert_eq!(
        send_as(&gw, "GET", "/api/workspaces/acme/channels", &acme).status,
        200
    );
}

#[test]
fn switching_to_a_workspace_the_user_is_not_in_is_403() {
    let (_echo, gw) = start();
    slack_user(&gw);
    add_user(
        &gw,
        "other@example.com",
        "viewer",
        &["hooli:admin:enterprise"],
    );
    let access = access_token(&login(gw.addr, "sam@example.com", PASSWORD));
    for ws in ["hooli", "no-such-workspace"] {
        let r = switch(&gw, &access, ws);
        assert_eq!(r.status, 403, "{ws}");
        assert_eq!(r.json(), json!({"error": "Not a member of this workspace"}));
        assert!(refresh_cookie(&r).is_none());
    }
}

#[test]
fn switching_is_rate_limited_per_user_like_refreshing() {
    let echo = Echo::start();
    let config = tenant_config().replace("refresh: 1000/min", "refresh: 3/min");
    assert!(
        config.contains("refresh: 3/min"),
        "BASE_CONFIG's rate limits moved"
    );
    let gw = Gateway::start(&config, echo.addr, &[]);
    slack_user(&gw);
    let access = access_token(&login(gw.addr, "sam@example.com", PASSWORD));
    for n in 0..3 {
        assert_eq!(switch(&gw, &access, "acme").status, 200, "switch {n}");
    }
    let r = switch(&gw, &access, "initech");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(
        refresh_cookie(&r).is_none(),
        "a refused switch started a session"
    );
}

#[test]
fn switch_needs_a_valid_unrevoked_token_and_a_workspace_field() {
    let (_echo, gw) = start();
    slack_user(&gw);
    let body = json!({"workspace": "acme"}).to_string();
    let r = post(gw.addr, "/api/auth/switch", Some(&body), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Missing token"}));
    let r = switch(&gw, "not-a-token", "acme");
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid or expired token"}));

    let access = access_token(&login(gw.addr, "sam@example.com", PASSWORD));
    let r = post(
        gw.addr,
        "/api/auth/switch",
        Some("{}"),
        &[("Authorization", &format!("Bearer {access}"))],
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "Invalid request: missing field \"workspace\""})
    );
    let r = get_as(gw.addr, "/api/auth/switch", &access);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    let r = post(
        gw.addr,
        "/api/auth/logout-all",
        None,
        &[("Authorization", &format!("Bearer {access}"))],
    );
    assert_eq!(r.status, 204);
    let r = switch(&gw, &access, "acme");
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid or expired token"}));
}

#[test]
fn a_token_for_one_workspace_is_refused_on_another_workspaces_paths() {
    let (echo, gw) = start();
    add_user(&gw, "ann@example.com", "viewer", &["acme:admin:enterprise"]);
    add_user(
        &gw,
        "bob@example.com",
        "viewer",
        &["globex:admin:enterprise"],
    );
    let acme = access_token(&login_to(&gw, "ann@example.com", "acme"));
    for path in [
        "/api/workspaces/globex/channels",
        "/api/workspaces/globex/invoices/in_1",
        "/api/workspaces/globex/acme",
        "/api/workspaces/ACME/channels",
    ] {
        let r = send_as(&gw, "GET", path, &acme);
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json(), json!({"error": "Insufficient permissions"}));
    }
    assert_eq!(
        send_as(
            &gw,
            "DELETE",
            "/api/workspaces/globex/channels/general",
            &acme
        )
        .status,
        403
    );
    assert_eq!(
        echo.seen_count(),
        0,
        "the upstream never saw a cross-tenant request"
    );
    let r = send_as(&gw, "GET", "/api/workspaces/acme/invoices/in_1", &acme);
    assert_eq!(r.status, 200);
    assert_eq!(
        echo.wait_seen(1)[0]["path"],
        "/api/workspaces/acme/invoices/in_1"
    );
}

#[test]
fn plans_gate_features_free_is_refused_and_pro_is_allowed() {
    let (_echo, gw) = start();
    slack_user(&gw);
    // globex is on free, acme and initech on pro: invoices need pro or enterprise.
    let globex = access_token(&login_to(&gw, "sam@example.com", "globex"));
    let r = send_as(&gw, "GET", "/api/workspaces/globex/invoices/in_1", &globex);
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"error": "Insufficient permissions"}));
    // ...while the free plan still reaches the workspace's other routes.
    assert_eq!(
        send_as(&gw, "GET", "/api/workspaces/globex/channels", &globex).status,
        200
    );
    for ws in ["acme", "initech"] {
        let access = access_token(&login_to(&gw, "sam@example.com", ws));
        let r = send_as(
            &gw,
            "GET",
            &format!("/api/workspaces/{ws}/invoices/in_1"),
            &access,
        );
        assert_eq!(r.status, 200, "{ws}");
        assert_eq!(echoed_header_values(&r.json(), "x-user-plan"), vec!["pro"]);
    }
}

#[test]
fn an_owner_rule_with_another_users_id_is_forbidden() {
    let (_echo, gw) = start();
    add_user(&gw, "cleo@example.com", "creator", &[]);
    add_user(&gw, "dan@example.com", "creator", &[]);
    add_user(&gw, "root@example.com", "admin", &[]);
    let ids = |email: &str| {
        let r = login(gw.addr, email, PASSWORD);
        let access = access_token(&r);
        let me = get_as(gw.addr, "/api/auth/me", &access).json();
        (me["id"].as_str().expect("id").to_owned(), access)
    };
    let (cleo_id, cleo) = ids("cleo@example.com");
    let (dan_id, _dan) = ids("dan@example.com");
    let (_, root) = ids("root@example.com");

    assert_eq!(
        send_as(&gw, "GET", &format!("/api/users/{cleo_id}/files"), &cleo).status,
        200
    );
    let r = send_as(&gw, "GET", &format!("/api/users/{dan_id}/files"), &cleo);
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"error": "Insufficient permissions"}));
    // No bypass on this route, not even for an admin.
    assert_eq!(
        send_as(&gw, "GET", &format!("/api/users/{dan_id}/files"), &root).status,
        403
    );

    // Creators delete their own content; admins anyone's (owner_bypass).
    let own = format!("/api/creators/{cleo_id}/content/7");
    let theirs = format!("/api/creators/{dan_id}/content/7");
    assert_eq!(send_as(&gw, "DELETE", &own, &cleo).status, 200);
    assert_eq!(send_as(&gw, "DELETE", &theirs, &cleo).status, 403);
    assert_eq!(send_as(&gw, "DELETE", &theirs, &root).status, 200);
}
