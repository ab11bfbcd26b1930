//! HTTPS termination: the TLS listener serves the same pipeline, and its
//! responses carry HSTS while plain-HTTP ones do not.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// A self-signed certificate for 127.0.0.1, made with the openssl CLI.
fn self_signed(dir: &Path) {
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

fn https_get(addr: std::net::SocketAddr, cert: &Path, path: &str) -> Response {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("cert.pem"))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    // A peer may close without close_notify; what arrived before that is the answer.
    let _ = tls.read_to_end(&mut bytes);
    parse_responses(&bytes)
        .into_iter()
        .next()
        .expect("one HTTPS response")
}

#[test]
fn the_tls_listener_serves_the_pipeline_with_hsts() {
    let echo = Echo::start();
    let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir);
    let tls_addr = free_addr();
    let config = BASE_CONFIG.replace(
        "store: sqlite://data/portcullis.db",
        &format!("store: sqlite://data/portcullis.db\ntls: {{ listen: \"{tls_addr}\", cert: cert.pem, key: key.pem }}"),
    );
    let gw = Gateway::start_in(dir.clone(), &config, echo.addr, &[]);
    assert!(eventually(std::time::Duration::from_secs(5), || {
        TcpStream::connect(tls_addr).is_ok()
    }));

    let secure = https_get(tls_addr, &dir.join("cert.pem"), "/health");
    assert_eq!(secure.status, 200, "{}", secure.text());
    assert!(secure
        .header("strict-transport-security")
        .unwrap()
        .starts_with("max-age="));
    assert_eq!(
        echoed_header_values(&secure.json(), "x-forwarded-proto"),
        vec!["https"]
    );

    let refused = https_get(tls_addr, &dir.join("cert.pem"), "/api/protected");
    assert_eq!(refused.status, 401);
    assert!(refused.header("strict-transport-security").is_some());

    let plain = get(gw.addr, "/health", &[]);
    assert_eq!(plain.status, 200);
    assert!(plain.header("strict-transport-security").is_none());
    drop(gw);
    std::fs::remove_dir_all(&dir).ok();
}
