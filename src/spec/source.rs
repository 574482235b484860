//! The one way spec files are read: workflows, run files, schedule files and
//! CSV subject lists all go through [`read_text`], and every YAML text through
//! [`yaml_text`] before it is parsed.
//!
//! Two YAML parsers read each file: `yaml-rust2` for the position map and
//! nesting limit ([`PosMap`]), libyaml (through `serde_yaml`) for the values.
//! They must see the same document, or the limit checked on one does not hold
//! for the other: a leading byte-order mark, which libyaml skips and
//! `yaml-rust2` reads as text, once hid 50,000 nested lists from the limit and
//! made libyaml take minutes. So the mark is removed here, and the characters
//! the two read differently (control characters, Unicode line separators, a
//! mark after the start) are refused at their position.

use std::io::Read;
use std::path::Path;

use super::diag::{Diagnostic, SpecError};
use super::limits::human_bytes;

/// The byte-order mark.
const BOM: char = '\u{feff}';

/// `text` without a leading byte-order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Read the text file at `path` (`what` names it in messages: "workflow file",
/// "CSV file"): at most `max` bytes, UTF-8, without a leading byte-order mark.
pub fn read_text(path: &Path, max: u64, what: &str) -> Result<String, SpecError> {
    let shown = path.display().to_string();
    let whole = |msg: String| SpecError::one(Diagnostic::file(&shown, msg));
    let file = std::fs::File::open(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(whole("cannot read: it is a directory".into()));
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells "too large" without reading the rest
    // (`/dev/zero` has no end).
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(whole(format!(
            "the {what} is larger than {}, the most portflow reads",
            human_bytes(max)
        )));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let bad = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            // Everything before `bad` is valid UTF-8.
            let before = String::from_utf8_lossy(&bytes[..bad]);
            let (line, col) = line_col(&before, before.len());
            return Err(SpecError::one(Diagnostic::new(
                &shown,
                line,
                col,
                format!(
                    "the {what} is not UTF-8 text (byte 0x{:02x}); save it as UTF-8",
                    bytes.get(bad).copied().unwrap_or(0)
                ),
            )));
        }
    };
    match text.strip_prefix(BOM) {
        Some(rest) => Ok(rest.to_string()),
        None => Ok(text),
    }
}

/// 1-based line and character column of byte `offset` of `text`. A line ends
/// at `\n`, `\r\n` or a lone `\r`, as in YAML.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    let mut prev_cr = false;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        match c {
            '\n' if prev_cr => {}
            '\n' | '\r' => {
                line += 1;
                col = 1;
            }
            _ => col += 1,
        }
        prev_cr = c == '\r';
    }
    (line, col)
}

/// What is wrong with `c` in a YAML file, if anything.
fn bad_char(c: char) -> Option<String> {
    let code = c as u32;
    Some(match c {
        '\t' | '\n' | '\r' => return None,
        '\0' => "a NUL byte: this is a binary file, not YAML text".to_string(),
        '\u{85}' | '\u{2028}' | '\u{2029}' => {
            format!("line separator U+{code:04X} is not allowed: end lines with a plain newline")
        }
        BOM => "a byte-order mark (U+FEFF) is only allowed at the start of the file".to_string(),
        '\u{fffe}' | '\u{ffff}' => format!("U+{code:04X} is not a character"),
        c if c.is_control() => format!(
            "control character U+{code:04X} is not allowed in YAML (write it as \\x{code:02X} \
             inside double quotes)"
        ),
        _ => return None,
    })
}

/// `text` (a YAML file's contents) without a leading byte-order mark, or the
/// position of the first character YAML files may not contain.
pub fn yaml_text<'a>(text: &'a str, origin: &str) -> Result<&'a str, SpecError> {
    let text = strip_bom(text);
    for (i, c) in text.char_indices() {
        if let Some(msg) = bad_char(c) {
            let (line, col) = line_col(text, i);
            return Err(SpecError::one(Diagnostic::new(origin, line, col, msg)));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> Option<(usize, usize, String)> {
        yaml_text(text, "f.yaml").err().map(|e| {
            let d = &e.diagnostics[0];
            (d.line, d.col, d.message.clone())
        })
    }

    #[test]
    fn positions_count_characters_and_every_line_break() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\r\ncd", 5), (2, 2));
        assert_eq!(line_col("a\rb", 2), (2, 1));
        assert_eq!(line_col("é€x", "é€".len()), (1, 3));
    }

    #[test]
    fn bad_characters_are_reported_where_they_are() {
        assert_eq!(first("a: 1\n"), None);
        assert_eq!(first("\u{feff}a: 1\n"), None);
        let (l, c, m) = first("a: 1\nb: \"x\u{1}\"\n").unwrap_or_default();
        assert_eq!((l, c), (2, 6));
        assert!(m.contains("U+0001"), "{m}");
        let (l, c, m) = first("a: 1\nbé: x\0\n").unwrap_or_default();
        assert_eq!((l, c), (2, 6));
        assert!(m.contains("NUL"), "{m}");
        assert!(first("a: b\u{2028}c\n").is_some_and(|(_, _, m)| m.contains("line separator")));
        assert!(
            first("a: 1\n\u{feff}b: 2\n").is_some_and(|(l, _, m)| l == 2 && m.contains("start"))
        );
        assert!(first("a: \u{7f}\n").is_some());
        assert_eq!(first("a:\t1\r\nb: 2\r\n"), None);
    }
}
