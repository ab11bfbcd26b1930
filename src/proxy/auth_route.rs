//! Routes without an upstream: the request is answered by the embedded auth module.
//! This stage reads the body (with a cap), hands the request to `auth::endpoints` and
//! writes its answer.

use super::{respond, Ctx, Proxy};
use crate::auth::endpoints::{self, MAX_BODY};
use crate::clock;
use crate::downstream::Client;
use crate::error::Reject;
use crate::http1::Request;
use bytes::{Bytes, BytesMut};
use pingora::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// Why the body could not be had.
enum BodyError {
    TooLarge,
    Read(Box<Error>),
}

impl Proxy {
    /// Serves an auth endpoint; the route has already been matched and its rules applied.
    pub(super) async fn serve_auth(
        &self,
        client: &mut Client,
        req: &Request,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let body = match read_body(client, req, MAX_BODY).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                // The rest of the body was never read, so the connection cannot carry another request.
                client.close_after();
                ctx.decision = "bad_request";
                return respond::reject(client, ctx, &Reject::PayloadTooLarge).await;
            }
            Err(BodyError::Read(e)) => return Err(e),
        };
        let headers = req.header_map();
        // Only origin-form targets reach here (`framing::target`): the host is
        // the `Host` field's.
        let host = req.header("host").and_then(|h| std::str::from_utf8(h).ok());
        let request = endpoints::Request {
            method: &req.method,
            path: &ctx.path,
            headers: &headers,
            body: &body,
            client_ip: ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host,
            tls: ctx.tls,
        };
        let outcome = endpoints::handle(&self.auth, &ctx.gateway, &request, clock::now()).await;
        if let Some(decision) = outcome.decision {
            ctx.decision = decision;
        }
        if outcome.identity.is_some() {
            ctx.identity = outcome.identity;
        }
        let answer = outcome.answer;
        respond::send(client, ctx, answer.status, &answer.headers, &answer.body).await
    }
}

/// Reads the whole request body, refusing (before reading, when `Content-Length` says
/// so) anything over `cap` bytes. Memory use is bounded by `cap` either way.
async fn read_body(client: &mut Client, req: &Request, cap: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = client.read_body().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
