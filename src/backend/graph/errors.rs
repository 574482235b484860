//! Graph and Entra error responses → the engine's [`ErrorKind`]s.
//!
//! One table-driven classifier (BACKENDS.md (c) "Shared: error classes") over
//! the HTTP status, the headers and the body. Bodies are parsed leniently:
//! Graph's `{"error":{"code","message","innerError":{…}}}` with codes compared
//! case-insensitively, nested `innerError`s walked, and a `message` that is
//! itself a JSON error unwrapped; Entra's token errors
//! `{"error":"invalid_client","error_description":"AADSTS…"}` too. Messages
//! are the service's (Graph never echoes our token), shortened.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::backend::{BackendError, ErrorKind};
use crate::clock::Timestamp;

/// Longest service message kept in a [`BackendError`].
const MAX_MESSAGE: usize = 600;

/// What an error body says, as far as it says anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphErrorBody {
    /// Every `code` found: top level first, then inner and embedded ones.
    pub codes: Vec<String>,
    /// The most specific message: the embedded one when `message` is JSON.
    pub message: Option<String>,
    /// `innerError.request-id` (or Entra's `correlation_id`), for support.
    pub request_id: Option<String>,
}

impl GraphErrorBody {
    /// Whether any code equals `code`, ignoring case.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.eq_ignore_ascii_case(code))
    }
}

/// Parse an error body; unknown shapes give an empty result, never an error.
pub fn parse_error_body(body: &[u8]) -> GraphErrorBody {
    let mut out = GraphErrorBody::default();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        walk(&v, &mut out, 0);
    }
    out
}

/// Case-insensitive object member.
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn walk(v: &Value, out: &mut GraphErrorBody, depth: usize) {
    if depth > 8 {
        return;
    }
    match member(v, "error") {
        // Graph: {"error": {…}}
        Some(inner @ Value::Object(_)) => return walk_error(inner, out, depth + 1),
        // Entra token endpoint: {"error": "invalid_client", "error_description": …}
        Some(Value::String(code)) => {
            out.codes.push(code.clone());
            if let Some(Value::String(d)) = member(v, "error_description") {
                out.message = Some(d.clone());
            }
            if let Some(Value::String(id)) = member(v, "correlation_id") {
                out.request_id = Some(id.clone());
            }
            return;
        }
        _ => {}
    }
    // A bare error object, e.g. embedded in a message.
    walk_error(v, out, depth + 1);
}

fn walk_error(e: &Value, out: &mut GraphErrorBody, depth: usize) {
    if depth > 8 {
        return;
    }
    if let Some(Value::String(code)) = member(e, "code") {
        out.codes.push(code.clone());
    }
    if let Some(Value::String(msg)) = member(e, "message") {
        if msg.trim_start().starts_with('{') {
            if let Ok(v) = serde_json::from_str::<Value>(msg) {
                walk(&v, out, depth + 1);
            }
        }
        if out.message.is_none() {
            out.message = Some(msg.clone());
        }
    }
    for key in ["request-id", "requestId"] {
        if let (None, Some(Value::String(id))) = (&out.request_id, member(e, key)) {
            out.request_id = Some(id.clone());
        }
    }
    if let Some(inner) = member(e, "innerError") {
        walk_error(inner, out, depth + 1);
    }
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date. A date
/// in the past gives zero; an unreadable value gives `None`.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Timestamp(d.as_millis().min(i64::MAX as u128) as i64),
        Err(_) => return Some(Duration::ZERO),
    };
    Some(at.since(now))
}

/// Texts that mean the request conflicts with another owner's state.
const CONFLICT_TEXTS: &[&str] = &["has already been assigned", "already assigned to another"];

/// Texts that mean a precondition of the operation does not hold.
const PRECONDITION_TEXTS: &[&str] = &[
    "lacks appropriate licenses",
    "telephone number set in the on-premises active directory",
    "is not found from tenant",
    "inherited from group membership",
    "inherited from a group membership",
    "locationupdate",
    "unable to update a validated civic address",
];

/// Texts that mean a transient service fault despite a 4xx status.
const TRANSIENT_TEXTS: &[&str] = &[
    "service is unavailable",
    "service unavailable",
    "please try again later",
];

/// Codes that mean the token is bad (refresh once, then auth).
const AUTH_CODES: &[&str] = &[
    "InvalidAuthenticationToken",
    "Authentication_ExpiredToken",
    "Authorization_IdentityNotFound",
    "invalid_client",
    "unauthorized_client",
    "invalid_grant",
    "invalid_scope",
];

/// Whether an auth error means "our token went stale": the caller invalidates
/// the cached token and retries once. Configuration errors (403, a rejected
/// client) do not.
pub fn is_stale_token(status: u16, body: &GraphErrorBody) -> bool {
    status == 401
        || body.has_code("InvalidAuthenticationToken")
        || body.has_code("Authentication_ExpiredToken")
}

/// Classify a non-2xx response. `now` is the injected clock's, for an
/// HTTP-date `Retry-After`.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8], now: Timestamp) -> BackendError {
    let parsed = parse_error_body(body);
    let (kind, message) = decide(status, &parsed);
    let mut message = describe(status, &parsed, &message);
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let mut err = BackendError::new(kind, message);
    if matches!(kind, ErrorKind::Throttled | ErrorKind::Transient) {
        if let Some(d) = retry_after(headers, now) {
            err = err.with_retry_after(d);
        }
    }
    err
}

fn decide(status: u16, b: &GraphErrorBody) -> (ErrorKind, Option<String>) {
    let text = b.message.as_deref().unwrap_or("").to_ascii_lowercase();
    let has = |list: &[&str]| list.iter().any(|t| text.contains(t));
    if status == 429 || b.has_code("TooManyRequests") {
        return (ErrorKind::Throttled, None);
    }
    if status == 403 {
        return (ErrorKind::Auth, missing_permission(&text, b));
    }
    if status == 401 || AUTH_CODES.iter().any(|c| b.has_code(c)) || text.contains("aadsts") {
        return (ErrorKind::Auth, None);
    }
    if status == 404 {
        return (ErrorKind::NotFound, None);
    }
    if status == 409 || has(CONFLICT_TEXTS) {
        return (ErrorKind::Conflict, None);
    }
    if (500..600).contains(&status) || has(TRANSIENT_TEXTS) {
        return (ErrorKind::Transient, None);
    }
    if has(PRECONDITION_TEXTS) {
        return (ErrorKind::Precondition, None);
    }
    (ErrorKind::Fatal, None)
}

/// "API requires any of the following permission(s): A,B." → a sentence that
/// names them.
fn missing_permission(lower: &str, b: &GraphErrorBody) -> Option<String> {
    let marker = "following permission(s):";
    let at = lower.find(marker)? + marker.len();
    let original = b.message.as_deref()?;
    let list = original.get(at..)?.trim().trim_end_matches('.');
    let perms: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if perms.is_empty() {
        return None;
    }
    Some(format!(
        "missing application permission: grant {} (any of: {}) to the app registration \
         and give admin consent",
        perms[0],
        perms.join(", ")
    ))
}

fn describe(status: u16, b: &GraphErrorBody, decided: &Option<String>) -> String {
    let code = b.codes.first().map(String::as_str).unwrap_or("no code");
    let msg = match (decided, &b.message) {
        (Some(d), Some(m)) => format!("{d} ({m})"),
        (Some(d), None) => d.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => "no error body".into(),
    };
    match &b.request_id {
        Some(id) => format!("HTTP {status} {code}: {msg} [request-id {id}]"),
        None => format!("HTTP {status} {code}: {msg}"),
    }
}

/// A transport failure (no HTTP response): timeouts and connection errors are
/// transient; anything else (a bad URL, a body we cannot build) is fatal.
pub fn transport(timeout: bool, connect: bool, what: &str) -> BackendError {
    if timeout || connect {
        BackendError::new(
            ErrorKind::Transient,
            format!("{what}: no response from the service"),
        )
    } else {
        BackendError::new(ErrorKind::Fatal, format!("{what}: request failed"))
    }
}

/// [`transport`] for a reqwest error. The error's text is not kept: it may
/// hold a URL, and URLs are ours to describe.
pub fn from_reqwest(e: &reqwest::Error, what: &str) -> BackendError {
    transport(e.is_timeout(), e.is_connect() || e.is_request(), what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// 2026-11-30T20:00:00Z.
    const NOW: Timestamp = Timestamp(1_796_068_800_000);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    /// One golden row: body file (derived from Microsoft's docs, see
    /// testdata/README.md), status, headers → kind, retry-after, message parts.
    macro_rules! golden {
        ($name:ident, $file:literal, $status:expr, $hdrs:expr, $kind:expr, $retry:expr, [$($part:literal),*]) => {
            #[test]
            fn $name() {
                let body = include_bytes!(concat!("testdata/errors/", $file));
                let e = classify($status, &headers($hdrs), body, NOW);
                assert_eq!(e.kind, $kind, "{e}");
                assert_eq!(e.retry_after(), $retry, "{e}");
                $(assert!(e.message.contains($part), "{:?} lacks {:?}", e.message, $part);)*
            }
        };
    }

    golden!(
        golden_429_retry_after_seconds,
        "throttled.json",
        429,
        &[("retry-after", "10")],
        ErrorKind::Throttled,
        Some(Duration::from_secs(10)),
        [
            "TooManyRequests",
            "request-id 00000000-0000-4000-8000-000000000429"
        ]
    );
    golden!(
        golden_429_retry_after_http_date,
        "throttled.json",
        429,
        &[("retry-after", "Mon, 30 Nov 2026 20:00:30 GMT")],
        ErrorKind::Throttled,
        Some(Duration::from_secs(30)),
        []
    );
    golden!(
        golden_429_retry_after_past_date,
        "throttled.json",
        429,
        &[("retry-after", "Mon, 30 Nov 2026 19:00:00 GMT")],
        ErrorKind::Throttled,
        Some(Duration::ZERO),
        []
    );
    golden!(
        golden_429_without_retry_after,
        "throttled.json",
        429,
        &[],
        ErrorKind::Throttled,
        None,
        []
    );
    golden!(
        golden_503_with_retry_after,
        "service_unavailable.json",
        503,
        &[("Retry-After", "5")],
        ErrorKind::Transient,
        Some(Duration::from_secs(5)),
        ["serviceNotAvailable"]
    );
    golden!(
        golden_504_html_body,
        "bad_gateway.html",
        504,
        &[],
        ErrorKind::Transient,
        None,
        ["HTTP 504", "no error body"]
    );
    golden!(
        golden_400_service_unavailable_text,
        "service_unavailable_text.json",
        400,
        &[],
        ErrorKind::Transient,
        None,
        ["Service is unavailable"]
    );
    golden!(
        golden_401_invalid_authentication_token,
        "invalid_token.json",
        401,
        &[],
        ErrorKind::Auth,
        None,
        ["InvalidAuthenticationToken"]
    );
    golden!(
        golden_expired_token_code_any_case,
        "expired_token_code.json",
        400,
        &[],
        ErrorKind::Auth,
        None,
        ["expired"]
    );
    golden!(
        golden_403_names_missing_permission,
        "forbidden_permission.json",
        403,
        &[],
        ErrorKind::Auth,
        None,
        [
            "grant TeamsTelephoneNumber.ReadWrite.All",
            "TeamsTelephoneNumber.Read.All",
            "admin consent"
        ]
    );
    golden!(
        golden_403_message_is_json,
        "forbidden_json_message.json",
        403,
        &[],
        ErrorKind::Auth,
        None,
        [
            "Access Denied.",
            "request-id 00000000-0000-4000-8000-000000000404"
        ]
    );
    golden!(
        golden_404_user,
        "user_not_found.json",
        404,
        &[],
        ErrorKind::NotFound,
        None,
        ["does not exist"]
    );
    golden!(
        golden_already_assigned_is_conflict,
        "already_assigned.json",
        400,
        &[],
        ErrorKind::Conflict,
        None,
        [
            "already been assigned",
            "request-id 00000000-0000-4000-8000-000000000406"
        ]
    );
    golden!(
        golden_409,
        "conflict.json",
        409,
        &[],
        ErrorKind::Conflict,
        None,
        ["conflict"]
    );
    golden!(
        golden_lacks_licenses_is_precondition,
        "lacks_licenses.json",
        400,
        &[],
        ErrorKind::Precondition,
        None,
        ["CallingPlan"]
    );
    golden!(
        golden_onprem_number_is_precondition,
        "onprem_number.json",
        400,
        &[],
        ErrorKind::Precondition,
        None,
        ["on-premises"]
    );
    golden!(
        golden_not_found_from_tenant_is_precondition,
        "not_found_from_tenant.json",
        400,
        &[],
        ErrorKind::Precondition,
        None,
        ["is not found from tenant"]
    );
    golden!(
        golden_group_licence_is_precondition,
        "group_licence.json",
        400,
        &[],
        ErrorKind::Precondition,
        None,
        ["group membership"]
    );
    golden!(
        golden_400_unknown_is_fatal,
        "bad_request.json",
        400,
        &[],
        ErrorKind::Fatal,
        None,
        ["badRequest", "overlaps"]
    );
    golden!(
        golden_token_invalid_client_secret,
        "token_invalid_client.json",
        401,
        &[],
        ErrorKind::Auth,
        None,
        ["invalid_client", "AADSTS7000215"]
    );
    golden!(
        golden_token_bad_assertion_400,
        "token_bad_assertion.json",
        400,
        &[],
        ErrorKind::Auth,
        None,
        [
            "AADSTS700027",
            "request-id 00000000-0000-4000-8000-0000000000e4"
        ]
    );
    golden!(
        golden_400_html_is_fatal,
        "bad_gateway.html",
        400,
        &[],
        ErrorKind::Fatal,
        None,
        ["no error body"]
    );

    #[test]
    fn nested_inner_errors_and_case_insensitive_codes() {
        let b = parse_error_body(include_bytes!("testdata/errors/already_assigned.json"));
        assert_eq!(
            b.codes,
            ["BadRequest", "badRequest", "PhoneNumberAlreadyAssigned"]
        );
        assert!(b.has_code("phonenumberalreadyassigned"));
        assert_eq!(
            b.request_id.as_deref(),
            Some("00000000-0000-4000-8000-000000000406")
        );
        let j = parse_error_body(include_bytes!(
            "testdata/errors/forbidden_json_message.json"
        ));
        assert_eq!(j.codes, ["UnknownError", "Forbidden", "Forbidden"]);
        assert_eq!(j.message.as_deref(), Some("Access Denied."));
    }

    #[test]
    fn stale_token_only_for_401_and_token_codes() {
        let b = parse_error_body(include_bytes!("testdata/errors/invalid_token.json"));
        assert!(is_stale_token(401, &b));
        let f = parse_error_body(include_bytes!("testdata/errors/forbidden_permission.json"));
        assert!(!is_stale_token(403, &f));
    }

    #[test]
    fn unreadable_retry_after_is_ignored_and_messages_are_bounded() {
        let long = format!(
            r#"{{"error":{{"code":"x","message":"{}"}}}}"#,
            "é".repeat(2000)
        );
        let e = classify(
            503,
            &headers(&[("retry-after", "soon")]),
            long.as_bytes(),
            NOW,
        );
        assert_eq!(e.kind, ErrorKind::Transient);
        assert_eq!(e.retry_after(), None);
        assert!(e.message.len() <= MAX_MESSAGE + '…'.len_utf8());
    }

    #[test]
    fn transport_errors() {
        assert_eq!(transport(true, false, "GET").kind, ErrorKind::Transient);
        assert_eq!(transport(false, true, "GET").kind, ErrorKind::Transient);
        assert_eq!(transport(false, false, "GET").kind, ErrorKind::Fatal);
    }
}
