//! The config and tokens most integration tests share.

use super::{mint_hs256, now, TEST_SECRET};
use std::path::Path;
use std::process::Command;

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

/// A self-signed certificate for 127.0.0.1, made with the openssl CLI.
pub fn self_signed(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// A gateway on BASE_CONFIG with a TLS listener too (the `tls:` fields after `listen`, `cert`
/// and `key` given in `extra`), in a directory of its own with a new certificate
/// (`cert.pem`); its HTTPS address and that directory.
pub fn tls_gateway(
    echo: &super::Echo,
    extra: &str,
) -> (super::Gateway, std::net::SocketAddr, std::path::PathBuf) {
    let dir = super::fresh_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir);
    let tls_addr = super::free_addr();
    let config = BASE_CONFIG.replace(
        "store: sqlite://data/portcullis.db",
        &format!("store: sqlite://data/portcullis.db\ntls: {{ listen: \"{tls_addr}\", cert: cert.pem, key: key.pem{extra} }}"),
    );
    let gw = super::Gateway::start_in(dir.clone(), &config, echo.addr, &[]);
    assert!(super::eventually(std::time::Duration::from_secs(5), || {
        std::net::TcpStream::connect(tls_addr).is_ok()
    }));
    (gw, tls_addr, dir)
}
