//! Request-line and framing checks that run before routing: the request shapes
//! that let two HTTP parsers disagree about where a request ends are refused.

use super::request::Request;
use http::Version;

/// Why a request was refused before routing, as the short detail of its 400.
/// The pipeline turns it into its answer; the transport only decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Refuses ambiguous framing and heads RFC 9112 calls invalid (docs/security.md, Framing, first). A
/// framing refusal must also close the connection: its bytes cannot be
/// trusted to end where we think they do.
pub fn check(req: &Request) -> Result<(), Refused> {
    if req.target().contains(&b'#') {
        return Err(bad("fragment in request target"));
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    let mut hosts = req.all("host");
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad("more than one Host field")),
        (None, _) if req.version >= Version::HTTP_11 => return Err(bad("no Host field")),
        _ => {}
    }
    let mut te = req.all("transfer-encoding").peekable();
    let mut cl = req.all("content-length");
    if te.peek().is_some() {
        if cl.next().is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if req.version < Version::HTTP_11 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // Exactly one coding, `chunked`: anything else (`gzip, chunked`,
        // `chunked, identity`, two headers) is where smuggling lives.
        let only_chunked = te
            .next()
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            && te.next().is_none();
        if !only_chunked {
            return Err(bad("unsupported Transfer-Encoding"));
        }
        return Ok(());
    }
    if let Some(first) = cl.next() {
        // The same reading the body reader gives it: a length it could not
        // take (20 digits) must not pass here as "digits".
        if parse_length(first).is_none() {
            return Err(bad("invalid Content-Length"));
        }
        if cl.any(|other| other != first) {
            return Err(bad("conflicting Content-Length headers"));
        }
    }
    Ok(())
}

/// Splits the request-target into path and query. Only origin-form targets are
/// routed: absolute-form and `*` have no business at an edge gateway.
pub fn target(req: &Request) -> Result<(&str, Option<&str>), Refused> {
    split_target(req.target())
}

/// [`target`] for a target taken from elsewhere: the original request's, which a
/// forward-auth question carries in a header.
pub fn split_target(target: &[u8]) -> Result<(&str, Option<&str>), Refused> {
    let raw = std::str::from_utf8(target).map_err(|_| bad("path is not valid UTF-8"))?;
    if !raw.starts_with('/') {
        return Err(bad("request target must be an absolute path"));
    }
    // A byte search: `?` is ASCII, so both halves stay valid UTF-8.
    Ok(match raw.bytes().position(|b| b == b'?') {
        Some(at) => (&raw[..at], Some(&raw[at + 1..])),
        None => (raw, None),
    })
}

/// A `Content-Length` value, either way: digits only (no sign, no spaces, no
/// list), at most 18 of them so it cannot overflow.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn bad(detail: &'static str) -> Refused {
    Refused(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request {
        let fields: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        Request::from_text(&format!("{method} /x HTTP/1.1\r\nHost: a\r\n{fields}\r\n"))
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let refused: &[&[(&str, &str)]] = &[
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            &[("content-LENGTH", "4"), ("Transfer-Encoding", "chunked")],
            &[("Content-Length", "5"), ("Content-Length", "6")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "5, 5")],
            &[("Content-Length", "99999999999999999999")],
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
                matches!(check(&req("POST", headers)), Err(Refused(_))),
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
            assert_eq!(check(&req("POST", headers)), Ok(()), "{headers:?}");
        }
    }

    #[test]
    fn content_lengths_are_digits_only() {
        assert_eq!(parse_length(b"42"), Some(42));
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"+4"), None);
        assert_eq!(parse_length(b"4 "), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(
            parse_length(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(parse_length(b"9999999999999999999"), None);
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        let host = |head: &str| check(&Request::from_text(head));
        assert_eq!(host("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(host("GET / HTTP/1.0\r\n\r\n"), Ok(()));
        for refused in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert!(matches!(host(refused), Err(Refused(_))), "{refused:?}");
        }
    }

    #[test]
    fn transfer_encoding_in_http_1_0_is_refused() {
        let r = Request::from_text("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(check(&r), Err(Refused(_))));
    }

    #[test]
    fn a_fragment_in_the_target_is_refused() {
        let r = Request::from_text("GET /x#/../admin HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(check(&r), Err(Refused(_))));
    }
}
