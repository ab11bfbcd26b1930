//! One bounded `GET` of a JWKS document, with pingora's own HTTP client (and
//! its rustls, checking the certificate and host name against the system's roots).

use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// The longest one fetch may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Larger documents are refused: real key sets hold a handful of keys.
const MAX_DOCUMENT: usize = 1 << 20;

/// Fetches documents; holds the TLS settings, built once per fetcher.
pub struct Client {
    connector: Connector,
}

impl Client {
    pub fn new() -> Client {
        Client {
            connector: Connector::new(None),
        }
    }

    /// The body of a `200` answer to `GET url`. Redirects are not followed:
    /// the configured URL is the only place keys come from.
    pub async fn get(&self, url: &http::Uri) -> Result<Vec<u8>, String> {
        match tokio::time::timeout(TIMEOUT, self.get_within(url)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
        }
    }

    async fn get_within(&self, url: &http::Uri) -> Result<Vec<u8>, String> {
        let tls = url.scheme_str() == Some("https");
        let authority = url.authority().ok_or("the URL has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // Resolved here, every time, and without panicking: IdPs move, and
        // pingora's `HttpPeer::new` would panic on a name it cannot resolve.
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        let peer = HttpPeer::new(addr, tls, host.to_owned());
        let (mut session, _) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("cannot connect: {}", e.etype().as_str()))?;
        let target = url.path_and_query().map_or("/", |p| p.as_str());
        let mut req = RequestHeader::build("GET", target.as_bytes(), None)
            .map_err(|e| format!("bad request target: {e}"))?;
        for (name, value) in [
            ("host", authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "portcullis"),
        ] {
            req.insert_header(name, value)
                .map_err(|e| format!("bad header: {e}"))?;
        }
        let io = |e: Box<pingora::Error>| format!("exchange failed: {}", e.etype().as_str());
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(io)?;
        session.finish_request_body().await.map_err(io)?;
        session.read_response_header().await.map_err(io)?;
        let status = session.response_header().map(|r| r.status.as_u16());
        if status != Some(200) {
            return Err(format!("answered {}", status.unwrap_or(0)));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(io)? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("document larger than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.to_vec())
    }
}
