//! Routes without an upstream: the request is answered by the embedded auth module.
//! This stage reads the body (with a cap), hands the request to `auth::endpoints` and
//! writes its answer.

use super::{respond, Ctx, Proxy, Session};
use crate::auth::endpoints::{self, MAX_BODY};
use crate::clock;
use crate::error::Reject;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use pingora::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// Why the body could not be had.
enum BodyError {
    TooLarge,
    Read(Box<Error>),
}

impl Proxy {
    /// Serves an auth endpoint; the route has already been matched and its rules applied.
    pub(super) async fn serve_auth(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let body = match read_body(session, MAX_BODY).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                // The rest of the body was never read, so the connection cannot carry another request.
                session.set_keepalive(None);
                ctx.decision = "bad_request";
                return respond::reject(session, ctx, &Reject::PayloadTooLarge).await;
            }
            Err(BodyError::Read(e)) => return Err(e),
        };
        let req = session.req_header();
        let method = req.method.clone();
        let headers = req.headers.clone();
        let host = req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri.authority().map(|a| a.as_str().to_owned()));
        let request = endpoints::Request {
            method: &method,
            path: &ctx.path,
            headers: &headers,
            body: &body,
            client_ip: ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host: host.as_deref(),
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
        respond::send(
            session,
            ctx,
            answer.status,
            &answer.headers,
            Bytes::from(answer.body),
        )
        .await
    }
}

/// Reads the whole request body, refusing (before reading, when `Content-Length` says
/// so) anything over `cap` bytes. Memory use is bounded by `cap` either way.
async fn read_body(session: &mut Session, cap: usize) -> Result<Bytes, BodyError> {
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
