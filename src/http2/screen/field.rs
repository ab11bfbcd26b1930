//! Which header fields a client's request may not carry over HTTP/2: the rules the `h2`
//! crate applies while it decodes a header block, stated here so the screen can apply
//! them first, where a refusal can still be a stream error.
//!
//! They must not drift from h2's: a field refused here but accepted by h2 would reset a
//! stream h2 would have served, and one accepted here but refused by h2 would end the
//! connection as before. The unit tests compare them byte by byte with the `http` crate
//! functions h2 calls (`HeaderName::from_lowercase`, `HeaderValue::from_bytes`).

use http::{Method, StatusCode};

/// The longest field name h2 (through `http`) accepts.
const MAX_NAME: usize = (1 << 16) - 1;

/// Whether a decoded field makes its request one h2 refuses:
/// - a name or value its HPACK decoder cannot turn into a field, which h2 answers by
///   ending the whole connection: an uppercase name or any byte outside a token in it
///   (RFC 9113 §8.2.1), a value with NUL, CR, LF or another control byte (§8.2.1), an
///   unknown pseudo-header, a method that is not a token, a status that is not 3 digits;
/// - a connection-specific field (§8.2.2), which h2 answers with a stream error.
///
/// Either way the request is malformed, and the screen makes it a stream error.
pub fn is_refused(name: &[u8], value: &[u8]) -> bool {
    match name {
        [] => true,
        [b':', pseudo @ ..] => !pseudo_is_valid(pseudo, value),
        _ => {
            name.len() > MAX_NAME
                || !name.iter().all(|&b| is_name_byte(b))
                || !value.iter().all(|&b| is_value_byte(b))
                || is_connection_specific(name, value)
        }
    }
}

fn pseudo_is_valid(pseudo: &[u8], value: &[u8]) -> bool {
    match pseudo {
        b"authority" | b"scheme" | b"path" | b"protocol" => std::str::from_utf8(value).is_ok(),
        b"method" => Method::from_bytes(value).is_ok(),
        b"status" => StatusCode::from_bytes(value).is_ok(),
        _ => false,
    }
}

/// A token character (RFC 9110 §5.6.2) other than an uppercase letter, and `"`, which
/// the `http` crate lets through in an HTTP/2 name.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!\"#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, space, tab and bytes 0x80 and up: what `HeaderValue` holds.
fn is_value_byte(b: u8) -> bool {
    (b >= 0x20 && b != 0x7f) || b == b'\t'
}

/// RFC 9113 §8.2.2, as h2 reads it: `te` is allowed with `trailers` only.
fn is_connection_specific(name: &[u8], value: &[u8]) -> bool {
    match name {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {
            true
        }
        b"te" => value != b"trailers",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    #[test]
    fn every_name_byte_is_judged_as_the_http_crate_judges_it_in_http2() {
        for b in 0..=255u8 {
            let http = HeaderName::from_lowercase(&[b'x', b]).is_ok();
            assert_eq!(is_name_byte(b), http, "byte {b:#04x}");
            // Past the 64-byte scratch buffer, `http` takes another path.
            let long = [vec![b'x'; 70], vec![b]].concat();
            assert_eq!(is_name_byte(b), HeaderName::from_lowercase(&long).is_ok());
        }
    }

    #[test]
    fn every_value_byte_is_judged_as_the_http_crate_judges_it() {
        for b in 0..=255u8 {
            let http = HeaderValue::from_bytes(&[b'a', b]).is_ok();
            assert_eq!(is_value_byte(b), http, "byte {b:#04x}");
        }
    }

    #[test]
    fn fields_a_request_may_carry_pass() {
        for (name, value) in [
            (":method", "GET"),
            (":method", "PURGE"),
            (":path", "/a?b=c"),
            (":authority", "gw.test"),
            (":scheme", "https"),
            (":protocol", "websocket"),
            ("x-lower", "1"),
            ("accept", "*/*"),
            ("te", "trailers"),
            ("x-empty", ""),
            ("x-latin", "caf\u{e9}"),
        ] {
            assert!(
                !is_refused(name.as_bytes(), value.as_bytes()),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn names_values_and_pseudo_headers_h2_would_refuse_are_refused() {
        let long_name = vec![b'a'; MAX_NAME + 1];
        for (name, value) in [
            (&b"X-Upper"[..], &b"1"[..]),
            (b"x-upper-Z", b"1"),
            (b"x space", b"1"),
            (b"", b"1"),
            (&long_name, b"1"),
            (b"x-nul", b"a\0b"),
            (b"x-crlf", b"a\r\nb: c"),
            (b"x-del", b"\x7f"),
            (b":unknown", b"1"),
            (b":method", b"G ET"),
            (b":status", b"2000"),
            (b":path", b"/\xff"),
        ] {
            assert!(
                is_refused(name, value),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn connection_specific_fields_are_refused_and_te_trailers_is_not() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(is_refused(name.as_bytes(), b"x"), "{name}");
        }
        assert!(is_refused(b"te", b"gzip"));
        assert!(!is_refused(b"te", b"trailers"));
    }
}
