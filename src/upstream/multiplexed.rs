//! The HTTP/2 side of an upstream (`protocol: h2c | h2`): one connection,
//! opened on the first gRPC call and shared by every call after it as
//! streams, opened again when it has gone away.

use super::Pool;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use h2::client::SendRequest;
use pingora::prelude::*;
use std::sync::Arc;

/// The current connection's handle, when there is one.
#[derive(Default)]
pub struct Multiplexed {
    sender: ArcSwapOption<SendRequest<Bytes>>,
}

impl Pool {
    /// Whether gRPC calls to this upstream are forwarded as HTTP/2.
    pub fn speaks_h2(&self) -> bool {
        self.h2.is_some()
    }

    /// A handle on an open HTTP/2 connection to the upstream: the shared one,
    /// or a new one to the next address in turn. Errors carry pingora's
    /// connect error types, marked as the upstream's.
    pub async fn h2_sender(&self) -> Result<SendRequest<Bytes>> {
        let Some(shared) = &self.h2 else {
            return Err(Error::explain(ConnectError, "upstream does not speak HTTP/2").into_up());
        };
        if let Some(sender) = shared.sender.load_full() {
            let sender = (*sender).clone();
            if let Ok(ready) = sender.clone().ready().await {
                drop(ready);
                return Ok(sender);
            }
        }
        let addr = self.pick();
        let conn = self.connect_for(addr, true).await?;
        let (sender, connection) = h2::client::Builder::new()
            .max_header_list_size(crate::http2::MAX_HEADER_LIST)
            .handshake::<_, Bytes>(conn)
            .await
            .map_err(|e| {
                Error::because(ConnectError, format!("HTTP/2 with {addr}"), e).into_up()
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("upstream HTTP/2 connection to {addr} ended: {e}");
            }
        });
        shared.sender.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }
}
