//! CORS through the real binary: preflights answered by the gateway before
//! authentication (allowed: 204 with the policy's values; refused: 403 with none),
//! the fields on proxied answers and on the gateway's own 401/403/429, a route's
//! own policy and `cors: false`, the auth module's policy from
//! `auth.allowed_origins` with credentials, `check` refusing a wildcard with
//! credentials, the refresh cookie's `SameSite`, and a real headless Chromium
//! running a page from another origin through signup, login, a protected call,
//! refresh and logout.

mod common;

use common::recorder::{Recorder, Reply};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APP: &str = "https://app.test";
const PARTNER: &str = "https://partner.test";

/// A top-level policy for APP, a route with a policy of its own (PARTNER, with
/// credentials), a route with `cors: false`, and the auth module open to APP.
const CONFIG: &str = r#"
listen: "{LISTEN}"
admin_listen: "{ADMIN}"
store: sqlite://data/portcullis.db
upstreams:
  app: { addrs: ["{UPSTREAM}"], connect_timeout: 1s, read_timeout: 2s }
cors:
  origins: [https://app.test]
  methods: [GET, POST, DELETE]
  headers: [authorization, content-type, x-trace]
  expose_headers: [x-request-id]
  max_age: 10m
auth:
  issuer: https://gw.test
  audience: api
  allowed_origins: [https://app.test]
  rate_limits: { login: 1000/min, login_per_email: 1000/min, refresh: 1000/min, signup: 1000/min }
roles: [viewer, creator, admin]
routes:
  - { path: /api/auth/**, auth: none }
  - { path: /api/protected, upstream: app }
  - { path: /api/admin/**, upstream: app, roles: [admin] }
  - { path: /api/limited, upstream: app, auth: none, rate_limit: 1/min }
  - path: /api/partner/**
    upstream: app
    cors: { origins: ["https://partner.test:443"], methods: [GET, PUT], credentials: true }
  - { path: /api/internal/**, upstream: app, cors: false }
"#;

fn bearer(role: &str) -> String {
    format!("Bearer {}", token("user-1", role, ""))
}

fn preflight(addr: SocketAddr, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    let mut fields = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if !headers.is_empty() {
        fields.push(("Access-Control-Request-Headers", headers));
    }
    request(addr, "OPTIONS", path, &fields, None)
}

/// Every `Access-Control-*` field of an answer.
fn cors_fields(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

fn varies_by_origin(r: &Response) -> bool {
    r.headers_named("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

#[test]
fn a_preflight_is_answered_by_the_gateway_before_authentication_and_never_forwarded() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let r = preflight(
        gw.addr,
        "/api/protected",
        APP,
        "DELETE",
        "authorization,x-trace",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, DELETE")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type, x-trace")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert!(varies_by_origin(&r), "{:?}", r.headers);
    // A route listing methods is found by the method the preflight asks about.
    let r = preflight(gw.addr, "/api/admin/users", APP, "POST", "content-type");
    assert_eq!(r.status, 204, "{}", r.text());
    // The one request the echo ever sees is the actual one that follows.
    let actual = request(
        gw.addr,
        "DELETE",
        "/api/protected",
        &[("Origin", APP), ("Authorization", &bearer("viewer"))],
        None,
    );
    assert_eq!(actual.status, 200, "{}", actual.text());
    let seen = echo.wait_seen(1);
    std::thread::sleep(Duration::from_millis(200));
    let seen_now = echo.seen();
    assert_eq!(seen_now.len(), 1, "{seen_now:#?}");
    assert_eq!(seen[0]["method"], "DELETE");
}

#[test]
fn a_preflight_for_a_foreign_origin_method_or_header_is_refused_without_allowances() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let cases = [
        ("https://evil.test", "GET", ""),
        ("https://app.test.evil.test", "GET", ""),
        ("http://app.test", "GET", ""),
        (APP, "PUT", ""),
        (APP, "GET", "authorization, x-secret"),
    ];
    for (origin, method, headers) in cases {
        let r = preflight(gw.addr, "/api/protected", origin, method, headers);
        assert_eq!(r.status, 403, "{origin} {method} {headers}: {}", r.text());
        assert_eq!(error_of(&r), "Cross-origin request refused");
        assert_eq!(cors_fields(&r), vec![], "{origin} {method} {headers}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(echo.seen_count(), 0, "{:#?}", echo.seen());
}

#[test]
fn proxied_answers_carry_the_exact_origin_and_replace_the_upstreams_cors_fields() {
    // An upstream that does CORS of its own, carelessly.
    let upstream = Recorder::with_script(|_| {
        Reply::Answer(
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\nVary: Accept-Encoding\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    });
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let auth = bearer("viewer");
    let r = get(
        gw.addr,
        "/api/protected",
        &[("Origin", APP), ("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        cors_fields(&r),
        vec![
            ("Access-Control-Allow-Origin".to_owned(), APP.to_owned()),
            (
                "Access-Control-Expose-Headers".to_owned(),
                "x-request-id".to_owned()
            ),
        ]
    );
    assert!(varies_by_origin(&r), "{:?}", r.headers);
    assert_eq!(
        r.headers_named("vary").len(),
        2,
        "the upstream's Vary stays"
    );
    // Without Origin, or from an origin the policy does not list: nothing a
    // browser would take as an allowance, the upstream's included.
    for headers in [vec![], vec![("Origin", "https://evil.test")]] {
        let mut headers = headers;
        headers.push(("Authorization", auth.as_str()));
        let r = get(gw.addr, "/api/protected", &headers);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(cors_fields(&r), vec![], "{headers:?}");
        assert!(varies_by_origin(&r), "{headers:?}");
    }
}

#[test]
fn the_gateways_own_401_403_and_429_carry_the_cors_fields() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let viewer = bearer("viewer");
    let missing = get(gw.addr, "/api/protected", &[("Origin", APP)]);
    let forbidden = get(
        gw.addr,
        "/api/admin/users",
        &[("Origin", APP), ("Authorization", &viewer)],
    );
    let first = get(gw.addr, "/api/limited", &[("Origin", APP)]);
    let limited = get(gw.addr, "/api/limited", &[("Origin", APP)]);
    assert_eq!(first.status, 200);
    for (r, status) in [(missing, 401), (forbidden, 403), (limited, 429)] {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("x-request-id")
        );
        assert!(varies_by_origin(&r), "{status}: {:?}", r.headers);
    }
}

#[test]
fn a_route_policy_of_its_own_replaces_the_top_level_one_and_cors_false_turns_it_off() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let auth = bearer("viewer");
    // The partner route: its origin (listed with its default port, compared as
    // browsers send it), with credentials, and not the top level's origin.
    let r = get(
        gw.addr,
        "/api/partner/x",
        &[("Origin", PARTNER), ("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(PARTNER));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = get(
        gw.addr,
        "/api/partner/x",
        &[("Origin", APP), ("Authorization", &auth)],
    );
    assert_eq!(cors_fields(&r), vec![]);
    let r = preflight(gw.addr, "/api/partner/x", PARTNER, "PUT", "authorization");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(PARTNER));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    // `cors: false`: the preflight is an ordinary request (here refused for want
    // of a token), and no answer carries CORS fields.
    let r = preflight(gw.addr, "/api/internal/x", APP, "GET", "authorization");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(cors_fields(&r), vec![]);
    let r = get(
        gw.addr,
        "/api/internal/x",
        &[("Origin", APP), ("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cors_fields(&r), vec![]);
    assert!(!varies_by_origin(&r));
}

#[test]
fn the_auth_endpoints_answer_the_allowed_origins_with_credentials() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let r = preflight(gw.addr, "/api/auth/login", APP, "POST", "content-type");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    let r = preflight(
        gw.addr,
        "/api/auth/login",
        "https://evil.test",
        "POST",
        "content-type",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(cors_fields(&r), vec![]);

    let body = credentials("cors@example.com", PASSWORD);
    let from_app = [("Origin", APP)];
    let created = post(gw.addr, "/api/auth/signup", Some(&body), &from_app);
    assert_eq!(created.status, 201, "{}", created.text());
    let login = post(gw.addr, "/api/auth/login", Some(&body), &from_app);
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(login.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        login.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(varies_by_origin(&login));
    // The default SameSite.
    let cookie = login
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(REFRESH_COOKIE))
        .expect("refresh cookie")
        .to_owned();
    assert!(
        cookie.ends_with("; HttpOnly; Secure; SameSite=Strict"),
        "{cookie}"
    );
    // A foreign origin is refused by the auth module, and told nothing.
    let refused = post(
        gw.addr,
        "/api/auth/login",
        Some(&body),
        &[("Origin", "https://evil.test")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(cors_fields(&refused), vec![]);
}

#[test]
fn a_wildcard_policy_answers_any_origin_with_a_star_and_check_refuses_it_with_credentials() {
    let wildcard = CONFIG.replace("  origins: [https://app.test]\n", "  origins: [\"*\"]\n");
    let echo = Echo::start();
    let gw = Gateway::start(&wildcard, echo.addr, &[]);
    let r = get(
        gw.addr,
        "/api/limited",
        &[("Origin", "https://anyone.test")],
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = preflight(gw.addr, "/api/protected", "https://anyone.test", "GET", "");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let dir = fresh_temp_dir();
    let with_credentials = wildcard
        .replace("  max_age: 10m\n", "  max_age: 10m\n  credentials: true\n")
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{UPSTREAM}", "127.0.0.1:3000");
    let path = write_file(&dir, "gateway.yaml", &with_credentials);
    let path = path.to_str().expect("a UTF-8 path");
    let (code, out, err) = portcullis(&["check", "-c", path], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{path}:13:16: cors.credentials: credentials: true cannot go with origins: [\"*\"]"
        )),
        "{err}"
    );
    let (code, _, err) = portcullis(&["run", "-c", path], &[]);
    assert_eq!(code, 1, "run refuses it too: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_refresh_cookies_samesite_is_configurable_and_check_says_what_it_gives_up() {
    let none = CONFIG.replace(
        "  audience: api\n",
        "  audience: api\n  cookie_same_site: None\n",
    );
    let echo = Echo::start();
    let gw = Gateway::start(&none, echo.addr, &[]);
    let created = signup(gw.addr, "samesite@example.com");
    assert_eq!(created.status, 201, "{}", created.text());
    let login = login(gw.addr, "samesite@example.com", PASSWORD);
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie = login
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(REFRESH_COOKIE))
        .expect("refresh cookie")
        .to_owned();
    assert!(
        cookie.ends_with("; HttpOnly; Secure; SameSite=None"),
        "{cookie}"
    );
    let logout = post(
        gw.addr,
        "/api/auth/logout",
        None,
        &[(
            "Cookie",
            &format!("{REFRESH_COOKIE}={}", refresh_cookie(&login).unwrap()),
        )],
    );
    assert_eq!(logout.status, 204, "{}", logout.text());
    assert!(
        logout
            .headers_named("set-cookie")
            .iter()
            .any(|c| c.ends_with("SameSite=None")),
        "{:?}",
        logout.headers
    );

    let dir = fresh_temp_dir();
    let check = |value: &str| {
        let text = CONFIG
            .replace(
                "  audience: api\n",
                &format!("  audience: api\n  cookie_same_site: {value}\n"),
            )
            .replace("{LISTEN}", "127.0.0.1:0")
            .replace("{ADMIN}", "127.0.0.1:0")
            .replace("{UPSTREAM}", "127.0.0.1:3000");
        let path = write_file(&dir, &format!("{value}.yaml"), &text);
        portcullis(&["check", "-c", path.to_str().unwrap()], &[])
    };
    let (code, _, err) = check("None");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains(
                "auth.cookie_same_site: the refresh cookie is sent with requests from every site"
            ),
        "{err}"
    );
    let (code, _, err) = check("Lax");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "auth.cookie_same_site: the refresh cookie is also sent with top-level navigations"
        ),
        "{err}"
    );
    let (code, _, err) = check("Strict");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (code, _, err) = check("strict");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("expected Strict, Lax or None, got \"strict\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// A real browser
// ---------------------------------------------------------------------------------------------

/// Serves one HTML page on 127.0.0.1 (any path but the favicon), until dropped.
/// The page is set after the start, once it can name the gateway.
struct PageServer {
    addr: SocketAddr,
    page: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let addr = listener.local_addr().expect("page server address");
        let stop = Arc::new(AtomicBool::new(false));
        let page = Arc::new(Mutex::new(String::new()));
        let (stopped, served) = (stop.clone(), page.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let page = served.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    serve_page(conn, &page);
                }
            }
        });
        PageServer { addr, page, stop }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_page(mut conn: TcpStream, page: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let answer = if head.starts_with(b"GET /favicon.ico ") {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        )
    };
    let _ = conn.write_all(answer.as_bytes());
}

/// The browser to drive: Debian's `chromium`, or another Chromium build on the path.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The flow a single-page app on another origin runs against the gateway: every
/// step's outcome goes into `#result` as JSON, which the test reads from the DOM.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head>
<body><pre id="result">running</pre>
<script>
const gateway = "GATEWAY";
const json = { "Content-Type": "application/json" };
const account = JSON.stringify({ email: "browser@example.com", password: "PASSWORD" });
const report = {};
async function call(path, init) {
  const response = await fetch(gateway + path, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
function user(echoed) {
  const pair = echoed.headers.find(([name]) => name.toLowerCase() === "x-user-id");
  return pair ? pair[1] : null;
}
(async () => {
  try {
    const signup = await call("/api/auth/signup", { method: "POST", headers: json, body: account, credentials: "include" });
    report.signup = signup.status;
    report.user = signup.body.user.id;
    const login = await call("/api/auth/login", { method: "POST", headers: json, body: account, credentials: "include" });
    report.login = login.status;
    const first = login.body.access_token;
    report.cookie_hidden = !document.cookie.includes("refresh");
    const protectedCall = await call("/api/protected", { headers: { Authorization: "Bearer " + first } });
    report.protected = protectedCall.status;
    report.protected_user = user(protectedCall.body);
    const refreshed = await call("/api/auth/refresh", { method: "POST", headers: json, credentials: "include" });
    report.refresh = refreshed.status;
    const second = refreshed.body.access_token;
    report.new_token = typeof second === "string" && second !== first;
    report.protected_again = (await call("/api/protected", { headers: { Authorization: "Bearer " + second } })).status;
    const logout = await fetch(gateway + "/api/auth/logout", {
      method: "POST", headers: { ...json, Authorization: "Bearer " + second }, credentials: "include" });
    report.logout = logout.status;
    report.refresh_after_logout = (await call("/api/auth/refresh", { method: "POST", headers: json, credentials: "include" })).status;
  } catch (e) {
    report.error = String(e);
  }
  document.getElementById("result").textContent = "RESULT" + JSON.stringify(report) + "END";
})();
</script></body></html>
"#;

/// Runs `browser` headless on `url` and returns the DOM it dumps once the page's
/// script has had its (virtual) time; killed after 120 s of real time.
fn dump_dom(browser: &str, url: &str, profile: &Path) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            // Root in a container has no user namespace for the sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--virtual-time-budget=60000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("chromium stdout is piped");
    let mut stderr = child.stderr.take().expect("chromium stderr is piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    let dom = out.join().unwrap_or_default();
    let log = err.join().unwrap_or_default();
    assert!(
        dom.contains("RESULT"),
        "no result in the dumped DOM:\n{dom}\nchromium's stderr:\n{log}"
    );
    dom
}

/// The page is served from http://localhost:PAGE and calls the gateway at
/// http://localhost:GATEWAY: another origin (the port differs), but the same
/// site (a site is scheme and host, ports aside), so the refresh cookie, kept
/// at its default SameSite=Strict, goes with the page's `credentials: 'include'`
/// calls. The gateway is named `localhost` rather than 127.0.0.1 for the same
/// reason: http://127.0.0.1 and http://localhost are different sites, and a
/// Strict cookie would stay home. Browsers treat http://localhost as a secure
/// context, so the `Secure` cookie is kept over plain HTTP there.
#[test]
fn a_browser_app_on_another_origin_signs_up_logs_in_calls_refreshes_and_logs_out() {
    let required = std::env::var_os("PORTCULLIS_TEST_BROWSER").is_some();
    let Some(browser) = chromium() else {
        assert!(
            !required,
            "PORTCULLIS_TEST_BROWSER is set but no chromium is installed (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on the path (set PORTCULLIS_TEST_BROWSER=1 to require it)");
        return;
    };
    // The page's origin is in the gateway's config, and the gateway's address in
    // the page: the page server starts first, and gets its page afterwards.
    let server = PageServer::start();
    let page_origin = format!("http://localhost:{}", server.addr.port());
    let config = CONFIG
        .replace(
            "  allowed_origins: [https://app.test]\n",
            &format!("  allowed_origins: [\"{page_origin}\"]\n"),
        )
        .replace(
            "  origins: [https://app.test]\n",
            &format!("  origins: [\"{page_origin}\"]\n"),
        );
    let echo = Echo::start();
    let gw = Gateway::start(&config, echo.addr, &[]);
    let page = PAGE
        .replace("GATEWAY", &format!("http://localhost:{}", gw.addr.port()))
        .replace("PASSWORD", PASSWORD);
    *server.page.lock().unwrap() = page;
    let profile = fresh_temp_dir();
    let dom = dump_dom(browser, &format!("{page_origin}/"), &profile);
    drop(server);
    let _ = std::fs::remove_dir_all(&profile);

    let result = dom
        .split("RESULT")
        .nth(1)
        .and_then(|rest| rest.split("END").next())
        .expect("the page's report");
    let report: serde_json::Value = serde_json::from_str(&result.replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {result}"));
    eprintln!("the page reported: {report}");
    let user = report["user"].as_str().unwrap_or_default().to_owned();
    assert!(!user.is_empty(), "{report}");
    assert_eq!(
        report,
        serde_json::json!({
            "signup": 201,
            "user": user,
            "login": 200,
            "cookie_hidden": true,
            "protected": 200,
            "protected_user": user,
            "refresh": 200,
            "new_token": true,
            "protected_again": 200,
            "logout": 204,
            "refresh_after_logout": 401,
        }),
        "gateway log:\n{}",
        gw.stdout_lines().join("\n")
    );
}
