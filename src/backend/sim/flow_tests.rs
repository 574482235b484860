//! Behaviour tests of the migration profiles other than Direct Routing →
//! Operator Connect (Calling Plans port-out, SfB Server moves, Operator Connect
//! locations) and of the conferencing and licence operations, on a manual clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::tests::{
    assign, config, err_kind, exec, get_number, get_user, open, remove, state, MIN, START,
};
use super::*;
use crate::backend::{
    ConferencingView, ErrorKind, Homing, LocationView, NumberType, OnPremUserView, Operation,
    OperationKind, PortOrderView, Tenant,
};
use crate::clock::{ManualClock, Timestamp};

const HOUR: Duration = Duration::from_secs(3600);

fn cfg(profile: Profile, users: u32) -> SimConfig {
    SimConfig {
        profile,
        ..config(users)
    }
}

fn setup_with(c: &SimConfig) -> (tempfile::TempDir, Arc<ManualClock>, SimTenant) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let t = open(dir.path(), c, &clock);
    (dir, clock, t)
}

fn u(user: &str) -> String {
    user.to_string()
}

fn port(t: &SimTenant, number: &str) -> Option<PortOrderView> {
    let v = exec(t, Operation::GetPortOrder { number: u(number) }).expect("get_port_order");
    serde_json::from_value(v).expect("PortOrderView or null")
}

fn onprem(t: &SimTenant, user: &str) -> Option<OnPremUserView> {
    let v = exec(t, Operation::GetOnpremUser { user: u(user) }).expect("get_onprem_user");
    serde_json::from_value(v).expect("OnPremUserView or null")
}

fn conferencing(t: &SimTenant, user: &str) -> Option<ConferencingView> {
    let v = exec(t, Operation::GetConferencing { user: u(user) }).expect("get_conferencing");
    serde_json::from_value(v).expect("ConferencingView or null")
}

fn get_location(t: &SimTenant, id: &str) -> Option<LocationView> {
    let v = exec(t, Operation::GetLocation { location_id: u(id) }).expect("get_location");
    serde_json::from_value(v).expect("LocationView or null")
}

fn remove_licence(user: &str, sku: &str) -> Operation {
    Operation::RemoveLicence {
        user: u(user),
        sku: u(sku),
    }
}

fn move_user(user: &str, force: bool) -> Operation {
    Operation::MoveUser {
        user: u(user),
        force,
    }
}

fn set_location(number: &str, loc: &str) -> Operation {
    Operation::SetNumberLocation {
        number: u(number),
        location_id: u(loc),
    }
}

fn precondition(r: Result<Value, crate::backend::BackendError>, needle: &str) {
    let (kind, m) = err_kind(r);
    assert_eq!(kind, ErrorKind::Precondition, "{m}");
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
}

/// Seeded users without any of `tags`, in seeding order.
fn plain_users(t: &SimTenant, tags_excluded: &[&str]) -> Vec<String> {
    (1..=t.user_count())
        .map(SimTenant::upn)
        .filter(|upn| {
            let s = state(t, upn);
            !s.tags.iter().any(|x| tags_excluded.contains(&x.as_str()))
        })
        .collect()
}

fn csv(t: &SimTenant) -> String {
    let mut out = Vec::new();
    t.export_subjects_csv(&mut out).expect("export");
    String::from_utf8(out).expect("utf8")
}

/// Move the clock to `at` if that is later than now.
fn at_least(clock: &ManualClock, at: Timestamp) {
    use crate::clock::Clock;
    if clock.now() < at {
        clock.set(at);
    }
}

#[test]
fn calling_plan_user_ports_out_to_operator_connect_with_outage_from_port_completion() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::CallingPlans, 20));
    let upn = plain_users(&t, &[tags::GROUP_LICENSED])
        .into_iter()
        .next()
        .expect("a user");
    let s = state(&t, &upn);
    let number = s.seeded_number.clone();
    let loc = s.oc_location_id.clone().expect("target location");
    let user = get_user(&t, &upn);
    assert!(user.licences.iter().any(|l| l == "MCOPSTN1"), "{user:?}");
    assert!(user.feature_types.iter().any(|f| f == "CallingPlan"));
    assert!(user.enterprise_voice_enabled);
    assert_eq!(user.online_voice_routing_policy, None);
    let row = get_number(&t, &number).expect("CP row");
    assert_eq!(row.number_type, NumberType::CallingPlan);
    assert_eq!(row.pstn_partner_name.as_deref(), Some("Microsoft"));
    assert_eq!(
        row.assigned_pstn_target_id.as_deref(),
        Some(user.id.as_str())
    );
    assert_eq!(
        port(&t, &number).map(|p| p.status).as_deref(),
        Some("Processing")
    );
    assert!(t.outages().expect("outages").is_empty());

    // The port completes at its FOC date: the tenant still shows the CP number
    // assigned, but calls go to the operator: the outage starts there.
    clock.set(START.plus(9 * HOUR));
    let p = port(&t, &number).expect("order");
    assert_eq!(p.status, "Completed");
    let foc = p.foc_date.expect("FOC date");
    let outage = t
        .outages()
        .expect("outages")
        .into_iter()
        .find(|o| o.user == upn)
        .expect("outage from the port");
    assert_eq!((outage.start, outage.end), (foc, None));
    assert_eq!(
        t.outages().expect("outages").len(),
        20,
        "every port completed"
    );
    let row = get_number(&t, &number).expect("still in the tenant");
    assert_eq!(row.pstn_assignment_status, "UserAssigned");

    // Unassign the CP number: ported out, it leaves the inventory.
    let removed_at = clock_now(&clock);
    exec(&t, remove(&upn, &number, NumberType::CallingPlan)).expect("unassign CP");
    assert_eq!(t.number_state(&number).expect("store"), None);
    assert!(!state(&t, &upn).cloud.enterprise_voice_enabled);
    // Remove the Calling Plan licence, keep Phone System.
    exec(&t, remove_licence(&upn, "MCOPSTN1")).expect("remove CP licence");
    let s = state(&t, &upn);
    assert!(!s.licences.iter().any(|l| l == "MCOPSTN1"));
    assert!(s.licences.iter().any(|l| l == "MCOEV"));
    assert!(!s.cloud.feature_types.iter().any(|f| f == "CallingPlan"));

    // The operator uploads the number as Operator Connect.
    clock.set(removed_at.plus(2 * HOUR));
    let row = get_number(&t, &number).expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
    assert_eq!(row.pstn_partner_name.as_deref(), Some(OPERATOR_NAME));
    exec(
        &t,
        assign(&upn, &number, NumberType::OperatorConnect, Some(&loc)),
    )
    .expect("assign OC");
    let active = state(&t, &upn).converges_at.expect("pending");
    clock.set(active);
    let row = get_number(&t, &number).expect("row");
    assert_eq!(row.activation_state, "Activated");
    assert_eq!(row.location_id.as_deref(), Some(loc.as_str()));
    let user = get_user(&t, &upn);
    assert_eq!(user.line_uri.as_deref(), Some(number.as_str()));
    assert!(user.enterprise_voice_enabled);
    let outage = t
        .outages()
        .expect("outages")
        .into_iter()
        .find(|o| o.user == upn)
        .expect("outage");
    assert_eq!((outage.start, outage.end), (foc, Some(active)));
}

fn clock_now(clock: &ManualClock) -> Timestamp {
    use crate::clock::Clock;
    clock.now()
}

#[test]
fn port_orders_progress_and_freeze_before_the_foc_date() {
    // Demo timings: the pending window is the last quarter of the order.
    let (_dir, clock, t) = setup_with(&cfg(Profile::CallingPlans, 3));
    let number = SimTenant::seeded_number(1);
    let mut seen: Vec<(String, Timestamp)> = Vec::new();
    let mut foc_before_approval = false;
    let mut now = START;
    while now <= START.plus(9 * HOUR) {
        clock.set(now);
        let p = port(&t, &number).expect("order");
        assert!(p.order_id.starts_with("PO-"));
        if matches!(p.status.as_str(), "Processing" | "ContactingCarrier") {
            foc_before_approval |= p.foc_date.is_some();
        }
        if seen.last().map(|(s, _)| s) != Some(&p.status) {
            seen.push((p.status.clone(), now));
        }
        now = now.plus(MIN);
    }
    assert!(!foc_before_approval);
    let statuses: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "Processing",
            "ContactingCarrier",
            "TransferApproved",
            "TransferPending",
            "Completed"
        ]
    );
    let foc = port(&t, &number).and_then(|p| p.foc_date).expect("foc");
    let total = foc.since(START);
    assert!(total >= 2 * HOUR && total <= 8 * HOUR, "{total:?}");
    let pending = seen[3].1;
    let window = foc.since(pending);
    assert!(
        window <= total / 4 + MIN && window + MIN >= total / 4,
        "{window:?} of {total:?}"
    );

    // Real timings: exactly the last 24 hours are frozen.
    let c = SimConfig {
        port: PortConfig {
            foc_after: FocConfig {
                min: 7 * 24 * HOUR,
                max: 14 * 24 * HOUR,
            },
            error_rate: 0.0,
        },
        ..cfg(Profile::CallingPlans, 2)
    };
    let (_d2, clock, t) = setup_with(&c);
    let foc = loop {
        let p = port(&t, &number).expect("order");
        if let Some(foc) = p.foc_date {
            assert_eq!(p.status, "TransferApproved");
            break foc;
        }
        clock.advance(HOUR);
    };
    assert!(foc.since(START) >= 7 * 24 * HOUR);
    clock.set(Timestamp(foc.0 - 24 * 3_600_000 - 1));
    assert_eq!(
        port(&t, &number).map(|p| p.status).as_deref(),
        Some("TransferApproved")
    );
    clock.set(Timestamp(foc.0 - 24 * 3_600_000));
    assert_eq!(
        port(&t, &number).map(|p| p.status).as_deref(),
        Some("TransferPending")
    );
    clock.set(Timestamp(foc.0 - 1));
    assert_eq!(
        port(&t, &number).map(|p| p.status).as_deref(),
        Some("TransferPending")
    );
    clock.set(foc);
    assert_eq!(
        port(&t, &number).map(|p| p.status).as_deref(),
        Some("Completed")
    );
    // Numbers without an order answer null.
    assert_eq!(port(&t, "+19995550000"), None);
}

#[test]
fn rejected_port_orders_end_in_error_and_never_complete() {
    let c = SimConfig {
        port: PortConfig {
            error_rate: 0.5,
            ..PortConfig::default()
        },
        ..cfg(Profile::CallingPlans, 40)
    };
    let (_dir, clock, t) = setup_with(&c);
    let failed = t.users_tagged(tags::PORT_ERROR).expect("tags");
    assert!((8..=32).contains(&failed.len()), "{} of 40", failed.len());
    clock.set(START.plus(24 * HOUR));
    for upn in &failed {
        let number = state(&t, upn).seeded_number;
        let p = port(&t, &number).expect("order");
        assert_eq!(p.status, "Error");
        assert_eq!(p.foc_date, None);
        let msg = p.error.expect("reason");
        assert!(
            msg.contains("mismatch") || msg.contains("losing carrier"),
            "{msg}"
        );
        // The number still belongs to the user in Teams: no outage.
        let row = get_number(&t, &number).expect("row");
        assert_eq!(row.pstn_assignment_status, "UserAssigned");
    }
    let outages: BTreeSet<String> = t
        .outages()
        .expect("outages")
        .into_iter()
        .map(|o| o.user)
        .collect();
    assert_eq!(outages.len(), 40 - failed.len());
    assert!(failed.iter().all(|f| !outages.contains(f)));
}

#[test]
fn removing_the_calling_plan_licence_first_unassigns_the_number() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::CallingPlans, 200));
    let upn = plain_users(&t, &[tags::GROUP_LICENSED])
        .into_iter()
        .next()
        .expect("user");
    let number = state(&t, &upn).seeded_number;
    // Removing a licence the user does not hold is a no-op.
    exec(&t, remove_licence(&upn, "MCOPSTN2")).expect("absent licence");
    assert_eq!(state(&t, &upn).converges_at, None);
    // The trap: licence before number.
    exec(&t, remove_licence(&upn, "MCOPSTN1")).expect("remove CP licence");
    let row = t
        .number_state(&number)
        .expect("store")
        .expect("still in inventory");
    assert_eq!(row.pstn_assignment_status, "Unassigned");
    assert_eq!(row.assigned_pstn_target_id, None);
    let s = state(&t, &upn);
    assert_eq!(s.cloud.line_uri, None);
    assert!(!s.cloud.enterprise_voice_enabled);
    let o = t.outages().expect("outages");
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].user.as_str(), o[0].start), (upn.as_str(), START));
    // Reads still show the old state until the change is visible.
    assert!(get_user(&t, &upn).line_uri.is_some());
    clock.set(s.converges_at.expect("pending"));
    assert_eq!(get_user(&t, &upn).line_uri, None);
    // Without the licence the CP number cannot be assigned back.
    let (kind, m) = err_kind(exec(
        &t,
        assign(&upn, &number, NumberType::CallingPlan, None),
    ));
    assert_eq!(kind, ErrorKind::Precondition);
    assert_eq!(
        m,
        format!("User '{upn}' lacks appropriate licenses to assign a 'CallingPlan' number")
    );
    // Once the port completes, the unassigned number leaves the inventory and
    // is uploaded by the operator.
    while port(&t, &number).map(|p| p.status).as_deref() != Some("Completed") {
        assert!(t.number_state(&number).expect("store").is_some());
        clock.advance(MIN);
    }
    assert_eq!(t.number_state(&number).expect("store"), None);
    clock.advance(2 * HOUR);
    let row = t.number_state(&number).expect("store").expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);

    // Group-inherited licences cannot be removed per user.
    let group = t.users_tagged(tags::GROUP_LICENSED).expect("tags");
    let g = group.first().expect("seed 7 has group-licensed users");
    precondition(
        exec(&t, remove_licence(g, "MCOPSTN1")),
        "User license is inherited from a group membership",
    );
    assert!(state(&t, g).licences.iter().any(|l| l == "MCOPSTN1"));
}

#[test]
fn phone_system_removal_unassigns_oc_numbers_and_deletes_dr_numbers() {
    let (_dir, _clock, t) = setup_with(&cfg(Profile::OperatorConnect, 30));
    let upn = plain_users(&t, &[tags::GROUP_LICENSED])
        .into_iter()
        .next()
        .expect("user");
    let number = state(&t, &upn).seeded_number;
    exec(&t, remove_licence(&upn, "MCOEV")).expect("remove Phone System");
    let row = t
        .number_state(&number)
        .expect("store")
        .expect("OC row stays");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
    assert_eq!(row.pstn_assignment_status, "Unassigned");
    assert!(!state(&t, &upn).cloud.enterprise_voice_enabled);
    // Idempotent re-issue.
    exec(&t, remove_licence(&upn, "MCOEV")).expect("again");
    assert_eq!(t.audit_log().expect("audit").len(), 2);

    let (_d2, clock, t) = setup_with(&cfg(Profile::DirectRouting, 30));
    let upn = (1..=30)
        .map(SimTenant::upn)
        .find(|x| {
            let s = state(&t, x);
            s.ad_line_uri.is_none() && !s.group_licensed
        })
        .expect("online DR user");
    let number = state(&t, &upn).seeded_number;
    exec(&t, remove_licence(&upn, "MCOEV")).expect("remove Phone System");
    assert_eq!(t.number_state(&number).expect("store"), None, "deleted");
    assert_eq!(state(&t, &upn).cloud.line_uri, None);
    clock.set(START.plus(2 * HOUR + MIN));
    let row = t.number_state(&number).expect("store").expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
}

#[test]
fn on_premises_user_moves_to_teams_with_direct_routing() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::OnPremises, 60));
    let upn = plain_users(
        &t,
        &[
            tags::CLOUD_CREATED,
            tags::ALREADY_ONLINE,
            tags::NO_PHONE_SYSTEM,
        ],
    )
    .into_iter()
    .next()
    .expect("user");
    let number = state(&t, &upn).seeded_number;
    let user = get_user(&t, &upn);
    assert_eq!(user.homed, Homing::OnPremises);
    assert_eq!(user.hosting_provider, "SRV:");
    assert_eq!(user.account_type, "SfBOnPremUser");
    assert_eq!(
        user.interpreted_user_type,
        "HybridOnpremSfBUserNeedsProvisioning"
    );
    assert!(user.dir_synced);
    assert!(user.licences.is_empty());
    assert_eq!(user.line_uri, None);
    let op = onprem(&t, &upn).expect("on-prem object");
    assert_eq!(op.homed, Homing::OnPremises);
    assert_eq!(op.registrar_pool, ONPREM_POOL);
    assert!(!op.enterprise_voice_enabled);
    assert_eq!(op.line_uri, None);
    assert_eq!(get_number(&t, &number), None);
    // Before group licensing: Teams / SfB Online missing.
    precondition(exec(&t, move_user(&upn, false)), "Plan 2");

    // Licences arrive within two hours.
    clock.set(START.plus(2 * HOUR));
    let user = get_user(&t, &upn);
    for l in ["Teams", "MCOProfessional", "MCOEV"] {
        assert!(user.licences.iter().any(|x| x == l), "{l} in {user:?}");
    }
    assert_eq!(user.interpreted_user_type, "HybridOnpremSfBUser");

    // Enable voice on-premises: immediate on-prem, cloud after the sync.
    exec(
        &t,
        Operation::EnableOnpremVoice {
            user: u(&upn),
            number: u(&number),
        },
    )
    .expect("enable on-prem voice");
    let op = onprem(&t, &upn).expect("on-prem object");
    assert!(op.enterprise_voice_enabled);
    assert_eq!(op.line_uri.as_deref(), Some(number.as_str()));
    assert_eq!(get_user(&t, &upn).on_prem_line_uri, None);
    let tick = START.plus(2 * HOUR + 30 * MIN);
    clock.set(Timestamp(tick.0 - 1));
    assert_eq!(
        state(&t, &upn).cloud.on_prem_line_uri,
        None,
        "before the tick"
    );
    clock.set(tick.plus(10 * MIN));
    let user = get_user(&t, &upn);
    assert_eq!(user.on_prem_line_uri.as_deref(), Some(number.as_str()));
    assert_eq!(user.line_uri.as_deref(), Some(number.as_str()));
    let row = get_number(&t, &number).expect("synced DR number");
    assert_eq!(row.number_type, NumberType::DirectRouting);
    assert_eq!(row.number_source, "OnPremises");
    assert_eq!(
        row.assigned_pstn_target_id.as_deref(),
        Some(user.id.as_str())
    );

    // Voice online needs the user homed online.
    precondition(
        exec(&t, Operation::EnableVoiceOnline { user: u(&upn) }),
        "move the user to Teams first",
    );

    // The move: homed online at once; reads provision for a while.
    exec(&t, move_user(&upn, false)).expect("move");
    let s = state(&t, &upn);
    assert_eq!(s.cloud.homed, Homing::Online);
    assert_eq!(s.cloud.interpreted_user_type, "HybridOnlineTeamsOnlyUser");
    assert!(!s.contacts_lost);
    assert_eq!(s.onprem.map(|o| o.homed), Some(Homing::Online));
    let user = get_user(&t, &upn);
    assert_eq!(
        user.interpreted_user_type,
        "HybridOnlineSfBUserNeedsProvisioning"
    );
    assert_eq!(user.hosting_provider, "sipfed.online.lync.com");
    clock.set(s.converges_at.expect("provisioning"));
    let user = get_user(&t, &upn);
    assert_eq!(user.interpreted_user_type, "HybridOnlineTeamsOnlyUser");
    assert_eq!(user.teams_upgrade_effective_mode, "TeamsOnly");
    assert_eq!(user.account_type, "User");
    // A re-issued move is a no-op.
    exec(&t, move_user(&upn, false)).expect("re-issued move");

    exec(&t, Operation::EnableVoiceOnline { user: u(&upn) }).expect("EV");
    exec(&t, Operation::EnableHostedVoicemail { user: u(&upn) }).expect("voicemail");
    let s = state(&t, &upn);
    assert!(s.cloud.enterprise_voice_enabled && s.cloud.hosted_voicemail);
    clock.set(s.converges_at.expect("pending"));
    let user = get_user(&t, &upn);
    assert!(user.enterprise_voice_enabled);
    assert!(user.hosted_voicemail);
    assert_eq!(user.line_uri.as_deref(), Some(number.as_str()));
}

#[test]
fn on_premises_refusals() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::OnPremises, 200));
    clock.set(START.plus(2 * HOUR));
    let cloud = t.users_tagged(tags::CLOUD_CREATED).expect("tags");
    let online = t.users_tagged(tags::ALREADY_ONLINE).expect("tags");
    let no_ev = t.users_tagged(tags::NO_PHONE_SYSTEM).expect("tags");
    let (Some(cloud), Some(online), Some(no_ev)) = (cloud.first(), online.first(), no_ev.first())
    else {
        panic!("seed 7 with 200 users has every cohort");
    };
    // Cloud-created: not on-premises at all.
    assert_eq!(onprem(&t, cloud), None);
    assert!(!get_user(&t, cloud).dir_synced);
    let (kind, m) = err_kind(exec(&t, move_user(cloud, false)));
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(m.contains("Management object not found"), "{m}");
    let (kind, m) = err_kind(exec(
        &t,
        Operation::EnableOnpremVoice {
            user: u(cloud),
            number: SimTenant::seeded_number(1),
        },
    ));
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(m.contains("Management object not found"), "{m}");
    assert_eq!(onprem(&t, "nobody@contoso.com"), None);
    // Already homed online.
    precondition(
        exec(&t, move_user(online, false)),
        "User is already homed online",
    );
    assert_eq!(get_user(&t, online).homed, Homing::Online);
    // On-prem EV enabled without Phone System online.
    assert!(!state(&t, no_ev).licences.iter().any(|l| l == "MCOEV"));
    exec(
        &t,
        Operation::EnableOnpremVoice {
            user: u(no_ev),
            number: state(&t, no_ev).seeded_number,
        },
    )
    .expect("on-prem EV");
    precondition(
        exec(&t, move_user(no_ev, false)),
        "BypassEnterpriseVoiceCheck",
    );
    // A user without on-prem EV and without Phone System moves, but cannot
    // enable voice online.
    let other_no_ev = t.users_tagged(tags::NO_PHONE_SYSTEM).expect("tags");
    let x = other_no_ev.get(1).expect("two users without Phone System");
    exec(&t, move_user(x, false)).expect("move without EV");
    precondition(
        exec(&t, Operation::EnableVoiceOnline { user: u(x) }),
        "lacks appropriate licenses",
    );
    // Voicemail needs the user online.
    let plain = plain_users(
        &t,
        &[
            tags::CLOUD_CREATED,
            tags::ALREADY_ONLINE,
            tags::NO_PHONE_SYSTEM,
        ],
    );
    precondition(
        exec(&t, Operation::EnableHostedVoicemail { user: u(&plain[0]) }),
        "homed on-premises",
    );
    // Forced move: contacts and meetings are lost.
    exec(&t, move_user(&plain[0], true)).expect("forced move");
    assert!(state(&t, &plain[0]).contacts_lost);
    assert!(!state(&t, &plain[1]).contacts_lost);
}

#[test]
fn concurrent_moves_are_capped() {
    let c = SimConfig {
        max_concurrent_moves: 3,
        licence_delay: LicenceDelayConfig {
            min: Duration::ZERO,
            max: Duration::ZERO,
        },
        ..cfg(Profile::OnPremises, 60)
    };
    let (_dir, clock, t) = setup_with(&c);
    let users = plain_users(
        &t,
        &[
            tags::CLOUD_CREATED,
            tags::ALREADY_ONLINE,
            tags::NO_PHONE_SYSTEM,
        ],
    );
    for x in &users[..3] {
        exec(&t, move_user(x, false)).expect("within the cap");
    }
    let (kind, m) = err_kind(exec(&t, move_user(&users[3], false)));
    assert_eq!(kind, ErrorKind::Transient);
    assert_eq!(
        m,
        "The maximum number of concurrent user moves has been reached. Please try again later"
    );
    assert_eq!(state(&t, &users[3]).cloud.homed, Homing::OnPremises);
    // Still capped one minute later (moves take 1 to 5 minutes) …
    clock.set(START.plus(MIN - Duration::from_millis(1)));
    assert_eq!(
        err_kind(exec(&t, move_user(&users[3], false))).0,
        ErrorKind::Transient
    );
    // … free after five.
    clock.set(START.plus(5 * MIN));
    exec(&t, move_user(&users[3], false)).expect("after the moves completed");
    assert_eq!(state(&t, &users[3]).cloud.homed, Homing::Online);
}

#[test]
fn conferencing_mail_and_reset_write_one_outbox_entry_per_call() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::DirectRouting, 200));
    let ms: Vec<String> = plain_users(&t, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    assert!((160..=195).contains(&ms.len()), "{} Microsoft", ms.len());
    let upn = &ms[0];
    let c = conferencing(&t, upn).expect("Microsoft AC");
    assert_eq!(c.provider, "Microsoft");
    let old = c.conference_id.clone().expect("id");
    assert_eq!(old.len(), 7);
    assert!(old.chars().all(|ch| ch.is_ascii_digit()));
    assert!(get_user(&t, upn).licences.iter().any(|l| l == "MCOMEETADD"));

    let send = || exec(&t, Operation::SendConferencingInfo { user: u(upn) });
    send().expect("mail");
    send().expect("mail again");
    let out = t.outbox().expect("outbox");
    assert_eq!(out.len(), 2, "one entry per call");
    assert!(out
        .iter()
        .all(|e| e.kind == "conferencing_info" && e.conference_id.as_deref() == Some(&old)));
    assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    exec(&t, Operation::ResetConferenceId { user: u(upn) }).expect("reset");
    let out = t.outbox().expect("outbox");
    assert_eq!(out.len(), 3);
    let new = out[2].conference_id.clone().expect("new id");
    assert_eq!(out[2].kind, "conference_id_reset");
    assert_ne!(new, old);
    let s = state(&t, upn);
    assert_eq!(
        s.conferencing.and_then(|c| c.conference_id).as_deref(),
        Some(new.as_str()),
        "the old id stops working at once"
    );
    assert_eq!(
        conferencing(&t, upn).and_then(|c| c.conference_id),
        Some(old.clone())
    );
    clock.set(s.converges_at.expect("pending"));
    assert_eq!(
        conferencing(&t, upn).and_then(|c| c.conference_id),
        Some(new.clone())
    );

    // Repeated resets never give back an earlier id.
    let mut ids = vec![old, new];
    for _ in 0..30 {
        exec(&t, Operation::ResetConferenceId { user: u(upn) }).expect("reset");
        let id = state(&t, upn)
            .conferencing
            .and_then(|c| c.conference_id)
            .expect("id");
        assert!(!ids.contains(&id), "{id} repeated");
        ids.push(id);
    }
    assert_eq!(t.outbox().expect("outbox").len(), 33);

    // Third-party provider and no audio conferencing: refused, nothing sent.
    let third = t.users_tagged(tags::CONF_THIRD_PARTY).expect("tags");
    let none = t.users_tagged(tags::CONF_NONE).expect("tags");
    let tp = &third[0];
    let c = conferencing(&t, tp).expect("third party");
    assert_eq!(
        (c.provider.as_str(), c.conference_id),
        (THIRD_PARTY_ACP, None)
    );
    for op in [
        Operation::SendConferencingInfo { user: u(tp) },
        Operation::ResetConferenceId { user: u(tp) },
    ] {
        precondition(
            exec(&t, op),
            "The user's audio conferencing provider is not Microsoft",
        );
    }
    assert_eq!(conferencing(&t, &none[0]), None);
    precondition(
        exec(&t, Operation::SendConferencingInfo { user: u(&none[0]) }),
        "not enabled for audio conferencing",
    );
    assert_eq!(t.outbox().expect("outbox").len(), 33);
    // Every call was audited, refusals included.
    let log = t.audit_log().expect("audit");
    assert_eq!(log.len(), 33 + 3);
    assert!(t.automates(OperationKind::ResetConferenceId));
}

#[test]
fn number_location_rules() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::OperatorConnect, 200));
    assert_eq!(
        get_location(&t, FOREIGN_LOCATION)
            .map(|l| l.country)
            .as_deref(),
        Some("GB")
    );
    assert_eq!(
        get_location(&t, INVALID_LOCATION)
            .map(|l| l.validation_status)
            .as_deref(),
        Some("Invalid")
    );
    assert_eq!(
        get_location(&t, UNVALIDATED_LOCATIONS[0])
            .map(|l| l.validation_status)
            .as_deref(),
        Some("NotValidated")
    );
    assert_eq!(
        get_location(&t, LOCATIONS[0])
            .map(|l| l.validation_status)
            .as_deref(),
        Some("Validated")
    );
    assert_eq!(get_location(&t, "loc-nowhere"), None);

    let locked = t.users_tagged(tags::OC_LOCKED).expect("tags");
    let tenant = t.users_tagged(tags::OC_TENANT_ASSIGNS).expect("tags");
    let operator = t.users_tagged(tags::OC_OPERATOR_ASSIGNED).expect("tags");
    let number_of = |x: &String| state(&t, x).seeded_number;
    let row = get_number(&t, &number_of(&locked[0])).expect("row");
    assert!(!row.location_update_supported);
    assert!(row.location_id.is_some());
    assert_eq!(row.iso_country_code, "US");
    let row = get_number(&t, &number_of(&tenant[0])).expect("row");
    assert!(row.location_update_supported && row.location_id.is_none());
    let n = number_of(&operator[0]);
    precondition(
        exec(&t, set_location(&n, UNVALIDATED_LOCATIONS[0])),
        "The emergency address must be validated before it can be assigned",
    );
    precondition(
        exec(&t, set_location(&n, INVALID_LOCATION)),
        "must be validated",
    );
    precondition(
        exec(&t, set_location(&n, FOREIGN_LOCATION)),
        "does not match",
    );
    precondition(exec(&t, set_location(&n, "loc-nowhere")), "is not found");
    precondition(
        exec(&t, set_location(&number_of(&locked[0]), LOCATIONS[1])),
        "Contact your operator to change the emergency address for this number.",
    );
    let (kind, _) = err_kind(exec(&t, set_location("+19995550000", LOCATIONS[1])));
    assert_eq!(kind, ErrorKind::NotFound);

    let current = get_number(&t, &n).and_then(|r| r.location_id);
    let target = LOCATIONS
        .iter()
        .find(|l| Some(l.to_string()) != current)
        .expect("another location");
    exec(&t, set_location(&n, target)).expect("set location");
    let row = get_number(&t, &n).expect("row");
    assert_eq!(row.activation_state, "UpdatePending");
    assert_eq!(row.location_id.as_deref(), Some(*target));
    let audited = t.audit_log().expect("audit").len();
    exec(&t, set_location(&n, target)).expect("idempotent re-issue");
    assert_eq!(t.audit_log().expect("audit").len(), audited + 1);
    clock.set(START.plus(10 * MIN));
    let row = get_number(&t, &n).expect("row");
    assert_eq!(row.activation_state, "Activated");
    assert_eq!(row.location_id.as_deref(), Some(*target));
    // Tenant-assigns numbers take a first location.
    let n2 = number_of(&tenant[0]);
    exec(&t, set_location(&n2, LOCATIONS[0])).expect("first location");
    assert_eq!(
        t.number_state(&n2)
            .expect("s")
            .and_then(|r| r.location_id)
            .as_deref(),
        Some(LOCATIONS[0])
    );
    // assign_number applies the same validation rules.
    let u0 = &operator[1];
    let n0 = number_of(u0);
    exec(&t, remove(u0, &n0, NumberType::OperatorConnect)).expect("unassign");
    precondition(
        exec(
            &t,
            assign(
                u0,
                &n0,
                NumberType::OperatorConnect,
                Some(UNVALIDATED_LOCATIONS[1]),
            ),
        ),
        "must be validated",
    );

    // The export gives each user's target; ~5% are not validated.
    let text = csv(&t);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user,number,location_id"));
    let not_validated = t.users_tagged(tags::TARGET_NOT_VALIDATED).expect("tags");
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        let tagged = not_validated.iter().any(|x| x == cols[0]);
        assert_eq!(UNVALIDATED_LOCATIONS.contains(&cols[2]), tagged, "{line}");
        assert!(tagged || LOCATIONS.contains(&cols[2]), "{line}");
    }
    assert!(
        (2..=25).contains(&not_validated.len()),
        "{}",
        not_validated.len()
    );
}

#[test]
fn seeded_population_follows_the_documented_shares() {
    let n = 2000;
    let share = |t: &SimTenant, tag: &str| t.users_tagged(tag).expect("tags").len() as f64 / 2000.0;
    // Within 4 standard deviations of a binomial share.
    let near = |x: f64, p: f64| (x - p).abs() < 4.0 * (p * (1.0 - p) / 2000.0).sqrt();

    let (_d, _c, t) = setup_with(&cfg(Profile::OnPremises, n));
    assert!(near(share(&t, tags::CLOUD_CREATED), 0.03));
    assert!(near(share(&t, tags::ALREADY_ONLINE), 0.03));
    assert!(near(share(&t, tags::NO_PHONE_SYSTEM), 0.04 * 0.94));
    assert!(near(share(&t, tags::CONF_THIRD_PARTY), 0.05));
    assert!(near(share(&t, tags::CONF_NONE), 0.05));
    let text = csv(&t);
    assert_eq!(text.lines().next(), Some("user,number"));
    assert_eq!(
        text.lines().nth(1),
        Some("user0001@contoso.com,+14250000001")
    );
    assert_eq!(t.profile(), Profile::OnPremises);

    let (_d, _c, t) = setup_with(&cfg(Profile::OperatorConnect, n));
    assert!(near(share(&t, tags::OC_OPERATOR_ASSIGNED), 0.6));
    assert!(near(share(&t, tags::OC_TENANT_ASSIGNS), 0.3));
    assert!(near(share(&t, tags::OC_LOCKED), 0.1));
    assert!(near(share(&t, tags::TARGET_NOT_VALIDATED), 0.05));
    assert!(near(share(&t, tags::GROUP_LICENSED), 0.03));

    let (_d, _c, t) = setup_with(&cfg(Profile::CallingPlans, n));
    assert!(t.users_tagged(tags::PORT_ERROR).expect("tags").is_empty());
    assert!(near(share(&t, tags::GROUP_LICENSED), 0.03));
}

#[test]
fn every_profile_is_deterministic_per_seed() {
    for profile in [
        Profile::DirectRouting,
        Profile::CallingPlans,
        Profile::OnPremises,
        Profile::OperatorConnect,
    ] {
        let c = SimConfig {
            port: PortConfig {
                error_rate: 0.3,
                ..PortConfig::default()
            },
            ..cfg(profile, 60)
        };
        let (_d1, c1, t1) = setup_with(&c);
        let (_d2, c2, t2) = setup_with(&c);
        let (_d3, c3, t3) = setup_with(&SimConfig {
            seed: 8,
            ..c.clone()
        });
        let snapshot = |t: &SimTenant| {
            (1..=60)
                .map(|i| {
                    let upn = SimTenant::upn(i);
                    let s = state(t, &upn);
                    let number = t.number_state(&s.seeded_number).expect("number");
                    let p = port(t, &s.seeded_number);
                    (s, number, p)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(csv(&t1), csv(&t2), "{profile:?}");
        for clock in [&c1, &c2, &c3] {
            clock.set(START.plus(3 * HOUR));
        }
        assert_eq!(snapshot(&t1), snapshot(&t2), "{profile:?}");
        assert_ne!(snapshot(&t1), snapshot(&t3), "{profile:?}");
    }
}

#[test]
fn new_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let c = SimConfig {
        max_concurrent_moves: 1,
        ..cfg(Profile::OnPremises, 60)
    };
    let (users, before, outbox, moving) = {
        let t = open(dir.path(), &c, &clock);
        clock.set(START.plus(2 * HOUR));
        let users = plain_users(
            &t,
            &[
                tags::CLOUD_CREATED,
                tags::ALREADY_ONLINE,
                tags::NO_PHONE_SYSTEM,
                tags::CONF_NONE,
                tags::CONF_THIRD_PARTY,
            ],
        );
        let a = &users[0];
        exec(
            &t,
            Operation::EnableOnpremVoice {
                user: u(a),
                number: state(&t, a).seeded_number,
            },
        )
        .expect("on-prem voice");
        exec(&t, move_user(a, true)).expect("move");
        exec(&t, Operation::ResetConferenceId { user: u(a) }).expect("reset");
        exec(&t, Operation::SendConferencingInfo { user: u(a) }).expect("mail");
        let before = (
            state(&t, a),
            onprem(&t, a),
            t.number_state(&state(&t, a).seeded_number).expect("store"),
        );
        let moving = state(&t, a).converges_at;
        (users.clone(), before, t.outbox().expect("outbox"), moving)
    };
    let t = open(
        dir.path(),
        &SimConfig {
            seed: 1,
            ..c.clone()
        },
        &clock,
    );
    assert_eq!(t.profile(), Profile::OnPremises, "the stored profile wins");
    let a = &users[0];
    let after = (
        state(&t, a),
        onprem(&t, a),
        t.number_state(&state(&t, a).seeded_number).expect("store"),
    );
    assert_eq!(after, before);
    assert!(after.0.contacts_lost);
    assert_eq!(t.outbox().expect("outbox"), outbox);
    assert_eq!(outbox.len(), 2);
    // The move in progress still counts against the cap.
    assert_eq!(
        err_kind(exec(&t, move_user(&users[1], false))).0,
        ErrorKind::Transient
    );
    // Pending dirsync of the line still happens after the reopen.
    at_least(&clock, START.plus(3 * HOUR + 10 * MIN));
    if let Some(m) = moving {
        at_least(&clock, m);
    }
    let user = get_user(&t, a);
    assert_eq!(
        user.line_uri.as_deref(),
        Some(state(&t, a).seeded_number.as_str())
    );
    assert_eq!(user.interpreted_user_type, "HybridOnlineTeamsOnlyUser");
    exec(&t, Operation::SendConferencingInfo { user: u(a) }).expect("mail");
    assert_eq!(t.outbox().expect("outbox").last().map(|e| e.seq), Some(3));
}
