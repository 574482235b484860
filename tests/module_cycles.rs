//! The layout's rules, checked from the source: no import cycle among the
//! files of `src/cli/`, `src/app/`, `src/daemon/`, `src/client/` and
//! `src/api.rs`; the CLI stays small and does not name the simulator or the
//! sled store.
//!
//! A file depends on another when its code (tests excluded) names a path into
//! it: `use crate::…`, `use super::…`, `use self::…`, `use child::…`, or the
//! same paths written inline. A path goes to the deepest module file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directories and files whose files form the graph.
const ROOTS: [&str; 5] = [
    "src/cli",
    "src/app",
    "src/daemon",
    "src/client",
    "src/api.rs",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `ROOTS`, with its module path (`["app", "runs"]`).
fn files() -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = root().join("src");
    let mut paths = Vec::new();
    for r in ROOTS {
        let p = root().join(r);
        if p.is_dir() {
            walk(&p, &mut paths);
        } else {
            paths.push(p);
        }
    }
    let mut out = BTreeMap::new();
    for p in paths {
        let rel = p.strip_prefix(&src).unwrap_or(&p).with_extension("");
        let mut module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|l| l == "mod") {
            module.pop();
        }
        out.insert(module, p);
    }
    out
}

/// The file's code before its test module, without comments, string and
/// character literals.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char(prev(&b, i)) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1b}'); a lifetime is kept.
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    out.push_str("' '");
                    i = k + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(b: &[char], i: usize) -> char {
    if i == 0 {
        ' '
    } else {
        b[i - 1]
    }
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expand a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    // `a::b as c` keeps `a::b`.
    let spaced = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree: String = spaced
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = Vec::new();
    match tree.find('{') {
        None => {
            let t = tree.split('@').next().unwrap_or_default();
            let segs: Vec<String> = t
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if !segs.is_empty() {
                out.push(segs);
            }
        }
        Some(open) => {
            let prefix: Vec<String> = tree[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for part in split_top(inner) {
                for mut rest in expand(part) {
                    if rest == ["self"] {
                        rest.clear();
                    }
                    let mut p = prefix.clone();
                    p.append(&mut rest);
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The child modules a file declares (`mod name;`).
fn children(code: &str) -> BTreeSet<String> {
    code.split(';')
        .filter_map(|stmt| {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mod")?;
            (at + 2 == words.len()).then(|| words[at + 1].to_string())
        })
        .collect()
}

/// Paths a file's code names: its `use` trees, and inline `crate::…`,
/// `super::…` and `child::…` paths.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let kids = children(code);
    let mut out = Vec::new();
    // `use` statements, which may span lines.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last().unwrap_or(' ');
        let after = &rest[i + 4..];
        if ident_char(before) {
            rest = after;
            continue;
        }
        let end = after.find(';').unwrap_or(after.len());
        out.extend(expand(&after[..end]));
        rest = &after[end..];
    }
    // Inline paths.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = |w: &str| {
            code_at(&chars, i, w) && !ident_char(prev(&chars, i)) && prev(&chars, i) != ':'
        };
        let child = kids.iter().any(|k| starts(&format!("{k}::")));
        if starts("crate::") || starts("super::") || child {
            let mut j = i;
            while j < chars.len() && (ident_char(chars[j]) || chars[j] == ':') {
                j += 1;
            }
            let path: String = chars[i..j].iter().collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn code_at(chars: &[char], i: usize, w: &str) -> bool {
    w.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// The module a path names from inside `module`, as an absolute module path.
fn resolve(module: &[String], is_dir_module: bool, path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    // Where `super` and `self` start from: a `foo.rs` file's module is `foo`.
    let here: Vec<String> = module.to_vec();
    let _ = is_dir_module;
    let mut abs = match first.as_str() {
        "crate" => path[1..].to_vec(),
        "self" => {
            let mut v = here.clone();
            v.extend_from_slice(&path[1..]);
            v
        }
        "super" => {
            let mut v = here.clone();
            let mut k = 0;
            while path.get(k).is_some_and(|s| s == "super") {
                v.pop()?;
                k += 1;
            }
            v.extend_from_slice(&path[k..]);
            v
        }
        // A child module (`use error::…` in a mod.rs).
        _ => {
            let mut v = here.clone();
            v.extend_from_slice(path);
            v
        }
    };
    abs.retain(|s| s != "self");
    Some(abs)
}

type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

fn graph() -> (Graph, BTreeMap<Vec<String>, PathBuf>) {
    let files = files();
    let mut g: Graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let is_dir = path.file_name().is_some_and(|n| n == "mod.rs");
        let mut deps = BTreeSet::new();
        for p in named_paths(&code(&text)) {
            let Some(abs) = resolve(module, is_dir, &p) else {
                continue;
            };
            // The deepest module file the path goes into.
            let target = (1..=abs.len())
                .rev()
                .map(|n| abs[..n].to_vec())
                .find(|m| files.contains_key(m));
            if let Some(t) = target {
                if &t != module {
                    deps.insert(t);
                }
            }
        }
        g.insert(module.clone(), deps);
    }
    (g, files)
}

/// A cycle in `g`, as the files along it, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        n: &Vec<String>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match marks.get(m).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, m, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, n, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_application_daemon_client_and_cli_files_import_no_cycle() {
    let (g, files) = graph();
    assert!(
        g.len() > 20,
        "the graph has the files: {:?}",
        files.values().collect::<Vec<_>>()
    );
    // The parser sees the edges it should (a few known ones).
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    for (from, to) in [
        ("cli::runs", "client"),
        ("cli::runs", "app::driver"),
        ("app::driver", "app::context"),
        ("daemon::api::operate", "daemon::drivers"),
        ("daemon", "daemon::state"),
        ("client::local", "client::service"),
    ] {
        assert!(
            g.get(&m(from)).is_some_and(|d| d.contains(&m(to))),
            "{from} → {to} not seen: {:?}",
            g.get(&m(from))
        );
    }
    if let Some(cycle) = find_cycle(&g) {
        let shown: Vec<String> = cycle
            .iter()
            .map(|m| {
                files
                    .get(m)
                    .and_then(|p| p.strip_prefix(root()).ok())
                    .map_or_else(|| m.join("::"), |p| p.display().to_string())
            })
            .collect();
        panic!("import cycle: {}", shown.join(" → "));
    }
}

#[test]
fn the_checker_finds_a_cycle_through_super_child_and_crate_paths() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    let here = m("app::runs");
    assert_eq!(
        resolve(&here, false, &m("super::context::RunContext")),
        Some(m("app::context::RunContext"))
    );
    assert_eq!(
        resolve(&m("app"), true, &m("error::Error")),
        Some(m("app::error::Error"))
    );
    assert_eq!(
        expand("crate::app::{runs::{load_run, self}, Error}"),
        vec![
            m("crate::app::runs::load_run"),
            m("crate::app::runs"),
            m("crate::app::Error")
        ]
    );
    let text = "use super::b::X;\n// use super::c::Y;\nfn f() { let s = \"super::c\"; crate::app::d::g(); }\n#[cfg(test)]\nmod tests { use super::e::Z; }\n";
    let named = named_paths(&code(text));
    assert!(named.contains(&m("super::b::X")), "{named:?}");
    assert!(named.contains(&m("crate::app::d::g")), "{named:?}");
    assert!(
        !named
            .iter()
            .any(|p| p.contains(&"c".to_string()) || p.contains(&"e".to_string())),
        "{named:?}"
    );
    let mut g = Graph::new();
    g.insert(m("a"), [m("b")].into());
    g.insert(m("b"), [m("c")].into());
    g.insert(m("c"), [m("a")].into());
    assert_eq!(find_cycle(&g), Some(vec![m("a"), m("b"), m("c"), m("a")]));
    g.insert(m("c"), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn the_cli_is_small_and_names_neither_the_simulator_nor_the_sled_store() {
    let dir = root().join("src/cli");
    let mut total = 0;
    for e in std::fs::read_dir(&dir).expect("src/cli").flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        total += text.lines().count();
        for name in ["SimTenant", "SledStore"] {
            assert!(!text.contains(name), "{} names {name}", p.display());
        }
    }
    assert!(total < 2500, "src/cli/*.rs has {total} lines");
}

/// `src/backend/` imports nothing from `spec` (so a backend is added without
/// touching the run-file loader, and the loader imports backends, not the
/// other way round). Test files are exempt: they build workflows.
#[test]
fn backends_import_nothing_from_the_spec_module() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/backend").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src/backend"), &mut files);
    assert!(files.len() > 10, "found {} backend files", files.len());
    for p in files {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let code = code(&text);
        assert!(
            !code.contains("crate::spec"),
            "{} imports from crate::spec",
            p.display()
        );
    }
}
