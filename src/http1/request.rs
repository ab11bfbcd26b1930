//! A client's request head, parsed once: method, target, version and header
//! fields as slices of the bytes received, names in the client's letter case.
//! A request has a dozen fields, so a lookup is a short scan: nothing is
//! hashed, validated twice or copied (building a header map cost more than
//! the lookups it would speed up).

use super::framing::parse_length;
use bytes::{Bytes, BytesMut};
use http::{Method, Version};
use std::mem::MaybeUninit;
use std::ops::Range;

/// A request head with more header fields than this is refused (431).
pub const MAX_FIELDS: usize = 128;
/// A request head longer than this is refused (431): it leaves room for an
/// 8 KiB `Authorization` and a full cookie jar, not for a memory attack.
pub const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
pub enum HeadError {
    /// Not HTTP/1.x: the connection cannot be read any further.
    Malformed,
    /// HTTP/1.x, but a shape the gateway refuses rather than guess at.
    Refused(&'static str),
    /// Longer than `MAX_HEAD`, or more than `MAX_FIELDS` fields.
    TooLarge,
}

/// How a request says its body is delimited (RFC 9112 §6.3): the one reading
/// of it that the body reader, the forwarder and the JWKS answer share.
/// `framing::check` refuses the ambiguous shapes before a body is relied on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    /// A `Content-Length` that is no length (refused by `framing::check`).
    Unreadable,
}

#[derive(Debug)]
pub struct Request {
    /// The head exactly as received, request line to blank line.
    head: Bytes,
    pub method: Method,
    pub version: Version,
    target: Range<usize>,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    name: Range<usize>,
    value: Range<usize>,
}

/// RFC 9110's methods and PATCH, as they must be spelled: methods are
/// case-sensitive, but many frameworks upper-case them before routing, so
/// `delete` would pass the gateway's rules as an unknown method and run as
/// DELETE behind it.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Whether `method` is a standard one in another letter case.
fn is_miscased(method: &Method) -> bool {
    let name = method.as_str();
    // `http` keeps the standard methods, exactly spelled, as constants: the
    // common case costs one comparison of a discriminant.
    if [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
    {
        return false;
    }
    STANDARD_METHODS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(name) && *m != name)
}

impl Request {
    /// Takes one complete request head off the front of `buf`, leaving what
    /// follows it (a body, the next request) there; `None` until it is whole.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Request>, HeadError> {
        Request::parse_within::<MAX_FIELDS>(buf, MAX_HEAD)
    }

    /// `parse` with other limits: at most `FIELDS` fields and `max_head`
    /// bytes. The fuzz properties read the gateway's own output with the room
    /// its added fields need, as an upstream without the gateway's limits would.
    pub fn parse_within<const FIELDS: usize>(
        buf: &mut BytesMut,
        max_head: usize,
    ) -> Result<Option<Request>, HeadError> {
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; FIELDS];
        let mut parsed = httparse::Request::new(&mut []);
        let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) if len <= max_head => len,
            Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) if buf.len() > max_head => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let method = parsed.method.unwrap_or_default();
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Malformed)?;
        if is_miscased(&method) {
            return Err(HeadError::Refused("method in the wrong letter case"));
        }
        let version = match parsed.version {
            Some(1) => Version::HTTP_11,
            Some(0) => Version::HTTP_10,
            _ => return Err(HeadError::Malformed),
        };
        let target = at(parsed.path.unwrap_or_default().as_bytes());
        let fields = parsed
            .headers
            .iter()
            .map(|h| Field {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            })
            .collect();
        Ok(Some(Request {
            head: buf.split_to(len).freeze(),
            method,
            version,
            target,
            fields,
        }))
    }

    /// The request-target as sent, query included.
    pub fn target(&self) -> &[u8] {
        &self.head[self.target.clone()]
    }

    /// The head as received (fields removed since are still in it).
    pub fn raw_head(&self) -> &[u8] {
        &self.head
    }

    /// Every field, in order, as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (&self.head[f.name.clone()], &self.head[f.value.clone()]))
    }

    /// The values of every field called `name` (any letter case), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The value of the first field called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| self.head[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| &self.head[f.value.clone()])
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Keeps only the fields whose name passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let head = &self.head;
        self.fields.retain(|f| keep(&head[f.name.clone()]));
    }

    /// How the body is delimited; a length of 0 is no body.
    pub fn body_framing(&self) -> BodyFraming {
        if self.has("transfer-encoding") {
            return BodyFraming::Chunked;
        }
        match self.header("content-length").map(parse_length) {
            None | Some(Some(0)) => BodyFraming::None,
            Some(Some(len)) => BodyFraming::Length(len),
            Some(None) => BodyFraming::Unreadable,
        }
    }

    /// Whether a token of the `Connection` fields is `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.all("connection").any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The fields as a header map, for code that takes one (the auth
    /// endpoints); a field that is not a valid header is left out.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.fields() {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    /// The request a test means by `head` (which must be one complete head).
    #[cfg(test)]
    pub fn from_text(head: &str) -> Request {
        let mut buf = BytesMut::from(head);
        let req = Request::parse(&mut buf).unwrap().expect("a complete head");
        assert!(buf.is_empty(), "one head and nothing after it");
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_taken_off_the_buffer_and_what_follows_stays() {
        let mut buf = BytesMut::from(
            "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Case: One\r\nx-case: two\r\n\r\nbodyGET",
        );
        let req = Request::parse(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"bodyGET");
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.version, Version::HTTP_11);
        assert_eq!(req.target(), b"/a?b=1");
        assert_eq!(req.header("host"), Some(&b"x"[..]));
        assert_eq!(
            req.all("x-case").collect::<Vec<_>>(),
            [&b"One"[..], &b"two"[..]]
        );
        let names: Vec<_> = req.fields().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"Host"[..], b"X-Case", b"x-case"]);
    }

    #[test]
    fn an_incomplete_head_waits_and_a_broken_one_is_refused() {
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(Request::parse(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 25, "nothing is taken from an incomplete head");
        for broken in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(broken);
            assert_eq!(
                Request::parse(&mut buf).unwrap_err(),
                HeadError::Malformed,
                "{broken:?}"
            );
        }
    }

    #[test]
    fn oversized_heads_are_refused_as_too_large() {
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        let mut buf = BytesMut::from(long.as_str());
        assert_eq!(Request::parse(&mut buf).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        let mut buf = BytesMut::from(format!("GET / HTTP/1.1\r\n{many}\r\n").as_str());
        assert_eq!(Request::parse(&mut buf).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn body_framing_reads_transfer_encoding_first_then_the_length() {
        let framing = |fields: &str| {
            Request::from_text(&format!("POST / HTTP/1.1\r\n{fields}\r\n")).body_framing()
        };
        assert_eq!(framing(""), BodyFraming::None);
        assert_eq!(framing("Content-Length: 0\r\n"), BodyFraming::None);
        assert_eq!(framing("Content-Length: 00\r\n"), BodyFraming::None);
        assert_eq!(framing("Content-Length: 12\r\n"), BodyFraming::Length(12));
        assert_eq!(framing("Content-Length: x\r\n"), BodyFraming::Unreadable);
        assert_eq!(
            framing("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
            BodyFraming::Chunked
        );
    }

    #[test]
    fn retained_fields_and_connection_tokens() {
        let mut req = Request::from_text(
            "GET / HTTP/1.1\r\nA: 1\r\nConnection: Keep-Alive, CLOSE\r\nB: 2\r\n\r\n",
        );
        assert!(req.connection_has("close"));
        assert!(req.connection_has("keep-alive"));
        assert!(!req.connection_has("upgrade"));
        req.retain(|n| !n.eq_ignore_ascii_case(b"a"));
        assert!(!req.has("A"));
        assert_eq!(req.header("b"), Some(&b"2"[..]));
        assert_eq!(req.header_map().len(), 2);
    }
}
