//! Writing the gateway's own answers, and the headers every response carries.

use super::{Ctx, Session};
use crate::error::Reject;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// A year, the usual HSTS max-age for a site that is HTTPS-only.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Headers on every response, proxied or not: the request id, no version-
/// naming `Server`, HSTS over HTTPS.
pub fn common_headers(resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    // Checked first: a lookup by the parsed name is cheaper than a removal by text.
    if resp.headers.contains_key(http::header::SERVER) {
        resp.remove_header(&http::header::SERVER);
    }
    // Names as constants: a name given as text is parsed on every insert.
    resp.insert_header(super::X_REQUEST_ID.clone(), ctx.request_id.as_str())?;
    if ctx.tls {
        resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, HSTS)?;
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
    let resp = head(ctx, status, headers, body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp)).await?;
    if head_only || body.is_empty() {
        session.finish_body().await
    } else {
        session.write_response_body(body, true).await
    }
}

/// Answers a request whose head could not be parsed (so there is no method
/// to look at) with the JSON for `reject`; the connection then closes.
pub async fn reject_unparsed(session: &mut Session, ctx: &Ctx, reject: &Reject) -> Result<()> {
    let answer = reject.answer();
    let resp = head(ctx, answer.status, &answer.headers, answer.body.len())?;
    session
        .write_error_response(resp, Bytes::from(answer.body))
        .await
}

fn head(
    ctx: &Ctx,
    status: u16,
    headers: &[(&'static str, String)],
    body_len: usize,
) -> Result<ResponseHeader> {
    // No case map: pingora then writes each name in its usual title case, and every
    // insert costs one header-map update instead of two.
    let mut resp = ResponseHeader::build_no_case(status, Some(headers.len() + 4))?;
    for (name, value) in headers {
        resp.append_header(*name, value.as_str())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body_len)?;
    if !headers.iter().any(|(n, _)| *n == "cache-control") {
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    }
    common_headers(&mut resp, ctx)?;
    Ok(resp)
}
