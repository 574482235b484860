//! The Teams PowerShell endpoint in-process: audiences both ways, revocation,
//! calls that succeed and fail, malformed bodies.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::backend::sim::graph::token::{
    granted_roles, AppRegistration, Audience, EntraConfig, EntraSim, RegisteredCertificate,
    TeamsTokens, TEAMS_RESOURCE, TEAMS_SCOPE,
};
use crate::backend::sim::graph::{routes, GraphSimConfig};
use crate::backend::sim::tests::{config, START};
use crate::backend::sim::SimTenant;
use crate::backend::SecretRef;
use crate::clock::{Clock, ManualClock};

const CERT_ONLY: &[u8] = include_bytes!("../../../../tests/fixtures/graph/test-app-cert.pem");
const TENANT: &str = "2f1c0000-0000-4000-8000-000000000001";
const CLIENT: &str = "9a3e0000-0000-4000-8000-000000000002";
const SECRET: &str = "s3cr3t-value-of-the-app";
const BASE: &str = "http://127.0.0.1:9";

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    entra: Arc<EntraSim>,
    sim: GraphSim,
}

fn env(f: impl FnOnce(&mut GraphSimConfig)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let tenant = Arc::new(
        SimTenant::open(&dir.path().join("sim"), &config(4), clock.clone()).expect("open"),
    );
    let path = dir.path().join("secret");
    std::fs::write(&path, SECRET).expect("write secret");
    let secret = SecretRef::File(path).resolve().expect("secret");
    let entra = Arc::new(
        EntraSim::new(
            EntraConfig {
                tenant_id: TENANT.into(),
                app: AppRegistration {
                    client_id: CLIENT.into(),
                    secret: Some(secret),
                    certificate: Some(
                        RegisteredCertificate::from_pem(CERT_ONLY, "cert").expect("cert"),
                    ),
                },
                base_url: BASE.into(),
                roles: granted_roles(&[]),
                token_lifetime: Duration::from_secs(3600),
            },
            clock.clone(),
        )
        .expect("entra"),
    );
    let mut cfg = GraphSimConfig {
        base_url: BASE.into(),
        ..GraphSimConfig::default()
    };
    f(&mut cfg);
    let sim = GraphSim::new(tenant, cfg, entra.clone());
    Env {
        _dir: dir,
        clock,
        entra,
        sim,
    }
}

async fn answer(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

impl Env {
    /// A token from the token endpoint for `scope` (client secret).
    async fn token(&self, scope: &str) -> (u16, Value) {
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}&scope={}",
            scope.replace('/', "%2F").replace(':', "%3A")
        );
        let req = Request::builder()
            .method("POST")
            .uri(format!("/{TENANT}/oauth2/v2.0/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .expect("request");
        answer(self.entra.serve(req).await).await
    }

    async fn execute(&self, token: &str, body: &str) -> (u16, Value) {
        let req = Request::builder()
            .method("POST")
            .uri(EXECUTE_PATH)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let teams = TeamsTokens(self.entra.clone());
        answer(serve(&self.sim, &teams, req).await).await
    }

    async fn graph_get(&self, token: &str, path: &str) -> (u16, Value) {
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        answer(routes::dispatch(&self.sim, req).await).await
    }
}

fn get_user(upn: &str) -> String {
    json!({"op": {"op": "get_user", "user": upn}, "key": null, "attempt": 0}).to_string()
}

#[tokio::test]
async fn teams_tokens_admit_the_endpoint_and_graph_tokens_do_not() {
    let e = env(|_| {});
    let (status, grant) = e.token(TEAMS_SCOPE).await;
    assert_eq!(status, 200, "{grant}");
    let teams = grant["access_token"].as_str().expect("token").to_string();
    let c = claims(&teams);
    assert_eq!(c["aud"], TEAMS_RESOURCE);
    assert!(c.get("roles").is_none(), "{c}");
    let (status, grant) = e.token(&format!("{BASE}/.default")).await;
    assert_eq!(status, 200, "{grant}");
    let graph = grant["access_token"].as_str().expect("token").to_string();
    assert_eq!(claims(&graph)["aud"], BASE);

    let upn = SimTenant::upn(1);
    let (status, body) = e.execute(&teams, &get_user(&upn)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["upn"], upn.as_str());

    // Each surface refuses the other's audience, in Graph's 401 shape.
    let (status, body) = e.execute(&graph, &get_user(&upn)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let (status, body) = e.graph_get(&teams, &format!("/v1.0/users/{upn}")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        e.graph_get(&graph, &format!("/v1.0/users/{upn}")).await.0,
        200
    );
    let (status, _) = e.execute("", &get_user(&upn)).await;
    assert_eq!(status, 401);

    // Other scopes are still refused.
    let (status, body) = e.token("api://other/.default").await;
    assert_eq!(status, 400);
    assert_eq!(body["error_codes"], json!([70011]));
}

#[tokio::test]
async fn calls_return_the_tenants_answer_or_its_error() {
    let e = env(|_| {});
    let teams = e.entra.issue_for(e.clock.now(), Audience::Teams);
    let upn = SimTenant::upn(2);
    let grant = json!({
        "op": {"op": "grant_voice_routing_policy", "user": upn, "policy": "Contoso-OC"},
        "key": "fake-pwsh/1/7",
        "attempt": 1,
    });
    let (status, body) = e.execute(&teams, &grant.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true, "result": {}}));
    let audit = e.sim.tenant.audit_log().expect("audit");
    let last = audit.last().expect("an entry");
    assert_eq!(last.args["policy"], "Contoso-OC");

    // The tenant's errors are answers, not HTTP failures; key and attempt
    // may be absent.
    let hostile = "x'; Remove-CsOnlineUser -Identity y; '$(whoami)é";
    let body = json!({"op": {"op": "get_user", "user": hostile}}).to_string();
    let (status, body) = e.execute(&teams, &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["kind"], "not_found");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(hostile), "{message}");
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let e = env(|_| {});
    let teams = e.entra.issue_for(e.clock.now(), Audience::Teams);
    for body in [
        "",
        "{",
        "[]",
        r#"{"op": {"op": "nope"}}"#,
        r#"{"op": {"op": "get_user"}}"#,
        r#"{"op": "get_user", "user": "a@b"}"#,
        r#"{"op": {"op": "get_user", "user": "a@b"}, "attempt": "one"}"#,
        r#"{"op": {"op": "get_user", "user": "a@b"}, "extra": 1}"#,
    ] {
        let (status, answer) = e.execute(&teams, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "BadRequest", "{body}");
    }
}

#[tokio::test]
async fn revoked_teams_tokens_are_refused_from_the_instant_on() {
    let t = START.plus(Duration::from_secs(30));
    let e = env(|c| c.expire_tokens_issued_before = Some(t));
    let old = e.entra.issue_for(e.clock.now(), Audience::Teams);
    let upn = SimTenant::upn(1);
    assert_eq!(e.execute(&old, &get_user(&upn)).await.0, 200);
    e.clock.advance(Duration::from_secs(31));
    let (status, body) = e.execute(&old, &get_user(&upn)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let fresh = e.entra.issue_for(e.clock.now(), Audience::Teams);
    assert_eq!(e.execute(&fresh, &get_user(&upn)).await.0, 200);
    // Expired on its own clock too.
    e.clock.advance(Duration::from_secs(3600));
    assert_eq!(e.execute(&fresh, &get_user(&upn)).await.0, 401);
}
