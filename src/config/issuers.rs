//! Reads `auth.trusted_issuers`: identity providers whose tokens the gateway
//! accepts beside its own, each with the JWKS it publishes its keys at.

use std::net::IpAddr;
use std::time::Duration;

use super::schema::{key, Section, Ty};
use super::yaml::{Field, Problems};
use super::{human, parse_duration, TrustedIssuer};

#[rustfmt::skip]
pub(super) static ISSUER_KEYS: &Section = &Section {
    path: "auth.trusted_issuers[]",
    keys: &[
        key("issuer", Ty::Text, "The iss its tokens carry, compared exactly; not auth.issuer.").required(),
        key("jwks_url", Ty::Text, "Where its JWKS document is fetched: https, or http to 127.0.0.1, ::1 or localhost only.").required(),
        key("audience", Ty::Text, "The aud its tokens must carry to be accepted here.").required(),
        key("role_claim", Ty::Text, "The claim holding the role (a string) or roles (a list), default role; a dotted path reaches into objects (realm_access.roles)."),
        key("jwks_refresh", Ty::Duration, "How often the JWKS document is fetched again (default 10m, from refetch_interval to 1d)."),
        key("refetch_interval", Ty::Duration, "Fewest seconds between two fetches an unknown kid may cause (default 10s, at least 1s)."),
    ],
};

const DEFAULT_REFRESH: Duration = Duration::from_secs(10 * 60);
/// A key an issuer rolls in is in use at most this long (plus one fetch) after
/// its first token, however many unknown kids arrive meanwhile.
const DEFAULT_REFETCH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` may not make the gateway fetch more often than this.
const MIN_REFETCH: Duration = Duration::from_secs(1);

/// Reads the list; `own_issuer` is `auth.issuer`, which no trusted issuer may claim.
pub(super) fn read(list: Option<Field>, own_issuer: &str, p: &mut Problems) -> Vec<TrustedIssuer> {
    let Some(items) = list.and_then(|f| f.list(p)) else {
        return Vec::new();
    };
    let mut out: Vec<TrustedIssuer> = Vec::new();
    for item in items {
        let f = item.fields(p, ISSUER_KEYS);
        let text = |key: &str, p: &mut Problems| {
            let value = f.require(p, key).and_then(|v| v.str(p))?;
            if value.trim().is_empty() {
                p.error(&f.spot_of(key), "must not be empty");
                return None;
            }
            Some(value)
        };
        let issuer = text("issuer", p);
        let audience = text("audience", p);
        let jwks_url = f
            .require(p, "jwks_url")
            .and_then(|v| v.parsed(p, parse_jwks_url));
        let role_claim = f.or(p, "role_claim", "role".to_string(), |v, p| v.str(p));
        if role_claim.is_empty() {
            p.error(&f.spot_of("role_claim"), "must not be empty");
        }
        let duration = |key: &str, default: Duration, p: &mut Problems| {
            f.or(p, key, default, |v, p| v.parsed(p, parse_duration))
        };
        let jwks_refresh = duration("jwks_refresh", DEFAULT_REFRESH, p);
        let refetch_interval = duration("refetch_interval", DEFAULT_REFETCH, p);
        if refetch_interval < MIN_REFETCH {
            let message = format!("must be at least {}", human(MIN_REFETCH));
            p.error(&f.spot_of("refetch_interval"), message);
        }
        if jwks_refresh < refetch_interval || jwks_refresh > MAX_REFRESH {
            let message = format!(
                "must be between refetch_interval ({}) and {}",
                human(refetch_interval),
                human(MAX_REFRESH)
            );
            p.error(&f.spot_of("jwks_refresh"), message);
        }
        let (Some(issuer), Some(audience), Some(jwks_url)) = (issuer, audience, jwks_url) else {
            continue;
        };
        if issuer == own_issuer {
            p.error(
                &f.spot_of("issuer"),
                "is auth.issuer, the gateway's own: its tokens are verified with the gateway's keys",
            );
            continue;
        }
        if out.iter().any(|t| t.issuer == issuer) {
            p.error(
                &f.spot_of("issuer"),
                format!("\"{issuer}\" is listed twice"),
            );
            continue;
        }
        out.push(TrustedIssuer {
            issuer,
            jwks_url,
            audience,
            role_claim,
            jwks_refresh,
            refetch_interval,
        });
    }
    out
}

/// An `https://` URL, or `http://` to this machine only: keys fetched in the
/// clear from elsewhere could be swapped by anyone on the path, and whoever
/// controls the keys controls every identity.
fn parse_jwks_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("invalid URL \"{s}\""))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("invalid URL \"{s}\": expected https://host/path"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "invalid URL \"{s}\": credentials do not belong in the URL"
        ));
    }
    match scheme {
        "https" => Ok(uri),
        "http" if is_loopback(authority.host()) => Ok(uri),
        "http" => Err(format!(
            "\"{s}\": keys must be fetched over https (plain http is allowed to 127.0.0.1, ::1 or localhost only)"
        )),
        other => Err(format!("invalid URL \"{s}\": unsupported scheme {other}")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls_must_be_https_unless_local() {
        assert!(parse_jwks_url("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(parse_jwks_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(parse_jwks_url("http://[::1]:8080/jwks").is_ok());
        assert!(parse_jwks_url("http://localhost/jwks").is_ok());
        let plain = parse_jwks_url("http://idp.example.com/jwks").unwrap_err();
        assert!(plain.contains("https"), "{plain}");
        assert!(parse_jwks_url("ftp://idp.example.com/jwks").is_err());
        assert!(parse_jwks_url("/jwks").is_err());
        assert!(parse_jwks_url("https://user:pw@idp.example.com/jwks").is_err());
    }
}
