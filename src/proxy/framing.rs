//! Request-line and framing checks that run before routing: the request shapes
//! that let two HTTP parsers disagree about where a request ends are refused.

use crate::error::Reject;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora::http::RequestHeader;

/// Refuses TRACE/CONNECT and ambiguous framing (SPEC §4). A framing refusal
/// must also close the connection: its bytes cannot be trusted to end where
/// we think they do. `raw_head` is the header block as received: pingora
/// drops `Content-Length` when `Transfer-Encoding` is present, and a fragment
/// from the request-target, so the parsed request alone cannot show either.
pub fn check(req: &RequestHeader, raw_head: &[u8]) -> Result<(), Reject> {
    if req.method == Method::TRACE || req.method == Method::CONNECT {
        return Err(Reject::MethodNotAllowed);
    }
    let request_line = raw_head.split(|&b| b == b'\n').next().unwrap_or_default();
    if request_line.contains(&b'#') {
        return Err(bad("fragment in request target"));
    }
    let mut te = req.headers.get_all(TRANSFER_ENCODING).iter().peekable();
    let mut cl = req.headers.get_all(CONTENT_LENGTH).iter();
    if te.peek().is_some() {
        if cl.next().is_some() || names_content_length(raw_head) {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if req.version < Version::HTTP_11 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // Exactly one coding, `chunked`: anything else (`gzip, chunked`,
        // `chunked, identity`, two headers) is where smuggling lives.
        let only_chunked = te.next().is_some_and(|v| {
            v.to_str()
                .is_ok_and(|s| s.trim().eq_ignore_ascii_case("chunked"))
        }) && te.next().is_none();
        if !only_chunked {
            return Err(bad("unsupported Transfer-Encoding"));
        }
        return Ok(());
    }
    if let Some(first) = cl.next() {
        let valid =
            |v: &http::HeaderValue| !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
        if !valid(first) {
            return Err(bad("invalid Content-Length"));
        }
        for other in cl {
            if other != first {
                return Err(bad("conflicting Content-Length headers"));
            }
        }
    }
    Ok(())
}

/// Whether a raw header block has a `Content-Length` field (any letter case).
fn names_content_length(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n')
        .skip(1)
        .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// Splits the request-target into path and query. Only origin-form targets are
/// routed: absolute-form and `*` have no business at an edge gateway.
pub fn target(req: &RequestHeader) -> Result<(&str, Option<&str>), Reject> {
    let raw = std::str::from_utf8(req.raw_path()).map_err(|_| bad("path is not valid UTF-8"))?;
    if !raw.starts_with('/') {
        return Err(bad("request target must be an absolute path"));
    }
    Ok(match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    })
}

fn bad(detail: &'static str) -> Reject {
    Reject::BadRequest(detail.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let refused: &[&[(&str, &str)]] = &[
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            &[("Content-Length", "5"), ("Content-Length", "6")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "5, 5")],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[("Transfer-Encoding", "chunked, identity")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "identity")],
        ];
        for headers in refused {
            assert!(
                matches!(
                    check(&req("POST", headers), b"POST /x HTTP/1.1\r\n"),
                    Err(Reject::BadRequest(_))
                ),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn plain_framing_passes() {
        let allowed: &[&[(&str, &str)]] = &[
            &[],
            &[("Content-Length", "5")],
            &[("Content-Length", "5"), ("Content-Length", "5")],
            &[("Transfer-Encoding", "Chunked")],
        ];
        for headers in allowed {
            assert_eq!(
                check(&req("POST", headers), b"POST /x HTTP/1.1\r\n"),
                Ok(()),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn trace_and_connect_are_not_allowed() {
        assert_eq!(
            check(&req("TRACE", &[]), b"POST /x HTTP/1.1\r\n"),
            Err(Reject::MethodNotAllowed)
        );
    }

    #[test]
    fn content_length_dropped_by_the_parser_is_still_seen_in_the_raw_head() {
        let r = req("POST", &[("Transfer-Encoding", "chunked")]);
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(check(&r, raw), Err(Reject::BadRequest(_))));
    }

    #[test]
    fn a_fragment_the_parser_dropped_is_still_refused() {
        let raw = b"GET /x#/../admin HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(
            check(&req("GET", &[]), raw),
            Err(Reject::BadRequest(_))
        ));
    }
}
