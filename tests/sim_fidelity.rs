//! The simulated tenant's clock and outage view through the real binary:
//! time-scaled runs on a named tenant continue from the instant the previous
//! run reached, `sim log` / `sim outages` answer for runs on named tenants,
//! outages read as of the tenant's instant (not the wall clock), and an
//! on-premises rollback ends its outage.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use portflow::backend::sim::{Profile, SimConfig, SimTenant, LOCATIONS};
use portflow::clock::{Clock, SystemClock, Timestamp};
use serde_json::Value;

/// The exported subject rows (`user,number,location_id`) of a tenant seeded
/// from `cfg`, with whether each user's number is set on-premises.
fn exported(cfg: &SimConfig) -> Vec<(String, String, String, bool)> {
    let (_dir, sim) = probe_tenant(cfg);
    let mut csv = Vec::new();
    sim.export_subjects_csv(&mut csv).expect("export");
    let text = String::from_utf8(csv).expect("utf-8");
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let user = cols[0].to_string();
            let on_prem = sim
                .user_state(&user)
                .expect("state")
                .expect("user")
                .ad_line_uri
                .is_some();
            (user, cols[1].to_string(), cols[2].to_string(), on_prem)
        })
        .collect()
}

fn csv(path: &Path, rows: &[(String, String, String)]) {
    let mut text = String::from("user,number,location_id\n");
    for (u, n, l) in rows {
        text.push_str(&format!("{u},{n},{l}\n"));
    }
    write(path, &text);
}

fn run_id(doc: &Value) -> String {
    doc["run"].as_str().expect("run id").to_string()
}

fn count(doc: &Value, state: &str) -> u64 {
    doc["states"][state].as_u64().unwrap_or(0)
}

/// `sim <what> <tenant>` as JSON: exit code and document.
fn sim_json(state: &Path, what: &str, tenant: &str) -> (i32, Value) {
    pf_json(state, &["sim", what, tenant])
}

/// The instant a stored tenant reached, read in-process (then closed).
fn reached(state: &Path, name: &str, cfg: &SimConfig) -> Timestamp {
    let sim = SimTenant::open(&state.join("sim").join(name), cfg, Arc::new(SystemClock))
        .expect("open tenant");
    sim.reached().expect("the tenant was used")
}

/// Every outage ended, with its real duration.
fn assert_all_ended(outages: &Value, expected: usize) {
    let list = outages.as_array().expect("outage list");
    assert_eq!(list.len(), expected, "{outages}");
    for o in list {
        let start = o["start"].as_i64().expect("start");
        let end = o["end"].as_i64().unwrap_or_else(|| panic!("ongoing: {o}"));
        assert!(end > start, "{o}");
        assert_eq!(o["duration_ms"].as_i64(), Some(end - start), "{o}");
    }
}

const DR_BACKEND: &str = "  latency: {tail_rate: 0}\n  dirsync_interval: 10m\n  \
                          operator_upload_delay: {min: 15m, max: 90m}\n";

/// These runs' operator declaration: addresses are left to the tenant (ignored
/// by workflows without an `address_mode` input).
const OPERATOR: &str = "operator: {address_mode: tenant_assigns}\n";

#[test]
fn a_second_scaled_run_on_a_named_tenant_continues_where_the_first_left_it() {
    let lab = Lab::new();
    let (seed, users) = (42, 12);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let rows = exported(&cfg);
    let wave: Vec<(String, String, String)> = rows
        .iter()
        .take(4)
        .map(|(u, n, l, _)| (u.clone(), n.clone(), l.clone()))
        .collect();
    let o = pf(
        &lab.state,
        &[
            "sim", "init", "--name", "waves", "--seed", "42", "--users", "12",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // Wave 1: Direct Routing to Operator Connect, 20000 times real time.
    let csv1 = lab.path("wave1.csv");
    csv(&csv1, &wave);
    let rf1 = lab.run_file(
        "wave1.yaml",
        "direct-routing-to-operator-connect",
        &format!("  tenant: waves\n{DR_BACKEND}"),
        &csv1,
        &format!("{OPERATOR}approvals: [operator-coordinated]\ntime_scale: 20000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf1]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(count(&doc, "succeeded"), 4, "{doc}");
    let id1 = run_id(&doc);
    let after_first = reached(&lab.state, "waves", &cfg);
    assert!(
        after_first.since(SystemClock.now()).as_secs() > 3600,
        "the scaled run reached hours ahead of the wall clock"
    );

    // (b) `sim log` and `sim outages` answer for a run on a named tenant.
    let (code, log) = sim_json(&lab.state, "log", &id1);
    assert_eq!(code, 0, "{log}");
    let log = log.as_array().cloned().unwrap_or_default();
    assert!(log.iter().any(|e| e["op"] == "assign_number"), "{log:?}");
    let (code, outages) = sim_json(&lab.state, "outages", &id1);
    assert_eq!(code, 0, "{outages}");
    assert_all_ended(&outages, 4);
    let o = pf(&lab.state, &["sim", "outages", &id1]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("ongoing"), "{}", stdout(&o));
    let o = pf(&lab.state, &["sim", "log", &id1, "--user", &wave[0].0]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("assign_number"), "{}", stdout(&o));

    // Wave 2 moves wave 1's numbers to other locations: it must see them as
    // the Operator Connect numbers wave 1 left behind.
    let moved: Vec<(String, String, String)> = wave
        .iter()
        .map(|(u, n, l)| {
            let other = LOCATIONS
                .iter()
                .find(|x| **x != l.as_str())
                .expect("location");
            (u.clone(), n.clone(), other.to_string())
        })
        .collect();
    let csv2 = lab.path("wave2.csv");
    csv(&csv2, &moved);
    let rf2 = lab.run_file(
        "wave2.yaml",
        "assign-emergency-location",
        &format!("  tenant: waves\n{DR_BACKEND}"),
        &csv2,
        &format!("{OPERATOR}time_scale: 20000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf2]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(count(&doc, "succeeded"), 4, "{doc}");
    let id2 = run_id(&doc);
    let record = run_record(&lab.state, &id2);
    let clock = record.clock.expect("a scaled run has a virtual clock");
    assert!(
        clock.virtual_anchor >= after_first,
        "run 2 starts at {} before run 1's {}",
        clock.virtual_anchor,
        after_first
    );
    let (code, log) = sim_json(&lab.state, "log", &id2);
    assert_eq!(code, 0, "{log}");
    let sets: Vec<&Value> = log
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|e| e["op"] == "set_number_location")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sets.len(), 4, "{log}");
    for e in &sets {
        assert_eq!(e["outcome"]["status"], "ok", "{e}");
        assert!(e["at"].as_i64() >= Some(after_first.0), "{e}");
    }
    let sim = SimTenant::open(
        &lab.state.join("sim").join("waves"),
        &cfg,
        Arc::new(SystemClock),
    )
    .expect("open tenant");
    for (u, n, l) in &moved {
        let row = sim.number_state(n).expect("number").expect("row");
        assert_eq!(row.location_id.as_deref(), Some(l.as_str()), "{u}");
        assert_eq!(row.pstn_assignment_status, "UserAssigned", "{u}");
    }
    assert!(sim.reached() > Some(after_first));
}

#[test]
fn a_rolled_back_scaled_run_reports_every_outage_ended_on_premises_ones_included() {
    let lab = Lab::new();
    let (seed, users) = (42, 10);
    let cfg = sim_cfg(Profile::DirectRouting, seed, users);
    let rows = exported(&cfg);
    let on_prem = rows.iter().filter(|r| r.3).count();
    assert!(
        on_prem > 0 && on_prem < rows.len(),
        "seed {seed} needs both kinds of users"
    );
    let subjects: Vec<(String, String, String)> = rows
        .iter()
        .map(|(u, n, l, _)| (u.clone(), n.clone(), l.clone()))
        .collect();
    let csv1 = lab.path("dr.csv");
    csv(&csv1, &subjects);
    // The operator never uploads: every instance rolls back, on-premises users
    // through enable_onprem_voice.
    let rf = lab.run_file(
        "dr.yaml",
        "direct-routing-to-operator-connect",
        &format!(
            "  seed: {seed}\n  users: {users}\n  latency: {{tail_rate: 0}}\n  dirsync_interval: 10m\n  \
             operator_upload_delay: {{min: 60d, max: 70d}}\n"
        ),
        &csv1,
        &format!("{OPERATOR}approvals: [operator-coordinated]\ntime_scale: 200000\n"),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(count(&doc, "rolled_back"), users as u64, "{doc}");
    let id = run_id(&doc);
    let log = sim_json(&lab.state, "log", &id).1;
    let rollbacks = log
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|e| e["op"] == "enable_onprem_voice" && e["outcome"]["status"] == "ok")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(rollbacks, on_prem, "{log}");

    // (c) and (d): read after the run, on the wall clock, hours behind the
    // run's virtual time: every outage ended, with its duration.
    let (code, outages) = sim_json(&lab.state, "outages", &id);
    assert_eq!(code, 0, "{outages}");
    assert_all_ended(&outages, users as usize);
    let o = pf(&lab.state, &["sim", "outages", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(!text.contains("ongoing"), "{text}");
    assert!(!text.contains(" 0ms"), "{text}");
    for (u, ..) in rows.iter().filter(|r| r.3) {
        assert!(text.contains(u.as_str()), "{u} in {text}");
    }
}
