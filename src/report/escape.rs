//! Text from requests and histories made safe: for one line of a terminal or
//! a log, for HTML, and for a spreadsheet cell.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) and the Unicode line and
/// paragraph separators written as escapes, so it stays on one line.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `s` as HTML text or an attribute value (quoted with `"` or `'`).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a CSV cell a spreadsheet will not run: a cell starting with `=`,
/// `+`, `-`, `@` (or a tab or carriage return, which some programs skip
/// before them) is a formula there, so it gets a leading `'`. A phone number
/// `+1425…` then reads `'+1425…`, which spreadsheets show as the text.
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// Records (the header first) as CSV text (RFC 4180 quoting), every cell
/// through [`csv_cell`].
pub fn csv_text(records: &[Vec<String>]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.write_record(r.iter().map(|c| csv_cell(c).into_owned()))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_quoted_as_text() {
        for f in ["=1+2", "+14255550100", "-2", "@SUM(A1)", "\t=x", "\r=x"] {
            assert_eq!(csv_cell(f), format!("'{f}"));
        }
        assert_eq!(csv_cell("user@contoso.com"), "user@contoso.com");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text é"), "plain text é");
        assert_eq!(
            escape_controls("a\nb\rc\td\u{1b}[31me\u{7f}\u{85}\u{2028}\0"),
            "a\\nb\\rc\\td\\u{1b}[31me\\u{7f}\\u{85}\\u{2028}\\u{0}"
        );
    }
}
