//! The request headers the upstream trusts: every client-sent copy of an
//! identity header is removed on every route, then the verified identity is
//! injected. An upstream behind Portcullis can believe `X-User-Id` because no
//! other path can put it there.

use crate::authn::Identity;
use crate::config::IdentityHeaders;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

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

/// `Connection` tokens that are about this hop only and may be kept.
const CONNECTION_OPTIONS: &[&str] = &["close", "keep-alive", "upgrade"];

/// Lower-case with `_` read as `-`: how frameworks (CGI, Rails, PHP) fold
/// `X_User_Id` into the same variable as `X-User-Id`.
fn folded_eq(name: &str, wanted: &str) -> bool {
    name.len() == wanted.len()
        && name
            .bytes()
            .zip(wanted.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

impl IdentityHeaders {
    fn names(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.role, &self.workspace, &self.plan]
    }

    fn is_protected(&self, name: &str) -> bool {
        self.names().iter().any(|n| folded_eq(name, n.as_str()))
            || REWRITE_HEADERS.iter().any(|n| folded_eq(name, n))
    }
}

/// Whether the client asks to switch to WebSocket, the one protocol the
/// gateway tunnels (SPEC: "WebSocket upgrades pass through"). Any other
/// `Upgrade`, `h2c` above all, would turn the connection into a channel for
/// requests the route rules never see.
fn asks_for_websocket(req: &RequestHeader) -> bool {
    let mut upgrades = req.headers.get_all(http::header::UPGRADE).iter();
    matches!(
        (upgrades.next(), upgrades.next()),
        (Some(one), None) if one.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
    )
}

/// Removes every identity and rewrite header the client sent, every header
/// the client's `Connection` names, and any `Upgrade` other than WebSocket;
/// `Connection` keeps only hop options. Runs on every route, public ones included.
pub fn sanitize(req: &mut RequestHeader, names: &IdentityHeaders) {
    let headers = &req.headers;
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| names.is_protected(k.as_str()))
        .cloned()
        .collect();
    let mut kept_options: Vec<&'static str> = Vec::new();
    for value in headers.get_all(http::header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match CONNECTION_OPTIONS
                .iter()
                .find(|o| o.eq_ignore_ascii_case(token))
            {
                Some(option) => {
                    if !kept_options.contains(option) {
                        kept_options.push(option);
                    }
                }
                None => {
                    if let Ok(named) = HeaderName::from_bytes(token.as_bytes()) {
                        doomed.push(named);
                    }
                }
            }
        }
    }
    if headers.contains_key(http::header::UPGRADE) && !asks_for_websocket(req) {
        doomed.push(http::header::UPGRADE);
        kept_options.retain(|o| *o != "upgrade");
    }
    for name in &doomed {
        req.remove_header(name);
    }
    req.remove_header(&http::header::CONNECTION);
    if !kept_options.is_empty() {
        // Built only from the static tokens above, so always a valid value.
        let _ = req.insert_header(http::header::CONNECTION, kept_options.join(", "));
    }
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

    fn map(pairs: &[(&str, &str)]) -> RequestHeader {
        let mut h = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in pairs {
            h.append_header(k.to_string(), *v).unwrap();
        }
        h
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
        let left: Vec<_> = h.headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn connection_cannot_remove_injected_headers_and_keeps_only_hop_options() {
        let mut h = map(&[
            ("Connection", "close, X-User-Id, X-Secret"),
            ("X-Secret", "s"),
            ("X-User-Id", "spoofed"),
        ]);
        sanitize(&mut h, &names());
        assert!(h.headers.get("x-secret").is_none());
        assert!(h.headers.get("x-user-id").is_none());
        assert_eq!(h.headers.get("connection").unwrap(), "close");
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
            assert_eq!(h.headers.get("upgrade").is_some(), kept, "{upgrade}");
            assert_eq!(h.headers.get("connection").is_some(), kept, "{upgrade}");
            assert!(h.headers.get("http2-settings").is_none(), "{upgrade}");
        }
        let mut two = map(&[("Upgrade", "websocket"), ("Upgrade", "h2c")]);
        sanitize(&mut two, &names());
        assert!(two.headers.get("upgrade").is_none());
    }

    #[test]
    fn upgrade_survives_for_websockets() {
        let mut h = map(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        sanitize(&mut h, &names());
        assert_eq!(h.headers.get("connection").unwrap(), "upgrade");
        assert_eq!(h.headers.get("upgrade").unwrap(), "websocket");
    }
}
