//! Error messages reduced to their cause, so one cause is one group: the
//! values a message carries (the subject's inputs, UPNs, phone numbers, ids,
//! times, durations, counts) are lifted out and replaced by placeholders.

use serde_json::{Map, Value};

/// How many raw messages and subjects a group keeps as examples.
pub const EXAMPLES: usize = 3;

/// `message` with its values replaced by placeholders: an input's own value
/// by `<name>`, then `<upn>`, `<number>`, `<id>`, `<time>`, `<duration>` and
/// `<n>`. Code quoted in backticks (a workflow's expression) is kept.
pub fn normalise(message: &str, inputs: &Map<String, Value>) -> String {
    let mut text = message.to_string();
    // Longest first, so a value containing another is replaced whole.
    let mut values: Vec<(&str, &str)> = inputs
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .filter(|(_, v)| v.chars().count() > 3)
        .collect();
    values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for (name, value) in values {
        if text.contains(value) {
            text = text.replace(value, &format!("<{name}>"));
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if in_code || !is_word(c) {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest.find(|ch: char| !is_word(ch)).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        let (word, trail) = split_trailing_punct(word);
        let (placeholder, consumed) = classify(word, after);
        match placeholder {
            Some(p) => {
                // A duration swallows the words of its own ("1h 2m 3s").
                if p == "<duration>" && out.ends_with("<duration> ") {
                    out.truncate(out.len() - 1);
                    out.truncate(out.len() - "<duration>".len());
                }
                out.push_str(p);
                out.push_str(trail);
                rest = &after[consumed..];
            }
            None => {
                out.push_str(&digits_to_n(word));
                out.push_str(trail);
                rest = after;
            }
        }
    }
    out
}

/// Characters a value-bearing word is made of (anything but spaces, quotes,
/// brackets and separators).
fn is_word(c: char) -> bool {
    !(c.is_whitespace()
        || matches!(
            c,
            '\'' | '"' | '`' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';' | '='
        ))
}

/// A sentence's punctuation after a word is not part of the value.
fn split_trailing_punct(word: &str) -> (&str, &str) {
    let cut = word.trim_end_matches(['.', ':', '!', '?']);
    word.split_at(cut.len())
}

/// The placeholder for `word`, and how many bytes of `after` it also takes
/// (a unit written as its own word: `600 s`, `3 minutes`).
fn classify(word: &str, after: &str) -> (Option<&'static str>, usize) {
    if word.is_empty() {
        return (None, 0);
    }
    if is_upn(word) {
        return (Some("<upn>"), 0);
    }
    if is_phone(word) {
        return (Some("<number>"), 0);
    }
    if is_guid(word) || is_opaque_id(word) {
        return (Some("<id>"), 0);
    }
    if is_time(word) {
        return (Some("<time>"), 0);
    }
    if is_duration(word) {
        return (Some("<duration>"), 0);
    }
    if word.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(unit_len) = unit_word(after) {
            return (Some("<duration>"), unit_len);
        }
    }
    (None, 0)
}

fn is_upn(w: &str) -> bool {
    let w = w.strip_prefix("sip:").unwrap_or(w);
    match w.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.ends_with('.')
        }
        None => false,
    }
}

fn is_phone(w: &str) -> bool {
    let w = w.strip_prefix("tel:").unwrap_or(w);
    let Some(digits) = w.strip_prefix('+') else {
        return false;
    };
    let digits = digits.split(";ext=").next().unwrap_or(digits);
    let n = digits.bytes().filter(u8::is_ascii_digit).count();
    (7..=15).contains(&n) && digits.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

fn is_guid(w: &str) -> bool {
    let parts: Vec<&str> = w.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A long token mixing letters and digits (a run id, a request id, a hash).
fn is_opaque_id(w: &str) -> bool {
    let digits = w.bytes().filter(u8::is_ascii_digit).count();
    let letters = w.bytes().filter(u8::is_ascii_alphabetic).count();
    w.len() >= 12
        && digits >= 3
        && letters >= 1
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An RFC 3339 instant or a bare date.
fn is_time(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// `12m`, `1h30m`, `250ms`, `1.5s`: numbers with a unit, written together.
fn is_duration(w: &str) -> bool {
    let mut rest = w;
    let mut parts = 0;
    while !rest.is_empty() {
        let num = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num == 0 || rest[..num].starts_with('.') {
            return false;
        }
        rest = &rest[num..];
        let unit = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if !matches!(&rest[..unit], "ms" | "s" | "m" | "min" | "h" | "d") {
            return false;
        }
        rest = &rest[unit..];
        parts += 1;
    }
    parts > 0
}

/// The length of a unit word at the start of `after` (` s`, ` minutes`), if any.
fn unit_word(after: &str) -> Option<usize> {
    let body = after.strip_prefix(' ')?;
    let end = body
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(body.len());
    const UNITS: &[&str] = &[
        "ms", "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes",
        "h", "hour", "hours", "d", "day", "days",
    ];
    UNITS.contains(&&body[..end]).then_some(1 + end)
}

/// Every run of digits in `word` as `<n>` (`user17` is `user<n>`), except an
/// HTTP error status (403 and 429 are different causes) and an upper-case
/// name such as a licence (`E5`, `MCOEV2`).
fn digits_to_n(word: &str) -> String {
    let b = word.as_bytes();
    if !b.iter().any(u8::is_ascii_digit) {
        return word.to_string();
    }
    let http_error =
        b.len() == 3 && b.iter().all(u8::is_ascii_digit) && matches!(b[0], b'4' | b'5');
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let upper_name = letters > 0 && !b.iter().any(u8::is_ascii_lowercase);
    if http_error || upper_name {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len());
    let mut in_digits = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("<n>");
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// One cause: its normalised text, how many subjects it stopped and examples.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Group {
    /// The normalised message.
    pub cause: String,
    /// How many subjects.
    pub count: usize,
    /// Up to [`EXAMPLES`] distinct raw messages.
    pub examples: Vec<String>,
    /// Up to [`EXAMPLES`] subjects it stopped, in the order given.
    pub subjects: Vec<String>,
}

/// Messages grouped by cause, largest group first (then by text).
#[derive(Debug, Default)]
pub struct Grouper {
    groups: indexmap::IndexMap<String, Group>,
}

impl Grouper {
    /// An empty grouping.
    pub fn new() -> Grouper {
        Grouper::default()
    }

    /// Count one subject's message (with its inputs, whose values are lifted out).
    pub fn add(&mut self, subject: &str, message: &str, inputs: &Map<String, Value>) {
        self.add_cause(subject, message, normalise(message, inputs));
    }

    /// Count one subject's message whose cause is already worked out.
    pub fn add_cause(&mut self, subject: &str, message: &str, cause: String) {
        let g = self.groups.entry(cause.clone()).or_insert_with(|| Group {
            cause,
            count: 0,
            examples: Vec::new(),
            subjects: Vec::new(),
        });
        g.count += 1;
        if g.examples.len() < EXAMPLES && !g.examples.iter().any(|e| e == message) {
            g.examples.push(message.to_string());
        }
        if g.subjects.len() < EXAMPLES {
            g.subjects.push(subject.to_string());
        }
    }

    /// The groups, largest first.
    pub fn finish(self) -> Vec<Group> {
        let mut v: Vec<Group> = self.groups.into_values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.cause.cmp(&b.cause)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(s: &str) -> String {
        normalise(s, &Map::new())
    }

    #[test]
    fn values_become_placeholders() {
        assert_eq!(
            n("Telephone Number '+14255550101' is not found from tenant '9f0c2b1e-3a4d-4e5f-8a9b-0c1d2e3f4a5b'"),
            "Telephone Number '<number>' is not found from tenant '<id>'"
        );
        assert_eq!(
            n("User 'user17@contoso.example' lacks appropriate licenses."),
            "User '<upn>' lacks appropriate licenses."
        );
        assert_eq!(
            n("wait sync timed out after 10m 30s at 2026-12-01T22:10:00Z"),
            "wait sync timed out after <duration> at <time>"
        );
        assert_eq!(
            n("gave up after 600 s (3 attempts)"),
            "gave up after <duration> (<n> attempts)"
        );
        assert_eq!(n("user17 has no line uri"), "user<n> has no line uri");
    }

    #[test]
    fn causes_stay_apart() {
        assert_ne!(
            n("Graph answered 403 Forbidden"),
            n("Graph answered 429 Too Many")
        );
        assert_eq!(
            n("condition `number != \"+15550100\"` is false"),
            "condition `number != \"+15550100\"` is false",
            "code in backticks is the workflow's, the same for every subject"
        );
        assert_eq!(n("needs E5 and MCOEV"), "needs E5 and MCOEV");
    }

    #[test]
    fn input_values_are_named() {
        let inputs = json!({"upn": "alice@contoso.example", "site": "Berlin-HQ"});
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        assert_eq!(
            normalise("no location Berlin-HQ for alice@contoso.example", &inputs),
            "no location <site> for <upn>"
        );
    }

    #[test]
    fn one_cause_with_six_values_is_one_group() {
        let mut g = Grouper::new();
        for i in 0..6 {
            let msg = format!(
                "assign_number failed after {} attempts: Telephone Number '+1425555{:04}' is not found from tenant 'c0ffee00-0000-4000-8000-00000000000{i}' (request r-{i}a8f3c9e2d1b0)",
                i + 2,
                100 + i
            );
            g.add(&format!("user{i}@contoso.example"), &msg, &Map::new());
        }
        g.add(
            "bob@contoso.example",
            "Graph answered 403 Forbidden",
            &Map::new(),
        );
        let groups = g.finish();
        assert_eq!(groups.len(), 2, "{groups:#?}");
        assert_eq!(groups[0].count, 6);
        assert_eq!(groups[0].examples.len(), EXAMPLES);
        assert_eq!(groups[0].subjects[0], "user0@contoso.example");
        assert_eq!(groups[1].count, 1);
    }
}
