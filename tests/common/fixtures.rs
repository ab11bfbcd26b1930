//! The config and tokens most integration tests share.

use super::{mint_hs256, now, TEST_SECRET};

/// A gateway in front of one echo upstream, with a route for each rule kind.
/// `{LISTEN}`, `{ADMIN}` and `{UPSTREAM}` are filled in by `Gateway::start`.
pub const BASE_CONFIG: &str = r#"
listen: "{LISTEN}"
admin_listen: "{ADMIN}"
store: sqlite://data/portcullis.db
upstreams:
  app: { addrs: ["{UPSTREAM}"], connect_timeout: 1s, read_timeout: 2s }
  dead: { addrs: ["127.0.0.1:1"], connect_timeout: 1s }
auth:
  issuer: https://gw.test
  audience: api
  rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 1000/min, signup: 1000/min }
roles: [viewer, creator, admin]
plans: [free, pro, enterprise]
routes:
  - { path: /api/auth/**, auth: none }
  - { path: /health, upstream: app, auth: none }
  - { path: /api/protected, upstream: app }
  - { path: /api/admin/**, upstream: app, roles: [admin] }
  - { path: /api/browse/**, upstream: app }
  - { path: /api/upload, methods: [POST], upstream: app, roles: [creator, admin] }
  - { path: "/api/users/{user}/**", upstream: app, owner: user }
  - { path: "/api/workspaces/{ws}/**", upstream: app, workspace: ws }
  - { path: /api/reports/**, upstream: app, plans: [pro, enterprise] }
  - { path: /ws, upstream: app }
  - { path: /dead/**, upstream: dead, auth: none }
  - { path: /__close, upstream: app, auth: none }
  - { path: /__sleep/*, upstream: app, auth: none }
"#;

/// The JOSE header of the gateway's HS256 tokens.
pub const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs256"}"#;

/// Claims valid for ten minutes; `extra` is appended raw (start it with a comma).
pub fn claims(sub: &str, role: &str, extra: &str) -> String {
    claims_until(sub, role, extra, now() + 600)
}

/// Claims with a chosen `exp` (in the past for expired tokens).
pub fn claims_until(sub: &str, role: &str, extra: &str, exp: u64) -> String {
    let now = now().min(exp.saturating_sub(1));
    format!(
        r#"{{"iss":"https://gw.test","aud":"api","sub":"{sub}","iat":{now},"nbf":{now},"exp":{exp},"jti":"{sub}-{}","role":"{role}"{extra}}}"#,
        next_jti()
    )
}

/// A valid token for BASE_CONFIG signed with the test secret.
pub fn token(sub: &str, role: &str, extra: &str) -> String {
    mint_hs256(TEST_SECRET.as_bytes(), HEADER, &claims(sub, role, extra))
}

fn next_jti() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
