//! Properties of the HTTP/1 transport for any bytes: request heads and the
//! framing decision, the chunked decoder, upstream answer heads, and the
//! round trip from a client's byte stream to the upstream's (no desync).

use crate::http1::chunked::{Decoder, Malformed, Step};
use crate::http1::exchange::answer::{parse_head, Framing};
use crate::http1::exchange::{request_head, Additions};
use crate::http1::request::{MAX_FIELDS, MAX_HEAD};
use crate::http1::{framing, websocket, BodyFraming, Request};
use bytes::BytesMut;
use http::{Method, Version};

/// RFC 9110's methods and PATCH, as they must be spelled.
const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A parsed head reads the same when parsed again on its own; a head the
/// framing check passes has exactly one reading of its body and its Host;
/// no standard method passes in another letter case.
pub fn request_head_framing(input: &[u8]) {
    let mut buf = BytesMut::from(input);
    let Ok(Some(req)) = Request::parse(&mut buf) else {
        return;
    };
    let head = req.raw_head();
    assert!(head.len() <= MAX_HEAD, "a head over the limit was taken");
    assert_eq!(head.len() + buf.len(), input.len(), "bytes lost or added");
    let mut alone = BytesMut::from(head);
    let again = Request::parse(&mut alone)
        .ok()
        .flatten()
        .expect("a head parses again on its own");
    assert!(alone.is_empty());
    assert_eq!((&again.method, again.target()), (&req.method, req.target()));
    assert!(
        again.fields().eq(req.fields()),
        "fields differ on a second parse"
    );
    let name = req.method.as_str();
    assert!(
        !STANDARD
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name) && *m != name),
        "miscased method {name:?} accepted"
    );
    if framing::check(&req).is_ok() {
        let te = req.all("transfer-encoding").count();
        let cl = req.all("content-length").count();
        assert!(te == 0 || cl == 0, "both framings passed");
        assert!(te <= 1, "two Transfer-Encoding fields passed");
        let framing = req.body_framing();
        assert_ne!(
            framing,
            BodyFraming::Unreadable,
            "an unreadable length passed"
        );
        if te == 1 {
            assert_eq!(framing, BodyFraming::Chunked);
            assert_eq!(req.version, Version::HTTP_11, "chunked HTTP/1.0 passed");
        }
        let hosts = req.all("host").count();
        assert!(hosts <= 1, "two Hosts passed");
        assert!(
            hosts == 1 || req.version == Version::HTTP_10,
            "no Host passed"
        );
    }
    if let Some(key) = websocket::handshake_key(&req) {
        assert_eq!(req.method, Method::GET);
        assert_eq!(key.len(), 24, "a key that is not 16 bytes of base64");
        assert_eq!(req.body_framing(), BodyFraming::None);
    }
}

/// How a chunked body ended when fed in pieces of `step` bytes.
#[derive(Debug, PartialEq)]
enum Decoded {
    /// The payload, and what was left in the buffer after the end.
    Done(Vec<u8>, Vec<u8>),
    /// Malformed, after this much payload.
    Refused(Vec<u8>),
    /// The input ended before the body did.
    Short(Vec<u8>),
}

fn decode(wire: &[u8], step: usize) -> Decoded {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut payload = Vec::new();
    let mut pieces = wire.chunks(step.max(1));
    loop {
        match decoder.next(&mut buf) {
            Ok(Step::Data(d)) => payload.extend_from_slice(&d),
            Ok(Step::NeedMore) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return Decoded::Short(payload),
            },
            Ok(Step::Done) => return Decoded::Done(payload, buf.to_vec()),
            Err(Malformed) => return Decoded::Refused(payload),
        }
    }
}

/// The decoder's verdict and payload do not depend on how the bytes arrive
/// (a prefix is refused only when no valid line can start with it), it never
/// eats bytes past the end, and its payload chunked again decodes the same.
pub fn chunked_decoding(input: &[u8]) {
    let whole = decode(input, input.len());
    let bytewise = decode(input, 1);
    match (&whole, &bytewise) {
        (Decoded::Done(a, rest), Decoded::Done(b, rest_b)) => {
            assert_eq!(a, b, "payload depends on read sizes");
            assert!(input.ends_with(rest), "bytes past the end were eaten");
            assert!(rest_b.is_empty() || rest.starts_with(rest_b));
            let mut again = Vec::new();
            if !a.is_empty() {
                again.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
                again.extend_from_slice(a);
                again.extend_from_slice(b"\r\n");
            }
            again.extend_from_slice(b"0\r\n\r\n");
            assert_eq!(decode(&again, 7), Decoded::Done(a.clone(), Vec::new()));
        }
        _ => assert_eq!(whole, bytewise, "verdict depends on read sizes"),
    }
}

/// An upstream's answer head never becomes a tunnel unless a handshake was
/// asked for; no hop-by-hop field, and no framing field of a body the
/// gateway frames itself, is passed on. Input: one byte choosing the method
/// and whether a handshake was asked, then the upstream's bytes.
pub fn upstream_answer_head(input: &[u8]) {
    let Some((&choice, wire)) = input.split_first() else {
        return;
    };
    let method = if choice & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    // RFC 6455 §1.3's example accept value, so seeds can complete a handshake.
    let accept: Option<&[u8]> = (choice & 2 == 2).then_some(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut buf = BytesMut::from(wire);
    let Ok(Some(answer)) = parse_head(&mut buf, &method, accept) else {
        return;
    };
    assert!(
        answer.status >= 200 || answer.status == 101,
        "an interim answer passed"
    );
    if answer.framing == Framing::Tunnel {
        assert!(
            accept.is_some() && answer.status == 101,
            "a tunnel nobody asked for"
        );
    }
    for (name, value) in answer.fields() {
        for hop in ["connection", "keep-alive", "proxy-connection"] {
            assert!(
                !name.eq_ignore_ascii_case(hop.as_bytes()),
                "{hop} passed on"
            );
        }
        let framing_field = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding");
        assert!(
            !framing_field || answer.framing == Framing::Empty,
            "a framing field beside a body the gateway frames"
        );
        assert!(!value.contains(&b'\n') && !value.contains(&b'\r'));
    }
}

/// One request as a client side reads it: method, target, body.
#[derive(Debug, PartialEq)]
struct Message {
    method: String,
    target: Vec<u8>,
    body: Vec<u8>,
}

/// What the gateway adds to a forwarded head at most: fields (Host, the
/// request id, the forwarding and identity fields) and bytes. An upstream
/// reading the gateway's output needs this much more room than the gateway
/// gives its clients.
const ADDED_FIELDS: usize = 16;
const ADDED_BYTES: usize = 4096;

/// Reads requests off `wire` as the gateway's client side does, until one is
/// refused or incomplete (the connection would end there), and writes each
/// toward the upstream as the exchange does. Returns what was read and the
/// bytes the upstream would get. `room`: read with the limits widened by what
/// the gateway adds (the second reading, the upstream's).
fn relay(wire: &[u8], room: bool) -> (Vec<Message>, Vec<u8>) {
    let mut buf = BytesMut::from(wire);
    let mut read = Vec::new();
    let mut upstream = Vec::new();
    let nothing = |_: &mut Vec<u8>| {};
    let parse = |buf: &mut BytesMut| {
        if room {
            Request::parse_within::<{ MAX_FIELDS + ADDED_FIELDS }>(buf, MAX_HEAD + ADDED_BYTES)
        } else {
            Request::parse(buf)
        }
    };
    while let Ok(Some(req)) = parse(&mut buf) {
        if framing::check(&req).is_err() {
            break;
        }
        let framing = req.body_framing();
        let body = match framing {
            BodyFraming::None => Vec::new(),
            BodyFraming::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= buf.len() => buf.split_to(n).to_vec(),
                _ => break,
            },
            BodyFraming::Chunked => match decode_from(&mut buf) {
                Some(body) => body,
                None => break,
            },
            BodyFraming::Unreadable => break,
        };
        let adds = Additions {
            target: None,
            fields: &nothing,
            request_id: "fuzz",
            host: "upstream.test:80",
            peer: None,
            trust_forwarded_for: false,
            tls: false,
        };
        upstream.extend_from_slice(&request_head(&req, &adds, false));
        match framing {
            BodyFraming::Length(_) => upstream.extend_from_slice(&body),
            BodyFraming::Chunked => {
                if !body.is_empty() {
                    upstream.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    upstream.extend_from_slice(&body);
                    upstream.extend_from_slice(b"\r\n");
                }
                upstream.extend_from_slice(b"0\r\n\r\n");
            }
            BodyFraming::None | BodyFraming::Unreadable => {}
        }
        read.push(Message {
            method: req.method.to_string(),
            target: req.target().to_vec(),
            body,
        });
    }
    (read, upstream)
}

/// A whole chunked body off the front of `buf`, or `None`.
fn decode_from(buf: &mut BytesMut) -> Option<Vec<u8>> {
    let mut decoder = Decoder::default();
    let mut body = Vec::new();
    loop {
        match decoder.next(buf) {
            Ok(Step::Data(d)) => body.extend_from_slice(&d),
            Ok(Step::Done) => return Some(body),
            Ok(Step::NeedMore) | Err(Malformed) => return None,
        }
    }
}

/// What the gateway reads from a client and what the upstream then reads
/// from the gateway are the same requests with the same bodies, and writing
/// them again changes no byte: no request can hide inside another's body on
/// one side of the gateway and not on the other.
pub fn request_round_trip(input: &[u8]) {
    let (read, upstream) = relay(input, false);
    let (reread, again) = relay(&upstream, true);
    assert_eq!(read, reread, "the upstream would read other requests");
    assert_eq!(upstream, again, "forwarding is not stable");
}
