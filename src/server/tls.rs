//! The TLS listener: its certificate, read and checked against its private
//! key before anything listens (pingora would read the files only inside its
//! service thread, and panic there) and replaced in place by a reload whose
//! files are good; and the handshake itself, done here rather than by
//! pingora's TLS listener, whose rustls settings cannot turn session
//! resumption off (`tls.session_resumption`).

use crate::config::Tls;
use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    version, ClientHello, CryptoProvider, ResolvesServerCert, RusTlsError, ServerConfig,
};
use rustls::server::NoServerSessionStorage;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to complete its handshake once connected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `tls.cert` (a PEM chain, leaf first) and `tls.key` (PEM, PKCS#8,
/// PKCS#1 or SEC1) and checks that the key is the certificate's. `run`,
/// `check` and a reload all call this; every failure is one line naming the file.
pub fn load(tls: &Tls) -> Result<Arc<CertifiedKey>, String> {
    for (field, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
        // Opened first so that a missing or unreadable file is named with the OS's reason.
        std::fs::File::open(path)
            .map_err(|e| format!("{field}: cannot read {}: {}", path.display(), reason(&e)))?;
    }
    let (cert, key) = (lossy(&tls.cert), lossy(&tls.key));
    let first = pingora::tls::load_pem_file_ca(&cert)
        .map_err(|_| format!("tls.cert: {cert} is not a PEM certificate file"))?;
    if first.is_empty() {
        return Err(format!("tls.cert: {cert} holds no PEM certificate"));
    }
    let secret = pingora::tls::load_pem_file_private_key(&key)
        .map_err(|_| format!("tls.key: {key} is not a PEM private key file"))?;
    if secret.is_empty() {
        return Err(format!(
            "tls.key: {key} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
        ));
    }
    let Ok(Some((chain, private))) = pingora::tls::load_certs_and_key_files(&cert, &key) else {
        return Err(format!("tls: cannot read {cert} / {key} as PEM"));
    };
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or("tls: no TLS crypto provider is installed")?
        .clone();
    let certified = CertifiedKey::from_der(chain, private, &provider).map_err(|e| match e {
        RusTlsError::InconsistentKeys(_) => {
            format!("tls: the private key in {key} does not belong to the certificate in {cert}")
        }
        other => format!("tls: cannot use {cert} with {key}: {other}"),
    })?;
    Ok(Arc::new(certified))
}

/// The certificate the TLS listener presents, as pingora's rustls asks for it
/// at every handshake; a reload swaps in the next one without closing the listener.
#[derive(Debug)]
pub struct Certificate {
    current: ArcSwap<CertifiedKey>,
}

impl Certificate {
    pub fn new(first: Arc<CertifiedKey>) -> Arc<Certificate> {
        Arc::new(Certificate {
            current: ArcSwap::new(first),
        })
    }

    /// Handshakes from now on present `next`; those under way finish with the old one.
    pub fn replace(&self, next: Arc<CertifiedKey>) {
        self.current.store(next);
    }

    /// The handshakes of the listener at `tls.listen`, presenting this certificate.
    pub fn termination(self: &Arc<Self>, tls: &Tls) -> Termination {
        pingora::tls::install_default_crypto_provider();
        let mut config =
            ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
                .with_no_client_auth()
                .with_cert_resolver(self.clone());
        // The hook for HTTP/2: offered first when on, so a client that speaks
        // both gets it; `proxy/connection.rs` reads what was agreed.
        config.alpn_protocols = if tls.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        if !tls.session_resumption {
            // Neither session-id resumption (TLS 1.2) nor TLS 1.3 tickets, which
            // rustls issues by default as keys into its session cache.
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Termination {
            listen: tls.listen,
            acceptor: Acceptor::from_server_config(Arc::new(config)),
        }
    }
}

/// Turns a connection accepted on the HTTPS listener into a TLS stream; the
/// public service's other listener is plain HTTP, so the connection's local
/// address says which one it came through.
pub struct Termination {
    listen: SocketAddr,
    acceptor: Acceptor,
}

impl Termination {
    /// `stream` as it is when it did not arrive at `tls.listen`, else after a
    /// completed handshake; None when the handshake failed or took too long.
    pub async fn accept(&self, stream: Stream) -> Option<Stream> {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        if !local.is_some_and(|at| self.is_listening_at(at)) {
            return Some(stream);
        }
        let tcp = stream.into_any().downcast::<TcpStream>().ok()?;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.tls_handshake(*tcp)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                log::debug!("TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                log::debug!("TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}");
                None
            }
        }
    }

    fn is_listening_at(&self, local: SocketAddr) -> bool {
        local.port() == self.listen.port()
            && (self.listen.ip().is_unspecified() || self.listen.ip() == local.ip())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The OS's words for an I/O error, without Rust's "(os error N)" tail.
pub(super) fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
