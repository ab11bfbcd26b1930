//! User and workspace management through the real binary: the admin API under
//! `/api/auth` and the same changes from the CLI against a running gateway's store.
//! Every change that reduces rights ends the affected tokens: at once on this gateway
//! for the admin API, within the revocation poll (500 ms) for the CLI.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

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
  - {{ path: /api/browse/**, methods: [GET], upstream: app }}
"#
    )
}

/// A running gateway with `root@example.com` (global admin, no workspace) and the Slack
/// user `sam@example.com` (viewer; admin in acme/pro, member in globex/free, guest in
/// initech/pro), plus root's unscoped access token.
struct World {
    _echo: Echo,
    gw: Gateway,
    root: String,
}

impl World {
    fn start() -> World {
        let echo = Echo::start();
        let gw = Gateway::start(&tenant_config(), echo.addr, &[]);
        let (code, out, err) = cli(
            &gw,
            &[
                "user",
                "add",
                "--email",
                "root@example.com",
                "--role",
                "admin",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = cli(
            &gw,
            &[
                "user",
                "add",
                "--email",
                "sam@example.com",
                "--role",
                "viewer",
                "--workspace",
                "acme:admin:pro",
                "--workspace",
                "globex:member:free",
                "--workspace",
                "initech:guest:pro",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{out}{err}");
        let root = access_token(&login(gw.addr, "root@example.com", PASSWORD));
        World {
            _echo: echo,
            gw,
            root,
        }
    }

    fn sam_id(&self) -> String {
        let access = access_token(&login(self.gw.addr, "sam@example.com", PASSWORD));
        let me = get_as(self.gw.addr, "/api/auth/me", &access).json();
        me["id"].as_str().expect("id").to_owned()
    }

    /// Sam's access token and refresh cookie for a session scoped to `ws`.
    fn sam_in(&self, ws: &str) -> (String, String) {
        let body =
            json!({"email": "sam@example.com", "password": PASSWORD, "workspace": ws}).to_string();
        let r = post(self.gw.addr, "/api/auth/login", Some(&body), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        (
            access_token(&r),
            refresh_cookie(&r).expect("refresh cookie"),
        )
    }

    /// An admin API call with `access` as the Bearer token.
    fn call(&self, method: &str, path: &str, body: Option<Value>, access: &str) -> Response {
        let body = body.map(|b| b.to_string());
        let auth = format!("Bearer {access}");
        let mut headers = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(
            self.gw.addr,
            method,
            &format!("/api/auth{path}"),
            &headers,
            body.as_deref().map(str::as_bytes),
        )
    }

    fn status_as(&self, method: &str, path: &str, access: &str) -> u16 {
        request(
            self.gw.addr,
            method,
            path,
            &[("Authorization", &format!("Bearer {access}"))],
            None,
        )
        .status
    }

    /// (read, post a message, delete a channel) in `ws` with `access`.
    fn decisions(&self, ws: &str, access: &str) -> (u16, u16, u16) {
        (
            self.status_as("GET", &format!("/api/workspaces/{ws}/channels"), access),
            self.status_as("POST", &format!("/api/workspaces/{ws}/messages"), access),
            self.status_as(
                "DELETE",
                &format!("/api/workspaces/{ws}/channels/general"),
                access,
            ),
        )
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli(&self.gw, args, "")
    }
}

fn cli(gw: &Gateway, args: &[&str], stdin: &str) -> (i32, String, String) {
    let config = gw.dir.join("gateway.yaml");
    let mut all = args.to_vec();
    all.extend_from_slice(&["-c", config.to_str().expect("utf-8 path")]);
    portcullis_with_stdin(&all, &[], stdin)
}

fn assert_invalid_token(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json(), json!({"error": "Invalid or expired token"}));
}

#[test]
fn the_admin_api_refuses_non_admins_with_403_and_anonymous_callers_with_401() {
    let w = World::start();
    let sam_id = w.sam_id();
    let viewer = access_token(&login(w.gw.addr, "sam@example.com", PASSWORD));
    // Admin of one workspace is not admin of every account.
    let (workspace_admin, _) = w.sam_in("acme");
    let calls = [
        ("GET", "/users".to_owned(), None),
        (
            "PATCH",
            format!("/users/{sam_id}"),
            Some(json!({"role": "admin"})),
        ),
        (
            "PUT",
            format!("/users/{sam_id}/workspaces/globex"),
            Some(json!({"role": "admin"})),
        ),
        ("DELETE", format!("/users/{sam_id}/workspaces/globex"), None),
        (
            "PUT",
            "/workspaces/globex".to_owned(),
            Some(json!({"plan": "enterprise"})),
        ),
    ];
    for (method, path, body) in &calls {
        for access in [&viewer, &workspace_admin] {
            let r = w.call(method, path, body.clone(), access);
            assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
            assert_eq!(r.json(), json!({"error": "Insufficient permissions"}));
        }
        let r = request(
            w.gw.addr,
            method,
            &format!("/api/auth{path}"),
            &[],
            body.as_ref().map(|b| b.to_string().into_bytes()).as_deref(),
        );
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.json(), json!({"error": "Missing token"}));
    }
    // Nothing changed, and the refused caller's tokens still work.
    let (globex, _) = w.sam_in("globex");
    assert_eq!(w.decisions("globex", &globex), (200, 200, 403));
    assert_eq!(w.decisions("acme", &workspace_admin), (200, 200, 200));
}

#[test]
fn an_admin_lists_users_with_their_roles_and_memberships() {
    let w = World::start();
    let sam_id = w.sam_id();
    let r = w.call("GET", "/users", None, &w.root);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut users = r.json()["users"].as_array().expect("users").clone();
    users.sort_by_key(|u| u["email"].as_str().unwrap_or_default().to_owned());
    let root_id = users[0]["id"].clone();
    assert_eq!(
        Value::Array(users),
        json!([
            {"id": root_id, "email": "root@example.com", "role": "admin", "disabled": false,
             "memberships": []},
            {"id": sam_id, "email": "sam@example.com", "role": "viewer", "disabled": false,
             "memberships": [
                 {"workspace": "acme", "role": "admin", "plan": "pro"},
                 {"workspace": "globex", "role": "member", "plan": "free"},
                 {"workspace": "initech", "role": "guest", "plan": "pro"},
             ]},
        ])
    );
    let (code, out, err) = w.cli(&["user", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("acme:admin:pro,globex:member:free,initech:guest:pro"),
        "{out}"
    );
}

#[test]
fn admin_requests_are_validated_and_unknown_targets_are_404() {
    let w = World::start();
    let sam_id = w.sam_id();
    let user = format!("/users/{sam_id}");
    let cases = [
        ("PATCH", user.clone(), json!({"role": "root"}),
         "Invalid request: unknown role \"root\" (known: viewer, creator, admin, member, guest)"),
        ("PATCH", user.clone(), json!({"disabled": "yes"}),
         "Invalid request: field \"disabled\" must be true or false"),
        ("PATCH", user.clone(), json!({"disable": true}), "Invalid request: unknown field \"disable\""),
        ("PUT", format!("{user}/workspaces/acme"), json!({}), "Invalid request: missing field \"role\""),
        ("PUT", format!("{user}/workspaces/acme"), json!({"role": "owner"}),
         "Invalid request: unknown role \"owner\" (known: viewer, creator, admin, member, guest)"),
        ("PUT", "/workspaces/acme".to_owned(), json!({"plan": "gold"}),
         "Invalid request: unknown plan \"gold\" (known: free, pro, enterprise)"),
    ];
    for (method, path, body, error) in cases {
        let r = w.call(method, &path, Some(body), &w.root);
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.json(), json!({ "error": error }));
    }
    let not_found = [
        (
            "PATCH",
            "/users/nobody".to_owned(),
            Some(json!({"role": "viewer"})),
        ),
        (
            "PUT",
            "/users/nobody/workspaces/acme".to_owned(),
            Some(json!({"role": "guest"})),
        ),
        (
            "PUT",
            format!("{user}/workspaces/nowhere"),
            Some(json!({"role": "guest"})),
        ),
        ("DELETE", format!("{user}/workspaces/nowhere"), None),
        ("DELETE", "/users/nobody/workspaces/acme".to_owned(), None),
        ("GET", "/users/".to_owned(), None),
        (
            "PUT",
            "/workspaces/a%20b".to_owned(),
            Some(json!({"plan": "pro"})),
        ),
    ];
    for (method, path, body) in not_found {
        let r = w.call(method, &path, body, &w.root);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.json(), json!({"error": "Not found"}));
    }
    let r = w.call("POST", &user, Some(json!({})), &w.root);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PATCH"));
    // A refused change changed nothing: sam is still a viewer with three memberships.
    let r = w.call("PATCH", &user, Some(json!({})), &w.root);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user"]["role"], "viewer");
    assert_eq!(
        r.json()["user"]["memberships"].as_array().map(Vec::len),
        Some(3)
    );
}

#[test]
fn removing_a_membership_via_the_admin_api_ends_its_tokens_at_once() {
    let w = World::start();
    let sam_id = w.sam_id();
    let (acme, acme_refresh) = w.sam_in("acme");
    let (globex, _) = w.sam_in("globex");
    assert_eq!(w.decisions("acme", &acme), (200, 200, 200));

    let r = w.call(
        "DELETE",
        &format!("/users/{sam_id}/workspaces/acme"),
        None,
        &w.root,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    // The very next proxied request, no waiting: every token of the user is gone.
    assert_invalid_token(&get_as(w.gw.addr, "/api/workspaces/acme/channels", &acme));
    assert_invalid_token(&get_as(
        w.gw.addr,
        "/api/workspaces/globex/channels",
        &globex,
    ));
    let r = refresh(w.gw.addr, &acme_refresh);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid or reused token"}));
    let body =
        json!({"email": "sam@example.com", "password": PASSWORD, "workspace": "acme"}).to_string();
    let r = post(w.gw.addr, "/api/auth/login", Some(&body), &[]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"error": "Not a member of this workspace"}));
    // The other memberships remain.
    let (globex, _) = w.sam_in("globex");
    assert_eq!(w.decisions("globex", &globex), (200, 200, 403));
    // Removing it again: there is no such membership.
    let r = w.call(
        "DELETE",
        &format!("/users/{sam_id}/workspaces/acme"),
        None,
        &w.root,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn downgrading_a_workspace_role_via_the_admin_api_ends_its_tokens_at_once() {
    let w = World::start();
    let sam_id = w.sam_id();
    let (acme, _) = w.sam_in("acme");
    assert_eq!(w.decisions("acme", &acme), (200, 200, 200));
    let r = w.call(
        "PUT",
        &format!("/users/{sam_id}/workspaces/acme"),
        Some(json!({"role": "guest"})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["user"]["memberships"][0],
        json!({"workspace": "acme", "role": "guest", "plan": "pro"})
    );
    assert_invalid_token(&request(
        w.gw.addr,
        "DELETE",
        "/api/workspaces/acme/channels/general",
        &[("Authorization", &format!("Bearer {acme}"))],
        None,
    ));
    let (acme, _) = w.sam_in("acme");
    assert_eq!(w.decisions("acme", &acme), (200, 403, 403));
}

#[test]
fn adding_a_membership_ends_no_session_and_the_user_can_switch_to_it() {
    let w = World::start();
    let sam_id = w.sam_id();
    let (globex, _) = w.sam_in("globex");
    let r = w.call(
        "PUT",
        "/workspaces/hooli",
        Some(json!({"plan": "enterprise"})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"workspace": {"id": "hooli", "plan": "enterprise"}})
    );
    let r = w.call(
        "PUT",
        &format!("/users/{sam_id}/workspaces/hooli"),
        Some(json!({"role": "member"})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(w.decisions("globex", &globex), (200, 200, 403));
    let r = post(
        w.gw.addr,
        "/api/auth/switch",
        Some(r#"{"workspace": "hooli"}"#),
        &[("Authorization", &format!("Bearer {globex}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let hooli = access_token(&r);
    assert_eq!(w.decisions("hooli", &hooli), (200, 200, 403));
    assert_eq!(
        w.status_as("GET", "/api/workspaces/hooli/invoices/1", &hooli),
        200
    );
}

#[test]
fn changing_a_workspaces_plan_ends_its_members_sessions_at_once() {
    let w = World::start();
    let (acme, _) = w.sam_in("acme");
    let (globex, _) = w.sam_in("globex");
    assert_eq!(
        w.status_as("GET", "/api/workspaces/acme/invoices/1", &acme),
        200
    );
    let r = w.call(
        "PUT",
        "/workspaces/acme",
        Some(json!({"plan": "free"})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"workspace": {"id": "acme", "plan": "free"}})
    );
    assert_invalid_token(&get_as(w.gw.addr, "/api/workspaces/acme/invoices/1", &acme));
    assert_invalid_token(&get_as(
        w.gw.addr,
        "/api/workspaces/globex/channels",
        &globex,
    ));
    // The admin is no member of acme: their token is untouched.
    assert_eq!(w.call("GET", "/users", None, &w.root).status, 200);
    let (acme, _) = w.sam_in("acme");
    assert_eq!(
        w.status_as("GET", "/api/workspaces/acme/invoices/1", &acme),
        403
    );
    assert_eq!(
        w.status_as("GET", "/api/workspaces/acme/channels", &acme),
        200
    );
}

#[test]
fn changing_a_users_role_or_disabling_them_via_the_admin_api_ends_sessions_at_once() {
    let w = World::start();
    let sam_id = w.sam_id();
    let unscoped = access_token(&login(w.gw.addr, "sam@example.com", PASSWORD));
    let (acme, _) = w.sam_in("acme");
    let r = w.call(
        "PATCH",
        &format!("/users/{sam_id}"),
        Some(json!({"role": "creator"})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["role"], "creator");
    assert_eq!(r.json()["user"]["disabled"], false);
    assert_invalid_token(&get_as(w.gw.addr, "/api/browse/x", &unscoped));
    assert_invalid_token(&get_as(w.gw.addr, "/api/workspaces/acme/channels", &acme));
    let unscoped = access_token(&login(w.gw.addr, "sam@example.com", PASSWORD));
    assert_eq!(
        get_as(w.gw.addr, "/api/auth/me", &unscoped).json()["role"],
        "creator"
    );

    let r = w.call(
        "PATCH",
        &format!("/users/{sam_id}"),
        Some(json!({"disabled": true})),
        &w.root,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["disabled"], true);
    assert_invalid_token(&get_as(w.gw.addr, "/api/browse/x", &unscoped));
    let r = login(w.gw.addr, "sam@example.com", PASSWORD);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid credentials"}));

    let r = w.call(
        "PATCH",
        &format!("/users/{sam_id}"),
        Some(json!({"disabled": false})),
        &w.root,
    );
    assert_eq!(r.status, 200);
    assert_eq!(login(w.gw.addr, "sam@example.com", PASSWORD).status, 200);
}

#[test]
fn removing_a_membership_from_the_cli_ends_its_tokens_on_a_running_gateway() {
    let w = World::start();
    let (acme, _) = w.sam_in("acme");
    assert_eq!(w.decisions("acme", &acme), (200, 200, 200));
    let (code, out, err) = w.cli(&[
        "user",
        "remove-workspace",
        "--email",
        "sam@example.com",
        "--workspace",
        "acme",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed from acme"), "{out}");
    assert!(
        eventually(Duration::from_secs(3), || {
            get_as(w.gw.addr, "/api/workspaces/acme/channels", &acme).status == 401
        }),
        "the acme token still works after the membership was removed"
    );
    assert_invalid_token(&get_as(w.gw.addr, "/api/workspaces/acme/channels", &acme));
    let (code, _, err) = w.cli(&[
        "user",
        "remove-workspace",
        "--email",
        "sam@example.com",
        "--workspace",
        "acme",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not a member"), "{err}");
}

#[test]
fn downgrading_a_workspace_role_from_the_cli_ends_its_tokens_on_a_running_gateway() {
    let w = World::start();
    let (acme, _) = w.sam_in("acme");
    let (code, out, err) = w.cli(&[
        "user",
        "set-workspace",
        "--email",
        "sam@example.com",
        "--workspace",
        "acme",
        "--role",
        "member",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sessions were ended"), "{out}");
    assert!(
        eventually(Duration::from_secs(3), || {
            get_as(w.gw.addr, "/api/workspaces/acme/channels", &acme).status == 401
        }),
        "the admin-in-acme token still works after the downgrade"
    );
    let (acme, _) = w.sam_in("acme");
    assert_eq!(w.decisions("acme", &acme), (200, 200, 403));

    let (code, _, err) = w.cli(&[
        "user",
        "set-workspace",
        "--email",
        "sam@example.com",
        "--workspace",
        "acme",
        "--role",
        "owner",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(r#"unknown role "owner""#), "{err}");
    let (code, _, err) = w.cli(&[
        "user",
        "set-workspace",
        "--email",
        "sam@example.com",
        "--workspace",
        "nowhere",
        "--role",
        "guest",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn workspace_set_plan_from_the_cli_creates_or_changes_a_plan_and_ends_member_sessions() {
    let w = World::start();
    let (globex, _) = w.sam_in("globex");
    assert_eq!(
        w.status_as("GET", "/api/workspaces/globex/invoices/1", &globex),
        403
    );
    let (code, out, err) = w.cli(&["workspace", "set-plan", "globex", "pro"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("now on plan pro"), "{out}");
    assert!(
        eventually(Duration::from_secs(3), || {
            get_as(w.gw.addr, "/api/workspaces/globex/channels", &globex).status == 401
        }),
        "the free-plan token still works after the plan change"
    );
    let (globex, _) = w.sam_in("globex");
    assert_eq!(
        w.status_as("GET", "/api/workspaces/globex/invoices/1", &globex),
        200
    );

    let (code, out, _) = w.cli(&["workspace", "set-plan", "umbrella", "free"]);
    assert_eq!(code, 0);
    assert!(out.contains("created workspace umbrella"), "{out}");
    let (code, _, err) = w.cli(&["workspace", "set-plan", "umbrella", "gold"]);
    assert_eq!(code, 1);
    assert!(err.contains(r#"unknown plan "gold""#), "{err}");
}

#[test]
fn the_tenant_commands_explain_themselves_with_help() {
    for args in [
        &["workspace", "--help"][..],
        &["workspace", "set-plan", "--help"],
        &["user", "set-workspace", "--help"],
        &["user", "remove-workspace", "--help"],
    ] {
        let (code, out, err) = portcullis(args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}
