//! Writing the gateway's own answers, and the fields every answer carries.

use super::cors::{self, Preflight};
use super::Ctx;
use crate::downstream::Client;
use crate::error::{Reject, CONTENT_TYPE, JSON};
use crate::http1::{Head, Out};
use pingora::prelude::*;

/// A year, the usual HSTS max-age for a site that is HTTPS-only.
const HSTS: &[u8] = b"max-age=31536000; includeSubDomains";

/// Fields on every answer, proxied or not: the gateway's `Date`, the request
/// id, over HTTPS HSTS, and on a route with a CORS policy its fields. No
/// `Server` field is ever written (a proxied one is dropped).
pub fn common_fields(head: &mut Head, ctx: &Ctx) {
    head.field(
        b"Date",
        pingora::protocols::http::date::get_cached_date().as_bytes(),
    );
    head.field(b"X-Request-Id", ctx.request_id.as_bytes());
    if ctx.tls {
        head.field(b"Strict-Transport-Security", HSTS);
    }
    cors::fields(head, ctx);
}

/// Answers a CORS preflight the gateway decided on (`cors::preflight`): 204 with
/// the route's allowances, or 403 with none.
pub async fn preflight(client: &mut Client, ctx: &Ctx, preflight: Preflight) -> Result<()> {
    if let Preflight::Refused = preflight {
        return reject(client, ctx, &Reject::CrossOrigin).await;
    }
    let mut head = client.head(204);
    cors::preflight_fields(&mut head, ctx);
    common_fields(&mut head, ctx);
    client.write_head(head, Out::None);
    client.finish().await
}

/// Answers with the JSON refusal for `reject`; a gRPC call, with the gRPC
/// status for it (`Reject::grpc_status`) and its message, as gRPC clients read.
pub async fn reject(client: &mut Client, ctx: &Ctx, reject: &Reject) -> Result<()> {
    if ctx.grpc {
        return grpc_reject(client, ctx, reject).await;
    }
    // Written field by field rather than through `Reject::answer`, whose
    // owned header list costs three allocations per refusal.
    let mut head = client.head(reject.status());
    head.field(CONTENT_TYPE.as_bytes(), JSON.as_bytes());
    if let Some((name, value)) = reject.field() {
        head.field(name.as_bytes(), value.as_bytes());
    }
    head.field(b"Cache-Control", b"no-store");
    finish(client, ctx, head, &reject.body()).await
}

/// A gRPC "trailers-only" answer: HTTP 200 whose only HEADERS frame carries
/// `grpc-status` and `grpc-message` (percent-encoded as gRPC asks).
async fn grpc_reject(client: &mut Client, ctx: &Ctx, reject: &Reject) -> Result<()> {
    let mut head = client.head(200);
    head.field(CONTENT_TYPE.as_bytes(), b"application/grpc");
    head.field(
        b"grpc-status",
        itoa::Buffer::new().format(reject.grpc_status()).as_bytes(),
    );
    let message = reject.message();
    let mut encoded = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            encoded.push(b);
        } else {
            encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    head.field(b"grpc-message", &encoded);
    common_fields(&mut head, ctx);
    client.write_head(head, Out::None);
    client.count_as(reject.status());
    client.finish().await
}

/// Answers with a complete response the gateway produced itself.
pub async fn send(
    client: &mut Client,
    ctx: &Ctx,
    status: u16,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> Result<()> {
    let mut head = client.head(status);
    for (name, value) in headers {
        head.field(name.as_bytes(), value.as_bytes());
    }
    if !headers.iter().any(|(n, _)| *n == "cache-control") {
        head.field(b"Cache-Control", b"no-store");
    }
    finish(client, ctx, head, body).await
}

/// Adds the common fields to `head` and writes it with `body`, the whole answer.
async fn finish(client: &mut Client, ctx: &Ctx, mut head: Head, body: &[u8]) -> Result<()> {
    common_fields(&mut head, ctx);
    client.write_head(head, Out::Length(body.len() as u64));
    client.write_body(body).await?;
    client.finish().await
}
