//! Helpers for the auth-endpoint tests: JSON posts, the refresh cookie, metrics lookups.

use super::{request, Response, BASE_CONFIG};
use std::net::SocketAddr;

/// The refresh cookie's name (the default of `auth.cookie_name`).
pub const REFRESH_COOKIE: &str = "__Secure-refresh_token";

/// A password that passes the length policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// BASE_CONFIG with `extra` lines (indented two spaces) added to its `auth:` block.
pub fn config_with_auth(extra: &[&str]) -> String {
    let mut lines = String::from("  audience: api\n");
    for line in extra {
        lines.push_str("  ");
        lines.push_str(line);
        lines.push('\n');
    }
    BASE_CONFIG.replacen("  audience: api\n", &lines, 1)
}

/// POSTs a JSON body (or nothing) with extra headers, declared `application/json` as the
/// auth endpoints require, unless `headers` name a Content-Type of their own.
pub fn post(
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Response {
    let mut all = headers.to_vec();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        all.push(("Content-Type", "application/json"));
    }
    request(addr, "POST", path, &all, body.map(str::as_bytes))
}

pub fn credentials(email: &str, password: &str) -> String {
    serde_json::json!({ "email": email, "password": password }).to_string()
}

pub fn signup(addr: SocketAddr, email: &str) -> Response {
    post(
        addr,
        "/api/auth/signup",
        Some(&credentials(email, PASSWORD)),
        &[],
    )
}

pub fn login(addr: SocketAddr, email: &str, password: &str) -> Response {
    post(
        addr,
        "/api/auth/login",
        Some(&credentials(email, password)),
        &[],
    )
}

/// Signs up and logs in; returns (user id, access token, refresh token).
pub fn signed_in(addr: SocketAddr, email: &str) -> (String, String, String) {
    let created = signup(addr, email);
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["user"]["id"]
        .as_str()
        .expect("user id")
        .to_owned();
    let r = login(addr, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    (
        id,
        access_token(&r),
        refresh_cookie(&r).expect("refresh cookie"),
    )
}

pub fn access_token(r: &Response) -> String {
    r.json()["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {}", r.text()))
        .to_owned()
}

/// The refresh token a response set, if any (an empty value clears the cookie).
pub fn refresh_cookie(r: &Response) -> Option<String> {
    r.headers_named("set-cookie").into_iter().find_map(|c| {
        let value = c.strip_prefix(REFRESH_COOKIE)?.strip_prefix('=')?;
        Some(value.split(';').next().unwrap_or_default().to_owned())
    })
}

pub fn refresh(addr: SocketAddr, token: &str) -> Response {
    let cookie = format!("{REFRESH_COOKIE}={token}");
    post(addr, "/api/auth/refresh", None, &[("Cookie", &cookie)])
}

/// GET with a Bearer token.
pub fn get_as(addr: SocketAddr, path: &str, access: &str) -> Response {
    super::get(
        addr,
        path,
        &[("Authorization", &format!("Bearer {access}"))],
    )
}

/// The value of one Prometheus sample line, e.g. `portcullis_logins_total{result="success"}`.
pub fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = super::get(admin, "/metrics", &[]).text();
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The message of the gateway's JSON refusal (`{"error": ...}`).
pub fn error_of(r: &Response) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

/// A call to the auth module's `path` (the part after `/api/auth`), with a Bearer token
/// and a JSON body when given (a POST always says `application/json`).
pub fn auth_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    bearer: Option<&str>,
) -> Response {
    let body = body.map(|b| b.to_string());
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    if body.is_some() || method == "POST" {
        headers.push(("Content-Type", "application/json"));
    }
    let path = format!("/api/auth{path}");
    request(
        addr,
        method,
        &path,
        &headers,
        body.as_deref().map(str::as_bytes),
    )
}

/// `portcullis user add` (password `PASSWORD`) against `gw`'s config, with `env` (the
/// store the gateway was started with, say).
pub fn add_user_with(gw: &super::Gateway, email: &str, role: &str, env: &[(&str, &str)]) {
    let config = gw.dir.join("gateway.yaml");
    let config = config.to_str().expect("utf-8 path");
    let args = [
        "user",
        "add",
        "--email",
        email,
        "--role",
        role,
        "--password-stdin",
        "-c",
        config,
    ];
    let (code, out, err) = super::portcullis_with_stdin(&args, env, &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{out}{err}");
}
