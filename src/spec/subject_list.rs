//! A list of subjects an operator command addresses (`--subjects FILE`): one
//! subject per line, or a CSV with a header whose `user` column (else its
//! first column) holds the subject. Blank lines and `#` comments are ignored;
//! every problem is reported at its `file:line:col`.

use std::collections::HashSet;
use std::path::Path;

use super::diag::{Diagnostic, SpecError};
use super::limits::{MAX_CSV_BYTES, MAX_SUBJECTS, MAX_SUBJECT_PROBLEMS, MAX_VALUE_BYTES};
use super::source::read_text;
use super::subjects::field_cols;

/// The column a CSV list's subject is in, by name.
pub const SUBJECT_COLUMN: &str = "user";

/// One subject of a list, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The subject.
    pub subject: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based character column.
    pub col: usize,
}

/// The subjects of the list at `path`, in file order, each once (a repeated
/// subject keeps its first line).
pub fn load_subject_list(path: &Path) -> Result<Vec<Listed>, SpecError> {
    let shown = path.display().to_string();
    let text = read_text(path, MAX_CSV_BYTES, "subjects file")?;
    parse_subject_list(&text, &shown)
}

/// [`load_subject_list`] on a text; `file` names it in messages.
pub fn parse_subject_list(text: &str, file: &str) -> Result<Vec<Listed>, SpecError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    // Decided by the first line that is not blank or a comment.
    let mut column: Option<Column> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if problems.len() >= MAX_SUBJECT_PROBLEMS {
            problems.push(Diagnostic::new(
                file,
                line,
                1,
                format!("stopped reading here after {MAX_SUBJECT_PROBLEMS} problems"),
            ));
            break;
        }
        let fields = split(raw);
        let cols = field_cols(raw);
        let col_of = |k: usize| cols.get(k).copied().unwrap_or(1);
        let Some(at) = column else {
            column = Some(header(&fields));
            if !matches!(column, Some(Column::Plain)) {
                // A header line names columns, not a subject.
                continue;
            }
            // A plain list: this first line is a subject.
            if let Some(l) = plain(file, line, raw, &fields, &col_of, &mut problems) {
                push(&mut out, &mut seen, l);
            }
            continue;
        };
        let listed = match at {
            Column::Plain => plain(file, line, raw, &fields, &col_of, &mut problems),
            Column::Csv { index, name } => {
                if fields.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                match fields.get(index).map(|f| f.trim()) {
                    None => {
                        problems.push(Diagnostic::new(
                            file,
                            line,
                            raw.chars().count() + 1,
                            format!(
                                "this row has {} field(s); the subject is in column {} (`{name}`)",
                                fields.len(),
                                index + 1
                            ),
                        ));
                        None
                    }
                    Some(v) => value(file, line, col_of(index), v, &mut problems),
                }
            }
        };
        if let Some(l) = listed {
            if out.len() == MAX_SUBJECTS {
                problems.push(Diagnostic::new(
                    file,
                    line,
                    1,
                    format!("more than {MAX_SUBJECTS} subjects, the most a run has"),
                ));
                break;
            }
            push(&mut out, &mut seen, l);
        }
    }
    SpecError::check(problems)?;
    if out.is_empty() {
        return Err(SpecError::one(Diagnostic::file(
            file,
            "lists no subject (one per line, or a CSV with a `user` column)",
        )));
    }
    Ok(out)
}

/// Where a list's subjects are.
#[derive(Clone, Copy, Debug)]
enum Column {
    /// One per line.
    Plain,
    /// In this column of a CSV with a header.
    Csv { index: usize, name: &'static str },
}

/// How the first line says the rest is written: a CSV header (it has a comma,
/// or is the single column `user`), else a plain list.
fn header(fields: &[String]) -> Column {
    let names: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
    let user = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(SUBJECT_COLUMN));
    match (names.len(), user) {
        (_, Some(index)) => Column::Csv {
            index,
            name: SUBJECT_COLUMN,
        },
        (1, None) => Column::Plain,
        _ => Column::Csv {
            index: 0,
            name: "the first",
        },
    }
}

fn push(out: &mut Vec<Listed>, seen: &mut HashSet<String>, l: Listed) {
    if seen.insert(l.subject.clone()) {
        out.push(l);
    }
}

/// A line of a plain list: one subject, no comma.
fn plain(
    file: &str,
    line: usize,
    raw: &str,
    fields: &[String],
    col_of: &dyn Fn(usize) -> usize,
    problems: &mut Vec<Diagnostic>,
) -> Option<Listed> {
    if fields.len() > 1 {
        problems.push(Diagnostic::new(
            file,
            line,
            col_of(1).saturating_sub(1).max(1),
            "a comma in a list of one subject per line (a CSV starts with a header line naming its columns, e.g. `user,number`)",
        ));
        return None;
    }
    let v = fields.first().map_or(raw, String::as_str).trim();
    let col = raw.chars().take_while(|c| c.is_whitespace()).count() + 1;
    value(file, line, col, v, problems)
}

/// A subject value, checked.
fn value(
    file: &str,
    line: usize,
    col: usize,
    v: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<Listed> {
    let bad = if v.is_empty() {
        Some("the subject is empty".to_string())
    } else if v.len() > MAX_VALUE_BYTES {
        Some(format!(
            "the subject is longer than {MAX_VALUE_BYTES} bytes"
        ))
    } else {
        v.chars()
            .find(|c| c.is_control())
            .map(|c| format!("control character U+{:04X} in the subject", c as u32))
    };
    match bad {
        Some(message) => {
            problems.push(Diagnostic::new(file, line, col, message));
            None
        }
        None => Some(Listed {
            subject: v.to_string(),
            line,
            col,
        }),
    }
}

/// The fields of one CSV line (quotes as in CSV; an unquoted line is split at commas).
fn split(raw: &str) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw.as_bytes());
    match rdr.records().next() {
        Some(Ok(rec)) => rec.iter().map(str::to_string).collect(),
        _ => raw.split(',').map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(text: &str) -> Vec<(String, usize, usize)> {
        match parse_subject_list(text, "s.txt") {
            Ok(v) => v.into_iter().map(|l| (l.subject, l.line, l.col)).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn problems(text: &str) -> String {
        match parse_subject_list(text, "s.txt") {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_plain_list_skips_blanks_and_comments_and_keeps_first_positions() {
        let got = subjects("# wave 7\n\na@x.com\n  b@x.com  \n# done\na@x.com\r\nc@x.com");
        assert_eq!(
            got,
            vec![
                ("a@x.com".into(), 3, 1),
                ("b@x.com".into(), 4, 3),
                ("c@x.com".into(), 7, 1)
            ]
        );
        // A lone `user` first line is a header, not a subject.
        assert_eq!(subjects("user\na@x.com\n"), vec![("a@x.com".into(), 2, 1)]);
    }

    #[test]
    fn a_csv_takes_its_user_column_or_else_its_first() {
        let got = subjects("number,user\n+14255550001,a@x.com\n\"+1425\",\"b@x.com\"\n");
        assert_eq!(
            got,
            vec![("a@x.com".into(), 2, 14), ("b@x.com".into(), 3, 9)]
        );
        let got = subjects("upn,number\na@x.com,+1\n");
        assert_eq!(got, vec![("a@x.com".into(), 2, 1)]);
    }

    #[test]
    fn bad_lines_are_reported_at_their_place() {
        let e = problems("number,user\n+1,a@x.com\n+2\n+3,\n");
        assert!(
            e.contains("s.txt:3:3: this row has 1 field(s); the subject is in column 2 (`user`)"),
            "{e}"
        );
        assert!(e.contains("s.txt:4:4: the subject is empty"), "{e}");
        let e = problems("a@x.com\nb@x.com,c@x.com\n");
        assert!(e.contains("s.txt:2:8: a comma in a list"), "{e}");
        let e = problems("a@x.com\nb\u{1b}[2J@x.com\n");
        assert!(e.contains("s.txt:2:1: control character U+001B"), "{e}");
        let e = problems("# nothing\n\n");
        assert!(e.contains("s.txt: lists no subject"), "{e}");
    }
}
