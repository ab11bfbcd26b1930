//! Reads `auth.pat` (personal access tokens) and `auth.require_mfa_for_roles`.

use std::time::Duration;

use super::schema::{key, Section, Ty};
use super::yaml::{Fields, Problems};
use super::{human, parse_duration};

#[rustfmt::skip]
pub(super) static PAT_KEYS: &Section = &Section {
    path: "auth.pat",
    keys: &[
        key("max_ttl", Ty::Duration, "Longest expires_in a personal access token may ask for (default 90d, at most 366d)."),
    ],
};

/// Personal access token settings (`auth.pat`).
#[derive(Debug, Clone)]
pub struct PatSettings {
    /// The longest lifetime a new token may have; `expires_in` is required and capped by it.
    pub max_ttl: Duration,
}

const DEFAULT_MAX_TTL: Duration = Duration::from_secs(90 * 86_400);
/// A token that outlives a year is a password by another name.
const LONGEST_MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

pub(super) fn read_pat(a: &Fields, p: &mut Problems) -> PatSettings {
    let s = match a.get("pat") {
        Some(f) => f.fields(p, PAT_KEYS),
        None => Fields::absent("auth.pat"),
    };
    let max_ttl = s.or(p, "max_ttl", DEFAULT_MAX_TTL, |f, p| {
        f.parsed(p, parse_duration)
    });
    if max_ttl.is_zero() || max_ttl > LONGEST_MAX_TTL {
        let message = format!(
            "must be longer than 0 and at most {}, got {}",
            human(LONGEST_MAX_TTL),
            human(max_ttl)
        );
        p.error(&s.spot_of("max_ttl"), message);
    }
    PatSettings { max_ttl }
}

/// `auth.require_mfa_for_roles`: declared roles whose users must enroll a second factor.
pub(super) fn read_mfa_roles(
    a: &Fields,
    roles: Option<&[String]>,
    p: &mut Problems,
) -> Vec<String> {
    let Some(list) = a.get("require_mfa_for_roles").and_then(|f| f.strings(p)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (item, role) in list {
        if let Some(known) = roles.filter(|known| !known.contains(&role)) {
            item.fail(p, super::routes::unknown("role", &role, known));
        }
        out.push(role);
    }
    out
}
