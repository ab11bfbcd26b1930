//! An HTTP/2 stream's request as the pipeline reads every request: the
//! [`Request`] an HTTP/1.1 client would have sent for it. Its pseudo-fields
//! become the request line and `Host`; split `cookie` fields are joined
//! (RFC 9113 §8.2.3), as the HTTP/1.1 upstream expects one; a body with no
//! declared length is marked chunked, which is how it will be framed upstream.

use crate::http1::request::HeadError;
use crate::http1::{push_field, Request};
use bytes::BytesMut;
use http::request::Parts;
use http::Version;

/// The request of `parts`; `has_body` when the stream did not end with its headers.
pub fn request_of(parts: &Parts, has_body: bool) -> Result<Request, HeadError> {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    // `:authority` is the target's host; a `Host` field beside it is dropped
    // rather than left to disagree with it (RFC 9113 §8.3.1).
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let Some(authority) = authority {
        push_field(&mut head, b"host", authority.as_bytes());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
        } else if !(authority.is_some() && name == http::header::HOST) {
            push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !cookies.is_empty() {
        push_field(&mut head, b"cookie", &cookies.join(&b"; "[..]));
    }
    if has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        push_field(&mut head, b"transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    let mut buf = BytesMut::from(&head[..]);
    let mut req = Request::parse(&mut buf)?.ok_or(HeadError::Malformed)?;
    req.version = Version::HTTP_2;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::BodyFraming;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn pseudo_fields_become_the_request_line_and_host() {
        let p = parts(
            http::Request::post("https://api.example:8443/v1/items?x=1")
                .header("authorization", "Bearer t")
                .header("host", "other.example")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(())
                .unwrap(),
        );
        let req = request_of(&p, true).unwrap();
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.version, Version::HTTP_2);
        assert_eq!(req.target(), b"/v1/items?x=1");
        assert_eq!(
            req.all("host").collect::<Vec<_>>(),
            [&b"api.example:8443"[..]]
        );
        assert_eq!(req.header("cookie"), Some(&b"a=1; b=2"[..]));
        assert_eq!(req.header("authorization"), Some(&b"Bearer t"[..]));
        assert_eq!(req.body_framing(), BodyFraming::Chunked);
        assert!(crate::http1::framing::check(&req).is_ok());
    }

    #[test]
    fn a_declared_length_frames_the_body_and_no_body_is_none() {
        let with_length = parts(
            http::Request::put("http://a/x")
                .header("content-length", "5")
                .body(())
                .unwrap(),
        );
        assert_eq!(
            request_of(&with_length, true).unwrap().body_framing(),
            BodyFraming::Length(5)
        );
        let bodiless = parts(http::Request::get("http://a/x").body(()).unwrap());
        assert_eq!(
            request_of(&bodiless, false).unwrap().body_framing(),
            BodyFraming::None
        );
    }

    #[test]
    fn too_many_fields_are_refused_as_an_http1_head_would_be() {
        let mut req = http::Request::get("http://a/x");
        for i in 0..=crate::http1::request::MAX_FIELDS {
            req = req.header(format!("x-{i}"), "v");
        }
        assert_eq!(
            request_of(&parts(req.body(()).unwrap()), false).unwrap_err(),
            HeadError::TooLarge
        );
    }
}
