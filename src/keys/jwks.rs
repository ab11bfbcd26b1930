//! `GET /.well-known/jwks.json`: the public keys that verify the gateway's tokens,
//! so upstreams can check a token themselves (RFC 8414 §2 names the path).

use crate::http1::{BodyFraming, Request};
use crate::token::Keys;
use bytes::Bytes;

/// Where the document is served, at the root of the public listener.
pub const PATH: &str = "/.well-known/jwks.json";

/// A response the proxy sends as is.
pub struct Answer {
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// The JWKS answer when `req` asks for it: a `GET` or `HEAD` of [`PATH`]
/// (any query) with no body. Anything else, even to that path, takes the
/// normal pipeline, where its framing is checked and no route matches.
pub fn answer(req: &Request, keys: &Keys, now: u64) -> Option<Answer> {
    let target = req.target();
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    if path != PATH.as_bytes()
        || !(req.method == http::Method::GET || req.method == http::Method::HEAD)
    {
        return None;
    }
    if req.body_framing() != BodyFraming::None {
        return None;
    }
    let (doc, max_age) = keys.jwks(now);
    Some(Answer {
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", format!("public, max-age={max_age}")),
        ],
        body: Bytes::from(doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hs256() -> Keys {
        Keys::hs256(&[7u8; 32], "hs256", "iss", "aud", Duration::from_secs(5))
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        let fields: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        Request::from_text(&format!("{method} {target} HTTP/1.1\r\n{fields}\r\n"))
    }

    #[test]
    fn an_hs256_gateway_publishes_an_empty_key_set() {
        let a = answer(&request("GET", "/.well-known/jwks.json", &[]), &hs256(), 0).unwrap();
        assert_eq!(&a.body[..], br#"{"keys":[]}"#);
        assert!(a
            .headers
            .contains(&("cache-control", "public, max-age=300".to_owned())));
    }

    #[test]
    fn only_a_bodyless_get_or_head_of_the_exact_path_is_answered() {
        let k = hs256();
        assert!(answer(&request("HEAD", "/.well-known/jwks.json?x=1", &[]), &k, 0).is_some());
        assert!(answer(&request("POST", "/.well-known/jwks.json", &[]), &k, 0).is_none());
        assert!(answer(&request("GET", "/.well-known/jwks.json/", &[]), &k, 0).is_none());
        assert!(answer(&request("GET", "/.well-known//jwks.json", &[]), &k, 0).is_none());
        let chunked = [("transfer-encoding", "chunked")];
        assert!(answer(&request("GET", "/.well-known/jwks.json", &chunked), &k, 0).is_none());
        let sized = [("content-length", "5")];
        assert!(answer(&request("GET", "/.well-known/jwks.json", &sized), &k, 0).is_none());
    }
}
