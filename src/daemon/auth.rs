//! The daemon's gate: a route layer every request passes before its handler
//! reads any of it. The token is checked first, so an unauthenticated caller learns
//! nothing from how a body or a query would have been parsed. A write that
//! only the status page's cookie authenticates must also come from the page's
//! own origin: browsers attach the cookie to requests any page makes.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::{Daemon, Shared};

/// How a request showed the daemon's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Credential {
    /// `Authorization: Bearer <token>` (the CLI, curl, Prometheus).
    Bearer,
    /// The status page's `portflow_token` cookie.
    Cookie,
}

/// The request's credential when it carries the daemon's token. A bearer
/// header decides alone (a wrong one is not rescued by a cookie).
pub(super) fn credential(daemon: &Daemon, headers: &HeaderMap) -> Option<Credential> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return token_matches(&daemon.token, given).then_some(Credential::Bearer);
    }
    let given = cookie_token(headers)?;
    token_matches(&daemon.token, given).then_some(Credential::Cookie)
}

/// Whether the request carries the daemon's token (bearer or cookie).
pub(super) fn authorized(daemon: &Daemon, headers: &HeaderMap) -> bool {
    credential(daemon, headers).is_some()
}

/// Compare in constant time in the token's length.
pub(super) fn token_matches(token: &str, given: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What anyone may reach: the page (it shows the sign-in form without a
/// token) and the sign-in itself, which checks the token it is given.
fn is_public(method: &Method, path: &str) -> bool {
    match path {
        "/" => method == Method::GET || method == Method::HEAD,
        "/login" => method == Method::POST,
        _ => false,
    }
}

/// Whether a browser says the request comes from the origin it is sent to:
/// `Sec-Fetch-Site: same-origin`, or else an `Origin` naming the `Host` the
/// request was addressed to (that covers `localhost`, `127.0.0.1` and a
/// forwarded port alike; pages cannot set either header).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    let (Some(origin), Some(host)) = (get("origin"), get("host")) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "missing or wrong token: send `Authorization: Bearer <token>` from <state>/daemon.json"})),
    )
        .into_response()
}

fn cross_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": "a change authenticated by the status page's cookie must come from the page itself \
            (Sec-Fetch-Site: same-origin, or an Origin equal to this address); scripts and the CLI send \
            `Authorization: Bearer <token>`"})),
    )
        .into_response()
}

/// The layer (see the module documentation). Only GET and HEAD are reads.
pub(super) async fn require_token(State(d): State<Shared>, req: Request, next: Next) -> Response {
    if is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    match credential(&d, req.headers()) {
        // The right cookie, ignored because another site sent it: on a write
        // that is the forgery this layer exists for, so say so.
        None if !read && foreign_cookie(&d, req.headers()) => cross_origin(),
        None => unauthorized(),
        Some(Credential::Cookie) if !read && !same_origin(req.headers()) => cross_origin(),
        Some(_) => next.run(req).await,
    }
}

/// Name of the cookie that carries the token for the status page.
pub const COOKIE: &str = "portflow_token";

/// The token from the `portflow_token` cookie, unless the request comes from
/// another site (a browser says so in `Sec-Fetch-Site`): a page on another port
/// of this host is "same-site" for cookies, so SameSite alone is not enough.
pub(super) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if !matches!(fetch_site, None | Some("same-origin") | Some("none")) {
        return None;
    }
    raw_cookie(headers)
}

/// Whether a request without a bearer header carries the daemon's token in
/// the cookie that [`cookie_token`] ignored as another site's.
fn foreign_cookie(daemon: &Daemon, headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).is_none()
        && cookie_token(headers).is_none()
        && raw_cookie(headers).is_some_and(|t| token_matches(&daemon.token, t))
}

/// The `portflow_token` cookie's value, whoever sent it.
fn raw_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_needs_the_browsers_word_or_a_matching_origin() {
        let host = ("host", "127.0.0.1:7480");
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:7480")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "LOCALHOST:7480"),
            ("origin", "http://localhost:7480")
        ])));
        assert!(!same_origin(&headers(&[host])), "no proof");
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:7481",
            "http://127.0.0.1:7480.evil.example",
            "127.0.0.1:7480",
        ] {
            assert!(!same_origin(&headers(&[host, ("origin", bad)])), "{bad}");
        }
        for site in ["none", "same-site", "cross-site"] {
            assert!(
                !same_origin(&headers(&[host, ("sec-fetch-site", site)])),
                "{site}"
            );
        }
        assert!(!same_origin(&headers(&[("origin", "http://")])), "no host");
    }

    #[test]
    fn only_the_page_and_the_sign_in_are_public() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::HEAD, "/"));
        assert!(is_public(&Method::POST, "/login"));
        assert!(!is_public(&Method::POST, "/"));
        assert!(!is_public(&Method::GET, "/login"));
        assert!(!is_public(&Method::GET, "/api/runs"));
        assert!(!is_public(&Method::GET, "/metrics"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", ""));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; portflow_token=abc; b=2")]);
        assert_eq!(cookie_token(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "portflow_token=xyz")]);
        assert_eq!(cookie_token(&h), Some("xyz"));
        let h = headers(&[("cookie", "portflow_token_old=abc")]);
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn cookie_from_another_site_is_ignored() {
        let h = headers(&[
            ("cookie", "portflow_token=abc"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert_eq!(cookie_token(&h), None);
        let h = headers(&[
            ("cookie", "portflow_token=abc"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(cookie_token(&h), None);
        let h = headers(&[
            ("cookie", "portflow_token=abc"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(cookie_token(&h), Some("abc"));
    }
}
