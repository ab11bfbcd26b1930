//! The cross-site request rules of the endpoints that set or read the refresh cookie
//! (login, signup, refresh, logout, logout-all, switch), after ASVS 5.0 V3.5.
//!
//! A plain HTML form on any site can POST `text/plain`, `application/x-www-form-urlencoded`
//! or `multipart/form-data` without a CORS preflight, and so could log a victim's browser
//! into the attacker's account. So these endpoints take only `application/json` (which
//! no form can send and which a cross-site `fetch` must preflight), and they refuse a
//! request whose `Origin` is foreign, or that the browser marks `Sec-Fetch-Site:
//! cross-site`. A request with neither header (curl, a server) is not a browser's and
//! passes.

use super::Request;
use crate::error::Reject;
use http::header::{CONTENT_TYPE, ORIGIN};
use http::HeaderMap;

/// The header browsers add saying where a request comes from (Fetch Metadata).
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// 403 unless the request comes from this gateway's own origin, one of `allowed`, or
/// no browser at all. A browser always sends `Origin` on a POST; `Origin: null`
/// (sandboxed frames, some redirects) is foreign. `Sec-Fetch-Site: cross-site` is
/// refused unless the `Origin` is one the operator listed in `allowed`.
pub(super) fn check_origin(req: &Request<'_>, allowed: &[String]) -> Result<(), Reject> {
    let listed = match single(req.headers, ORIGIN.as_str())? {
        None => false,
        Some(origin) => {
            let origin = normalize_origin(origin).ok_or(Reject::CrossOrigin)?;
            let scheme = if req.tls { "https" } else { "http" };
            let own = req
                .host
                .and_then(|host| normalize_origin(&format!("{scheme}://{host}")));
            let listed = allowed
                .iter()
                .filter_map(|a| normalize_origin(a))
                .any(|a| a == origin);
            if !listed && own.as_deref() != Some(origin.as_str()) {
                return Err(Reject::CrossOrigin);
            }
            listed
        }
    };
    let site = single(req.headers, SEC_FETCH_SITE)?;
    if site.is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site")) && !listed {
        return Err(Reject::CrossOrigin);
    }
    Ok(())
}

/// 415 unless the request says `Content-Type: application/json` (parameters such as
/// `charset` allowed), once. Required even of an empty body: the rule is what keeps
/// forms out, and a client that follows it never has to think about which endpoint.
pub(super) fn check_json(headers: &HeaderMap) -> Result<(), Reject> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Reject::UnsupportedMediaType);
    };
    let media_type = value
        .to_str()
        .ok()
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    match media_type {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(Reject::UnsupportedMediaType),
    }
}

/// The header's one value as text; `None` when absent, 403 when repeated or not text
/// (a browser sends each of these once).
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Reject> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(|_| Reject::CrossOrigin),
        (Some(_), Some(_)) => Err(Reject::CrossOrigin),
    }
}

/// `scheme://host[:port]`, lower-cased, without a default port or trailing slash;
/// `None` for anything else (including `null`).
fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = text.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn origins_compare_by_scheme_host_and_effective_port() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example.com:443/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            normalize_origin("http://localhost:5173").as_deref(),
            Some("http://localhost:5173")
        );
        assert_eq!(normalize_origin("null"), None);
        assert_eq!(normalize_origin("file://x"), None);
        assert_eq!(normalize_origin("https://"), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_application_json_passes_the_content_type_rule() {
        for ok in ["application/json", "Application/JSON; charset=utf-8"] {
            assert_eq!(
                check_json(&headers(&[("content-type", ok)])),
                Ok(()),
                "{ok}"
            );
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert_eq!(
                check_json(&headers(&[("content-type", refused)])),
                Err(Reject::UnsupportedMediaType),
                "{refused}"
            );
        }
        assert_eq!(check_json(&headers(&[])), Err(Reject::UnsupportedMediaType));
        let twice = headers(&[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(check_json(&twice), Err(Reject::UnsupportedMediaType));
    }

    #[test]
    fn fetch_metadata_cross_site_is_refused_unless_the_origin_is_listed() {
        let allowed = vec!["https://app.example.net".to_owned()];
        let check = |pairs: &[(&'static str, &'static str)]| {
            let map = headers(pairs);
            let req = Request {
                method: &Method::POST,
                path: "/api/auth/login",
                headers: &map,
                body: b"",
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host: Some("gw.example.com"),
                tls: true,
            };
            check_origin(&req, &allowed)
        };
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&[("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(check(&[("sec-fetch-site", "none")]), Ok(()));
        assert_eq!(
            check(&[("sec-fetch-site", "cross-site")]),
            Err(Reject::CrossOrigin)
        );
        assert_eq!(
            check(&[
                ("origin", "https://gw.example.com"),
                ("sec-fetch-site", "cross-site")
            ]),
            Err(Reject::CrossOrigin)
        );
        assert_eq!(
            check(&[
                ("origin", "https://app.example.net"),
                ("sec-fetch-site", "cross-site")
            ]),
            Ok(())
        );
        assert_eq!(check(&[("origin", "https://gw.example.com")]), Ok(()));
        assert_eq!(check(&[("origin", "null")]), Err(Reject::CrossOrigin));
        assert_eq!(
            check(&[
                ("origin", "https://a.test"),
                ("origin", "https://gw.example.com")
            ]),
            Err(Reject::CrossOrigin)
        );
    }
}
