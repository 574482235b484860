//! OAuth2 client credentials (app-only), hand-written (BACKENDS.md (b)).
//!
//! A [`Credential`] is a client secret (a [`SecretRef`], resolved when a token
//! is requested) or a certificate (PEM file: certificate + private key) that
//! signs a client assertion JWT: `RS256` + `x5t` by default, `PS256` +
//! `x5t#S256` as an option. A [`TokenCache`] asks a [`TokenEndpoint`] for a
//! token, keeps it until `expires_in − 5 min`, refreshes once at a time, and
//! forgets a token the service rejected (401) so the caller retries once.
//!
//! No secret, assertion or token appears in a `Debug`/`Display` output or an
//! error message: [`Token`], [`TokenForm`] and [`Certificate`] redact.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::errors;
use crate::backend::{BackendError, ErrorKind, SecretRef};
use crate::clock::{SharedClock, Timestamp};

/// How long before `expires_in` runs out a cached token is refreshed.
pub const EXPIRY_SKEW: Duration = Duration::from_secs(5 * 60);

/// Lifetime of a client assertion (`exp − nbf`); Entra accepts ≤ 10 min.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// `client_assertion_type` for a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Signature algorithm of the client assertion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JwtAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, header thumbprint `x5t` (SHA-1).
    #[default]
    Rs256,
    /// RSASSA-PSS with SHA-256, header thumbprint `x5t#S256` (SHA-256).
    Ps256,
}

impl JwtAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlg::Rs256 => "RS256",
            JwtAlg::Ps256 => "PS256",
        }
    }
}

/// Why a credential could not be loaded or used. Names files, never content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The PEM file could not be read.
    #[error("cannot read certificate file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
    /// No `CERTIFICATE` block.
    #[error(
        "{0}: no PEM CERTIFICATE block (the file must hold the certificate and its private key)"
    )]
    NoCertificate(String),
    /// No usable private key block.
    #[error(
        "{0}: no RSA private key (PEM PRIVATE KEY / RSA PRIVATE KEY); convert a PFX with \
         `openssl pkcs12 -in app.pfx -nodes -out app.pem`"
    )]
    NoKey(String),
    /// The key is not an RSA key ring accepts (≥ 2048 bits).
    #[error("{0}: the private key is not a usable RSA key (2048 bits or more)")]
    BadKey(String),
}

/// A certificate credential: the certificate's DER (for the thumbprint) and
/// its RSA key. `Debug` shows the thumbprint only.
pub struct Certificate {
    cert_der: Vec<u8>,
    key: RsaKeyPair,
    alg: JwtAlg,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("alg", &self.alg)
            .field("x5t", &self.thumbprint().1)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Certificate {
    /// Load the first certificate and the private key from one PEM file.
    pub fn from_pem_file(path: &Path, alg: JwtAlg) -> Result<Certificate, CredentialError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CredentialError::Read {
            path: name.clone(),
            reason: e.kind().to_string(),
        })?;
        Certificate::from_pem(&bytes, alg, &name)
    }

    /// Load from PEM text; `name` is used in error messages.
    pub fn from_pem(pem: &[u8], alg: JwtAlg, name: &str) -> Result<Certificate, CredentialError> {
        let cert = CertificateDer::from_pem_slice(pem)
            .map_err(|_| CredentialError::NoCertificate(name.into()))?;
        let key =
            PrivateKeyDer::from_pem_slice(pem).map_err(|_| CredentialError::NoKey(name.into()))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(CredentialError::BadKey(name.into())),
        }
        .map_err(|_| CredentialError::BadKey(name.into()))?;
        Ok(Certificate {
            cert_der: cert.as_ref().to_vec(),
            key,
            alg,
        })
    }

    /// The signature algorithm.
    pub fn alg(&self) -> JwtAlg {
        self.alg
    }

    /// The header thumbprint: `("x5t", b64url(SHA-1(DER)))` for RS256,
    /// `("x5t#S256", b64url(SHA-256(DER)))` for PS256.
    pub fn thumbprint(&self) -> (&'static str, String) {
        match self.alg {
            JwtAlg::Rs256 => (
                "x5t",
                URL_SAFE_NO_PAD.encode(
                    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert_der)
                        .as_ref(),
                ),
            ),
            JwtAlg::Ps256 => (
                "x5t#S256",
                URL_SAFE_NO_PAD
                    .encode(ring::digest::digest(&ring::digest::SHA256, &self.cert_der).as_ref()),
            ),
        }
    }

    /// A signed client assertion for `client_id` at `audience` (the token
    /// endpoint URL), valid from `now` for [`ASSERTION_LIFETIME`].
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: Timestamp,
        jti: &str,
    ) -> Result<Assertion, BackendError> {
        let (x5t_name, x5t) = self.thumbprint();
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), self.alg.as_str().into());
        header.insert("typ".into(), "JWT".into());
        header.insert(x5t_name.into(), x5t.into());
        let nbf = now.millis().div_euclid(1000);
        let exp = nbf + ASSERTION_LIFETIME.as_secs() as i64;
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": nbf,
            "iat": nbf,
            "exp": exp,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        let padding: &'static dyn ring::signature::RsaEncoding = match self.alg {
            JwtAlg::Rs256 => &RSA_PKCS1_SHA256,
            JwtAlg::Ps256 => &RSA_PSS_SHA256,
        };
        self.key
            .sign(
                padding,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| BackendError::new(ErrorKind::Fatal, "cannot sign the client assertion"))?;
        Ok(Assertion(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }
}

/// A signed client assertion (a bearer credential: redacted in `Debug`).
pub struct Assertion(String);

impl Assertion {
    /// The compact JWT, to put in the form.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Assertion([redacted])")
    }
}

/// How the app proves its identity.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A client secret, resolved from its reference at each token request
    /// (so a rotated secret file is picked up).
    Secret(SecretRef),
    /// A certificate signing client assertions.
    Certificate(Arc<Certificate>),
}

/// The form of a token request. `Debug` shows field names only.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenForm(Vec<(&'static str, String)>);

impl TokenForm {
    /// The fields, to send as `application/x-www-form-urlencoded`.
    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.0
    }

    /// One field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(k, _)| *k).collect();
        write!(f, "TokenForm({names:?}, values redacted)")
    }
}

/// Who asks for tokens, where, and for what.
#[derive(Clone, Debug)]
pub struct TokenSource {
    /// Application (client) id.
    pub client_id: String,
    /// The credential.
    pub credential: Credential,
    /// Token endpoint URL (`…/{tenant}/oauth2/v2.0/token`): the assertion's `aud`.
    pub token_url: String,
    /// `<graph base>/.default`.
    pub scope: String,
}

impl TokenSource {
    /// Build the form of a client-credentials request at `now`.
    pub fn form(&self, now: Timestamp) -> Result<TokenForm, BackendError> {
        let mut f = vec![
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
            ("grant_type", "client_credentials".to_string()),
        ];
        match &self.credential {
            Credential::Secret(r) => {
                let s = r.resolve().map_err(|e| {
                    BackendError::new(ErrorKind::Auth, format!("client secret: {e}"))
                })?;
                f.push(("client_secret", s.expose().to_string()));
            }
            Credential::Certificate(c) => {
                let a = c.assertion(
                    &self.client_id,
                    &self.token_url,
                    now,
                    &super::client::new_uuid()?,
                )?;
                f.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
                f.push(("client_assertion", a.0));
            }
        }
        Ok(TokenForm(f))
    }
}

/// An access token and when it stops being used. `Debug`/`Display` redact.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: Arc<str>,
    refresh_at: Timestamp,
}

impl Token {
    /// A token usable until `refresh_at`.
    pub fn new(value: impl Into<Arc<str>>, refresh_at: Timestamp) -> Token {
        Token {
            value: value.into(),
            refresh_at,
        }
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// The raw token, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The application permissions an app-only token grants (its `roles`
    /// claim), when it is a JWT that has them. The signature is not checked:
    /// this is for `doctor`'s report, never for a decision the service makes.
    pub fn roles(&self) -> Option<Vec<String>> {
        let payload = self.value.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let roles = claims.get("roles")?.as_array()?;
        Some(
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// When the cache stops handing this token out.
    pub fn refresh_at(&self) -> Timestamp {
        self.refresh_at
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token([redacted], refresh_at {})", self.refresh_at)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted token]")
    }
}

/// What a token endpoint grants.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The access token.
    pub access_token: String,
    /// Lifetime from the request, in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Grant([redacted], expires_in {})", self.expires_in)
    }
}

/// The token endpoint: one form POST. A seam, so the cache is tested without
/// a network.
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// Send `form`; a grant or a classified error (AADSTS errors → auth).
    async fn request(&self, form: &TokenForm) -> Result<Grant, BackendError>;
}

/// `{token_type, expires_in, access_token}`; `expires_in` may be a string.
#[derive(Deserialize)]
struct GrantBody {
    access_token: String,
    expires_in: serde_json::Value,
}

/// Read a successful token response.
pub fn parse_grant(body: &[u8]) -> Result<Grant, BackendError> {
    let bad = || {
        BackendError::new(
            ErrorKind::Fatal,
            "token endpoint: unreadable token response",
        )
    };
    let g: GrantBody = serde_json::from_slice(body).map_err(|_| bad())?;
    let expires_in = match &g.expires_in {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Grant {
        access_token: g.access_token,
        expires_in,
    })
}

/// The token endpoint over HTTPS (HTTP only for loopback overrides, see
/// [`super::Endpoints`]). Redirects are not followed.
pub struct HttpTokenEndpoint {
    client: reqwest::Client,
    url: String,
    clock: SharedClock,
}

impl HttpTokenEndpoint {
    /// POST to `url` with `client` (built by [`super::http_client`]).
    pub fn new(client: reqwest::Client, url: String, clock: SharedClock) -> HttpTokenEndpoint {
        HttpTokenEndpoint { client, url, clock }
    }
}

#[async_trait]
impl TokenEndpoint for HttpTokenEndpoint {
    async fn request(&self, form: &TokenForm) -> Result<Grant, BackendError> {
        let what = "token request";
        let resp = self
            .client
            .post(&self.url)
            .form(form.fields())
            .send()
            .await
            .map_err(|e| errors::from_reqwest(&e, what))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| errors::from_reqwest(&e, what))?;
        if (200..300).contains(&status) {
            parse_grant(&body)
        } else {
            let mut e = errors::classify(status, &headers, &body, self.clock.now());
            e.message = format!("{what}: {}", e.message);
            Err(e)
        }
    }
}

/// One cached token per (authority, scope), refreshed single-flight.
pub struct TokenCache {
    source: TokenSource,
    endpoint: Arc<dyn TokenEndpoint>,
    clock: SharedClock,
    /// Dates client assertions: Entra judges them on real time, even when a
    /// rehearsal's clock runs faster.
    wall: SharedClock,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("client_id", &self.source.client_id)
            .field("token_url", &self.source.token_url)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache that asks `endpoint` on behalf of `source`.
    pub fn new(
        source: TokenSource,
        endpoint: Arc<dyn TokenEndpoint>,
        clock: SharedClock,
    ) -> TokenCache {
        TokenCache {
            source,
            endpoint,
            wall: clock.clone(),
            clock,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Date assertions on `wall` instead of the cache's clock.
    pub fn with_wall_clock(mut self, wall: SharedClock) -> TokenCache {
        self.wall = wall;
        self
    }

    /// A token valid for at least [`EXPIRY_SKEW`] more. Concurrent callers
    /// wait for the one refresh in flight instead of starting their own.
    pub async fn token(&self) -> Result<Token, BackendError> {
        let mut current = self.current.lock().await;
        let now = self.clock.now();
        if let Some(t) = current.as_ref() {
            if now < t.refresh_at {
                return Ok(t.clone());
            }
        }
        *current = None;
        let form = self.source.form(self.wall.now())?;
        let grant = self.endpoint.request(&form).await?;
        let refresh_at =
            now.plus(Duration::from_secs(grant.expires_in).saturating_sub(EXPIRY_SKEW));
        let token = Token::new(grant.access_token, refresh_at);
        // A token that lives less than the skew is used for this call only.
        if refresh_at > now {
            *current = Some(token.clone());
        }
        Ok(token)
    }

    /// Forget `rejected` after the service answered 401 with it; the next
    /// [`TokenCache::token`] fetches a new one. A token already replaced (by
    /// another caller's invalidate and refresh) is left alone, so many
    /// concurrent 401s cause one refetch.
    pub async fn invalidate(&self, rejected: &Token) {
        let mut current = self.current.lock().await;
        if current.as_ref() == Some(rejected) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    // Test-only key material (tests/fixtures/graph/README.md).
    const PEM: &[u8] = include_bytes!("../../../tests/fixtures/graph/test-app.pem");
    const CERT_ONLY: &[u8] = include_bytes!("../../../tests/fixtures/graph/test-app-cert.pem");
    const KEY_ONLY: &[u8] = include_bytes!("../../../tests/fixtures/graph/test-app-key.pem");
    const PUBLIC_DER: &[u8] = include_bytes!("../../../tests/fixtures/graph/test-app-public.der");
    const X5T: &str = "FmrYooa09RTGwKZoqoDDHVv_HIU";
    const X5T_S256: &str = "miaXp4ACYBo5KiWmVKrrepvj4B-qE9AzS4DZ5hn2Pgg";
    const CLIENT: &str = "9a3e0000-0000-4000-8000-000000000000";
    const AUD: &str =
        "https://login.microsoftonline.com/2f1c0000-0000-4000-8000-000000000000/oauth2/v2.0/token";
    /// 2026-11-30T20:00:00.750Z.
    const NOW: Timestamp = Timestamp(1_796_068_800_750);

    fn cert(alg: JwtAlg) -> Certificate {
        Certificate::from_pem(PEM, alg, "test-app.pem").expect("test key")
    }

    fn decode_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64url")).expect("json")
    }

    /// Split, decode and verify with the public key openssl extracted.
    fn verify(
        jwt: &str,
        alg: &'static dyn ring::signature::VerificationAlgorithm,
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64url sig");
        let input = format!("{}.{}", parts[0], parts[1]);
        ring::signature::UnparsedPublicKey::new(alg, PUBLIC_DER)
            .verify(input.as_bytes(), &sig)
            .expect("signature verifies with the test key's public part");
        (decode_json(parts[0]), decode_json(parts[1]))
    }

    fn check_claims(claims: &serde_json::Value) {
        assert_eq!(claims["aud"], AUD);
        assert_eq!(claims["iss"], CLIENT);
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["nbf"], 1_796_068_800);
        assert_eq!(claims["iat"], 1_796_068_800);
        let exp = claims["exp"].as_i64().expect("exp");
        let nbf = claims["nbf"].as_i64().expect("nbf");
        assert!(exp > nbf && exp - nbf <= 600, "exp − nbf = {}", exp - nbf);
    }

    #[test]
    fn rs256_assertion_header_claims_and_signature() {
        let a = cert(JwtAlg::Rs256)
            .assertion(CLIENT, AUD, NOW, "jti-1")
            .expect("sign");
        let (header, claims) = verify(a.expose(), &ring::signature::RSA_PKCS1_2048_8192_SHA256);
        assert_eq!(
            header,
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": X5T})
        );
        check_claims(&claims);
        // A PSS verifier refuses it: the padding is really PKCS#1 v1.5.
        let parts: Vec<&str> = a.expose().split('.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
        assert!(ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            PUBLIC_DER
        )
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_err());
    }

    #[test]
    fn ps256_assertion_header_claims_and_signature() {
        let a = cert(JwtAlg::Ps256)
            .assertion(CLIENT, AUD, NOW, "jti-1")
            .expect("sign");
        let (header, claims) = verify(a.expose(), &ring::signature::RSA_PSS_2048_8192_SHA256);
        assert_eq!(
            header,
            serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": X5T_S256})
        );
        check_claims(&claims);
    }

    #[test]
    fn thumbprints_match_openssl() {
        assert_eq!(cert(JwtAlg::Rs256).thumbprint(), ("x5t", X5T.to_string()));
        assert_eq!(
            cert(JwtAlg::Ps256).thumbprint(),
            ("x5t#S256", X5T_S256.to_string())
        );
    }

    #[test]
    fn pem_without_key_or_certificate_is_refused_by_name() {
        assert_eq!(
            Certificate::from_pem(CERT_ONLY, JwtAlg::Rs256, "a.pem").map(|_| ()),
            Err(CredentialError::NoKey("a.pem".into()))
        );
        assert_eq!(
            Certificate::from_pem(KEY_ONLY, JwtAlg::Rs256, "a.pem").map(|_| ()),
            Err(CredentialError::NoCertificate("a.pem".into()))
        );
        let missing = Certificate::from_pem_file(Path::new("/nonexistent/app.pem"), JwtAlg::Rs256);
        assert!(matches!(missing, Err(CredentialError::Read { .. })));
    }

    #[test]
    fn forms_for_secret_and_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value\n").expect("write");
        let secret = TokenSource {
            client_id: CLIENT.into(),
            credential: Credential::Secret(SecretRef::File(path)),
            token_url: AUD.into(),
            scope: "https://graph.microsoft.com/.default".into(),
        };
        let f = secret.form(NOW).expect("form");
        assert_eq!(f.get("client_id"), Some(CLIENT));
        assert_eq!(f.get("scope"), Some("https://graph.microsoft.com/.default"));
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("client_secret"), Some("s3cr3t-value"));
        assert!(!format!("{f:?}").contains("s3cr3t"), "{f:?}");

        let certified = TokenSource {
            credential: Credential::Certificate(Arc::new(cert(JwtAlg::Rs256))),
            ..secret
        };
        let f = certified.form(NOW).expect("form");
        assert_eq!(f.get("client_assertion_type"), Some(ASSERTION_TYPE));
        assert_eq!(f.get("client_secret"), None);
        let jwt = f.get("client_assertion").expect("assertion");
        let (_, claims) = verify(jwt, &ring::signature::RSA_PKCS1_2048_8192_SHA256);
        let jti = claims["jti"].as_str().expect("jti");
        assert_eq!(jti.len(), 36);
        let again = certified.form(NOW).expect("form");
        let (_, claims2) = verify(
            again.get("client_assertion").expect("a"),
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        );
        assert_ne!(claims2["jti"], claims["jti"], "jti is unique per assertion");
        let dbg = format!("{f:?} {:?} {certified:?}", certified.credential);
        assert!(!dbg.contains(jwt) && !dbg.contains(&jwt[..40]), "{dbg}");
    }

    #[test]
    fn tokens_redact() {
        let t = Token::new("eyJ0eXAiOi.secret-token", NOW);
        assert!(!format!("{t:?} {t}").contains("secret-token"));
        assert_eq!(t.bearer(), "Bearer eyJ0eXAiOi.secret-token");
        let g = Grant {
            access_token: "secret-token".into(),
            expires_in: 3599,
        };
        assert!(!format!("{g:?}").contains("secret-token"));
        let grant =
            parse_grant(br#"{"token_type":"Bearer","expires_in":"3599","access_token":"abc"}"#)
                .expect("grant");
        assert_eq!(grant.expires_in, 3599);
        assert!(parse_grant(b"<html>").is_err_and(|e| !e.message.contains("html")));
    }

    /// A token endpoint that counts requests and hands out `tok-<n>`.
    struct Counting {
        calls: AtomicUsize,
        expires_in: u64,
        gate: tokio::sync::Semaphore,
        forms: Mutex<Vec<TokenForm>>,
    }

    impl Counting {
        fn new(expires_in: u64, open: bool) -> Arc<Counting> {
            Arc::new(Counting {
                calls: AtomicUsize::new(0),
                expires_in,
                gate: tokio::sync::Semaphore::new(if open { 1_000 } else { 0 }),
                forms: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl TokenEndpoint for Counting {
        async fn request(&self, form: &TokenForm) -> Result<Grant, BackendError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.forms.lock().expect("lock").push(form.clone());
            let _permit = self.gate.acquire().await.expect("gate");
            Ok(Grant {
                access_token: format!("tok-{n}"),
                expires_in: self.expires_in,
            })
        }
    }

    fn cache(endpoint: Arc<Counting>, clock: Arc<ManualClock>) -> TokenCache {
        let source = TokenSource {
            client_id: CLIENT.into(),
            credential: Credential::Certificate(Arc::new(cert(JwtAlg::Rs256))),
            token_url: AUD.into(),
            scope: "https://graph.microsoft.com/.default".into(),
        };
        TokenCache::new(source, endpoint, clock)
    }

    #[tokio::test]
    async fn cache_refreshes_five_minutes_before_expiry() {
        let clock = ManualClock::new(NOW);
        let ep = Counting::new(3600, true);
        let c = cache(ep.clone(), clock.clone());
        let t1 = c.token().await.expect("token");
        assert_eq!(t1.expose(), "tok-1");
        assert_eq!(t1.refresh_at(), NOW.plus(Duration::from_secs(3300)));
        clock.advance(Duration::from_secs(3299));
        assert_eq!(c.token().await.expect("token").expose(), "tok-1");
        assert_eq!(ep.calls(), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(c.token().await.expect("token").expose(), "tok-2");
        assert_eq!(ep.calls(), 2);
        // The assertion was dated by the injected clock, not the wall clock.
        let forms = ep.forms.lock().expect("lock").clone();
        let (_, claims) = verify(
            forms[1].get("client_assertion").expect("a"),
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        );
        assert_eq!(
            claims["nbf"],
            NOW.plus(Duration::from_secs(3300)).millis() / 1000
        );
    }

    #[tokio::test]
    async fn short_lived_token_is_not_cached() {
        let clock = ManualClock::new(NOW);
        let ep = Counting::new(120, true);
        let c = cache(ep.clone(), clock);
        c.token().await.expect("token");
        c.token().await.expect("token");
        assert_eq!(ep.calls(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let clock = ManualClock::new(NOW);
        let ep = Counting::new(3600, false);
        let c = Arc::new(cache(ep.clone(), clock));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.token().await }));
        }
        // Let every caller queue behind the one fetch, then let it finish.
        while ep.calls() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        ep.gate.add_permits(1_000);
        for t in tasks {
            assert_eq!(t.await.expect("join").expect("token").expose(), "tok-1");
        }
        assert_eq!(ep.calls(), 1);
    }

    #[tokio::test]
    async fn invalidate_after_401_refetches_once() {
        let clock = ManualClock::new(NOW);
        let ep = Counting::new(3600, true);
        let c = cache(ep.clone(), clock);
        let stale = c.token().await.expect("token");
        // Three calls got 401 with the same token: one refetch in all.
        for _ in 0..3 {
            c.invalidate(&stale).await;
            let fresh = c.token().await.expect("token");
            assert_eq!(fresh.expose(), "tok-2");
        }
        assert_eq!(ep.calls(), 2);
        // Invalidating the fresh one refetches again.
        let fresh = c.token().await.expect("token");
        c.invalidate(&fresh).await;
        assert_eq!(c.token().await.expect("token").expose(), "tok-3");
    }

    #[tokio::test]
    async fn endpoint_errors_pass_through_without_secrets() {
        struct Refusing;
        #[async_trait]
        impl TokenEndpoint for Refusing {
            async fn request(&self, _: &TokenForm) -> Result<Grant, BackendError> {
                Err(errors::classify(
                    401,
                    &reqwest::header::HeaderMap::new(),
                    include_bytes!("testdata/errors/token_invalid_client.json"),
                    NOW,
                ))
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value").expect("write");
        let source = TokenSource {
            client_id: CLIENT.into(),
            credential: Credential::Secret(SecretRef::File(path)),
            token_url: AUD.into(),
            scope: "https://graph.microsoft.com/.default".into(),
        };
        let c = TokenCache::new(source, Arc::new(Refusing), ManualClock::new(NOW));
        let e = c.token().await.expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
