//! A real SMTP server for the account-mail tests: `tests/accounts/smtp_sink.py` on
//! aiosmtpd, run by the Python that `PORTCULLIS_TEST_SMTP` names (.ci/run installs it in
//! a venv). It writes each accepted message to a directory as JSON, which these helpers
//! read to get the links and codes out of the mails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{config_with_auth, post, Gateway, Response};

/// Mail arrives within this (it is sent by the worker after the answer).
pub const MAIL: Duration = Duration::from_secs(10);

/// BASE_CONFIG with `auth.email` on 127.0.0.1:`port` (plain SMTP, links to app.test),
/// `email_extra` appended inside `email`, and `auth_extra` lines in `auth`.
pub fn mail_config(port: u16, email_extra: &str, auth_extra: &[&str]) -> String {
    let email = format!(
        "email: {{ smtp: \"smtp://127.0.0.1:{port}\", starttls: false, from: \"Portcullis <auth@gw.test>\", verify_url: \"https://app.test/verify\", reset_url: \"https://app.test/reset\"{email_extra} }}"
    );
    let mut lines = vec![email.as_str()];
    lines.extend_from_slice(auth_extra);
    config_with_auth(&lines)
}

/// POSTs `body` as JSON with extra `headers`.
pub fn json_post(gw: &Gateway, path: &str, body: Value, headers: &[(&str, &str)]) -> Response {
    post(gw.addr, path, Some(&body.to_string()), headers)
}

/// Asserts the exact status and JSON body.
pub fn assert_answer(r: &Response, status: u16, body: Value) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json(), body);
}

/// The answer to an unknown, used, expired or malformed one-time token.
pub fn token_error() -> Value {
    json!({"error": "Invalid, expired or already used token"})
}

/// The rules every account POST shares: JSON only (415), no foreign origin (403), at
/// most 16 KiB (413), POST only (405); `body` is an otherwise acceptable body.
pub fn assert_browser_rules(gw: &Gateway, path: &str, body: &Value) {
    let text = body.to_string();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = post(gw.addr, path, Some(&text), &form);
    assert_answer(
        &r,
        415,
        json!({"error": "Content-Type must be application/json"}),
    );
    for origin in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = post(gw.addr, path, Some(&text), &[origin]);
        assert_answer(&r, 403, json!({"error": "Cross-origin request refused"}));
    }
    let big = json!({"padding": "x".repeat(20 * 1024)}).to_string();
    assert_answer(
        &post(gw.addr, path, Some(&big), &[]),
        413,
        json!({"error": "Payload too large"}),
    );
    let r = super::get(gw.addr, path, &[]);
    assert_answer(&r, 405, json!({"error": "Method not allowed"}));
    assert_eq!(r.header("allow"), Some("POST"));
}

/// The Python with aiosmtpd, or `None` after printing why the calling test is skipped.
pub fn python() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_SMTP") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            println!("skipped: PORTCULLIS_TEST_SMTP (a Python with aiosmtpd) not set");
            None
        }
    }
}

/// One captured mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub content_type: String,
    pub body: String,
}

impl Mail {
    /// The one-time token the mail carries: after `#token=` in a link, else the first
    /// 43-character base64url word.
    pub fn token(&self) -> String {
        let word = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        };
        if let Some((_, after)) = self.body.split_once("#token=") {
            return word(after);
        }
        self.body
            .split_whitespace()
            .map(word)
            .find(|w| w.len() == 43)
            .unwrap_or_else(|| panic!("no token in {:?}", self.body))
    }
}

/// The running sink; killed on drop.
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts the sink on a free port; with `login`, it accepts only that user and password.
    pub fn start(python: &str, login: Option<(&str, &str)>) -> SmtpSink {
        SmtpSink::start_on(python, login, 0)
    }

    /// Like `start`, on `port` (0 = any free one).
    pub fn start_on(python: &str, login: Option<(&str, &str)>, port: u16) -> SmtpSink {
        let dir = super::fresh_temp_dir();
        std::fs::create_dir_all(&dir).expect("create the mail dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/accounts/smtp_sink.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg(&dir)
            .args(["--port", &port.to_string()]);
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {python} {script}: {e}"));
        let stdout = child.stdout.take().expect("sink stdout is piped");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the sink's port");
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the sink printed {first:?}, not its port"));
        SmtpSink { port, dir, child }
    }

    /// Every mail received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("read the mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(p).expect("read a mail"))
                    .expect("a mail's JSON");
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                Mail {
                    to: v["to"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    from: text("from"),
                    subject: text("subject"),
                    content_type: text("content_type"),
                    body: text("body"),
                }
            })
            .collect()
    }

    /// The mails to `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect()
    }

    /// Waits (≤ `within`) until `to` has received `n` mails; returns the `n`th.
    pub fn wait_mail(&self, to: &str, n: usize, within: Duration) -> Mail {
        let deadline = Instant::now() + within;
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= n {
                return mails[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{to} got {} mails within {within:?}, expected {n}: {mails:#?}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
