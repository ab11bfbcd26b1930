//! Strict JSON readers for the JOSE header and the claims set of an access token.
//!
//! serde's derived readers ignore repeated unknown members and accept several
//! shapes for a claim; a token is attacker-controlled text, so these readers
//! visit every member once, refuse any name seen twice, and insist on one JSON
//! type per claim (RFC 7519 §4: a parser that keeps the last duplicate lets two
//! components disagree about what a token says).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The members of a JOSE header that verification looks at.
#[derive(Debug, Default)]
pub struct Header<'a> {
    pub alg: Option<Cow<'a, str>>,
    pub typ: Option<Cow<'a, str>>,
    pub kid: Option<Cow<'a, str>>,
    /// `crit` names extensions the verifier must understand; we understand none.
    pub crit: bool,
}

/// The registered claims (RFC 7519 §4.1) verification looks at, as found.
#[derive(Debug, Default)]
pub struct Registered<'a> {
    pub iss: Option<Cow<'a, str>>,
    pub aud: Option<Audience<'a>>,
    pub sub: Option<Cow<'a, str>>,
    pub iat: Option<u64>,
    pub nbf: Option<u64>,
    pub exp: Option<u64>,
    pub jti: Option<Cow<'a, str>>,
}

impl<'de> Registered<'de> {
    /// Reads the value of member `name` when it is one of these claims; false,
    /// with nothing read, when it is not.
    fn read<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<bool, A::Error> {
        match name {
            "iss" => self.iss = Some(map.next_value::<Text>()?.0),
            "aud" => self.aud = Some(map.next_value()?),
            "sub" => self.sub = Some(map.next_value::<Text>()?.0),
            // u64 refuses strings, floats and negatives: a NumericDate
            // in any other shape is a malformed token, not a rounding job.
            "iat" => self.iat = Some(map.next_value()?),
            "nbf" => self.nbf = Some(map.next_value()?),
            "exp" => self.exp = Some(map.next_value()?),
            "jti" => self.jti = Some(map.next_value::<Text>()?.0),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The claims an access token of ours carries, as found in the payload.
#[derive(Debug, Default)]
pub struct RawClaims<'a> {
    pub registered: Registered<'a>,
    pub sid: Option<Cow<'a, str>>,
    pub role: Option<Cow<'a, str>>,
    pub ws: Option<Cow<'a, str>>,
    pub plan: Option<Cow<'a, str>>,
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug)]
pub enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Audience<'_> {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// Member names seen so far in one object; a repeat is an error.
struct Seen<'n> {
    names: Vec<Cow<'n, str>>,
}

impl<'n> Seen<'n> {
    fn new() -> Self {
        Seen {
            names: Vec::with_capacity(12),
        }
    }

    /// Records `name`, handing it back for matching; a second sighting is an error.
    fn first_time<E: de::Error>(&mut self, name: Cow<'n, str>) -> Result<Cow<'n, str>, E> {
        if self.names.contains(&name) {
            return Err(E::custom(format_args!("duplicate member {name:?}")));
        }
        self.names.push(name.clone());
        Ok(name)
    }
}

/// A string borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for Audience<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Audience::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Audience::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(Text(t)) = seq.next_element()? {
                    all.push(t);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = Seen::new();
                let mut h = Header::default();
                while let Some(Text(name)) = map.next_key()? {
                    let name = seen.first_time(name)?;
                    match name.as_ref() {
                        "alg" => h.alg = Some(map.next_value::<Text>()?.0),
                        "typ" => h.typ = Some(map.next_value::<Text>()?.0),
                        "kid" => h.kid = Some(map.next_value::<Text>()?.0),
                        "crit" => {
                            map.next_value::<IgnoredAny>()?;
                            h.crit = true;
                        }
                        // `jku`, `x5u`, `jwk`, `x5c` and the rest are never acted on:
                        // keys come from configuration, not from the token.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> de::Deserialize<'de> for RawClaims<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawClaims<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = Seen::new();
                let mut c = RawClaims::default();
                while let Some(Text(name)) = map.next_key()? {
                    let name = seen.first_time(name)?;
                    if c.registered.read(&name, &mut map)? {
                        continue;
                    }
                    match name.as_ref() {
                        "sid" => c.sid = Some(map.next_value::<Text>()?.0),
                        "role" => c.role = Some(map.next_value::<Text>()?.0),
                        "ws" => c.ws = Some(map.next_value::<Text>()?.0),
                        "plan" => c.plan = Some(map.next_value::<Text>()?.0),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// The claims of a trusted issuer's token: the registered ones this gateway
/// checks, and the roles found at the issuer's `role_claim`.
#[derive(Debug, Default)]
pub struct ForeignClaims<'a> {
    pub registered: Registered<'a>,
    pub roles: Vec<Cow<'a, str>>,
}

/// A role claim: one string or a list of strings.
struct Roles<'a>(Vec<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Roles<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Audience::deserialize(d)? {
            Audience::One(role) => Ok(Roles(vec![role])),
            Audience::Many(roles) => Ok(Roles(roles)),
        }
    }
}

/// Finds the roles at a dotted `path` inside a value: the member named by the
/// whole path wins, then the first segment's object is searched for the rest.
/// Values of any other shape hold no roles.
struct RolesAt<'p> {
    path: &'p str,
}

impl<'de> de::DeserializeSeed<'de> for RolesAt<'_> {
    type Value = Option<Vec<Cow<'de, str>>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RolesAt<'_> {
    type Value = Option<Vec<Cow<'de, str>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new();
        let (mut exact, mut nested) = (None, None);
        while let Some(Text(name)) = map.next_key()? {
            let name = seen.first_time(name)?;
            if name == self.path {
                exact = Some(map.next_value::<Roles>()?.0);
            } else if let Some(rest) = self
                .path
                .strip_prefix(name.as_ref())
                .and_then(|r| r.strip_prefix('.'))
            {
                nested = map.next_value_seed(RolesAt { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(exact.or(nested))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads a trusted issuer's claims with the strictness of [`claims`]; roles
/// come from `role_claim` (see [`RolesAt`]), registered claims keep their meaning.
struct Foreign<'p> {
    role_claim: &'p str,
}

impl<'de> de::DeserializeSeed<'de> for Foreign<'_> {
    type Value = ForeignClaims<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Foreign<'_> {
    type Value = ForeignClaims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new();
        let mut c = ForeignClaims::default();
        let (mut exact, mut nested) = (None, None);
        while let Some(Text(name)) = map.next_key()? {
            let name = seen.first_time(name)?;
            if c.registered.read(&name, &mut map)? {
                continue;
            }
            match name.as_ref() {
                n if n == self.role_claim => exact = Some(map.next_value::<Roles>()?.0),
                n => match self
                    .role_claim
                    .strip_prefix(n)
                    .and_then(|r| r.strip_prefix('.'))
                {
                    Some(rest) => nested = map.next_value_seed(RolesAt { path: rest })?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        c.roles = exact.or(nested).unwrap_or_default();
        Ok(c)
    }
}

/// Reads a header object; any JSON error, trailing data or repeated member refuses it.
pub fn header(bytes: &[u8]) -> Result<Header<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Reads a claims object with the same strictness as [`header`].
pub fn claims(bytes: &[u8]) -> Result<RawClaims<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Only the `iss` of a claims object, whatever shape its other members have
/// (another issuer's `role` may be a list): it chooses which keys to try.
pub fn issuer(bytes: &[u8]) -> Option<Cow<'_, str>> {
    struct Iss;
    impl<'de> Visitor<'de> for Iss {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JWT claims object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = Seen::new();
            let mut iss = None;
            while let Some(Text(name)) = map.next_key()? {
                if seen.first_time(name)? == "iss" {
                    iss = Some(map.next_value::<Text>()?.0);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(iss)
        }
    }
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let iss = de::Deserializer::deserialize_map(&mut reader, Iss).ok()?;
    reader.end().ok()?;
    iss
}

/// Reads a trusted issuer's claims object, with its roles at `role_claim`.
pub fn foreign_claims<'a>(
    bytes: &'a [u8],
    role_claim: &str,
) -> Result<ForeignClaims<'a>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let claims = Foreign { role_claim }.deserialize(&mut reader)?;
    reader.end()?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_header_member_is_refused() {
        assert!(header(br#"{"alg":"HS256","alg":"none"}"#).is_err());
        assert!(header(br#"{"alg":"HS256","x":1,"x":2}"#).is_err());
    }

    #[test]
    fn a_repeated_claim_is_refused_even_when_unknown() {
        assert!(claims(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(claims(br#"{"foo":1,"foo":1}"#).is_err());
        // An escaped spelling of the same name is the same member.
        assert!(claims(br#"{"sub":"a","s\u0075b":"b"}"#).is_err());
    }

    #[test]
    fn numeric_dates_must_be_non_negative_integers() {
        assert!(claims(br#"{"exp":"1700000000"}"#).is_err());
        assert!(claims(br#"{"exp":1700000000.5}"#).is_err());
        assert!(claims(br#"{"exp":-1}"#).is_err());
        assert_eq!(
            claims(br#"{"exp":1700000000}"#).unwrap().registered.exp,
            Some(1_700_000_000)
        );
    }

    #[test]
    fn string_claims_refuse_other_types() {
        assert!(claims(br#"{"sub":42}"#).is_err());
        assert!(claims(br#"{"role":["admin"]}"#).is_err());
        assert!(header(br#"{"kid":null}"#).is_err());
    }

    #[test]
    fn audience_is_a_string_or_a_list_of_strings() {
        let one = claims(br#"{"aud":"api"}"#).unwrap().registered.aud.unwrap();
        assert!(one.contains("api") && !one.contains("web"));
        let many = claims(br#"{"aud":["web","api"]}"#)
            .unwrap()
            .registered
            .aud
            .unwrap();
        assert!(many.contains("api"));
        assert!(claims(br#"{"aud":[1]}"#).is_err());
    }

    fn roles(json: &str, claim: &str) -> Vec<String> {
        let c = foreign_claims(json.as_bytes(), claim).unwrap();
        c.roles.into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn foreign_roles_are_a_string_a_list_or_a_dotted_path() {
        assert_eq!(roles(r#"{"role":"admin"}"#, "role"), ["admin"]);
        assert_eq!(roles(r#"{"groups":["a","b"]}"#, "groups"), ["a", "b"]);
        let keycloak = r#"{"realm_access":{"roles":["creator"]},"sub":"x"}"#;
        assert_eq!(roles(keycloak, "realm_access.roles"), ["creator"]);
        // Auth0 namespaces custom claims with a URL, dots included: the whole name wins.
        let auth0 =
            r#"{"https://example.com/roles":["admin"],"https://example":{"com/roles":["x"]}}"#;
        assert_eq!(roles(auth0, "https://example.com/roles"), ["admin"]);
        assert!(roles(r#"{"realm_access":"nope"}"#, "realm_access.roles").is_empty());
        assert!(roles(r#"{"sub":"x"}"#, "role").is_empty());
    }

    #[test]
    fn the_issuer_is_read_whatever_shape_the_other_claims_have() {
        let iss = issuer(br#"{"role":["a"],"ws":{"x":1},"iss":"https://idp.test/"}"#);
        assert_eq!(iss.as_deref(), Some("https://idp.test/"));
        assert!(issuer(br#"{"iss":"a","iss":"b"}"#).is_none());
        assert!(issuer(br#"{"iss":1}"#).is_none());
        assert!(issuer(br#"{"sub":"x"}"#).is_none());
    }

    #[test]
    fn foreign_claims_are_as_strict_as_ours() {
        assert!(foreign_claims(br#"{"sub":"a","sub":"b"}"#, "role").is_err());
        assert!(foreign_claims(br#"{"role":"a","role":"b"}"#, "role").is_err());
        assert!(foreign_claims(br#"{"r":{"x":1,"x":2}}"#, "r.roles").is_err());
        assert!(foreign_claims(br#"{"role":[1]}"#, "role").is_err());
        assert!(foreign_claims(br#"{"exp":1.5}"#, "role").is_err());
        assert!(foreign_claims(br#"{"exp":1} x"#, "role").is_err());
        let c = foreign_claims(br#"{"iss":"i","aud":["a"],"exp":5}"#, "role").unwrap();
        let r = &c.registered;
        assert_eq!((r.iss.as_deref(), r.exp, r.nbf), (Some("i"), Some(5), None));
    }

    #[test]
    fn crit_is_noticed_and_trailing_data_refused() {
        assert!(header(br#"{"alg":"HS256","crit":["exp"]}"#).unwrap().crit);
        assert!(header(br#"{"alg":"HS256"} x"#).is_err());
        assert!(header(br#"[]"#).is_err());
    }
}
