//! The shipped workflows refuse, before anything changes in the tenant, every
//! subject a later step would fail for: `plan` reports them as blocked and
//! `run` refuses them with no write reaching the (simulated) tenant, as
//! `portflow sim log` shows. And what only the upload can tell (the
//! operator's real address mode) stops the instance before it assigns.

mod common;

use std::collections::BTreeMap;

use common::*;
use portflow::backend::sim::{tags, Profile, SimConfig};
use portflow::backend::{NumberType, OperationKind};
use portflow::engine::instance::{EventKind, Instance, Status};
use serde_json::Value;

/// Write `rows` (with the header) as `subjects.csv` and a run file `run.yaml`
/// for `workflow` at time scale 20000: `backend` is the body of the sim block,
/// `extra` more top-level lines (the `operator:` declaration).
fn rows_run_file(lab: &Lab, workflow: &str, backend: &str, rows: &[String], extra: &str) -> String {
    let csv = lab.path("subjects.csv");
    write(&csv, &format!("{}\n", rows.join("\n")));
    lab.run_file(
        "run.yaml",
        workflow,
        backend,
        &csv,
        &format!("time_scale: 20000\n{extra}"),
    )
}

/// The exported subject rows of a tenant seeded with `cfg` (header first), and
/// each user's seeded tags.
fn seeded(cfg: &SimConfig) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let (_dir, sim) = probe_tenant(cfg);
    let mut csv = Vec::new();
    sim.export_subjects_csv(&mut csv).expect("export");
    let rows: Vec<String> = String::from_utf8(csv)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    let mut tagged = BTreeMap::new();
    for row in &rows[1..] {
        let user = row.split(',').next().unwrap_or_default().to_string();
        let st = sim.user_state(&user).expect("state").expect("user");
        tagged.insert(user, st.tags);
    }
    (rows, tagged)
}

fn user_of(row: &str) -> String {
    row.split(',').next().unwrap_or_default().to_string()
}

fn number_of(row: &str) -> String {
    row.split(',').nth(1).unwrap_or_default().to_string()
}

/// `row` with its location column replaced.
fn with_location(row: &str, loc: &str) -> String {
    let mut f: Vec<&str> = row.split(',').collect();
    f[2] = loc;
    f.join(",")
}

/// Rows of users carrying `with` (when given) and none of `without`, at most `n`.
fn pick(
    rows: &[String],
    tagged: &BTreeMap<String, Vec<String>>,
    n: usize,
    with: Option<&str>,
    without: &[&str],
) -> Vec<String> {
    let picked: Vec<String> = rows[1..]
        .iter()
        .filter(|r| {
            let t = &tagged[&user_of(r)];
            with.is_none_or(|w| t.iter().any(|x| x == w))
                && !t.iter().any(|x| without.contains(&x.as_str()))
        })
        .take(n)
        .cloned()
        .collect();
    assert!(
        !picked.is_empty(),
        "no seeded user with {with:?} and without {without:?}: pick another seed"
    );
    picked
}

/// `plan` (must exit 3, something is blocked): subject → its blockers.
fn plan_blockers(lab: &Lab, rf: &str) -> BTreeMap<String, Vec<String>> {
    let (code, doc) = pf_json(&lab.state, &["plan", rf]);
    assert_eq!(code, 3, "a blocked subject makes plan exit 3: {doc}");
    doc["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| {
            let blockers = p["blockers"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (
                p["subject"].as_str().unwrap_or_default().to_string(),
                blockers,
            )
        })
        .collect()
}

fn assert_blocked_at(
    blockers: &BTreeMap<String, Vec<String>>,
    user: &str,
    step: &str,
    needle: &str,
) {
    let b = &blockers[user];
    assert_eq!(b.len(), 1, "{user}: {b:?}");
    assert!(
        b[0].starts_with(&format!("{step}: ")) && b[0].contains(needle),
        "{user}: expected blocked at {step} ({needle}), got {b:?}"
    );
}

/// `run`, which ends with refusals (exit 3): the run id.
fn run_with_refusals(lab: &Lab, rf: &str, succeeded: usize, failed: usize) -> String {
    let (code, doc) = pf_json(&lab.state, &["run", rf]);
    assert_eq!(code, 3, "refusals end with exit 3: {doc}");
    assert_eq!(
        doc["states"]["succeeded"].as_u64(),
        Some(succeeded as u64),
        "{doc}"
    );
    assert_eq!(
        doc["states"]["failed"].as_u64(),
        Some(failed as u64),
        "{doc}"
    );
    doc["run"].as_str().expect("run id").to_string()
}

/// What `portflow sim log <run> --user <user>` shows: every action the tenant received.
fn sim_log(lab: &Lab, run: &str, user: &str) -> Vec<Value> {
    let (code, doc) = pf_json(&lab.state, &["sim", "log", run, "--user", user]);
    assert_eq!(code, 0, "{doc}");
    doc.as_array().cloned().unwrap_or_default()
}

fn assert_refused_at(inst: &Instance, steps: &[String], step: &str, needle: &str) {
    match &inst.status {
        Status::Failed { step: s, error } => {
            assert_eq!(steps[*s], step, "{}: {error}", inst.subject);
            assert!(
                error.contains(needle),
                "{}: {error:?} lacks {needle:?}",
                inst.subject
            );
        }
        other => panic!(
            "{}: expected refused at {step}, got {other:?}",
            inst.subject
        ),
    }
}

/// The tenant's log for `user`, read in-process (while a test holds the tenant).
fn audit_of(sim: &portflow::backend::sim::SimTenant, user: &str) -> Vec<Value> {
    sim.audit_log()
        .expect("audit log")
        .into_iter()
        .filter(|e| e.user.as_deref() == Some(user))
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect()
}

/// Refused subjects: stopped at their check in the engine, and not one write
/// (not even a failed one) in the tenant's log.
fn assert_refused_untouched(lab: &Lab, run: &str, expect: &[(&str, &str, &str)]) {
    let steps = step_ids(&lab.state, run);
    let engine = instances_with_events(&lab.state, run);
    for (user, step, needle) in expect {
        assert_refused_at(&engine[*user].0, &steps, step, needle);
        let log = sim_log(lab, run, user);
        assert!(log.is_empty(), "{user}: writes reached the tenant: {log:?}");
    }
}

const DR_BACKEND: &str = "  seed: 7\n  users: 30\n  latency: {tail_rate: 0}\n  dirsync_interval: 10m\n  operator_upload_delay: {min: 15m, max: 90m}\n";

fn dr_cfg() -> SimConfig {
    sim_cfg(Profile::DirectRouting, 7, 30)
}

const TENANT_ASSIGNS: &str = "approvals: [operator-coordinated]\n\
                              operator: {name: Contoso Telecom, address_mode: tenant_assigns}\n";

// ---------------------------------------------------------------------------
// Direct Routing → Operator Connect: the emergency location

#[test]
fn dr_to_oc_subjects_without_an_assignable_location_are_blocked_and_untouched() {
    let lab = Lab::new();
    let (rows, _) = seeded(&dr_cfg());
    let plain: Vec<String> = rows[1..5].to_vec();
    let bad = [
        (
            with_location(&rows[5], ""),
            "check-location-given",
            "give the row a location_id",
        ),
        (
            with_location(&rows[6], "loc-nowhere-99"),
            "check-location",
            "does not exist",
        ),
        (
            with_location(&rows[7], "loc-new-01"),
            "check-location-validated",
            "NotValidated",
        ),
        (
            with_location(&rows[8], "loc-lon-01"),
            "check-location-country",
            "is in GB",
        ),
    ];
    let mut subjects = vec![rows[0].clone()];
    subjects.extend(plain.iter().cloned());
    subjects.extend(bad.iter().map(|(r, ..)| r.clone()));
    let rf = rows_run_file(
        &lab,
        "direct-routing-to-operator-connect",
        DR_BACKEND,
        &subjects,
        TENANT_ASSIGNS,
    );

    let blockers = plan_blockers(&lab, &rf);
    for r in &plain {
        assert!(
            blockers[&user_of(r)].is_empty(),
            "{r}: {:?}",
            blockers[&user_of(r)]
        );
    }
    for (r, step, needle) in &bad {
        assert_blocked_at(&blockers, &user_of(r), step, needle);
    }

    let run = run_with_refusals(&lab, &rf, plain.len(), bad.len());
    let expect: Vec<(String, &str, &str)> = bad
        .iter()
        .map(|(r, step, needle)| (user_of(r), *step, *needle))
        .collect();
    let expect: Vec<(&str, &str, &str)> = expect
        .iter()
        .map(|(u, s, n)| (u.as_str(), *s, *n))
        .collect();
    assert_refused_untouched(&lab, &run, &expect);
    // They keep their Direct Routing number; the others reached Operator Connect.
    let sim = open_run_tenant(&lab.state, &run, &run, &dr_cfg());
    for (r, ..) in &bad {
        let st = sim.user_state(&user_of(r)).expect("state").expect("user");
        assert_eq!(
            st.cloud.line_uri.as_deref(),
            Some(number_of(r).as_str()),
            "{r}"
        );
        let n = sim
            .number_state(&number_of(r))
            .expect("number")
            .expect("row");
        assert_eq!(n.number_type, NumberType::DirectRouting, "{r}");
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(st.cloud.id.as_str()),
            "{r}"
        );
    }
    for r in &plain {
        assert!(!audit_of(&sim, &user_of(r)).is_empty(), "{r}: migrated");
        let n = sim
            .number_state(&number_of(r))
            .expect("number")
            .expect("row");
        assert_eq!(n.number_type, NumberType::OperatorConnect, "{r}");
    }
}

#[test]
fn a_run_without_the_operator_declaration_is_refused_at_load_with_what_to_add() {
    let lab = Lab::new();
    let (rows, _) = seeded(&dr_cfg());
    let rf = rows_run_file(
        &lab,
        "direct-routing-to-operator-connect",
        DR_BACKEND,
        &rows[..4],
        "",
    );
    for cmd in ["validate", "plan", "run"] {
        let o = pf(&lab.state, &[cmd, &rf]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("run.yaml:1:1: workflow `direct-routing-to-operator-connect` needs the operator's emergency-address mode"), "{cmd}: {err}");
        assert!(err.contains("address_mode: <mode>"), "{cmd}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Calling Plans → Operator Connect

fn cp_cfg() -> SimConfig {
    let mut cfg = sim_cfg(Profile::CallingPlans, 21, 80);
    cfg.port.foc_after.min = std::time::Duration::from_secs(3600);
    cfg.port.foc_after.max = std::time::Duration::from_secs(3 * 3600);
    cfg
}

const CP_BACKEND: &str = "  profile: calling_plans\n  seed: 21\n  users: 80\n  latency: {tail_rate: 0}\n  port: {foc_after: {min: 1h, max: 3h}}\n";

/// CP → OC with 3 plain users and the users tagged `cohort`: the cohort is
/// blocked at `step` in plan, refused there in run, and keeps its Calling Plan
/// number and licence; nothing reaches the tenant for them.
fn cp_cohort_is_refused_up_front(cohort: &str, other: &str, step: &str, needle: &str) {
    let lab = Lab::new();
    let cfg = cp_cfg();
    let (rows, tagged) = seeded(&cfg);
    let without = [tags::GROUP_LICENSED, tags::NOT_TEAMS_ONLY, tags::PORT_ERROR];
    let plain = pick(&rows, &tagged, 3, None, &without);
    let refused = pick(&rows, &tagged, 2, Some(cohort), &[other, tags::PORT_ERROR]);
    let mut subjects = vec![rows[0].clone()];
    subjects.extend(plain.iter().chain(&refused).cloned());
    let rf = rows_run_file(
        &lab,
        "calling-plans-to-operator-connect",
        CP_BACKEND,
        &subjects,
        TENANT_ASSIGNS,
    );

    let blockers = plan_blockers(&lab, &rf);
    for r in &plain {
        assert!(
            blockers[&user_of(r)].is_empty(),
            "{r}: {:?}",
            blockers[&user_of(r)]
        );
    }
    for r in &refused {
        assert_blocked_at(&blockers, &user_of(r), step, needle);
    }

    let run = run_with_refusals(&lab, &rf, plain.len(), refused.len());
    let users: Vec<String> = refused.iter().map(|r| user_of(r)).collect();
    let expect: Vec<(&str, &str, &str)> =
        users.iter().map(|u| (u.as_str(), step, needle)).collect();
    assert_refused_untouched(&lab, &run, &expect);
    let sim = open_run_tenant(&lab.state, &run, &run, &cfg);
    for r in &refused {
        let st = sim.user_state(&user_of(r)).expect("state").expect("user");
        assert_eq!(
            st.cloud.line_uri.as_deref(),
            Some(number_of(r).as_str()),
            "{r}: keeps the number"
        );
        assert!(
            st.licences.iter().any(|l| l == "MCOPSTN1"),
            "{r}: keeps the Calling Plan"
        );
    }
    for r in &plain {
        let log = audit_of(&sim, &user_of(r));
        let ops: Vec<&str> = log.iter().filter_map(|e| e["op"].as_str()).collect();
        assert!(
            ops.contains(&"remove_licence") && ops.contains(&"assign_number"),
            "{r}: {ops:?}"
        );
    }
}

#[test]
fn cp_to_oc_group_licensed_users_are_blocked_before_their_number_is_unassigned() {
    cp_cohort_is_refused_up_front(
        tags::GROUP_LICENSED,
        tags::NOT_TEAMS_ONLY,
        "check-calling-plan-not-inherited",
        "inherited from the group",
    );
}

#[test]
fn cp_to_oc_users_who_are_not_teams_only_are_blocked_before_any_change() {
    cp_cohort_is_refused_up_front(
        tags::NOT_TEAMS_ONLY,
        tags::GROUP_LICENSED,
        "check-teams-only",
        "must be TeamsOnly",
    );
}

// ---------------------------------------------------------------------------
// The operator sets the address

/// DR → OC on a tenant whose operator uploads every number in `mode`, the run
/// declaring `mode`, rows without a location except the last one's.
fn dr_to_oc_with_operator_mode(mode: &str) {
    let lab = Lab::new();
    let (rows, _) = seeded(&dr_cfg());
    let mut subjects = vec![rows[0].clone()];
    let plain: Vec<String> = rows[1..5].iter().map(|r| with_location(r, "")).collect();
    subjects.extend(plain.iter().cloned());
    let with_loc = rows[5].clone();
    subjects.push(with_loc.clone());
    let backend = format!("{DR_BACKEND}  operator: {{address_modes: {{{mode}: 1}}}}\n");
    let rf = rows_run_file(
        &lab,
        "direct-routing-to-operator-connect",
        &backend,
        &subjects,
        &format!(
            "approvals: [operator-coordinated]\noperator: {{name: Contoso Telecom, address_mode: {mode}}}\n"
        ),
    );

    // A location in the row would be ignored or refused: blocked up front.
    let blockers = plan_blockers(&lab, &rf);
    assert_blocked_at(
        &blockers,
        &user_of(&with_loc),
        "check-no-location",
        "ignored or refused",
    );
    let run = run_with_refusals(&lab, &rf, plain.len(), 1);
    assert_refused_untouched(
        &lab,
        &run,
        &[(
            &user_of(&with_loc),
            "check-no-location",
            "remove it from the row",
        )],
    );

    let engine = instances_with_events(&lab.state, &run);
    let sim = open_run_tenant(&lab.state, &run, &run, &dr_cfg());
    for r in &plain {
        let (inst, _) = &engine[&user_of(r)];
        assert_eq!(inst.status, Status::Succeeded, "{r}");
        // Assigned without -LocationId, by the step that keeps the operator's address.
        let assigns: Vec<Value> = audit_of(&sim, &user_of(r))
            .into_iter()
            .filter(|e| e["op"] == "assign_number")
            .collect();
        assert_eq!(assigns.len(), 1, "{r}: {assigns:?}");
        assert!(
            assigns[0]["args"]["location_id"].is_null(),
            "{r}: {assigns:?}"
        );
        // The address the operator uploaded the number with is the one it keeps.
        let uploaded = inst.outputs["wait-operator-upload"]
            .observed
            .clone()
            .unwrap_or_default();
        assert_eq!(uploaded["address_mode"], mode, "{r}");
        let n = sim
            .number_state(&number_of(r))
            .expect("number")
            .expect("row");
        assert_eq!(n.number_type, NumberType::OperatorConnect, "{r}");
        assert_eq!(n.address_mode, mode, "{r}");
        assert!(n.location_id.is_some(), "{r}: the operator's address");
        assert_eq!(
            n.location_id.as_deref(),
            uploaded["location_id"].as_str(),
            "{r}: not overwritten"
        );
        assert_eq!(n.activation_state, "Activated", "{r}");
    }
}

#[test]
fn an_operator_locked_number_is_assigned_without_overwriting_its_address() {
    dr_to_oc_with_operator_mode("operator_locked");
}

#[test]
fn an_operator_assigned_number_is_assigned_without_a_location() {
    dr_to_oc_with_operator_mode("operator_assigns");
}

#[test]
fn a_mode_the_operator_did_not_use_stops_before_assigning() {
    let lab = Lab::new();
    let (rows, _) = seeded(&dr_cfg());
    let subjects: Vec<String> = rows[..5].to_vec();
    let backend = format!("{DR_BACKEND}  operator: {{address_modes: {{operator_locked: 1}}}}\n");
    let rf = rows_run_file(
        &lab,
        "direct-routing-to-operator-connect",
        &backend,
        &subjects,
        TENANT_ASSIGNS,
    );
    // Nothing before the upload can tell.
    let (code, doc) = pf_json(&lab.state, &["plan", &rf]);
    assert_eq!((code, doc["blocked"].as_u64()), (0, Some(0)), "{doc}");

    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["states"]["failed"].as_u64(), Some(4), "{doc}");
    let run = doc["run"].as_str().expect("run id").to_string();
    let steps = step_ids(&lab.state, &run);
    let engine = instances_with_events(&lab.state, &run);
    let sim = open_run_tenant(&lab.state, &run, &run, &dr_cfg());
    for r in &subjects[1..] {
        let user = user_of(r);
        let (inst, events) = &engine[&user];
        // Stopped for a person, not rolled back: the number is at the operator.
        assert_refused_at(
            inst,
            &steps,
            "check-address-mode",
            "declares address mode tenant_assigns",
        );
        if let Status::Failed { error, .. } = &inst.status {
            assert!(error.contains("as operator_locked"), "{error}");
            assert!(error.contains("--from-step verify-user"), "{error}");
        }
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.kind, EventKind::RollbackStarted { .. })),
            "{user}: no rollback"
        );
        let log = audit_of(&sim, &user);
        let ops: Vec<&str> = log.iter().filter_map(|e| e["op"].as_str()).collect();
        assert!(!ops.contains(&"assign_number"), "{user}: {ops:?}");
        assert!(
            ops.contains(&"grant_voice_routing_policy"),
            "{user}: {ops:?}"
        );
        let n = sim
            .number_state(&number_of(r))
            .expect("number")
            .expect("row");
        assert_eq!(n.number_type, NumberType::OperatorConnect, "{user}");
        assert_eq!(n.assigned_pstn_target_id, None, "{user}: not assigned");
        assert_eq!(n.address_mode, "operator_locked", "{user}");
    }
}

// ---------------------------------------------------------------------------
// Emergency locations: a mixed-up row

#[test]
fn a_row_naming_another_users_number_is_blocked_and_that_users_address_is_unchanged() {
    let lab = Lab::new();
    let cfg = sim_cfg(Profile::OperatorConnect, 41, 100);
    let (rows, tagged) = seeded(&cfg);
    let plain = pick(
        &rows,
        &tagged,
        3,
        None,
        &[tags::OC_LOCKED, tags::TARGET_NOT_VALIDATED],
    );
    let (_probe, sim) = probe_tenant(&cfg);
    // The first row's user given the second row's number, with a new location.
    let other_number = number_of(&plain[1]);
    let before = sim
        .number_state(&other_number)
        .expect("number")
        .expect("row");
    let new_loc = ["loc-sea-01", "loc-atl-01"]
        .into_iter()
        .find(|l| before.location_id.as_deref() != Some(*l))
        .unwrap_or("loc-sea-01");
    let mixed = format!("{},{other_number},{new_loc}", user_of(&plain[0]));
    let subjects = vec![rows[0].clone(), mixed.clone(), plain[2].clone()];
    let rf = rows_run_file(
        &lab,
        "assign-emergency-location",
        "  profile: operator_connect\n  seed: 41\n  users: 100\n  latency: {tail_rate: 0}\n",
        &subjects,
        "",
    );

    let blockers = plan_blockers(&lab, &rf);
    let mixed_user = user_of(&mixed);
    assert_blocked_at(
        &blockers,
        &mixed_user,
        "check-owner",
        &format!("is not {mixed_user}'s number"),
    );
    assert!(blockers[&user_of(&plain[2])].is_empty());

    let run = run_with_refusals(&lab, &rf, 1, 1);
    assert_refused_untouched(
        &lab,
        &run,
        &[(&mixed_user, "check-owner", "nothing was changed")],
    );
    let sim = open_run_tenant(&lab.state, &run, &run, &cfg);
    let after = sim
        .number_state(&other_number)
        .expect("number")
        .expect("row");
    assert_eq!(
        after.location_id, before.location_id,
        "the other user's address is unchanged"
    );
    let touched = sim.audit_log().expect("audit").iter().any(|e| {
        e.op == OperationKind::SetNumberLocation
            && e.number.as_deref() == Some(other_number.as_str())
    });
    assert!(
        !touched,
        "no set_number_location for the other user's number"
    );
}

#[test]
fn the_shipped_examples_plan_as_documented() {
    let lab = Lab::new();
    let example = |name: &str| {
        repo()
            .join("examples")
            .join(name)
            .to_string_lossy()
            .into_owned()
    };
    let (code, doc) = pf_json(&lab.state, &["plan", &example("dr-to-oc.yaml")]);
    assert_eq!((code, doc["blocked"].as_u64()), (0, Some(0)), "{doc}");
    // CP → OC: only the group-licensed and non-TeamsOnly users are blocked.
    let blockers = plan_blockers(&lab, &example("cp-to-oc.yaml"));
    let blocked: Vec<&String> = blockers
        .values()
        .filter(|b| !b.is_empty())
        .flatten()
        .collect();
    assert!(!blocked.is_empty());
    for b in &blocked {
        assert!(
            b.starts_with("check-calling-plan-not-inherited: ")
                || b.starts_with("check-teams-only: "),
            "{b}"
        );
    }
    assert!(blocked.iter().any(|b| b.starts_with("check-teams-only: ")));
    assert!(blocked
        .iter()
        .any(|b| b.starts_with("check-calling-plan-not-inherited: ")));
}
