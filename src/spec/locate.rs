//! A position map of a YAML document: for every node, where its key and value are.
//!
//! Paths are written the way `serde_yaml` writes them in error messages:
//! `steps[3].wait.until` (the root is `.`), so a serde error's path can be looked
//! up directly. Built from `yaml-rust2` parser events, which carry line/column
//! markers; also reports duplicate keys, which serde either reports at (1,1) or
//! (for maps) silently accepts.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::limits::MAX_YAML_DEPTH;

/// A 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl Pos {
    /// The start of a file.
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(m: Marker) -> Pos {
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `value`
    Plain,
    /// `'value'`
    SingleQuoted,
    /// `"value"`
    DoubleQuoted,
    /// `|` or `>` blocks.
    Block,
}

#[derive(Clone, Debug)]
struct Entry {
    key: Option<Pos>,
    value: Pos,
    scalar: Option<(String, Style)>,
}

/// A key that appears twice in one mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// Path of the mapping holding it.
    pub parent: String,
    /// The key.
    pub key: String,
    /// Where it appears again.
    pub pos: Pos,
    /// Where it first appeared.
    pub first: Pos,
}

/// Positions of every node of a YAML document, by path.
#[derive(Clone, Debug, Default)]
pub struct PosMap {
    entries: HashMap<String, Entry>,
    lines: Vec<String>,
    /// Keys repeated within one mapping.
    pub duplicates: Vec<Duplicate>,
    /// Top-level keys, in order.
    pub top_keys: Vec<String>,
}

/// Join a mapping path and a key the way serde_yaml prints paths.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent == "." || parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Join a sequence path and an index.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    Map {
        path: String,
        /// The current key and where it is, once read.
        key: Option<(String, Pos)>,
        /// Keys seen in this mapping.
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

struct Builder {
    map: PosMap,
    stack: Vec<Frame>,
    /// Depth of a complex key being skipped.
    skipping: usize,
    /// Documents started so far.
    documents: usize,
    /// The first reason to refuse the text; later events are ignored.
    refused: Option<(Pos, String)>,
}

impl Builder {
    /// The path of a node starting now, or `None` if the node is a mapping key.
    fn begin_node(&mut self, pos: Pos, scalar: Option<(&str, Style)>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(".".to_string()),
            Some(Frame::Seq { path, next }) => {
                let p = join_index(path, *next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, seen }) => match key.take() {
                Some((k, kpos)) => {
                    let p = join_key(path, &k);
                    self.map.entries.entry(p.clone()).or_insert(Entry {
                        key: Some(kpos),
                        value: pos,
                        scalar: None,
                    });
                    Some(p)
                }
                None => {
                    // Block mappings are marked at their first `:`; point at the first key.
                    if let Some(e) = self.map.entries.get_mut(path.as_str()) {
                        if pos < e.value {
                            e.value = pos;
                        }
                    }
                    if let Some((text, _)) = scalar {
                        if let Some(first) = seen.get(text) {
                            self.map.duplicates.push(Duplicate {
                                parent: path.clone(),
                                key: text.to_string(),
                                pos,
                                first: *first,
                            });
                        } else {
                            seen.insert(text.to_string(), pos);
                        }
                        if path == "." {
                            self.map.top_keys.push(text.to_string());
                        }
                        *key = Some((text.to_string(), pos));
                    }
                    None
                }
            },
        }
    }

    /// A value node at `path` ended: the parent mapping now expects a key again.
    fn end_value(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        if self.refused.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.refused = Some((
                        pos,
                        "a second YAML document (after `---`): a spec file holds one".into(),
                    ));
                    return;
                }
            }
            // The nesting serde sees is bounded here, before serde parses.
            Event::MappingStart(..) | Event::SequenceStart(..)
                if self.stack.len() + self.skipping >= MAX_YAML_DEPTH =>
            {
                self.refused = Some((
                    pos,
                    format!("nested more than {MAX_YAML_DEPTH} levels deep"),
                ));
                return;
            }
            _ => {}
        }
        if self.skipping > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skipping += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skipping -= 1;
                    if self.skipping == 0 {
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some(("?".to_string(), pos));
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => {
                let style = match style {
                    TScalarStyle::SingleQuoted => Style::SingleQuoted,
                    TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
                    _ => Style::Plain,
                };
                if let Some(path) = self.begin_node(pos, Some((&text, style))) {
                    let e = self.map.entries.entry(path).or_insert(Entry {
                        key: None,
                        value: pos,
                        scalar: None,
                    });
                    e.scalar = Some((text, style));
                    self.end_value();
                }
            }
            Event::Alias(_) => {
                let path = self.begin_node(pos, Some(("*", Style::Plain)));
                if path.is_some() {
                    self.end_value();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.begin_node(pos, None) {
                    Some(path) => {
                        self.map.entries.entry(path.clone()).or_insert(Entry {
                            key: None,
                            value: pos,
                            scalar: None,
                        });
                        self.stack.push(if is_map {
                            Frame::Map {
                                path,
                                key: None,
                                seen: HashMap::new(),
                            }
                        } else {
                            Frame::Seq { path, next: 0 }
                        });
                    }
                    None => {
                        // A mapping or list used as a key: skip it.
                        self.skipping = 1;
                    }
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_value();
            }
            _ => {}
        }
    }
}

impl PosMap {
    /// Build the map of `text`. A YAML syntax error, nesting deeper than
    /// [`MAX_YAML_DEPTH`] or a second document yields its position and message.
    /// `text` must have been through [`super::source::yaml_text`].
    pub fn build(text: &str) -> Result<PosMap, (Pos, String)> {
        let mut b = Builder {
            map: PosMap {
                lines: text.lines().map(str::to_string).collect(),
                ..PosMap::default()
            },
            stack: Vec::new(),
            skipping: 0,
            documents: 0,
            refused: None,
        };
        let mut parser = Parser::new_from_str(text);
        // Every document is read: serde would parse a second one in full
        // just to refuse it.
        let parsed = parser.load(&mut b, true);
        if let Some(r) = b.refused {
            return Err(r);
        }
        parsed.map_err(|e| (Pos::from_marker(*e.marker()), e.info().to_string()))?;
        Ok(b.map)
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.entries.get(path).map(|e| e.value)
    }

    /// Where the key of the value at `path` is (none for list items and the root).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.entries.get(path).and_then(|e| e.key)
    }

    /// Whether the document has a node at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// The scalar text at `path`, if it is a scalar.
    pub fn scalar(&self, path: &str) -> Option<&str> {
        self.entries
            .get(path)
            .and_then(|e| e.scalar.as_ref())
            .map(|(s, _)| s.as_str())
    }

    /// How the scalar at `path` was written.
    pub fn style(&self, path: &str) -> Option<Style> {
        self.entries
            .get(path)
            .and_then(|e| e.scalar.as_ref())
            .map(|(_, s)| *s)
    }

    /// The value position of `path`, or of its nearest ancestor present, or 1:1.
    pub fn at(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.value(p) {
                return pos;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.value(".").unwrap_or(Pos::START),
            }
        }
    }

    /// The key position of `path` if it has one, else as [`PosMap::at`].
    pub fn key_at(&self, path: &str) -> Pos {
        self.key(path).unwrap_or_else(|| self.at(path))
    }

    /// The position of byte `offset` inside the scalar at `path`, when the scalar
    /// is written on one line exactly as its value (plain, or quoted without
    /// escapes); otherwise the scalar's start.
    pub fn at_offset(&self, path: &str, offset: usize) -> Pos {
        let Some(entry) = self.entries.get(path) else {
            return self.at(path);
        };
        let Some((text, style)) = &entry.scalar else {
            return entry.value;
        };
        let skip = match style {
            Style::Plain => 0,
            Style::SingleQuoted | Style::DoubleQuoted => 1,
            Style::Block => return entry.value,
        };
        let Some(line) = self.lines.get(entry.value.line - 1) else {
            return entry.value;
        };
        let rest: String = line.chars().skip(entry.value.col - 1 + skip).collect();
        if !rest.starts_with(text.as_str()) || offset > text.len() || !text.is_char_boundary(offset)
        {
            return entry.value;
        }
        Pos {
            line: entry.value.line,
            col: entry.value.col + skip + text[..offset].chars().count(),
        }
    }

    /// Scalars at or below `path`, in document order, with their paths.
    pub fn scalars_under(&self, path: &str) -> Vec<(String, &str)> {
        let mut v: Vec<(Pos, String, &str)> = self
            .entries
            .iter()
            .filter(|(p, _)| is_under(p, path))
            .filter_map(|(p, e)| Some((e.value, p.clone(), e.scalar.as_ref()?.0.as_str())))
            .collect();
        v.sort();
        v.into_iter().map(|(_, p, s)| (p, s)).collect()
    }

    /// Paths of keys named `key` anywhere in the document, in document order.
    pub fn find_key(&self, key: &str) -> Vec<(String, Pos)> {
        let mut v: Vec<(Pos, String)> = self
            .entries
            .iter()
            .filter(|(p, _)| p.as_str() == key || p.ends_with(&format!(".{key}")))
            .filter_map(|(p, e)| Some((e.key?, p.clone())))
            .collect();
        v.sort();
        v.into_iter().map(|(pos, p)| (p, pos)).collect()
    }

    /// Keys of the mapping at `path`, with their key positions (unordered).
    pub fn children(&self, path: &str) -> Vec<(String, Pos)> {
        let prefix = if path == "." {
            String::new()
        } else {
            format!("{path}.")
        };
        self.entries
            .iter()
            .filter_map(|(p, e)| {
                let rest = p.strip_prefix(&prefix)?;
                if rest.contains('.') || rest.contains('[') || p == "." {
                    return None;
                }
                Some((rest.to_string(), e.key?))
            })
            .collect()
    }
}

/// Whether `p` is `path` or below it.
pub fn is_under(p: &str, path: &str) -> bool {
    if path == "." || p == path {
        return true;
    }
    p.strip_prefix(path)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The parent of a serde_yaml-style path (`a.b[2]` → `a.b`, `a.b` → `a`, `a` → `.`).
pub fn parent_path(path: &str) -> Option<&str> {
    if path == "." || path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']);
    match cut {
        Some(0) | None => Some("."),
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: demo
inputs:
  user: {type: upn}
steps:
  - id: one
    when: \"inputs.user != null\"
    wait:
      until: obs.line_uri == null
  - id: two
    args:
      note: |
        multi
        line
dup: 1
dup: 2
";

    fn map() -> PosMap {
        PosMap::build(DOC).unwrap_or_else(|(p, m)| panic!("{p:?}: {m}"))
    }

    #[test]
    fn values_and_keys() {
        let m = map();
        assert_eq!(m.value("name"), Some(Pos { line: 1, col: 7 }));
        assert_eq!(m.key("name"), Some(Pos { line: 1, col: 1 }));
        assert_eq!(m.value("inputs.user.type"), Some(Pos { line: 3, col: 16 }));
        assert_eq!(m.value("steps[0]"), Some(Pos { line: 5, col: 5 }));
        assert_eq!(m.value("steps[0].id"), Some(Pos { line: 5, col: 9 }));
        assert_eq!(m.key("steps[1].id"), Some(Pos { line: 9, col: 5 }));
        assert_eq!(
            m.scalar("steps[0].wait.until"),
            Some("obs.line_uri == null")
        );
        assert_eq!(m.top_keys, vec!["name", "inputs", "steps", "dup", "dup"]);
        assert_eq!(m.at("steps[0].wait.nope.deeper"), Pos { line: 8, col: 7 });
        assert_eq!(m.at("nothing"), Pos::START);
    }

    #[test]
    fn offsets_inside_scalars() {
        let m = map();
        // plain: `obs.line_uri` starts at col 14; `==` at offset 13
        assert_eq!(
            m.at_offset("steps[0].wait.until", 13),
            Pos { line: 8, col: 27 }
        );
        // double-quoted: skip the quote
        assert_eq!(m.at_offset("steps[0].when", 0), Pos { line: 6, col: 12 });
        // block scalars fall back to the value start
        let v = m.value("steps[1].args.note");
        assert_eq!(Some(m.at_offset("steps[1].args.note", 3)), v);
    }

    #[test]
    fn duplicates_and_children() {
        let m = map();
        assert_eq!(m.duplicates.len(), 1);
        assert_eq!(m.duplicates[0].key, "dup");
        assert_eq!(m.duplicates[0].pos, Pos { line: 15, col: 1 });
        assert_eq!(m.duplicates[0].first, Pos { line: 14, col: 1 });
        let mut c = m.children("steps[0]");
        c.sort();
        let names: Vec<&str> = c.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["id", "wait", "when"]);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = PosMap::build("a: [1, 2\nb: c\n").err();
        assert!(err.is_some());
        assert!(PosMap::build("? [a, b]\n: 1\nc: 2\n").is_ok());
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), Some("."));
        assert_eq!(parent_path("."), None);
    }
}
