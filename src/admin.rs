//! The admin listener: `/metrics`, `/healthz` and `/readyz` (docs/operations.md), kept
//! off the public listener so metrics never face the internet by accident.

use crate::metrics::METRICS;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Serves the operational endpoints. `ready` is kept current by whoever
/// watches the store, so a probe never waits on the database.
pub struct Admin {
    pub ready: Arc<AtomicBool>,
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let built = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body);
    // Status and header values above are constants or numbers: always valid.
    built.unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/metrics" => {
                let ready = self.ready.load(Ordering::Acquire);
                METRICS.ready.set(i64::from(ready));
                text(200, "text/plain; version=0.0.4", METRICS.render())
            }
            "/healthz" => text(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                text(200, "application/json", br#"{"status":"ready"}"#.to_vec())
            }
            "/readyz" => text(
                503,
                "application/json",
                br#"{"status":"not ready"}"#.to_vec(),
            ),
            _ => text(
                404,
                "application/json",
                br#"{"error":"Not found"}"#.to_vec(),
            ),
        }
    }
}
