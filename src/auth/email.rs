//! Email addresses as accounts are keyed. One person's address can be written many ways:
//! `josé` precomposed or as `e` + combining accent, fullwidth `ａlice`, `Alice`, a stray
//! space. All of them must name one account, for uniqueness, login and the per-email
//! rate limit alike, so every address is normalized here before anything compares it.

use unicode_normalization::UnicodeNormalization;

/// Longest address accepted, in bytes after normalization (RFC 5321's path limit).
const MAX_BYTES: usize = 254;

/// The one spelling of an address: Unicode compatibility composition (NFKC), then
/// lower-casing, then NFKC again (lower-casing can leave a sequence it would compose),
/// then trimmed. Idempotent, so stored addresses can be normalized again safely.
pub fn normalize(email: &str) -> String {
    let lowered: String = email.nfkc().flat_map(char::to_lowercase).collect();
    let composed: String = lowered.nfkc().collect();
    composed.trim().to_owned()
}

/// The normalized address, if it is shaped like one: something@something, at most 254
/// bytes, no whitespace or control characters. Deliverability is not our business.
/// Signup and `portcullis user add` both call this; the message is safe to show.
pub fn valid(email: &str) -> Result<String, &'static str> {
    let email = normalize(email);
    let shaped = email.len() <= MAX_BYTES
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if shaped {
        Ok(email)
    } else {
        Err("email is not a valid address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_one_address_normalizes_to_the_same_string() {
        let cases = [
            ("  Alice@Example.COM ", "alice@example.com"),
            ("ａｌｉｃｅ@example.com", "alice@example.com"),
            ("jos\u{e9}@example.com", "jos\u{e9}@example.com"),
            ("jose\u{301}@example.com", "jos\u{e9}@example.com"),
            ("JOSE\u{301}@EXAMPLE.COM", "jos\u{e9}@example.com"),
            ("\u{2163}@example.com", "iv@example.com"),
        ];
        for (written, expected) in cases {
            assert_eq!(normalize(written), expected, "{written:?}");
            assert_eq!(normalize(&normalize(written)), expected, "idempotent");
        }
    }

    #[test]
    fn addresses_must_be_shaped_like_addresses() {
        assert_eq!(
            valid("  Alice@Example.COM ").as_deref(),
            Ok("alice@example.com")
        );
        for bad in [
            "",
            "alice",
            "notanemail",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a@b@c",
            "a\u{0}b@example.com",
        ] {
            assert_eq!(valid(bad), Err("email is not a valid address"), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(valid(&long).is_err());
    }
}
