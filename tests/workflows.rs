//! Every shipped workflow end to end through the real binary, checked on both
//! sides: the engine's view (instance states, events, problems) and the
//! simulated tenant's true state (audit log, outbox, users, numbers).
//!
//! Subjects are picked from the seeded cohorts of a tenant seeded in-process
//! with the same configuration as the run's (seeding depends only on it).
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use portflow::backend::sim::{
    tags, AuditEntry, AuditOutcome, FocConfig, Profile, SimConfig, SimTenant, SEEDED_POLICY,
};
use portflow::backend::{Homing, NumberType, Operation, OperationKind};
use portflow::engine::instance::{Event, EventKind, Instance, Phase, Status};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Fixtures

/// What a seeded tenant looks like before any run: exported subject rows,
/// tags and conference ids per user.
struct Seeded {
    header: String,
    /// UPN → exported CSV row.
    rows: BTreeMap<String, String>,
    tags: BTreeMap<String, Vec<String>>,
    conference_ids: BTreeMap<String, Option<String>>,
    location_ids: BTreeMap<String, Option<String>>,
}

fn seeded(cfg: &SimConfig) -> Seeded {
    let (_dir, sim) = probe_tenant(cfg);
    let mut csv = Vec::new();
    sim.export_subjects_csv(&mut csv).expect("export");
    let text = String::from_utf8(csv).expect("utf-8");
    let mut lines = text.lines();
    let header = lines.next().expect("header").to_string();
    let mut s = Seeded {
        header,
        rows: BTreeMap::new(),
        tags: BTreeMap::new(),
        conference_ids: BTreeMap::new(),
        location_ids: BTreeMap::new(),
    };
    for line in lines {
        let user = line.split(',').next().expect("user column").to_string();
        let st = sim.user_state(&user).expect("user state").expect("user");
        let number = line.split(',').nth(1).unwrap_or_default();
        let loc = match sim.number_state(number) {
            Ok(Some(n)) => n.location_id,
            _ => None,
        };
        s.tags.insert(user.clone(), st.tags.clone());
        s.conference_ids.insert(
            user.clone(),
            st.conferencing
                .as_ref()
                .and_then(|c| c.conference_id.clone()),
        );
        s.location_ids.insert(user.clone(), loc);
        s.rows.insert(user, line.to_string());
    }
    s
}

impl Seeded {
    /// Up to `n` users, in seeding order, carrying `with` (when given) and none of `without`.
    fn pick(&self, n: usize, with: Option<&str>, without: &[&str]) -> Vec<String> {
        let picked: Vec<String> = self
            .tags
            .iter()
            .filter(|(_, t)| with.is_none_or(|w| t.iter().any(|x| x == w)))
            .filter(|(_, t)| !t.iter().any(|x| without.contains(&x.as_str())))
            .map(|(u, _)| u.clone())
            .take(n)
            .collect();
        assert!(
            !picked.is_empty(),
            "the seeded tenant has no user with {with:?} and without {without:?}: pick another seed"
        );
        picked
    }

    fn field(&self, user: &str, i: usize) -> String {
        self.rows[user]
            .split(',')
            .nth(i)
            .unwrap_or_default()
            .to_string()
    }

    fn number(&self, user: &str) -> String {
        self.field(user, 1)
    }

    /// Write the exported rows of `users` as a subjects CSV.
    fn csv(&self, path: &Path, users: &[String]) {
        let mut text = format!("{}\n", self.header);
        for u in users {
            text.push_str(&self.rows[u]);
            text.push('\n');
        }
        write(path, &text);
    }
}

/// A CSV with only a `user` column.
fn users_csv(path: &Path, users: &[String]) {
    write(path, &format!("user\n{}\n", users.join("\n")));
}

fn concat(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

fn run_id(doc: &Value) -> String {
    doc["run"]
        .as_str()
        .expect("run id in the summary")
        .to_string()
}

fn count(doc: &Value, state: &str) -> u64 {
    doc["states"][state].as_u64().unwrap_or(0)
}

fn problems_text(doc: &Value) -> String {
    doc["problems"].to_string()
}

/// Actions the tenant received for `user`, oldest first.
fn audit_of(sim: &SimTenant, user: &str) -> Vec<AuditEntry> {
    sim.audit_log()
        .expect("audit log")
        .into_iter()
        .filter(|e| e.user.as_deref() == Some(user))
        .collect()
}

fn is_ok(e: &AuditEntry) -> bool {
    matches!(e.outcome, AuditOutcome::Ok)
}

/// Outbox entries per user and kind.
fn outbox_counts(sim: &SimTenant) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for m in sim.outbox().expect("outbox") {
        *out.entry((m.user.clone(), m.kind.clone())).or_insert(0) += 1;
    }
    out
}

fn assert_failed_at(inst: &Instance, steps: &[String], step: &str, needle: &str) {
    match &inst.status {
        Status::Failed { step: s, error } => {
            assert_eq!(
                steps[*s], step,
                "{}: failed at {} ({error}), expected {step}",
                inst.subject, steps[*s]
            );
            assert!(
                error.contains(needle),
                "{}: error {error:?} lacks {needle:?}",
                inst.subject
            );
        }
        other => panic!(
            "{}: expected failed at {step} ({needle}), got {other:?}",
            inst.subject
        ),
    }
}

fn assert_waiting_at(inst: &Instance, steps: &[String], step: &str) {
    match &inst.status {
        Status::Running {
            step: s,
            phase: Phase::Waiting { .. },
        } => assert_eq!(steps[*s], step, "{}", inst.subject),
        other => panic!(
            "{}: expected waiting at {step}, got {other:?}",
            inst.subject
        ),
    }
}

fn has_event(events: &[Event], f: impl Fn(&EventKind) -> bool) -> bool {
    events.iter().any(|e| f(&e.kind))
}

type Engine = BTreeMap<String, (Instance, Vec<Event>)>;

/// Drive a run that never ends by itself (its instances wait for days) in the
/// background: start `first` (a `run` or a `resume`), interrupt it after a
/// second, and resume it again until `ready` holds (at most 10 rounds, for a
/// loaded machine). Returns the run id.
fn drive_until(lab: &Lab, first: &[&str], ready: impl Fn(&Engine, &[String]) -> bool) -> String {
    let mut id: Option<String> = None;
    for _ in 0..10 {
        let child = match &id {
            None => spawn_pf(&lab.state, first),
            Some(id) => spawn_pf(&lab.state, &["resume", id]),
        };
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            interrupt(child),
            Some(130),
            "interrupted by SIGINT, resumable"
        );
        let run = id.get_or_insert_with(|| only_run_id(&lab.state).expect("run created"));
        if ready(
            &instances_with_events(&lab.state, run),
            &step_ids(&lab.state, run),
        ) {
            return run.clone();
        }
    }
    panic!("the run did not get where the test needs it in 10 rounds");
}

fn at_step(inst: &Instance, steps: &[String], step: &str) -> bool {
    inst.status.step().is_some_and(|s| steps[s] == step)
}

// ---------------------------------------------------------------------------
// 1. Calling Plans → Operator Connect

fn cp_cfg(seed: u64, users: u32, error_rate: f64, foc: (u64, u64)) -> SimConfig {
    let mut cfg = sim_cfg(Profile::CallingPlans, seed, users);
    cfg.port.error_rate = error_rate;
    cfg.port.foc_after = FocConfig {
        min: Duration::from_secs(foc.0),
        max: Duration::from_secs(foc.1),
    };
    cfg
}

#[test]
fn cp_to_oc_migrates_unassigning_before_the_licence_and_refuses_group_licences_up_front_and_failed_ports(
) {
    let lab = Lab::new();
    let (seed, users) = (21, 80);
    let cfg = cp_cfg(seed, users, 0.3, (3600, 3 * 3600));
    let s = seeded(&cfg);
    let plain = s.pick(
        5,
        None,
        &[tags::GROUP_LICENSED, tags::PORT_ERROR, tags::NOT_TEAMS_ONLY],
    );
    let group = s.pick(2, Some(tags::GROUP_LICENSED), &[tags::PORT_ERROR]);
    let port_err = s.pick(2, Some(tags::PORT_ERROR), &[tags::GROUP_LICENSED]);
    let csv = lab.path("cp.csv");
    s.csv(&csv, &concat(&[&plain, &group, &port_err]));
    let rf = lab.run_file(
        "cp.yaml",
        "calling-plans-to-operator-connect",
        &format!(
            "  profile: calling_plans\n  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  port: {{foc_after: {{min: 1h, max: 3h}}, error_rate: 0.3}}\n"
        ),
        &csv,
        &format!("{SIM_OPERATOR}approvals: [operator-coordinated]\ntime_scale: 20000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "refusals end with exit 3: {doc}");
    assert_eq!(count(&doc, "succeeded"), plain.len() as u64, "{doc}");
    assert_eq!(
        count(&doc, "failed"),
        (group.len() + port_err.len()) as u64,
        "{doc}"
    );
    let problems = problems_text(&doc);
    assert!(problems.contains("inherited from the group"), "{problems}");
    assert!(problems.contains("ended Error"), "{problems}");
    let id = run_id(&doc);

    let steps = step_ids(&lab.state, &id);
    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let op_index = |audit: &[AuditEntry], kind: OperationKind, ok: bool| -> Vec<usize> {
        audit
            .iter()
            .enumerate()
            .filter(|(_, e)| e.op == kind && is_ok(e) == ok)
            .map(|(i, _)| i)
            .collect()
    };

    for u in &plain {
        let (inst, _) = &engine[u];
        assert_eq!(inst.status, Status::Succeeded, "{u}");
        let number = s.number(u);
        let st = sim.user_state(u).expect("state").expect("user");
        let n = sim
            .number_state(&number)
            .expect("number")
            .expect("in tenant");
        assert_eq!(n.number_type, NumberType::OperatorConnect, "{u}");
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(st.cloud.id.as_str()),
            "{u}"
        );
        assert_eq!(n.activation_state, "Activated", "{u}");
        assert_eq!(
            n.location_id.as_deref(),
            Some(s.field(u, 2).as_str()),
            "{u}: location"
        );
        assert_eq!(st.cloud.line_uri.as_deref(), Some(number.as_str()), "{u}");
        for lic in [&st.licences, &st.cloud.licences] {
            assert!(
                !lic.iter().any(|l| l == "MCOPSTN1"),
                "{u}: Calling Plan removed: {lic:?}"
            );
            assert!(
                lic.iter().any(|l| l == "MCOEV"),
                "{u}: Phone System kept: {lic:?}"
            );
        }
        let audit = audit_of(&sim, u);
        let unassign = op_index(&audit, OperationKind::RemoveNumber, true);
        let licence = op_index(&audit, OperationKind::RemoveLicence, true);
        assert_eq!(unassign.len(), 1, "{u}: {audit:?}");
        assert_eq!(licence.len(), 1, "{u}: {audit:?}");
        assert!(
            unassign[0] < licence[0],
            "{u}: number unassigned BEFORE the licence removal"
        );
        assert_eq!(audit[unassign[0]].args["number_type"], "CallingPlan");
        assert_eq!(audit[licence[0]].args["sku"], "MCOPSTN1");
    }

    for u in &group {
        // Refused before anything changes: the inherited licence could not be
        // removed, so the number must not be unassigned either.
        let (inst, _) = &engine[u];
        assert_failed_at(
            inst,
            &steps,
            "check-calling-plan-not-inherited",
            "inherited from the group",
        );
        assert!(audit_of(&sim, u).is_empty(), "{u}: nothing done");
        let st = sim.user_state(u).expect("state").expect("user");
        assert!(
            st.licences.iter().any(|l| l == "MCOPSTN1"),
            "{u}: licence still there"
        );
        let number = s.number(u);
        assert_eq!(
            st.cloud.line_uri.as_deref(),
            Some(number.as_str()),
            "{u}: keeps the number"
        );
    }

    for u in &port_err {
        let (inst, events) = &engine[u];
        assert_failed_at(inst, &steps, "check-port", "ended Error");
        assert!(
            has_event(
                events,
                |k| matches!(k, EventKind::WaitSatisfied { step, .. } if step == "wait-port")
            ),
            "{u}: the port wait ended on the Error status"
        );
        assert!(
            audit_of(&sim, u).is_empty(),
            "{u}: nothing done to a user whose port failed"
        );
        let st = sim.user_state(u).expect("state").expect("user");
        let number = s.number(u);
        assert_eq!(st.cloud.line_uri.as_deref(), Some(number.as_str()), "{u}");
        let n = sim
            .number_state(&number)
            .expect("number")
            .expect("in tenant");
        assert_eq!(n.number_type, NumberType::CallingPlan, "{u}");
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(st.cloud.id.as_str()),
            "{u}"
        );
    }
}

#[test]
fn cp_to_oc_port_wait_accepts_the_port_completed_signal() {
    let lab = Lab::new();
    let (seed, users) = (23, 20);
    // Port orders complete 20 to 25 days out: only the signal ends the wait.
    let cfg = cp_cfg(seed, users, 0.0, (20 * 86_400, 25 * 86_400));
    let s = seeded(&cfg);
    let subjects = s.pick(
        3,
        None,
        &[tags::GROUP_LICENSED, tags::PORT_ERROR, tags::NOT_TEAMS_ONLY],
    );
    assert_eq!(subjects.len(), 3);
    let csv = lab.path("cp.csv");
    s.csv(&csv, &subjects);
    let rf = lab.run_file(
        "cp.yaml",
        "calling-plans-to-operator-connect",
        &format!(
            "  profile: calling_plans\n  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  port: {{foc_after: {{min: 20d, max: 25d}}}}\n"
        ),
        &csv,
        &format!("{SIM_OPERATOR}approvals: [operator-coordinated]\ntime_scale: 20000\n"),
    );
    let id = drive_until(&lab, &["run", &rf], |e, steps| {
        e.values().all(|(i, _)| at_step(i, steps, "wait-port"))
    });
    let steps = step_ids(&lab.state, &id);
    for (inst, _) in instances_with_events(&lab.state, &id).values() {
        assert_waiting_at(inst, &steps, "wait-port");
    }

    let (signalled, others) = (&subjects[0], &subjects[1..]);
    let o = pf(&lab.state, &["signal", &id, &others[0], "done"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a signal nobody waits for changes nothing: {}",
        stderr(&o)
    );
    let o = pf(
        &lab.state,
        &[
            "signal",
            &id,
            signalled,
            "port-completed",
            "--data",
            r#"{"status":"Completed"}"#,
            "--by",
            "porting-desk",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let wait_port = step_index(&steps, "wait-port");
    drive_until(&lab, &["resume", &id], |e, _| {
        e[signalled]
            .0
            .status
            .step()
            .is_some_and(|s| s > wait_port + 3)
    });

    let engine = instances_with_events(&lab.state, &id);
    let (inst, events) = &engine[signalled];
    let wait_port = step_index(&steps, "wait-port");
    assert!(
        inst.status.step().is_some_and(|s| s > wait_port),
        "{signalled} moved past wait-port: {:?}",
        inst.status
    );
    assert!(has_event(events, |k| matches!(k,
        EventKind::SignalReceived { step, name, by, data }
            if step == "wait-port" && name == "port-completed" && by == "porting-desk"
                && data["status"] == "Completed")));
    assert!(has_event(events, |k| matches!(k,
        EventKind::WaitSatisfied { step, polls: 0, .. } if step == "wait-port")));
    for u in others {
        assert_waiting_at(&engine[u].0, &steps, "wait-port");
    }
    {
        let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
        let ops: Vec<OperationKind> = audit_of(&sim, signalled)
            .iter()
            .filter(|e| is_ok(e))
            .map(|e| e.op)
            .collect();
        assert_eq!(
            ops,
            vec![OperationKind::RemoveNumber, OperationKind::RemoveLicence],
            "{signalled}: unassigned, then the licence removed"
        );
        for u in others {
            assert!(
                audit_of(&sim, u).is_empty(),
                "{u}: still waiting for its port, untouched"
            );
        }
    }

    let o = pf(&lab.state, &["cancel", &id, "--reason", "test over"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    // The signalled user was cancelled with its number unassigned: not a success.
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "cancelled"), 3, "{doc}");
    assert_eq!(doc["outcome"]["cancelled_out_of_service"], 1, "{doc}");
}

// ---------------------------------------------------------------------------
// 2. Skype for Business Server → Teams

#[test]
fn onprem_to_online_moves_users_refuses_each_cohort_and_forces_only_after_approval() {
    let lab = Lab::new();
    let (seed, users) = (31, 150);
    let cfg = sim_cfg(Profile::OnPremises, seed, users);
    let s = seeded(&cfg);
    let special = [
        tags::CLOUD_CREATED,
        tags::ALREADY_ONLINE,
        tags::NO_PHONE_SYSTEM,
    ];
    let mut plain = s.pick(5, None, &special);
    let forced = plain.pop().expect("a plain user to force");
    let cloud = s.pick(1, Some(tags::CLOUD_CREATED), &[]);
    let online = s.pick(1, Some(tags::ALREADY_ONLINE), &[]);
    let no_ps = s.pick(1, Some(tags::NO_PHONE_SYSTEM), &[]);
    let mut csv_text = String::from("user,number,voice_routing_policy,force\n");
    for (i, u) in concat(&[
        &plain,
        std::slice::from_ref(&forced),
        &cloud,
        &online,
        &no_ps,
    ])
    .iter()
    .enumerate()
    {
        let policy = if i == 0 { "DR-Route-Seattle" } else { "" };
        let force = if *u == forced { "yes" } else { "" };
        csv_text.push_str(&format!("{u},{},{policy},{force}\n", s.number(u)));
    }
    let csv = lab.path("onprem.csv");
    write(&csv, &csv_text);
    let rf = lab.run_file(
        "onprem.yaml",
        "onprem-to-online",
        &format!("  profile: on_premises\n  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n"),
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 50000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "succeeded"), plain.len() as u64, "{doc}");
    assert_eq!(count(&doc, "failed"), 3, "{doc}");
    assert_eq!(
        count(&doc, "blocked"),
        1,
        "the forced move waits for approval: {doc}"
    );
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);

    let engine = instances_with_events(&lab.state, &id);
    match &engine[&forced].0.status {
        Status::Running {
            step,
            phase: Phase::Blocked { signal: None, .. },
        } => assert_eq!(steps[*step], "approve-force-move"),
        other => panic!("{forced}: expected blocked at approve-force-move, got {other:?}"),
    }
    let o = pf(&lab.state, &["show", &id, &forced]);
    let text = stdout(&o);
    assert!(
        text.contains("waiting at approve-force-move for approval"),
        "{text}"
    );
    assert!(
        text.contains("contacts and meetings are NOT migrated"),
        "{text}"
    );
    assert!(
        text.contains(&format!("portflow approve {id} --step approve-force-move")),
        "{text}"
    );
    {
        let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
        assert!(
            !audit_of(&sim, &forced)
                .iter()
                .any(|e| e.op == OperationKind::MoveUser),
            "{forced}: not moved before the approval"
        );
    }

    let o = pf(
        &lab.state,
        &[
            "approve",
            &id,
            "--step",
            "approve-force-move",
            "--by",
            "cab",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "the refusals remain: {doc}");
    assert_eq!(count(&doc, "succeeded"), plain.len() as u64 + 1, "{doc}");

    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    for u in plain.iter().chain([&forced]) {
        let (inst, _) = &engine[u];
        assert_eq!(inst.status, Status::Succeeded, "{u}");
        let st = sim.user_state(u).expect("state").expect("user");
        let number = s.number(u);
        assert_eq!(st.cloud.homed, Homing::Online, "{u}");
        assert_eq!(st.cloud.teams_upgrade_effective_mode, "TeamsOnly", "{u}");
        assert!(st.cloud.enterprise_voice_enabled, "{u}: EV on");
        assert!(st.cloud.hosted_voicemail, "{u}: voicemail on");
        assert_eq!(st.cloud.line_uri.as_deref(), Some(number.as_str()), "{u}");
        assert_eq!(
            st.onprem.as_ref().map(|o| o.homed),
            Some(Homing::Online),
            "{u}"
        );
        assert_eq!(
            st.contacts_lost,
            *u == forced,
            "{u}: contacts lost only with -Force"
        );
        let moves: Vec<AuditEntry> = audit_of(&sim, u)
            .into_iter()
            .filter(|e| e.op == OperationKind::MoveUser && is_ok(e))
            .collect();
        assert_eq!(moves.len(), 1, "{u}: {moves:?}");
        assert_eq!(
            moves[0].args["force"] == Value::Bool(true),
            *u == forced,
            "{u}: {:?}",
            moves[0].args
        );
    }
    let first = &plain[0];
    let st = sim.user_state(first).expect("state").expect("user");
    assert_eq!(
        st.cloud.online_voice_routing_policy.as_deref(),
        Some("DR-Route-Seattle")
    );

    assert_failed_at(
        &engine[&cloud[0]].0,
        &steps,
        "refuse-cloud-user",
        "created in the cloud",
    );
    assert_failed_at(
        &engine[&online[0]].0,
        &steps,
        "check-not-online",
        "already homed online",
    );
    let (inst, events) = &engine[&no_ps[0]];
    assert_failed_at(inst, &steps, "check-licences", "missing licences");
    assert!(
        has_event(events, |k| matches!(k,
            EventKind::WaitTimedOut { step, outcome, .. }
                if step == "wait-synced-and-licensed" && outcome == "continue")),
        "the 24 h licence wait timed out and continued to the check"
    );
    let st = sim.user_state(&no_ps[0]).expect("state").expect("user");
    assert!(
        !st.licences.iter().any(|l| l == "MCOEV"),
        "{:?}",
        st.licences
    );
    for u in [&cloud[0], &online[0], &no_ps[0]] {
        assert!(
            !audit_of(&sim, u)
                .iter()
                .any(|e| e.op == OperationKind::MoveUser),
            "{u}: a refused user is never moved"
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Emergency locations

#[test]
fn emergency_locations_are_set_except_operator_locked_and_unvalidated_ones() {
    let lab = Lab::new();
    let (seed, users) = (41, 100);
    let cfg = sim_cfg(Profile::OperatorConnect, seed, users);
    let s = seeded(&cfg);
    let plain = s.pick(6, None, &[tags::OC_LOCKED, tags::TARGET_NOT_VALIDATED]);
    let locked = s.pick(2, Some(tags::OC_LOCKED), &[tags::TARGET_NOT_VALIDATED]);
    let unvalidated = s.pick(2, Some(tags::TARGET_NOT_VALIDATED), &[tags::OC_LOCKED]);
    let changes = plain
        .iter()
        .filter(|u| s.location_ids[*u].as_deref() != Some(s.field(u, 2).as_str()))
        .count();
    assert!(changes > 0, "some plain subject needs a new location");
    let csv = lab.path("loc.csv");
    s.csv(&csv, &concat(&[&plain, &locked, &unvalidated]));
    let rf = lab.run_file(
        "loc.yaml",
        "assign-emergency-location",
        &format!("  profile: operator_connect\n  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n"),
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 20000\n"),
    );
    // A locked number that already has the asked-for location has nothing to change.
    let (locked_same, locked): (Vec<String>, Vec<String>) = locked
        .into_iter()
        .partition(|u| s.location_ids[u].as_deref() == Some(s.field(u, 2).as_str()));
    assert!(
        !locked.is_empty(),
        "some locked number needs another location"
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(
        count(&doc, "succeeded"),
        (plain.len() + locked_same.len()) as u64,
        "{doc}"
    );
    assert_eq!(
        count(&doc, "failed"),
        (locked.len() + unvalidated.len()) as u64,
        "{doc}"
    );
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let audit = sim.audit_log().expect("audit");
    let set_calls = |number: &str| {
        audit
            .iter()
            .filter(|e| {
                e.op == OperationKind::SetNumberLocation && e.number.as_deref() == Some(number)
            })
            .count()
    };

    for u in &plain {
        assert_eq!(engine[u].0.status, Status::Succeeded, "{u}");
        let n = sim
            .number_state(&s.number(u))
            .expect("number")
            .expect("in tenant");
        assert_eq!(
            n.location_id.as_deref(),
            Some(s.field(u, 2).as_str()),
            "{u}"
        );
        assert_eq!(n.activation_state, "Activated", "{u}");
        let expected = usize::from(s.location_ids[u].as_deref() != Some(s.field(u, 2).as_str()));
        assert_eq!(
            set_calls(&s.number(u)),
            expected,
            "{u}: set once, only when it differs"
        );
    }
    for u in &locked {
        let (inst, events) = &engine[u];
        assert_failed_at(inst, &steps, "check-operator-mode", "contact your operator");
        assert_eq!(
            set_calls(&s.number(u)),
            0,
            "{u}: refused before any set_number_location"
        );
        let intents = events.iter().filter(|e| matches!(&e.kind, EventKind::ActionIntent { step, .. } if step == "set-location")).count();
        let ends = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Failed { .. }))
            .count();
        assert_eq!((intents, ends), (0, 1), "{u}: one refusal, no failure loop");
        let n = sim
            .number_state(&s.number(u))
            .expect("number")
            .expect("in tenant");
        assert_eq!(n.location_id, s.location_ids[u], "{u}: location unchanged");
    }
    for u in &locked_same {
        assert_eq!(engine[u].0.status, Status::Succeeded, "{u}");
        assert_eq!(set_calls(&s.number(u)), 0, "{u}: nothing to set");
    }
    for u in &unvalidated {
        assert_failed_at(&engine[u].0, &steps, "check-validated", "validate it");
        assert_eq!(set_calls(&s.number(u)), 0, "{u}");
    }
}

// ---------------------------------------------------------------------------
// 4. Conferencing e-mails

#[test]
fn send_conferencing_info_mails_each_microsoft_user_once_and_refuses_the_others() {
    let lab = Lab::new();
    let (seed, users) = (51, 60);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let plain = s.pick(6, None, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    let third = s.pick(1, Some(tags::CONF_THIRD_PARTY), &[]);
    let none = s.pick(1, Some(tags::CONF_NONE), &[]);
    let csv = lab.path("conf.csv");
    users_csv(&csv, &concat(&[&plain, &third, &none]));
    let rf = lab.run_file(
        "conf.yaml",
        "send-conferencing-info",
        &format!("  seed: {seed}\n  users: {users}\n"),
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 6000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "succeeded"), plain.len() as u64, "{doc}");
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let engine = instances_with_events(&lab.state, &id);
    assert_failed_at(
        &engine[&third[0]].0,
        &steps,
        "conferencing-check-provider",
        "not Microsoft",
    );
    assert_failed_at(
        &engine[&none[0]].0,
        &steps,
        "conferencing-check-enabled",
        "no Microsoft audio conferencing",
    );

    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let outbox = sim.outbox().expect("outbox");
    for u in &plain {
        let mails: Vec<_> = outbox.iter().filter(|m| &m.user == u).collect();
        assert_eq!(mails.len(), 1, "{u}: one e-mail: {mails:?}");
        assert_eq!(mails[0].kind, "conferencing_info");
        assert_eq!(
            mails[0].conference_id, s.conference_ids[u],
            "{u}: the user's conference id"
        );
    }
    for u in [&third[0], &none[0]] {
        assert!(
            !outbox.iter().any(|m| &m.user == u),
            "{u}: refused, no e-mail"
        );
        assert!(
            !audit_of(&sim, u)
                .iter()
                .any(|e| e.op == OperationKind::SendConferencingInfo),
            "{u}: refused before any send"
        );
    }
    assert_eq!(outbox.len(), plain.len());
}

/// A DR → OC run file chaining `then: [send-conferencing-info]`.
fn dr_then_conferencing(lab: &Lab, seed: u64, users: u32, csv: &Path) -> String {
    lab.run_file(
        "chain.yaml",
        "direct-routing-to-operator-connect",
        &format!(
            "  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 15m, max: 90m}}\n"
        ),
        csv,
        &format!("{SIM_OPERATOR}then: [send-conferencing-info]\napprovals: [operator-coordinated]\ntime_scale: 20000\n"),
    )
}

#[test]
fn dr_to_oc_then_conferencing_sends_one_email_per_migrated_user() {
    let lab = Lab::new();
    let (seed, users) = (53, 40);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let subjects = s.pick(
        6,
        None,
        &[
            tags::CONF_THIRD_PARTY,
            tags::CONF_NONE,
            tags::GROUP_LICENSED,
        ],
    );
    let csv = lab.path("chain.csv");
    s.csv(&csv, &subjects);
    let rf = dr_then_conferencing(&lab, seed, users, &csv);
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(count(&doc, "succeeded"), subjects.len() as u64, "{doc}");
    let id = run_id(&doc);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let counts = outbox_counts(&sim);
    let outbox = sim.outbox().expect("outbox");
    for u in &subjects {
        assert_eq!(
            counts.get(&(u.clone(), "conferencing_info".into())),
            Some(&1),
            "{u}: {counts:?}"
        );
        let st = sim.user_state(u).expect("state").expect("user");
        let n = sim
            .number_state(&s.number(u))
            .expect("number")
            .expect("in tenant");
        assert_eq!(n.number_type, NumberType::OperatorConnect, "{u}");
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(st.cloud.id.as_str()),
            "{u}"
        );
        let assigned_at = audit_of(&sim, u)
            .iter()
            .find(|e| e.op == OperationKind::AssignNumber && is_ok(e))
            .map(|e| e.at)
            .expect("assigned");
        let mailed_at = outbox
            .iter()
            .find(|m| &m.user == u)
            .map(|m| m.at)
            .expect("mailed");
        assert!(mailed_at >= assigned_at, "{u}: e-mail after the migration");
    }
    assert_eq!(outbox.len(), subjects.len(), "no other message: {outbox:?}");
}

#[test]

fn dr_to_oc_then_conferencing_refusal_does_not_undo_the_migration() {
    let lab = Lab::new();
    let (seed, users) = (53, 40);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let plain = s.pick(
        2,
        None,
        &[
            tags::CONF_THIRD_PARTY,
            tags::CONF_NONE,
            tags::GROUP_LICENSED,
        ],
    );
    let third = s.pick(1, Some(tags::CONF_THIRD_PARTY), &[tags::GROUP_LICENSED]);
    let csv = lab.path("chain.csv");
    s.csv(&csv, &concat(&[&plain, &third]));
    let rf = dr_then_conferencing(&lab, seed, users, &csv);
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let engine = instances_with_events(&lab.state, &id);
    let u = &third[0];
    let (inst, events) = &engine[u];
    assert_failed_at(inst, &steps, "conferencing-check-provider", "not Microsoft");
    assert!(
        !has_event(events, |k| matches!(k, EventKind::RollbackStarted { .. })),
        "{u}: refusing an e-mail must not undo the number migration"
    );
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let st = sim.user_state(u).expect("state").expect("user");
    let n = sim
        .number_state(&s.number(u))
        .expect("number")
        .expect("in tenant");
    assert_eq!(
        n.number_type,
        NumberType::OperatorConnect,
        "{u}: still migrated"
    );
    assert_eq!(
        n.assigned_pstn_target_id.as_deref(),
        Some(st.cloud.id.as_str()),
        "{u}"
    );
    assert_eq!(
        st.cloud.online_voice_routing_policy, None,
        "{u}: no DR routing policy back"
    );
}

// ---------------------------------------------------------------------------
// 5. Conference id resets

#[test]
fn reset_conference_id_waits_for_approval_then_resets_once_and_refuses_third_parties() {
    let lab = Lab::new();
    let (seed, users) = (61, 60);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let plain = s.pick(4, None, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    let third = s.pick(1, Some(tags::CONF_THIRD_PARTY), &[]);
    let csv = lab.path("reset.csv");
    users_csv(&csv, &concat(&[&plain, &third]));
    let rf = lab.run_file(
        "reset.yaml",
        "reset-conference-id",
        &format!("  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n"),
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 6000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(
        count(&doc, "blocked"),
        plain.len() as u64,
        "the gate holds every reset: {doc}"
    );
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    for u in &plain {
        match &instances_with_events(&lab.state, &id)[u].0.status {
            Status::Running {
                step,
                phase: Phase::Blocked { .. },
            } => assert_eq!(steps[*step], "approve-reset"),
            other => panic!("{u}: expected blocked at approve-reset, got {other:?}"),
        }
    }
    {
        let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
        assert!(
            sim.outbox().expect("outbox").is_empty(),
            "nothing reset without approval"
        );
        assert!(sim.audit_log().expect("audit").is_empty());
        for u in &plain {
            let st = sim.user_state(u).expect("state").expect("user");
            assert_eq!(
                st.conferencing.and_then(|c| c.conference_id),
                s.conference_ids[u]
            );
        }
    }
    let o = pf(&lab.state, &["approve", &id, "--step", "approve-reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "succeeded"), plain.len() as u64, "{doc}");

    let engine = instances_with_events(&lab.state, &id);
    assert_failed_at(
        &engine[&third[0]].0,
        &steps,
        "check-provider",
        "not Microsoft",
    );
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let outbox = sim.outbox().expect("outbox");
    for u in &plain {
        let st = sim.user_state(u).expect("state").expect("user");
        let new_id = st.conferencing.and_then(|c| c.conference_id);
        assert!(
            new_id.is_some() && new_id != s.conference_ids[u],
            "{u}: id changed"
        );
        let mails: Vec<_> = outbox.iter().filter(|m| &m.user == u).collect();
        assert_eq!(mails.len(), 1, "{u}: one reset: {mails:?}");
        assert_eq!(mails[0].kind, "conference_id_reset");
        assert_eq!(
            mails[0].conference_id, new_id,
            "{u}: the e-mail gives the new id"
        );
    }
    assert!(
        !outbox.iter().any(|m| m.user == third[0]),
        "third party untouched"
    );
}

#[test]
fn reset_conference_id_as_a_manual_task_completes_on_the_done_signal() {
    let lab = Lab::new();
    let (seed, users) = (63, 30);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let subjects = s.pick(2, None, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    assert_eq!(subjects.len(), 2);
    let csv = lab.path("reset.csv");
    users_csv(&csv, &subjects);
    let rf = lab.run_file(
        "reset.yaml",
        "reset-conference-id",
        &format!("  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  manual: [reset_conference_id]\n"),
        &csv,
        &format!("{SIM_OPERATOR}approvals: [approve-reset]\ntime_scale: 6000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "manual tasks wait for a person: {doc}");
    assert_eq!(count(&doc, "blocked"), 2, "{doc}");
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let (admin_done, untouched) = (&subjects[0], &subjects[1]);
    for u in &subjects {
        match &instances_with_events(&lab.state, &id)[u].0.status {
            Status::Running {
                step,
                phase: Phase::Blocked { signal, .. },
            } => {
                assert_eq!(steps[*step], "reset", "{u}");
                assert_eq!(signal.as_deref(), Some("done"), "{u}");
            }
            other => panic!("{u}: expected blocked at reset, got {other:?}"),
        }
    }
    let o = pf(&lab.state, &["show", &id, admin_done]);
    let text = stdout(&o);
    assert!(
        text.contains(&format!("portflow signal {id} {admin_done} done")),
        "{text}"
    );
    assert!(
        text.contains("Audio Conferencing → Reset conference ID"),
        "admin-center instructions: {text}"
    );

    // The admin resets the id in the admin center. The tenant as configured
    // for the run refuses the automated call; the admin's action is not one.
    let mut manual_cfg = cfg.clone();
    manual_cfg.manual = vec![OperationKind::ResetConferenceId];
    let reset = Operation::ResetConferenceId {
        user: admin_done.clone(),
    };
    {
        let sim = open_run_tenant(&lab.state, &id, &id, &manual_cfg);
        let err = sim
            .execute_blocking(&reset)
            .expect_err("manual op refused when automated");
        assert!(err.message.contains("cannot be automated"), "{err:?}");
    }
    let new_id = {
        let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
        sim.execute_blocking(&reset).expect("the admin's reset");
        let st = sim.user_state(admin_done).expect("state").expect("user");
        st.conferencing.and_then(|c| c.conference_id)
    };
    assert!(new_id.is_some() && new_id != s.conference_ids[admin_done]);

    let o = pf(
        &lab.state,
        &["signal", &id, admin_done, "done", "--by", "admin"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "one still waits for a person: {doc}");
    assert_eq!(count(&doc, "succeeded"), 1, "{doc}");
    assert_eq!(count(&doc, "blocked"), 1, "{doc}");
    let engine = instances_with_events(&lab.state, &id);
    let (inst, events) = &engine[admin_done];
    assert_eq!(inst.status, Status::Succeeded);
    assert!(has_event(
        events,
        |k| matches!(k, EventKind::SignalReceived { name, by, .. } if name == "done" && by == "admin")
    ));
    assert!(
        has_event(
            events,
            |k| matches!(k, EventKind::WaitSatisfied { step, .. } if step == "reset")
        ),
        "the wait verified the changed id"
    );
    assert!(
        !has_event(
            events,
            |k| matches!(k, EventKind::ActionIntent { step, .. } if step == "reset")
        ),
        "portflow never called the manual operation"
    );
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    let counts = outbox_counts(&sim);
    assert_eq!(
        counts.get(&(admin_done.clone(), "conference_id_reset".into())),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(counts.len(), 1, "{counts:?}");
    let st = sim.user_state(untouched).expect("state").expect("user");
    assert_eq!(
        st.conferencing.and_then(|c| c.conference_id),
        s.conference_ids[untouched]
    );
}

// ---------------------------------------------------------------------------
// 6. Timeouts and rollback (DR → OC, the operator never uploads)

/// Run DR → OC on a tenant whose operator uploads only after 60 days (after
/// the 14-day wait), 14 virtual days in about 6 s. Returns the summary.
fn dr_never_uploads(lab: &Lab, extra: &str) -> (i32, Value, Seeded, SimConfig) {
    let (seed, users) = (71, 6);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let subjects: Vec<String> = s.rows.keys().cloned().collect();
    let csv = lab.path("dr.csv");
    s.csv(&csv, &subjects);
    let rf = lab.run_file(
        "dr.yaml",
        "direct-routing-to-operator-connect",
        &format!(
            "  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 60d, max: 70d}}\n"
        ),
        &csv,
        &format!("{SIM_OPERATOR}approvals: [operator-coordinated]\ntime_scale: 200000\n{extra}"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    (code, doc, s, cfg)
}

/// Every subject is back on Direct Routing: number, routing policy, events.
fn assert_rolled_back_to_direct_routing(lab: &Lab, id: &str, s: &Seeded, cfg: &SimConfig) {
    let engine = instances_with_events(&lab.state, id);
    let sim = open_run_tenant(&lab.state, id, id, cfg);
    for (u, (inst, events)) in &engine {
        assert!(
            matches!(inst.status, Status::RolledBack { .. }),
            "{u}: {:?}",
            inst.status
        );
        assert!(
            has_event(events, |k| matches!(k, EventKind::RollbackStarted { .. })),
            "{u}"
        );
        assert!(
            has_event(events, |k| matches!(k, EventKind::Compensated { .. })),
            "{u}"
        );
        assert!(
            has_event(events, |k| matches!(k, EventKind::RolledBack)),
            "{u}"
        );
        let st = sim.user_state(u).expect("state").expect("user");
        let number = s.number(u);
        assert_eq!(
            st.cloud.line_uri.as_deref(),
            Some(number.as_str()),
            "{u}: number back"
        );
        assert_eq!(
            st.cloud.online_voice_routing_policy.as_deref(),
            Some(SEEDED_POLICY),
            "{u}"
        );
        let n = sim
            .number_state(&number)
            .expect("number")
            .expect("in tenant");
        assert_eq!(n.number_type, NumberType::DirectRouting, "{u}");
        assert_eq!(
            n.assigned_pstn_target_id.as_deref(),
            Some(st.cloud.id.as_str()),
            "{u}"
        );
    }
}

#[test]

fn dr_to_oc_operator_never_uploads_rolls_back_to_direct_routing() {
    let lab = Lab::new();
    let (code, doc, s, cfg) = dr_never_uploads(&lab, "");
    assert_eq!(count(&doc, "rolled_back"), 6, "{doc}");
    assert_eq!(code, 3, "rolled-back instances end with exit 3: {doc}");
    assert_rolled_back_to_direct_routing(&lab, &run_id(&doc), &s, &cfg);
}

#[test]
fn dr_to_oc_operator_never_uploads_with_on_failure_stop_fails_and_leaves_the_number_unassigned() {
    let lab = Lab::new();
    let (code, doc, s, cfg) = dr_never_uploads(&lab, "on_failure: stop\n");
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "failed"), 6, "{doc}");
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    for (u, (inst, events)) in &engine {
        assert_failed_at(
            inst,
            &steps,
            "wait-operator-upload",
            "timed out after 14days",
        );
        assert!(
            !has_event(events, |k| matches!(k, EventKind::RollbackStarted { .. })),
            "{u}: no rollback"
        );
        assert!(has_event(
            events,
            |k| matches!(k, EventKind::WaitTimedOut { step, outcome, .. } if step == "wait-operator-upload" && outcome == "fail")
        ));
        let st = sim.user_state(u).expect("state").expect("user");
        assert_eq!(st.cloud.line_uri, None, "{u}: the number stays unassigned");
        assert_eq!(
            st.cloud.online_voice_routing_policy, None,
            "{u}: policy not restored"
        );
        let held = sim
            .number_state(&s.number(u))
            .expect("number")
            .and_then(|n| n.assigned_pstn_target_id);
        assert_eq!(held, None, "{u}: nobody holds the number");
    }
}

/// Start DR → OC, interrupt it while every subject waits for the operator's
/// upload, `cancel --rollback`, resume. Returns the run id and the resume summary.
fn cancel_with_rollback(lab: &Lab) -> (String, i32, Value, Seeded, SimConfig) {
    let (seed, users) = (73, 6);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let subjects: Vec<String> = s.rows.keys().cloned().collect();
    let csv = lab.path("dr.csv");
    s.csv(&csv, &subjects);
    let rf = lab.run_file(
        "dr.yaml",
        "direct-routing-to-operator-connect",
        &format!(
            "  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 60d, max: 70d}}\n"
        ),
        &csv,
        &format!("{SIM_OPERATOR}approvals: [operator-coordinated]\ntime_scale: 20000\n"),
    );
    let id = drive_until(lab, &["run", &rf], |e, steps| {
        e.values()
            .all(|(i, _)| at_step(i, steps, "wait-operator-upload"))
    });
    let steps = step_ids(&lab.state, &id);
    for (inst, _) in instances_with_events(&lab.state, &id).values() {
        assert_waiting_at(inst, &steps, "wait-operator-upload");
    }
    let o = pf(
        &lab.state,
        &["cancel", &id, "--rollback", "--reason", "window closed"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    (id, code, doc, s, cfg)
}

#[test]
fn cancel_with_rollback_starts_undoing_and_restores_the_routing_policy_first() {
    let lab = Lab::new();
    let (id, _, doc, _, cfg) = cancel_with_rollback(&lab);
    assert_eq!(
        count(&doc, "cancelled"),
        0,
        "a rollback, not a plain cancel: {doc}"
    );
    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    for (u, (_, events)) in &engine {
        let started = events.iter().find_map(|e| match &e.kind {
            EventKind::RollbackStarted { error, undo, .. } => Some((error.clone(), undo.clone())),
            _ => None,
        });
        let (error, undo) = started.unwrap_or_else(|| panic!("{u}: rollback started"));
        assert!(error.contains("cancelled: window closed"), "{u}: {error}");
        assert_eq!(
            undo.first().map(String::as_str),
            Some("remove-voice-routing-policy"),
            "{u}: newest first"
        );
        assert!(
            has_event(
                events,
                |k| matches!(k, EventKind::Compensated { step } if step == "remove-voice-routing-policy")
            ),
            "{u}"
        );
        let st = sim.user_state(u).expect("state").expect("user");
        assert_eq!(
            st.cloud.online_voice_routing_policy.as_deref(),
            Some(SEEDED_POLICY),
            "{u}"
        );
    }
}

#[test]

fn cancel_with_rollback_on_a_run_in_progress_ends_rolled_back() {
    let lab = Lab::new();
    let (id, code, doc, s, cfg) = cancel_with_rollback(&lab);
    assert_eq!(count(&doc, "rolled_back"), 6, "{doc}");
    // Rolled back on request, service restored: a success state.
    assert_eq!(code, 0, "{doc}");
    assert_rolled_back_to_direct_routing(&lab, &id, &s, &cfg);
}

// ---------------------------------------------------------------------------
// 7. Retry

#[test]
fn retry_requeues_a_failed_instance_and_records_who_retried() {
    let lab = Lab::new();
    let (seed, users) = (81, 20);
    let s = seeded(&sim_cfg(Profile::DirectRouting, seed, users));
    let subjects = s.pick(2, None, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    let csv = lab.path("conf.csv");
    users_csv(&csv, &subjects);
    let rf = lab.run_file(
        "conf.yaml",
        "send-conferencing-info",
        &format!("  seed: {seed}\n  users: {users}\n  faults: {{transient_rate: 1.0}}\n"),
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 20000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "failed"), 2, "{doc}");
    let id = run_id(&doc);
    let steps = step_ids(&lab.state, &id);
    let failures = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ActionFailed { .. }))
            .count()
    };
    let engine = instances_with_events(&lab.state, &id);
    for (inst, events) in engine.values() {
        assert_failed_at(
            inst,
            &steps,
            "conferencing-inspect",
            "Service is unavailable",
        );
        assert_eq!(failures(events), 5, "{}: five attempts", inst.subject);
    }

    let (retried, other) = (&subjects[0], &subjects[1]);
    let o = pf(
        &lab.state,
        &["retry", &id, "--subject", retried, "--by", "ops"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("retried: 1 instance(s)"),
        "{}",
        stdout(&o)
    );
    let o = pf(&lab.state, &["--json", "show", &id, retried]);
    let v = json(&o);
    assert_eq!(
        v["instance"]["status"]["state"], "running",
        "re-queued: {}",
        v["instance"]
    );
    assert!(
        v["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["event"] == "retried"
                && e["from_step"] == "conferencing-inspect"
                && e["by"] == "ops"),
        "{v}"
    );
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "the faults are still there: {doc}");
    let engine = instances_with_events(&lab.state, &id);
    let (inst, events) = &engine[retried];
    assert_failed_at(
        inst,
        &steps,
        "conferencing-inspect",
        "Service is unavailable",
    );
    assert_eq!(failures(events), 10, "five more attempts after the retry");
    assert_eq!(
        failures(&engine[other].1),
        5,
        "the other subject was not retried"
    );
}

#[test]
fn retry_from_the_first_step_never_sends_the_conferencing_email_twice() {
    let lab = Lab::new();
    let (seed, users) = (83, 20);
    let s = seeded(&sim_cfg(Profile::DirectRouting, seed, users));
    let subjects = s.pick(2, None, &[tags::CONF_THIRD_PARTY, tags::CONF_NONE]);
    let csv = lab.path("conf.csv");
    users_csv(&csv, &subjects);
    let rf = lab.run_file(
        "conf.yaml",
        "send-conferencing-info",
        &format!("  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n"),
        &csv,
        &format!("{SIM_OPERATOR}then: [reset-conference-id]\ntime_scale: 6000\n"),
    );
    // E-mails go out, then every instance stops at the unapproved reset gate.
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "still blocked when the command returns: {doc}");
    assert_eq!(count(&doc, "blocked"), 2, "{doc}");
    let id = run_id(&doc);
    let o = pf(&lab.state, &["cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pf(
        &lab.state,
        &["retry", &id, "--from-step", "conferencing-inspect"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "blocked"), 2, "back at the reset gate: {doc}");
    for (u, (_, events)) in &instances_with_events(&lab.state, &id) {
        assert!(
            has_event(
                events,
                |k| matches!(k, EventKind::Retried { from_step, .. } if from_step == "conferencing-inspect")
            ),
            "{u}"
        );
        assert!(
            has_event(
                events,
                |k| matches!(k, EventKind::StepSkipped { step, reason: Some(r) }
                if step == "send-conferencing-email" && r.contains("already done"))
            ),
            "{u}: the e-mail step is skipped as already done"
        );
        let sends = events.iter().filter(|e| matches!(&e.kind, EventKind::ActionIntent { step, .. } if step == "send-conferencing-email")).count();
        assert_eq!(sends, 1, "{u}: one send intent in the whole history");
    }
    let o = pf(&lab.state, &["approve", &id, "--step", "approve-reset"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, doc) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(count(&doc, "succeeded"), 2, "{doc}");
    let o = pf(&lab.state, &["retry", &id]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "succeeded instances are not retried: {}",
        stderr(&o)
    );

    let sim = open_run_tenant(
        &lab.state,
        &id,
        &id,
        &sim_cfg(Profile::DirectRouting, seed, users),
    );
    let counts = outbox_counts(&sim);
    for u in &subjects {
        assert_eq!(
            counts.get(&(u.clone(), "conferencing_info".into())),
            Some(&1),
            "{u}: {counts:?}"
        );
        assert_eq!(
            counts.get(&(u.clone(), "conference_id_reset".into())),
            Some(&1),
            "{u}: {counts:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 8. Plan

/// Everything a plan could have changed on a named tenant.
fn tenant_snapshot(
    state: &Path,
    name: &str,
    cfg: &SimConfig,
    users: &[String],
) -> (usize, usize, Vec<String>) {
    let sim = SimTenant::open(
        &state.join("sim").join(name),
        cfg,
        std::sync::Arc::new(portflow::clock::SystemClock),
    )
    .expect("open named tenant");
    let states = users
        .iter()
        .map(|u| {
            format!(
                "{:?}",
                sim.user_state(u)
                    .expect("state")
                    .map(|s| (s.cloud, s.licences, s.conferencing))
            )
        })
        .collect();
    (
        sim.audit_log().expect("audit").len(),
        sim.outbox().expect("outbox").len(),
        states,
    )
}

#[test]
fn plan_on_a_named_tenant_reports_branches_and_blockers_and_changes_nothing() {
    let lab = Lab::new();
    let (seed, users) = (91, 30);
    let csv_all = lab.path("lab.csv");
    let o = pf(
        &lab.state,
        &[
            "sim",
            "init",
            "--name",
            "lab",
            "--seed",
            &seed.to_string(),
            "--users",
            &users.to_string(),
            "--export",
            &csv_all.to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let s = seeded(&cfg);
    let subjects = s.pick(
        4,
        None,
        &[
            tags::CONF_THIRD_PARTY,
            tags::CONF_NONE,
            tags::GROUP_LICENSED,
        ],
    );
    let before = tenant_snapshot(&lab.state, "lab", &cfg, &subjects);
    assert_eq!((before.0, before.1), (0, 0));

    let good = lab.path("good.csv");
    s.csv(&good, &subjects);
    let mut bad_text = std::fs::read_to_string(&good).expect("csv");
    let wrong = s.number(&subjects[1]);
    bad_text = bad_text.replacen(&wrong, "+14259999999", 1);
    let bad = lab.path("bad.csv");
    write(&bad, &bad_text);
    let backend = "  tenant: lab\n";
    let extra = format!(
        "{SIM_OPERATOR}then: [send-conferencing-info]\napprovals: [operator-coordinated]\ntime_scale: 600\n"
    );
    let rf_good = lab.run_file(
        "good.yaml",
        "direct-routing-to-operator-connect",
        backend,
        &good,
        &extra,
    );
    let rf_bad = lab.run_file(
        "bad.yaml",
        "direct-routing-to-operator-connect",
        backend,
        &bad,
        &extra,
    );

    let o = pf(&lab.state, &["plan", &rf_good]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", stderr(&o));
    assert!(text.contains("nothing is changed"), "{text}");
    assert!(
        text.contains("send-conferencing-email"),
        "the chained steps are planned: {text}"
    );
    assert!(text.contains("4 subject(s) ready, 0 blocked"), "{text}");
    let (code, v) = pf_json(&lab.state, &["plan", &rf_good]);
    assert_eq!(code, 0, "{v}");
    for p in v["plans"].as_array().expect("plans") {
        let will_run: Vec<&str> = p["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|st| st["will"] == "run")
            .filter_map(|st| st["step"].as_str())
            .collect();
        assert!(
            will_run.contains(&"remove-dr-number") ^ will_run.contains(&"clear-onprem-line-uri"),
            "one branch per subject: {p}"
        );
    }

    let (code, v) = pf_json(&lab.state, &["plan", &rf_bad]);
    assert_eq!(code, 3, "a blocked subject makes exit 3: {v}");
    assert_eq!(v["blocked"], 1, "{v}");
    let blocked = v["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["subject"] == subjects[1].as_str())
        .expect("plan of the bad subject");
    assert!(
        blocked["blockers"].to_string().contains("check-number"),
        "{blocked}"
    );
    let o = pf(&lab.state, &["plan", &rf_bad]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout(&o).contains("3 subject(s) ready, 1 blocked"),
        "{}",
        stdout(&o)
    );

    let after = tenant_snapshot(&lab.state, "lab", &cfg, &subjects);
    assert_eq!(before, after, "the plan changed the tenant");
    let (code, v) = pf_json(&lab.state, &["status"]);
    assert_eq!(code, 0);
    assert_eq!(
        v["runs"].as_array().map(Vec::len),
        Some(0),
        "no run created: {v}"
    );
}

#[test]

fn plan_does_not_refuse_calling_plan_subjects_at_their_port_check() {
    let lab = Lab::new();
    let (seed, users) = (93, 10);
    let csv = lab.path("cp.csv");
    let o = pf(
        &lab.state,
        &[
            "sim",
            "init",
            "--name",
            "lab",
            "--profile",
            "calling_plans",
            "--seed",
            &seed.to_string(),
            "--users",
            &users.to_string(),
            "--export",
            &csv.to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg = cp_cfg(seed, users, 0.0, (2 * 3600, 8 * 3600));
    let s = seeded(&cfg);
    let subjects = s.pick(
        3,
        None,
        &[tags::GROUP_LICENSED, tags::PORT_ERROR, tags::NOT_TEAMS_ONLY],
    );
    let sub_csv = lab.path("sub.csv");
    s.csv(&sub_csv, &subjects);
    let rf = lab.run_file(
        "cp.yaml",
        "calling-plans-to-operator-connect",
        "  tenant: lab\n",
        &sub_csv,
        &format!("{SIM_OPERATOR}approvals: [operator-coordinated]\ntime_scale: 600\n"),
    );
    let (code, v) = pf_json(&lab.state, &["plan", &rf]);
    assert!(!v["plans"].to_string().contains("REFUSED"), "{v}");
    assert_eq!(v["blocked"], 0, "{v}");
    assert_eq!(code, 0, "{v}");
}

// ---------------------------------------------------------------------------
// Rolled-back runs (a test workflow whose rollback the simulator can carry
// out: drop the user's voice routing policy, then time out waiting for
// something that never happens; the rollback grants the policy back)

const ROLLBACK_WORKFLOW: &str = r#"name: rollback-probe
version: 1
subject: user
on_failure: rollback
inputs:
  user: {type: upn}
steps:
  - id: inspect
    action: {op: get_user, args: {user: "${inputs.user}"}}
  - id: drop-policy
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}", policy: null}}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.online_voice_routing_policy == null
      timeout: 24h
    compensate:
      op: grant_voice_routing_policy
      args: {user: "${inputs.user}", policy: "${steps.inspect.output.online_voice_routing_policy}"}
      wait:
        observe: {op: get_user, args: {user: "${inputs.user}"}}
        until: obs.online_voice_routing_policy == steps.inspect.output.online_voice_routing_policy
        timeout: 24h
  - id: never
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.line_uri == '+19999999999'
      timeout: 1h
"#;

/// Run the rollback probe workflow for two users; returns the summary.
fn rolled_back_run(lab: &Lab) -> (i32, Value) {
    let wf = lab.path("rollback-probe.yaml");
    write(&wf, ROLLBACK_WORKFLOW);
    let csv = lab.path("users.csv");
    users_csv(&csv, &[SimTenant::upn(1), SimTenant::upn(2)]);
    let rf = lab.run_file(
        "rb.yaml",
        &wf.to_string_lossy(),
        "  seed: 1\n  users: 5\n  latency: {tail_rate: 0}\n",
        &csv,
        &format!("{SIM_OPERATOR}time_scale: 20000\n"),
    );
    pf_json(&lab.state, &["run", &rf])
}

#[test]
fn a_timed_out_wait_rolls_back_the_steps_done() {
    let lab = Lab::new();
    let (_, doc) = rolled_back_run(&lab);
    assert_eq!(count(&doc, "rolled_back"), 2, "{doc}");
    let id = run_id(&doc);
    let cfg = sim_cfg(Profile::DirectRouting, 1, 5);
    let engine = instances_with_events(&lab.state, &id);
    let sim = open_run_tenant(&lab.state, &id, &id, &cfg);
    for (u, (inst, events)) in &engine {
        assert!(
            matches!(&inst.status, Status::RolledBack { error, .. } if error.contains("timed out")),
            "{u}: {:?}",
            inst.status
        );
        let kinds: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RollbackStarted { .. } => Some("rollback_started"),
                EventKind::Compensated { .. } => Some("compensated"),
                EventKind::RolledBack => Some("rolled_back"),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            ["rollback_started", "compensated", "rolled_back"],
            "{u}"
        );
        let st = sim.user_state(u).expect("state").expect("user");
        assert_eq!(
            st.cloud.online_voice_routing_policy.as_deref(),
            Some(SEEDED_POLICY),
            "{u}: restored"
        );
        let grants = audit_of(&sim, u)
            .iter()
            .filter(|e| e.op == OperationKind::GrantVoiceRoutingPolicy && is_ok(e))
            .count();
        assert_eq!(grants, 2, "{u}: removed, then granted back");
    }
}

#[test]

fn a_rolled_back_run_exits_3() {
    let lab = Lab::new();
    let (code, doc) = rolled_back_run(&lab);
    assert_eq!(count(&doc, "rolled_back"), 2, "{doc}");
    assert_eq!(code, 3, "nothing was migrated: {doc}");
}

#[test]

fn cancel_leaves_rolled_back_instances_alone() {
    let lab = Lab::new();
    let (_, doc) = rolled_back_run(&lab);
    assert_eq!(count(&doc, "rolled_back"), 2, "{doc}");
    let id = run_id(&doc);
    let o = pf(&lab.state, &["cancel", &id]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "nothing to cancel: {}",
        stdout(&o)
    );
    let (_, v) = pf_json(&lab.state, &["status", &id]);
    assert_eq!(count(&v, "rolled_back"), 2, "{v}");
    assert!(v["finished_at"].is_i64(), "the run stays finished: {v}");
}

#[test]

fn the_run_summary_of_a_finished_run_has_its_finish_time() {
    let lab = Lab::new();
    let (_, doc) = rolled_back_run(&lab);
    assert_eq!(doc["end"], "Finished", "{doc}");
    let (_, v) = pf_json(&lab.state, &["status"]);
    assert!(v["runs"][0]["finished_at"].is_i64(), "status knows it: {v}");
    assert_eq!(doc["finished_at"], v["runs"][0]["finished_at"], "{doc}");
}
