//! How guessable an HS256 secret is. Length is not entropy: `1234567890…` and
//! `my-super-secret-key-for-jwt-2024!` are 32 bytes and fall to a wordlist in seconds,
//! after which anyone can sign an admin token. Refused at start and by `portcullis check`.
//!
//! The estimate is a cost model in the spirit of zxcvbn: the cheapest way to spell the
//! secret from random characters of its alphabet, runs and sequences (`aaaa`, `abcd`,
//! `9876`), repeats of an earlier stretch or separator, and dictionary words (the
//! bundled breached-password list, costing `log2` of their rank, `l33t` included).

use super::wordlists::{self, LONGEST_COMMON_PASSWORD};

/// The least estimated entropy an HS256 secret must have (NIST SP 800-131A's 128-bit
/// security strength; RFC 7518 §3.2 wants a 256-bit key, which `openssl rand -hex 32` is).
pub const MIN_BITS: f64 = 128.0;
/// What a character costs that continues a run, a sequence or an earlier stretch.
const PREDICTABLE_BITS: f64 = 1.0;
/// The shortest stretch looked up as a word.
const SHORTEST_WORD: usize = 3;
/// A repeat counts once this many characters in a row appeared before.
const REPEAT_SPAN: usize = 4;
/// The advice every refusal ends with.
const ADVICE: &str = "make a random one with `openssl rand -hex 32`";

/// `Ok` for a secret that is not published and whose estimate reaches [`MIN_BITS`];
/// otherwise the message for the operator, which never repeats the secret.
pub fn check_jwt_secret(secret: &str) -> Result<(), String> {
    if wordlists::is_published_jwt_secret(secret) {
        return Err(format!(
            "JWT_SECRET is a published secret: it is in the wordlists JWT cracking tools try first \
             (jwt_tool, hashcat), so anyone could sign tokens with it; {ADVICE}"
        ));
    }
    let bits = estimate_bits(secret);
    if bits < MIN_BITS {
        return Err(format!(
            "JWT_SECRET is too easy to guess: about {bits:.0} bits of entropy by estimate \
             (repeated characters, sequences and dictionary words count for little), at least \
             {MIN_BITS:.0} needed; {ADVICE}"
        ));
    }
    Ok(())
}

/// The estimated entropy of `secret` in bits: the cheapest spelling of it as a chain of
/// random characters (`log2` of its alphabet each), predictable characters and words.
pub fn estimate_bits(secret: &str) -> f64 {
    let chars: Vec<char> = secret.chars().collect();
    let char_bits = alphabet_size(&chars).log2();
    // cheapest[i]: the cheapest spelling of the first i characters.
    let mut cheapest = vec![f64::INFINITY; chars.len() + 1];
    cheapest[0] = 0.0;
    for i in 0..chars.len() {
        let here = cheapest[i];
        let one = if predictable(&chars, i) {
            PREDICTABLE_BITS
        } else {
            char_bits
        };
        cheapest[i + 1] = cheapest[i + 1].min(here + one);
        let longest = LONGEST_COMMON_PASSWORD.min(chars.len() - i);
        for len in SHORTEST_WORD..=longest {
            if let Some(cost) = word_cost(&chars[i..i + len]) {
                cheapest[i + len] = cheapest[i + len].min(here + cost);
            }
        }
    }
    cheapest[chars.len()]
}

/// A test for one class of characters.
type CharClass = fn(&char) -> bool;

/// How many characters the secret's alphabet has: 16 for hex, else the sum of the
/// classes it uses (lower, upper, digits, ASCII punctuation and space, anything else).
fn alphabet_size(chars: &[char]) -> f64 {
    let all = |f: CharClass| chars.iter().all(f);
    let any = |f: CharClass| chars.iter().any(f);
    let lower_hex = |c: &char| c.is_ascii_digit() || ('a'..='f').contains(c);
    let upper_hex = |c: &char| c.is_ascii_digit() || ('A'..='F').contains(c);
    if all(lower_hex) || all(upper_hex) {
        return 16.0;
    }
    let classes: [(CharClass, f64); 5] = [
        (char::is_ascii_lowercase, 26.0),
        (char::is_ascii_uppercase, 26.0),
        (char::is_ascii_digit, 10.0),
        (|c| c.is_ascii_punctuation() || *c == ' ', 33.0),
        (|c| !c.is_ascii(), 100.0),
    ];
    classes
        .iter()
        .filter(|(class, _)| any(*class))
        .map(|(_, size)| size)
        .sum::<f64>()
        .max(1.0)
}

/// Whether the character at `i` follows from the ones before it: the third of a run or
/// a sequence (`aaa`, `abc`, `987`), a separator (neither letter nor
/// digit) used before, or the end of a stretch of `REPEAT_SPAN` characters that
/// already appeared.
fn predictable(chars: &[char], i: usize) -> bool {
    if !chars[i].is_alphanumeric() && chars[..i].contains(&chars[i]) {
        return true;
    }
    if i >= 2 {
        let step = |j: usize| i64::from(u32::from(chars[j])) - i64::from(u32::from(chars[j - 1]));
        if step(i) == step(i - 1) && step(i).abs() <= 1 {
            return true;
        }
    }
    if i + 1 >= REPEAT_SPAN {
        let stretch = &chars[i + 1 - REPEAT_SPAN..=i];
        return chars[..i]
            .windows(REPEAT_SPAN)
            .any(|earlier| earlier == stretch);
    }
    false
}

/// What `span` costs as a dictionary word, as written or in `l33t`: `log2` of its rank,
/// a bit more for capitals or substitutions; `None` when it is no word.
fn word_cost(span: &[char]) -> Option<f64> {
    // Runs of digits are years, PINs and sequences, which the other rules price;
    // as "words" they would discount every random hex secret.
    if !span.iter().any(|c| c.is_alphabetic()) {
        return None;
    }
    let bits = |rank: u32| f64::from(rank).log2().max(1.0);
    let lower = || span.iter().flat_map(|c| c.to_lowercase());
    let capitals = if span.iter().any(|c| c.is_uppercase()) {
        1.0
    } else {
        0.0
    };
    if let Some(rank) = wordlists::rank(lower()) {
        return Some(bits(rank) + capitals);
    }
    let unleet = |c: char| match c {
        '0' => 'o',
        '1' | '!' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        other => other,
    };
    let substituted = span.iter().any(|c| unleet(*c) != *c);
    // Three characters with a substitution match too much random text to count.
    if !substituted || span.len() < 4 {
        return None;
    }
    wordlists::rank(lower().map(unleet)).map(|rank| bits(rank) + capitals + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessable_secrets_of_32_bytes_and_more_are_refused() {
        for weak in [
            "12345678901234567890123456789012",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abcdefghijklmnopqrstuvwxyzabcdefghij",
            "0123456789abcdef0123456789abcdef-test-secret",
            "password12345678901234567890123",
            "my-super-secret-key-for-jwt-2024!",
            "P@ssw0rdP@ssw0rdP@ssw0rdP@ssw0rd",
            "qwertyuiopasdfghjklzxcvbnm123456",
            "deadbeefdeadbeefdeadbeefdeadbeef",
            "correcthorsebatterystaplecorrecthorse",
        ] {
            assert!(
                check_jwt_secret(weak).is_err(),
                "{weak}: {}",
                estimate_bits(weak)
            );
        }
    }

    #[test]
    fn random_secrets_pass() {
        for strong in [
            // openssl rand -hex 32
            "3f9c1e0b7d4a62f8e15b09c4d7a3e6f21b8c5d0e9f4a7b3c6d2e8f1a0b9c4d7e",
            // openssl rand -base64 32
            "q8Vh1cZ3Jk0rW9mT5xYb2LnP7sDf4GaE6uHi0oKjQwM=",
            // 40 random printable ASCII characters
            "t#4Wq!9zR`e2Lm&Yp7^Xc0Kv$Hn5(Bj8)Uf3=Sg1",
        ] {
            assert_eq!(
                check_jwt_secret(strong),
                Ok(()),
                "{}",
                estimate_bits(strong)
            );
        }
    }

    #[test]
    fn the_refusals_say_how_to_make_a_good_secret_and_never_echo_it() {
        let secret = "12345678901234567890123456789012";
        let published = check_jwt_secret(secret).unwrap_err();
        assert!(published.starts_with("JWT_SECRET is a published secret"));
        let weak = check_jwt_secret("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap_err();
        assert!(weak.starts_with("JWT_SECRET is too easy to guess: about"));
        for message in [published, weak] {
            assert!(message.ends_with("`openssl rand -hex 32`"), "{message}");
            assert!(!message.contains(secret) && !message.contains("zzzz"));
        }
    }

    #[test]
    fn each_pattern_costs_far_less_than_random_characters() {
        let random = 32.0 * 16f64.log2();
        assert!(estimate_bits("00000000000000000000000000000000") < 40.0);
        assert!(estimate_bits("0123456789abcdef0123456789abcdef") < 40.0);
        assert!(estimate_bits("passwordpasswordpasswordpassword") < 40.0);
        let hex = "3f9c1e0b7d4a62f8e15b09c4d7a3e6f2";
        assert!(estimate_bits(hex) > random - 10.0, "{}", estimate_bits(hex));
    }
}
