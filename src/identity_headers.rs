//! The request headers the upstream trusts: every client-sent copy of an
//! identity header is removed on every route, then the verified identity is
//! injected. An upstream behind Portcullis can believe `X-User-Id` because no
//! other path can put it there.

use crate::authn::Identity;
use crate::config::IdentityHeaders;
use crate::proxy::Request;
use http::{HeaderName, HeaderValue};

/// Headers that ask a framework to treat the request as another method, or as
/// another path; rules saw the real method and path, so the upstream must too.
const REWRITE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "forwarded",
];

/// `Connection` tokens that are about this hop only, not names of fields.
const CONNECTION_OPTIONS: &[&str] = &["close", "keep-alive", "upgrade"];

/// Lower-case with `_` read as `-`: how frameworks (CGI, Rails, PHP) fold
/// `X_User_Id` into the same variable as `X-User-Id`.
fn folded_eq(name: &[u8], wanted: &str) -> bool {
    name.len() == wanted.len()
        && name
            .iter()
            .zip(wanted.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (*a == b'_' && b == b'-'))
}

impl IdentityHeaders {
    fn names(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.role, &self.workspace, &self.plan]
    }

    fn is_protected(&self, name: &[u8]) -> bool {
        self.names().iter().any(|n| folded_eq(name, n.as_str()))
            || REWRITE_HEADERS.iter().any(|n| folded_eq(name, n))
    }
}

/// Whether the client asks to switch to WebSocket, the one protocol the
/// gateway tunnels (SPEC: "WebSocket upgrades pass through"). Any other
/// `Upgrade`, `h2c` above all, would turn the connection into a channel for
/// requests the route rules never see.
fn asks_for_websocket(req: &Request) -> bool {
    let mut upgrades = req.all("upgrade");
    matches!(
        (upgrades.next(), upgrades.next()),
        (Some(one), None) if one.trim_ascii().eq_ignore_ascii_case(b"websocket")
    )
}

/// Removes every identity and rewrite header the client sent, every header
/// the client's `Connection` names, any `Upgrade` other than WebSocket, and
/// `Connection` itself (the upstream's request gets one of its own). Runs on
/// every route, public ones included.
pub fn sanitize(req: &mut Request, names: &IdentityHeaders) {
    // Copied out (and only when there are any) so the fields can be edited.
    let named: Vec<Vec<u8>> = req
        .all("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !CONNECTION_OPTIONS
                    .iter()
                    .any(|o| o.as_bytes().eq_ignore_ascii_case(t))
        })
        .map(<[u8]>::to_vec)
        .collect();
    let drop_upgrade = req.has("upgrade") && !asks_for_websocket(req);
    req.retain(|name| {
        !(names.is_protected(name)
            || name.eq_ignore_ascii_case(b"connection")
            || (drop_upgrade && name.eq_ignore_ascii_case(b"upgrade"))
            || named.iter().any(|n| n.eq_ignore_ascii_case(name)))
    });
}

/// The identity headers to add after [`sanitize`], as (name, value) pairs.
/// A claim that is absent produces no header; a claim that is not a valid
/// header value (it came from a verified token, but still) is left out.
pub fn injected<'a>(
    names: &'a IdentityHeaders,
    id: &Identity,
) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> {
    // Several roles (from a trusted issuer's list claim) travel as one
    // comma-separated value, the usual form of a list in an HTTP header.
    let joined;
    let role = if id.more_roles.is_empty() {
        id.role.as_deref()
    } else {
        joined = id.roles().collect::<Vec<_>>().join(",");
        Some(joined.as_str())
    };
    // Converted now (a value is a copy), so the result borrows nothing from `id`.
    let header = |name, value: Option<&str>| Some((name, HeaderValue::from_str(value?).ok()?));
    [
        header(&names.user_id, Some(id.sub.as_str())),
        header(&names.role, role),
        header(&names.workspace, id.workspace.as_deref()),
        header(&names.plan, id.plan.as_deref()),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> IdentityHeaders {
        IdentityHeaders::default()
    }

    fn map(pairs: &[(&str, &str)]) -> Request {
        let fields: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        Request::from_text(&format!("GET / HTTP/1.1\r\n{fields}\r\n"))
    }

    fn left(h: &Request) -> Vec<String> {
        h.fields()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn spoofed_identity_headers_are_removed_in_any_spelling() {
        let mut h = map(&[
            ("X-User-Id", "admin"),
            ("x-user-id", "again"),
            ("X_User_Id", "underscore"),
            ("x-USER-role", "admin"),
            ("X-Workspace-Id", "other"),
            ("x_user_plan", "enterprise"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Original-URL", "/api/admin"),
            ("Forwarded", "for=1.2.3.4"),
            ("Accept", "*/*"),
        ]);
        sanitize(&mut h, &names());
        assert_eq!(left(&h), vec!["Accept"]);
    }

    #[test]
    fn connection_cannot_remove_injected_headers_and_goes_itself() {
        let mut h = map(&[
            ("Connection", "close, X-User-Id, X-Secret"),
            ("X-Secret", "s"),
            ("X-User-Id", "spoofed"),
            ("Accept", "*/*"),
        ]);
        sanitize(&mut h, &names());
        assert_eq!(left(&h), vec!["Accept"]);
        let id = Identity {
            sub: "u1".into(),
            more_roles: Vec::new(),
            external: None,
            role: Some("viewer".into()),
            workspace: None,
            plan: None,
            jti: "j".into(),
            sid: None,
            iat: 0,
            exp: 0,
        };
        let added: Vec<_> = injected(&names(), &id)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            added,
            vec![
                ("x-user-id".to_owned(), "u1".to_owned()),
                ("x-user-role".to_owned(), "viewer".to_owned())
            ]
        );
    }

    #[test]
    fn several_roles_travel_as_one_comma_separated_value() {
        let id = Identity {
            sub: "idp|alice".into(),
            role: Some("viewer".into()),
            more_roles: vec!["admin".into(), "billing".into()],
            external: Some("https://idp.test/".into()),
            workspace: None,
            plan: None,
            jti: String::new(),
            sid: None,
            iat: 0,
            exp: 0,
        };
        let role = injected(&names(), &id)
            .find(|(n, _)| n.as_str() == "x-user-role")
            .map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(role.as_deref(), Some("viewer,admin,billing"));
    }

    #[test]
    fn only_a_websocket_upgrade_survives() {
        for (upgrade, kept) in [
            ("h2c", false),
            ("websocket, h2c", false),
            ("TLS/1.0", false),
            ("WebSocket", true),
        ] {
            let mut h = map(&[
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", upgrade),
                ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ]);
            sanitize(&mut h, &names());
            assert_eq!(h.has("upgrade"), kept, "{upgrade}");
            assert!(!h.has("connection"), "{upgrade}");
            assert!(!h.has("http2-settings"), "{upgrade}");
        }
        let mut two = map(&[("Upgrade", "websocket"), ("Upgrade", "h2c")]);
        sanitize(&mut two, &names());
        assert!(!two.has("upgrade"));
    }
}
