//! The TLS listener's certificate: read and checked against its private key
//! before anything listens (pingora would read the files only inside its
//! service thread, and panic there), and replaced in place by a reload whose
//! files are good.

use crate::config::Tls;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert, RusTlsError};
use std::path::Path;
use std::sync::Arc;

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

    /// Pingora's settings for a listener that presents this certificate.
    pub fn settings(self: &Arc<Self>, tls: &Tls) -> Result<TlsSettings, String> {
        // The paths are pingora's fallback only: with a resolver set it never reads them.
        let mut settings = TlsSettings::intermediate(&lossy(&tls.cert), &lossy(&tls.key))
            .map_err(|e| format!("tls: {e}"))?;
        settings.set_cert_resolver(self.clone());
        Ok(settings)
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
