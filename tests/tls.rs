//! HTTPS termination: the TLS listener serves the same pipeline, and its
//! responses carry HSTS while plain-HTTP ones do not.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A client that trusts `cert` and, as rustls clients do by default, keeps the
/// sessions servers offer it for resumption.
fn client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
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
    Arc::new(config)
}

/// One request on a new connection, with the kind of handshake it took.
fn https_request(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (Response, rustls::HandshakeKind) {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    // A peer may close without close_notify; what arrived before that is the answer.
    let _ = tls.read_to_end(&mut bytes);
    let kind = tls.conn.handshake_kind().expect("the handshake completed");
    let response = parse_responses(&bytes)
        .into_iter()
        .next()
        .expect("one HTTPS response");
    (response, kind)
}

fn https_get(addr: std::net::SocketAddr, cert: &Path, path: &str) -> Response {
    https_request(addr, &client_config(cert), path).0
}

#[test]
fn a_returning_client_resumes_its_session_unless_resumption_is_off() {
    let echo = Echo::start();
    for (extra, second) in [
        ("", rustls::HandshakeKind::Resumed),
        (", session_resumption: false", rustls::HandshakeKind::Full),
    ] {
        let (gw, addr, dir) = tls_gateway(&echo, extra);
        let client = client_config(&dir.join("cert.pem"));
        let (first, kind) = https_request(addr, &client, "/health");
        assert_eq!((first.status, kind), (200, rustls::HandshakeKind::Full));
        let (again, kind) = https_request(addr, &client, "/health");
        assert_eq!((again.status, kind), (200, second), "tls{{ {extra} }}");
        drop(gw);
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn a_client_that_never_finishes_its_handshake_does_not_hold_up_others() {
    let echo = Echo::start();
    let (gw, addr, dir) = tls_gateway(&echo, "");
    // Connected, and silent: the handshake waits for a ClientHello that never comes.
    let stalled = TcpStream::connect(addr).unwrap();
    let garbage = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s
    };
    let (ok, _) = https_request(addr, &client_config(&dir.join("cert.pem")), "/health");
    assert_eq!(ok.status, 200);
    drop((stalled, garbage, gw));
    std::fs::remove_dir_all(&dir).ok();
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

/// An HTTPS upstream for the gateway to reach: answers every request with its
/// head as the body, on kept-alive connections. Counts the TLS connections it
/// accepted and the request heads it read.
struct TlsUpstream {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

impl TlsUpstream {
    fn start(dir: &Path) -> TlsUpstream {
        let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, heads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, h) = (connections.clone(), heads.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let (config, heads) = (config.clone(), h.clone());
                std::thread::spawn(move || serve_tls(config, tcp, &heads));
            }
        });
        TlsUpstream {
            addr,
            connections,
            heads,
        }
    }
}

fn serve_tls(config: Arc<rustls::ServerConfig>, tcp: TcpStream, heads: &AtomicUsize) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        heads.fetch_add(1, Ordering::SeqCst);
        let head: Vec<u8> = pending.drain(..end + 4).collect();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            head.len()
        );
        if tls.write_all(answer.as_bytes()).is_err() || tls.write_all(&head).is_err() {
            return;
        }
        let _ = tls.flush();
    }
}

/// BASE_CONFIG with its `app` upstream spoken to over TLS.
fn tls_upstream_config() -> String {
    BASE_CONFIG.replacen("read_timeout: 2s }", "read_timeout: 2s, tls: true }", 1)
}

#[test]
fn a_tls_upstream_gets_the_verified_identity_over_one_kept_alive_connection() {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir);
    let upstream = TlsUpstream::start(&dir);
    let ca = dir.join("cert.pem");
    let gw = Gateway::start(
        &tls_upstream_config(),
        upstream.addr,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let bearer = format!("Bearer {}", token("alice", "viewer", ""));
    for round in 0..3 {
        let r = get(
            gw.addr,
            "/api/protected",
            &[("Authorization", &bearer), ("X-User-Id", "mallory")],
        );
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        let head = r.text().to_ascii_lowercase();
        assert!(
            head.starts_with("get /api/protected http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-user-id: alice\r\n"), "{head}");
        assert!(!head.contains("mallory"), "{head}");
    }
    assert_eq!(upstream.heads.load(Ordering::SeqCst), 3);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "the TLS connection is kept alive and reused"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_tls_upstream_whose_certificate_is_not_trusted_gets_no_request_and_the_client_a_502() {
    let dir = fresh_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir);
    let upstream = TlsUpstream::start(&dir);
    // The platform's roots do not include this self-signed certificate.
    let gw = Gateway::start(&tls_upstream_config(), upstream.addr, &[]);
    let bearer = format!("Bearer {}", token("alice", "viewer", ""));
    let r = get(gw.addr, "/api/protected", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "Bad gateway");
    assert!(
        upstream.connections.load(Ordering::SeqCst) >= 1,
        "a handshake was tried"
    );
    assert_eq!(upstream.heads.load(Ordering::SeqCst), 0);
    std::fs::remove_dir_all(&dir).ok();
}
