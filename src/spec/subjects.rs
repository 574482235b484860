//! Subjects of a run: an inline list in the run file or a CSV file whose header
//! names the workflow's inputs. Every problem is reported with the position of
//! the offending cell.

use std::collections::HashMap;
use std::path::Path;

use indexmap::IndexMap;

use super::diag::Diagnostic;
use super::limits::{MAX_CSV_BYTES, MAX_INPUTS, MAX_SUBJECTS, MAX_SUBJECT_PROBLEMS};
use super::locate::{join_index, join_key, PosMap};
use super::model::{InputType, Workflow};
use super::runfile::{OperatorSpec, Subject, SubjectsSpec};
use super::source::read_text;
use super::validate::check_subject_value;

/// A value the run file's `operator:` gives every subject that lacks it.
struct Fill {
    value: String,
    /// Where it is written in the run file, for messages.
    line: usize,
    col: usize,
}

/// Collects subjects and checks keys, types, required inputs and uniqueness.
struct Collector<'a> {
    wf: &'a Workflow,
    /// Input name → the value `operator:` fills it with.
    fills: IndexMap<&'static str, Fill>,
    /// The workflow needs `address_mode` and the run file has no `operator:`.
    needs_operator: bool,
    /// Some subject lacks `address_mode` and `operator:` does not give it.
    mode_missing: bool,
    /// The run file, as shown in messages.
    run_file: String,
    /// Subject key (normalized) → origin line.
    seen: HashMap<String, usize>,
    subjects: Vec<Subject>,
    out: Vec<Diagnostic>,
}

/// Where a subject's cells are, for messages.
trait Cells {
    fn file(&self) -> &str;
    fn line(&self) -> usize;
    /// Position of the value of `input`, or of the subject if absent.
    fn value_pos(&self, input: &str) -> (usize, usize);
}

impl Collector<'_> {
    /// Whether enough problems were found to stop reading subjects; says so
    /// once, at `file:line`.
    fn full(&mut self, file: &str, line: usize) -> bool {
        if self.out.len() < MAX_SUBJECT_PROBLEMS {
            return false;
        }
        self.out.push(Diagnostic::new(
            file,
            line,
            1,
            format!("stopped reading subjects here after {MAX_SUBJECT_PROBLEMS} problems"),
        ));
        true
    }

    fn add(&mut self, mut inputs: IndexMap<String, String>, cells: &dyn Cells) {
        let mut ok = true;
        // A row's own value wins over the run file's `operator:`.
        let mut filled = Vec::new();
        for (name, fill) in &self.fills {
            if !inputs.contains_key(*name) {
                inputs.insert(name.to_string(), fill.value.clone());
                filled.push(*name);
            }
        }
        for (name, spec) in &self.wf.inputs {
            let (file, (l, c)) = match self.fills.get(name.as_str()) {
                Some(f) if filled.contains(&name.as_str()) => {
                    (self.run_file.as_str(), (f.line, f.col))
                }
                _ => (cells.file(), cells.value_pos(name)),
            };
            match inputs.get(name) {
                None if !spec.optional => {
                    if self.needs_operator && name == OperatorSpec::MODE_INPUT {
                        // Said once for the run, not once per subject.
                        self.mode_missing = true;
                    } else {
                        self.out.push(Diagnostic::new(
                            file,
                            l,
                            c,
                            format!("missing value for required input `{name}`"),
                        ));
                    }
                    ok = false;
                }
                None => {}
                Some(v) => {
                    if let Err(msg) = check_subject_value(spec, name, v) {
                        self.out.push(Diagnostic::new(file, l, c, msg));
                        ok = false;
                    }
                }
            }
        }
        let subject = &self.wf.subject;
        if let Some(key) = inputs.get(subject) {
            let norm = match self.wf.inputs.get(subject).map(|i| i.ty) {
                Some(InputType::Upn) => key.to_lowercase(),
                _ => key.clone(),
            };
            if let Some(first) = self.seen.get(&norm) {
                let (l, c) = cells.value_pos(subject);
                self.out.push(Diagnostic::new(
                    cells.file(),
                    l,
                    c,
                    format!("duplicate subject `{key}` (first on line {first})"),
                ));
                ok = false;
            } else {
                self.seen.insert(norm, cells.line());
            }
        }
        if ok {
            self.subjects.push(Subject {
                inputs,
                origin: format!("{}:{}", cells.file(), cells.line()),
            });
        }
    }
}

struct InlineCells<'a> {
    file: &'a str,
    map: &'a PosMap,
    path: String,
}

impl Cells for InlineCells<'_> {
    fn file(&self) -> &str {
        self.file
    }
    fn line(&self) -> usize {
        self.map.at(&self.path).line
    }
    fn value_pos(&self, input: &str) -> (usize, usize) {
        let p = self.map.at(&join_key(&self.path, input));
        (p.line, p.col)
    }
}

struct CsvCells<'a> {
    file: &'a str,
    line: usize,
    /// Input name → 1-based column of its cell.
    cols: HashMap<&'a str, usize>,
}

impl Cells for CsvCells<'_> {
    fn file(&self) -> &str {
        self.file
    }
    fn line(&self) -> usize {
        self.line
    }
    fn value_pos(&self, input: &str) -> (usize, usize) {
        (self.line, self.cols.get(input).copied().unwrap_or(1))
    }
}

/// Load and check the subjects of a run file. `run_file` is the run file as
/// shown in messages, `run_dir` the directory CSV paths are relative to;
/// `operator` (the run file's `operator:`) fills the inputs `address_mode` and
/// `operator` of subjects that do not give them.
pub fn load_subjects(
    spec: &SubjectsSpec,
    wf: &Workflow,
    operator: Option<&OperatorSpec>,
    run_map: &PosMap,
    run_file: &str,
    run_dir: &Path,
) -> (Vec<Subject>, Vec<Diagnostic>) {
    let mut fills = IndexMap::new();
    if let Some(op) = operator {
        let mut fill = |input: &'static str, value: &str, path: &str| {
            if wf.inputs.contains_key(input) {
                let p = run_map.at(path);
                fills.insert(
                    input,
                    Fill {
                        value: value.to_string(),
                        line: p.line,
                        col: p.col,
                    },
                );
            }
        };
        fill(
            OperatorSpec::MODE_INPUT,
            op.address_mode.as_str(),
            "operator.address_mode",
        );
        if let Some(name) = op.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            fill(OperatorSpec::NAME_INPUT, name, "operator.name");
        }
    }
    let needs_operator = operator.is_none()
        && wf
            .inputs
            .get(OperatorSpec::MODE_INPUT)
            .is_some_and(|i| !i.optional);
    let mut c = Collector {
        wf,
        fills,
        needs_operator,
        mode_missing: false,
        run_file: run_file.to_string(),
        seen: HashMap::new(),
        subjects: Vec::new(),
        out: Vec::new(),
    };
    match spec {
        SubjectsSpec::Inline(items) => {
            if items.len() > MAX_SUBJECTS {
                let p = run_map.at("subjects");
                c.out.push(Diagnostic::new(
                    run_file,
                    p.line,
                    p.col,
                    format!(
                        "{} subjects; a run takes at most {MAX_SUBJECTS} (split it into waves)",
                        items.len()
                    ),
                ));
                return (Vec::new(), c.out);
            }
            for (i, item) in items.iter().enumerate() {
                let path = join_index("subjects", i);
                if c.full(run_file, run_map.at(&path).line) {
                    break;
                }
                let mut inputs = IndexMap::new();
                for (k, v) in item {
                    if !wf.inputs.contains_key(k) {
                        let p = run_map.key_at(&join_key(&path, k));
                        c.out.push(Diagnostic::new(
                            run_file,
                            p.line,
                            p.col,
                            format!(
                                "unknown input `{k}` (the workflow's inputs: {})",
                                input_list(wf)
                            ),
                        ));
                        continue;
                    }
                    let v = v.trim();
                    if !v.is_empty() {
                        inputs.insert(k.clone(), v.to_string());
                    }
                }
                let cells = InlineCells {
                    file: run_file,
                    map: run_map,
                    path,
                };
                c.add(inputs, &cells);
            }
        }
        SubjectsSpec::Csv { csv } => {
            let full = run_dir.join(csv);
            let shown = full.display().to_string();
            match read_text(&full, MAX_CSV_BYTES, "CSV file") {
                // Not being able to read it is said at `csv:`; what is wrong
                // inside it, in it.
                Err(e) => {
                    for d in e.diagnostics {
                        if d.line == 0 {
                            let p = run_map.at("subjects.csv");
                            let msg = d.message.replace("cannot read: ", "");
                            c.out.push(Diagnostic::new(
                                run_file,
                                p.line,
                                p.col,
                                format!("cannot read CSV file {shown}: {msg}"),
                            ));
                        } else {
                            c.out.push(d);
                        }
                    }
                }
                Ok(text) => load_csv(&mut c, &text, &shown),
            }
        }
    }
    if c.mode_missing {
        let p = run_map.key_at("workflow");
        c.out.push(Diagnostic::new(
            run_file,
            p.line,
            p.col,
            format!(
                "workflow `{}` needs the operator's emergency-address mode and the run file \
                 does not declare it; portflow will not guess it. Add `operator: {{name: <operator>, \
                 address_mode: <mode>}}` with the mode the operator confirms: operator_assigns \
                 (it sets the address, you may change it), tenant_assigns (you set it) or \
                 operator_locked (it sets and locks it); or give each subject an `address_mode`",
                wf.name
            ),
        ));
    }
    if c.out.is_empty() && c.subjects.is_empty() {
        let p = run_map.at("subjects");
        c.out.push(Diagnostic::new(
            run_file,
            p.line,
            p.col,
            "the run has no subjects",
        ));
    }
    (c.subjects, c.out)
}

fn input_list(wf: &Workflow) -> String {
    wf.inputs
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of a CSV text, broken where the csv crate ends records: at
/// `\n`, `\r\n` and a lone `\r` (old Mac files), which its own line count
/// misses.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let b = text.as_bytes();
        let mut starts = vec![0];
        for (i, &c) in b.iter().enumerate() {
            let ends = c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n'));
            if ends {
                starts.push(i + 1);
            }
        }
        Lines { text, starts }
    }

    /// The 1-based line holding byte `offset`, and that line without its break.
    fn of(&self, offset: u64) -> (usize, &'a str) {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let idx = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts[idx];
        let end = self.starts.get(idx + 1).copied().unwrap_or(self.text.len());
        let line = self.text.get(start..end).unwrap_or("");
        (idx + 1, line.trim_end_matches(['\n', '\r']))
    }
}

/// 1-based character column where each field of a raw CSV line starts.
pub(crate) fn field_cols(line: &str) -> Vec<usize> {
    let mut cols = vec![1];
    let mut quoted = false;
    for (i, ch) in line.chars().enumerate() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => cols.push(i + 2),
            _ => {}
        }
    }
    cols
}

fn load_csv(c: &mut Collector<'_>, text: &str, file: &str) {
    let lines = Lines::new(text);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut header: Option<Vec<String>> = None;
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(1, |p| lines.of(p.byte()).0);
                c.out
                    .push(Diagnostic::new(file, line, 1, format!("invalid CSV: {e}")));
                return;
            }
        };
        let (line, raw) = rec.position().map_or((1, ""), |p| lines.of(p.byte()));
        if c.full(file, line) {
            return;
        }
        let cols = field_cols(raw);
        let col = |i: usize| cols.get(i).copied().unwrap_or(1);
        let fields: Vec<&str> = rec.iter().map(str::trim).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if header.is_some() && rows == MAX_SUBJECTS {
            c.out.push(Diagnostic::new(
                file,
                line,
                1,
                format!("more than {MAX_SUBJECTS} subjects; a run takes at most {MAX_SUBJECTS} (split it into waves)"),
            ));
            return;
        }
        let Some(names) = &header else {
            // The header: every column an input, every required input a column.
            if fields.len() > MAX_INPUTS {
                c.out.push(Diagnostic::new(
                    file,
                    line,
                    1,
                    format!(
                        "the header has {} columns; a workflow has at most {MAX_INPUTS} inputs",
                        fields.len()
                    ),
                ));
                return;
            }
            let mut ok = true;
            let mut seen = HashMap::new();
            for (i, name) in fields.iter().enumerate() {
                if !c.wf.inputs.contains_key(*name) {
                    c.out.push(Diagnostic::new(
                        file,
                        line,
                        col(i),
                        format!(
                            "unknown column `{name}` (the workflow's inputs: {})",
                            input_list(c.wf)
                        ),
                    ));
                    ok = false;
                } else if seen.insert(*name, i).is_some() {
                    c.out.push(Diagnostic::new(
                        file,
                        line,
                        col(i),
                        format!("column `{name}` appears twice"),
                    ));
                    ok = false;
                }
            }
            for (name, spec) in &c.wf.inputs {
                if !spec.optional
                    && !fields.contains(&name.as_str())
                    && !c.fills.contains_key(name.as_str())
                {
                    if c.needs_operator && name == OperatorSpec::MODE_INPUT {
                        c.mode_missing = true;
                        continue;
                    }
                    c.out.push(Diagnostic::new(
                        file,
                        line,
                        1,
                        format!("the header lacks a column for required input `{name}`"),
                    ));
                    ok = false;
                }
            }
            if !ok {
                return;
            }
            header = Some(fields.iter().map(|s| s.to_string()).collect());
            continue;
        };
        if fields.len() != names.len() {
            c.out.push(Diagnostic::new(
                file,
                line,
                if fields.len() < names.len() {
                    raw.chars().count() + 1
                } else {
                    col(names.len())
                },
                format!(
                    "expected {} fields ({}), found {}",
                    names.len(),
                    names.join(","),
                    fields.len()
                ),
            ));
            continue;
        }
        let mut inputs = IndexMap::new();
        let mut where_ = HashMap::new();
        for (i, (name, value)) in names.iter().zip(&fields).enumerate() {
            where_.insert(name.as_str(), col(i));
            if !value.is_empty() {
                inputs.insert(name.clone(), value.to_string());
            }
        }
        let cells = CsvCells {
            file,
            line,
            cols: where_,
        };
        rows += 1;
        c.add(inputs, &cells);
    }
    if header.is_none() {
        c.out.push(Diagnostic::new(
            file,
            1,
            1,
            "the CSV file is empty (it needs a header)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_where_records_do() {
        let l = Lines::new("a,b\r\nc\rd\n\ne");
        assert_eq!(l.of(0), (1, "a,b"));
        assert_eq!(l.of(5), (2, "c"));
        assert_eq!(l.of(7), (3, "d"));
        assert_eq!(l.of(9), (4, ""));
        assert_eq!(l.of(10), (5, "e"));
        assert_eq!(l.of(99), (5, "e"));
    }

    #[test]
    fn columns_of_raw_lines() {
        assert_eq!(field_cols("a,bb,ccc"), vec![1, 3, 6]);
        assert_eq!(field_cols("\"x,y\",z"), vec![1, 7]);
    }
}
