//! Tests of the Microsoft rules the simulator enforces for fidelity: licence
//! assignment paths, operator address modes, the assignment rules of
//! `Set-CsPhoneNumberAssignment`, outages ended by every restoring path, and
//! the tenant's own clock. Manual clock throughout.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::tests::{
    assign, config, err_kind, exec, get_number, get_user, open, remove, state, MIN, START,
};
use super::*;
use crate::backend::{
    AddressMode, BackendError, ErrorKind, Homing, LicenceAssignment, NumberType, NumberView,
    Operation,
};
use crate::clock::{Clock, ManualClock};

const HOUR: Duration = Duration::from_secs(3600);
const LOCKED: &str = "Contact your operator to change the emergency address for this number.";

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

fn precondition(r: Result<Value, BackendError>, needle: &str) {
    let (kind, m) = err_kind(r);
    assert_eq!(kind, ErrorKind::Precondition, "{m}");
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
}

fn remove_licence(user: &str, sku: &str) -> Operation {
    Operation::RemoveLicence {
        user: user.to_string(),
        sku: sku.to_string(),
    }
}

#[test]
fn licence_assignments_show_each_path_with_read_lag() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::CallingPlans, 200));
    let group = t.users_tagged(tags::GROUP_LICENSED).expect("tags");
    let g = group.first().expect("seed 7 has group-licensed users");
    let view = get_user(&t, g);
    assert!(!view.licence_assignments.is_empty());
    for p in &view.licence_assignments {
        assert_eq!(p.assigned_via, "group", "{p:?}");
        assert_eq!(p.group.as_deref(), Some(LICENCE_GROUP));
    }
    let cp = view
        .licence_assignments
        .iter()
        .find(|p| p.sku == "MCOPSTN1");
    assert!(cp.is_some(), "{view:?}");
    precondition(
        exec(&t, remove_licence(g, "MCOPSTN1")),
        "inherited from a group membership",
    );

    // A directly licensed user: every path direct, and removing one shows late.
    let d = (1..=200)
        .map(SimTenant::upn)
        .find(|x| !state(&t, x).group_licensed)
        .expect("direct user");
    let before = get_user(&t, &d).licence_assignments;
    assert!(before
        .iter()
        .all(|p| p.assigned_via == "direct" && p.group.is_none()));
    assert!(before.contains(&LicenceAssignment::direct("MCOPSTN1")));
    exec(&t, remove_licence(&d, "MCOPSTN1")).expect("remove");
    assert!(!state(&t, &d)
        .licence_assignments
        .iter()
        .any(|p| p.sku == "MCOPSTN1"));
    assert_eq!(get_user(&t, &d).licence_assignments, before, "lags");
    clock.set(state(&t, &d).converges_at.expect("pending"));
    assert!(!get_user(&t, &d)
        .licence_assignments
        .iter()
        .any(|p| p.sku == "MCOPSTN1"));
}

#[test]
fn on_premises_group_licences_arrive_as_group_paths() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::OnPremises, 40));
    let upn = (1..=40)
        .map(SimTenant::upn)
        .find(|x| {
            let s = state(&t, x);
            s.onprem.is_some() && s.tags.iter().all(|t| t != tags::ALREADY_ONLINE)
        })
        .expect("on-premises user");
    assert!(get_user(&t, &upn).licence_assignments.is_empty());
    clock.advance(Duration::from_secs(24 * 3600));
    let paths = get_user(&t, &upn).licence_assignments;
    assert!(paths.iter().any(|p| p.sku == "Teams"), "{paths:?}");
    assert!(paths.iter().all(LicenceAssignment::is_group));
}

#[test]
fn old_records_derive_licence_paths_and_address_modes() {
    // A user record stored before licence paths: derived from the flag.
    let (_dir, _clock, t) = setup_with(&cfg(Profile::CallingPlans, 50));
    let g = t.users_tagged(tags::GROUP_LICENSED).expect("tags");
    let upn = g.first().cloned().unwrap_or_else(|| SimTenant::upn(1));
    let s = state(&t, &upn);
    assert_eq!(s.licence_assignments.len(), s.licences.len());

    // A number row stored before `address_mode`.
    let row = |supported: bool, loc: Option<&str>, ty: &str| {
        let v = serde_json::json!({
            "telephone_number": "+14250000001", "number_type": ty,
            "activation_state": "Activated", "pstn_assignment_status": "Unassigned",
            "assigned_pstn_target_id": null, "location_id": loc, "number_source": "Online",
            "pstn_partner_name": null, "iso_country_code": "US",
            "location_update_supported": supported,
        });
        serde_json::from_value::<NumberView>(v).expect("old row")
    };
    assert_eq!(
        row(false, Some("loc-sea-01"), "OperatorConnect").address_mode,
        "operator_locked"
    );
    assert_eq!(
        row(true, Some("loc-sea-01"), "OperatorConnect").address_mode,
        "operator_assigns"
    );
    assert_eq!(
        row(true, None, "OperatorConnect").address_mode,
        "tenant_assigns"
    );
    assert_eq!(
        row(true, Some("loc-sea-01"), "CallingPlan").mode(),
        AddressMode::TenantAssigns
    );
    let mut v = serde_json::to_value(row(true, None, "OperatorConnect")).expect("json");
    v["address_mode"] = "operator_locked".into();
    let back: NumberView = serde_json::from_value(v).expect("new row");
    assert_eq!(back.mode(), AddressMode::OperatorLocked);
}

#[test]
fn operator_connect_profile_rows_carry_their_address_mode() {
    let (_dir, _clock, t) = setup_with(&cfg(Profile::OperatorConnect, 200));
    for (tag, mode) in [
        (tags::OC_OPERATOR_ASSIGNED, AddressMode::OperatorAssigns),
        (tags::OC_TENANT_ASSIGNS, AddressMode::TenantAssigns),
        (tags::OC_LOCKED, AddressMode::OperatorLocked),
    ] {
        let users = t.users_tagged(tag).expect("tags");
        assert!(!users.is_empty(), "{tag}");
        for upn in users {
            let row = get_number(&t, &state(&t, &upn).seeded_number).expect("row");
            assert_eq!(row.address_mode, mode.as_str(), "{upn}");
            assert_eq!(
                row.location_update_supported,
                mode != AddressMode::OperatorLocked
            );
            assert_eq!(row.location_id.is_some(), mode.operator_sets_address());
        }
    }
}

#[test]
fn a_direct_path_beside_a_group_path_goes_but_the_licence_stays() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::CallingPlans, 50));
    let upn = (1..=50)
        .map(SimTenant::upn)
        .find(|x| !state(&t, x).group_licensed)
        .expect("direct user");
    let number = state(&t, &upn).seeded_number;
    t.edit_user(&upn, |rec| {
        let mut paths = rec.licence_paths();
        paths.push(LicenceAssignment::via_group(
            "MCOPSTN1",
            "Calling Plan users",
        ));
        rec.set_licence_paths(paths);
    })
    .expect("edit");
    let paths = state(&t, &upn).licence_assignments;
    assert_eq!(paths.iter().filter(|p| p.sku == "MCOPSTN1").count(), 2);
    exec(&t, remove_licence(&upn, "MCOPSTN1")).expect("direct path removed");
    let s = state(&t, &upn);
    assert_eq!(
        s.licence_assignments
            .iter()
            .filter(|p| p.sku == "MCOPSTN1")
            .collect::<Vec<_>>(),
        [&LicenceAssignment::via_group(
            "MCOPSTN1",
            "Calling Plan users"
        )]
    );
    // Still licensed through the group: the number stays assigned.
    assert!(s.licences.iter().any(|l| l == "MCOPSTN1"));
    assert_eq!(s.cloud.line_uri.as_deref(), Some(number.as_str()));
    assert!(t.outages().expect("outages").is_empty());
    clock.set(s.converges_at.expect("pending"));
    assert_eq!(
        get_user(&t, &upn)
            .licence_assignments
            .iter()
            .filter(|p| p.sku == "MCOPSTN1")
            .count(),
        1
    );
    // Only the group path left: now refused.
    precondition(
        exec(&t, remove_licence(&upn, "MCOPSTN1")),
        "inherited from a group membership",
    );
}

/// A Direct Routing tenant whose operator uploads with these mode shares.
fn dr_with_modes(users: u32, shares: [f64; 3]) -> SimConfig {
    SimConfig {
        operator: OperatorConfig {
            name: "Fabrikam Voice".into(),
            address_modes: Some(AddressModeShares {
                operator_assigns: shares[0],
                tenant_assigns: shares[1],
                operator_locked: shares[2],
            }),
        },
        ..cfg(Profile::DirectRouting, users)
    }
}

/// Seeded users whose number is not set on-premises, in seeding order.
fn online_users(t: &SimTenant) -> Vec<String> {
    (1..=t.user_count())
        .map(SimTenant::upn)
        .filter(|u| state(t, u).ad_line_uri.is_none())
        .collect()
}

/// Remove the user's DR number and wait out the operator's upload.
fn migrate_out(t: &SimTenant, clock: &ManualClock, upn: &str) -> (String, NumberView) {
    let number = state(t, upn).seeded_number;
    exec(t, remove(upn, &number, NumberType::DirectRouting)).expect("remove DR");
    clock.advance(2 * HOUR + MIN);
    let row = t.number_state(&number).expect("store").expect("uploaded");
    (number, row)
}

fn set_location(number: &str, loc: &str) -> Operation {
    Operation::SetNumberLocation {
        number: number.to_string(),
        location_id: loc.to_string(),
    }
}

#[test]
fn migration_uploads_are_tenant_assigns_by_default() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::DirectRouting, 20));
    let upn = online_users(&t).remove(0);
    let (number, row) = migrate_out(&t, &clock, &upn);
    assert_eq!(row.address_mode, "tenant_assigns");
    assert_eq!(
        (row.location_id, row.location_update_supported),
        (None, true)
    );
    assert_eq!(row.pstn_partner_name.as_deref(), Some(OPERATOR_NAME));
    // A US tenant-assigns number still needs a LocationId.
    precondition(
        exec(&t, assign(&upn, &number, NumberType::OperatorConnect, None)),
        "An emergency LocationId is required",
    );
}

#[test]
fn operator_locked_uploads_keep_the_operators_address() {
    let (_dir, clock, t) = setup_with(&dr_with_modes(20, [0.0, 0.0, 1.0]));
    let upn = online_users(&t).remove(0);
    let seeded_loc = state(&t, &upn).oc_location_id.expect("seeded location");
    let (number, row) = migrate_out(&t, &clock, &upn);
    assert_eq!(row.address_mode, "operator_locked");
    assert!(!row.location_update_supported);
    assert_eq!(row.location_id.as_deref(), Some(seeded_loc.as_str()));
    assert_eq!(row.pstn_partner_name.as_deref(), Some("Fabrikam Voice"));

    // Another location is refused and changes nothing.
    let other = LOCATIONS
        .iter()
        .find(|l| **l != seeded_loc)
        .expect("another location");
    precondition(
        exec(
            &t,
            assign(&upn, &number, NumberType::OperatorConnect, Some(other)),
        ),
        LOCKED,
    );
    // Even the operator's own location: -LocationId is not the tenant's to give.
    precondition(
        exec(
            &t,
            assign(
                &upn,
                &number,
                NumberType::OperatorConnect,
                Some(&seeded_loc),
            ),
        ),
        LOCKED,
    );
    assert_eq!(t.number_state(&number).expect("store"), Some(row.clone()));
    assert_eq!(state(&t, &upn).cloud.line_uri, None);
    precondition(exec(&t, set_location(&number, other)), LOCKED);
    // A locked address refuses even a bad location with the lock message.
    precondition(exec(&t, set_location(&number, "loc-nowhere")), LOCKED);

    // Without a LocationId the assignment keeps the operator's address.
    exec(&t, assign(&upn, &number, NumberType::OperatorConnect, None)).expect("assign");
    let after = t.number_state(&number).expect("store").expect("row");
    assert_eq!(after.pstn_assignment_status, "UserAssigned");
    assert_eq!(after.location_id.as_deref(), Some(seeded_loc.as_str()));
    assert_eq!(after.address_mode, "operator_locked");
}

#[test]
fn operator_assigned_uploads_may_be_changed_by_the_tenant() {
    let (_dir, clock, t) = setup_with(&dr_with_modes(20, [1.0, 0.0, 0.0]));
    let users = online_users(&t);
    let (a, b) = (&users[0], &users[1]);
    let (na, row) = migrate_out(&t, &clock, a);
    assert_eq!(row.address_mode, "operator_assigns");
    assert!(row.location_update_supported);
    let operator_loc = row.location_id.clone().expect("operator set it");
    // No LocationId: the operator's address stays, no demand for one.
    exec(&t, assign(a, &na, NumberType::OperatorConnect, None)).expect("assign");
    assert_eq!(
        t.number_state(&na).expect("s").and_then(|r| r.location_id),
        Some(operator_loc.clone())
    );
    // A LocationId changes it.
    let (nb, row_b) = migrate_out(&t, &clock, b);
    let other = LOCATIONS
        .iter()
        .find(|l| Some(l.to_string()) != row_b.location_id)
        .expect("another");
    exec(&t, assign(b, &nb, NumberType::OperatorConnect, Some(other))).expect("assign");
    assert_eq!(
        t.number_state(&nb).expect("s").and_then(|r| r.location_id),
        Some(other.to_string())
    );
    // And so does set_number_location.
    exec(&t, set_location(&na, other)).expect("set location");
    assert_eq!(
        t.number_state(&na).expect("s").and_then(|r| r.location_id),
        Some(other.to_string())
    );
}

#[test]
fn upload_modes_are_drawn_per_number_from_the_shares_and_the_seed() {
    let run = || {
        let (dir, clock, t) = setup_with(&dr_with_modes(60, [1.0, 1.0, 1.0]));
        let mut modes = Vec::new();
        for upn in online_users(&t) {
            let number = state(&t, &upn).seeded_number;
            exec(&t, remove(&upn, &number, NumberType::DirectRouting)).expect("remove");
        }
        clock.advance(2 * HOUR + MIN);
        for upn in online_users(&t) {
            let number = state(&t, &upn).seeded_number;
            let row = t.number_state(&number).expect("s").expect("uploaded");
            assert_eq!(
                row.location_id.is_some(),
                row.mode().operator_sets_address()
            );
            modes.push(row.address_mode);
        }
        drop(dir);
        modes
    };
    let modes = run();
    for m in AddressMode::ALL {
        let n = modes.iter().filter(|x| *x == m.as_str()).count();
        assert!(n >= 5, "{m}: {n} of {}", modes.len());
    }
    assert_eq!(run(), modes, "same seed, same modes");
}

#[test]
fn operator_locations_and_countries() {
    assert_eq!(super::seed::country_of("+14255550100"), Some("US"));
    assert_eq!(super::seed::country_of("14165550100"), Some("CA"));
    assert_eq!(super::seed::country_of("+442071234567"), Some("GB"));
    assert_eq!(super::seed::country_of("+35312345678"), Some("IE"));
    assert_eq!(super::seed::country_of("+8613800000000"), None);
    assert_eq!(super::seed::country_of("+1"), None);
    assert_eq!(super::seed::country_of("tel:+1425"), None);
    let loc = |c, p| super::seed::operator_location(c, p);
    assert_eq!(loc("US", Some("loc-chi-01")).as_deref(), Some("loc-chi-01"));
    // Not validated, or abroad: the first validated one of the country.
    assert_eq!(loc("US", Some("loc-new-01")).as_deref(), Some("loc-sea-01"));
    assert_eq!(
        loc("GB", Some("loc-chi-01")).as_deref(),
        Some(FOREIGN_LOCATION)
    );
    assert_eq!(loc("FR", None), None);
}

#[test]
fn islands_users_cannot_get_calling_plan_or_operator_connect_numbers() {
    let (_dir, _clock, t) = setup_with(&cfg(Profile::CallingPlans, 200));
    let islands = t.users_tagged(tags::NOT_TEAMS_ONLY).expect("tags");
    assert!(!islands.is_empty());
    let upn = islands
        .iter()
        .find(|u| !state(&t, u).group_licensed)
        .expect("an Islands user licensed directly");
    let s = state(&t, upn);
    assert_eq!(s.cloud.teams_upgrade_effective_mode, "Islands");
    assert_eq!(s.cloud.homed, Homing::Online);
    let number = s.seeded_number;
    exec(&t, remove(upn, &number, NumberType::CallingPlan)).expect("unassign");
    precondition(
        exec(&t, assign(upn, &number, NumberType::CallingPlan, None)),
        "must be in TeamsOnly mode to be assigned a 'CallingPlan' number",
    );
    assert_eq!(
        t.number_state(&number)
            .expect("s")
            .map(|r| r.pstn_assignment_status),
        Some("Unassigned".into())
    );
    // The cohort is small and leaves TeamsOnly users alone.
    assert!(islands.len() < 20, "{}", islands.len());
    let plain = (1..=200)
        .map(SimTenant::upn)
        .find(|u| !islands.contains(u))
        .expect("TeamsOnly user");
    assert_eq!(
        state(&t, &plain).cloud.teams_upgrade_effective_mode,
        "TeamsOnly"
    );
}

#[test]
fn on_premises_homed_users_cannot_get_online_numbers() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::OnPremises, 40));
    let upn = (1..=40)
        .map(SimTenant::upn)
        .find(|x| {
            let s = state(&t, x);
            s.cloud.homed == Homing::OnPremises && s.tags.iter().all(|t| t != tags::NO_PHONE_SYSTEM)
        })
        .expect("on-premises user");
    // Licences have arrived: only the homing stands in the way.
    clock.advance(3 * HOUR);
    assert!(state(&t, &upn).licences.iter().any(|l| l == "MCOEV"));
    precondition(
        exec(
            &t,
            assign(&upn, "+14255550999", NumberType::DirectRouting, None),
        ),
        "is homed in Skype for Business Server on-premises",
    );
    assert_eq!(t.number_state("+14255550999").expect("s"), None);
}

#[test]
fn usage_location_must_match_the_numbers_country() {
    let (_dir, _clock, t) = setup_with(&cfg(Profile::DirectRouting, 20));
    let users = online_users(&t);
    let (us, gb) = (&users[0], &users[1]);
    for u in [us, gb] {
        let n = state(&t, u).seeded_number;
        exec(&t, remove(u, &n, NumberType::DirectRouting)).expect("remove");
    }
    let london = "+442071234567";
    precondition(
        exec(&t, assign(us, london, NumberType::DirectRouting, None)),
        "does not match the country of telephone number '+442071234567' (GB)",
    );
    assert_eq!(t.number_state(london).expect("s"), None, "no row created");
    // A GB user gets it, and the row says GB.
    t.edit_user(gb, |rec| {
        let mut v = rec.cloud.truth().clone();
        v.usage_location = "GB".into();
        rec.cloud = super::model::Timeline::new(v);
    })
    .expect("edit");
    exec(&t, assign(gb, london, NumberType::DirectRouting, None)).expect("assign");
    let row = t.number_state(london).expect("s").expect("row");
    assert_eq!(row.iso_country_code, "GB");
    // A number whose country the simulator cannot tell is refused.
    precondition(
        exec(
            &t,
            assign(gb, "+8613800000000", NumberType::DirectRouting, None),
        ),
        "cannot tell the country",
    );
}

#[test]
fn on_premises_rollback_ends_the_outage_when_the_line_is_back() {
    let (_dir, clock, t) = setup_with(&cfg(Profile::DirectRouting, 30));
    let upn = (1..=30)
        .map(SimTenant::upn)
        .find(|u| state(&t, u).ad_line_uri.is_some())
        .expect("user with an on-premises line");
    let number = state(&t, &upn).seeded_number;
    exec(&t, Operation::ClearOnpremLineUri { user: upn.clone() }).expect("clear");
    clock.advance(31 * MIN);
    assert_eq!(t.number_state(&number).expect("s"), None, "synced away");
    let back = Operation::EnableOnpremVoice {
        user: upn.clone(),
        number: number.clone(),
    };
    let restored_at = clock.now();
    exec(&t, back).expect("roll back");
    let o = t.outages().expect("outages");
    assert_eq!((o.len(), o[0].end), (1, None), "not back before the sync");
    clock.advance(HOUR);
    let o = t.outages().expect("outages");
    let end = o[0].end.expect("ended");
    assert!(end > restored_at, "at the sync, not the call");
    assert_eq!(o[0].duration_ms, end.since(o[0].start).as_millis() as u64);
    let row = t.number_state(&number).expect("s").expect("DR row back");
    assert_eq!(row.number_type, NumberType::DirectRouting);
    assert_eq!(
        get_user(&t, &upn).line_uri.as_deref(),
        Some(number.as_str())
    );
}

#[test]
fn rollbacks_that_do_not_restore_service_keep_the_outage_open() {
    // The operator uploaded the number before the rollback: the AD line
    // comes back but the number now belongs to the operator.
    let (_dir, clock, t) = setup_with(&cfg(Profile::DirectRouting, 30));
    let upn = (1..=30)
        .map(SimTenant::upn)
        .find(|u| state(&t, u).ad_line_uri.is_some())
        .expect("user with an on-premises line");
    let number = state(&t, &upn).seeded_number;
    exec(&t, Operation::ClearOnpremLineUri { user: upn.clone() }).expect("clear");
    clock.advance(3 * HOUR);
    let row = t.number_state(&number).expect("s").expect("uploaded");
    assert_eq!(row.number_type, NumberType::OperatorConnect);
    let back = Operation::EnableOnpremVoice {
        user: upn.clone(),
        number: number.clone(),
    };
    exec(&t, back.clone()).expect("roll back");
    clock.advance(HOUR);
    assert_eq!(t.outages().expect("o")[0].end, None);

    // Restored, then cleared again before the sync: still out of service.
    let (_d2, clock, t) = setup_with(&cfg(Profile::DirectRouting, 30));
    exec(&t, Operation::ClearOnpremLineUri { user: upn.clone() }).expect("clear");
    clock.advance(31 * MIN);
    exec(&t, back).expect("roll back");
    exec(&t, Operation::ClearOnpremLineUri { user: upn.clone() }).expect("clear again");
    clock.advance(HOUR);
    let o = t.outages().expect("o");
    assert_eq!((o.len(), o[0].end), (1, None), "{o:?}");
}

#[test]
fn every_restoring_path_ends_the_outage() {
    // remove_number, then assigning the Direct Routing number back.
    let (_dir, clock, t) = setup_with(&cfg(Profile::DirectRouting, 20));
    let upn = online_users(&t).remove(0);
    let number = state(&t, &upn).seeded_number;
    exec(&t, remove(&upn, &number, NumberType::DirectRouting)).expect("remove");
    exec(&t, assign(&upn, &number, NumberType::DirectRouting, None)).expect("back");
    clock.advance(HOUR);
    assert!(t.outages().expect("o")[0].end.is_some());
    // Assigned and removed again before the activation showed: one outage, open.
    let other = online_users(&t).remove(1);
    let n2 = state(&t, &other).seeded_number;
    exec(&t, remove(&other, &n2, NumberType::DirectRouting)).expect("remove");
    exec(&t, assign(&other, &n2, NumberType::DirectRouting, None)).expect("back");
    exec(&t, remove(&other, &n2, NumberType::DirectRouting)).expect("remove again");
    clock.advance(HOUR);
    let o: Vec<_> = t
        .outages()
        .expect("o")
        .into_iter()
        .filter(|o| o.user == other)
        .collect();
    assert_eq!((o.len(), o[0].end), (1, None), "{o:?}");
}

#[test]
fn the_reached_instant_is_kept_across_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(Profile::DirectRouting, 20);
    let clock = ManualClock::new(START);
    let t = open(dir.path(), &c, &clock);
    assert_eq!(t.reached(), Some(START), "seeded at its clock's instant");
    let upn = online_users(&t).remove(0);
    let number = state(&t, &upn).seeded_number;
    clock.advance(5 * MIN);
    let removed_at = clock.now();
    exec(&t, remove(&upn, &number, NumberType::DirectRouting)).expect("remove");
    clock.advance(3 * HOUR);
    exec(
        &t,
        Operation::AssignNumber {
            user: upn.clone(),
            number: number.clone(),
            number_type: NumberType::OperatorConnect,
            location_id: Some(LOCATIONS[0].into()),
        },
    )
    .expect("assign");
    let assigned_at = clock.now();
    clock.advance(HOUR);
    // An observation moves the instant in memory only.
    get_user(&t, &upn);
    assert_eq!(t.reached(), Some(assigned_at.plus(HOUR)));
    drop(t);

    // Reopened on a clock far behind (the wall clock after a scaled run).
    let behind = ManualClock::new(START);
    let t = open(dir.path(), &c, &behind);
    // Actions store it at once; the last observation's when the handle closed.
    assert_eq!(t.reached(), Some(assigned_at.plus(HOUR)));
    let o = t.outages().expect("outages");
    let end = o[0]
        .end
        .expect("ended as of the reached instant, not ongoing");
    assert_eq!(o[0].start, removed_at);
    assert!(end > assigned_at && end <= assigned_at.plus(10 * MIN));
    assert_eq!(o[0].duration_ms, end.since(removed_at).as_millis() as u64);
    // A clock ahead of the instant is the tenant's present.
    behind.set(assigned_at.plus(24 * HOUR));
    let o = t.outages().expect("outages");
    assert_eq!(o[0].end, Some(end));
    assert_eq!(
        t.reached(),
        Some(assigned_at.plus(HOUR)),
        "reports move nothing"
    );
}

#[test]
fn actions_store_the_reached_instant_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(Profile::DirectRouting, 10);
    let clock = ManualClock::new(START);
    let t = open(dir.path(), &c, &clock);
    clock.advance(HOUR);
    exec(
        &t,
        Operation::GrantVoiceRoutingPolicy {
            user: SimTenant::upn(1),
            policy: None,
        },
    )
    .expect("grant");
    // Read the store through a copy (the handle still holds the lock).
    let copy = dir.path().join("copy");
    t.backup_to(&copy).expect("backup");
    let t2 = open(&copy, &c, &ManualClock::new(START));
    assert_eq!(t2.reached(), Some(START.plus(HOUR)));
}
