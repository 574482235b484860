//! The simulated token endpoint: unit checks of assertions, secrets and
//! tokens, and a round trip through the real Graph client stack on loopback.

use std::sync::Arc;
use std::time::Duration;

use ring::signature::RsaKeyPair;
use rustls_pki_types::PrivateKeyDer;

use super::*;
use crate::backend::graph::auth::{
    Certificate, Credential, HttpTokenEndpoint, JwtAlg, TokenCache, TokenSource,
};
use crate::backend::graph::client::{ClientConfig, GraphClient};
use crate::backend::graph::tenant::{GraphTenant, TenantConfig};
use crate::backend::graph::{errors, http_client, Cloud, Endpoints};
use crate::backend::sim::graph::permission_names;
use crate::backend::sim::graph::{router_with_token_endpoint, GraphSimConfig};
use crate::backend::sim::tests::{config, START};
use crate::backend::sim::SimTenant;
use crate::backend::{Call, ErrorKind, Operation, SecretRef, Tenant};
use crate::clock::{Clock, ManualClock};

// Test-only key material (tests/fixtures/graph/README.md).
const PEM: &[u8] = include_bytes!("../../../../tests/fixtures/graph/test-app.pem");
const CERT_ONLY: &[u8] = include_bytes!("../../../../tests/fixtures/graph/test-app-cert.pem");
const PUBLIC_DER: &[u8] = include_bytes!("../../../../tests/fixtures/graph/test-app-public.der");
const X5T: &str = "FmrYooa09RTGwKZoqoDDHVv_HIU";
const X5T_S256: &str = "miaXp4ACYBo5KiWmVKrrepvj4B-qE9AzS4DZ5hn2Pgg";
const TENANT: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT: &str = "9a3e0000-0000-4000-8000-000000000002";
const SECRET: &str = "s3cr3t-value-of-the-app";
const BASE: &str = "http://127.0.0.1:9";

fn registered() -> RegisteredCertificate {
    RegisteredCertificate::from_pem(CERT_ONLY, "test-app-cert.pem").expect("cert")
}

/// A resolved secret (only a reference resolves to one).
fn secret(dir: &tempfile::TempDir, value: &str) -> (SecretRef, Secret) {
    let path = dir.path().join(format!("secret-{}", value.len()));
    std::fs::write(&path, value).expect("write");
    let r = SecretRef::File(path);
    let s = r.resolve().expect("resolve");
    (r, s)
}

struct Unit {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    entra: EntraSim,
}

fn unit(base: &str, missing: &[&str]) -> Unit {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let (_, s) = secret(&dir, SECRET);
    let missing: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
    let entra = EntraSim::new(
        EntraConfig {
            tenant_id: TENANT.into(),
            app: AppRegistration {
                client_id: CLIENT.into(),
                secret: Some(s),
                certificate: Some(registered()),
            },
            base_url: base.into(),
            roles: granted_roles(&missing),
            token_lifetime: Duration::from_secs(3600),
        },
        clock.clone(),
    )
    .expect("entra");
    Unit { dir, clock, entra }
}

fn key_pair() -> RsaKeyPair {
    match PrivateKeyDer::from_pem_slice(PEM).expect("key") {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).expect("rsa"),
        _ => panic!("the test key is PKCS#8"),
    }
}

/// A JWT over `header` and `claims`, signed with the test key.
fn sign(header: Value, claims: Value, pss: bool) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = key_pair();
    let mut sig = vec![0u8; key.public().modulus_len()];
    let padding: &'static dyn ring::signature::RsaEncoding = if pss {
        &ring::signature::RSA_PSS_SHA256
    } else {
        &ring::signature::RSA_PKCS1_SHA256
    };
    key.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn token_url(base: &str) -> String {
    format!("{base}/{TENANT}/oauth2/v2.0/token")
}

fn claims_at(now: Timestamp) -> Value {
    let nbf = now.millis() / 1000;
    json!({"aud": token_url(BASE), "iss": CLIENT, "sub": CLIENT, "jti": "j-1",
           "nbf": nbf, "iat": nbf, "exp": nbf + 300})
}

fn rs256() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "x5t": X5T})
}

fn form(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("scope", "http://127.0.0.1:9/.default"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    f.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    f
}

fn with_assertion(jwt: &str) -> Vec<(String, String)> {
    form(&[
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", jwt),
    ])
}

impl Unit {
    fn grant(&self, form: &[(String, String)]) -> Result<Value, Refusal> {
        self.entra.grant(TENANT, form, self.clock.now())
    }

    /// The AADSTS code of a refusal.
    fn code(&self, form: &[(String, String)]) -> u32 {
        match self.grant(form) {
            Ok(_) => 0,
            Err(r) => r.code,
        }
    }
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

#[test]
fn the_public_key_and_thumbprints_come_from_the_certificate() {
    let cert = CertificateDer::from_pem_slice(CERT_ONLY).expect("cert");
    assert_eq!(rsa_public_key(cert.as_ref()), Some(PUBLIC_DER));
    let r = registered();
    assert_eq!((r.x5t(), r.x5t_s256()), (X5T, X5T_S256));
    // The file with the key too reads the same; no key is needed.
    assert_eq!(RegisteredCertificate::from_pem(PEM, "p").expect("pem"), r);
    // Truncated or altered DER is refused, never a panic.
    let der = cert.as_ref();
    for cut in [0, 1, 2, 10, 100, der.len() / 2, der.len() - 1] {
        assert_eq!(rsa_public_key(&der[..cut]), None, "cut at {cut}");
    }
    for i in 0..der.len() {
        let mut bad = der.to_vec();
        bad[i] ^= 0xff;
        let _ = rsa_public_key(&bad);
    }
    let key_only = include_bytes!("../../../../tests/fixtures/graph/test-app-key.pem");
    assert_eq!(
        RegisteredCertificate::from_pem(key_only, "k.pem"),
        Err(RegistrationError::NoCertificate("k.pem".into()))
    );
}

#[test]
fn valid_assertions_and_secret_are_granted_a_token() {
    let u = unit(BASE, &[]);
    let now = u.clock.now();
    // What the real client builds, RS256 and PS256.
    for alg in [JwtAlg::Rs256, JwtAlg::Ps256] {
        let a = Certificate::from_pem(PEM, alg, "p")
            .expect("cert")
            .assertion(CLIENT, &token_url(BASE), now, "jti-1")
            .expect("assertion");
        let g = u.grant(&with_assertion(a.expose())).expect("granted");
        assert_eq!(g["token_type"], "Bearer");
        assert_eq!(g["expires_in"], 3600);
    }
    let g = u
        .grant(&form(&[("client_secret", SECRET)]))
        .expect("granted");
    let token = g["access_token"].as_str().expect("token");
    assert!(u.entra.check(token).is_ok());
    let a = parse_grant_ok(&g);
    assert_eq!(a, 3600);
}

fn parse_grant_ok(g: &Value) -> u64 {
    crate::backend::graph::auth::parse_grant(g.to_string().as_bytes())
        .expect("the client reads it")
        .expires_in
}

#[test]
fn bad_assertions_are_refused_with_their_aadsts_code() {
    let u = unit(BASE, &[]);
    let now = u.clock.now();
    let good = sign(rs256(), claims_at(now), false);
    assert_eq!(u.code(&with_assertion(&good)), 0);

    // Corrupted signature bytes.
    let (input, sig) = good.rsplit_once('.').expect("jwt");
    let mut raw = URL_SAFE_NO_PAD.decode(sig).expect("sig");
    raw[10] ^= 0x01;
    let bad_sig = format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw));
    assert_eq!(u.code(&with_assertion(&bad_sig)), 700027);
    // Claims changed after signing.
    let (h, _) = input.split_once('.').expect("parts");
    let mut c = claims_at(now);
    c["sub"] = json!("someone-else");
    let forged = format!("{h}.{}.{sig}", URL_SAFE_NO_PAD.encode(c.to_string()));
    assert_eq!(u.code(&with_assertion(&forged)), 700027);
    // PKCS#1 signature under a PS256 header, and the reverse.
    let ps_header = json!({"alg": "PS256", "x5t#S256": X5T_S256});
    assert_eq!(
        u.code(&with_assertion(&sign(
            ps_header.clone(),
            claims_at(now),
            false
        ))),
        700027
    );
    assert_eq!(
        u.code(&with_assertion(&sign(ps_header, claims_at(now), true))),
        0
    );
    // Wrong or missing thumbprint; the SHA-256 one under RS256; alg none.
    for header in [
        json!({"alg": "RS256", "x5t": "AAAAooa09RTGwKZoqoDDHVv_HIU"}),
        json!({"alg": "RS256"}),
        json!({"alg": "RS256", "x5t#S256": X5T_S256}),
        json!({"alg": "none", "x5t": X5T}),
        json!({"alg": "HS256", "x5t": X5T}),
    ] {
        assert_eq!(
            u.code(&with_assertion(&sign(
                header.clone(),
                claims_at(now),
                false
            ))),
            700027,
            "{header}"
        );
    }
    // Expired; not yet valid beyond the skew; too long-lived.
    let expired = claims_at(now.plus(Duration::ZERO));
    u.clock.advance(Duration::from_secs(301));
    assert_eq!(
        u.code(&with_assertion(&sign(rs256(), expired, false))),
        700024
    );
    let now = u.clock.now();
    let mut early = claims_at(now);
    early["nbf"] = json!(now.millis() / 1000 + 360);
    early["exp"] = json!(now.millis() / 1000 + 600);
    assert_eq!(
        u.code(&with_assertion(&sign(rs256(), early, false))),
        700024
    );
    let mut within_skew = claims_at(now);
    within_skew["nbf"] = json!(now.millis() / 1000 + 240);
    within_skew["exp"] = json!(now.millis() / 1000 + 500);
    assert_eq!(
        u.code(&with_assertion(&sign(rs256(), within_skew, false))),
        0
    );
    let mut long = claims_at(now);
    long["exp"] = json!(now.millis() / 1000 + 601);
    assert_eq!(u.code(&with_assertion(&sign(rs256(), long, false))), 700024);
    // Wrong audience (another tenant's token URL, or Entra's own).
    for aud in [
        format!("{BASE}/00000000-0000-4000-8000-000000000009/oauth2/v2.0/token"),
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
    ] {
        let mut c = claims_at(now);
        c["aud"] = json!(aud);
        assert_eq!(u.code(&with_assertion(&sign(rs256(), c, false))), 700023);
    }
    // iss/sub not the client; no jti; no exp.
    let mut c = claims_at(now);
    c["iss"] = json!("9a3e0000-0000-4000-8000-00000000ffff");
    assert_eq!(u.code(&with_assertion(&sign(rs256(), c, false))), 700021);
    for claim in ["jti", "exp", "nbf"] {
        let mut c = claims_at(now);
        c.as_object_mut().expect("obj").remove(claim);
        assert_eq!(
            u.code(&with_assertion(&sign(rs256(), c, false))),
            50027,
            "{claim}"
        );
    }
    // Not a JWT at all.
    for junk in ["", "a.b", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_ne!(u.code(&with_assertion(junk)), 0, "{junk:.10}");
    }
}

#[test]
fn request_fields_are_checked_in_entras_order() {
    let u = unit(BASE, &[]);
    let now = u.clock.now();
    let good = sign(rs256(), claims_at(now), false);
    let mut f = with_assertion(&good);
    assert_eq!(
        u.entra
            .grant("contoso.onmicrosoft.com", &f, now)
            .err()
            .map(|r| r.code),
        Some(90002)
    );
    f[1].1 = "9a3e0000-0000-4000-8000-00000000ffff".into();
    assert_eq!(u.code(&f), 700016);
    let mut f = with_assertion(&good);
    f[2].1 = "https://graph.microsoft.com/User.Read".into();
    assert_eq!(u.code(&f), 70011);
    f[2].1 = "https://graph.microsoft.com/.default".into();
    assert_eq!(u.code(&f), 0, "Graph's own resource id is accepted");
    let mut f = with_assertion(&good);
    f[0].1 = "password".into();
    assert_eq!(u.code(&f), 70003);
    for name in ["grant_type", "client_id", "scope"] {
        let f: Vec<_> = with_assertion(&good)
            .into_iter()
            .filter(|(k, _)| k != name)
            .collect();
        assert_eq!(u.code(&f), 900144, "{name}");
    }
    assert_eq!(u.code(&form(&[])), 7000218);
    let mut both = with_assertion(&good);
    both.push(("client_secret".into(), SECRET.into()));
    assert_eq!(u.code(&both), 7000218);
    let mut wrong_type = with_assertion(&good);
    wrong_type[3].1 = "urn:other".into();
    assert_eq!(u.code(&wrong_type), 900144);
}

#[test]
fn a_wrong_secret_is_refused_without_echoing_it() {
    let u = unit(BASE, &[]);
    for wrong in ["s3cr3t-value-of-the-ap", "s3cr3t-value-of-the-app!", "x"] {
        let r = u
            .grant(&form(&[("client_secret", wrong)]))
            .expect_err("refused");
        assert_eq!(
            (r.status, r.error, r.code),
            (StatusCode::UNAUTHORIZED, "invalid_client", 7000215)
        );
        assert!(!r.description.contains(wrong), "{}", r.description);
    }
    assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
}

#[test]
fn refusals_have_entras_shape_and_are_classified_as_auth() {
    let u = unit(BASE, &[]);
    let r = u
        .grant(&form(&[("client_secret", "wrong-secret-text")]))
        .expect_err("refused");
    let resp = u.entra.refusal(&r, 3, u.clock.now());
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let body = rt
        .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
        .expect("body");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"], json!([7000215]));
    assert!(v["error_description"]
        .as_str()
        .is_some_and(|d| d.starts_with("AADSTS7000215: Invalid client secret provided.")));
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k}");
    }
    assert!(!String::from_utf8_lossy(&body).contains("wrong-secret-text"));
    // Every refusal the endpoint writes is an auth error to the client.
    let now = u.clock.now();
    let bad_sig = {
        let good = sign(rs256(), claims_at(now), false);
        format!("{}x", &good[..good.len() - 1])
    };
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (form(&[("client_secret", "nope")]), TENANT),
        (with_assertion(&bad_sig), TENANT),
        (
            form(&[("client_secret", SECRET)]),
            "contoso.onmicrosoft.com",
        ),
        (form(&[]), TENANT),
    ];
    for (i, (f, seg)) in cases.iter().enumerate() {
        let r = u.entra.grant(seg, f, now).expect_err("refused");
        let resp = u.entra.refusal(&r, i as u64, now);
        let status = resp.status().as_u16();
        let body = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
            .expect("body");
        let e = errors::classify(status, &reqwest::header::HeaderMap::new(), &body, now);
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        assert!(e.message.contains(&format!("AADSTS{}", r.code)), "{e}");
    }
    // A refusal reached through the scope check as well.
    let mut f = form(&[("client_secret", SECRET)]);
    f[2].1 = "api://other/.default".into();
    let r = u.grant(&f).expect_err("refused");
    let resp = u.entra.refusal(&r, 9, now);
    let status = resp.status().as_u16();
    let body = rt
        .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
        .expect("body");
    let e = errors::classify(status, &reqwest::header::HeaderMap::new(), &body, now);
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
}

#[test]
fn access_tokens_carry_roles_and_expire_on_the_tenants_clock() {
    let u = unit(BASE, &["TeamsPolicyUserAssign.ReadWrite.All"]);
    let token = u.entra.issue(u.clock.now());
    let p = payload(&token);
    let roles: Vec<String> = serde_json::from_value(p["roles"].clone()).expect("array of names");
    assert!(!roles
        .iter()
        .any(|r| r == "TeamsPolicyUserAssign.ReadWrite.All"));
    assert!(roles
        .iter()
        .any(|r| r == "TeamsTelephoneNumber.ReadWrite.All"));
    assert_eq!(roles.len(), permission_names().len() - 1);
    assert_eq!(p["appid"], CLIENT);
    assert_eq!(p["tid"], TENANT);
    assert_eq!(p["aud"], BASE);
    assert_eq!(p["iss"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(p["exp"].as_i64(), p["iat"].as_i64().map(|i| i + 3600));
    assert_eq!(
        u.entra.issued_at(&token),
        Some(Timestamp(START.millis() / 1000 * 1000))
    );
    assert!(u.entra.check(&token).is_ok());
    // Tampered, foreign and garbage tokens.
    let (input, _) = token.rsplit_once('.').expect("jwt");
    let mut forged = p.clone();
    forged["roles"] = json!(["Directory.ReadWrite.All"]);
    let (h, _) = input.split_once('.').expect("h");
    let tampered = format!(
        "{h}.{}.{}",
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        token.rsplit_once('.').expect("s").1
    );
    assert!(u.entra.check(&tampered).is_err());
    assert_eq!(u.entra.issued_at(&tampered), None);
    let other = unit(BASE, &[]);
    assert!(other.entra.check(&token).is_err(), "another process's key");
    for junk in ["", "a.b.c", "simtok.123", "..."] {
        assert!(u.entra.check(junk).is_err());
    }
    u.clock.advance(Duration::from_secs(3599));
    assert!(u.entra.check(&token).is_ok());
    u.clock.advance(Duration::from_secs(1));
    assert_eq!(u.entra.check(&token), Err(Reject::expired()));
    let _ = &u.dir;
}

// ---------------------------------------------------------- over HTTP

struct Served {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    base: String,
    endpoints: Endpoints,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    secret_ref: SecretRef,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn served(missing: &[&str], f: impl FnOnce(&mut GraphSimConfig)) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let tenant = Arc::new(
        SimTenant::open(&dir.path().join("sim"), &config(6), clock.clone()).expect("open"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (secret_ref, s) = secret(&dir, SECRET);
    let missing: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
    let entra = Arc::new(
        EntraSim::new(
            EntraConfig {
                tenant_id: TENANT.into(),
                app: AppRegistration {
                    client_id: CLIENT.into(),
                    secret: Some(s),
                    certificate: Some(registered()),
                },
                base_url: base.clone(),
                roles: granted_roles(&missing),
                token_lifetime: Duration::from_secs(3600),
            },
            clock.clone(),
        )
        .expect("entra"),
    );
    let mut cfg = GraphSimConfig {
        base_url: base.clone(),
        missing_permissions: missing,
        ..GraphSimConfig::default()
    };
    f(&mut cfg);
    let app = router_with_token_endpoint(tenant, cfg, entra);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let endpoints = Endpoints::new(Cloud::Global, Some(&base), Some(&base)).expect("loopback");
    let http = http_client(&endpoints, Duration::from_secs(10)).expect("client");
    Served {
        _dir: dir,
        clock,
        base,
        endpoints,
        http,
        server,
        secret_ref,
    }
}

impl Served {
    fn tokens(&self, credential: Credential, client_id: &str) -> Arc<TokenCache> {
        let url = self.endpoints.token_url(TENANT).expect("url");
        let source = TokenSource {
            client_id: client_id.into(),
            credential,
            token_url: url.clone(),
            scope: self.endpoints.scope(),
        };
        let endpoint = HttpTokenEndpoint::new(self.http.clone(), url, self.clock.clone());
        Arc::new(TokenCache::new(
            source,
            Arc::new(endpoint),
            self.clock.clone(),
        ))
    }

    fn graph(&self, tokens: Arc<TokenCache>) -> GraphTenant {
        let client = GraphClient::new(
            &self.endpoints,
            self.http.clone(),
            tokens,
            self.clock.clone(),
            &ClientConfig {
                read_retries: 0,
                ..ClientConfig::default()
            },
        )
        .expect("graph client");
        GraphTenant::new(client, TenantConfig::default())
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn certificate() -> Credential {
    Credential::Certificate(Arc::new(
        Certificate::from_pem(PEM, JwtAlg::Rs256, "test-app.pem").expect("cert"),
    ))
}

fn get_user(upn: &str) -> Call {
    Call::observation(Operation::GetUser { user: upn.into() })
}

#[tokio::test]
async fn the_graph_tenant_signs_in_with_a_certificate_and_reads_a_user() {
    let s = served(&[], |_| {}).await;
    let graph = s.graph(s.tokens(certificate(), CLIENT));
    let upn = SimTenant::upn(1);
    let user = graph.execute(&get_user(&upn)).await.expect("get_user");
    assert_eq!(user["upn"], upn.as_str());
    assert_eq!(user["teams_upgrade_effective_mode"], "TeamsOnly");
    // PS256 too, and the secret.
    let ps = Credential::Certificate(Arc::new(
        Certificate::from_pem(PEM, JwtAlg::Ps256, "p").expect("cert"),
    ));
    for credential in [ps, Credential::Secret(s.secret_ref.clone())] {
        let t = s.tokens(credential, CLIENT).token().await.expect("token");
        assert_eq!(
            s.get(&format!("/v1.0/users/{upn}"), t.expose()).await.0,
            200
        );
    }
    // A GET on the token path is refused in Entra's shape.
    let r = s
        .http
        .get(s.endpoints.token_url(TENANT).expect("url"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn wrong_credentials_are_auth_errors_that_never_show_the_secret() {
    let s = served(&[], |_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-app-secret").expect("write");
    let e = s
        .tokens(Credential::Secret(SecretRef::File(wrong)), CLIENT)
        .token()
        .await
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("AADSTS7000215"), "{e}");
    assert!(!e.to_string().contains("not-the-app-secret"), "{e}");
    let e = s
        .tokens(certificate(), "9a3e0000-0000-4000-8000-00000000ffff")
        .token()
        .await
        .expect_err("unknown app");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("AADSTS700016"), "{e}");
    // The Graph tenant reports it as an auth error too.
    let graph = s.graph(s.tokens(
        Credential::Secret(SecretRef::File(dir.path().join("wrong"))),
        CLIENT,
    ));
    let e = graph
        .execute(&get_user(&SimTenant::upn(1)))
        .await
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Auth);
}

#[tokio::test]
async fn tokens_issued_before_the_expiry_instant_are_refused_from_then_on() {
    let t = START.plus(Duration::from_secs(30));
    let s = served(&[], |c| c.expire_tokens_issued_before = Some(t)).await;
    let tokens = s.tokens(certificate(), CLIENT);
    let old = tokens.token().await.expect("token");
    let path = format!("/v1.0/users/{}", SimTenant::upn(1));
    assert_eq!(s.get(&path, old.expose()).await.0, 200);
    s.clock.advance(Duration::from_secs(31));
    let (status, body) = s.get(&path, old.expose()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    // The client refreshes once and carries on with a token issued after.
    let graph = s.graph(tokens.clone());
    graph
        .execute(&get_user(&SimTenant::upn(1)))
        .await
        .expect("refreshed");
    let fresh = tokens.token().await.expect("token");
    assert_ne!(fresh.expose(), old.expose());
    assert_eq!(s.get(&path, fresh.expose()).await.0, 200);
}

#[tokio::test]
async fn a_missing_permission_is_absent_from_the_roles_and_refused() {
    let missing = "TeamsTelephoneNumber.ReadWrite.All";
    let s = served(&[missing], |_| {}).await;
    let t = s
        .tokens(certificate(), CLIENT)
        .token()
        .await
        .expect("token");
    let roles = payload(t.expose())["roles"].clone();
    let roles: Vec<String> = serde_json::from_value(roles).expect("names");
    assert!(!roles.iter().any(|r| r == missing), "{roles:?}");
    assert!(roles.iter().any(|r| r == "User.Read.All"));
    let r = s
        .http
        .post(format!(
            "{}/v1.0/admin/teams/telephoneNumberManagement/numberAssignments/assignNumber",
            s.base
        ))
        .bearer_auth(t.expose())
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn every_permission_a_request_needs_is_grantable() {
    use crate::backend::sim::graph::routes::permissions;
    let paths: &[(&[&str], bool)] = &[
        (&["subscribedSkus"], false),
        (&["users", "x", "assignLicense"], true),
        (&["users", "x"], false),
        (&["admin", "teams", "userConfigurations", "x"], false),
        (
            &[
                "admin",
                "teams",
                "telephoneNumberManagement",
                "numberAssignments",
            ],
            true,
        ),
        (
            &[
                "admin",
                "teams",
                "telephoneNumberManagement",
                "numberAssignments",
            ],
            false,
        ),
        (
            &["admin", "teams", "policy", "userAssignments", "assign"],
            true,
        ),
    ];
    for (segs, post) in paths {
        for p in permissions(segs, *post).expect("checked") {
            assert!(permission_names().contains(p), "{p}");
        }
    }
    let mut sorted = permission_names().to_vec();
    sorted.sort();
    assert_eq!(sorted, permission_names());
}
