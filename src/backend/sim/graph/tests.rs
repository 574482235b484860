//! The simulated Graph surface, called in-process on a manual clock (and once
//! over a loopback socket through [`super::router`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::backend::sim::db::{to_bytes, user_key};
use crate::backend::sim::model::{Timeline, UserRecord};
use crate::backend::sim::tests::{config, START};
use crate::backend::sim::{FaultConfig, SimConfig};
use crate::backend::{LicenceAssignment, OperationKind};
use crate::clock::ManualClock;

const NUMBERS: &str = "/v1.0/admin/teams/telephoneNumberManagement/numberAssignments";
const BASE: &str = "http://127.0.0.1:9";

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    tenant: Arc<SimTenant>,
    issuer: Arc<MemoryIssuer>,
    token: String,
    sim: GraphSim,
}

fn env_with(sim_cfg: SimConfig, f: impl FnOnce(&mut GraphSimConfig)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let tenant = Arc::new(SimTenant::open(dir.path(), &sim_cfg, clock.clone()).expect("open"));
    let issuer = Arc::new(MemoryIssuer::new(clock.clone(), 1));
    let token = issuer.issue(START.plus(Duration::from_secs(30 * 24 * 3600)));
    let mut cfg = GraphSimConfig {
        base_url: BASE.into(),
        ..GraphSimConfig::default()
    };
    f(&mut cfg);
    let sim = GraphSim::new(tenant.clone(), cfg, issuer.clone());
    Env {
        _dir: dir,
        clock,
        tenant,
        issuer,
        token,
        sim,
    }
}

fn env(f: impl FnOnce(&mut GraphSimConfig)) -> Env {
    env_with(config(6), f)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Env {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        // What a client's URL encoder does to spaces.
        let uri = uri.replace(' ', "%20");
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
            .expect("request");
        let resp = routes::dispatch(&self.sim, req).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        let auth = format!("Bearer {}", self.token);
        self.send("GET", uri, &[("authorization", &auth)], None)
            .await
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        let auth = format!("Bearer {}", self.token);
        self.send("POST", uri, &[("authorization", &auth)], Some(body))
            .await
    }

    fn user_id(&self, i: u32) -> String {
        self.tenant
            .user_state(&SimTenant::upn(i))
            .expect("state")
            .expect("user")
            .cloud
            .id
    }

    /// The path of an operation's `Location` (origin checked).
    fn operation_path(&self, a: &Answer) -> String {
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        let loc = a.header("location").expect("Location");
        let path = loc
            .strip_prefix(BASE)
            .expect("Location on the server's origin");
        assert!(path.starts_with("/v1.0/admin/teams/telephoneNumberManagement/operations('"));
        path.to_string()
    }

    /// Copy seeded user `i` under a new UPN and object id.
    fn clone_user(&self, i: u32, upn: &str, id: &str) {
        let shared = &self.tenant.shared;
        let mut rec: UserRecord = shared
            .db
            .load(&user_key(&SimTenant::upn(i)))
            .expect("load")
            .expect("user");
        let mut v = rec.cloud.truth().clone();
        v.upn = upn.to_string();
        v.sip_address = upn.to_string();
        v.id = id.to_string();
        rec.cloud = Timeline::new(v);
        shared
            .db
            .commit(vec![(user_key(upn).into_bytes(), to_bytes(&rec))], None)
            .expect("commit");
    }
}

#[tokio::test]
async fn users_answer_by_upn_by_id_and_in_key_form_with_select() {
    let e = env(|_| {});
    let id = e.user_id(1);
    let a = e.get("/v1.0/users/user0001@contoso.com").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["id"], id.as_str());
    assert_eq!(a.body["userPrincipalName"], "user0001@contoso.com");
    assert_eq!(a.body["usageLocation"], "US");
    assert_eq!(
        a.body["@odata.context"],
        format!("{BASE}/v1.0/$metadata#users/$entity")
    );
    assert!(a.body["assignedLicenses"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
    assert!(a.header("request-id").is_some());

    let b = e.get(&format!("/v1.0/users/{id}")).await;
    assert_eq!(b.body["userPrincipalName"], "user0001@contoso.com");
    // UPNs are case-insensitive.
    let c = e.get("/v1.0/users/USER0001@contoso.com").await;
    assert_eq!(c.body["id"], id.as_str());

    let d = e
        .get("/v1.0/users('user0001@contoso.com')?$select=id,userPrincipalName")
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let keys: Vec<&String> = d.body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(
        d.body["@odata.context"],
        format!("{BASE}/v1.0/$metadata#users(id,userPrincipalName)/$entity")
    );
    // Reads go through the tenant's own get_user.
    assert!(e.tenant.stats().calls.get("get_user").copied().unwrap_or(0) >= 4);
}

#[tokio::test]
async fn an_absent_user_is_a_404_graph_error_echoing_the_client_request_id() {
    let e = env(|_| {});
    let auth = format!("Bearer {}", e.token);
    let a = e
        .send(
            "GET",
            "/v1.0/users/nobody@contoso.com",
            &[("authorization", &auth), ("client-request-id", "c0ffee-1")],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.code(), "Request_ResourceNotFound");
    let inner = &a.body["error"]["innerError"];
    assert_eq!(inner["client-request-id"], "c0ffee-1");
    assert_eq!(inner["request-id"].as_str(), a.header("request-id"));
    assert_eq!(inner["date"], START.rfc3339());
    assert_eq!(a.header("client-request-id"), Some("c0ffee-1"));
    // An unknown object id too, and on success the id is echoed as well.
    let b = e
        .get("/v1.0/users/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(b.status, StatusCode::NOT_FOUND);
    let c = e
        .send(
            "GET",
            "/v1.0/users/user0002@contoso.com",
            &[("authorization", &auth), ("client-request-id", "c0ffee-2")],
            None,
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.header("client-request-id"), Some("c0ffee-2"));
    // Without one, the request id stands in.
    assert_eq!(b.header("client-request-id"), b.header("request-id"));
}

#[tokio::test]
async fn requests_need_a_valid_unexpired_bearer_token() {
    let e = env(|_| {});
    let none = e
        .send("GET", "/v1.0/users/user0001@contoso.com", &[], None)
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "InvalidAuthenticationToken");
    assert!(none.header("www-authenticate").is_some());
    let forged = e
        .send(
            "GET",
            "/v1.0/users/user0001@contoso.com",
            &[("authorization", "Bearer simtok.forged")],
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let basic = e
        .send(
            "GET",
            "/v1.0/users/user0001@contoso.com",
            &[("authorization", &format!("Basic {}", e.token))],
            None,
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    let short = e.issuer.issue(START.plus(Duration::from_secs(60)));
    let auth = format!("Bearer {short}");
    let ok = e
        .send(
            "GET",
            "/v1.0/users/user0001@contoso.com",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    e.clock.advance(Duration::from_secs(60));
    let late = e
        .send(
            "GET",
            "/v1.0/users/user0001@contoso.com",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(late.code(), "InvalidAuthenticationToken");
    assert!(late.message().contains("expired"), "{}", late.message());
    // No token text in any answer.
    for a in [&none, &forged, &basic, &late] {
        assert!(!a.body.to_string().contains("simtok"));
    }
}

#[tokio::test]
async fn tokens_issued_before_the_expiry_instant_are_refused_from_then_on() {
    let t = START.plus(Duration::from_secs(600));
    let e = env(|c| c.expire_tokens_issued_before = Some(t));
    let path = "/v1.0/users/user0001@contoso.com";
    assert_eq!(e.get(path).await.status, StatusCode::OK);
    e.clock.advance(Duration::from_secs(600));
    let a = e.get(path).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.message().contains("expired"));
    // A token issued after the instant works.
    let fresh = e.issuer.issue(t.plus(Duration::from_secs(3600)));
    let auth = format!("Bearer {fresh}");
    let b = e.send("GET", path, &[("authorization", &auth)], None).await;
    assert_eq!(b.status, StatusCode::OK);
}

#[tokio::test]
async fn user_configuration_shows_numbers_and_hides_later_enum_members_unless_asked() {
    let e = env(|_| {});
    let id = e.user_id(1);
    let path = format!("/v1.0/admin/teams/userConfigurations/{id}");
    let a = e.get(&path).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["accountType"], "user");
    assert_eq!(a.body["userPrincipalName"], "user0001@contoso.com");
    assert_eq!(a.body["tenantId"], e.tenant.tenant_id());
    assert_eq!(
        a.body["telephoneNumbers"],
        json!([{"telephoneNumber": SimTenant::seeded_number(1), "assignmentCategory": "primary"}])
    );
    assert_eq!(a.body["isEnterpriseVoiceEnabled"], true);
    assert_eq!(
        a.body["@odata.context"],
        format!("{BASE}/v1.0/$metadata#admin/teams/userConfigurations/$entity")
    );
    // Key form, and a UPN is not a key here.
    let k = e
        .get(&format!("/v1.0/admin/teams/userConfigurations('{id}')"))
        .await;
    assert_eq!(k.body["id"], id.as_str());
    let upn = e
        .get("/v1.0/admin/teams/userConfigurations/user0001@contoso.com")
        .await;
    assert_eq!(upn.status, StatusCode::NOT_FOUND);
    let upgrade = |body: &Value| {
        body["effectivePolicyAssignments"]
            .as_array()
            .expect("array")
            .iter()
            .find(|p| p["policyType"] == "TeamsUpgradePolicy")
            .map(|p| p["policyAssignment"].clone())
    };
    let p = upgrade(&a.body).expect("upgrade policy");
    assert_eq!(p["displayName"], "UpgradeToTeams");
    assert_eq!(p["assignmentType"], "direct");
    assert!(p["policyId"].as_str().is_some_and(|s| s.len() == 36), "{p}");
    for (mode, policy) in [
        ("Islands", Some("Islands")),
        ("SfBWithTeamsCollab", Some("SfBWithTeamsCollab")),
        ("Legacy", None),
    ] {
        e.tenant
            .edit_user(&SimTenant::upn(1), |rec| {
                let mut v = rec.cloud.truth().clone();
                v.teams_upgrade_effective_mode = mode.into();
                rec.cloud = Timeline::new(v);
            })
            .expect("edit");
        let got = upgrade(&e.get(&path).await.body);
        assert_eq!(
            got.as_ref().map(|p| p["displayName"].clone()),
            policy.map(Value::from),
            "{mode}"
        );
    }

    e.tenant
        .edit_user(&SimTenant::upn(1), |rec| {
            let mut v = rec.cloud.truth().clone();
            v.account_type = "IneligibleUser".into();
            rec.cloud = Timeline::new(v);
        })
        .expect("edit");
    assert_eq!(e.get(&path).await.body["accountType"], "unknownFutureValue");
    let auth = format!("Bearer {}", e.token);
    let b = e
        .send(
            "GET",
            &path,
            &[
                ("authorization", &auth),
                (
                    "prefer",
                    "odata.maxpagesize=5, include-unknown-enum-members",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(b.body["accountType"], "ineligibleUser");
}

#[tokio::test]
async fn on_premises_homed_users_read_as_sfb_on_prem_users() {
    let mut cfg = config(3);
    cfg.profile = crate::backend::sim::Profile::OnPremises;
    let e = env_with(cfg, |_| {});
    let id = e.user_id(1);
    let a = e
        .get(&format!("/v1.0/admin/teams/userConfigurations/{id}"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["accountType"], "sfbOnPremUser");
}

#[tokio::test]
async fn number_assignments_filter_on_number_and_target_and_page() {
    let e = env(|_| {});
    let n1 = SimTenant::seeded_number(1);
    let id1 = e.user_id(1);
    let enc = n1.replace('+', "%2B");
    let a = e
        .get(&format!("{NUMBERS}?$filter=telephoneNumber%20eq%20'{enc}'"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let rows = a.body["value"].as_array().expect("array");
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["telephoneNumber"], n1.as_str());
    assert_eq!(r["numberType"], "directRouting");
    assert_eq!(r["assignmentStatus"], "userAssigned");
    assert_eq!(r["activationState"], "activated");
    assert_eq!(r["assignmentTargetId"], id1.as_str());
    assert_eq!(r["numberSource"], "online");
    assert!(r["id"]
        .as_str()
        .is_some_and(|i| i.ends_with(&format!("|{n1}"))));
    assert_eq!(
        a.body["@odata.context"],
        format!("{BASE}/v1.0/$metadata#admin/teams/telephoneNumberManagement/numberAssignments")
    );
    // An unencoded `+` is a space: no such number.
    let raw = e
        .get(&format!("{NUMBERS}?$filter=telephoneNumber eq '{n1}'"))
        .await;
    assert_eq!(raw.body["value"], json!([]));
    // An absent number: an empty collection, not a 404.
    let none = e
        .get(&format!(
            "{NUMBERS}?$filter=telephoneNumber eq '%2B19999999999'"
        ))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body["value"], json!([]));

    let t = e
        .get(&format!("{NUMBERS}?$filter=assignmentTargetId+eq+'{id1}'"))
        .await;
    let rows = t.body["value"].as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["telephoneNumber"], n1.as_str());
    let both = e
        .get(&format!(
            "{NUMBERS}?$filter=assignmentTargetId eq '{id1}' and numberType eq 'callingPlan'"
        ))
        .await;
    assert_eq!(both.body["value"], json!([]));

    // Paging: 6 numbers, 4 per page.
    let p1 = e.get(&format!("{NUMBERS}?$top=4")).await;
    assert_eq!(p1.body["value"].as_array().map(Vec::len), Some(4));
    let next = p1.body["@odata.nextLink"].as_str().expect("nextLink");
    let next = next.strip_prefix(BASE).expect("on our origin");
    let p2 = e.get(next).await;
    assert_eq!(p2.body["value"].as_array().map(Vec::len), Some(2));
    assert!(p2.body.get("@odata.nextLink").is_none());
    let mut seen: Vec<Value> = p1.body["value"].as_array().expect("a").clone();
    seen.extend(p2.body["value"].as_array().expect("a").iter().cloned());
    seen.dedup_by(|a, b| a["telephoneNumber"] == b["telephoneNumber"]);
    assert_eq!(seen.len(), 6);
    // The filter survives the next link.
    let f = e
        .get(&format!(
            "{NUMBERS}?$filter=numberType eq 'directRouting'&$top=5"
        ))
        .await;
    let next = f.body["@odata.nextLink"].as_str().expect("next");
    let f2 = e.get(next.strip_prefix(BASE).expect("origin")).await;
    assert_eq!(f2.body["value"].as_array().map(Vec::len), Some(1));

    for bad in [
        "$filter=city eq 'Seattle'",
        "$filter=telephoneNumber ne '1'",
        "$filter=telephoneNumber eq '%2B1",
        "$top=1001",
        "$top=x",
    ] {
        let a = e.get(&format!("{NUMBERS}?{bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.code(), "BadRequest");
    }
}

#[tokio::test]
async fn unassign_and_assign_run_as_long_running_operations_on_the_clock() {
    let e = env(|_| {});
    let n1 = SimTenant::seeded_number(1);
    let id1 = e.user_id(1);
    let a = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": n1.trim_start_matches('+'), "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&a);
    let s0 = e.get(&op).await;
    assert_eq!(s0.status, StatusCode::OK, "{:?}", s0.body);
    assert_eq!(s0.body["status"], "notStarted");
    assert_eq!(s0.body["createdDateTime"], START.rfc3339());
    let id = s0.body["id"].as_str().expect("id").to_string();
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(e.get(&op).await.body["status"], "running");
    e.clock.advance(Duration::from_secs(4));
    let done = e.get(&op).await;
    assert_eq!(done.body["status"], "succeeded");
    assert_eq!(done.body["numbers"][0]["status"], "succeeded");
    assert_eq!(done.body["numbers"][0]["statusDetail"], Value::Null);
    assert!(done.body["numbers"][0]["resourceLocation"]
        .as_str()
        .is_some_and(|r| r.ends_with(&format!("|{n1}')"))));
    // Before the unassignment shows, its resourceLocation reads the number row.
    let res = done.body["numbers"][0]["resourceLocation"]
        .as_str()
        .expect("res");
    let row = e.get(res.strip_prefix(BASE).expect("origin")).await;
    assert_eq!(row.status, StatusCode::OK, "{:?}", row.body);
    assert_eq!(row.body["telephoneNumber"], n1.as_str());
    let bogus = format!("{NUMBERS}('00000000-0000-4000-8000-000000000000|{n1}')");
    assert_eq!(e.get(&bogus).await.status, StatusCode::NOT_FOUND);
    // The slash form answers the same operation.
    let slash = e
        .get(&format!(
            "/v1.0/admin/teams/telephoneNumberManagement/operations/{id}"
        ))
        .await;
    assert_eq!(slash.body["id"], id.as_str());
    // The tenant did it: the DR number left the inventory, audited, outage open.
    assert_eq!(e.tenant.number_state(&n1).expect("state"), None);
    let audit = e.tenant.audit_log().expect("audit");
    assert!(audit
        .iter()
        .any(|x| x.op == OperationKind::RemoveNumber && x.number.as_deref() == Some(&n1)));
    assert_eq!(e.tenant.outages().expect("outages").len(), 1);

    let b = e
        .post(
            &format!("{NUMBERS}/assignNumber"),
            json!({
                "telephoneNumber": n1,
                "assignmentTargetId": id1,
                "numberType": "directRouting",
                "assignmentCategory": "primary",
            }),
        )
        .await;
    let op = e.operation_path(&b);
    e.clock.advance(Duration::from_secs(5));
    assert_eq!(e.get(&op).await.body["status"], "succeeded");
    let row = e.tenant.number_state(&n1).expect("state").expect("row");
    assert_eq!(row.assigned_pstn_target_id.as_deref(), Some(id1.as_str()));
    // Unknown operations are 404.
    let x = e
        .get("/v1.0/admin/teams/telephoneNumberManagement/operations('nope')")
        .await;
    assert_eq!(x.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenant_refusals_end_the_operation_failed_with_the_service_text() {
    let e = env(|_| {});
    let n1 = SimTenant::seeded_number(1);
    let a = e
        .post(
            &format!("{NUMBERS}/assignNumber"),
            json!({"telephoneNumber": n1, "assignmentTargetId": e.user_id(2),
                   "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&a);
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(e.get(&op).await.body["status"], "running");
    e.clock.advance(Duration::from_secs(4));
    let done = e.get(&op).await;
    assert_eq!(done.body["status"], "failed");
    let detail = done.body["numbers"][0]["statusDetail"]
        .as_str()
        .expect("detail");
    assert!(
        detail.contains("has already been assigned to another user"),
        "{detail}"
    );
    // A UPN is not an assignment target.
    let b = e
        .post(
            &format!("{NUMBERS}/assignNumber"),
            json!({"telephoneNumber": n1, "assignmentTargetId": "user0001@contoso.com",
                   "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&b);
    e.clock.advance(Duration::from_secs(5));
    let d = e.get(&op).await;
    assert_eq!(d.body["status"], "failed");
    assert!(d.body["numbers"][0]["statusDetail"]
        .as_str()
        .is_some_and(|s| s.contains("not found")));
    // Unassigning a number the tenant lacks fails the same way.
    let c = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": "+19999999999", "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&c);
    e.clock.advance(Duration::from_secs(5));
    let d = e.get(&op).await;
    assert!(d.body["numbers"][0]["statusDetail"]
        .as_str()
        .is_some_and(|s| s.contains("is not found from tenant")));
    // Malformed bodies are refused at once.
    for body in [
        json!({"telephoneNumber": n1, "numberType": "directRouting"}),
        json!({"telephoneNumber": n1, "assignmentTargetId": e.user_id(1), "numberType": "DirectRouting"}),
        json!([1]),
    ] {
        let r = e.post(&format!("{NUMBERS}/assignNumber"), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn injected_operation_failures_leave_the_tenant_unchanged() {
    let e = env(|c| c.lro_failure_rate = 1.0);
    let n1 = SimTenant::seeded_number(1);
    let a = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": n1, "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&a);
    e.clock.advance(Duration::from_secs(5));
    let d = e.get(&op).await;
    assert_eq!(d.body["status"], "failed");
    assert_eq!(
        d.body["numbers"][0]["statusDetail"],
        format!("We can't unassign {n1} right now. Please try again later.")
    );
    let row = e.tenant.number_state(&n1).expect("state").expect("row");
    assert_eq!(row.assigned_pstn_target_id, Some(e.user_id(1)));
    assert!(e.tenant.audit_log().expect("audit").is_empty());
}

#[tokio::test]
async fn a_fraction_of_operations_fails_deterministically() {
    let run = || async {
        let e = env(|c| c.lro_failure_rate = 0.5);
        let mut out = Vec::new();
        for i in 1..=6u32 {
            let a = e
                .post(
                    &format!("{NUMBERS}/unassignNumber"),
                    json!({"telephoneNumber": SimTenant::seeded_number(i),
                           "numberType": "directRouting"}),
                )
                .await;
            let op = e.operation_path(&a);
            e.clock.advance(Duration::from_secs(5));
            out.push(
                e.get(&op).await.body["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        out
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.iter().any(|s| s == "failed"), "{first:?}");
    assert!(first.iter().any(|s| s == "succeeded"), "{first:?}");
}

#[tokio::test]
async fn throttling_knob_answers_429_with_and_without_retry_after() {
    let e = env(|c| {
        c.throttle_rate = 1.0;
        c.throttle_retry_after = Duration::from_secs(7);
    });
    let a = e.get("/v1.0/users/user0001@contoso.com").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.code(), "TooManyRequests");
    assert_eq!(a.header("retry-after"), Some("7"));
    // Refused before the tenant saw it.
    assert!(e.tenant.stats().calls.is_empty());

    let e = env(|c| {
        c.throttle_rate = 1.0;
        c.throttle_retry_after_share = 0.0;
    });
    let a = e.get("/v1.0/users/user0001@contoso.com").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header("retry-after"), None);

    // Part of the requests, the same ones on every run.
    let statuses = || async {
        let e = env(|c| c.throttle_rate = 0.3);
        let mut s = Vec::new();
        for _ in 0..20 {
            s.push(e.get("/v1.0/users/user0001@contoso.com").await.status);
        }
        s
    };
    let s = statuses().await;
    assert_eq!(s, statuses().await);
    assert!(s.contains(&StatusCode::OK) && s.contains(&StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn unavailable_knob_answers_503() {
    let e = env(|c| c.unavailable_rate = 1.0);
    let a = e.get("/v1.0/subscribedSkus").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.code(), "serviceNotAvailable");
}

#[tokio::test]
async fn the_tenants_own_faults_surface_as_429_and_503() {
    let mut cfg = config(3);
    cfg.faults = FaultConfig {
        throttle_limit: Some(1),
        ..FaultConfig::default()
    };
    let e = env_with(cfg, |_| {});
    assert_eq!(
        e.get("/v1.0/users/user0001@contoso.com").await.status,
        StatusCode::OK
    );
    let a = e.get("/v1.0/users/user0001@contoso.com").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header("retry-after"), Some("1"));

    // Injected 429s: half with Retry-After, half without, both kept.
    let mut cfg = config(3);
    cfg.faults = FaultConfig {
        throttle_rate: 1.0,
        ..FaultConfig::default()
    };
    let e = env_with(cfg, |_| {});
    let mut with = (0, 0);
    for _ in 0..16 {
        let a = e.get("/v1.0/users/user0001@contoso.com").await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        match a.header("retry-after") {
            Some(_) => with.0 += 1,
            None => with.1 += 1,
        }
    }
    assert!(with.0 > 0 && with.1 > 0, "{with:?}");

    let mut cfg = config(3);
    cfg.faults = FaultConfig {
        transient_rate: 1.0,
        ..FaultConfig::default()
    };
    let e = env_with(cfg, |_| {});
    let a = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": SimTenant::seeded_number(1), "numberType": "directRouting"}),
        )
        .await;
    // Not accepted: no operation, a 503 with the service's text.
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.message(), "Service is unavailable. Please try again");
    assert!(a.header("location").is_none());
}

#[tokio::test]
async fn foreign_location_knob_points_operations_elsewhere() {
    let e = env(|c| c.foreign_location = Some("https://graph.evil.example".into()));
    let a = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": SimTenant::seeded_number(1), "numberType": "directRouting"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let loc = a.header("location").expect("Location");
    assert!(loc.starts_with(
        "https://graph.evil.example/v1.0/admin/teams/telephoneNumberManagement/operations('"
    ));
}

#[tokio::test]
async fn doc_style_knob_answers_in_the_shapes_of_the_doc_examples() {
    let e = env(|c| c.doc_style_bodies = true);
    let list = e.get(&format!("{NUMBERS}?$top=3")).await;
    assert!(list.body["value"].is_object(), "{:?}", list.body);
    assert!(list.body["value"]["telephoneNumber"].is_string());
    let id = e.user_id(1);
    let cfg = e
        .get(&format!("/v1.0/admin/teams/userConfigurations/{id}"))
        .await;
    assert_eq!(cfg.body["value"]["id"], id.as_str());
    let a = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": SimTenant::seeded_number(1), "numberType": "directRouting"}),
        )
        .await;
    let op = e.operation_path(&a);
    assert_eq!(e.get(&op).await.body["value"]["status"], "notStarted");
    // Users are not wrapped (their doc example is not either).
    assert_eq!(
        e.get(&format!("/v1.0/users/{id}")).await.body["id"],
        id.as_str()
    );
}

#[tokio::test]
async fn update_number_sets_the_emergency_location() {
    let e = env(|_| {});
    let n1 = SimTenant::seeded_number(1);
    let loc = e.tenant.locations()[0].clone();
    let path = format!("{NUMBERS}/updateNumber");
    let a = e
        .post(&path, json!({"telephoneNumber": n1, "locationId": loc}))
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{:?}", a.body);
    let row = e.tenant.number_state(&n1).expect("state").expect("row");
    assert_eq!(row.location_id.as_deref(), Some(loc.as_str()));
    let kept = e.post(&path, json!({"telephoneNumber": n1})).await;
    assert_eq!(kept.status, StatusCode::NO_CONTENT);
    let bad = e
        .post(
            &path,
            json!({"telephoneNumber": n1, "locationId": "no-such-location"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);
    let gone = e
        .post(
            &path,
            json!({"telephoneNumber": "+19999999999", "locationId": loc}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let clear = e
        .post(&path, json!({"telephoneNumber": n1, "locationId": ""}))
        .await;
    assert_eq!(clear.status, StatusCode::BAD_REQUEST);
    assert!(clear.message().contains("not supported"));
}

#[tokio::test]
async fn licences_are_removed_by_sku_id_from_subscribed_skus() {
    let e = env(|_| {});
    let skus = e.get("/v1.0/subscribedSkus").await;
    assert_eq!(skus.status, StatusCode::OK);
    let sku = |name: &str| {
        skus.body["value"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["skuPartNumber"] == name))
            .and_then(|s| s["skuId"].as_str())
            .map(str::to_string)
            .expect("sku listed")
    };
    let mcoev = sku("MCOEV");
    let upn = SimTenant::upn(1);
    let state = e.tenant.user_state(&upn).expect("state").expect("user");
    assert!(state.licences.iter().any(|l| l == "MCOEV"));
    let direct = state
        .licence_assignments
        .iter()
        .any(|a| a.sku == "MCOEV" && !a.is_group());
    let a = e
        .post(
            &format!("/v1.0/users/{upn}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": [mcoev]}),
        )
        .await;
    assert!(direct, "seeded user 1 holds Phone System directly");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["userPrincipalName"], upn.as_str());
    let after = e.tenant.user_state(&upn).expect("state").expect("user");
    assert!(!after.licences.iter().any(|l| l == "MCOEV"));
    // Phone System went, and with it the Direct Routing number (DOMAIN 1.11).
    assert_eq!(
        e.tenant
            .number_state(&SimTenant::seeded_number(1))
            .expect("n"),
        None
    );
    assert!(e
        .tenant
        .audit_log()
        .expect("audit")
        .iter()
        .any(|x| x.op == OperationKind::RemoveLicence));
    let unknown = e
        .post(
            &format!("/v1.0/users/{upn}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": ["00000000-0000-4000-8000-000000000000"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let add = e
        .post(
            &format!("/v1.0/users/{upn}/assignLicense"),
            json!({"addLicenses": [{"skuId": mcoev}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(add.status, StatusCode::BAD_REQUEST);
    assert!(add.message().contains("not supported"));
    let nobody = e
        .post(
            "/v1.0/users/nobody@contoso.com/assignLicense",
            json!({"addLicenses": [], "removeLicenses": [mcoev]}),
        )
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn group_inherited_licences_are_refused_with_the_service_text() {
    let e = env(|_| {});
    let upn = SimTenant::upn(2);
    e.tenant
        .edit_user(&upn, |rec| {
            let paths = rec
                .licences
                .iter()
                .map(|l| LicenceAssignment::via_group(l, crate::backend::sim::LICENCE_GROUP))
                .collect();
            rec.set_licence_paths(paths);
        })
        .expect("edit");
    let group_only = "MCOEV";
    let id = e.sim.sku_id(group_only);
    let a = e
        .post(
            &format!("/v1.0/users/{upn}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": [id]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().contains("inherited from a group membership"));
    let s = e.tenant.user_state(&upn).expect("state").expect("user");
    assert!(s.licences.iter().any(|l| l == "MCOEV"));
}

#[tokio::test]
async fn voice_routing_policy_is_assigned_through_policy_ids() {
    let e = env(|_| {});
    let id = e.user_id(1);
    let p = e
        .get(
            "/v1.0/admin/teams/policy/getPolicyId(type='OnlineVoiceRoutingPolicy',name='OC-Route')",
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    assert_eq!(p.body["value"][0]["name"], "OC-Route");
    let pid = p.body["value"][0]["policyId"]
        .as_str()
        .expect("id")
        .to_string();
    let a = e
        .post(
            "/v1.0/admin/teams/policy/userAssignments/assign",
            json!({"value": [{"userId": id, "policyType": "OnlineVoiceRoutingPolicy", "policyId": pid}]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{:?}", a.body);
    let s = e
        .tenant
        .user_state(&SimTenant::upn(1))
        .expect("s")
        .expect("u");
    assert_eq!(
        s.cloud.online_voice_routing_policy.as_deref(),
        Some("OC-Route")
    );
    e.clock.advance(Duration::from_secs(24 * 3600));
    let cfg = e
        .get(&format!("/v1.0/admin/teams/userConfigurations/{id}"))
        .await;
    assert_eq!(
        cfg.body["effectivePolicyAssignments"][0]["policyAssignment"]["policyId"],
        pid.as_str()
    );
    let u = e
        .post(
            "/v1.0/admin/teams/policy/userAssignments/unassign",
            json!({"value": [{"userId": id, "policyType": "OnlineVoiceRoutingPolicy"}]}),
        )
        .await;
    assert_eq!(u.status, StatusCode::NO_CONTENT);
    let s = e
        .tenant
        .user_state(&SimTenant::upn(1))
        .expect("s")
        .expect("u");
    assert_eq!(s.cloud.online_voice_routing_policy, None);
    let other = e
        .post(
            "/v1.0/admin/teams/policy/userAssignments/assign",
            json!({"value": [{"userId": id, "policyType": "TeamsMeetingPolicy", "policyId": pid}]}),
        )
        .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert!(other.message().contains("not supported"));
    let unknown = e
        .post(
            "/v1.0/admin/teams/policy/userAssignments/assign",
            json!({"value": [{"userId": id, "policyType": "OnlineVoiceRoutingPolicy",
                              "policyId": "00000000-0000-4000-8000-000000000000"}]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_upns_never_address_another_user() {
    let e = env(|_| {});
    let ids = [
        (
            "o'brien@contoso.com",
            "00000000-0000-4000-8000-0000000000a1",
        ),
        ("a#b@contoso.com", "00000000-0000-4000-8000-0000000000a2"),
        ("$admin@contoso.com", "00000000-0000-4000-8000-0000000000a3"),
        ("b@contoso.com", "00000000-0000-4000-8000-0000000000a4"),
        ("admin@contoso.com", "00000000-0000-4000-8000-0000000000a5"),
    ];
    for (i, (upn, id)) in ids.iter().enumerate() {
        e.clone_user(i as u32 + 1, upn, id);
    }
    let e = &e;
    let id_of = |a: &Answer| a.body["id"].as_str().map(str::to_string);
    let expect = |path: &str, id: &str| {
        let path = path.to_string();
        let id = id.to_string();
        async move {
            let a = e.get(&path).await;
            assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
            assert_eq!(id_of(&a).as_deref(), Some(id.as_str()), "{path}");
        }
    };
    expect("/v1.0/users/O'Brien@contoso.com", ids[0].1).await;
    expect("/v1.0/users/O%27Brien@contoso.com", ids[0].1).await;
    expect("/v1.0/users('O''Brien@contoso.com')", ids[0].1).await;
    expect("/v1.0/users('O%27%27Brien@contoso.com')", ids[0].1).await;
    expect("/v1.0/users/a%23b@contoso.com", ids[1].1).await;
    expect("/v1.0/users('$admin@contoso.com')", ids[2].1).await;
    expect("/v1.0/users('%24admin@contoso.com')", ids[2].1).await;

    let refused = |path: &str| {
        let path = path.to_string();
        async move {
            let a = e.get(&path).await;
            assert!(
                a.status == StatusCode::NOT_FOUND || a.status == StatusCode::BAD_REQUEST,
                "{path}: {} {:?}",
                a.status,
                a.body
            );
            assert!(a.body.get("id").is_none(), "{path}");
        }
    };
    // An unbalanced quote is not a key; `$` outside the key form is a system
    // segment (never `admin@…`); an encoded slash stays in the UPN.
    refused("/v1.0/users('O'Brien@contoso.com')").await;
    refused("/v1.0/users/$admin@contoso.com").await;
    refused("/v1.0/users/%24admin@contoso.com").await;
    refused("/v1.0/users/a%2Fb@contoso.com").await;
    refused("/v1.0/users/a/b@contoso.com").await;
    refused("/v1.0/users/a%23b%40contoso.com%2F..%2Fadmin@contoso.com").await;
    refused("/v1.0/users('admin@contoso.com'%29%20or%20('x')").await;

    // `$filter` literals cannot widen the match.
    for f in [
        "assignmentTargetId eq 'x'' or ''1'' eq ''1'",
        "assignmentTargetId eq '' or 1 eq 1",
        "telephoneNumber eq '%2B1425%27 or %271%27 eq %271'",
        "assignmentTargetId eq '%2F..%2F'",
        "assignmentTargetId eq '$admin@contoso.com'",
    ] {
        let a = e.get(&format!("{NUMBERS}?$filter={f}")).await;
        let n = a.body["value"].as_array().map_or(0, Vec::len);
        assert!(
            n == 0 || a.status == StatusCode::BAD_REQUEST,
            "{f}: {} rows",
            n
        );
    }
    // The apostrophe user's numbers by target id: exactly theirs (none).
    let a = e
        .get(&format!(
            "{NUMBERS}?$filter=assignmentTargetId eq '{}'",
            ids[0].1
        ))
        .await;
    assert_eq!(a.body["value"], json!([]));
}

#[tokio::test]
async fn unknown_routes_and_versions_are_graph_errors() {
    let e = env(|_| {});
    let beta = e.get("/beta/users/user0001@contoso.com").await;
    assert_eq!(beta.status, StatusCode::BAD_REQUEST);
    let nothing = e.get("/v1.0/groups").await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(nothing.body["error"]["innerError"]["request-id"].is_string());
    let auth = format!("Bearer {}", e.token);
    let del = e
        .send(
            "DELETE",
            "/v1.0/users/user0001@contoso.com",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_over_a_loopback_socket() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let tenant = Arc::new(SimTenant::open(dir.path(), &config(2), clock.clone()).expect("open"));
    let issuer = Arc::new(MemoryIssuer::new(clock.clone(), 1));
    let token = issuer.issue(START.plus(Duration::from_secs(3600)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = GraphSimConfig {
        base_url: format!("http://{addr}"),
        ..GraphSimConfig::default()
    };
    let app = router(tenant, cfg, issuer);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let body = format!(
            r#"{{"telephoneNumber":"{}","numberType":"directRouting"}}"#,
            SimTenant::seeded_number(1)
        );
        write!(
            s,
            "POST {NUMBERS}/unassignNumber HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             client-request-id: sock-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .await
    .expect("client");
    server.abort();
    let lower = reply.to_ascii_lowercase();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert!(lower.contains("client-request-id: sock-1"), "{reply}");
    assert!(
        lower.contains(&format!(
            "location: http://{addr}/v1.0/admin/teams/telephonenumbermanagement/operations('"
        )),
        "{reply}"
    );
}

#[tokio::test]
async fn missing_permissions_answer_403_naming_what_to_grant() {
    let e = env(|c| c.missing_permissions = vec!["TeamsTelephoneNumber.ReadWrite.All".into()]);
    let w = e
        .post(
            &format!("{NUMBERS}/unassignNumber"),
            json!({"telephoneNumber": SimTenant::seeded_number(1), "numberType": "directRouting"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::FORBIDDEN);
    assert_eq!(w.code(), "Forbidden");
    assert!(w.message().contains("TeamsTelephoneNumber.ReadWrite.All"));
    // Reads still work with the read permission.
    assert_eq!(
        e.get(&format!("{NUMBERS}?$top=1")).await.status,
        StatusCode::OK
    );
    let e = env(|c| {
        c.missing_permissions = vec![
            "TeamsTelephoneNumber.Read.All".into(),
            "TeamsTelephoneNumber.ReadWrite.All".into(),
        ]
    });
    let r = e.get(&format!("{NUMBERS}?$top=1")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.message().contains(
        "API requires any of the following permission(s): \
         TeamsTelephoneNumber.Read.All,TeamsTelephoneNumber.ReadWrite.All."
    ));
    assert_eq!(
        e.get("/v1.0/users/user0001@contoso.com").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn json_in_message_knob_nests_the_real_error_as_text() {
    let e = env(|c| c.json_in_message_errors = true);
    let a = e.get("/v1.0/users/nobody@contoso.com").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.code(), "UnknownError");
    let inner: Value = serde_json::from_str(a.message()).expect("JSON text");
    assert_eq!(inner["code"], "Request_ResourceNotFound");
    assert!(a.body["error"]["innerError"]["request-id"].is_string());
    // 401s keep their code (a client refreshes its token on it).
    let b = e
        .send("GET", "/v1.0/users/nobody@contoso.com", &[], None)
        .await;
    assert_eq!(b.code(), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn batches_answer_each_request_as_if_sent_alone() {
    let e = env(|_| {});
    let n1 = SimTenant::seeded_number(1);
    let a = e
        .post(
            "/v1.0/$batch",
            json!({"requests": [
                {"id": "1", "method": "POST", "url": "/admin/teams/telephoneNumberManagement/numberAssignments/unassignNumber",
                 "headers": {"Content-Type": "application/json"},
                 "body": {"telephoneNumber": n1, "numberType": "directRouting"}},
                {"id": "2", "method": "GET", "url": "users/nobody@contoso.com"},
                {"id": "3", "method": "GET", "url": "users/user0002@contoso.com?$select=id"},
            ]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = a.body["responses"].as_array().expect("responses");
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["id"], "1");
    assert_eq!(r[0]["status"], 202);
    assert!(r[0]["headers"]["location"]
        .as_str()
        .is_some_and(|l| l.starts_with(BASE)));
    assert_eq!(r[1]["status"], 404);
    assert_eq!(r[1]["body"]["error"]["code"], "Request_ResourceNotFound");
    assert_eq!(r[2]["body"]["id"], e.user_id(2).as_str());
    assert_eq!(e.tenant.number_state(&n1).expect("n"), None);

    let nested = e
        .post(
            "/v1.0/$batch",
            json!({"requests": [{"id": "1", "method": "POST", "url": "/$batch", "body": {}}]}),
        )
        .await;
    assert_eq!(nested.body["responses"][0]["status"], 400);
    let empty = e.post("/v1.0/$batch", json!({"requests": []})).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let foreign = e
        .post(
            "/v1.0/$batch",
            json!({"requests": [{"id": "1", "method": "GET", "url": "https://x.example/v1.0/users/a"}]}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    // Throttling hits requests inside a batch one by one.
    let t = env(|c| c.throttle_rate = 0.5);
    let reqs: Vec<Value> = (1..=20)
        .map(
            |i| json!({"id": i.to_string(), "method": "GET", "url": "/users/user0001@contoso.com"}),
        )
        .collect();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let b = t.post("/v1.0/$batch", json!({"requests": reqs})).await;
        if b.status == StatusCode::OK {
            statuses.extend(
                b.body["responses"]
                    .as_array()
                    .expect("responses")
                    .iter()
                    .map(|r| r["status"].as_u64().unwrap_or(0)),
            );
        }
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
}
