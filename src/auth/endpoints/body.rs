//! Request bodies of the auth endpoints: one JSON object, each member named once.
//!
//! `serde_json`'s own map keeps the last of two members with one name, so
//! `{"email":"nobody@x","email":"alice@x",…}` would log in as whoever the last one names
//! while a filter in front read the first. Like the token parser (`token/json.rs`), this
//! reader refuses a repeated name instead (400). Nested objects are read as plain values:
//! no endpoint looks inside one (every field is a string or a boolean).

use crate::error::Reject;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Value};
use std::fmt;

/// The body as a JSON object whose members each appear once.
pub(super) fn object(body: &[u8]) -> Result<Map<String, Value>, Reject> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("body must be a JSON object"));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let members = Members::deserialize(&mut reader).and_then(|m| reader.end().map(|()| m));
    match members {
        Ok(Members {
            duplicate: Some(name),
            ..
        }) => Err(Reject::BadRequest(
            format!("field \"{name}\" appears more than once").into(),
        )),
        Ok(Members { map, .. }) => Ok(map),
        Err(e) if e.classify() == Category::Data => Err(bad("body must be a JSON object")),
        Err(_) => Err(bad("body is not valid JSON")),
    }
}

fn bad(detail: &'static str) -> Reject {
    Reject::BadRequest(detail.into())
}

/// An object's members, and the first name found twice, if any.
struct Members {
    map: Map<String, Value>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
        let mut members = Members {
            map: Map::new(),
            duplicate: None,
        };
        while let Some(name) = access.next_key::<String>()? {
            if members.map.contains_key(&name) {
                access.next_value::<IgnoredAny>()?;
                members.duplicate.get_or_insert(name);
                continue;
            }
            let value = access.next_value::<Value>()?;
            members.map.insert(name, value);
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_named_twice_is_refused_by_name() {
        let body = br#"{"email":"nobody@x","email":"alice@x","password":"p"}"#;
        assert_eq!(
            object(body),
            Err(Reject::BadRequest(
                "field \"email\" appears more than once".into()
            ))
        );
        // Escapes spell the same name.
        let escaped = br#"{"email":"a@x","\u0065mail":"b@x"}"#;
        assert!(object(escaped).is_err());
    }

    #[test]
    fn only_one_json_object_is_a_body() {
        let not_object = Err(bad("body must be a JSON object"));
        let not_json = Err(bad("body is not valid JSON"));
        assert_eq!(object(b""), not_object);
        assert_eq!(object(b"  \n"), not_object);
        assert_eq!(object(b"[]"), not_object);
        assert_eq!(object(b"\"x\""), not_object);
        assert_eq!(object(b"{"), not_json);
        assert_eq!(object(b"{} {}"), not_json);
        assert_eq!(object(b"email=a&password=b"), not_json);
        let map = object(br#"{"a":"1","b":{"c":"2"}}"#).unwrap();
        assert_eq!(map.len(), 2);
    }
}
