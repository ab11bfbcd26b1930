//! Hints for the mistakes people make in YAML by hand, at the line they were made: a tab in
//! the indentation, a key without the space after its `:`, a line indented to no level
//! above it, a bracket or quote never closed, and the known key an unknown one was
//! probably meant to be. The parser's own message often points at a later line (where it
//! noticed), so the text is read again line by line when it fails.

use super::Pos;

/// The message for a tab in a line's indentation.
pub(super) const TABS: &str = "tabs are not allowed for indentation; use spaces";

/// One line as the hints see it.
struct Line<'t> {
    no: usize,
    /// Leading blanks (spaces and tabs).
    lead: &'t str,
    /// Whether a block scalar, a quoted scalar or a flow collection began on an earlier
    /// line and this line belongs to it, so its indentation is not the file's structure.
    inside: bool,
    /// Whether the line has content beyond blanks and a comment.
    content: bool,
    /// Whether it ends in a `key:` (or a lone `-`) whose value starts on a later line.
    opens: bool,
    /// Whether it starts with a `key: `.
    key: bool,
    /// Whether it starts with a `- ` list item.
    dash: bool,
    /// Columns (0-based) of what follows each leading `- `, when that is a `key: ...`.
    item_keys: Vec<usize>,
}

/// Quote and bracket state carried from line to line.
#[derive(Default)]
struct State {
    /// The open quote and where it opened.
    quote: Option<(char, Pos)>,
    /// Unclosed `[` / `{`, innermost last.
    open: Vec<(char, Pos)>,
    /// The first bracket closed by the other kind (`[GET }`), which was meant to be closed.
    mismatched: Option<(char, Pos)>,
    /// The indentation of the line that began a block scalar (`key: |`) still running.
    block_scalar: Option<usize>,
}

fn lines(text: &str) -> (Vec<Line<'_>>, State) {
    let mut state = State::default();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let start = raw
            .find(|c: char| c != ' ' && c != '\t')
            .unwrap_or(raw.len());
        let lead = &raw[..start];
        let blank = start == raw.len();
        if let Some(parent) = state.block_scalar {
            if blank || start > parent {
                out.push(inside(no, lead));
                continue;
            }
            state.block_scalar = None;
        }
        let inside_before = state.quote.is_some() || !state.open.is_empty();
        let scanned = scan(&mut state, no, raw, start);
        if scanned.block_scalar {
            state.block_scalar = Some(start);
        }
        out.push(Line {
            no,
            lead,
            inside: inside_before,
            content: scanned.content,
            opens: scanned.opens,
            key: !inside_before && has_key(&raw[start..]),
            dash: !scanned.item_cols.is_empty(),
            item_keys: scanned.item_keys,
        });
    }
    (out, state)
}

fn inside(no: usize, lead: &str) -> Line<'_> {
    Line {
        no,
        lead,
        inside: true,
        content: false,
        opens: false,
        key: false,
        dash: false,
        item_keys: Vec::new(),
    }
}

struct Scanned {
    content: bool,
    opens: bool,
    block_scalar: bool,
    /// Columns after each leading `- `.
    item_cols: Vec<usize>,
    item_keys: Vec<usize>,
}

/// Reads one line from byte `start`, updating the quote and bracket state. Brackets and
/// quotes count only where a value can start, since a plain scalar may hold them.
fn scan(state: &mut State, no: usize, raw: &str, start: usize) -> Scanned {
    let bytes = raw.as_bytes();
    let mut out = Scanned {
        content: false,
        opens: false,
        block_scalar: false,
        item_cols: Vec::new(),
        item_keys: Vec::new(),
    };
    let mut value_start = state.quote.is_none();
    let mut last: Option<char> = None;
    let mut i = start;
    // Leading `- ` items, each possibly holding a `key: value`.
    if state.quote.is_none() && state.open.is_empty() {
        while bytes.get(i) == Some(&b'-') && matches!(bytes.get(i + 1), None | Some(b' ')) {
            out.content = true;
            last = Some('-');
            i += 1;
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            out.item_cols.push(i);
            if has_key(&raw[i..]) {
                out.item_keys.push(i);
            }
        }
    }
    let chars: Vec<(usize, char)> = raw[i..].char_indices().map(|(j, c)| (i + j, c)).collect();
    let first_col = raw[..i].chars().count() + 1;
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        let pos = Pos {
            line: no,
            col: first_col + k,
        };
        let next = chars.get(k + 1).map(|&(_, c)| c);
        k += 1;
        if let Some((q, _)) = state.quote {
            match c {
                '\\' if q == '"' => k += 1,
                '\'' if q == '\'' && next == Some('\'') => k += 1,
                _ if c == q => {
                    state.quote = None;
                    last = Some(c);
                }
                _ => {}
            }
            continue;
        }
        let blank_before = at == 0 || matches!(bytes[at - 1], b' ' | b'\t');
        match c {
            ' ' | '\t' => continue,
            '#' if blank_before => break,
            _ => {}
        }
        out.content = true;
        last = Some(c);
        let in_flow = !state.open.is_empty();
        match c {
            '"' | '\'' if value_start => {
                state.quote = Some((c, pos));
                value_start = false;
            }
            '[' | '{' if value_start || in_flow => {
                state.open.push((c, pos));
                value_start = true;
            }
            ']' | '}' if in_flow => {
                let opener = if c == ']' { '[' } else { '{' };
                if let Some(&wrong) = state.open.last().filter(|(top, _)| *top != opener) {
                    state.mismatched.get_or_insert(wrong);
                    state.open.pop();
                }
                state.open.pop();
                value_start = false;
            }
            ',' if in_flow => value_start = true,
            ':' if matches!(next, None | Some(' ' | '\t'))
                || (in_flow && matches!(next, Some(',' | ']' | '}'))) =>
            {
                value_start = true
            }
            '|' | '>' if value_start && !in_flow => {
                out.block_scalar = true;
                break;
            }
            _ => value_start = false,
        }
    }
    let in_block = state.quote.is_none() && state.open.is_empty();
    let lone_dash = last == Some('-') && i == raw.len();
    out.opens = in_block && !out.block_scalar && (last == Some(':') || lone_dash);
    out
}

/// Whether `s` starts with a `key:` followed by a blank or the end of the line.
fn has_key(s: &str) -> bool {
    let first = s.chars().next();
    if matches!(first, None | Some('[' | '{' | '"' | '\'' | '#' | '|' | '>')) {
        return false;
    }
    let words = s.split('#').next().unwrap_or("");
    words.contains(": ") || words.trim_end().ends_with(':')
}

/// The first line indented with a tab, outside block scalars, quoted scalars and flow
/// collections (where YAML allows tabs); at the tab.
pub(super) fn tab_indentation(text: &str) -> Option<Pos> {
    let (lines, _) = lines(text);
    lines
        .iter()
        .filter(|l| l.content && !l.inside)
        .find_map(|l| {
            let tab = l.lead.find('\t')?;
            Some(Pos {
                line: l.no,
                col: tab + 1,
            })
        })
}

/// The likely cause of a parse error the parser reported at `error`, with a hint: the
/// first key missing the space after its `:` (`keys` are the names that can be keys),
/// line indented to no level above it, or bracket or quote never closed, at or before
/// the line after the error's.
pub(super) fn structure(text: &str, error: Pos, keys: &[&str]) -> Option<(Pos, String)> {
    let (lines, state) = lines(text);
    let mut found = Vec::new();
    found.extend(missing_space(text, &lines, keys));
    found.extend(misaligned(&lines));
    if let Some((c, pos)) = state.quote {
        found.push((
            pos,
            format!("this {c} opens a quoted string that is never closed"),
        ));
    }
    for (c, pos) in state
        .mismatched
        .into_iter()
        .chain(state.open.first().copied())
    {
        let close = if c == '[' { ']' } else { '}' };
        found.push((
            pos,
            format!("this '{c}' is never closed (expected '{close}')"),
        ));
    }
    found
        .into_iter()
        .filter(|(pos, _)| pos.line <= error.line + 1)
        .min_by_key(|(pos, _)| (pos.line, pos.col))
}

/// `listen:0.0.0.0:8080`: a known key glued to its value, which YAML reads as one string;
/// or `listen 0.0.0.0:8080`, a known key without its colon.
fn missing_space(text: &str, lines: &[Line], keys: &[&str]) -> Option<(Pos, String)> {
    let raws: Vec<&str> = text.lines().collect();
    for line in lines.iter().filter(|l| l.content && !l.inside) {
        let raw = raws[line.no - 1];
        let mut starts = vec![line.lead.len()];
        starts.extend(&line.item_keys);
        // After the leading `- `s, where the key would start.
        let mut at = line.lead.len();
        while raw[at..].starts_with("- ") {
            at += 2;
            at += raw[at..].len() - raw[at..].trim_start_matches(' ').len();
        }
        starts.push(at);
        for start in starts {
            if let Some(hint) = glued(&raw[start..], keys) {
                let col = raw[..start].chars().count() + hint.0 + 1;
                return Some((Pos { line: line.no, col }, hint.1));
            }
        }
        if let Some((offset, hint)) = colonless(&raw[at..], keys) {
            let col = raw[..at].chars().count() + offset + 1;
            return Some((Pos { line: line.no, col }, hint));
        }
    }
    None
}

/// For `key value` (or `key` alone) with a known key: where the colon belongs (a 0-based
/// char offset) and the hint.
fn colonless(s: &str, keys: &[&str]) -> Option<(usize, String)> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_len);
    if !keys.contains(&name)
        || has_key(s)
        || !matches!(rest.chars().next(), None | Some(' ' | '\t'))
    {
        return None;
    }
    let value = rest.split(" #").next().unwrap_or(rest).trim();
    let hint = match value {
        "" => format!("missing ':' after \"{name}\""),
        value => format!("missing ':' after \"{name}\" (write \"{name}: {value}\")"),
    };
    Some((name.chars().count(), hint))
}

/// For `key:value` with a known key: the colon's 0-based char offset and the hint.
pub(super) fn glued(s: &str, keys: &[&str]) -> Option<(usize, String)> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_len);
    let value = rest.strip_prefix(':')?;
    let first = value.chars().next()?;
    if first.is_whitespace() || first == ':' || !keys.contains(&name) {
        return None;
    }
    let value = value.split(" #").next().unwrap_or(value).trim_end();
    Some((
        name.chars().count(),
        format!("missing space after ':' (write \"{name}: {value}\")"),
    ))
}

/// Whether an indentation level holds a mapping's keys or a list's `- ` items.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Keys,
    Items,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Keys => "keys",
            Kind::Items => "items",
        }
    }
}

#[derive(Clone, Copy)]
struct Level {
    indent: usize,
    kind: Kind,
    /// A list written at its key's own indentation (`key:` then `- a`), which a key ends.
    compact: bool,
}

/// A line indented less than the block it follows but more than that block's parent, so
/// it belongs to neither; a key indented under a line that has its value already; or a
/// `- ` item among keys (or a key among items), which is where a list item lands when it
/// loses its indentation.
fn misaligned(lines: &[Line]) -> Option<(Pos, String)> {
    let mut levels: Vec<Level> = Vec::new();
    let mut opens = false;
    for line in lines.iter().filter(|l| l.content && !l.inside) {
        let indent = line.lead.len();
        let kind = if line.dash { Kind::Items } else { Kind::Keys };
        let mut deeper = None;
        while let Some(&top) = levels.last().filter(|l| l.indent > indent) {
            deeper = Some(top);
            levels.pop();
        }
        if kind == Kind::Keys
            && levels
                .last()
                .is_some_and(|l| l.indent == indent && l.compact)
        {
            levels.pop();
        }
        let parent = levels.last().copied();
        let pos = Pos {
            line: line.no,
            col: indent + 1,
        };
        let misplaced = |deeper: Level, parent: Option<Level>| {
            let parent = match parent {
                Some(p) if p.indent != indent => format!(" and their parent by {}", p.indent),
                _ => String::new(),
            };
            format!(
                "indented by {}, but the {} above are indented by {}{parent}: align it with its siblings",
                spaces(indent),
                deeper.kind.plural(),
                deeper.indent
            )
        };
        match (parent, deeper) {
            (Some(top), _) if top.indent == indent && top.kind == kind => {}
            (Some(top), _) if top.indent == indent && opens && kind == Kind::Items => {
                levels.push(Level {
                    indent,
                    kind,
                    compact: true,
                });
            }
            (Some(top), Some(deeper)) if top.indent == indent => {
                return Some((pos, misplaced(deeper, None)));
            }
            (Some(top), None) if top.indent == indent => {
                let message = match kind {
                    Kind::Items => "a list item among the keys of a mapping: indent it under the key it belongs to",
                    Kind::Keys => "a key among the items of a list: indent it under its item, or start it with '- '",
                };
                return Some((pos, message.to_string()));
            }
            (parent, Some(deeper)) => return Some((pos, misplaced(deeper, parent))),
            // A first line, or the value of the `key:` above.
            (parent, None) if opens || parent.is_none() => levels.push(Level {
                indent,
                kind,
                compact: false,
            }),
            // Deeper than a line with a value: a continued plain scalar, unless it holds a
            // `key: `, which no scalar can.
            (_, None) if line.key => {
                let message = format!(
                    "indented by {}, deeper than the line above, which has its value already: align it with its siblings",
                    spaces(indent)
                );
                return Some((pos, message));
            }
            (_, None) => {}
        }
        levels.extend(line.item_keys.iter().map(|&indent| Level {
            indent,
            kind: Kind::Keys,
            compact: false,
        }));
        opens = line.opens;
    }
    None
}

fn spaces(n: usize) -> String {
    match n {
        1 => "1 space".to_string(),
        n => format!("{n} spaces"),
    }
}

/// The known key an unknown one was probably meant to be: the nearest by edit distance
/// (at most 1 for words of up to 4 letters, else 2, and at most half the word; ignoring
/// case and `-` for `_`), or else the first that one of the two begins.
pub(super) fn closest(
    word: &str,
    known: impl IntoIterator<Item = &'static str>,
) -> Option<&'static str> {
    let w = word.to_ascii_lowercase().replace('-', "_");
    let limit = if w.chars().count() <= 4 { 1 } else { 2 };
    let mut nearest: Option<(usize, &'static str)> = None;
    let mut prefixed = None;
    for k in known {
        let d = distance(&w, k);
        // Replacing half a short word is not a typo (`b` is not `a` misspelt).
        let alike = d <= limit && 2 * d <= w.chars().count();
        if alike && nearest.is_none_or(|(best, _)| d < best) {
            nearest = Some((d, k));
        }
        let begins = k.starts_with(w.as_str()) || w.starts_with(k);
        if prefixed.is_none() && w.len() >= 3 && k.len() >= 3 && begins {
            prefixed = Some(k);
        }
    }
    nearest.map(|(_, k)| k).or(prefixed)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["listen", "upstreams", "routes", "path", "upstream", "auth"];

    #[test]
    fn the_closest_key_is_found_by_distance_case_or_prefix() {
        let known = || KEYS.iter().copied();
        assert_eq!(
            closest("upstream", ["upstreams", "routes"]),
            Some("upstreams")
        );
        assert_eq!(closest("rotues", known()), Some("routes"));
        assert_eq!(closest("Listen", known()), Some("listen"));
        assert_eq!(closest("listen_addr", known()), Some("listen"));
        assert_eq!(closest("pth", known()), Some("path"));
        assert_eq!(closest("tls", known()), None);
        assert_eq!(closest("xyz", known()), None);
    }

    #[test]
    fn tabs_count_only_in_the_indentation_of_block_lines() {
        assert_eq!(
            tab_indentation("a:\n\tb: 1\n"),
            Some(Pos { line: 2, col: 1 })
        );
        assert_eq!(
            tab_indentation("a:\n  \tb: 1\n"),
            Some(Pos { line: 2, col: 3 })
        );
        for fine in [
            "a: |\n  x\n  \ty\n",
            "a: [1,\n\t2]\n",
            "a: \"x\n\ty\"\n",
            "a: 1\n\t# note\n\t\n",
            "a:\tb\n",
        ] {
            assert_eq!(tab_indentation(fine), None, "{fine:?}");
        }
    }

    #[test]
    fn a_glued_key_a_misaligned_line_and_an_open_bracket_are_each_found() {
        let at = |line| Pos { line, col: 1 };
        assert_eq!(
            structure("listen:0.0.0.0:8080\nauth: x\n", at(2), KEYS),
            Some((
                Pos { line: 1, col: 7 },
                "missing space after ':' (write \"listen: 0.0.0.0:8080\")".to_string()
            ))
        );
        assert_eq!(
            structure("routes:\n  - path:/a\n", at(3), KEYS).map(|(p, _)| p),
            Some(Pos { line: 2, col: 9 })
        );
        assert_eq!(
            structure("auth:\n  a: 1\n b: 2\n", at(3), KEYS),
            Some((
                Pos { line: 3, col: 2 },
                "indented by 1 space, but the keys above are indented by 2 and their parent by 0: align it with its siblings".to_string()
            ))
        );
        assert_eq!(
            structure("a: [1, {b: 2}\nc: 3\n", at(3), KEYS),
            Some((
                Pos { line: 1, col: 4 },
                "this '[' is never closed (expected ']')".to_string()
            ))
        );
        assert_eq!(
            structure("routes:\n  - a: 1\n- b: 2\nx: 1\n", at(3), KEYS),
            Some((
                Pos { line: 3, col: 1 },
                "indented by 0 spaces, but the items above are indented by 2: align it with its siblings".to_string()
            ))
        );
        assert_eq!(
            structure("a: 1\n- b\n", at(2), KEYS).map(|(_, m)| m),
            Some(
                "a list item among the keys of a mapping: indent it under the key it belongs to"
                    .to_string()
            )
        );
        // Valid shapes find nothing: compact and nested lists, block scalars, flow
        // collections over several lines, plain scalars holding brackets and quotes.
        let valid = "routes:\n- path: /a\n  roles: [x]\n-\n  path: /b\nr:\n  - - 1\n    - 2\nt: |\n  any: thing\n\n  more\nf: { a: 1,\n  b: 2 }\np: it's /a/{b\nq: localhost:3000\n";
        assert_eq!(structure(valid, at(99), KEYS), None);
    }
}
