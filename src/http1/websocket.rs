//! RFC 6455 §4: which requests are WebSocket opening handshakes, and which
//! answers complete one. Only such a pair turns a connection into a tunnel;
//! a 101 to anything else would hand every later byte of the client's
//! connection to the upstream unrouted.

use super::request::{BodyFraming, Request};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{Method, Version};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Key` of a valid opening handshake: `GET`, HTTP/1.1, no
/// body, one `Upgrade: websocket`, `Connection` naming `upgrade`, one key of
/// 16 bytes in base64 and `Sec-WebSocket-Version: 13`. `None` for anything
/// else, whose `Upgrade` is then not forwarded.
pub fn handshake_key(req: &Request) -> Option<&[u8]> {
    if req.method != Method::GET || req.version != Version::HTTP_11 {
        return None;
    }
    // The one scan every GET pays; the rest only for a request that asks.
    let upgrade = only(req, "upgrade")?;
    if req.body_framing() != BodyFraming::None || !req.connection_has("upgrade") {
        return None;
    }
    let version = only(req, "sec-websocket-version")?;
    let key = only(req, "sec-websocket-key")?;
    let mut decoded = [0u8; 18];
    let key_is_16_bytes = key.len() == 24
        && STANDARD
            .decode_slice(key, &mut decoded)
            .is_ok_and(|n| n == 16);
    (upgrade.eq_ignore_ascii_case(b"websocket") && version == b"13" && key_is_16_bytes)
        .then_some(key)
}

/// The `Sec-WebSocket-Accept` an upstream must answer `key` with.
pub fn accept_for(key: &[u8]) -> String {
    let mut hash = Sha1::new();
    hash.update(key);
    hash.update(GUID);
    STANDARD.encode(hash.finalize())
}

/// The one value of a field that must appear once, trimmed.
fn only<'a>(req: &'a Request, name: &'a str) -> Option<&'a [u8]> {
    let mut values = req.all(name);
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.trim_ascii()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(method: &str, version: &str, fields: &[(&str, &str)]) -> Request {
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        Request::from_text(&format!(
            "{method} /ws {version}\r\nHost: a\r\n{fields}\r\n"
        ))
    }

    fn valid() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    #[test]
    fn the_rfc_example_key_gets_the_rfc_example_accept() {
        // RFC 6455 §1.3's own example.
        assert_eq!(accept_for(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn only_a_complete_handshake_has_a_key() {
        assert_eq!(
            handshake_key(&head("GET", "HTTP/1.1", &valid())),
            Some(KEY.as_bytes())
        );
        let without =
            |name: &str| -> Vec<_> { valid().into_iter().filter(|(n, _)| *n != name).collect() };
        let with = |name: &'static str, value: &'static str| -> Vec<_> {
            let mut v = without(name);
            v.push((name, value));
            v
        };
        type Case = (
            &'static str,
            &'static str,
            Vec<(&'static str, &'static str)>,
        );
        let refused: Vec<Case> = vec![
            ("POST", "HTTP/1.1", valid()),
            ("GET", "HTTP/1.0", valid()),
            ("GET", "HTTP/1.1", without("Upgrade")),
            ("GET", "HTTP/1.1", without("Connection")),
            ("GET", "HTTP/1.1", without("Sec-WebSocket-Key")),
            ("GET", "HTTP/1.1", without("Sec-WebSocket-Version")),
            ("GET", "HTTP/1.1", with("Upgrade", "h2c")),
            ("GET", "HTTP/1.1", with("Upgrade", "websocket, h2c")),
            ("GET", "HTTP/1.1", with("Connection", "keep-alive")),
            ("GET", "HTTP/1.1", with("Sec-WebSocket-Version", "8")),
            ("GET", "HTTP/1.1", with("Sec-WebSocket-Key", "c2hvcnQ=")),
            (
                "GET",
                "HTTP/1.1",
                with("Sec-WebSocket-Key", "not base64 at all!!!!!!!"),
            ),
            ("GET", "HTTP/1.1", with("Content-Length", "5")),
            ("GET", "HTTP/1.1", {
                let mut v = valid();
                v.push(("Upgrade", "websocket"));
                v
            }),
        ];
        for (method, version, fields) in refused {
            assert_eq!(
                handshake_key(&head(method, version, &fields)),
                None,
                "{method} {version} {fields:?}"
            );
        }
    }
}
