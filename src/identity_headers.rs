//! The request headers the upstream trusts: every client-sent copy of an
//! identity header is removed on every route, then the verified identity is
//! injected. An upstream behind Portcullis can believe `X-User-Id` because no
//! other path can put it there.

use crate::authn::Identity;
use crate::config::IdentityHeaders;
use crate::http1::Request;
use http::HeaderName;

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

/// What the upstream learns of a personal access token: that one was used, and which
/// (its id, never the secret). Fixed names, removed from every client request.
const AUTH_METHOD: &str = "x-auth-method";
const TOKEN_ID: &str = "x-token-id";

/// `Connection` tokens that never remove a field: options about this hop, and
/// the fields that say where the request ends and where it goes. Removing
/// those would forward a different request than the one the rules saw (a
/// POST whose body stays behind as the next request, say).
const CONNECTION_KEEPS: &[&str] = &[
    "close",
    "keep-alive",
    "upgrade",
    "host",
    "content-length",
    "transfer-encoding",
];

/// Lower-case with `_` and `.` read as `-`: how frameworks (CGI, Rails, PHP,
/// some Node body parsers) fold `X_User_Id` or `X.User.Id` into the same
/// variable as `X-User-Id`.
fn folded_eq(name: &[u8], wanted: &str) -> bool {
    name.len() == wanted.len()
        && name
            .iter()
            .zip(wanted.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || ((*a == b'_' || *a == b'.') && b == b'-'))
}

impl IdentityHeaders {
    fn names(&self) -> [&HeaderName; 5] {
        [
            &self.user_id,
            &self.role,
            &self.workspace,
            &self.plan,
            &self.issuer,
        ]
    }

    fn is_protected(&self, name: &[u8]) -> bool {
        self.names().iter().any(|n| folded_eq(name, n.as_str()))
            || REWRITE_HEADERS.iter().any(|n| folded_eq(name, n))
            || folded_eq(name, AUTH_METHOD)
            || folded_eq(name, TOKEN_ID)
    }
}

/// Removes every identity and rewrite header the client sent, every header
/// the client's `Connection` names (but never a framing or routing one), and
/// `Connection` itself (the upstream's request gets one of its own). Runs on
/// every route, public ones included. Which `Upgrade` may pass is the
/// transport's call: only a valid WebSocket handshake's.
pub fn sanitize(req: &mut Request, names: &IdentityHeaders) {
    // Copied out (and only when there are any) so the fields can be edited.
    let named: Vec<Vec<u8>> = req
        .all("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !CONNECTION_KEEPS
                    .iter()
                    .any(|o| o.as_bytes().eq_ignore_ascii_case(t))
        })
        .map(<[u8]>::to_vec)
        .collect();
    req.retain(|name| {
        !(names.is_protected(name)
            || name.eq_ignore_ascii_case(b"connection")
            || named.iter().any(|n| n.eq_ignore_ascii_case(name)))
    });
}

/// Writes the identity headers to add after [`sanitize`] as `name: value`
/// lines onto `out` (an upstream request head being built). A claim that is
/// absent produces no header; a claim that is not a valid header value (it
/// came from a verified token, but still) is left out, since a line break in
/// it would let the token's issuer write fields of its own.
/// `own_issuer` is the gateway's `auth.issuer`, written for its own tokens.
pub fn inject(out: &mut Vec<u8>, names: &IdentityHeaders, id: &Identity, own_issuer: &str) {
    let field = |out: &mut Vec<u8>, name: &HeaderName, value: Option<&str>| {
        if let Some(value) = value.filter(|v| is_field_value(v.as_bytes())) {
            crate::http1::push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    };
    field(out, &names.user_id, Some(id.sub.as_str()));
    if id.more_roles.is_empty() {
        field(out, &names.role, id.role.as_deref());
    } else if id.roles().all(|r| is_field_value(r.as_bytes())) {
        // Several roles (from a trusted issuer's list claim) travel as one
        // comma-separated value, the usual form of a list in an HTTP header.
        out.extend_from_slice(names.role.as_str().as_bytes());
        out.extend_from_slice(b": ");
        for (i, role) in id.roles().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(role.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    field(out, &names.workspace, id.workspace.as_deref());
    field(out, &names.plan, id.plan.as_deref());
    field(
        out,
        &names.issuer,
        Some(id.external.as_deref().unwrap_or(own_issuer)),
    );
    if let Some(grant) = &id.pat {
        crate::http1::push_field(out, AUTH_METHOD.as_bytes(), b"pat");
        if is_field_value(grant.id.as_bytes()) {
            crate::http1::push_field(out, TOKEN_ID.as_bytes(), grant.id.as_bytes());
        }
    }
}

/// What a field value may hold (RFC 9110 §5.5): visible characters, spaces,
/// tabs and non-ASCII bytes; never a control character such as CR or LF.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
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

    /// The fields [`inject`] writes, as (name, value).
    fn injected(id: &Identity) -> Vec<(String, String)> {
        let mut out = Vec::new();
        inject(&mut out, &names(), id, "https://gw.test");
        String::from_utf8(out)
            .unwrap()
            .split_terminator("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
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
            ("X-User-Issuer", "https://gw.test"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Original-URL", "/api/admin"),
            ("X-Auth-Method", "pat"),
            ("x_token_id", "t1"),
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
        let id = Identity::with_role("u1", "viewer");
        assert_eq!(
            injected(&id),
            vec![
                ("x-user-id".to_owned(), "u1".to_owned()),
                ("x-user-role".to_owned(), "viewer".to_owned()),
                ("x-user-issuer".to_owned(), "https://gw.test".to_owned())
            ]
        );
    }

    #[test]
    fn several_roles_travel_as_one_comma_separated_value() {
        let id = Identity {
            more_roles: vec!["admin".into(), "billing".into()],
            external: Some("https://idp.test/".into()),
            ..Identity::with_role("idp|alice", "viewer")
        };
        let role = injected(&id)
            .into_iter()
            .find(|(n, _)| n == "x-user-role")
            .map(|(_, v)| v);
        assert_eq!(role.as_deref(), Some("viewer,admin,billing"));
        let issuer = injected(&id)
            .into_iter()
            .find(|(n, _)| n == "x-user-issuer")
            .map(|(_, v)| v);
        assert_eq!(
            issuer.as_deref(),
            Some("https://idp.test/"),
            "the issuer that vouched"
        );
    }

    #[test]
    fn a_claim_that_would_break_the_head_is_left_out() {
        let id = Identity {
            workspace: Some("w\n1".into()),
            plan: Some("pro\u{7f}".into()),
            ..Identity::with_role("u1", "admin\r\nX-Injected: 1")
        };
        let own_issuer = ("x-user-issuer".to_owned(), "https://gw.test".to_owned());
        assert_eq!(
            injected(&id),
            vec![
                ("x-user-id".to_owned(), "u1".to_owned()),
                own_issuer.clone()
            ]
        );
        let listed = Identity {
            role: Some("viewer".into()),
            more_roles: vec!["admin\r\nX-Injected: 1".into()],
            ..id
        };
        assert_eq!(
            injected(&listed),
            vec![("x-user-id".to_owned(), "u1".to_owned()), own_issuer],
            "one bad role in a list leaves the whole list out"
        );
        let tabbed = Identity {
            sub: "caf\u{e9}\tau lait".into(),
            ..listed
        };
        assert_eq!(injected(&tabbed)[0].1, "caf\u{e9}\tau lait");
    }

    #[test]
    fn connection_never_removes_framing_or_routing_fields() {
        let mut h = map(&[
            ("Host", "a"),
            (
                "Connection",
                "Host, Content-Length, transfer-encoding, X-Other",
            ),
            ("Content-Length", "3"),
            ("X-Other", "1"),
        ]);
        sanitize(&mut h, &names());
        assert_eq!(left(&h), vec!["Host", "Content-Length"]);
    }

    #[test]
    fn dotted_identity_headers_are_removed_like_underscored_ones() {
        let mut h = map(&[
            ("X.User.Id", "admin"),
            ("x.user_role", "admin"),
            ("X.Other", "1"),
        ]);
        sanitize(&mut h, &names());
        assert_eq!(left(&h), vec!["X.Other"]);
    }
}
