//! OData and URL details: percent-decoding, key syntax, `$filter` literals.

/// Percent-decode `s` (`%XX`); `plus_is_space` for query strings, where a raw
/// `+` means a space (so an unencoded `+1425…` in `$filter` is not a
/// number). `None` when the escapes are malformed or the bytes not UTF-8.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query string as decoded (name, value) pairs, in order.
pub(super) fn query_pairs(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// Percent-encode a query value (everything but unreserved characters).
pub(super) fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A single-quoted OData string literal at the start of `s` (quotes doubled
/// inside): the value and the rest of `s` after the closing quote.
pub(super) fn quoted(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if let Some((_, '\'')) = chars.peek() {
                chars.next();
                out.push('\'');
                continue;
            }
            return Some((out, &rest[i + 1..]));
        }
        out.push(c);
    }
    None
}

/// How a path segment names an entity: `name/<key>` gives `Plain`,
/// `name('<key>')` gives the key from the quoted literal.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// `name` alone.
    Name(String),
    /// `name('key')` (key unquoted, doubled quotes undone).
    Keyed(String, String),
}

/// Parse one decoded path segment.
pub(super) fn segment(s: &str) -> Option<Segment> {
    match s.find("('") {
        Some(i) if s.ends_with(')') => {
            let (lit, rest) = quoted(&s[i + 1..])?;
            (rest == ")").then(|| Segment::Keyed(s[..i].to_string(), lit))
        }
        _ if s.contains('(') || s.contains(')') => None,
        _ => Some(Segment::Name(s.to_string())),
    }
}

/// One `$filter` comparison the simulator supports: `<property> eq '<lit>'`,
/// joined by `and`.
pub(super) fn filter(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    loop {
        let Some((prop, after)) = rest.split_once(' ') else {
            return Err(format!("Invalid filter clause: '{s}'"));
        };
        let after = after.trim_start();
        let Some(after) = after.strip_prefix("eq ") else {
            return Err(format!(
                "Invalid filter clause: only 'eq' is supported by the simulator: '{s}'"
            ));
        };
        let Some((lit, after)) = quoted(after.trim_start()) else {
            return Err(format!(
                "Invalid filter clause: expected a quoted literal: '{s}'"
            ));
        };
        out.push((prop.to_string(), lit));
        let after = after.trim();
        if after.is_empty() {
            return Ok(out);
        }
        match after.strip_prefix("and ") {
            Some(r) => rest = r.trim_start(),
            None => return Err(format!("Invalid filter clause: '{s}'")),
        }
    }
}

/// `PascalCase` → `camelCase` (the service's enum members).
pub(super) fn camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// base64url without padding (operation ids look like Graph's).
pub(super) fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_encoded_slashes_inside_a_segment_and_plus_in_paths() {
        assert_eq!(percent_decode("a%2Fb%23c", false).as_deref(), Some("a/b#c"));
        assert_eq!(percent_decode("+1425", false).as_deref(), Some("+1425"));
        assert_eq!(percent_decode("+1425", true).as_deref(), Some(" 1425"));
        assert_eq!(percent_decode("%2B1425", true).as_deref(), Some("+1425"));
        assert_eq!(percent_decode("%zz", true), None);
        assert_eq!(percent_decode("%2", true), None);
    }

    #[test]
    fn literals_undo_doubled_quotes() {
        assert_eq!(
            quoted("'O''Brien@x.com') tail"),
            Some(("O'Brien@x.com".to_string(), ") tail"))
        );
        assert_eq!(quoted("'open"), None);
        assert_eq!(
            segment("users('$x@y.com')"),
            Some(Segment::Keyed("users".into(), "$x@y.com".into()))
        );
        assert_eq!(segment("users('a')b"), None);
        assert_eq!(segment("users"), Some(Segment::Name("users".into())));
    }

    #[test]
    fn filters_parse_eq_and_and() {
        assert_eq!(
            filter("telephoneNumber eq '+1425' and assignmentTargetId eq 'O''B'"),
            Ok(vec![
                ("telephoneNumber".into(), "+1425".into()),
                ("assignmentTargetId".into(), "O'B".into())
            ])
        );
        assert!(filter("telephoneNumber ne '+1'").is_err());
        assert!(filter("telephoneNumber eq '+1' or x eq 'y'").is_err());
        assert!(filter("startswith(telephoneNumber,'+1')").is_err());
    }

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        assert_eq!(base64url(b"M"), "TQ");
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
