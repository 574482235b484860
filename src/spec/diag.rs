//! Diagnostics: `file:line:col: message`, collected rather than thrown one by one.

use std::fmt;

/// One problem in a spec file, with where it is.
///
/// `line` and `col` are 1-based; `line == 0` means the problem concerns the file
/// as a whole (it cannot be read, for instance) and displays as `file: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file (as given by the user) or `builtin:<name>.yaml`.
    pub file: String,
    /// 1-based line, 0 when not about a position.
    pub line: usize,
    /// 1-based column (in characters), 0 when not about a position.
    pub col: usize,
    /// What is wrong, for a person.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `line:col` of `file`.
    pub fn new(
        file: impl Into<String>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A diagnostic about the file as a whole.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic::new(file, 0, 0, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// Every problem found in a spec (a workflow, a run file and what it refers to).
///
/// Displays one diagnostic per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The problems, in file and position order.
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    /// An error with one diagnostic.
    pub fn one(d: Diagnostic) -> SpecError {
        SpecError {
            diagnostics: vec![d],
        }
    }

    /// `Ok(())` when `diagnostics` is empty, else the error (sorted, deduplicated).
    pub fn check(mut diagnostics: Vec<Diagnostic>) -> Result<(), SpecError> {
        if diagnostics.is_empty() {
            return Ok(());
        }
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        diagnostics.dedup();
        Err(SpecError { diagnostics })
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let d = Diagnostic::new("w.yaml", 3, 7, "bad");
        assert_eq!(d.to_string(), "w.yaml:3:7: bad");
        assert_eq!(
            Diagnostic::file("w.yaml", "cannot read: gone").to_string(),
            "w.yaml: cannot read: gone"
        );
        let e = SpecError::check(vec![d.clone(), Diagnostic::new("w.yaml", 1, 1, "first"), d]);
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("w.yaml:1:1: first\nw.yaml:3:7: bad".to_string())
        );
        assert_eq!(SpecError::check(vec![]), Ok(()));
    }
}
