//! Putting values (UPNs, phone numbers, ids) into Graph URLs.
//!
//! Two layers, always both: an OData string literal doubles its single quotes
//! (`O'Brien` → `'O''Brien'`), and the result is percent-encoded for the URL
//! part it lands in. Every byte outside RFC 3986's unreserved set is encoded
//! (`+` → `%2B`, `#` → `%23`, `/`, `?`, `&`, `=`, `%`, spaces, non-ASCII), so no
//! value can end a path segment, start a query, add a parameter or a fragment.
//! `@` stays literal in paths (a `pchar`); in query values it is encoded too.

/// RFC 3986 unreserved characters, never encoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a value for one path segment: only unreserved bytes and `@`
/// stay literal.
pub fn path_segment(s: &str) -> String {
    encode(s, |b| unreserved(b) || b == b'@')
}

/// Percent-encode a query parameter value: only unreserved bytes stay literal.
pub fn query_value(s: &str) -> String {
    encode(s, unreserved)
}

/// An OData string literal: quoted, single quotes doubled (not URL-encoded).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The path of a user by object id or UPN, relative to the version root.
///
/// A UPN starting with `$` would read as an OData system segment, so Graph
/// wants it in key syntax, `/users('$x@y')` (Graph docs `user-get`); the
/// literal's quotes are doubled and its bytes encoded, `$` itself kept. An
/// empty value or one of only dots (`.`, `..`: URL dot segments, even when
/// encoded) also goes in key syntax, so it cannot name `/users` itself or
/// its parent.
pub fn user_path(upn_or_id: &str) -> String {
    if upn_or_id.starts_with('$') || upn_or_id.bytes().all(|b| b == b'.') {
        let lit = upn_or_id.replace('\'', "''");
        format!(
            "/users('{}')",
            encode(&lit, |b| unreserved(b) || b == b'@' || b == b'$')
        )
    } else {
        format!("/users/{}", path_segment(upn_or_id))
    }
}

/// A query string from static keys (`$filter`, `$select`, `$top`) and
/// arbitrary values, each value encoded: `?k1=v1&k2=v2`, empty when none.
pub fn query(pairs: &[(&'static str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&query_value(v));
    }
    out
}

/// `$filter` expression `<property> eq '<value>'`, the value as a literal.
pub fn eq_filter(property: &'static str, value: &str) -> String {
    format!("{property} eq {}", literal(value))
}

/// The number assignments of one telephone number: the path and query of
/// `GET …/numberAssignments?$filter=telephoneNumber eq '+1…'`.
pub fn number_assignment_query(e164: &str) -> String {
    format!(
        "/admin/teams/telephoneNumberManagement/numberAssignments{}",
        query(&[("$filter", &eq_filter("telephoneNumber", e164))])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    const BASE: &str = "https://graph.microsoft.com/v1.0";

    fn url(path_and_query: &str) -> Url {
        Url::parse(&format!("{BASE}{path_and_query}")).expect("a valid URL")
    }

    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    const HOSTILE: &[&str] = &[
        "O'Brien@x.com",
        "a#b@x.com",
        "$admin@x.com",
        "x')/..%2F",
        "a b@x.com",
        "a/b?c=d&e@x.com",
        "../../me",
        "+12065550100",
        "ünï@例え.jp",
        "$x')?$select=id&a='#",
        "a%00b@x",
        "",
        ".",
        "..",
        "$",
    ];

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(literal("O'Brien@x"), "'O''Brien@x'");
        assert_eq!(literal("''"), "''''''");
        assert_eq!(literal("plain"), "'plain'");
    }

    #[test]
    fn encodes_plus_hash_slash_question_percent_space_unicode() {
        assert_eq!(query_value("+1 206"), "%2B1%20206");
        assert_eq!(path_segment("a#b@x"), "a%23b@x");
        assert_eq!(path_segment("a/b?c%d"), "a%2Fb%3Fc%25d");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(query_value("a@b&c=d"), "a%40b%26c%3Dd");
    }

    #[test]
    fn ordinary_and_dollar_leading_upns() {
        assert_eq!(user_path("alice@contoso.com"), "/users/alice@contoso.com");
        assert_eq!(user_path("a#b@x"), "/users/a%23b@x");
        assert_eq!(user_path("O'Brien@x"), "/users/O%27Brien@x");
        assert_eq!(user_path("$admin@x"), "/users('$admin@x')");
        assert_eq!(user_path("$o'b@x"), "/users('$o%27%27b@x')");
    }

    #[test]
    fn number_filter_encodes_plus_and_quotes() {
        assert_eq!(
            number_assignment_query("+12065550100"),
            "/admin/teams/telephoneNumberManagement/numberAssignments\
             ?$filter=telephoneNumber%20eq%20%27%2B12065550100%27"
        );
    }

    /// No hostile UPN changes the path (one segment after `users`, decoding
    /// back to the UPN), adds a query or a fragment.
    #[test]
    fn hostile_upns_stay_inside_their_path_segment() {
        for upn in HOSTILE {
            let u = url(&user_path(upn));
            assert_eq!(u.query(), None, "{upn}: {u}");
            assert_eq!(u.fragment(), None, "{upn}: {u}");
            let segs: Vec<&str> = u.path_segments().expect("segments").collect();
            assert_eq!(segs[0], "v1.0", "{upn}: {u}");
            if upn.starts_with('$') || upn.bytes().all(|b| b == b'.') {
                assert_eq!(segs.len(), 2, "{upn}: {u}");
                let inner = decode(segs[1]);
                let inner = inner
                    .strip_prefix("users('")
                    .and_then(|s| s.strip_suffix("')"))
                    .expect("key syntax");
                assert_eq!(inner.replace("''", "'"), *upn);
                assert!(!inner.replace("''", "").contains('\''), "{upn}: {u}");
            } else {
                assert_eq!(segs.len(), 3, "{upn}: {u}");
                assert_eq!(segs[1], "users");
                assert_eq!(decode(segs[2]), *upn, "{u}");
            }
        }
    }

    #[test]
    fn hostile_values_add_no_query_parameter() {
        for v in HOSTILE {
            let u = url(&format!(
                "/users{}",
                query(&[
                    ("$filter", &eq_filter("userPrincipalName", v)),
                    ("$top", "1")
                ])
            ));
            let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
            assert_eq!(pairs.len(), 2, "{v}: {u}");
            assert_eq!(pairs[0].0, "$filter");
            assert_eq!(pairs[0].1, format!("userPrincipalName eq {}", literal(v)));
            assert_eq!(pairs[1], ("$top".into(), "1".into()));
            assert_eq!(u.fragment(), None, "{v}: {u}");
            assert_eq!(u.path(), "/v1.0/users");
            // The literal is one OData string: inside its two delimiters,
            // every quote is doubled.
            let lit = &pairs[0].1["userPrincipalName eq ".len()..];
            let inner = lit
                .strip_prefix('\'')
                .and_then(|l| l.strip_suffix('\''))
                .expect("quoted");
            assert!(!inner.replace("''", "").contains('\''), "{v}: {lit}");
        }
    }
}
