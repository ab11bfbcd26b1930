//! The real `portcullis` binary as a child process: a running gateway on free loopback
//! ports (`Gateway`), one-shot CLI runs (`portcullis`), and the environment they get.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::Conn;
use super::{fresh_temp_dir, TEST_SECRET};

/// Lines captured from a child's pipe by a background thread, so the pipe never fills and
/// blocks the child, and tests can inspect output while it runs.
pub(super) type Lines = Arc<Mutex<Vec<String>>>;

pub(super) fn capture(
    pipe: impl Read + Send + 'static,
    first_line: Option<mpsc::Sender<String>>,
) -> Lines {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut first_line = first_line;
        let mut raw = Vec::new();
        // read_until rather than lines(): a non-UTF-8 line must not end the capture.
        while reader
            .read_until(b'\n', &mut raw)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            raw.clear();
            match first_line.take() {
                Some(tx) => drop(tx.send(line)),
                None => sink.lock().expect("capture lock poisoned").push(line),
            }
        }
    });
    lines
}

fn portcullis_bin() -> &'static str {
    // option_env! so crates without the gateway binary (the echo's own scratch crate) still compile.
    match option_env!("CARGO_BIN_EXE_portcullis") {
        Some(path) => path,
        None => panic!(
            "the `portcullis` binary is not part of this crate: Gateway and portcullis() need it"
        ),
    }
}

/// Adds `JWT_SECRET=TEST_SECRET` unless the test set it itself.
fn with_default_secret<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "JWT_SECRET") {
        all.insert(0, ("JWT_SECRET", TEST_SECRET));
    }
    all
}

/// An env value meaning "remove this variable" (no real value holds a NUL), e.g.
/// `("JWT_SECRET", UNSET)` for a gateway that runs on key files alone.
pub const UNSET: &str = "\0";

/// Applies `env` (after `with_default_secret`) to a child, honoring [`UNSET`].
fn apply_env(command: &mut Command, env: &[(&str, &str)]) {
    for (name, value) in with_default_secret(env) {
        if value == UNSET {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
}

/// A running `portcullis run`; SIGKILLed on drop, and its temp dir removed unless caller-chosen.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    stdout: Lines,
    stderr: Lines,
    remove_dir: bool,
    exited: Option<ExitStatus>,
}

impl Gateway {
    /// Starts a gateway in a fresh temp dir. In `yaml`, `{LISTEN}` and `{ADMIN}` become free
    /// 127.0.0.1 ports, `{UPSTREAM}` the given address and `{DIR}` the directory. The process
    /// runs with that directory as its working directory, so relative paths land there too.
    /// Waits (≤ 30 s) until the admin `/healthz` answers 200.
    pub fn start(yaml: &str, upstream: SocketAddr, env: &[(&str, &str)]) -> Gateway {
        let mut gateway = Gateway::start_in(fresh_temp_dir(), yaml, upstream, env);
        gateway.remove_dir = true;
        gateway
    }

    /// Like `start`, in a caller-chosen directory (e.g. to restart on the same data dir),
    /// which is then left in place on drop.
    pub fn start_in(
        dir: PathBuf,
        yaml: &str,
        upstream: SocketAddr,
        env: &[(&str, &str)],
    ) -> Gateway {
        std::fs::create_dir_all(&dir).expect("create the gateway test dir");
        // Both listeners are held at once so the two ports differ.
        let (listen, admin) = (
            TcpListener::bind("127.0.0.1:0"),
            TcpListener::bind("127.0.0.1:0"),
        );
        let addr = listen
            .and_then(|l| l.local_addr())
            .expect("free listen port");
        let admin_addr = admin.and_then(|l| l.local_addr()).expect("free admin port");
        let config = yaml
            .replace("{LISTEN}", &addr.to_string())
            .replace("{ADMIN}", &admin_addr.to_string())
            .replace("{UPSTREAM}", &upstream.to_string())
            .replace("{DIR}", &dir.display().to_string());
        let config_path = dir.join("gateway.yaml");
        std::fs::write(&config_path, config).expect("write gateway.yaml");
        let mut command = Command::new(portcullis_bin());
        apply_env(&mut command, env);
        let mut child = command
            .args(["run", "-c"])
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the portcullis binary");
        let stdout = capture(child.stdout.take().expect("gateway stdout is piped"), None);
        let stderr = capture(child.stderr.take().expect("gateway stderr is piped"), None);
        let mut gateway = Gateway {
            addr,
            admin_addr,
            dir,
            child,
            stdout,
            stderr,
            remove_dir: false,
            exited: None,
        };
        gateway.wait_healthy(Duration::from_secs(30));
        gateway
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                std::thread::sleep(Duration::from_millis(100)); // let the capture threads catch up
                panic!(
                    "gateway exited during startup ({status}); stderr:\n{}",
                    self.stderr_text()
                );
            }
            // The admin and public listeners start on separate runtimes: wait for both.
            if healthz_ok(self.admin_addr) && TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "gateway /healthz not 200 within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Access-log lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock poisoned").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock poisoned").join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name ("TERM", "HUP", ...) through `kill -s`, to this child only.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -s {sig} {} failed: {status}",
            self.child.id()
        );
    }

    /// Waits up to `timeout` for the gateway to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited.is_none() {
                self.exited = self.child.try_wait().expect("try_wait on the gateway");
            }
            if self.exited.is_some() || Instant::now() >= deadline {
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows the gateway's own account of what happened.
        if std::thread::panicking() {
            eprintln!(
                "--- gateway stderr ---\n{}\n--- end gateway stderr ---",
                self.stderr_text()
            );
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn healthz_ok(admin: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&admin, Duration::from_millis(500)) else {
        return false;
    };
    let mut conn = Conn::from_stream(stream);
    conn.send(
        format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    matches!(conn.try_read_response(false, Duration::from_secs(2)), Some(r) if r.status == 200)
}

/// Runs the portcullis CLI to completion (e.g. `check -c <path>`, `explain`, `token`), with
/// `JWT_SECRET=TEST_SECRET` unless `env` sets it. Returns (exit code, stdout, stderr);
/// the code is -1 if a signal ended it.
pub fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(portcullis_bin());
    apply_env(&mut command, env);
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the portcullis binary");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Runs the portcullis CLI with `input` on stdin; returns (exit code, stdout, stderr).
pub fn portcullis_with_stdin(
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> (i32, String, String) {
    let mut child = Command::new(portcullis_bin())
        .args(args)
        .envs(with_default_secret(env))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the portcullis binary");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for portcullis");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}
