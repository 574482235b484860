//! The request layer of the Graph backend: one [`GraphClient`] per tenant.
//!
//! Every request gets a fresh `client-request-id` (a UUID, returned in
//! [`Reply`] so the caller can record it for audit) and `Authorization:
//! Bearer` from the [`TokenCache`]; a 401 that says the token went stale
//! invalidates it and retries **once**. Non-2xx answers go through
//! [`errors::classify`] (so `Retry-After` lands in the [`BackendError`]).
//! Requests in flight are capped per tenant by a semaphore
//! ([`ClientConfig::max_concurrency`]); the rate limit itself is the
//! registry's `RateLimiter`, not this layer's.
//!
//! Absolute URLs the service hands back (`@odata.nextLink`, a long-running
//! operation's `Location`) are followed only when they have the configured
//! Graph base's origin, checked **before** a token is attached; a foreign one
//! is a fatal error naming the host.
//!
//! Logs (tracing, debug): method, path, status, the call's idempotency key and
//! attempt, and the client-request-id. Never a token, never a body.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::auth::TokenCache;
use super::{errors, Endpoints};
use crate::backend::{BackendError, ErrorKind};
use crate::clock::SharedClock;

/// Requests in flight per tenant unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// Most pages [`GraphClient::get_all`] follows (a loop guard).
const MAX_PAGES: usize = 1000;

/// Times a throttled or unavailable `GET` is sent again before its error is
/// returned (a read changes nothing; the engine retries writes itself).
pub const DEFAULT_READ_RETRIES: u32 = 3;

/// Longest pause before a read is sent again.
const MAX_READ_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// Knobs of the request layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Most requests in flight at once for this tenant (at least 1).
    pub max_concurrency: usize,
    /// [`DEFAULT_READ_RETRIES`]; after `Retry-After`, else 2, 4, 8 s.
    pub read_retries: u32,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            read_retries: DEFAULT_READ_RETRIES,
        }
    }
}

/// Who a request is made for, for the debug log: the engine's idempotency key
/// (`None` for an observation) and attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogCtx<'a> {
    /// [`crate::backend::Call::key`].
    pub key: Option<&'a str>,
    /// [`crate::backend::Call::attempt`].
    pub attempt: u32,
}

/// A successful (2xx) answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The JSON body; `Null` when empty (204, 202).
    pub body: Value,
    /// The `client-request-id` this request was sent with (of the last
    /// attempt, when a stale token made it retry).
    pub client_request_id: String,
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The items of a collection body: OData's `value` array, or the object the
/// doc examples put in `value` (one item). Anything else: none.
pub fn items(body: &Value) -> Vec<Value> {
    match body.get("value") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    }
}

/// An entity body, unwrapped when the doc examples' shape wraps it in
/// `value` (an object whose `value` is an object).
pub fn entity(body: &Value) -> &Value {
    match body.get("value") {
        Some(v @ Value::Object(_)) => v,
        _ => body,
    }
}

/// A random (version 4) UUID from the system's randomness.
pub fn new_uuid() -> Result<String, BackendError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| BackendError::new(ErrorKind::Fatal, "no system randomness"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The HTTP layer of one tenant.
pub struct GraphClient {
    http: reqwest::Client,
    /// The Graph service root (origin + optional path), no trailing `/`.
    base: Url,
    /// `<base>/v1.0`.
    v1: String,
    tokens: Arc<TokenCache>,
    clock: SharedClock,
    permits: Semaphore,
    read_retries: u32,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client calling `endpoints.graph` with `http` (built by
    /// [`super::http_client`]) and tokens from `tokens`.
    pub fn new(
        endpoints: &Endpoints,
        http: reqwest::Client,
        tokens: Arc<TokenCache>,
        clock: SharedClock,
        cfg: &ClientConfig,
    ) -> Result<GraphClient, String> {
        let base = Url::parse(&endpoints.graph)
            .map_err(|_| format!("graph base {:?} is not a URL", endpoints.graph))?;
        Ok(GraphClient {
            http,
            base,
            v1: endpoints.v1(),
            tokens,
            clock,
            permits: Semaphore::new(cfg.max_concurrency.max(1)),
            read_retries: cfg.read_retries,
        })
    }

    /// A token from the cache (for `doctor`, which reads its `roles`).
    pub async fn token(&self) -> Result<super::auth::Token, BackendError> {
        self.tokens.token().await
    }

    /// The injected clock (also used for polling).
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// `url` parsed and checked to have the Graph base's origin (scheme, host
    /// and port); otherwise a fatal error naming the host. Nothing is sent.
    pub fn same_origin(&self, url: &str, what: &str) -> Result<Url, BackendError> {
        let u = Url::parse(url).map_err(|_| {
            BackendError::new(
                ErrorKind::Fatal,
                format!("{what}: the service returned an unreadable URL"),
            )
        })?;
        if u.origin() != self.base.origin() {
            let host = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => "(no host)".to_string(),
            };
            return Err(BackendError::new(
                ErrorKind::Fatal,
                format!(
                    "{what}: the service pointed to host {host:?}, not the configured Graph \
                     host {:?}; refusing to send a token there",
                    self.base.host_str().unwrap_or("")
                ),
            ));
        }
        Ok(u)
    }

    /// `path_and_query` (already escaped, see [`super::odata`]) under `/v1.0`.
    fn url(&self, path_and_query: &str) -> Result<Url, BackendError> {
        Url::parse(&format!("{}{path_and_query}", self.v1)).map_err(|_| {
            BackendError::new(ErrorKind::Fatal, "cannot build a Graph URL for the request")
        })
    }

    /// `GET /v1.0<path_and_query>`.
    pub async fn get(&self, path_and_query: &str, log: LogCtx<'_>) -> Result<Reply, BackendError> {
        let url = self.url(path_and_query)?;
        self.read(url, log).await
    }

    /// A `GET`, sent again after throttling or unavailability.
    async fn read(&self, url: Url, log: LogCtx<'_>) -> Result<Reply, BackendError> {
        let mut tries = 0;
        loop {
            match self.send(Method::GET, url.clone(), None, log).await {
                Err(e)
                    if tries < self.read_retries
                        && matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient) =>
                {
                    tries += 1;
                    let pause = e
                        .retry_after()
                        .unwrap_or(std::time::Duration::from_secs(1 << tries))
                        .min(MAX_READ_PAUSE);
                    self.clock.sleep_until(self.clock.now().plus(pause)).await;
                }
                other => return other,
            }
        }
    }

    /// `GET` an absolute URL the service returned (origin checked first).
    pub async fn get_absolute(
        &self,
        url: &str,
        what: &str,
        log: LogCtx<'_>,
    ) -> Result<Reply, BackendError> {
        let url = self.same_origin(url, what)?;
        self.read(url, log).await
    }

    /// `POST /v1.0<path>` with a JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        log: LogCtx<'_>,
    ) -> Result<Reply, BackendError> {
        let url = self.url(path)?;
        self.send(Method::POST, url, Some(body), log).await
    }

    /// Every item of a collection, following `@odata.nextLink` (same origin
    /// only); both `value` shapes accepted ([`items`]).
    pub async fn get_all(
        &self,
        path_and_query: &str,
        log: LogCtx<'_>,
    ) -> Result<Vec<Value>, BackendError> {
        let mut reply = self.get(path_and_query, log).await?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            out.extend(items(&reply.body));
            let Some(next) = reply.body.get("@odata.nextLink").and_then(Value::as_str) else {
                return Ok(out);
            };
            let next = next.to_string();
            reply = self.get_absolute(&next, "@odata.nextLink", log).await?;
        }
        Err(BackendError::new(
            ErrorKind::Fatal,
            format!("paging did not end after {MAX_PAGES} pages"),
        ))
    }

    /// One request: a permit, a token, a fresh client-request-id; a stale
    /// token is invalidated and the request retried once.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        log: LogCtx<'_>,
    ) -> Result<Reply, BackendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BackendError::new(ErrorKind::Fatal, "the Graph client is closed"))?;
        let prefer = url.path().contains("/admin/teams/userConfigurations");
        let what = format!("{method} {}", url.path());
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let crid = new_uuid()?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("client-request-id", &crid)
                .header("return-client-request-id", "true");
            let mut auth = HeaderValue::from_str(&token.bearer()).map_err(|_| {
                BackendError::new(
                    ErrorKind::Auth,
                    "the token endpoint issued an unusable token",
                )
            })?;
            auth.set_sensitive(true);
            req = req.header(AUTHORIZATION, auth);
            if prefer {
                req = req.header("Prefer", "include-unknown-enum-members");
            }
            if let Some(b) = body {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(
                        key = log.key,
                        attempt = log.attempt,
                        client_request_id = %crid,
                        request = %what,
                        "graph request failed without a response"
                    );
                    return Err(errors::from_reqwest(&e, &what));
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| errors::from_reqwest(&e, &what))?;
            tracing::debug!(
                key = log.key,
                attempt = log.attempt,
                client_request_id = %crid,
                request = %what,
                status,
                "graph request"
            );
            if (200..300).contains(&status) {
                let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|_| {
                        BackendError::new(
                            ErrorKind::Fatal,
                            format!("{what}: HTTP {status} with a body that is not JSON"),
                        )
                    })?
                };
                return Ok(Reply {
                    status,
                    headers,
                    body,
                    client_request_id: crid,
                });
            }
            let parsed = errors::parse_error_body(&bytes);
            if !retried && status == 401 && errors::is_stale_token(status, &parsed) {
                retried = true;
                self.tokens.invalidate(&token).await;
                continue;
            }
            let mut e = errors::classify(status, &headers, &bytes, self.clock.now());
            e.message = format!("{what}: {} [client-request-id {crid}]", e.message);
            return Err(e);
        }
    }
}
