//! [`GraphTenant`] end to end against the simulator speaking Graph
//! (`sim::graph::router` served on `127.0.0.1:0`), on a manual clock.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::auth::{Credential, Grant, TokenCache, TokenEndpoint, TokenForm, TokenSource};
use super::client::{ClientConfig, GraphClient, LogCtx};
use super::tenant::{GraphTenant, TenantConfig, AUTOMATED};
use super::{http_client, Cloud, Endpoints};
use crate::backend::sim::graph::{router, GraphSimConfig, MemoryIssuer};
use crate::backend::sim::{LatencyConfig, SimConfig, SimTenant, LOCATIONS};
use crate::backend::{
    BackendError, Call, ErrorKind, NumberType, NumberView, Operation, OperationKind, SecretRef,
    Tenant, UserView,
};
use crate::clock::{wait_real, Clock, ManualClock, Timestamp};

/// On a 30-minute directory sync tick (as the simulator's own tests).
const START: Timestamp = Timestamp(1_800_000_000_000);
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Hands out [`MemoryIssuer`] tokens, counting requests.
struct IssuerEndpoint {
    issuer: Arc<MemoryIssuer>,
    clock: Arc<ManualClock>,
    grants: AtomicUsize,
    issued: std::sync::Mutex<Vec<String>>,
    /// Hand out tokens the issuer does not know (refused by the server).
    bogus: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl TokenEndpoint for IssuerEndpoint {
    async fn request(&self, form: &TokenForm) -> Result<Grant, BackendError> {
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        let n = self.grants.fetch_add(1, Ordering::SeqCst);
        let t = if self.bogus.load(Ordering::SeqCst) {
            format!("bogus.token.{n}")
        } else {
            self.issuer.issue(self.clock.now().plus(TOKEN_LIFETIME))
        };
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.clone());
        Ok(Grant {
            access_token: t,
            expires_in: TOKEN_LIFETIME.as_secs(),
        })
    }
}

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    sim: Arc<SimTenant>,
    graph: GraphTenant,
    endpoint: Arc<IssuerEndpoint>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn sim_config(users: u32) -> SimConfig {
    SimConfig {
        seed: 7,
        users,
        latency: LatencyConfig {
            tail_rate: 0.0,
            ..LatencyConfig::default()
        },
        ..SimConfig::default()
    }
}

async fn env(f: impl FnOnce(&mut GraphSimConfig)) -> Env {
    env_with(TenantConfig::default(), f).await
}

async fn env_with(tcfg: TenantConfig, f: impl FnOnce(&mut GraphSimConfig)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let sim = Arc::new(
        SimTenant::open(&dir.path().join("sim"), &sim_config(6), clock.clone()).expect("open"),
    );
    let issuer = Arc::new(MemoryIssuer::new(clock.clone(), 3));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let mut cfg = GraphSimConfig {
        base_url: base.clone(),
        ..GraphSimConfig::default()
    };
    f(&mut cfg);
    let app = router(sim.clone(), cfg, issuer.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let endpoints = Endpoints::new(Cloud::Global, Some(&base), Some(&base)).expect("loopback");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-value").expect("secret");
    let source = TokenSource {
        client_id: "9a3e0000-0000-4000-8000-000000000000".into(),
        credential: Credential::Secret(SecretRef::File(secret)),
        token_url: endpoints.token_url("contoso.onmicrosoft.com").expect("url"),
        scope: endpoints.scope(),
    };
    let endpoint = Arc::new(IssuerEndpoint {
        issuer,
        clock: clock.clone(),
        grants: AtomicUsize::new(0),
        issued: std::sync::Mutex::new(Vec::new()),
        bogus: std::sync::atomic::AtomicBool::new(false),
    });
    let tokens = Arc::new(TokenCache::new(source, endpoint.clone(), clock.clone()));
    let http = http_client(&endpoints, Duration::from_secs(10)).expect("client");
    let client = GraphClient::new(
        &endpoints,
        http,
        tokens,
        clock.clone(),
        // Faults reach the tests as they come: no retry in the request layer.
        &ClientConfig {
            read_retries: 0,
            ..ClientConfig::default()
        },
    )
    .expect("graph client");
    Env {
        _dir: dir,
        clock,
        sim,
        graph: GraphTenant::new(client, tcfg),
        endpoint,
        server,
    }
}

/// Run `fut`, moving the manual clock 500 ms every 2 ms of real time so the
/// long-running operation polls proceed (no real sleep longer than that).
async fn drive<T>(clock: &ManualClock, fut: impl Future<Output = T>) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = wait_real(Duration::from_millis(2)) => clock.advance(Duration::from_millis(500)),
        }
    }
}

fn get_user(upn: &str) -> Call {
    Call::observation(Operation::GetUser { user: upn.into() })
}

fn get_number(n: &str) -> Call {
    Call::observation(Operation::GetNumber { number: n.into() })
}

fn act(op: Operation) -> Call {
    Call::action(op, "run-1/0/step/1", 1)
}

impl Env {
    async fn both(&self, call: &Call) -> (Value, Value) {
        let g = self.graph.execute(call).await.expect("graph");
        let s = self.sim.execute(call).await.expect("sim");
        (g, s)
    }

    fn truth(&self, upn: &str) -> UserView {
        self.sim
            .user_state(upn)
            .expect("state")
            .expect("user")
            .cloud
    }

    fn number_truth(&self, n: &str) -> Option<NumberView> {
        self.sim.number_state(n).expect("number state")
    }
}

/// The `UserView` keys Graph gives (the rest are `null`, documented).
const USER_KEYS: &[&str] = &[
    "id",
    "upn",
    "sip_address",
    "usage_location",
    "homed",
    "teams_upgrade_effective_mode",
    "line_uri",
    "enterprise_voice_enabled",
    "online_voice_routing_policy",
    "feature_types",
    "licences",
    "dir_synced",
    "account_type",
];

const NUMBER_KEYS: &[&str] = &[
    "telephone_number",
    "number_type",
    "activation_state",
    "pstn_assignment_status",
    "assigned_pstn_target_id",
    "location_id",
    "number_source",
    "iso_country_code",
    "location_update_supported",
];

fn assert_same_keys(g: &Value, s: &Value) {
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(g), keys(s));
}

#[tokio::test]
async fn get_user_gives_the_simulators_view_where_graph_can() {
    let e = env(|_| {}).await;
    for i in 1..=4 {
        let upn = SimTenant::upn(i);
        let (g, s) = e.both(&get_user(&upn)).await;
        assert_same_keys(&g, &s);
        for k in USER_KEYS {
            assert_eq!(g[k], s[k], "user {i} field {k}: graph {g} sim {s}");
        }
        let paths = |v: &Value| -> Vec<(Value, Value)> {
            v["licence_assignments"]
                .as_array()
                .expect("array")
                .iter()
                .map(|a| (a["sku"].clone(), a["assigned_via"].clone()))
                .collect()
        };
        assert_eq!(paths(&g), paths(&s), "user {i}");
        for k in [
            "hosting_provider",
            "interpreted_user_type",
            "hosted_voicemail",
        ] {
            assert!(g[k].is_null(), "{k}: {}", g[k]);
        }
    }
    let missing = e.graph.execute(&get_user("nobody@contoso.com")).await;
    assert_eq!(missing.expect_err("absent").kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn teams_upgrade_mode_reads_back_from_the_upgrade_policy() {
    let e = env(|_| {}).await;
    let upn = SimTenant::upn(2);
    for (mode, want) in [
        ("Islands", Value::from("Islands")),
        ("SfBOnly", Value::from("SfBOnly")),
        ("Legacy", Value::Null),
        ("TeamsOnly", Value::from("TeamsOnly")),
    ] {
        e.sim
            .edit_cloud_view(&upn, |v| v.teams_upgrade_effective_mode = mode.into())
            .expect("edit");
        let g = e.graph.execute(&get_user(&upn)).await.expect("graph");
        assert_eq!(g["teams_upgrade_effective_mode"], want, "{mode}");
    }
}

#[tokio::test]
async fn get_number_gives_the_simulators_view() {
    let e = env(|_| {}).await;
    for i in 1..=4 {
        let n = SimTenant::seeded_number(i);
        let (g, s) = e.both(&get_number(&n)).await;
        assert_same_keys(&g, &s);
        for k in NUMBER_KEYS {
            assert_eq!(g[k], s[k], "number {n} field {k}");
        }
        // It reads as a NumberView, the address mode derived.
        let v: NumberView = serde_json::from_value(g).expect("NumberView");
        assert_eq!(v.telephone_number, n);
    }
    let (g, s) = e.both(&get_number("+19995550000")).await;
    assert!(g.is_null() && s.is_null(), "{g} {s}");
}

#[tokio::test]
async fn doc_style_bodies_read_the_same() {
    let plain = env(|_| {}).await;
    let doc = env(|c| c.doc_style_bodies = true).await;
    let upn = SimTenant::upn(2);
    let n = SimTenant::seeded_number(2);
    let a = plain.graph.execute(&get_user(&upn)).await.expect("plain");
    let b = doc.graph.execute(&get_user(&upn)).await.expect("doc");
    // A doc-style collection holds one item, so `subscribedSkus` names only
    // the first SKU: compare everything but the licences.
    for k in USER_KEYS.iter().filter(|k| **k != "licences") {
        assert_eq!(a[k], b[k], "{k}");
    }
    let a = plain.graph.execute(&get_number(&n)).await.expect("plain");
    let b = doc.graph.execute(&get_number(&n)).await.expect("doc");
    assert_eq!(a, b);
    // The operation entity wrapped in `value` is read too.
    let call = act(Operation::RemoveNumber {
        user: upn.clone(),
        number: n.clone(),
        number_type: NumberType::DirectRouting,
    });
    let r = drive(&doc.clock, doc.graph.execute(&call))
        .await
        .expect("remove");
    assert_eq!(r["status"], "succeeded", "{r}");
}

#[tokio::test]
async fn remove_and_assign_number_follow_the_operation() {
    let e = env(|_| {}).await;
    let upn = SimTenant::upn(1);
    let n = SimTenant::seeded_number(1);
    let id = e.truth(&upn).id;
    let remove = act(Operation::RemoveNumber {
        user: upn.clone(),
        number: n.clone(),
        number_type: NumberType::DirectRouting,
    });
    let r = drive(&e.clock, e.graph.execute(&remove))
        .await
        .expect("remove");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(r["operation"]
        .as_str()
        .is_some_and(|u| u.contains("operations(")));
    assert_eq!(r["client_request_id"].as_str().map(str::len), Some(36));
    let row = e.number_truth(&n);
    assert!(
        row.as_ref()
            .is_none_or(|r| r.assigned_pstn_target_id.is_none()),
        "{row:?}"
    );
    // A repeat (re-issued after a crash) finds the number gone: done.
    let again = drive(&e.clock, e.graph.execute(&remove))
        .await
        .expect("a repeated remove");
    assert_eq!(again["status"], "absent", "{again}");

    let assign = act(Operation::AssignNumber {
        user: upn.clone(),
        number: n.clone(),
        number_type: NumberType::DirectRouting,
        location_id: None,
    });
    let r = drive(&e.clock, e.graph.execute(&assign))
        .await
        .expect("assign");
    assert_eq!(r["status"], "succeeded", "{r}");
    let row = e.number_truth(&n).expect("row");
    assert_eq!(row.assigned_pstn_target_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_long_operation_is_left_running_for_the_workflow_wait() {
    let tcfg = TenantConfig {
        lro_budget: Duration::from_secs(2),
        lro_interval: Duration::from_millis(500),
    };
    let e = env_with(tcfg, |_| {}).await;
    let call = act(Operation::RemoveNumber {
        user: SimTenant::upn(1),
        number: SimTenant::seeded_number(1),
        number_type: NumberType::DirectRouting,
    });
    let r = drive(&e.clock, e.graph.execute(&call))
        .await
        .expect("remove");
    assert_eq!(r["status"], "running", "{r}");
    assert!(r["operation"].as_str().is_some());
}

#[tokio::test]
async fn a_failed_operation_is_classified() {
    // The simulator's injected failure: "Please try again later" → transient.
    let e = env(|c| c.lro_failure_rate = 1.0).await;
    let call = act(Operation::RemoveNumber {
        user: SimTenant::upn(1),
        number: SimTenant::seeded_number(1),
        number_type: NumberType::DirectRouting,
    });
    let err = drive(&e.clock, e.graph.execute(&call))
        .await
        .expect_err("failed operation");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(
        err.message.contains("long-running operation failed"),
        "{err}"
    );

    // A real refusal: another user's number → conflict from statusDetail.
    let e = env(|_| {}).await;
    let call = act(Operation::AssignNumber {
        user: SimTenant::upn(1),
        number: SimTenant::seeded_number(2),
        number_type: NumberType::DirectRouting,
        location_id: None,
    });
    let err = drive(&e.clock, e.graph.execute(&call))
        .await
        .expect_err("conflict");
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
}

#[tokio::test]
async fn a_foreign_location_is_fatal_and_gets_no_token() {
    let foreign = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let faddr = foreign.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Ok((_s, _)) = foreign.accept().await {
            seen2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let e = env(|c| c.foreign_location = Some(format!("http://{faddr}"))).await;
    let call = act(Operation::RemoveNumber {
        user: SimTenant::upn(1),
        number: SimTenant::seeded_number(1),
        number_type: NumberType::DirectRouting,
    });
    let err = drive(&e.clock, e.graph.execute(&call))
        .await
        .expect_err("foreign");
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains(&faddr.to_string()), "{err}");
    // Give a stray connection a moment to show up.
    wait_real(Duration::from_millis(50)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the foreign host was contacted"
    );
    watcher.abort();
}

#[tokio::test]
async fn throttling_keeps_retry_after_and_503_is_transient() {
    let e = env(|c| {
        c.throttle_rate = 1.0;
        c.throttle_retry_after = Duration::from_secs(7);
    })
    .await;
    let err = e
        .graph
        .execute(&get_number(&SimTenant::seeded_number(1)))
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    let e = env(|c| {
        c.throttle_rate = 1.0;
        c.throttle_retry_after_share = 0.0;
    })
    .await;
    let err = e
        .graph
        .execute(&get_user(&SimTenant::upn(1)))
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    assert_eq!(err.retry_after(), None);

    let e = env(|c| c.unavailable_rate = 1.0).await;
    let err = e
        .graph
        .execute(&get_number(&SimTenant::seeded_number(1)))
        .await
        .expect_err("unavailable");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.message.contains("client-request-id"), "{err}");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let e =
        env(|c| c.expire_tokens_issued_before = Some(START.plus(Duration::from_secs(60)))).await;
    let n = SimTenant::seeded_number(1);
    e.graph.execute(&get_number(&n)).await.expect("first");
    assert_eq!(e.endpoint.grants.load(Ordering::SeqCst), 1);
    e.clock.advance(Duration::from_secs(120));
    // The cached token is refused mid-run: one refresh, then success.
    let v = e
        .graph
        .execute(&get_number(&n))
        .await
        .expect("after expiry");
    assert_eq!(v["telephone_number"], n.as_str());
    assert_eq!(e.endpoint.grants.load(Ordering::SeqCst), 2);
    e.graph.execute(&get_number(&n)).await.expect("again");
    assert_eq!(e.endpoint.grants.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_an_auth_error_without_the_token() {
    // Every token is refused: refresh once, then give up.
    let e = env(|_| {}).await;
    e.endpoint.bogus.store(true, Ordering::SeqCst);
    let err = e
        .graph
        .execute(&get_user(&SimTenant::upn(1)))
        .await
        .expect_err("auth");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert_eq!(e.endpoint.grants.load(Ordering::SeqCst), 2);
    let issued = e.endpoint.issued.lock().expect("issued").clone();
    for t in issued {
        assert!(!err.message.contains(&t) && !format!("{err:?}").contains(&t));
    }
    assert!(!err.message.contains("s3cret"));
}

#[tokio::test]
async fn set_number_location_updates_the_number() {
    let e = env(|_| {}).await;
    let n = SimTenant::seeded_number(3);
    let call = act(Operation::SetNumberLocation {
        number: n.clone(),
        location_id: LOCATIONS[1].to_string(),
    });
    let r = e.graph.execute(&call).await.expect("location");
    assert!(r["client_request_id"].is_string(), "{r}");
    let row = e.number_truth(&n).expect("row");
    assert_eq!(row.location_id.as_deref(), Some(LOCATIONS[1]));
}

#[tokio::test]
async fn remove_licence_resolves_the_sku_and_refuses_group_licences() {
    let e = env(|_| {}).await;
    let upn = SimTenant::upn(1);
    let before = e.truth(&upn);
    let sku = before.licences.last().cloned().expect("a licence");
    let call = act(Operation::RemoveLicence {
        user: upn.clone(),
        sku: sku.clone(),
    });
    e.graph.execute(&call).await.expect("remove");
    let state = e.sim.user_state(&upn).expect("state").expect("user");
    assert!(!state.licences.contains(&sku), "{:?}", state.licences);
    // Again: already gone → success (reads may still lag, the tenant is idempotent).
    e.graph.execute(&call).await.expect("again");

    let unknown = act(Operation::RemoveLicence {
        user: upn.clone(),
        sku: "NOSUCHSKU".into(),
    });
    let err = e.graph.execute(&unknown).await.expect_err("unknown sku");
    assert_eq!(err.kind, ErrorKind::Precondition, "{err}");

    let upn2 = SimTenant::upn(2);
    e.sim.licences_via_group_only(&upn2).expect("edit");
    let held = e.truth(&upn2).licences;
    let sku2 = held.first().cloned().expect("a licence");
    let call = act(Operation::RemoveLicence {
        user: upn2.clone(),
        sku: sku2.clone(),
    });
    let err = e.graph.execute(&call).await.expect_err("group");
    assert_eq!(err.kind, ErrorKind::Precondition, "{err}");
    assert!(err.message.contains("inherited from a group"), "{err}");
    let state = e.sim.user_state(&upn2).expect("state").expect("user");
    assert!(state.licences.contains(&sku2));
}

#[tokio::test]
async fn voice_routing_policy_is_granted_and_reset() {
    let e = env(|_| {}).await;
    let upn = SimTenant::upn(2);
    let call = act(Operation::GrantVoiceRoutingPolicy {
        user: upn.clone(),
        policy: Some("OC-Route".into()),
    });
    e.graph.execute(&call).await.expect("grant");
    assert_eq!(
        e.truth(&upn).online_voice_routing_policy.as_deref(),
        Some("OC-Route")
    );
    let call = act(Operation::GrantVoiceRoutingPolicy {
        user: upn.clone(),
        policy: None,
    });
    e.graph.execute(&call).await.expect("reset");
    assert_eq!(e.truth(&upn).online_voice_routing_policy, None);
}

#[tokio::test]
async fn hostile_upns_reach_the_right_user() {
    let e = env(|_| {}).await;
    let users = [
        (
            "O'Brien@contoso.com",
            "00000000-0000-4000-8000-0000000000a1",
        ),
        ("a#b@contoso.com", "00000000-0000-4000-8000-0000000000a2"),
        ("$admin@contoso.com", "00000000-0000-4000-8000-0000000000a3"),
        ("admin@contoso.com", "00000000-0000-4000-8000-0000000000a4"),
    ];
    for (i, (upn, id)) in users.iter().enumerate() {
        e.sim.clone_user_as(i as u32 + 1, upn, id).expect("clone");
    }
    for (upn, id) in users {
        let v = e.graph.execute(&get_user(upn)).await.expect(upn);
        assert_eq!(v["id"], id, "{upn}");
        assert_eq!(v["upn"], upn);
    }
    let call = act(Operation::GrantVoiceRoutingPolicy {
        user: "O'Brien@contoso.com".into(),
        policy: Some("O'Route".into()),
    });
    e.graph.execute(&call).await.expect("grant");
    assert_eq!(
        e.truth("O'Brien@contoso.com")
            .online_voice_routing_policy
            .as_deref(),
        Some("O'Route")
    );
    assert_ne!(
        e.truth("admin@contoso.com")
            .online_voice_routing_policy
            .as_deref(),
        Some("O'Route")
    );
}

#[tokio::test]
async fn paging_follows_next_links() {
    let e = env(|_| {}).await;
    // Through the request layer directly: two rows a page.
    let all = e
        .graph
        .client()
        .get_all(
            "/admin/teams/telephoneNumberManagement/numberAssignments?$top=2",
            LogCtx::default(),
        )
        .await
        .expect("pages");
    let one = e
        .graph
        .client()
        .get(
            "/admin/teams/telephoneNumberManagement/numberAssignments?$top=1000",
            LogCtx::default(),
        )
        .await
        .expect("one page");
    let total = one.body["value"].as_array().map_or(0, Vec::len);
    assert!(total > 2, "{total}");
    assert_eq!(all.len(), total);
}

#[tokio::test]
async fn only_graph_operations_are_automated() {
    let e = env(|_| {}).await;
    for k in OperationKind::ALL {
        assert_eq!(e.graph.automates(*k), AUTOMATED.contains(k), "{k}");
        // The catalog's `graph:` column names exactly these.
        assert_eq!(k.info().graph.is_some(), AUTOMATED.contains(k), "{k}");
    }
    let err = e
        .graph
        .execute(&act(Operation::MoveUser {
            user: SimTenant::upn(1),
            force: false,
        }))
        .await
        .expect_err("not on graph");
    assert_eq!(err.kind, ErrorKind::Fatal);
    assert!(err.message.contains("PowerShell"), "{err}");
}

/// A token endpoint for the bare request-layer tests.
struct FixedEndpoint;

#[async_trait]
impl TokenEndpoint for FixedEndpoint {
    async fn request(&self, _: &TokenForm) -> Result<Grant, BackendError> {
        Ok(Grant {
            access_token: "fixed-test-token".into(),
            expires_in: 3600,
        })
    }
}

/// A client for `base` with `max_concurrency`, tokens from [`FixedEndpoint`].
fn bare_client(dir: &std::path::Path, base: &str, max_concurrency: usize) -> GraphClient {
    bare_client_on(dir, base, max_concurrency, 0, ManualClock::new(START))
}

fn bare_client_on(
    dir: &std::path::Path,
    base: &str,
    max_concurrency: usize,
    read_retries: u32,
    clock: Arc<ManualClock>,
) -> GraphClient {
    let endpoints = Endpoints::new(Cloud::Global, Some(base), Some(base)).expect("loopback");
    let secret = dir.join("secret");
    std::fs::write(&secret, "x").expect("secret");
    let source = TokenSource {
        client_id: "c".into(),
        credential: Credential::Secret(SecretRef::File(secret)),
        token_url: endpoints.token_url("contoso.onmicrosoft.com").expect("url"),
        scope: endpoints.scope(),
    };
    let tokens = Arc::new(TokenCache::new(
        source,
        Arc::new(FixedEndpoint),
        clock.clone(),
    ));
    let http = http_client(&endpoints, Duration::from_secs(10)).expect("client");
    GraphClient::new(
        &endpoints,
        http,
        tokens,
        clock,
        &ClientConfig {
            max_concurrency,
            read_retries,
        },
    )
    .expect("graph client")
}

#[tokio::test]
async fn a_throttled_read_is_sent_again_after_retry_after() {
    #[derive(Default)]
    struct Count(AtomicUsize);
    async fn busy(
        axum::extract::State(c): axum::extract::State<Arc<Count>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if c.0.fetch_add(1, Ordering::SeqCst) < 2 {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "5")],
                axum::Json(serde_json::json!({"error": {"code": "TooManyRequests", "message": "slow down"}})),
            )
                .into_response()
        } else {
            axum::Json(serde_json::json!({"value": []})).into_response()
        }
    }
    let count = Arc::new(Count::default());
    let app = axum::Router::new().fallback(busy).with_state(count.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let client = bare_client_on(dir.path(), &base, 2, 3, clock.clone());
    let r = drive(&clock, client.get("/subscribedSkus", LogCtx::default()))
        .await
        .expect("the third try answers");
    assert_eq!(r.status, 200);
    assert_eq!(count.0.load(Ordering::SeqCst), 3);
    assert!(
        clock.now() >= START.plus(Duration::from_secs(10)),
        "waited Retry-After twice"
    );
    // Without retries the first 429 is the answer.
    count.0.store(0, Ordering::SeqCst);
    let once = bare_client_on(dir.path(), &base, 2, 0, ManualClock::new(START));
    let e = once
        .get("/subscribedSkus", LogCtx::default())
        .await
        .expect_err("throttled");
    assert_eq!(e.kind, ErrorKind::Throttled);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_per_tenant() {
    use axum::extract::State;
    #[derive(Default)]
    struct Flight {
        now: AtomicUsize,
        max: AtomicUsize,
    }
    async fn slow(State(f): State<Arc<Flight>>) -> axum::Json<Value> {
        let n = f.now.fetch_add(1, Ordering::SeqCst) + 1;
        f.max.fetch_max(n, Ordering::SeqCst);
        wait_real(Duration::from_millis(30)).await;
        f.now.fetch_sub(1, Ordering::SeqCst);
        axum::Json(serde_json::json!({"value": []}))
    }
    let flight = Arc::new(Flight::default());
    let app = axum::Router::new()
        .fallback(slow)
        .with_state(flight.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Arc::new(bare_client(dir.path(), &base, 2));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.get("/subscribedSkus", LogCtx::default()).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("request");
    }
    assert_eq!(flight.max.load(Ordering::SeqCst), 2);
    server.abort();
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn logs_carry_key_attempt_and_request_id_never_a_token() {
    let e =
        env(|c| c.expire_tokens_issued_before = Some(START.plus(Duration::from_secs(60)))).await;
    let buf = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish();
    // With a single registered dispatcher, tracing caches a callsite's
    // interest from the *registering* thread's default: another test thread
    // hitting our callsites first would cache "never". A second live
    // dispatcher makes interest consider every registered one.
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let _guard = tracing::subscriber::set_default(subscriber);
    e.graph
        .execute(&get_number(&SimTenant::seeded_number(1)))
        .await
        .expect("read");
    e.clock.advance(Duration::from_secs(120));
    let call = Call::action(
        Operation::SetNumberLocation {
            number: SimTenant::seeded_number(1),
            location_id: LOCATIONS[0].to_string(),
        },
        "run-7/3/set-location/2",
        2,
    );
    let r = e.graph.execute(&call).await.expect("write after a refresh");
    let text = String::from_utf8(buf.0.lock().expect("buf").clone()).expect("utf8");
    let crid = r["client_request_id"].as_str().expect("crid");
    assert!(text.contains("run-7/3/set-location/2"), "{text}");
    assert!(text.contains("attempt=2"), "{text}");
    assert!(text.contains(crid), "{text}");
    assert!(text.contains("status=401"), "the stale token shows: {text}");
    for t in e.endpoint.issued.lock().expect("issued").iter() {
        assert!(!text.contains(t.as_str()), "a token leaked into the logs");
    }
    assert!(
        !text.contains("Bearer") && !text.contains("s3cret"),
        "{text}"
    );
}

#[tokio::test]
async fn only_the_graph_origin_is_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = bare_client(dir.path(), "http://127.0.0.1:4000", 1);
    assert!(client
        .same_origin("http://127.0.0.1:4000/v1.0/x?$skip=2", "next")
        .is_ok());
    for foreign in [
        "http://127.0.0.1:4001/v1.0/x",
        "https://127.0.0.1:4000/v1.0/x",
        "http://localhost:4000/v1.0/x",
        "http://graph.microsoft.com.evil.example/v1.0/x",
        "not a url",
    ] {
        let e = client.same_origin(foreign, "next").expect_err(foreign);
        assert_eq!(e.kind, ErrorKind::Fatal, "{foreign}");
    }
    // A foreign nextLink stops paging before any request goes there.
    let e = client
        .get_absolute(
            "http://127.0.0.1:4001/v1.0/x",
            "@odata.nextLink",
            LogCtx::default(),
        )
        .await
        .expect_err("foreign");
    assert!(e.message.contains("127.0.0.1:4001"), "{e}");
}
