//! The request head an upstream receives: the client's request line and
//! fields as sent (names in their case), minus the hop-by-hop ones and those
//! the gateway sets, then the gateway's own, written straight into the head
//! (no intermediate header values to allocate).

use super::is_hop_by_hop;
use crate::http1::client::push_field;
use crate::http1::Request;
use std::net::IpAddr;

/// Fields the gateway sets beside the identity headers, replacing any client value.
const FORWARDING: [&[u8]; 3] = [b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto"];

/// What the upstream's request gets beyond the client's (already sanitized)
/// one: the matched path, the pipeline's fields, the forwarding fields.
/// Borrowed from the request's context for as long as the head is written.
pub struct Additions<'a> {
    /// The request-target, when normalization changed the path.
    pub target: Option<String>,
    /// Writes the pipeline's own fields (the verified identity) as
    /// `name: value` lines straight into the head: nothing is allocated
    /// for them, and the transport never learns what they mean.
    pub fields: &'a dyn Fn(&mut Vec<u8>),
    pub request_id: &'a str,
    /// The upstream's authority (`host:port`), sent as `Host` when the client
    /// sent none (HTTP/1.0 allows that; the upstream gets HTTP/1.1, which
    /// does not), as nginx sends its `proxy_pass` host.
    pub host: &'a str,
    /// The hop appended to `X-Forwarded-For`: the TCP peer, when there is one.
    pub peer: Option<IpAddr>,
    /// Keep the client's `X-Forwarded-For` values before our hop: a proxy the
    /// operator trusts sits in front and wrote them.
    pub trust_forwarded_for: bool,
    pub tls: bool,
}

/// The whole head, ending with its blank line. `upgrade`: the request is a
/// valid WebSocket handshake (`websocket::handshake_key`); any other request's
/// `Upgrade` stays behind.
pub fn request_head(req: &Request, adds: &Additions, upgrade: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.raw_head().len() + 256);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    match &adds.target {
        Some(target) => out.extend_from_slice(target.as_bytes()),
        None => out.extend_from_slice(req.target()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.fields() {
        let ours = FORWARDING.iter().any(|f| f.eq_ignore_ascii_case(name));
        let skipped = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"expect")
            || (!upgrade && name.eq_ignore_ascii_case(b"upgrade"));
        if !ours && !skipped {
            push_field(&mut out, name, value);
        }
    }
    if !req.has("host") {
        push_field(&mut out, b"Host", adds.host.as_bytes());
    }
    (adds.fields)(&mut out);
    // Checked, or made by us, when the request was read: `[A-Za-z0-9-_.:]`.
    push_field(&mut out, b"x-request-id", adds.request_id.as_bytes());
    if let Some(ip) = adds.peer {
        out.extend_from_slice(b"x-forwarded-for: ");
        if adds.trust_forwarded_for {
            // Our hop goes after every value the proxy in front sent, all of its
            // lines in order (each already a valid field value: it was parsed as one).
            for prior in req.all("x-forwarded-for") {
                out.extend_from_slice(prior);
                out.extend_from_slice(b", ");
            }
        }
        push_ip(&mut out, ip);
        out.extend_from_slice(b"\r\n");
    }
    let proto: &[u8] = if adds.tls { b"https" } else { b"http" };
    push_field(&mut out, b"x-forwarded-proto", proto);
    if upgrade {
        // The client's `Connection` stays on its side; this one asks our hop.
        push_field(&mut out, b"Connection", b"Upgrade");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `ip` in its usual text form. IPv4 skips the formatting machinery,
/// which cost more than the rest of the forwarding fields together.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &mut Vec<u8>) {}

    fn identity(out: &mut Vec<u8>) {
        push_field(out, b"x-user-id", b"u1");
        push_field(out, b"x-user-role", b"viewer");
    }

    fn adds<'a>(fields: &'a dyn Fn(&mut Vec<u8>)) -> Additions<'a> {
        Additions {
            target: None,
            fields,
            request_id: "ours",
            host: "app.internal:8080",
            peer: Some("10.0.0.9".parse().unwrap()),
            trust_forwarded_for: false,
            tls: false,
        }
    }

    #[test]
    fn the_request_head_keeps_client_case_and_drops_hop_by_hop_and_ours() {
        let req = Request::from_text(
            "GET /a/../b?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Custom-Case: 1\r\n\
             Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Request-Id: client\r\n\
             X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nExpect: 100-continue\r\n\r\n",
        );
        let adds = Additions {
            target: Some("/b?q=1".into()),
            ..adds(&identity)
        };
        let head = String::from_utf8(request_head(&req, &adds, false)).unwrap();
        assert_eq!(
            head,
            "GET /b?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Custom-Case: 1\r\n\
             x-user-id: u1\r\nx-user-role: viewer\r\nx-request-id: ours\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_forwarded_for_keeps_every_prior_line_before_our_hop() {
        let req = Request::from_text(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n\r\n",
        );
        let trusted = Additions {
            trust_forwarded_for: true,
            tls: true,
            ..adds(&nothing)
        };
        let head = String::from_utf8(request_head(&req, &trusted, false)).unwrap();
        assert!(
            head.contains(
                "\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\nx-forwarded-proto: https\r\n"
            ),
            "{head}"
        );
        let untrusted = String::from_utf8(request_head(&req, &adds(&nothing), false)).unwrap();
        assert!(
            untrusted.contains("\r\nx-forwarded-for: 10.0.0.9\r\n"),
            "{untrusted}"
        );
        assert_eq!(untrusted.matches("orwarded-For").count(), 0, "{untrusted}");
    }

    #[test]
    fn a_request_without_host_gets_the_upstreams() {
        let req = Request::from_text("GET /a HTTP/1.0\r\nAccept: */*\r\n\r\n");
        let head = String::from_utf8(request_head(&req, &adds(&nothing), false)).unwrap();
        assert!(
            head.starts_with("GET /a HTTP/1.1\r\nAccept: */*\r\nHost: app.internal:8080\r\n"),
            "{head}"
        );
    }

    #[test]
    fn push_ip_writes_what_display_writes() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.4",
            "255.255.255.255",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = b"prior, ".to_vec();
            push_ip(&mut out, ip);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("prior, {ip}"),
                "{text}"
            );
        }
    }
}
