//! A real SMTP server for the account-mail tests: `tests/accounts/smtp_sink.py` on
//! aiosmtpd, run by the Python that `PORTCULLIS_TEST_SMTP` names (.ci/run installs it in
//! a venv). It writes each accepted message to a directory as JSON, which these helpers
//! read to get the links and codes out of the mails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
