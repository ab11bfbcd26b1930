//! A gateway that cannot serve says so and exits: listeners that cannot bind and
//! TLS files that cannot be used end `portcullis run` with status 1 and one line
//! naming the address or file, well within 5 s; a reload with bad TLS files is
//! refused and the old certificate stays in use.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How `portcullis run` ended.
struct Exit {
    code: Option<i32>,
    after: Duration,
    stderr: Vec<String>,
}

/// Runs `portcullis run` on `yaml` (written to `dir/gateway.yaml`) until it exits;
/// a process still running after 10 s is killed and reported with no code.
fn run_to_exit(dir: &Path, yaml: &str, wrap: &[&str]) -> Exit {
    let config = write_file(dir, "gateway.yaml", yaml);
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let mut command = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let started = Instant::now();
    let mut child = command
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir)
        .env("JWT_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis run");
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let after = started.elapsed();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Exit {
        code,
        after,
        stderr: stderr.lines().map(str::to_owned).collect(),
    }
}

/// BASE_CONFIG with its placeholders filled: `listen` and `admin_listen` as given.
fn config(listen: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    let echo = free_addr();
    let text = BASE_CONFIG
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{UPSTREAM}", &echo.to_string());
    format!("{text}{extra}")
}

fn tls_section(listen: SocketAddr, cert: &str, key: &str) -> String {
    format!("tls: {{ listen: \"{listen}\", cert: {cert}, key: {key} }}\n")
}

/// Asserts a quick exit with status 1 whose stderr is exactly `line`.
fn assert_exits_at_once_saying(exit: &Exit, line: &str) {
    assert_eq!(exit.code, Some(1), "stderr: {:?}", exit.stderr);
    assert!(exit.after < Duration::from_secs(5), "took {:?}", exit.after);
    assert_eq!(exit.stderr, [line]);
}

/// A self-signed P-256 certificate for 127.0.0.1 and its key, made with the openssl CLI
/// as tests/tls.rs makes its own.
fn self_signed(dir: &Path, cert: &str, key: &str) {
    std::fs::create_dir_all(dir).expect("create the test dir");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
        ])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The status of `GET /health` over HTTPS, trusting only `cert`; `None` when the
/// handshake fails (the server presented another certificate).
fn https_status(addr: SocketAddr, cert: &Path) -> Option<u16> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("a PEM certificate"))
        .expect("a usable root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let tcp = TcpStream::connect(addr).expect("connect to the TLS listener");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    tls.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    // A peer may close without close_notify; what arrived before that is the answer.
    let _ = tls.read_to_end(&mut bytes);
    parse_responses(&bytes).first().map(|r| r.status)
}

fn temp_dir() -> PathBuf {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).expect("create the test dir");
    dir
}

#[test]
fn a_listen_port_in_use_ends_the_process_at_once_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("its address");
    let dir = temp_dir();
    let exit = run_to_exit(&dir, &config(addr, free_addr(), ""), &[]);
    assert_exits_at_once_saying(
        &exit,
        &format!("listen: cannot listen on {addr}: Address already in use"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_admin_port_in_use_ends_the_process_at_once_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("its address");
    let dir = temp_dir();
    let exit = run_to_exit(&dir, &config(free_addr(), addr, ""), &[]);
    assert_exits_at_once_saying(
        &exit,
        &format!("admin_listen: cannot listen on {addr}: Address already in use"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_tls_port_in_use_ends_the_process_at_once_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("its address");
    let dir = temp_dir();
    self_signed(&dir, "cert.pem", "key.pem");
    let tls = tls_section(addr, "cert.pem", "key.pem");
    let exit = run_to_exit(&dir, &config(free_addr(), free_addr(), &tls), &[]);
    assert_exits_at_once_saying(
        &exit,
        &format!("tls.listen: cannot listen on {addr}: Address already in use"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_address_this_host_does_not_have_ends_the_process_at_once_naming_it() {
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind");
    if nonlocal.is_ok_and(|v| v.trim() != "0") {
        eprintln!("skipped: net.ipv4.ip_nonlocal_bind lets any address be bound here");
        return;
    }
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no host has it.
    let addr: SocketAddr = "192.0.2.1:8080".parse().expect("an address");
    let dir = temp_dir();
    let exit = run_to_exit(&dir, &config(addr, free_addr(), ""), &[]);
    assert_exits_at_once_saying(
        &exit,
        "listen: cannot listen on 192.0.2.1:8080: Cannot assign requested address",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_port_the_process_may_not_open_ends_it_at_once_naming_the_address() {
    let unprivileged_from =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|v| v.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    if unprivileged_from <= 1 {
        eprintln!("skipped: every port may be bound without privileges here");
        return;
    }
    // Root may open any port: run the gateway as nobody, as a service user would be.
    let root = Command::new("id").arg("-u").output().expect("id -u").stdout == b"0\n";
    let wrap: &[&str] = match root {
        true => &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        false => &[],
    };
    if root && Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: running as root without setpriv to drop privileges");
        return;
    }
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let dir = temp_dir();
    // nobody must be able to read the config in it.
    let chmod = Command::new("chmod").arg("755").arg(&dir).status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let exit = run_to_exit(&dir, &config(addr, free_addr(), ""), wrap);
    assert_exits_at_once_saying(
        &exit,
        "listen: cannot listen on 127.0.0.1:1: Permission denied",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_tls_certificate_ends_the_process_at_once_naming_the_file() {
    let dir = temp_dir();
    self_signed(&dir, "cert.pem", "key.pem");
    let tls = tls_section(free_addr(), "missing.pem", "key.pem");
    let exit = run_to_exit(&dir, &config(free_addr(), free_addr(), &tls), &[]);
    let path = dir.join("missing.pem");
    assert_exits_at_once_saying(
        &exit,
        &format!(
            "tls.cert: cannot read {}: No such file or directory",
            path.display()
        ),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_tls_key_file_without_a_key_ends_the_process_at_once_naming_the_file() {
    let dir = temp_dir();
    self_signed(&dir, "cert.pem", "key.pem");
    write_file(&dir, "key.pem", "not a key\n");
    let tls = tls_section(free_addr(), "cert.pem", "key.pem");
    let exit = run_to_exit(&dir, &config(free_addr(), free_addr(), &tls), &[]);
    let path = dir.join("key.pem");
    assert_exits_at_once_saying(
        &exit,
        &format!(
            "tls.key: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_tls_key_of_another_certificate_ends_the_process_at_once_naming_both_files() {
    let dir = temp_dir();
    self_signed(&dir, "cert.pem", "key.pem");
    self_signed(&dir, "other-cert.pem", "other-key.pem");
    let tls = tls_section(free_addr(), "cert.pem", "other-key.pem");
    let exit = run_to_exit(&dir, &config(free_addr(), free_addr(), &tls), &[]);
    assert_exits_at_once_saying(
        &exit,
        &format!(
            "tls: the private key in {} does not belong to the certificate in {}",
            dir.join("other-key.pem").display(),
            dir.join("cert.pem").display()
        ),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn listeners_on_port_0_serve_on_ports_the_os_chose_and_the_log_names_them() {
    let dir = temp_dir();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let config_path = write_file(&dir, "gateway.yaml", &config(any, any, ""));
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&config_path)
        .current_dir(&dir)
        .env("JWT_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis run");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    let found = loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0);
        if read == 0 {
            break None;
        }
        if let Some(rest) = line.trim().split("portcullis listening on ").nth(1) {
            break Some(rest.to_owned());
        }
    };
    let found = found.expect("the listening line");
    // "127.0.0.1:P (admin 127.0.0.1:Q)"
    let (listen, admin) = found
        .trim_end_matches(')')
        .split_once(" (admin ")
        .expect("listen and admin addresses");
    let listen: SocketAddr = listen.parse().expect("the listen address");
    let admin: SocketAddr = admin.parse().expect("the admin address");
    assert_ne!(listen.port(), 0);
    assert_ne!(admin.port(), 0);
    assert_eq!(get(admin, "/healthz", &[]).status, 200);
    assert_eq!(get(listen, "/api/protected", &[]).status, 401);
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_reload_with_bad_tls_files_is_refused_and_the_old_certificate_stays_in_use() {
    let dir = temp_dir();
    self_signed(&dir, "cert.pem", "key.pem");
    let tls_addr = free_addr();
    let tls = tls_section(tls_addr, "cert.pem", "key.pem");
    let echo = Echo::start();
    let yaml = format!("{BASE_CONFIG}{tls}");
    let gw = Gateway::start_in(dir.clone(), &yaml, echo.addr, &[]);
    let old_cert = dir.join("old-cert.pem");
    std::fs::copy(dir.join("cert.pem"), &old_cert).expect("keep the first certificate");
    assert_eq!(https_status(tls_addr, &old_cert), Some(200));
    let reloads = |result: &str| {
        let series = format!("portcullis_config_reloads_total{{result=\"{result}\"}}");
        metric(gw.admin_addr, &series).unwrap_or(0.0)
    };

    // A new certificate whose key is not there yet, as a half-done renewal leaves it.
    self_signed(&dir, "next-cert.pem", "next-key.pem");
    std::fs::copy(dir.join("next-cert.pem"), dir.join("cert.pem")).expect("new certificate");
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || reloads("failure") == 1.0),
        "the reload was not refused; stderr:\n{}",
        gw.stderr_text()
    );
    assert_eq!(reloads("success"), 0.0);
    let refusal = format!(
        "reload refused, old config stays in force: tls: the private key in {} does not belong to the certificate in {}",
        dir.join("key.pem").display(),
        dir.join("cert.pem").display()
    );
    assert!(
        gw.stderr_text().lines().any(|l| l.ends_with(&refusal)),
        "{}",
        gw.stderr_text()
    );
    assert_eq!(
        https_status(tls_addr, &old_cert),
        Some(200),
        "old certificate"
    );
    assert_eq!(get(gw.admin_addr, "/readyz", &[]).status, 200);

    // The renewal completed: the next reload presents the new certificate.
    std::fs::copy(dir.join("next-key.pem"), dir.join("key.pem")).expect("new key");
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || reloads("success") == 1.0),
        "the reload was not taken; stderr:\n{}",
        gw.stderr_text()
    );
    assert_eq!(
        https_status(tls_addr, &dir.join("next-cert.pem")),
        Some(200)
    );
    assert_eq!(
        https_status(tls_addr, &old_cert),
        None,
        "old certificate gone"
    );
    drop(gw);
    std::fs::remove_dir_all(&dir).ok();
}
