//! The bundled wordlists (sources in `wordlists/README.md`): breached passwords that
//! signup refuses and that the secret-strength estimate treats as dictionary words, and
//! JWT secrets published on the web that no deployment may sign with. Loaded once, on
//! first use; only the auth endpoints, the CLI and startup read them, never the proxy.

use std::sync::OnceLock;

/// SecLists' `10-million-password-list-top-100000.txt`, one password a line, as published.
const COMMON_PASSWORDS: &str = include_str!("wordlists/common-passwords.txt");
/// Wallarm's `jwt.secrets.list` (which includes jwt_tool's `jwt-common.txt`), keeping
/// only the secrets of at least 32 bytes: shorter ones are refused by length anyway.
const PUBLISHED_JWT_SECRETS: &str = include_str!("wordlists/jwt-secrets.txt");

/// The longest entry of `COMMON_PASSWORDS`, in characters: no longer substring can match.
pub const LONGEST_COMMON_PASSWORD: usize = 20;

/// The common passwords, lower-cased, as sorted 64-bit fingerprints beside each one's
/// rank in the list (most common first), searched by bisection: a compact array
/// instead of one heap string per word. Two different words share a fingerprint with odds of about 1 in 10^14 per
/// lookup, and a collision only refuses one more password.
struct Common {
    fingerprints: Box<[u64]>,
    ranks: Box<[u32]>,
}

static COMMON: OnceLock<Common> = OnceLock::new();

/// Builds the common-password set now (tens of milliseconds), so the first signup does
/// not pay for it. Later calls do nothing.
pub fn load() {
    common();
}

fn common() -> &'static Common {
    COMMON.get_or_init(|| {
        let mut set: Vec<(u64, u32)> = COMMON_PASSWORDS
            .lines()
            .zip(1..)
            .map(|(word, rank)| (fingerprint(word.chars().flat_map(char::to_lowercase)), rank))
            .collect();
        // By fingerprint, then rank, so the first of equal fingerprints is the best rank.
        set.sort_unstable();
        set.dedup_by_key(|(fingerprint, _)| *fingerprint);
        Common {
            fingerprints: set.iter().map(|(f, _)| *f).collect(),
            ranks: set.iter().map(|(_, r)| *r).collect(),
        }
    })
}

/// True when `password`, lower-cased, is one of the bundled breached passwords
/// (`Password1` counts as `password1`, as it would in a guessing attack).
pub fn is_common_password(password: &str) -> bool {
    is_common(password.chars().flat_map(char::to_lowercase))
}

/// True when the characters, already lower-cased, spell a bundled breached password.
pub fn is_common(lower: impl Iterator<Item = char>) -> bool {
    rank(lower).is_some()
}

/// The list rank (1 = most common) of the breached password the characters, already
/// lower-cased, spell; the secret-strength estimate looks up substrings this way
/// without allocating.
pub fn rank(lower: impl Iterator<Item = char>) -> Option<u32> {
    let common = common();
    let at = common
        .fingerprints
        .binary_search(&fingerprint(lower))
        .ok()?;
    common.ranks.get(at).copied()
}

/// True when `secret` is, exactly or but for surrounding blanks, a JWT secret that the
/// cracking wordlists carry. Checked once per start, so a scan of 1,828 lines will do.
pub fn is_published_jwt_secret(secret: &str) -> bool {
    let trimmed = secret.trim();
    PUBLISHED_JWT_SECRETS
        .lines()
        .any(|known| known == secret || known == trimmed)
}

/// FNV-1a over the characters' UTF-8 bytes. Not keyed: the set is fixed and searched by
/// bisection, so there is no table for an attacker to flood.
fn fingerprint(chars: impl Iterator<Item = char>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut utf8 = [0u8; 4];
    for c in chars {
        for byte in c.encode_utf8(&mut utf8).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_list_holds_100000_entries_of_at_most_20_characters() {
        assert_eq!(COMMON_PASSWORDS.lines().count(), 100_000);
        let longest = COMMON_PASSWORDS.lines().map(|w| w.chars().count()).max();
        assert_eq!(longest, Some(LONGEST_COMMON_PASSWORD));
    }

    #[test]
    fn common_passwords_are_found_whatever_their_case_and_others_are_not() {
        for common in [
            "password",
            "12345678",
            "qwertyuiop",
            "Password1",
            "ILOVEYOU",
        ] {
            assert!(is_common_password(common), "{common}");
        }
        // The last line of the list, so the whole file was read.
        assert!(is_common_password("070162"));
        assert_eq!(rank("123456".chars()), Some(1));
        assert_eq!(rank("password".chars()), Some(2));
        for other in ["correct horse battery staple", "vT9#qLw2!mZp", ""] {
            assert!(!is_common_password(other), "{other}");
        }
    }

    #[test]
    fn published_jwt_secrets_are_recognized_exactly() {
        assert!(is_published_jwt_secret("12345678901234567890123456789012"));
        assert!(is_published_jwt_secret(
            " 12345678901234567890123456789012 "
        ));
        assert!(!is_published_jwt_secret("12345678901234567890123456789013"));
        assert!(PUBLISHED_JWT_SECRETS.lines().all(|s| s.len() >= 32));
    }
}
