//! Writing the gateway's own answers, and the headers every response carries.

use super::Ctx;
use crate::error::Reject;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// A year, the usual HSTS max-age for a site that is HTTPS-only.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Headers on every response, proxied or not: the request id, no version-
/// naming `Server`, HSTS over HTTPS.
pub fn common_headers(resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    // Checked first: a lookup by the parsed name is cheaper than a removal by text.
    if resp.headers.contains_key(http::header::SERVER) {
        resp.remove_header(&http::header::SERVER);
    }
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if ctx.tls {
        resp.insert_header("strict-transport-security", HSTS)?;
    }
    Ok(())
}

/// Answers with the SPEC §5 JSON for `reject`.
pub async fn reject(session: &mut Session, ctx: &Ctx, reject: &Reject) -> Result<()> {
    let answer = reject.answer();
    send(
        session,
        ctx,
        answer.status,
        &answer.headers,
        Bytes::from(answer.body),
    )
    .await
}

/// Answers with a complete response the gateway produced itself.
pub async fn send(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<()> {
    // No case map: pingora then writes each name in its usual title case, and every
    // insert costs one header-map update instead of two.
    let mut resp = ResponseHeader::build_no_case(status, Some(headers.len() + 4))?;
    for (name, value) in headers {
        resp.append_header(*name, value.as_str())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if !headers.iter().any(|(n, _)| *n == "cache-control") {
        resp.insert_header("cache-control", "no-store")?;
    }
    common_headers(&mut resp, ctx)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only || body.is_empty())
        .await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
