//! Request-path normalization and route matching, so that the path an upstream receives is
//! exactly the path that was matched and authorized.
//!
//! Choices worth knowing:
//! - [`normalize`] is strict: a path that some server behind the gateway could read differently
//!   from us (encoded `/` or `\`, encoded dot segments, `;` parameters, `..` above the root, ...)
//!   is refused with a [`PathError`] (answered with 400) rather than repaired.
//! - Only escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, because RFC 3986
//!   says decoding any other escape may change the meaning. Those stay escaped, with upper-case
//!   hex. Raw characters that have no business in a path (non-ASCII, `{`, `"`, ...) are escaped,
//!   so the output is ASCII and every path has exactly one spelling: normalizing twice changes
//!   nothing.
//! - Sub-delimiters, `:` and `@` are kept as they came: `/a!` and `/a%21` are different paths,
//!   and a pattern literal `a!` matches only the raw form.
//! - A trailing slash is kept (`/a/b/` stays `/a/b/`), and a trailing `.` or `..` leaves one
//!   (`/a/b/..` becomes `/a/`), as RFC 3986 `remove_dot_segments` does, because many upstreams
//!   treat `/a` and `/a/` differently. When matching, a trailing slash is one more, empty,
//!   segment, which only a final `**` accepts; patterns themselves may not end with `/`.
//! - Captured values are normalized segments, so they are still percent-encoded where the path
//!   was (`/caf%C3%A9` captures `caf%C3%A9`).
//! - Matching does not allocate: captures borrow from the path and share the pattern's names.

use std::fmt;
use std::sync::Arc;

use http::Method;

/// Why a path was refused; every variant is answered with 400. Display gives a short lower-case
/// detail used in `Invalid request: <detail>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (includes the empty path and `OPTIONS *`).
    NotAbsolute,
    /// `%2F`: would split into two segments at some upstream but not here.
    EncodedSlash,
    /// `%5C`: some servers treat `\` as a separator.
    EncodedBackslash,
    /// A raw `\`.
    Backslash,
    /// A segment that decodes to `.` or `..` but was spelled with escapes.
    EncodedDotSegment,
    /// A raw `;`, which some servers treat as the start of path parameters.
    Parameters,
    /// NUL, another ASCII or C1 control character, raw or escaped.
    ControlCharacter,
    /// Escapes in a segment that do not decode to valid UTF-8.
    InvalidUtf8,
    /// A `..` with nothing left to remove.
    AboveRoot,
    /// A raw `#`: fragments are never sent by clients, so this is an attack or a bug.
    Fragment,
    /// A raw `?`: the caller splits off the query, so one left here means confusion about where
    /// the path ends.
    Query,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path must start with '/'",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::EncodedBackslash => "encoded backslash in path",
            PathError::Backslash => "backslash in path",
            PathError::EncodedDotSegment => "encoded dot segment in path",
            PathError::Parameters => "';' parameters in path",
            PathError::ControlCharacter => "control character in path",
            PathError::InvalidUtf8 => "percent-escapes in path are not valid utf-8",
            PathError::AboveRoot => "path goes above the root",
            PathError::Fragment => "'#' in path",
            PathError::Query => "'?' in path",
            PathError::BadEscape => "malformed percent-escape in path",
        })
    }
}

impl std::error::Error for PathError {}

/// Brings a request path into the canonical form that is matched and forwarded (see the module
/// docs for the rules), or says why it cannot be done safely.
///
/// `raw` is the request-target's path only: the caller has already split off `?query`.
/// The result always starts with `/`.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if is_canonical(raw) {
        return Ok(raw.to_owned());
    }
    normalize_any(raw)
}

/// `normalize` for any path, by segments.
fn normalize_any(raw: &str) -> Result<String, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut out = String::with_capacity(raw.len() + 1);
    // Where each kept segment's leading '/' sits in `out`, so that `..` can drop it again.
    let mut kept: Vec<usize> = Vec::new();
    let mut decoded: Vec<u8> = Vec::new();
    let mut trailing_slash = false;

    for raw_segment in rest.split('/') {
        let start = out.len();
        out.push('/');
        let had_escape = push_segment(raw_segment, &mut out, &mut decoded)?;
        let segment = &out[start + 1..];
        let (empty, dot, dot_dot) = (segment.is_empty(), segment == ".", segment == "..");
        if (dot || dot_dot) && had_escape {
            return Err(PathError::EncodedDotSegment);
        }
        trailing_slash = empty || dot || dot_dot;
        if dot_dot {
            let parent = kept.pop().ok_or(PathError::AboveRoot)?;
            out.truncate(parent);
        } else if trailing_slash {
            out.truncate(start);
        } else {
            kept.push(start);
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `raw` is already what `normalize` makes of it, checked in one pass
/// for the common shape: unreserved characters only (no escapes, nothing to
/// decode or refuse), no empty segment but a trailing one, no dot segments.
/// Anything else takes the full path.
fn is_canonical(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last)
            || segment == "."
            || segment == ".."
            || !segment.bytes().all(is_unreserved)
        {
            return false;
        }
    }
    true
}

/// Appends one raw segment to `out` in canonical spelling and reports whether it used any escape.
/// `decoded` is scratch space, reused across segments.
fn push_segment(raw: &str, out: &mut String, decoded: &mut Vec<u8>) -> Result<bool, PathError> {
    decoded.clear();
    let bytes = raw.as_bytes();
    let mut had_escape = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            // Byte slicing, not str slicing: a `%` before a multi-byte character must not panic.
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(decode_hex_pair)
                .ok_or(PathError::BadEscape)?;
            had_escape = true;
            i += 3;
            match byte {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                _ if byte.is_ascii_control() => return Err(PathError::ControlCharacter),
                _ if is_unreserved(byte) => out.push(char::from(byte)),
                _ => push_escaped(out, byte),
            }
            decoded.push(byte);
        } else {
            i += 1;
            match b {
                b'\\' => return Err(PathError::Backslash),
                b';' => return Err(PathError::Parameters),
                b'#' => return Err(PathError::Fragment),
                b'?' => return Err(PathError::Query),
                _ if b.is_ascii_control() => return Err(PathError::ControlCharacter),
                _ if is_unreserved(b) || is_kept_raw(b) => out.push(char::from(b)),
                _ => push_escaped(out, b),
            }
            decoded.push(b);
        }
    }
    // Checked per segment over raw and escaped bytes together, so an escape cannot complete or
    // break a neighbouring character.
    let text = std::str::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    // C1 controls (U+0080..U+009F) cause the same log and header trouble as ASCII ones.
    if text.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    Ok(had_escape)
}

fn decode_hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair {
        [hi, lo] => u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok(),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0F)]));
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Sub-delimiters (but `;`), `:` and `@`: allowed raw in a path segment and meaningful to some
/// servers, so neither decoded nor escaped.
fn is_kept_raw(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// Segments of a normalized path: `/` has none, `/a/` has `a` and an empty one.
fn path_segments(path: &str) -> Option<std::str::Split<'_, char>> {
    let rest = path.strip_prefix('/')?;
    let mut parts = rest.split('/');
    if rest.is_empty() {
        // `"".split('/')` yields one empty item, but `/` is the path with no segments.
        parts.next();
    }
    Some(parts)
}

/// Captures are kept in a fixed array so matching never allocates.
const MAX_CAPTURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `{name}`; the names live in `Pattern::names`, in order.
    Capture,
    /// `*`
    Any,
    /// `**`, only ever last.
    Rest,
}

/// A compiled route pattern, parsed once at config load and matched against normalized paths.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
    // Shared with every `Captures` so a match only bumps a reference count.
    names: Arc<[Box<str>]>,
}

impl Pattern {
    /// Parses a pattern from config. Segments are literals (already in normalized form), `{name}`
    /// (one segment, captured), `*` (one segment) or a final `**` (zero or more segments).
    /// Errors are a human message for the config error report.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| "pattern must start with '/'".to_string())?;
        let mut segments = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        if !rest.is_empty() {
            let count = rest.split('/').count();
            for (i, part) in rest.split('/').enumerate() {
                if part.is_empty() {
                    return Err(if i + 1 == count {
                        "pattern must not end with '/'; end it with `/**` to also match a trailing slash".to_string()
                    } else {
                        "pattern has an empty segment (`//`)".to_string()
                    });
                }
                if matches!(segments.last(), Some(Segment::Rest)) {
                    return Err("`**` must be the last segment".to_string());
                }
                let segment = parse_segment(part)?;
                if segment == Segment::Capture {
                    let name = &part[1..part.len() - 1];
                    if names.iter().any(|n| **n == *name) {
                        return Err(format!("duplicate capture name \"{name}\""));
                    }
                    if names.len() == MAX_CAPTURES {
                        return Err(format!(
                            "a pattern may have at most {MAX_CAPTURES} captures"
                        ));
                    }
                    names.push(name.into());
                }
                segments.push(segment);
            }
        }
        Ok(Pattern {
            text: s.to_string(),
            segments,
            names: names.into(),
        })
    }

    /// The pattern text as written in config; used as the metrics `route` label and in messages.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Names of the `{name}` captures in pattern order, e.g. to check that config only refers to
    /// captures that exist.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Matches a path that has been through [`normalize`] (others may simply not match);
    /// on success the captures borrow from `path`.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Captures<'p>> {
        let mut parts = path_segments(path)?;
        let mut values = [""; MAX_CAPTURES];
        let mut captured = 0;
        for segment in &self.segments {
            match segment {
                Segment::Rest => return Some(self.captures(values)),
                Segment::Literal(literal) => {
                    if parts.next()? != &**literal {
                        return None;
                    }
                }
                Segment::Any => {
                    if parts.next()?.is_empty() {
                        return None;
                    }
                }
                Segment::Capture => {
                    let part = parts.next()?;
                    if part.is_empty() {
                        return None;
                    }
                    *values.get_mut(captured)? = part;
                    captured += 1;
                }
            }
        }
        match parts.next() {
            Some(_) => None,
            None => Some(self.captures(values)),
        }
    }

    fn captures<'p>(&self, values: [&'p str; MAX_CAPTURES]) -> Captures<'p> {
        Captures {
            names: Arc::clone(&self.names),
            values,
        }
    }

    /// True when every path `other` matches is also matched by `self`, so a route with `other`
    /// placed after one with `self` can never be reached. Used to warn about shadowed routes.
    pub fn covers(&self, other: &Pattern) -> bool {
        let mut theirs = other.segments.iter();
        for mine in &self.segments {
            let Some(their) = theirs.next() else {
                // `other` matches a path that ends here; only a `**` of ours accepts that.
                return *mine == Segment::Rest;
            };
            let ok = match (mine, their) {
                (Segment::Rest, _) => return true,
                (_, Segment::Rest) => false,
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Literal(_), _) => false,
                (Segment::Any | Segment::Capture, _) => true,
            };
            if !ok {
                return false;
            }
        }
        theirs.next().is_none()
    }
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    match part {
        "**" => return Ok(Segment::Rest),
        "*" => return Ok(Segment::Any),
        "." | ".." => {
            return Err("dot segments (`.`, `..`) are not allowed in patterns".to_string())
        }
        _ => {}
    }
    if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if !is_capture_name(name) {
            return Err("capture name must be [A-Za-z_][A-Za-z0-9_]*".to_string());
        }
        return Ok(Segment::Capture);
    }
    if part.contains(['{', '}', '*']) {
        return Err(format!(
            "segment \"{part}\" mixes text with `{{`, `}}` or `*`; a segment is a literal, `{{name}}`, `*` or `**`"
        ));
    }
    // A literal that normalization would respell could never match a normalized path.
    let written = format!("/{part}");
    match normalize(&written) {
        Ok(normalized) if normalized == written => Ok(Segment::Literal(part.into())),
        Ok(normalized) => Err(format!(
            "segment \"{part}\" is not in normalized form; write \"{}\"",
            &normalized[1..]
        )),
        Err(e) => Err(format!("segment \"{part}\" can never match: {e}")),
    }
}

fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `{name}` values of one match, in pattern order, borrowing from the matched path. Values
/// are normalized segments, so still percent-encoded where the path was.
#[derive(Clone)]
pub struct Captures<'p> {
    names: Arc<[Box<str>]>,
    // Only the first `names.len()` entries are meaningful.
    values: [&'p str; MAX_CAPTURES],
}

impl<'p> Captures<'p> {
    /// The value captured by `{name}`, if the pattern has such a capture.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        let index = self.names.iter().position(|n| **n == *name)?;
        self.values.get(index).copied()
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'p str)> {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(self.values.iter().copied())
    }
}

impl fmt::Debug for Captures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The methods a config route may list by name without more ado, in the order
/// `names()` reports them: RFC 9110's methods and PATCH, minus TRACE and CONNECT,
/// which the gateway always answers with 405.
const STANDARD_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const GET: u16 = 1 << 0;
const HEAD: u16 = 1 << 1;
const ALL: u16 = (1 << STANDARD_METHODS.len()) - 1;

/// The set of methods a route accepts: a bitset over the standard methods plus
/// the extension methods (`PROPFIND`, `PURGE`) the route names. A route without
/// `methods` admits the standard ones only: an extension method reaches an
/// upstream only through a route that was written with it in mind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSet {
    bits: u16,
    extensions: Box<[Box<str>]>,
}

impl MethodSet {
    /// Every standard method, for a route without a `methods` key.
    pub fn any() -> MethodSet {
        MethodSet {
            bits: ALL,
            extensions: Box::default(),
        }
    }

    /// Parses a route's `methods` list: upper-case GET HEAD POST PUT PATCH DELETE OPTIONS,
    /// or an extension method spelled as its upstream expects it (an RFC 9110 token;
    /// methods are case-sensitive). TRACE and CONNECT are refused here because the gateway
    /// answers them with 405 before routing; a standard method in another letter case is
    /// refused as a likely typo. GET brings HEAD with it. An empty list is an error, since
    /// such a route could never match (leave the key out to allow every standard method).
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<MethodSet, String> {
        let mut bits = 0;
        let mut extensions: Vec<Box<str>> = Vec::new();
        for name in names {
            match STANDARD_METHODS.iter().position(|m| *m == name) {
                Some(index) => bits |= 1 << index,
                None => {
                    check_extension(name)?;
                    if !extensions.iter().any(|e| **e == *name) {
                        extensions.push(name.into());
                    }
                }
            }
        }
        if bits == 0 && extensions.is_empty() {
            return Err(
                "`methods` must not be empty; leave it out to allow every method".to_string(),
            );
        }
        // HEAD is GET without the body, so a GET route must answer it too.
        if bits & GET != 0 {
            bits |= HEAD;
        }
        extensions.sort();
        Ok(MethodSet {
            bits,
            extensions: extensions.into(),
        })
    }

    /// Whether a request with method `m` may use the route. GET in the set also admits
    /// HEAD; an extension method only when the route names it, in the same letter case.
    pub fn admits(&self, m: &Method) -> bool {
        match method_bit(m) {
            Some(bit) => self.bits & bit != 0,
            None => self.extensions.iter().any(|e| **e == *m.as_str()),
        }
    }

    /// True when every method `other` admits is also admitted by `self`.
    pub fn is_superset_of(&self, other: &MethodSet) -> bool {
        self.bits & other.bits == other.bits
            && other.extensions.iter().all(|e| self.extensions.contains(e))
    }

    /// The method names for `explain` output: `["*"]` for [`MethodSet::any`], otherwise the
    /// standard names in the set (including the HEAD that GET brings), then the extensions.
    pub fn names(&self) -> Vec<&str> {
        if *self == MethodSet::any() {
            return vec!["*"];
        }
        STANDARD_METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.bits & (1 << i) != 0)
            .map(|(_, m)| *m)
            .chain(self.extensions.iter().map(|e| &**e))
            .collect()
    }
}

fn method_bit(m: &Method) -> Option<u16> {
    STANDARD_METHODS
        .iter()
        .position(|s| *s == m.as_str())
        .map(|i| 1 << i)
}

/// Why `name`, not one of the standard methods, cannot be listed, if it cannot.
fn check_extension(name: &str) -> Result<(), String> {
    let allowed = STANDARD_METHODS.join(", ");
    let upper = name.to_ascii_uppercase();
    if upper == "TRACE" || upper == "CONNECT" {
        Err(format!(
            "method {name} cannot be routed (it is always answered with 405); allowed: {allowed}"
        ))
    } else if STANDARD_METHODS.contains(&upper.as_str()) {
        Err(format!(
            "unknown method \"{name}\" (methods are upper-case); allowed: {allowed}"
        ))
    } else if name.is_empty() || !name.bytes().all(is_tchar) {
        Err(format!(
            "method \"{name}\" is not an HTTP token; allowed: {allowed}, or an extension method such as PROPFIND"
        ))
    } else {
        Ok(())
    }
}

/// A character of an RFC 9110 token (method names, field names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The compiled route table, in config file order: the first route whose pattern and methods
/// both match wins.
#[derive(Debug, Clone)]
pub struct RouteTable {
    entries: Vec<(Pattern, MethodSet)>,
}

/// Which route answered a request, and what its pattern captured.
#[derive(Debug, Clone)]
pub struct RouteMatch<'p> {
    /// Position of the route in the table (and config file).
    pub index: usize,
    /// The route pattern's `{name}` values, borrowing from the normalized path.
    pub captures: Captures<'p>,
}

impl RouteTable {
    /// Builds the table; `entries` are in config file order.
    pub fn new(entries: Vec<(Pattern, MethodSet)>) -> RouteTable {
        RouteTable { entries }
    }

    /// The routes in order, so a [`RouteMatch::index`] can be turned back into its pattern.
    pub fn entries(&self) -> &[(Pattern, MethodSet)] {
        &self.entries
    }

    /// The first route admitting `method` whose pattern matches the normalized `path`;
    /// `None` means 404.
    pub fn find<'p>(&self, method: &Method, path: &'p str) -> Option<RouteMatch<'p>> {
        self.entries
            .iter()
            .enumerate()
            .find_map(|(index, (pattern, methods))| {
                if !methods.admits(method) {
                    return None;
                }
                let captures = pattern.matches(path)?;
                Some(RouteMatch { index, captures })
            })
    }

    /// Routes that can never be chosen, as `(shadowed_index, earlier_index)`, naming the first
    /// earlier route whose pattern covers it and whose methods are a superset. For config-load
    /// warnings. A route hidden only by several earlier routes together is not reported.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (later, (pattern, methods)) in self.entries.iter().enumerate() {
            let earlier = self.entries[..later]
                .iter()
                .position(|(p, m)| p.covers(pattern) && m.is_superset_of(methods));
            if let Some(earlier) = earlier {
                found.push((later, earlier));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
