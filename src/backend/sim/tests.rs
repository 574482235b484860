//! Behaviour tests of the simulated tenant, on a manual clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::timeline::latency_draw;
use super::*;
use crate::backend::{
    BackendError, Call, ErrorKind, NumberType, NumberView, Operation, Tenant, UserView,
};
use crate::clock::{Clock, ManualClock, Timestamp};

/// On a 30-minute directory sync tick.
pub(super) const START: Timestamp = Timestamp(1_800_000_000_000);
pub(super) const MIN: Duration = Duration::from_secs(60);

pub(super) fn config(users: u32) -> SimConfig {
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

pub(super) fn open(dir: &Path, cfg: &SimConfig, clock: &Arc<ManualClock>) -> SimTenant {
    SimTenant::open(dir, cfg, clock.clone()).expect("open simulated tenant")
}

pub(super) fn exec(t: &SimTenant, op: Operation) -> Result<Value, BackendError> {
    t.execute_blocking(&op)
}

pub(super) fn get_user(t: &SimTenant, upn: &str) -> UserView {
    let v = exec(
        t,
        Operation::GetUser {
            user: upn.to_string(),
        },
    )
    .expect("get_user");
    serde_json::from_value(v).expect("UserView")
}

pub(super) fn get_number(t: &SimTenant, number: &str) -> Option<NumberView> {
    let v = exec(
        t,
        Operation::GetNumber {
            number: number.to_string(),
        },
    )
    .expect("get_number");
    serde_json::from_value(v).expect("NumberView or null")
}

pub(super) fn state(t: &SimTenant, upn: &str) -> UserState {
    t.user_state(upn).expect("store").expect("user exists")
}

pub(super) fn clear(upn: &str) -> Operation {
    Operation::ClearOnpremLineUri {
        user: upn.to_string(),
    }
}

pub(super) fn remove(upn: &str, number: &str, ty: NumberType) -> Operation {
    Operation::RemoveNumber {
        user: upn.to_string(),
        number: number.to_string(),
        number_type: ty,
    }
}

pub(super) fn grant(upn: &str, policy: Option<&str>) -> Operation {
    Operation::GrantVoiceRoutingPolicy {
        user: upn.to_string(),
        policy: policy.map(str::to_string),
    }
}

pub(super) fn assign(upn: &str, number: &str, ty: NumberType, loc: Option<&str>) -> Operation {
    Operation::AssignNumber {
        user: upn.to_string(),
        number: number.to_string(),
        number_type: ty,
        location_id: loc.map(str::to_string),
    }
}

/// (upn, number, location) of the first seeded user with / without an
/// on-premises line, skipping `skip` matches.
fn pick(t: &SimTenant, on_prem: bool, skip: usize) -> (String, String, String) {
    (1..=t.user_count())
        .map(SimTenant::upn)
        .filter(|u| state(t, u).ad_line_uri.is_some() == on_prem)
        .nth(skip)
        .map(|u| {
            let s = state(t, &u);
            (u, s.seeded_number, s.oc_location_id.unwrap_or_default())
        })
        .expect("such a user")
}

pub(super) fn err_kind(r: Result<Value, BackendError>) -> (ErrorKind, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (e.kind, e.message),
    }
}

pub(super) fn setup(users: u32) -> (tempfile::TempDir, Arc<ManualClock>, SimTenant) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let t = open(dir.path(), &config(users), &clock);
    (dir, clock, t)
}

#[test]
fn seeds_users_with_dr_numbers_and_exports_subjects() {
    let (_dir, _clock, t) = setup(200);
    let on_prem = (1..=200)
        .filter(|i| state(&t, &SimTenant::upn(*i)).ad_line_uri.is_some())
        .count();
    assert!((40..=80).contains(&on_prem), "{on_prem} on-prem users");

    let (upn, number, _) = pick(&t, true, 0);
    let u = get_user(&t, &upn);
    assert_eq!(u.on_prem_line_uri.as_deref(), Some(number.as_str()));
    assert_eq!(u.line_uri.as_deref(), Some(number.as_str()));
    assert!(u.enterprise_voice_enabled);
    assert_eq!(u.teams_upgrade_effective_mode, "TeamsOnly");
    assert_eq!(
        u.online_voice_routing_policy.as_deref(),
        Some(SEEDED_POLICY)
    );
    let n = get_number(&t, &number).expect("DR row");
    assert_eq!(n.number_source, "OnPremises");
    assert_eq!(get_number(&t, &number[1..]).as_ref(), Some(&n), "without +");
    assert_eq!(n.number_type, NumberType::DirectRouting);
    assert_eq!(n.assigned_pstn_target_id.as_deref(), Some(u.id.as_str()));

    let (upn, number, _) = pick(&t, false, 0);
    let u = get_user(&t, &upn);
    assert_eq!(u.on_prem_line_uri, None);
    assert_eq!(u.line_uri.as_deref(), Some(number.as_str()));
    assert_eq!(
        get_number(&t, &number).map(|n| n.number_source).as_deref(),
        Some("Online")
    );

    let mut csv = Vec::new();
    t.export_subjects_csv(&mut csv).expect("export");
    let csv = String::from_utf8(csv).expect("utf8");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 201);
    assert_eq!(lines[0], "user,number,location_id");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[0], "user0001@contoso.com");
    assert_eq!(first[1], "+14250000001");
    assert!(LOCATIONS.contains(&first[2]), "{}", lines[1]);
    assert_eq!(lines[200].split(',').next(), Some("user0200@contoso.com"));
}

#[test]
fn write_is_true_at_once_but_visible_only_after_latency() {
    let (_dir, clock, t) = setup(5);
    let upn = SimTenant::upn(1);
    exec(&t, grant(&upn, Some("OC-Route"))).expect("grant");
    let s = state(&t, &upn);
    assert_eq!(
        s.cloud.online_voice_routing_policy.as_deref(),
        Some("OC-Route")
    );
    let visible = s.converges_at.expect("pending visibility");
    let lag = visible.since(START);
    assert!(lag >= Duration::from_secs(30) && lag <= 10 * MIN, "{lag:?}");

    assert_eq!(
        get_user(&t, &upn).online_voice_routing_policy.as_deref(),
        Some(SEEDED_POLICY)
    );
    clock.set(Timestamp(visible.0 - 1));
    assert_eq!(
        get_user(&t, &upn).online_voice_routing_policy.as_deref(),
        Some(SEEDED_POLICY)
    );
    clock.set(visible);
    assert_eq!(
        get_user(&t, &upn).online_voice_routing_policy.as_deref(),
        Some("OC-Route")
    );
    assert_eq!(state(&t, &upn).converges_at, None);
}

#[test]
fn on_prem_clear_reaches_the_cloud_only_after_a_dirsync_tick() {
    let (_dir, clock, t) = setup(30);
    let (upn, number, _) = pick(&t, true, 0);
    clock.advance(MIN);
    exec(&t, clear(&upn)).expect("clear");
    let s = state(&t, &upn);
    assert_eq!(s.ad_line_uri, None, "AD changes at once");
    assert_eq!(s.cloud.on_prem_line_uri.as_deref(), Some(number.as_str()));

    // Before the tick (START + 30m) the cloud still holds the on-prem number.
    clock.set(START.plus(29 * MIN));
    let (kind, msg) = err_kind(exec(&t, remove(&upn, &number, NumberType::DirectRouting)));
    assert_eq!(kind, ErrorKind::Precondition);
    assert!(msg.contains("on-premises Active Directory"), "{msg}");
    assert!(t.number_state(&number).expect("store").is_some());

    // At the tick the truth changes; reads follow after the latency.
    clock.set(START.plus(30 * MIN));
    let s = state(&t, &upn);
    assert_eq!(s.cloud.on_prem_line_uri, None);
    assert_eq!(s.cloud.line_uri, None);
    assert!(!s.cloud.enterprise_voice_enabled);
    assert_eq!(t.number_state(&number).expect("store"), None);
    let visible = s.converges_at.expect("pending");
    assert!(visible >= START.plus(30 * MIN).plus(Duration::from_secs(30)));
    assert_eq!(
        get_user(&t, &upn).on_prem_line_uri.as_deref(),
        Some(number.as_str())
    );
    assert!(get_number(&t, &number).is_some());
    clock.set(visible);
    let v = get_user(&t, &upn);
    assert_eq!(v.on_prem_line_uri, None);
    assert_eq!(v.line_uri, None);
    assert!(!v.enterprise_voice_enabled);
    assert_eq!(get_number(&t, &number), None);
}

#[test]
fn online_dr_user_migrates_to_operator_connect_with_outage_recorded() {
    let (_dir, clock, t) = setup(30);
    let (upn, number, loc) = pick(&t, false, 0);
    clock.advance(5 * MIN);
    let removed_at = clock.now();
    exec(&t, remove(&upn, &number, NumberType::DirectRouting)).expect("remove");
    assert_eq!(t.number_state(&number).expect("store"), None);
    assert!(get_number(&t, &number).is_some(), "DR row still visible");
    exec(&t, grant(&upn, None)).expect("grant");

    // The OC number is not there yet.
    let (kind, msg) = err_kind(exec(
        &t,
        assign(&upn, &number, NumberType::OperatorConnect, Some(&loc)),
    ));
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(msg.contains("is not found from tenant"), "{msg}");

    // Operator uploads within 2 h of the removal.
    clock.set(removed_at.plus(121 * MIN));
    let oc = t.number_state(&number).expect("store").expect("uploaded");
    assert_eq!(oc.number_type, NumberType::OperatorConnect);
    assert_eq!(oc.pstn_assignment_status, "Unassigned");
    assert_eq!(oc.pstn_partner_name.as_deref(), Some(OPERATOR_NAME));
    let u = get_user(&t, &upn);
    assert_eq!(u.line_uri, None);
    assert!(!u.enterprise_voice_enabled);
    assert_eq!(u.online_voice_routing_policy, None);

    let assigned_at = clock.now();
    exec(
        &t,
        assign(&upn, &number, NumberType::OperatorConnect, Some(&loc)),
    )
    .expect("assign");
    let row = get_number(&t, &number).expect("row");
    assert_eq!(row.activation_state, "AssignmentPending");
    assert_eq!(row.pstn_assignment_status, "UserAssigned");
    let outages = t.outages().expect("outages");
    assert_eq!(outages.len(), 1);
    assert_eq!(outages[0].start, removed_at);
    assert_eq!(outages[0].end, None, "activation not visible yet");

    let visible = state(&t, &upn).converges_at.expect("pending");
    clock.set(visible);
    let row = get_number(&t, &number).expect("row");
    assert_eq!(row.activation_state, "Activated");
    assert_eq!(row.location_id.as_deref(), Some(loc.as_str()));
    let u = get_user(&t, &upn);
    assert_eq!(u.line_uri.as_deref(), Some(number.as_str()));
    assert!(u.enterprise_voice_enabled);
    assert_eq!(row.assigned_pstn_target_id.as_deref(), Some(u.id.as_str()));

    let outages = t.outages().expect("outages");
    let end = outages[0].end.expect("ended");
    assert!(end > assigned_at);
    assert_eq!(
        outages[0].duration_ms,
        end.since(removed_at).as_millis() as u64
    );
    assert_eq!(outages[0].user, upn);
    assert_eq!(outages[0].number, number);

    let log = t.audit_log().expect("audit");
    let ops: Vec<_> = log.iter().map(|e| e.op.info().name).collect();
    assert_eq!(
        ops,
        [
            "remove_number",
            "grant_voice_routing_policy",
            "assign_number",
            "assign_number"
        ]
    );
    assert!(matches!(
        log[2].outcome,
        AuditOutcome::Error {
            kind: ErrorKind::NotFound,
            ..
        }
    ));
    assert_eq!(log[3].outcome, AuditOutcome::Ok);
    assert_eq!(log[0].at, removed_at);
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn on_prem_dr_user_migrates_to_operator_connect() {
    let (_dir, clock, t) = setup(30);
    let (upn, number, loc) = pick(&t, true, 0);
    clock.advance(10 * MIN);
    let cleared_at = clock.now();
    exec(&t, clear(&upn)).expect("clear");
    exec(&t, grant(&upn, None)).expect("grant");
    // Tick at START+30m, upload at most 2 h later.
    clock.set(START.plus(30 * MIN + 121 * MIN));
    let oc = t.number_state(&number).expect("store").expect("uploaded");
    assert_eq!(oc.number_type, NumberType::OperatorConnect);
    exec(
        &t,
        assign(&upn, &number, NumberType::OperatorConnect, Some(&loc)),
    )
    .expect("assign");
    clock.advance(24 * 60 * MIN);
    let u = get_user(&t, &upn);
    assert_eq!(u.line_uri.as_deref(), Some(number.as_str()));
    assert_eq!(u.on_prem_line_uri, None);
    assert!(u.enterprise_voice_enabled);
    let n = get_number(&t, &number).expect("row");
    assert_eq!(n.activation_state, "Activated");
    assert_eq!(n.number_type, NumberType::OperatorConnect);
    let o = t.outages().expect("outages");
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].start, cleared_at);
    assert!(o[0].end.is_some_and(|e| e > START.plus(151 * MIN)));
}

#[test]
fn operator_upload_stays_pending_while_dr_number_exists() {
    let (_dir, clock, t) = setup(30);
    let (upn, number, _) = pick(&t, false, 0);
    let (op_upn, op_number, _) = pick(&t, true, 0);
    clock.advance(5 * 60 * MIN);
    for n in [&number, &op_number] {
        let row = t.number_state(n).expect("store").expect("row");
        assert_eq!(row.number_type, NumberType::DirectRouting, "{n}");
    }
    // On-prem cleared but not yet synced: still DR, no upload.
    let base = clock.now();
    exec(&t, clear(&op_upn)).expect("clear");
    clock.advance(29 * MIN);
    let row = t.number_state(&op_number).expect("store").expect("row");
    assert_eq!(row.number_type, NumberType::DirectRouting);

    exec(&t, remove(&upn, &number, NumberType::DirectRouting)).expect("remove");
    let removed_at = clock.now();
    clock.set(removed_at.plus(14 * MIN));
    assert_eq!(t.number_state(&number).expect("store"), None);
    assert_ne!(
        get_number(&t, &number).map(|r| r.number_type),
        Some(NumberType::OperatorConnect),
        "no OC upload before the minimum delay"
    );
    clock.set(removed_at.plus(120 * MIN));
    let row = t.number_state(&number).expect("store").expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
    // The on-prem number synced away at the tick after `base` and was uploaded too.
    clock.set(base.plus(30 * MIN + 120 * MIN));
    let row = t
        .number_state(&op_number)
        .expect("store")
        .expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
}

#[test]
fn documented_errors() {
    let (_dir, clock, t) = setup(30);
    let tid = t.tenant_id().to_string();
    let (a, a_num, a_loc) = pick(&t, false, 0);
    let (b, b_num, _) = pick(&t, false, 1);
    let (p, p_num, _) = pick(&t, true, 0);

    let (k, m) = err_kind(exec(
        &t,
        Operation::GetUser {
            user: "nobody@contoso.com".into(),
        },
    ));
    assert_eq!(k, ErrorKind::NotFound);
    assert!(
        m.contains("Management object not found for identity 'nobody@contoso.com'"),
        "{m}"
    );
    assert_eq!(get_number(&t, "+19999999999"), None);
    let (k, _) = err_kind(exec(&t, grant("nobody@contoso.com", None)));
    assert_eq!(k, ErrorKind::NotFound);

    // Wrong type and unknown number.
    let (k, m) = err_kind(exec(&t, remove(&a, &a_num, NumberType::OperatorConnect)));
    assert_eq!(k, ErrorKind::NotFound);
    assert_eq!(
        m,
        format!("Telephone Number '{a_num}' is not found from tenant '{tid}'")
    );
    let (k, _) = err_kind(exec(
        &t,
        remove(&a, "+19999999999", NumberType::DirectRouting),
    ));
    assert_eq!(k, ErrorKind::NotFound);
    // Someone else's number.
    let (k, _) = err_kind(exec(&t, remove(&a, &b_num, NumberType::DirectRouting)));
    assert_eq!(k, ErrorKind::Conflict);
    // On-prem number.
    let (k, m) = err_kind(exec(&t, remove(&p, &p_num, NumberType::DirectRouting)));
    assert_eq!(k, ErrorKind::Precondition);
    assert!(
        m.starts_with("The user already has a telephone number set in the on-premises"),
        "{m}"
    );

    // Get A's number uploaded as OC.
    exec(&t, remove(&a, &a_num, NumberType::DirectRouting)).expect("remove");
    clock.advance(121 * MIN);
    assert!(t.number_state(&a_num).expect("store").is_some());

    // Not in tenant as that type.
    let (k, m) = err_kind(exec(
        &t,
        assign(&a, &a_num, NumberType::DirectRouting, None),
    ));
    assert_eq!(k, ErrorKind::NotFound);
    assert!(m.contains("is not found from tenant"), "{m}");
    // On-prem line blocks online assignment.
    let (k, m) = err_kind(exec(
        &t,
        assign(&p, &a_num, NumberType::OperatorConnect, Some(&a_loc)),
    ));
    assert_eq!(k, ErrorKind::Precondition);
    assert!(m.contains("on-premises Active Directory"), "{m}");
    // Unknown location.
    let (k, m) = err_kind(exec(
        &t,
        assign(&a, &a_num, NumberType::OperatorConnect, Some("loc-xxx")),
    ));
    assert_eq!(k, ErrorKind::Precondition);
    assert!(m.contains("loc-xxx"), "{m}");
    // US OC number without location.
    let (k, m) = err_kind(exec(
        &t,
        assign(&a, &a_num, NumberType::OperatorConnect, None),
    ));
    assert_eq!(k, ErrorKind::Precondition);
    assert!(m.contains("LocationId"), "{m}");
    // B still holds its DR number.
    let (k, m) = err_kind(exec(
        &t,
        assign(&b, &a_num, NumberType::OperatorConnect, Some(&a_loc)),
    ));
    assert_eq!(k, ErrorKind::Conflict);
    assert!(m.contains(&b_num), "{m}");
    // Assigned to another user.
    exec(
        &t,
        assign(&a, &a_num, NumberType::OperatorConnect, Some(&a_loc)),
    )
    .expect("assign");
    exec(&t, remove(&b, &b_num, NumberType::DirectRouting)).expect("remove b");
    let (k, m) = err_kind(exec(
        &t,
        assign(&b, &a_num, NumberType::OperatorConnect, Some(&a_loc)),
    ));
    assert_eq!(k, ErrorKind::Conflict);
    assert_eq!(
        m,
        format!("Telephone Number '{a_num}' has already been assigned to another user")
    );
    // Failed actions did not change anything and were audited.
    assert_eq!(
        state(&t, &p).cloud.line_uri.as_deref(),
        Some(p_num.as_str())
    );
    let errors = t
        .audit_log()
        .expect("audit")
        .iter()
        .filter(|e| matches!(e.outcome, AuditOutcome::Error { .. }))
        .count();
    assert_eq!(errors, 11);
}

#[test]
fn every_action_is_idempotent() {
    let (_dir, clock, t) = setup(30);
    let (a, a_num, a_loc) = pick(&t, false, 0);
    let (p, p_num, _) = pick(&t, true, 0);
    let snapshot = |t: &SimTenant| {
        (
            state(t, &a),
            state(t, &p),
            t.number_state(&a_num).expect("store"),
            t.number_state(&p_num).expect("store"),
            t.outages().expect("outages"),
        )
    };
    let twice = |t: &SimTenant, op: Operation| {
        exec(t, op.clone()).expect("first");
        let before = snapshot(t);
        exec(t, op.clone()).expect("second");
        assert_eq!(snapshot(t), before, "{op:?} changed state when re-issued");
    };
    twice(&t, clear(&p));
    twice(&t, remove(&a, &a_num, NumberType::DirectRouting));
    twice(&t, grant(&a, None));
    twice(&t, grant(&a, Some("OC-Route")));
    clock.advance(4 * 60 * MIN);
    // After the sync and the upload, re-issuing the removals is still fine.
    twice(&t, clear(&p));
    twice(&t, remove(&a, &a_num, NumberType::DirectRouting));
    twice(&t, remove(&p, &p_num, NumberType::DirectRouting));
    twice(
        &t,
        assign(&a, &a_num, NumberType::OperatorConnect, Some(&a_loc)),
    );
    assert_eq!(
        state(&t, &a).cloud.line_uri.as_deref(),
        Some(a_num.as_str())
    );
    // A removal of an OC number keeps it in the inventory, unassigned.
    twice(&t, remove(&a, &a_num, NumberType::OperatorConnect));
    let row = t.number_state(&a_num).expect("store").expect("row");
    assert_eq!(row.pstn_assignment_status, "Unassigned");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
}

#[test]
fn truth_pending_visibility_and_audit_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let cfg = config(30);
    let (a, a_num, p, before, log, visible) = {
        let t = open(dir.path(), &cfg, &clock);
        let (a, a_num, _) = pick(&t, false, 0);
        let (p, _, _) = pick(&t, true, 0);
        exec(&t, remove(&a, &a_num, NumberType::DirectRouting)).expect("remove");
        exec(&t, clear(&p)).expect("clear");
        exec(&t, grant("nobody@contoso.com", None)).expect_err("unknown user");
        // A second handle on the same store is refused clearly.
        match SimTenant::open(dir.path(), &cfg, clock.clone()) {
            Err(SimError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        let before = (
            state(&t, &a),
            state(&t, &p),
            t.number_state(&a_num).expect("s"),
        );
        let visible = state(&t, &a).converges_at.expect("pending");
        (a, a_num, p, before, t.audit_log().expect("audit"), visible)
    };
    assert_eq!(log.len(), 3);
    // Reopen with another seed and size: the stored tenant wins.
    let other = SimConfig {
        seed: 99,
        users: 3,
        ..cfg.clone()
    };
    let t = open(dir.path(), &other, &clock);
    assert_eq!(t.user_count(), 30);
    assert_eq!(
        (
            state(&t, &a),
            state(&t, &p),
            t.number_state(&a_num).expect("s")
        ),
        before
    );
    assert_eq!(t.audit_log().expect("audit"), log);
    clock.set(Timestamp(visible.0 - 1));
    assert!(get_user(&t, &a).line_uri.is_some());
    clock.set(visible);
    assert_eq!(get_user(&t, &a).line_uri, None);
    // The audit sequence continues.
    exec(&t, grant(&a, None)).expect("grant");
    let log = t.audit_log().expect("audit");
    assert_eq!(log.last().map(|e| e.seq), Some(4));
    assert_eq!(t.outages().expect("outages").len(), 2);
}

#[test]
fn same_seed_gives_same_tenant_and_draws() {
    let clock = ManualClock::new(START);
    let d1 = tempfile::tempdir().expect("tempdir");
    let d2 = tempfile::tempdir().expect("tempdir");
    let d3 = tempfile::tempdir().expect("tempdir");
    let t1 = open(d1.path(), &config(50), &clock);
    let t2 = open(d2.path(), &config(50), &clock);
    let t3 = open(
        d3.path(),
        &SimConfig {
            seed: 8,
            ..config(50)
        },
        &clock,
    );
    let csv = |t: &SimTenant| {
        let mut out = Vec::new();
        t.export_subjects_csv(&mut out).expect("csv");
        out
    };
    assert_eq!(csv(&t1), csv(&t2));
    assert_eq!(t1.tenant_id(), t2.tenant_id());
    assert_ne!(t1.tenant_id(), t3.tenant_id());
    let on_prem = |t: &SimTenant| {
        (1..=50)
            .map(|i| state(t, &SimTenant::upn(i)).ad_line_uri.is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(on_prem(&t1), on_prem(&t2));
    assert_ne!(on_prem(&t1), on_prem(&t3));
    // Same calls in a different interleaving across users: same instants.
    let users: Vec<String> = (1..=10).map(SimTenant::upn).collect();
    for u in &users {
        exec(&t1, grant(u, Some("X"))).expect("grant");
        exec(&t1, grant(u, Some("Y"))).expect("grant");
    }
    for u in users.iter().rev() {
        exec(&t2, grant(u, Some("X"))).expect("grant");
    }
    for u in &users {
        exec(&t2, grant(u, Some("Y"))).expect("grant");
    }
    for u in &users {
        assert_eq!(state(&t1, u), state(&t2, u));
    }
    let cfg = config(1);
    assert_eq!(
        latency_draw(&cfg, "u", "assign_number", 3),
        latency_draw(&cfg, "u", "assign_number", 3)
    );
    assert_ne!(
        latency_draw(&cfg, "u", "assign_number", 3),
        latency_draw(&cfg, "u", "assign_number", 4)
    );
}

#[test]
fn latency_draws_follow_the_configured_shape() {
    let cfg = SimConfig::default();
    let draws: Vec<Duration> = (0..10_000)
        .map(|i| latency_draw(&cfg, &format!("user{i}"), "remove_number", 0))
        .collect();
    let tail = draws.iter().filter(|d| **d > 10 * MIN).count();
    assert!((120..=300).contains(&tail), "{tail} tail draws");
    assert!(draws
        .iter()
        .all(|d| *d >= Duration::from_secs(30) && *d <= Duration::from_secs(86_400)));
    let short = draws.iter().filter(|d| **d <= 5 * MIN).count();
    assert!(short > 6_000, "skewed to the short end: {short}");
}

#[test]
fn faults_at_rate_one_fire_and_do_not_mutate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let mut cfg = config(10);
    cfg.faults.transient_rate = 1.0;
    let (a, a_num) = {
        let t = open(dir.path(), &cfg, &clock);
        let (a, a_num, _) = pick(&t, false, 0);
        let before = state(&t, &a);
        let (k, m) = err_kind(exec(&t, remove(&a, &a_num, NumberType::DirectRouting)));
        assert_eq!(k, ErrorKind::Transient);
        assert_eq!(m, "Service is unavailable. Please try again");
        let (k, _) = err_kind(exec(&t, Operation::GetUser { user: a.clone() }));
        assert_eq!(k, ErrorKind::Transient);
        assert_eq!(state(&t, &a), before);
        assert!(t.number_state(&a_num).expect("s").is_some());
        let log = t.audit_log().expect("audit");
        assert_eq!(log.len(), 1, "observations are not audited");
        assert!(matches!(
            log[0].outcome,
            AuditOutcome::Error {
                kind: ErrorKind::Transient,
                ..
            }
        ));
        let stats = t.stats();
        assert_eq!(stats.injected_faults, 2);
        assert_eq!(stats.calls.get("remove_number"), Some(&1));
        assert_eq!(stats.calls.get("get_user"), Some(&1));
        (a, a_num)
    };

    cfg.faults.transient_rate = 0.0;
    cfg.faults.throttle_rate = 1.0;
    let t = open(dir.path(), &cfg, &clock);
    let before = state(&t, &a);
    let mut with_retry = 0;
    for _ in 0..40 {
        let e = exec(&t, remove(&a, &a_num, NumberType::DirectRouting)).expect_err("throttled");
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(e.message, "Too Many Requests");
        if let Some(r) = e.retry_after() {
            assert!(
                r >= Duration::from_secs(5) && r <= Duration::from_secs(60),
                "{r:?}"
            );
            with_retry += 1;
        }
    }
    assert!(
        (8..=32).contains(&with_retry),
        "{with_retry} of 40 with Retry-After"
    );
    assert_eq!(state(&t, &a), before);
    assert_eq!(t.stats().throttled, 40);
    drop(t);

    cfg.faults.throttle_rate = 0.0;
    cfg.faults.throttle_limit = Some(2);
    let t = open(dir.path(), &cfg, &clock);
    exec(&t, grant(&a, Some("A"))).expect("1st");
    exec(&t, grant(&a, Some("B"))).expect("2nd");
    let e = exec(&t, grant(&a, Some("C"))).expect_err("3rd in the same second");
    assert_eq!(e.kind, ErrorKind::Throttled);
    assert_eq!(e.retry_after(), Some(Duration::from_millis(500)));
    assert_eq!(
        state(&t, &a).cloud.online_voice_routing_policy.as_deref(),
        Some("B")
    );
    clock.advance(Duration::from_millis(500));
    exec(&t, grant(&a, Some("C"))).expect("after Retry-After");
    let s = t.stats();
    assert_eq!((s.throttled, s.rate_limited), (1, 1));
}

#[tokio::test]
async fn concurrent_async_calls_are_serialized_and_audited() {
    let (_dir, _clock, t) = setup(20);
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for i in 1..=20 {
        let t = Arc::clone(&t);
        tasks.push(tokio::spawn(async move {
            let upn = SimTenant::upn(i);
            let key = format!("run/{i}/grant/1");
            t.execute(&Call::action(grant(&upn, Some("OC")), key, 1))
                .await?;
            t.execute(&Call::observation(Operation::GetUser { user: upn }))
                .await
        }));
    }
    for task in tasks {
        let r = task.await.expect("join");
        assert!(r.is_ok(), "{r:?}");
    }
    let log = t.audit_log().expect("audit");
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(t.stats().calls.get("get_user"), Some(&20));
}

#[test]
fn seeds_ten_thousand_users() {
    let (_dir, _clock, t) = setup(10_000);
    assert_eq!(t.user_count(), 10_000);
    let last = state(&t, &SimTenant::upn(10_000));
    assert_eq!(last.seeded_number, "+14250010000");
    assert_eq!(last.cloud.upn, "user10000@contoso.com");
}

/// A clock that reads `START - 1h` until armed; its first reading once armed
/// is `START` and waits (up to a bound) for the test to let it go; later
/// ones read `START + 1h`.
struct StallingClock {
    armed: std::sync::atomic::AtomicBool,
    stalled_once: std::sync::atomic::AtomicBool,
    stalled: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Clock for StallingClock {
    fn now(&self) -> Timestamp {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.stalled_once
                .store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(tx) = self.stalled.lock().expect("lock").take() {
                let _ = tx.send(());
            }
            let rx = self.release.lock().expect("lock");
            // Bounded: with the instant taken under the tenant's lock, the
            // reader cannot run until this returns.
            let _ = rx.recv_timeout(Duration::from_millis(300));
            return START;
        }
        if self.stalled_once.load(std::sync::atomic::Ordering::SeqCst) {
            START.plus(Duration::from_secs(3600))
        } else {
            Timestamp(START.0 - 3_600_000)
        }
    }

    fn sleep_until(&self, _t: Timestamp) -> crate::clock::Sleep<'_> {
        Box::pin(async {})
    }
}

#[test]
fn a_read_stamped_after_a_write_sees_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stalled_tx, stalled) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let clock = Arc::new(StallingClock {
        armed: false.into(),
        stalled_once: false.into(),
        stalled: Some(stalled_tx).into(),
        release: release_rx.into(),
    });
    let mut cfg = config(5);
    cfg.latency.min = Duration::ZERO;
    cfg.latency.typical_max = Duration::ZERO;
    let t = SimTenant::open(dir.path(), &cfg, clock.clone()).expect("open");
    let upn = SimTenant::upn(1);
    clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let writer = {
        let (t, upn) = (t.clone(), upn.clone());
        std::thread::spawn(move || exec(&t, grant(&upn, Some("OC"))))
    };
    // The write has read its instant (START) and stalls; the read reads START + 1h.
    stalled.recv().expect("the write reads the clock");
    let seen = get_user(&t, &upn);
    let _ = release.send(());
    writer.join().expect("join").expect("grant");
    let log = t.audit_log().expect("audit");
    assert_eq!(log.last().map(|e| e.at), Some(START));
    assert_eq!(
        seen.online_voice_routing_policy.as_deref(),
        Some("OC"),
        "a read stamped an hour after the write returned the state before it"
    );
}

#[tokio::test]
async fn one_sync_makes_every_applied_action_durable() {
    let (dir, _clock, t) = setup(20);
    let before = t.shared.db.syncs();
    for i in 1..=20 {
        let done = t.shared.perform(&grant(&SimTenant::upn(i), Some("OC")));
        assert!(done.sync && done.result.is_ok(), "{:?}", done.result);
    }
    assert!(!t.shared.db.is_durable());
    t.shared
        .syncer
        .durable(&t.shared.db)
        .await
        .expect("durable");
    assert!(t.shared.db.is_durable());
    assert_eq!(t.shared.db.syncs(), before + 1, "one fsync for 20 actions");
    // A read of durable state waits for nothing.
    get_user(&t, &SimTenant::upn(1));
    assert_eq!(t.shared.db.syncs(), before + 1);
    drop(t);
    let clock = ManualClock::new(START);
    let t = open(dir.path(), &config(20), &clock);
    let log = t.audit_log().expect("audit");
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}
