//! Reading an upstream's answer head: status, headers without the hop-by-hop
//! ones, and how its body is delimited (RFC 9112 §6.3).

use super::is_hop_by_hop;
use crate::http1::framing::parse_length;
use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use pingora::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// An answer head with more header lines than this is refused as a bad gateway.
const MAX_HEADERS: usize = 128;

/// How the upstream's answer body is delimited.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
    /// Switched protocols: bytes flow both ways until either side ends.
    Tunnel,
}

pub struct Answer {
    pub status: u16,
    /// The head as received; `fields` are slices of it.
    head: Bytes,
    /// The fields the client may get, in the upstream's order: all but the
    /// hop-by-hop ones, `Server` and `Date`.
    fields: Vec<FieldAt>,
    /// Whether the framing fields among `fields` are passed on: only on a
    /// bodiless answer, where they describe the resource; otherwise the
    /// client's writer frames the body itself.
    framing_fields: bool,
    pub framing: Framing,
    /// The upstream will read another request on this connection.
    pub keep_alive: bool,
}

/// Where a field's name and value are in the head.
struct FieldAt {
    name: Range<usize>,
    value: Range<usize>,
    /// `Content-Length` or `Transfer-Encoding`.
    framing: bool,
}

impl Answer {
    /// The fields passed on, as (name, value), in the upstream's order and case.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .filter(|f| self.framing_fields || !f.framing)
            .map(|f| (&self.head[f.name.clone()], &self.head[f.value.clone()]))
    }
}

/// What the fields of a head say about its body and connection.
#[derive(Default)]
struct Delimiting {
    length: Option<u64>,
    /// Whether the last transfer coding is `chunked`, when there is one.
    chunked: Option<bool>,
    close: bool,
}

/// One complete, final answer head taken off the front of `buf`, `None` if
/// more bytes are needed. Interim (1xx) answers are consumed and skipped.
/// `upgrade`: the `Sec-WebSocket-Accept` a 101 must carry, when the request
/// was a WebSocket handshake; any other 101 is an error (a 502, and the
/// client's connection closed), never a tunnel.
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: Option<&[u8]>,
) -> Result<Option<Answer>> {
    loop {
        // Left uninitialized: the parser writes the slots it fills (a 4 KiB
        // memset per answer otherwise).
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let outcome = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        );
        let len = match outcome {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Error::because(InvalidHTTPHeader, "upstream answer head", e).into_up())
            }
        };
        let status = parsed.code.unwrap_or(0);
        if status < 100 {
            // Three digits, but no status (RFC 9110 §15): `001` would reach the
            // client as a status line no parser reads the same way.
            return Error::e_explain(InvalidHTTPHeader, "upstream answer status below 100")
                .map_err(|e| e.into_up());
        }
        if status == 101 && !completes_handshake(parsed.headers, upgrade) {
            return Error::e_explain(
                InvalidHTTPHeader,
                "upstream 101 without a WebSocket handshake it answers",
            )
            .map_err(|e| e.into_up());
        }
        if (100..200).contains(&status) && status != 101 {
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        let mut said = Delimiting {
            close: http10,
            ..Delimiting::default()
        };
        // Fields are sliced out of the head rather than copied: note where they are.
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let mut fields = Vec::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            if let Some(framing) = said.read(h.name.as_bytes(), h.value, http10)? {
                fields.push(FieldAt {
                    name: at(h.name.as_bytes()),
                    value: at(h.value),
                    framing,
                });
            }
        }
        let head = buf.split_to(len).freeze();
        return Ok(Some(answer(status, head, fields, said, method)));
    }
}

/// Whether a 101's fields complete the handshake whose accept value is
/// `accept`: `Upgrade: websocket` and exactly that `Sec-WebSocket-Accept`.
fn completes_handshake(fields: &[httparse::Header], accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let values = |name: &'static str| {
        fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    let one = |name| {
        let mut all = values(name);
        match (all.next(), all.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    one("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
        && one("sec-websocket-accept") == Some(accept)
}

impl Delimiting {
    /// Takes in one field: `None` when it is not passed on, else whether it
    /// is a framing field.
    fn read(&mut self, name: &[u8], value: &[u8], http10: bool) -> Result<Option<bool>> {
        let bad = |what: &'static str| Error::explain(InvalidHTTPHeader, what).into_up();
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
        if is("connection") {
            for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    self.close = false;
                }
            }
            Ok(None)
        } else if is_hop_by_hop(name) || is("server") || is("date") {
            // Server names a version; the gateway sends none. Date is the
            // gateway's own, as on every answer it writes.
            Ok(None)
        } else if is("content-length") {
            let n = parse_length(value).ok_or_else(|| bad("upstream content-length"))?;
            if self.length.is_some_and(|seen| seen != n) {
                return Err(bad("upstream sent two content-lengths"));
            }
            self.length = Some(n);
            Ok(Some(true))
        } else if is("transfer-encoding") {
            let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            Ok(Some(true))
        } else {
            Ok(Some(false))
        }
    }
}

fn answer(
    status: u16,
    head: Bytes,
    fields: Vec<FieldAt>,
    said: Delimiting,
    method: &Method,
) -> Answer {
    let framing = if status == 101 {
        Framing::Tunnel
    } else if *method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (said.chunked, said.length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    Answer {
        status,
        head,
        fields,
        // A HEAD's or a 304's length describes the resource, and no body follows
        // to frame. Beside `Transfer-Encoding` it would be a smuggling shape.
        framing_fields: framing == Framing::Empty && said.chunked.is_none(),
        framing,
        keep_alive: !said.close && framing != Framing::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(wire: &[u8], method: Method) -> (Option<Answer>, BytesMut) {
        let mut buf = BytesMut::from(wire);
        let answer = parse_head(&mut buf, &method, None).unwrap();
        (answer, buf)
    }

    fn all<'a>(a: &'a Answer, name: &'a str) -> Vec<&'a str> {
        a.fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
            .collect()
    }

    fn header<'a>(a: &'a Answer, name: &'a str) -> Option<&'a str> {
        all(a, name).first().copied()
    }

    #[test]
    fn a_length_framed_answer_keeps_its_headers_and_leaves_the_body() {
        let (a, rest) = parsed(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.status, 201);
        assert_eq!(a.framing, Framing::Length(5));
        assert!(a.keep_alive);
        assert_eq!(header(&a, "content-type"), Some("text/plain"));
        assert_eq!(all(&a, "x-two"), ["a", "b"]);
        assert!(
            header(&a, "content-length").is_none(),
            "the writer frames the body"
        );
        assert!(header(&a, "connection").is_none());
        assert!(header(&a, "keep-alive").is_none());
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn interim_answers_are_skipped_and_a_partial_head_waits() {
        let (a, _) = parsed(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le",
            Method::GET,
        );
        assert!(a.is_none());
        let (a, _) = parsed(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.status, 204);
        assert_eq!(a.framing, Framing::Empty);
        assert!(header(&a, "link").is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |wire: &[u8], method| parsed(wire, method).0.unwrap().framing;
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::GET
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                Method::HEAD
            ),
            Framing::Empty
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::GET
            ),
            Framing::Empty
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET),
            Framing::Close
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Method::GET
            ),
            Framing::Close
        );
    }

    #[test]
    fn an_answer_with_many_headers_keeps_them_all() {
        let mut wire = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..100 {
            wire.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        wire.push_str("Content-Length: 0\r\n\r\n");
        let (a, _) = parsed(wire.as_bytes(), Method::GET);
        let a = a.unwrap();
        assert_eq!(a.fields().count(), 100, "all but the framing field");
        assert_eq!(header(&a, "x-h99"), Some("99"));
        let mut wire = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_HEADERS + 1 {
            wire.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        wire.push_str("\r\n");
        let mut buf = BytesMut::from(wire.as_bytes());
        assert!(parse_head(&mut buf, &Method::GET, None).is_err());
    }

    #[test]
    fn a_bodiless_answer_keeps_its_length_field() {
        let (a, _) = parsed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            Method::HEAD,
        );
        assert_eq!(header(&a.unwrap(), "content-length"), Some("9"));
    }

    #[test]
    fn chunked_beside_a_length_drops_the_length() {
        let (a, _) = parsed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        let a = a.unwrap();
        assert_eq!(a.framing, Framing::Chunked);
        assert!(header(&a, "content-length").is_none());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let keep = |wire: &[u8]| parsed(wire, Method::GET).0.unwrap().keep_alive;
        assert!(keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn bad_heads_are_errors_not_guesses() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 001 Continue\r\n\r\n",
            b"HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(wire);
            let e = parse_head(&mut buf, &Method::GET, None)
                .err()
                .expect("refused");
            assert_eq!(*e.esource(), ErrorSource::Upstream, "{wire:?}");
        }
    }

    #[test]
    fn a_101_is_a_tunnel_only_when_it_completes_the_handshake() {
        let accept = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let parse = |wire: &str, asked: Option<&[u8]>| {
            let mut buf = BytesMut::from(wire);
            parse_head(&mut buf, &Method::GET, asked).map(|a| a.map(|a| a.framing))
        };
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(parse(good, Some(accept)).unwrap(), Some(Framing::Tunnel));
        assert!(parse(good, None).is_err(), "unasked");
        assert!(parse(good, Some(b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).is_err());
        for bad in [
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(parse(bad, Some(accept)).is_err(), "{bad:?}");
        }
    }
}
