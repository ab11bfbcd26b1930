//! Forward-auth mode (docs/forward-auth.md): the gateway as the decision behind another
//! proxy. Questions asked straight at `forward_auth_listen` get the answers a proxied
//! request gets; then real nginx (`auth_request`) and Caddy (`forward_auth`) processes, run
//! from the integration files in docs/forward-auth/ in front of the echo upstream, let
//! through exactly what the gateway allows. The proxy tests skip, saying so, when the binary
//! is missing, unless `PORTCULLIS_TEST_PROXIES` is set (`.ci/run` installs both and sets
//! it).

mod common;

use common::*;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Routes BASE_CONFIG lacks: a per-user and a per-IP rate limit.
const LIMITED_ROUTES: &str = "  - { path: /api/limited, upstream: app, rate_limit: 2/min }
  - { path: /api/open, upstream: app, auth: none, rate_limit: 1/min }
";

/// A gateway with a decision listener, in front of its own echo upstream.
struct Setup {
    echo: Echo,
    gw: Gateway,
    /// Where `forward_auth_listen` listens.
    decisions: SocketAddr,
}

/// Starts a gateway on BASE_CONFIG with the limited routes, `forward_auth_listen` on a free
/// port and `extra` top-level lines.
fn start(extra: &str) -> Setup {
    let echo = Echo::start();
    let decisions = free_addr();
    let yaml =
        format!("{BASE_CONFIG}{LIMITED_ROUTES}forward_auth_listen: \"{decisions}\"\n{extra}");
    let gw = Gateway::start(&yaml, echo.addr, &[]);
    Setup {
        echo,
        gw,
        decisions,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asks the decision listener about `method uri`, Traefik's and Caddy's way.
fn ask(decisions: SocketAddr, method: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("X-Forwarded-Method", method), ("X-Forwarded-Uri", uri)];
    all.extend_from_slice(headers);
    get(decisions, "/verify", &all)
}

fn identity_fields(r: &Response) -> Vec<(String, String)> {
    let names = [
        "x-user-id",
        "x-user-role",
        "x-workspace-id",
        "x-user-plan",
        "x-user-issuer",
    ];
    r.headers
        .iter()
        .filter(|(n, _)| names.contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn an_allowed_request_is_answered_200_with_the_identity_fields_and_no_body() {
    let s = start("");
    let t = token("u1", "creator", r#","ws":"w1","plan":"pro""#);
    // A client's own identity fields in the question change nothing.
    let r = ask(
        s.decisions,
        "POST",
        "/api/upload?draft=1",
        &[("Authorization", &bearer(&t)), ("X-User-Id", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        identity_fields(&r),
        pairs(&[
            ("x-user-id", "u1"),
            ("x-user-role", "creator"),
            ("x-workspace-id", "w1"),
            ("x-user-plan", "pro"),
            ("x-user-issuer", "https://gw.test"),
        ])
    );
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("x-request-id").is_some());

    // nginx's fields, and Envoy's path after /verify with the method of the question itself.
    let nginx = get(
        s.decisions,
        "/verify",
        &[
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/api/upload"),
            ("Authorization", &bearer(&t)),
        ],
    );
    assert_eq!(nginx.status, 200, "{}", nginx.text());
    let envoy = request(
        s.decisions,
        "POST",
        "/verify/api/upload",
        &[("Authorization", &bearer(&t))],
        None,
    );
    assert_eq!(envoy.status, 200, "{}", envoy.text());
    assert_eq!(
        identity_fields(&envoy)[0],
        ("x-user-id".to_owned(), "u1".to_owned())
    );
    // Only the method decides: Envoy asking with GET is not asking about a POST.
    let get_upload = request(
        s.decisions,
        "GET",
        "/verify/api/upload",
        &[("Authorization", &bearer(&t))],
        None,
    );
    assert_eq!(get_upload.status, 404, "the upload route takes POST only");

    // A public route, and a route of the auth module (no upstream), are decided by their
    // rules like any other: allowed, with no identity even when a token comes along.
    for (method, uri) in [("GET", "/health"), ("POST", "/api/auth/login")] {
        let r = ask(s.decisions, method, uri, &[("Authorization", &bearer(&t))]);
        assert_eq!(r.status, 200, "{method} {uri}: {}", r.text());
        assert!(identity_fields(&r).is_empty(), "{method} {uri}");
    }
    assert_eq!(
        s.echo.seen_count(),
        0,
        "a question never reaches the upstream"
    );
}

#[test]
fn a_question_gets_the_refusal_the_proxy_gives_the_same_request() {
    let s = start("");
    let viewer = token("u1", "viewer", "");
    let admin = token("root", "admin", "");
    let expired = mint_hs256(
        TEST_SECRET.as_bytes(),
        HEADER,
        &claims_until("u1", "viewer", "", now() - 60),
    );
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/api/protected", None, 401),
        ("GET", "/api/protected", Some("not.a.token"), 401),
        ("GET", "/api/protected", Some(&expired), 401),
        ("GET", "/api/admin/x", Some(&viewer), 403),
        ("GET", "//api/admin/x", Some(&viewer), 403),
        ("GET", "/api/browse/../admin/x", Some(&viewer), 403),
        ("GET", "/api/admin%2Fx", Some(&admin), 400),
        ("GET", "/api/admin/%2e%2e/x", Some(&admin), 400),
        ("GET", "/api/nowhere", Some(&viewer), 404),
        ("POST", "/api/upload", Some(&viewer), 403),
        ("GET", "/api/users/u2/files", Some(&viewer), 403),
        ("TRACE", "/api/protected", Some(&viewer), 405),
    ];
    for &(method, path, token, status) in cases {
        let auth = token.map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let proxied = request(s.gw.addr, method, path, &headers, None);
        let asked = ask(s.decisions, method, path, &headers);
        assert_eq!(
            proxied.status,
            status,
            "{method} {path}: {}",
            proxied.text()
        );
        assert_eq!(asked.status, status, "{method} {path}: {}", asked.text());
        assert_eq!(asked.text(), proxied.text(), "{method} {path}");
        for field in ["www-authenticate", "retry-after", "allow", "content-type"] {
            assert_eq!(
                asked.header(field),
                proxied.header(field),
                "{method} {path}: {field}"
            );
        }
    }
    assert_eq!(s.echo.seen_count(), 0);
}

#[test]
fn a_question_without_a_clear_original_request_is_a_400() {
    let s = start("");
    let t = token("u1", "admin", "");
    let auth = bearer(&t);
    // (target, the question's fields, the 400's detail)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "/verify",
            &[],
            "no original request: expected X-Forwarded-Method and X-Forwarded-Uri, X-Original-Method and X-Original-URI, or /verify/<path>",
        ),
        (
            "/verify",
            &[("X-Forwarded-Uri", "/api/protected")],
            "no original method: expected X-Forwarded-Method or X-Original-Method",
        ),
        // A client of nginx sent Traefik's field: which one nginx wrote cannot be told.
        (
            "/verify",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/api/admin/x"),
                ("X-Forwarded-Uri", "/health"),
            ],
            "the original URI fields disagree",
        ),
        (
            "/verify",
            &[("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "health")],
            "request target must be an absolute path",
        ),
    ];
    for (target, fields, detail) in cases {
        let mut headers = fields.to_vec();
        headers.push(("Authorization", auth.as_str()));
        let r = get(s.decisions, target, &headers);
        assert_eq!(r.status, 400, "{fields:?}");
        assert_eq!(error_of(&r), format!("Invalid request: {detail}"));
    }
}

#[test]
fn revocation_and_rate_limits_apply_to_questions_as_to_proxied_requests() {
    let s = start("");
    let (_, access, _) = signed_in(s.gw.addr, "fa@example.com");
    let auth = bearer(&access);
    let allowed = ask(
        s.decisions,
        "GET",
        "/api/protected",
        &[("Authorization", &auth)],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let out = post(
        s.gw.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &auth)],
    );
    assert_eq!(out.status, 204, "{}", out.text());
    let revoked = ask(
        s.decisions,
        "GET",
        "/api/protected",
        &[("Authorization", &auth)],
    );
    assert_eq!(revoked.status, 401);
    assert_eq!(
        revoked.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );

    // One count per user, whichever listener the request came through.
    let t = bearer(&token("limited-user", "viewer", ""));
    assert_eq!(
        get(s.gw.addr, "/api/limited", &[("Authorization", &t)]).status,
        200
    );
    assert_eq!(
        ask(s.decisions, "GET", "/api/limited", &[("Authorization", &t)]).status,
        200
    );
    let limited = ask(s.decisions, "GET", "/api/limited", &[("Authorization", &t)]);
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // A public route counts per client: the address the proxy appended to X-Forwarded-For.
    let open = |client: &str| {
        let forwarded = format!("203.0.113.250, {client}");
        ask(
            s.decisions,
            "GET",
            "/api/open",
            &[("X-Forwarded-For", &forwarded)],
        )
        .status
    };
    assert_eq!(open("192.0.2.1"), 200);
    assert_eq!(open("192.0.2.1"), 429);
    assert_eq!(open("192.0.2.2"), 200);
}

#[test]
fn questions_are_counted_and_logged_with_mode_forward_auth_as_the_original_request() {
    let s = start("");
    let creator = bearer(&token("u1", "creator", ""));
    let viewer = bearer(&token("u2", "viewer", ""));
    assert_eq!(
        ask(
            s.decisions,
            "POST",
            "/api/upload",
            &[("Authorization", &creator)]
        )
        .status,
        200
    );
    assert_eq!(
        ask(
            s.decisions,
            "POST",
            "/api/upload",
            &[("Authorization", &viewer)]
        )
        .status,
        403
    );
    assert_eq!(get(s.gw.addr, "/api/protected", &[]).status, 401);
    let m = s.gw.admin_addr;
    let series = [
        (
            r#"portcullis_requests_total{method="POST",mode="forward_auth",route="/api/upload",status="200"}"#,
            1.0,
        ),
        (
            r#"portcullis_requests_total{method="POST",mode="forward_auth",route="/api/upload",status="403"}"#,
            1.0,
        ),
        (
            r#"portcullis_requests_total{method="GET",mode="proxy",route="/api/protected",status="401"}"#,
            1.0,
        ),
        (
            r#"portcullis_auth_decisions_total{decision="allow",mode="forward_auth"}"#,
            1.0,
        ),
        (
            r#"portcullis_auth_decisions_total{decision="forbidden",mode="forward_auth"}"#,
            1.0,
        ),
        (
            r#"portcullis_auth_decisions_total{decision="missing_token",mode="proxy"}"#,
            1.0,
        ),
        (
            r#"portcullis_auth_decisions_total{decision="allow",mode="proxy"}"#,
            0.0,
        ),
    ];
    // Counted in the logging phase, just after the answer is written.
    let counted = eventually(Duration::from_secs(3), || {
        series
            .iter()
            .all(|(name, value)| metric(m, name) == Some(*value))
    });
    assert!(counted, "{}", get(m, "/metrics", &[]).text());

    let logged = || -> Vec<serde_json::Value> {
        s.gw.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(eventually(Duration::from_secs(3), || logged().len() >= 3));
    let lines = logged();
    let allowed = lines
        .iter()
        .find(|l| l["status"] == 200)
        .expect("the allowed question's line");
    assert_eq!(allowed["mode"], "forward_auth");
    assert_eq!(allowed["method"], "POST");
    assert_eq!(allowed["path"], "/api/upload");
    assert_eq!(allowed["route"], "/api/upload");
    assert_eq!(allowed["user"], "u1");
    assert_eq!(allowed["decision"], "allow");
    let proxied = lines
        .iter()
        .find(|l| l["status"] == 401)
        .expect("the proxied line");
    assert_eq!(proxied["mode"], "proxy");
}

#[test]
fn with_trusted_proxies_only_those_peers_may_ask() {
    let t = bearer(&token("u1", "viewer", ""));
    let elsewhere = start("forward_auth: { trusted_proxies: [10.0.0.0/8, \"fd00::/8\"] }\n");
    let r = ask(
        elsewhere.decisions,
        "GET",
        "/api/protected",
        &[("Authorization", &t)],
    );
    assert_eq!(r.status, 403);
    assert!(identity_fields(&r).is_empty());
    let logged = eventually(Duration::from_secs(3), || {
        elsewhere
            .gw
            .stdout_lines()
            .iter()
            .any(|l| l.contains(r#""decision":"untrusted_peer""#))
    });
    assert!(logged, "{:?}", elsewhere.gw.stdout_lines());

    let here = start("forward_auth: { trusted_proxies: [127.0.0.1] }\n");
    let r = ask(
        here.decisions,
        "GET",
        "/api/protected",
        &[("Authorization", &t)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn check_warns_about_a_decision_listener_clients_could_reach_and_refuses_bad_blocks() {
    let dir = fresh_temp_dir();
    let base = BASE_CONFIG
        .replace("{LISTEN}", "127.0.0.1:8080")
        .replace("{ADMIN}", "127.0.0.1:9090")
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let check = |name: &str, extra: &str| {
        let path = write_file(&dir, name, &format!("{base}{extra}"));
        portcullis(&["check", "-c", path.to_str().unwrap()], &[])
    };
    let (code, _, err) = check("public.yaml", "forward_auth_listen: 0.0.0.0:9191\n");
    assert_eq!(code, 0, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("forward_auth_listen"))
        .unwrap_or_else(|| panic!("no warning in {err}"));
    assert!(
        warning.ends_with("forward_auth_listen: 0.0.0.0:9191 reaches beyond loopback and private networks, and forward_auth.trusted_proxies is empty: any client that reaches it can ask for decisions with made-up X-Forwarded-* headers; bind it to a private address or list the proxies"),
        "{warning}"
    );
    for quiet in [
        "forward_auth_listen: 10.1.2.3:9191\n",
        "forward_auth_listen: 127.0.0.1:9191\n",
        "forward_auth_listen: 0.0.0.0:9191\nforward_auth: { trusted_proxies: [10.0.0.0/8] }\n",
    ] {
        let (code, _, err) = check("quiet.yaml", quiet);
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("forward_auth"), "{quiet}: {err}");
    }
    let (code, _, err) = check(
        "bad.yaml",
        "forward_auth_listen: 127.0.0.1:9191\nforward_auth:\n  trusted_proxies: [10.1.2.3/8, proxy]\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(": forward_auth.trusted_proxies[0]: invalid address block \"10.1.2.3/8\": host bits set beyond /8 (did you mean 10.0.0.0/8?)"),
        "{err}"
    );
    assert!(
        err.contains(": forward_auth.trusted_proxies[1]: invalid address block \"proxy\""),
        "{err}"
    );
    let (code, _, err) = check(
        "alone.yaml",
        "forward_auth: { trusted_proxies: [10.0.0.0/8] }\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("forward_auth: has no effect without forward_auth_listen"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_decision_listener_that_cannot_bind_ends_the_start_at_once_naming_it() {
    let dir = fresh_temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let yaml = BASE_CONFIG
        .replace("{LISTEN}", &free_addr().to_string())
        .replace("{ADMIN}", &free_addr().to_string())
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let path = write_file(
        &dir,
        "gateway.yaml",
        &format!("{yaml}forward_auth_listen: \"{addr}\"\n"),
    );
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&path)
        .current_dir(&dir)
        .env("JWT_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis run");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("portcullis run still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "forward_auth_listen: cannot listen on {addr}: Address already in use"
        )),
        "{err}"
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Real proxies in front, run from docs/forward-auth/
// ---------------------------------------------------------------------------------------------

/// The proxy's binary; `None`, with a note, when it is missing and the run may skip it.
fn proxy_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_TEST_PROXIES").is_none(),
            "{name} is not installed, and PORTCULLIS_TEST_PROXIES says the proxy tests must run"
        );
        eprintln!(
            "skipped: {name} is not installed (apt-get install {name}; .ci/run installs it and sets PORTCULLIS_TEST_PROXIES)"
        );
    }
    found
}

/// nginx or Caddy, listening on `addr`; killed on drop, its output shown if the test failed.
struct FrontProxy {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl FrontProxy {
    /// Spawns `command` (its stdout and stderr go to a file in `dir`) and waits (≤ 10 s) until
    /// `addr` accepts connections.
    fn spawn(mut command: Command, addr: SocketAddr, dir: PathBuf) -> FrontProxy {
        let log = File::create(dir.join("output.log")).expect("create the proxy's log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the proxy");
        let mut proxy = FrontProxy { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("the proxy exited ({status}):\n{}", proxy.output());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not listen on {addr} within 10 s:\n{}",
                proxy.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- proxy output ---\n{}\n--- end proxy output ---",
                self.output()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// docs/forward-auth/nginx.conf with the test's addresses, in a prefix directory of its own.
fn start_nginx(bin: &Path, s: &Setup) -> FrontProxy {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).expect("create the nginx prefix");
    let addr = free_addr();
    let template = include_str!("../docs/forward-auth/nginx.conf");
    let server = template
        .replace("127.0.0.1:9191", &s.decisions.to_string())
        .replace("127.0.0.1:3000", &s.echo.addr.to_string())
        .replace("listen 8000;", &format!("listen {addr};"));
    for filled in [
        s.decisions.to_string(),
        s.echo.addr.to_string(),
        addr.to_string(),
    ] {
        assert!(
            server.contains(&filled),
            "the nginx template changed: {filled} not placed"
        );
    }
    write_file(&dir, "server.conf", &server);
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nerror_log stderr notice;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {d}/server.conf;\n}}\n"
    );
    let conf = write_file(&dir, "nginx.conf", &main);
    let mut command = Command::new(bin);
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"]);
    FrontProxy::spawn(command, addr, dir)
}

/// docs/forward-auth/Caddyfile as it is, its addresses from the environment.
fn start_caddy(bin: &Path, s: &Setup) -> FrontProxy {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).expect("create the caddy dir");
    let addr = free_addr();
    let caddyfile = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/forward-auth/Caddyfile");
    let mut command = Command::new(bin);
    command
        .args(["run", "--adapter", "caddyfile", "--config", caddyfile])
        .env("CADDY_ADMIN", "off")
        .env("SITE_ADDRESS", format!("http://{addr}"))
        .env("PORTCULLIS_DECISIONS", s.decisions.to_string())
        .env("APP", s.echo.addr.to_string())
        // Caddy keeps state under HOME / XDG dirs: the test's own.
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    FrontProxy::spawn(command, addr, dir)
}

/// What every proxy in front must do with the gateway's decisions. `email` is unique per run.
fn lets_through_only_what_the_gateway_allows(front: &FrontProxy, s: &Setup, email: &str) {
    let a = front.addr;
    let viewer = bearer(&token("u1", "viewer", r#","ws":"w1","plan":"pro""#));
    let creator = bearer(&token("u3", "creator", ""));
    let admin = bearer(&token("root", "admin", ""));

    // Allowed: the upstream sees the verified identity, not what the client claimed.
    let r = get(
        a,
        "/api/protected",
        &[
            ("Authorization", &viewer),
            ("X-User-Id", "admin"),
            ("X-User-Role", "admin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["path"], "/api/protected");
    for (name, value) in [
        ("x-user-id", "u1"),
        ("x-user-role", "viewer"),
        ("x-workspace-id", "w1"),
        ("x-user-plan", "pro"),
        ("x-user-issuer", "https://gw.test"),
    ] {
        assert_eq!(echoed_header_values(&seen, name), vec![value], "{name}");
    }

    // A public route: a client-sent identity never reaches the upstream, nothing replaces it.
    let r = get(
        a,
        "/health",
        &[("X-User-Id", "admin"), ("X-User-Plan", "enterprise")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for name in [
        "x-user-id",
        "x-user-role",
        "x-workspace-id",
        "x-user-plan",
        "x-user-issuer",
    ] {
        assert!(
            echoed_header_values(&r.json(), name).is_empty(),
            "{name}: {}",
            r.text()
        );
    }

    // No token, and a token with the wrong role.
    let r = get(a, "/api/protected", &[("X-User-Id", "u1")]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        get(a, "/api/admin/x", &[("Authorization", &viewer)]).status,
        403
    );

    // The original method is the one decided on: POST /api/upload takes creators.
    let upload = |auth: &str| {
        request(
            a,
            "POST",
            "/api/upload",
            &[("Authorization", auth)],
            Some(b"file".as_slice()),
        )
    };
    assert_eq!(upload(&viewer).status, 403);
    let r = upload(&creator);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "POST");
    assert_eq!(r.json()["body"], "file");

    // Path tricks are decided on the normalized path.
    assert_eq!(
        get(a, "//api/admin/x", &[("Authorization", &viewer)]).status,
        403
    );
    assert_eq!(
        get(a, "/api/admin%2Fx", &[("Authorization", &admin)]).status,
        400
    );
    let r = get(a, "//api/admin/x", &[("Authorization", &admin)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echoed_header_values(&r.json(), "x-user-id"), vec!["root"]);

    // A logged-out session's token is refused at once.
    let (_, access, _) = signed_in(s.gw.addr, email);
    let session = bearer(&access);
    assert_eq!(
        get(a, "/api/protected", &[("Authorization", &session)]).status,
        200
    );
    let out = post(
        s.gw.addr,
        "/api/auth/logout",
        None,
        &[("Authorization", &session)],
    );
    assert_eq!(out.status, 204, "{}", out.text());
    assert_eq!(
        get(a, "/api/protected", &[("Authorization", &session)]).status,
        401
    );

    // Rate limits: two a minute per user on /api/limited, then 429 with Retry-After.
    let limited = bearer(&token("limited-user", "viewer", ""));
    for _ in 0..2 {
        assert_eq!(
            get(a, "/api/limited", &[("Authorization", &limited)]).status,
            200
        );
    }
    let r = get(a, "/api/limited", &[("Authorization", &limited)]);
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // The upstream saw exactly the allowed requests, in order.
    let paths: Vec<String> = s
        .echo
        .wait_seen(7)
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/protected",
            "/health",
            "/api/upload",
            "//api/admin/x",
            "/api/protected",
            "/api/limited",
            "/api/limited",
        ]
    );
}

#[test]
fn nginx_with_auth_request_lets_through_only_what_the_gateway_allows() {
    let Some(bin) = proxy_binary("nginx") else {
        return;
    };
    let s = start("");
    let nginx = start_nginx(&bin, &s);
    lets_through_only_what_the_gateway_allows(&nginx, &s, "nginx@example.com");
}

#[test]
fn caddy_with_forward_auth_lets_through_only_what_the_gateway_allows() {
    let Some(bin) = proxy_binary("caddy") else {
        return;
    };
    let s = start("");
    let caddy = start_caddy(&bin, &s);
    lets_through_only_what_the_gateway_allows(&caddy, &s, "caddy@example.com");
}
