//! Tests of the Microsoft rules the simulator enforces for fidelity: licence
//! assignment paths, operator address modes, the assignment rules of
//! `Set-CsPhoneNumberAssignment`, outages ended by every restoring path, and
//! the tenant's own clock. Manual clock throughout.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::tests::{config, err_kind, exec, get_number, get_user, open, state, START};
use super::*;
use crate::backend::{
    AddressMode, BackendError, ErrorKind, LicenceAssignment, NumberView, Operation,
};
use crate::clock::ManualClock;

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
