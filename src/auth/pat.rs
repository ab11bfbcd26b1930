//! Personal access tokens: the token format, the scopes a token is limited to, and
//! (in `pat/index.rs`) the in-memory index the proxy verifies them against.
//!
//! A token is `pcl_pat_`, 32 random base62 characters (190 bits) and a 6-character
//! base62 checksum: the first four bytes of SHA-256 over the prefix and body. The fixed
//! prefix lets secret scanners find leaked tokens, and the checksum lets them (and the
//! gateway, before any lookup) tell a real token from a look-alike. Only the SHA-256 of
//! the whole token is stored.

mod index;

pub use index::{Index, Owner, Refusal};

use crate::route::{MethodSet, Pattern};
use http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// What every personal access token starts with.
pub const PREFIX: &str = "pcl_pat_";
const BODY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// The length of every token: prefix, body, checksum.
pub const TOKEN_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// How much of a token listings show: the prefix and four characters of the body.
const DISPLAY_LEN: usize = PREFIX.len() + 4;
/// Most scopes one token may carry; each is checked on every request it makes.
pub const MAX_SCOPES: usize = 32;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh token, shown once to its creator.
pub fn generate() -> String {
    let mut token = String::with_capacity(TOKEN_LEN);
    token.push_str(PREFIX);
    // 62 * 4 = 248: bytes from 248 up are drawn again, so every character is uniform.
    while token.len() < PREFIX.len() + BODY_LEN {
        let byte: u8 = rand::random();
        if byte < 248 {
            token.push(char::from(BASE62[usize::from(byte % 62)]));
        }
    }
    let sum = checksum(token.as_bytes());
    token.push_str(&sum);
    token
}

/// The checksum characters for a prefix-and-body.
fn checksum(prefix_and_body: &[u8]) -> String {
    let digest = Sha256::digest(prefix_and_body);
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[usize::try_from(n % 62).unwrap_or(0)];
        n /= 62;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// Whether `token` has the format and a matching checksum (no lookup, no secret).
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(PREFIX)
        && token
            .bytes()
            .skip(PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric())
        && {
            let (head, sum) = token.split_at(TOKEN_LEN - CHECKSUM_LEN);
            checksum(head.as_bytes()) == sum
        }
}

/// The SHA-256 a token is stored and looked up by.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What listings show of a token.
pub fn display_prefix(token: &str) -> &str {
    token.get(..DISPLAY_LEN).unwrap_or(PREFIX)
}

/// One scope: the requests (path pattern and methods) a token may make.
#[derive(Debug, Clone)]
pub struct Scope {
    pattern: Pattern,
    methods: MethodSet,
}

/// What a verified personal access token carries through the pipeline: its id (for the
/// upstream and the log) and its scopes, checked after the route's own rules.
pub struct Grant {
    pub id: String,
    scopes: Vec<Scope>,
}

impl Grant {
    pub fn new(id: String, scopes: Vec<Scope>) -> Grant {
        Grant { id, scopes }
    }

    /// Whether one of the token's scopes admits `method` on the normalized `path`.
    pub fn permits(&self, method: &Method, path: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s.methods.admits(method) && s.pattern.matches(path).is_some())
    }
}

// By id: two grants of one token are the same grant.
impl PartialEq for Grant {
    fn eq(&self, other: &Grant) -> bool {
        self.id == other.id
    }
}

impl Eq for Grant {}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("id", &self.id)
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

/// Reads the `scopes` of a create request (or of a stored row): a non-empty list of
/// `{"path": pattern, "methods": [method, …]}`. The message names the bad entry.
pub fn parse_scopes(value: &Value) -> Result<Vec<Scope>, String> {
    let Value::Array(items) = value else {
        return Err("field \"scopes\" must be a list of {path, methods}".into());
    };
    if items.is_empty() {
        return Err("field \"scopes\" must not be empty".into());
    }
    if items.len() > MAX_SCOPES {
        return Err(format!(
            "field \"scopes\" may hold at most {MAX_SCOPES} entries"
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_scope(item).map_err(|e| format!("scopes[{i}]: {e}")))
        .collect()
}

fn parse_scope(item: &Value) -> Result<Scope, String> {
    let Value::Object(fields) = item else {
        return Err("must be an object {path, methods}".into());
    };
    if let Some(other) = fields.keys().find(|k| *k != "path" && *k != "methods") {
        return Err(format!("unknown field \"{other}\""));
    }
    let path = match fields.get("path") {
        Some(Value::String(p)) if p.len() <= 256 => p,
        Some(Value::String(_)) => return Err("\"path\" is longer than 256 characters".into()),
        Some(_) => return Err("\"path\" must be a string".into()),
        None => return Err("missing field \"path\"".into()),
    };
    let pattern = Pattern::parse(path).map_err(|e| format!("\"path\": {e}"))?;
    let methods = match fields.get("methods") {
        Some(Value::Array(names)) if names.len() <= 16 => names
            .iter()
            .map(|m| m.as_str().ok_or("\"methods\" must be a list of strings"))
            .collect::<Result<Vec<&str>, _>>()?,
        Some(_) => return Err("\"methods\" must be a list of at most 16 methods".into()),
        None => return Err("missing field \"methods\"".into()),
    };
    if methods.is_empty() {
        return Err("\"methods\" must not be empty".into());
    }
    let methods = MethodSet::parse_list(methods).map_err(|e| format!("\"methods\": {e}"))?;
    Ok(Scope { pattern, methods })
}

/// Scopes as stored and shown: the same JSON a create request gives.
pub fn scopes_json(scopes: &[Scope]) -> Value {
    Value::Array(
        scopes
            .iter()
            .map(|s| json!({"path": s.pattern.as_str(), "methods": s.methods.names()}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_format_and_a_valid_checksum() {
        let token = generate();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.starts_with("pcl_pat_"));
        assert!(well_formed(&token), "{token}");
        assert_ne!(generate(), token);
        assert_eq!(display_prefix(&token).len(), 12);
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        let token = generate();
        let mut bytes = token.clone().into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(!well_formed(&altered));
        assert!(!well_formed(&token[..TOKEN_LEN - 1]));
        assert!(!well_formed(&format!("{token}x")));
        assert!(!well_formed(&token.replace("pcl_pat_", "pcl_pax_")));
        let mut odd = token.into_bytes();
        odd[20] = b'-';
        assert!(!well_formed(&String::from_utf8(odd).unwrap()));
    }

    #[test]
    fn scopes_admit_only_their_methods_and_paths() {
        let scopes = parse_scopes(&json!([
            {"path": "/api/browse/**", "methods": ["GET"]},
            {"path": "/api/upload", "methods": ["POST"]}
        ]))
        .unwrap();
        let grant = Grant::new("t1".into(), scopes);
        assert!(grant.permits(&Method::GET, "/api/browse/a/b"));
        assert!(grant.permits(&Method::HEAD, "/api/browse"));
        assert!(!grant.permits(&Method::DELETE, "/api/browse/a"));
        assert!(grant.permits(&Method::POST, "/api/upload"));
        assert!(!grant.permits(&Method::GET, "/api/upload"));
        assert!(!grant.permits(&Method::GET, "/api/admin/x"));
    }

    #[test]
    fn bad_scopes_are_refused_by_entry() {
        let cases = [
            (
                json!("x"),
                "field \"scopes\" must be a list of {path, methods}",
            ),
            (json!([]), "field \"scopes\" must not be empty"),
            (
                json!([{"path": "api", "methods": ["GET"]}]),
                "scopes[0]: \"path\": pattern must start with '/'",
            ),
            (
                json!([{"path": "/a"}]),
                "scopes[0]: missing field \"methods\"",
            ),
            (
                json!([{"path": "/a", "methods": []}]),
                "scopes[0]: \"methods\" must not be empty",
            ),
            (
                json!([{"path": "/a", "methods": ["GET"], "x": 1}]),
                "scopes[0]: unknown field \"x\"",
            ),
            (
                json!([{"methods": ["GET"]}]),
                "scopes[0]: missing field \"path\"",
            ),
        ];
        for (value, message) in cases {
            assert_eq!(
                parse_scopes(&value).err().as_deref(),
                Some(message),
                "{value}"
            );
        }
    }
}
