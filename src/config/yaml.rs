//! A YAML node tree that remembers where every node was written, and typed readers over it
//! that record each problem and carry on, so one load reports every mistake in the file.

mod hints;

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::schema::Section;
use super::{ConfigError, Origin};

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One YAML value and the position it starts at.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    List(Vec<Node>),
    /// Entries in file order; duplicates are kept so the readers can report them.
    Map(Vec<(Node, Node)>),
}

/// Parses one YAML document; a syntax error is returned with its position. An empty file is
/// an empty mapping, so it is reported as missing the required keys.
///
/// A tab in the indentation is refused before parsing, at the tab. When the parser fails,
/// the text is read again for the likely cause (a `key:value` missing its space for one of
/// `keys`, a misaligned line, a bracket never closed), which the parser often notices only
/// on a later line; its own message is kept when none is found.
pub(crate) fn parse(text: &str, keys: &[&str]) -> Result<Node, (Pos, String)> {
    if let Some(pos) = hints::tab_indentation(text) {
        return Err((pos, hints::TABS.to_string()));
    }
    let mut tree = TreeBuilder::default();
    if let Err(e) = Parser::new_from_str(text).load(&mut tree, true) {
        let at = Pos::from_marker(*e.marker());
        return Err(hints::structure(text, at, keys).unwrap_or((at, e.info().to_string())));
    }
    if let Some(problem) = tree.problem {
        return Err(problem);
    }
    Ok(tree.root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        value: Value::Map(Vec::new()),
    }))
}

enum Frame {
    List {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    problem: Option<(Pos, String)>,
}

impl TreeBuilder {
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
        }
    }

    fn fail(&mut self, pos: Pos, message: &str) {
        self.problem.get_or_insert((pos, message.to_string()));
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(pos, "only one YAML document is allowed");
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.complete(Node { pos, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::List {
                pos,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                pos,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::List { pos, anchor, items }) => self.complete(
                    Node {
                        pos,
                        value: Value::List(items),
                    },
                    anchor,
                ),
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => {
                    // A block mapping's start mark lies just after its first key; the key is
                    // where a reader expects "the mapping" to be.
                    let pos = entries.first().map_or(pos, |(k, _)| pos.min(k.pos));
                    self.complete(
                        Node {
                            pos,
                            value: Value::Map(entries),
                        },
                        anchor,
                    )
                }
                None => self.fail(pos, "unbalanced YAML events"),
            },
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = Node {
                        pos,
                        value: node.value.clone(),
                    };
                    self.complete(node, 0);
                }
                None => self.fail(pos, "alias refers to an anchor that is not complete yet"),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Collects errors and warnings while the readers walk the tree.
pub(crate) struct Problems {
    file: String,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl Problems {
    pub fn new(file: String) -> Problems {
        Problems {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn make(&self, at: &Spot, message: String) -> ConfigError {
        let origin = match at {
            Spot::Yaml(pos, path) => Origin::Yaml {
                line: pos.line,
                col: pos.col,
                path: path.clone(),
            },
            Spot::Env(var) => Origin::Env(var.to_string()),
        };
        ConfigError {
            file: self.file.clone(),
            origin,
            message,
        }
    }

    pub fn error(&mut self, at: &Spot, message: impl Into<String>) {
        let e = self.make(at, message.into());
        self.errors.push(e);
    }

    pub fn warn(&mut self, at: &Spot, message: impl Into<String>) {
        let w = self.make(at, message.into());
        self.warnings.push(w);
    }
}

/// Where a value came from, for messages: a place in the file or an environment variable.
#[derive(Debug, Clone)]
pub(crate) enum Spot {
    Yaml(Pos, String),
    Env(&'static str),
}

/// A node together with its path (`routes[3].roles[0]`), as handed to typed readers.
#[derive(Clone)]
pub(crate) struct Field<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl<'a> Field<'a> {
    pub fn root(node: &'a Node) -> Field<'a> {
        Field {
            node,
            path: String::new(),
        }
    }

    pub fn spot(&self) -> Spot {
        Spot::Yaml(self.node.pos, self.path.clone())
    }

    pub fn fail(&self, p: &mut Problems, message: impl Into<String>) {
        p.error(&self.spot(), message);
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Any scalar as text: YAML's `80` or `true` are fine where a string is wanted.
    pub fn str(&self, p: &mut Problems) -> Option<String> {
        match &self.node.value {
            Value::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.fail(p, "expected a string");
                None
            }
        }
    }

    /// A string turned into `T` by `parse`, whose error message is reported at this node.
    pub fn parsed<T>(
        &self,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.str(p)?;
        parse(&text).map_err(|e| self.fail(p, e)).ok()
    }

    pub fn bool(&self, p: &mut Problems) -> Option<bool> {
        match &self.node.value {
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => {
                    self.fail(p, "expected true or false");
                    None
                }
            },
            _ => {
                self.fail(p, "expected true or false");
                None
            }
        }
    }

    /// The items of a list, each with its `[i]` path; anything else is reported.
    pub fn list(&self, p: &mut Problems) -> Option<Vec<Field<'a>>> {
        match &self.node.value {
            Value::List(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, node)| Field {
                        node,
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect(),
            ),
            _ => {
                self.fail(p, "expected a list");
                None
            }
        }
    }

    /// A list of strings; the items that are not strings are reported and left out.
    pub fn strings(&self, p: &mut Problems) -> Option<Vec<(Field<'a>, String)>> {
        let items = self.list(p)?;
        Some(
            items
                .into_iter()
                .filter_map(|f| f.str(p).map(|s| (f, s)))
                .collect(),
        )
    }

    /// A mapping whose keys are names chosen by the user (like `upstreams`), in file order.
    /// Non-string and duplicate keys are reported and left out.
    pub fn entries(&self, p: &mut Problems) -> Option<Vec<(String, Field<'a>)>> {
        let keyed = self.keyed(p)?;
        Some(keyed.into_iter().map(|(k, _, f)| (k, f)).collect())
    }

    /// Like [`Field::entries`], with each key's own position.
    fn keyed(&self, p: &mut Problems) -> Option<Vec<(String, Pos, Field<'a>)>> {
        let Value::Map(pairs) = &self.node.value else {
            self.fail(p, "expected a mapping");
            return None;
        };
        let mut seen: Vec<(String, Pos)> = Vec::new();
        let mut out = Vec::new();
        for (key, value) in pairs {
            let Value::Scalar { text, .. } = &key.value else {
                p.error(
                    &Spot::Yaml(key.pos, self.path.clone()),
                    "expected a string key",
                );
                continue;
            };
            let path = self.child(text);
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == text) {
                let message = format!("duplicate key (first at {}:{})", first.line, first.col);
                p.error(&Spot::Yaml(key.pos, path), message);
                continue;
            }
            seen.push((text.clone(), key.pos));
            out.push((text.clone(), key.pos, Field { node: value, path }));
        }
        Some(out)
    }

    /// A mapping with the keys of `section`; unknown keys are errors so that a typo cannot
    /// silently disable a setting, each naming the known key it most likely stands for. A
    /// value that is not a mapping yields an empty, silent [`Fields`] so that its required
    /// keys are not reported a second time.
    pub fn fields(&self, p: &mut Problems, section: &'static Section) -> Fields<'a> {
        let names: Vec<&'static str> = section.names().collect();
        let silent = || Fields {
            at: None,
            path: self.path.clone(),
            found: Vec::new(),
            section: Some(section),
            misspelled: Vec::new(),
        };
        // `- path:/a` is one string to YAML, where a mapping was meant.
        if let Value::Scalar { text, plain: true } = &self.node.value {
            if let Some((_, hint)) = hints::glued(text, &names) {
                self.fail(p, hint);
                return silent();
            }
        }
        let Some(entries) = self.keyed(p) else {
            return silent();
        };
        let mut found = Vec::new();
        let mut misspelled = Vec::new();
        for (key, key_pos, field) in entries {
            if names.contains(&key.as_str()) {
                found.push((key, field));
                continue;
            }
            let (message, meant) = unknown_key(&key, &names);
            misspelled.extend(meant);
            p.error(&Spot::Yaml(key_pos, field.path), message);
        }
        Fields {
            at: Some(self.node.pos),
            path: self.path.clone(),
            found,
            section: Some(section),
            misspelled,
        }
    }
}

/// The message for a key that is not one of `names`, and the known key it stands for.
fn unknown_key(key: &str, names: &[&'static str]) -> (String, Option<&'static str>) {
    // `{ path:/a }`: in a flow mapping YAML reads the glued key and value as one key.
    if let Some((colon, hint)) = hints::glued(key, names) {
        let name = key.chars().take(colon).collect::<String>();
        return (hint, names.iter().copied().find(|n| *n == name));
    }
    let allowed = names.join(", ");
    match hints::closest(key, names.iter().copied()) {
        Some(meant) => (
            format!("unknown key; did you mean `{meant}`? (allowed: {allowed})"),
            Some(meant),
        ),
        None => (format!("unknown key (allowed: {allowed})"), None),
    }
}

/// The known keys of one mapping, read by name.
pub(crate) struct Fields<'a> {
    /// None when the value was not a mapping (already reported).
    at: Option<Pos>,
    path: String,
    found: Vec<(String, Field<'a>)>,
    /// The table the keys come from, for the key-parity test's record; `None` for a
    /// stand-in.
    #[cfg_attr(not(test), allow(dead_code))]
    section: Option<&'static Section>,
    /// Known keys that an unknown key was taken for (already reported with the hint).
    misspelled: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// A stand-in for a section that is missing or malformed; it has no keys and reports none.
    pub fn absent(path: &str) -> Fields<'a> {
        Fields {
            at: None,
            path: path.to_string(),
            found: Vec::new(),
            section: None,
            misspelled: Vec::new(),
        }
    }

    /// Whether an unknown key of this mapping was reported as a misspelling of `key`: then
    /// `key` is not missing but unreadable, and what refers to it is not checked, so that
    /// one typo gives one error.
    pub fn misspelled(&self, key: &str) -> bool {
        self.misspelled.contains(&key)
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of an optional key; `key: ~` counts as absent so defaults apply.
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        #[cfg(test)]
        reads::note(self.section, key, false);
        self.found
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, f)| f.clone())
            .filter(|f| !matches!(f.node.value, Value::Null))
    }

    /// The value of a required key; a missing one is reported at the mapping that lacks it,
    /// unless it was misspelled (reported already).
    pub fn require(&self, p: &mut Problems, key: &str) -> Option<Field<'a>> {
        #[cfg(test)]
        reads::note(self.section, key, true);
        let found = self.get(key);
        if found.is_none() && !self.misspelled(key) {
            if let Some(pos) = self.at {
                p.error(&Spot::Yaml(pos, self.key_path(key)), "missing required key");
            }
        }
        found
    }

    /// Where a key's value came from, or the mapping itself when the key is absent (the value
    /// is then a default).
    pub fn spot_of(&self, key: &str) -> Spot {
        match self.get(key) {
            Some(f) => f.spot(),
            None => Spot::Yaml(
                self.at.unwrap_or(Pos { line: 1, col: 1 }),
                self.key_path(key),
            ),
        }
    }

    /// Reads an optional key with `read`, falling back to `default` when absent or invalid
    /// (invalid values are reported, so the fallback never reaches a running gateway).
    pub fn or<T>(
        &self,
        p: &mut Problems,
        key: &str,
        default: T,
        read: impl FnOnce(&Field<'a>, &mut Problems) -> Option<T>,
    ) -> T {
        self.get(key).and_then(|f| read(&f, p)).unwrap_or(default)
    }
}

/// Which keys the readers ask each section for, so a test can hold the section tables to
/// what the loader actually reads.
#[cfg(test)]
pub(crate) mod reads {
    use std::cell::{Cell, RefCell};

    use super::Section;

    /// (section path, key, asked for as required).
    pub(crate) type Read = (&'static str, String, bool);

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static SEEN: RefCell<Vec<Read>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn note(section: Option<&'static Section>, key: &str, required: bool) {
        if let Some(s) = section.filter(|_| ON.get()) {
            SEEN.with(|seen| seen.borrow_mut().push((s.path, key.to_string(), required)));
        }
    }

    /// Starts noting what this thread's readers ask for.
    pub(crate) fn start() {
        SEEN.with(|seen| seen.borrow_mut().clear());
        ON.set(true);
    }

    /// What this thread's readers asked for since [`start`], which stops noting.
    pub(crate) fn take() -> Vec<Read> {
        ON.set(false);
        SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{key, Ty};
    use super::*;

    static AC: Section = Section {
        path: "t",
        keys: &[key("a", Ty::Text, "a"), key("c", Ty::Text, "c")],
    };
    static SLMB: Section = Section {
        path: "t",
        keys: &[
            key("s", Ty::Text, "s"),
            key("b", Ty::Bool, "b"),
            key("l", Ty::List(&Ty::Text), "l"),
            key("m", Ty::Map(&EMPTY), "m"),
        ],
    };
    static EMPTY: Section = Section {
        path: "t.m",
        keys: &[],
    };
    static AB: Section = Section {
        path: "t",
        keys: &[key("a", Ty::Text, "a"), key("b", Ty::Text, "b")],
    };

    fn parse(text: &str) -> Result<Node, (Pos, String)> {
        super::parse(text, &["a", "b"])
    }

    fn problems() -> Problems {
        Problems::new("t.yaml".to_string())
    }

    fn messages(p: &Problems) -> Vec<String> {
        p.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn positions_are_one_based_and_block_mappings_start_at_their_first_key() {
        let root = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        assert_eq!(root.pos, Pos { line: 1, col: 1 });
        let Value::Map(top) = &root.value else {
            panic!("{root:?}")
        };
        assert_eq!(top[1].1.pos, Pos { line: 3, col: 3 });
        let Value::Map(inner) = &top[1].1.value else {
            panic!()
        };
        let Value::List(items) = &inner[0].1.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 3, col: 10 });
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_likely_cause_else_where_the_scanner_stopped() {
        let (pos, message) = parse("a: 1\nb: [x\nc: 2\n").unwrap_err();
        assert_eq!((pos.line, pos.col), (2, 4));
        assert_eq!(message, "this '[' is never closed (expected ']')");
        let (pos, message) = parse("a: b: c\n").unwrap_err();
        assert_eq!((pos.line, pos.col), (1, 5));
        assert_eq!(message, "mapping values are not allowed in this context");
        let (pos, message) = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!((pos.line, pos.col, message.as_str()), (2, 1, hints::TABS));
    }

    #[test]
    fn a_second_document_is_an_error() {
        let (pos, message) = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(pos.line, 2);
        assert_eq!(message, "only one YAML document is allowed");
    }

    #[test]
    fn an_empty_file_is_an_empty_mapping() {
        assert!(matches!(parse("# nothing\n").unwrap().value, Value::Map(ref m) if m.is_empty()));
    }

    #[test]
    fn aliases_copy_the_anchored_value_at_the_alias_position() {
        let root = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        let Value::Map(top) = &root.value else {
            panic!()
        };
        assert!(matches!(&top[1].1.value, Value::List(items) if items.len() == 2));
        assert_eq!(top[1].1.pos, Pos { line: 2, col: 4 });
    }

    #[test]
    fn unknown_and_duplicate_keys_and_missing_required_keys_are_each_reported() {
        let root = parse("a: 1\nb: 2\na: 3\n").unwrap();
        let mut p = problems();
        let fields = Field::root(&root).fields(&mut p, &AC);
        assert!(fields.require(&mut p, "c").is_none());
        assert_eq!(
            messages(&p),
            [
                "t.yaml:3:1: a: duplicate key (first at 1:1)",
                "t.yaml:2:1: b: unknown key (allowed: a, c)",
                "t.yaml:1:1: c: missing required key",
            ]
        );
    }

    #[test]
    fn an_unknown_key_names_the_known_one_it_stands_for_which_is_then_not_also_missing() {
        let root = parse("aa: 1\nb: 2\n").unwrap();
        let mut p = problems();
        let fields = Field::root(&root).fields(&mut p, &AB);
        assert!(fields.require(&mut p, "a").is_none() && fields.misspelled("a"));
        assert_eq!(
            messages(&p),
            ["t.yaml:1:1: aa: unknown key; did you mean `a`? (allowed: a, b)"]
        );
    }

    #[test]
    fn a_key_glued_to_its_value_where_a_mapping_belongs_gets_the_missing_space_hint() {
        let root = parse("- a:1\n").unwrap();
        let mut p = problems();
        let items = Field::root(&root).list(&mut p).unwrap();
        assert!(items[0].fields(&mut p, &AB).require(&mut p, "a").is_none());
        assert_eq!(
            messages(&p),
            ["t.yaml:1:3: [0]: missing space after ':' (write \"a: 1\")"]
        );
    }

    #[test]
    fn wrong_types_are_reported_at_the_value() {
        let root = parse("s: [1]\nb: \"true\"\nl: x\nm: [1]\n").unwrap();
        let mut p = problems();
        let f = Field::root(&root).fields(&mut p, &SLMB);
        assert!(f.get("s").unwrap().str(&mut p).is_none());
        assert!(f.get("b").unwrap().bool(&mut p).is_none());
        assert!(f.get("l").unwrap().list(&mut p).is_none());
        f.get("m").unwrap().fields(&mut p, &EMPTY);
        assert_eq!(
            messages(&p),
            [
                "t.yaml:1:4: s: expected a string",
                "t.yaml:2:4: b: expected true or false",
                "t.yaml:3:4: l: expected a list",
                "t.yaml:4:4: m: expected a mapping",
            ]
        );
    }

    #[test]
    fn a_null_value_counts_as_absent() {
        let root = parse("a:\nb: ~\n").unwrap();
        let mut p = problems();
        let f = Field::root(&root).fields(&mut p, &AB);
        assert!(f.get("a").is_none() && f.get("b").is_none());
        assert!(p.errors.is_empty());
    }
}
