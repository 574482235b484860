//! The simulated Entra token endpoint: OAuth2 client credentials for one
//! registered app, beside the simulated Graph (`portflow sim serve`).
//!
//! `POST /{tenant}/oauth2/v2.0/token` (form-encoded) grants an access token
//! for a client secret or a certificate-signed client assertion (RS256 +
//! `x5t`, PS256 + `x5t#S256`), checked as Entra does; refusals carry Entra's
//! error shape and AADSTS codes. Only the app's public certificate is needed.
//! Access tokens are HS256 JWTs under a random per-process key, with the
//! granted application permissions in `roles`; [`EntraSim`] is also the
//! [`TokenCheck`] of the Graph router, on the tenant's clock.
//!
//! Scope `48ac35b8-9aa8-4d74-927d-1f4a14a0b239/.default` (the Skype and Teams
//! Tenant Admin API, which `Connect-MicrosoftTeams -AccessTokens` needs) gets
//! a token with that resource as `aud` ([`Audience::Teams`]): the Graph routes
//! refuse it, and only it admits the simulated Teams PowerShell endpoint
//! ([`TeamsTokens`]).
//!
//! No secret, assertion or token is logged or echoed in a refusal.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Map, Value};

use super::odata;
use super::{Reject, TokenCheck};
use crate::backend::config::Secret;
use crate::backend::sim::db::guid;
use crate::backend::sim::rng::Key;
use crate::clock::{SharedClock, Timestamp};

/// The token path after the tenant segment.
pub const TOKEN_PATH_SUFFIX: &str = "/oauth2/v2.0/token";
/// `client_assertion_type` of a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far in the future an assertion's `nbf` may be (clock skew).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Longest assertion lifetime (`exp − nbf`) Entra accepts.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The Skype and Teams Tenant Admin API's application id: the `aud` of its tokens.
pub const TEAMS_RESOURCE: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";
/// The scope a client asks for a Teams PowerShell token with.
pub const TEAMS_SCOPE: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239/.default";
/// Largest token request body read.
const MAX_FORM: usize = 64 * 1024;
/// Longest client assertion or access token looked at.
const MAX_JWT: usize = 16 * 1024;

/// Why the app registration cannot be set up. Names files, never content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    /// The certificate file could not be read.
    #[error("cannot read certificate file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
    /// No `CERTIFICATE` block.
    #[error("{0}: no PEM CERTIFICATE block (the app's public certificate)")]
    NoCertificate(String),
    /// The certificate's key is not RSA, or the DER is not a certificate.
    #[error("{0}: not an X.509 certificate with an RSA public key")]
    NotRsa(String),
    /// Neither a certificate nor a secret.
    #[error("the app registration needs a certificate or a client secret")]
    NoCredential,
    /// The system's randomness failed (the token signing key).
    #[error("no system randomness for the token signing key")]
    Randomness,
}

/// The app's registered certificate: its thumbprints and RSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RegisteredCertificate {
    x5t: String,
    x5t_s256: String,
    /// PKCS#1 `RSAPublicKey` DER, as ring's RSA verifiers take it.
    public_key: Vec<u8>,
}

impl fmt::Debug for RegisteredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredCertificate")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

impl RegisteredCertificate {
    /// Load the first certificate of a PEM file (a private key beside it is ignored).
    pub fn from_pem_file(path: &Path) -> Result<RegisteredCertificate, RegistrationError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| RegistrationError::Read {
            path: name.clone(),
            reason: e.kind().to_string(),
        })?;
        RegisteredCertificate::from_pem(&bytes, &name)
    }

    /// Load from PEM text; `name` is used in error messages.
    pub fn from_pem(pem: &[u8], name: &str) -> Result<RegisteredCertificate, RegistrationError> {
        let cert = CertificateDer::from_pem_slice(pem)
            .map_err(|_| RegistrationError::NoCertificate(name.into()))?;
        let der = cert.as_ref();
        let public_key =
            rsa_public_key(der).ok_or_else(|| RegistrationError::NotRsa(name.into()))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der);
        Ok(RegisteredCertificate {
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            public_key: public_key.to_vec(),
        })
    }

    /// `x5t`: base64url SHA-1 of the certificate's DER.
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// `x5t#S256`: base64url SHA-256 of the certificate's DER.
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }
}

/// One DER element: (tag, contents, the bytes after it). Definite lengths of
/// up to 3 bytes only (certificates are far smaller than 16 MiB).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81..=0x83 => {
            let n = usize::from(first & 0x7f);
            let bytes = input.get(2..2 + n)?;
            (
                bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
                2 + n,
            )
        }
        _ => return None,
    };
    let end = head.checked_add(len)?;
    Some((tag, input.get(head..end)?, input.get(end..)?))
}

const SEQUENCE: u8 = 0x30;
/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The PKCS#1 RSAPublicKey inside an X.509 certificate's
/// SubjectPublicKeyInfo: Certificate → tbsCertificate → [version], serial,
/// signature, issuer, validity, subject → subjectPublicKeyInfo.
fn rsa_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der(rest)?.2;
    }
    let (SEQUENCE, spki, _) = der(rest)? else {
        return None;
    };
    let (SEQUENCE, alg, after_alg) = der(spki)? else {
        return None;
    };
    let (0x06, oid, _) = der(alg)? else {
        return None;
    };
    if oid != RSA_OID {
        return None;
    }
    let (0x03, bits, _) = der(after_alg)? else {
        return None;
    };
    // A BIT STRING's first byte counts unused bits: a key has none.
    let (0, key) = bits.split_first()? else {
        return None;
    };
    // The key must be one whole SEQUENCE.
    match der(key)? {
        (SEQUENCE, _, []) => Some(key),
        _ => None,
    }
}

/// The one app registration the endpoint knows.
#[derive(Clone, Debug)]
pub struct AppRegistration {
    /// Application (client) id.
    pub client_id: String,
    /// Its client secret, if it has one (resolved at start).
    pub secret: Option<Secret>,
    /// Its certificate, if it has one.
    pub certificate: Option<RegisteredCertificate>,
}

/// What the endpoint grants, and where it is reached.
#[derive(Clone, Debug)]
pub struct EntraConfig {
    /// The directory (tenant) id, a GUID: the only tenant path segment served.
    pub tenant_id: String,
    /// The registered app.
    pub app: AppRegistration,
    /// Scheme and authority the server is reached at (no trailing `/`): the
    /// Graph base in `scope` and the tokens' `aud`, and the origin of the token
    /// URL an assertion's `aud` names.
    pub base_url: String,
    /// Application permissions granted (the tokens' `roles`).
    pub roles: Vec<String>,
    /// Lifetime of an access token (`expires_in`).
    pub token_lifetime: Duration,
}

/// The roles of an app granted every permission the simulated Graph checks
/// except `missing`.
pub fn granted_roles(missing: &[String]) -> Vec<String> {
    super::routes::PERMISSIONS
        .iter()
        .filter(|p| !missing.iter().any(|m| m == *p))
        .map(|p| p.to_string())
        .collect()
}

/// The resource a token is for (its `aud`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The simulated Graph: `aud` is the server's base URL.
    Graph,
    /// The Skype and Teams Tenant Admin API ([`TEAMS_RESOURCE`]).
    Teams,
}

/// The simulated token endpoint and the check of the tokens it issues.
pub struct EntraSim {
    cfg: EntraConfig,
    clock: SharedClock,
    /// Judges client assertions' times: the wall clock in `sim serve`, since
    /// clients sign with real time whatever the tenant's time scale.
    assertion_clock: SharedClock,
    key: ring::hmac::Key,
    /// Varies trace and correlation ids between processes.
    id_seed: u64,
    requests: AtomicU64,
}

impl fmt::Debug for EntraSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraSim")
            .field("tenant_id", &self.cfg.tenant_id)
            .field("client_id", &self.cfg.app.client_id)
            .finish_non_exhaustive()
    }
}

/// A refused token request, in Entra's terms.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

fn refuse(status: StatusCode, error: &'static str, code: u32, d: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        code,
        description: d.into(),
    }
}

fn invalid_client(code: u32, d: impl Into<String>) -> Refusal {
    refuse(StatusCode::UNAUTHORIZED, "invalid_client", code, d)
}

fn missing(param: &str) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn malformed(why: &str) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        50027,
        format!("JWT token is invalid or malformed: {why}."),
    )
}

/// A value from the request fit to repeat in a refusal (ids, names), or a
/// placeholder: never anything long or odd.
fn shown(s: &str) -> &str {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/#".contains(&b));
    if ok {
        s
    } else {
        "(not shown)"
    }
}

/// `a == b` in time independent of where they differ (over their digests,
/// so the length does not show either).
fn same_secret(a: &str, b: &str) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a.as_bytes());
    let db = ring::digest::digest(&ring::digest::SHA256, b.as_bytes());
    da.as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A NumericDate claim in seconds (integers, or a float Entra would accept).
fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

impl EntraSim {
    /// The endpoint for `cfg`, reading time from `clock` (the tenant's).
    pub fn new(cfg: EntraConfig, clock: SharedClock) -> Result<EntraSim, RegistrationError> {
        if cfg.app.secret.is_none() && cfg.app.certificate.is_none() {
            return Err(RegistrationError::NoCredential);
        }
        let rng = SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| RegistrationError::Randomness)?;
        let mut seed = [0u8; 8];
        rng.fill(&mut seed)
            .map_err(|_| RegistrationError::Randomness)?;
        Ok(EntraSim {
            cfg,
            assertion_clock: clock.clone(),
            clock,
            key,
            id_seed: u64::from_le_bytes(seed),
            requests: AtomicU64::new(0),
        })
    }

    /// Judge assertions' `nbf`/`exp` on `clock` instead of the tenant's.
    pub fn with_assertion_clock(mut self, clock: SharedClock) -> EntraSim {
        self.assertion_clock = clock;
        self
    }

    /// `/{tenant_id}/oauth2/v2.0/token`.
    pub fn token_path(&self) -> String {
        format!("/{}{TOKEN_PATH_SUFFIX}", self.cfg.tenant_id)
    }

    /// The token URL clients use, and their assertions' `aud`.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.base(), self.token_path())
    }

    fn base(&self) -> &str {
        self.cfg.base_url.trim_end_matches('/')
    }

    /// Whether `path` is a token endpoint path (`/{one segment}/oauth2/v2.0/token`).
    pub fn is_token_path(path: &str) -> bool {
        path.strip_suffix(TOKEN_PATH_SUFFIX)
            .and_then(|p| p.strip_prefix('/'))
            .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'))
    }

    /// Answer one token request.
    pub async fn serve(&self, req: Request) -> Response {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let (parts, body) = req.into_parts();
        let outcome = async {
            if parts.method != Method::POST {
                return Err(refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request",
                    900561,
                    "The endpoint only accepts POST requests.",
                ));
            }
            let segment = parts
                .uri
                .path()
                .strip_suffix(TOKEN_PATH_SUFFIX)
                .and_then(|p| p.strip_prefix('/'))
                .unwrap_or("");
            let form_typed = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(';').next().is_some_and(|t| {
                        t.trim()
                            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    })
                });
            let body = axum::body::to_bytes(body, MAX_FORM)
                .await
                .map_err(|_| malformed_body())?;
            let form = match (form_typed, std::str::from_utf8(&body)) {
                (true, Ok(text)) => odata::query_pairs(text).ok_or_else(malformed_body)?,
                _ => Vec::new(),
            };
            self.grant(segment, &form, now)
        }
        .await;
        match outcome {
            Ok(body) => respond(StatusCode::OK, &body),
            Err(r) => self.refusal(&r, n, now),
        }
    }

    fn refusal(&self, r: &Refusal, n: u64, now: Timestamp) -> Response {
        let k = Key::new(self.id_seed).int(n);
        let trace = guid(k.str("trace"));
        let correlation = guid(k.str("correlation"));
        let ts = now.rfc3339();
        let body = json!({
            "error": r.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}",
                r.code, r.description
            ),
            "error_codes": [r.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{}/error?code={}", self.base(), r.code),
        });
        respond(r.status, &body)
    }

    /// Check one client-credentials request; the token response or a refusal.
    fn grant(
        &self,
        segment: &str,
        form: &[(String, String)],
        now: Timestamp,
    ) -> Result<Value, Refusal> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        if !segment.eq_ignore_ascii_case(&self.cfg.tenant_id) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{}' not found. Check to make sure you have the correct tenant ID \
                     and are signing into the correct cloud.",
                    shown(segment)
                ),
            ));
        }
        let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
        if grant_type != "client_credentials" {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type (the simulator serves \
                 client_credentials only).",
            ));
        }
        let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
        let app = &self.cfg.app;
        if !client_id.eq_ignore_ascii_case(&app.client_id) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{}' was not found in the directory '{}'.",
                    shown(client_id),
                    self.cfg.tenant_id
                ),
            ));
        }
        let scope = field("scope").ok_or_else(|| missing("scope"))?;
        let graph_scopes = [
            format!("{}/.default", self.base()),
            format!("{}/.default", super::GRAPH_BASE),
        ];
        let audience = if graph_scopes.iter().any(|a| a == scope) {
            Audience::Graph
        } else if scope.eq_ignore_ascii_case(TEAMS_SCOPE) {
            Audience::Teams
        } else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope \
                     {} is not valid (expected {} or {TEAMS_SCOPE}).",
                    shown(scope),
                    graph_scopes[0]
                ),
            ));
        };
        match (field("client_assertion"), field("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    7000218,
                    "The request body must contain only one of the following parameters: \
                     'client_assertion' or 'client_secret'.",
                ))
            }
            (None, None) => {
                return Err(invalid_client(
                    7000218,
                    "The request body must contain the following parameter: \
                     'client_assertion' or 'client_secret'.",
                ))
            }
            (Some(jwt), None) => {
                if field("client_assertion_type") != Some(ASSERTION_TYPE) {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        900144,
                        format!(
                            "The request body must contain the following parameter: \
                             'client_assertion_type' with the value '{ASSERTION_TYPE}'."
                        ),
                    ));
                }
                self.check_assertion(jwt, self.assertion_clock.now())?;
            }
            (None, Some(secret)) => {
                let ok = app
                    .secret
                    .as_ref()
                    .is_some_and(|s| same_secret(s.expose(), secret));
                if !ok {
                    return Err(invalid_client(
                        7000215,
                        format!(
                            "Invalid client secret provided. Ensure the secret being sent in \
                             the request is the client secret value, not the client secret ID, \
                             for a secret added to app '{}'.",
                            app.client_id
                        ),
                    ));
                }
            }
        }
        let secs = self.cfg.token_lifetime.as_secs();
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": self.issue_for(now, audience),
        }))
    }

    /// Verify a client assertion: header, signature with the registered
    /// certificate, then the claims at `now`.
    fn check_assertion(&self, jwt: &str, now: Timestamp) -> Result<(), Refusal> {
        if jwt.len() > MAX_JWT {
            return Err(malformed("the assertion is too long"));
        }
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err(malformed("not three dot-separated parts"));
        };
        let header = b64_json(h).ok_or_else(|| malformed("the header is not base64url JSON"))?;
        let Some(cert) = &self.cfg.app.certificate else {
            return Err(invalid_client(
                700027,
                "Client assertion contains an invalid signature. [Reason - No certificate \
                 credential is registered on the application.]",
            ));
        };
        let (thumb_name, registered, alg): (
            &str,
            &str,
            &'static dyn ring::signature::VerificationAlgorithm,
        ) = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => ("x5t", &cert.x5t, &RSA_PKCS1_2048_8192_SHA256),
            Some("PS256") => ("x5t#S256", &cert.x5t_s256, &RSA_PSS_2048_8192_SHA256),
            _ => {
                return Err(invalid_client(
                    700027,
                    "Client assertion failed signature validation. [Reason - the signature \
                     algorithm is not RS256 or PS256.]",
                ))
            }
        };
        let Some(thumb) = header.get(thumb_name).and_then(Value::as_str) else {
            return Err(invalid_client(
                700027,
                format!(
                    "Client assertion failed signature validation. [Reason - No certificate \
                     thumbprint specified in token header ({thumb_name}).]"
                ),
            ));
        };
        if thumb != registered {
            return Err(invalid_client(
                700027,
                format!(
                    "Client assertion contains an invalid signature. [Reason - The key was not \
                     found., Thumbprint of key used by client: '{}']",
                    shown(thumb)
                ),
            ));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| malformed("the signature is not base64url"))?;
        let input = &jwt[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(alg, &cert.public_key)
            .verify(input.as_bytes(), &sig)
            .map_err(|_| {
                invalid_client(
                    700027,
                    "Client assertion failed signature validation. [Reason - The provided \
                     signature value did not match the expected signature value.]",
                )
            })?;
        let claims = b64_json(p).ok_or_else(|| malformed("the claims are not base64url JSON"))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("aud") != Some(self.token_url().as_str()) {
            return Err(invalid_client(
                700023,
                format!(
                    "Client assertion audience claim does not match Realm issuer (expected \
                     '{}').",
                    self.token_url()
                ),
            ));
        }
        let client = self.cfg.app.client_id.as_str();
        let is_client = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case(client));
        if !is_client(text("iss")) || !is_client(text("sub")) {
            return Err(invalid_client(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter \
                 (iss and sub must both be the client id).",
            ));
        }
        let exp = seconds(&claims, "exp").ok_or_else(|| malformed("no 'exp' claim"))?;
        let nbf = seconds(&claims, "nbf").ok_or_else(|| malformed("no 'nbf' claim"))?;
        if text("jti").is_none_or(str::is_empty) {
            return Err(malformed("no 'jti' claim"));
        }
        let now_ms = now.millis();
        let skew = CLOCK_SKEW.as_millis() as i64;
        let in_range =
            exp.saturating_mul(1000) > now_ms && nbf.saturating_mul(1000) <= now_ms + skew;
        let max_life = MAX_ASSERTION_LIFETIME.as_secs() as i64;
        if !in_range || exp.saturating_sub(nbf) > max_life || exp <= nbf {
            return Err(invalid_client(
                700024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, \
                     assertion valid from {}, expiry time of assertion {} (at most {} minutes \
                     from nbf to exp).",
                    now.rfc3339(),
                    Timestamp(nbf.saturating_mul(1000)).rfc3339(),
                    Timestamp(exp.saturating_mul(1000)).rfc3339(),
                    max_life / 60
                ),
            ));
        }
        Ok(())
    }

    /// A new Graph access token issued at `now`.
    pub fn issue(&self, now: Timestamp) -> String {
        self.issue_for(now, Audience::Graph)
    }

    /// A new access token for `audience`, issued at `now`.
    pub fn issue_for(&self, now: Timestamp, audience: Audience) -> String {
        let iat = now.millis().div_euclid(1000);
        let exp = iat.saturating_add(self.cfg.token_lifetime.as_secs() as i64);
        let tid = &self.cfg.tenant_id;
        let header = json!({"typ": "JWT", "alg": "HS256"});
        let mut claims = json!({
            "aud": self.audience(audience),
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "appid": self.cfg.app.client_id,
            "idtyp": "app",
            "tid": tid,
            "ver": "1.0",
        });
        // Graph permissions mean nothing to the Teams admin API (it goes by
        // the app's directory role), so its tokens carry none.
        if audience == Audience::Graph {
            claims["roles"] = json!(self.cfg.roles);
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = ring::hmac::sign(&self.key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The `aud` of `audience`'s tokens.
    fn audience(&self, audience: Audience) -> &str {
        match audience {
            Audience::Graph => self.base(),
            Audience::Teams => TEAMS_RESOURCE,
        }
    }

    /// Whether `token` is one of ours for `audience`, unexpired.
    pub fn check_for(&self, token: &str, audience: Audience) -> Result<(), Reject> {
        let Some(claims) = self.claims(token) else {
            return Err(Reject::invalid(
                "Access token validation failure. Invalid audience or signature.",
            ));
        };
        let ours = claims.get("aud").and_then(Value::as_str) == Some(self.audience(audience))
            && claims.get("tid").and_then(Value::as_str) == Some(self.cfg.tenant_id.as_str());
        if !ours {
            return Err(Reject::invalid(
                "Access token validation failure. Invalid audience.",
            ));
        }
        match seconds(&claims, "exp") {
            Some(exp) if self.clock.now().millis() < exp.saturating_mul(1000) => Ok(()),
            _ => Err(Reject::expired()),
        }
    }

    /// The claims of one of our tokens whose signature holds.
    fn claims(&self, token: &str) -> Option<Map<String, Value>> {
        if token.len() > MAX_JWT {
            return None;
        }
        let (input, sig) = token.rsplit_once('.')?;
        let (_, payload) = input.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        ring::hmac::verify(&self.key, input.as_bytes(), &sig).ok()?;
        b64_json(payload)
    }
}

fn malformed_body() -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        "The request body is not a valid form-encoded body.",
    )
}

fn respond(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

impl TokenCheck for EntraSim {
    /// Graph tokens only.
    fn check(&self, token: &str) -> Result<(), Reject> {
        self.check_for(token, Audience::Graph)
    }

    fn issued_at(&self, token: &str) -> Option<Timestamp> {
        let iat = seconds(&self.claims(token)?, "iat")?;
        Some(Timestamp(iat.saturating_mul(1000)))
    }
}

/// The check of the simulated Teams PowerShell endpoint: [`EntraSim`]'s
/// tokens for [`Audience::Teams`] only.
pub struct TeamsTokens(pub Arc<EntraSim>);

impl TokenCheck for TeamsTokens {
    fn check(&self, token: &str) -> Result<(), Reject> {
        self.0.check_for(token, Audience::Teams)
    }

    fn issued_at(&self, token: &str) -> Option<Timestamp> {
        self.0.issued_at(token)
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
