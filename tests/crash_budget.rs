//! Durability of the out-of-service budget and the circuit breaker: SIGKILL
//! the real binary at random instants of a wave with `max_out_of_service` and
//! `stop_after_failures`, resume each time, and check that the budget was never
//! exceeded (in the engine's records and in the tenant's own) and that the
//! breaker's trip survived until `resume --continue`.
//! Replay a failure with PORTFLOW_CRASH_SEED=<seed printed below>.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use common::*;

const USERS: u32 = 60;
const SEED: u64 = 11;
const BUDGET: i64 = 6;

/// Direct Routing removal (the outage), the operator's upload, then a check
/// that refuses the subjects marked `doom` while they are out of service (as a
/// mismatch found after the upload would), then the assignment that restores
/// service.
const PROBE: &str = r#"
name: budget-probe
version: 1
subject: user
inputs:
  user: {type: upn}
  number: {type: e164}
  location_id: {type: string, optional: true}
  doom: {type: string, optional: true}
steps:
  - id: inspect
    action: {op: get_user, args: {user: "${inputs.user}"}}
  - id: online-only
    check:
      require: "steps.inspect.output.on_prem_line_uri == null"
      message: on-premises number
  - id: remove-dr-number
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.line_uri == null
      expected: 10m
      timeout: 24h
  - id: wait-operator-upload
    wait:
      observe: {op: get_number, args: {number: "${inputs.number}"}}
      until: "obs.number_type == 'OperatorConnect'"
      expected: 30m
      timeout: 14d
      poll: {initial: 1m, max: 5m}
  - id: check-after-upload
    check:
      require: "steps.wait-operator-upload.observed.number_type == 'OperatorConnect' && inputs.doom != 'yes'"
      message: "${inputs.user}: stop for a person"
  - id: assign-oc-number
    action:
      op: assign_number
      args:
        user: "${inputs.user}"
        number: "${inputs.number}"
        number_type: OperatorConnect
        location_id: "${inputs.location_id}"
    wait:
      observe: {op: get_number, args: {number: "${inputs.number}"}}
      until: "obs.activation_state == 'Activated' && obs.pstn_assignment_status == 'UserAssigned'"
      expected: 10m
      timeout: 24h
  - id: verify-user
    restores_service: true
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: "obs.line_uri == inputs.number"
      expected: 10m
      timeout: 24h
"#;

#[test]
fn sigkill_never_lets_the_budget_overflow_and_the_breaker_trip_survives() {
    let crash_seed = std::env::var("PORTFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ 0xb0d9e7);
    eprintln!("crash seed: {crash_seed}");
    let mut rng = Rng(crash_seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let wf_dir = tmp.path().join("wf");
    std::fs::create_dir_all(&wf_dir).expect("mkdir");
    write(&wf_dir.join("budget-probe.yaml"), PROBE);
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, SEED, USERS, &csv);
    // Mark four online Direct Routing subjects among the first ones to fail
    // after going out of service.
    let cfg = sim_cfg(portflow::backend::sim::Profile::DirectRouting, SEED, USERS);
    let (_probe_dir, probe) = probe_tenant(&cfg);
    let online = |upn: &str| {
        probe
            .execute_blocking(&portflow::backend::Operation::GetUser { user: upn.into() })
            .map(|v| v["on_prem_line_uri"].is_null())
            .unwrap_or(false)
    };
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines: Vec<String> = Vec::new();
    let mut doomed = 0;
    for (i, line) in text.lines().enumerate() {
        let upn = line.split(',').next().unwrap_or("");
        lines.push(if i == 0 {
            format!("{line},doom")
        } else if i >= 2 && i % 2 == 0 && doomed < 4 && online(upn) {
            doomed += 1;
            format!("{line},yes")
        } else {
            format!("{line},")
        });
    }
    assert_eq!(doomed, 4);
    drop(probe);
    write(&csv, &(lines.join("\n") + "\n"));
    let rf = tmp.path().join("wave.yaml");
    write(
        &rf,
        &format!(
            "workflow: budget-probe\n\
             backend:\n  kind: sim\n  seed: {SEED}\n  users: {USERS}\n  latency: {{min: 30s, typical_max: 5m, tail_rate: 0}}\n  operator_upload_delay: {{min: 10m, max: 40m}}\n  faults: {{transient_rate: 0.02}}\n\
             subjects: {{csv: {}}}\n\
             concurrency: 20\n\
             max_out_of_service: {BUDGET}\n\
             stop_after_failures: 3\n\
             time_scale: 3000\n",
            csv.display()
        ),
    );
    let wf_arg = wf_dir.to_str().expect("utf-8 path").to_string();
    let cmd = |args: &[&str]| {
        let mut c = portflow(&state);
        c.args(["--workflows", &wf_arg]).args(args);
        c
    };

    // Kill it at random instants; a resume that ends by itself (the breaker
    // paused the run) is not killed.
    let mut id: Option<String> = None;
    let mut kills = 0;
    let mut paused_seen = false;
    for _ in 0..12 {
        let mut c = match &id {
            None => cmd(&["run", rf.to_str().expect("utf-8")]),
            Some(id) => cmd(&["resume", id]),
        };
        let mut child = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(rng.range(200, 1500)));
        match child.try_wait() {
            Ok(Some(status)) => {
                assert_eq!(status.code(), Some(3), "a paused run ends with 3");
                paused_seen = true;
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                kills += 1;
            }
        }
        if id.is_none() {
            id = only_run_id(&state);
        }
        if paused_seen {
            break;
        }
    }
    let id = id.expect("a run was created");
    eprintln!("{kills} kills before the pause");

    // Resume until the run stops by itself: the breaker holds everyone left.
    let o = run(&mut cmd(&["--json", "resume", &id]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let record = run_record(&state, &id);
    let trip = record.breaker.tripped.clone().expect("the breaker tripped");
    assert_eq!(trip.threshold, 3);
    assert!(trip.failures >= 3, "{trip:?}");
    let v = json(&o);
    let held = v["states"]["held"].as_u64().unwrap_or(0);
    assert!(held > 0, "subjects wait at their outage step: {v}");

    // A crash while paused keeps the pause.
    let mut child = cmd(&["resume", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        run_record(&state, &id).breaker.tripped.is_some(),
        "SIGKILL does not close the breaker"
    );
    let insts = instances_with_events(&state, &id);
    let still_held = insts
        .values()
        .filter(|(i, _)| i.status.name() == "held")
        .count();
    assert!(still_held > 0, "nobody left the held phase while paused");

    // Continue: everyone else goes; the fourth doomed subject is one failure
    // past the accepted ones, under the threshold.
    let o = run(&mut cmd(&[
        "--json",
        "resume",
        "--continue",
        &id,
        "--by",
        "ops",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let record = run_record(&state, &id);
    assert!(record.breaker.tripped.is_none());
    assert_eq!(record.breaker.continued.len(), 1);
    assert_eq!(record.breaker.continued[0].by, "ops");
    let insts = instances_with_events(&state, &id);
    let failed: Vec<&str> = insts
        .iter()
        .filter(|(_, (i, _))| i.status.name() == "failed" && i.down.is_some())
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(failed.len(), 4, "the four doomed subjects: {failed:?}");
    assert!(
        insts.values().all(|(i, _)| i.is_terminal()),
        "the run ended"
    );

    // The budget, as the engine recorded it: spans of every outage (open ones
    // have no end) never overlap more than BUDGET deep.
    let mut edges: Vec<(i64, i64)> = Vec::new();
    for (i, _) in insts.values() {
        for o in &i.outages {
            edges.push((o.start.0, 1));
            edges.push((o.end.0, -1));
        }
        if let Some(d) = &i.down {
            edges.push((d.since.0, 1));
        }
    }
    edges.sort();
    let (mut n, mut peak) = (0i64, 0i64);
    for (_, d) in &edges {
        n += d;
        peak = peak.max(n);
    }
    eprintln!("engine: peak {peak} out of service at once");
    assert!(peak <= BUDGET, "engine-recorded peak {peak} > {BUDGET}");
    assert!(peak >= 2, "the budget was used: {peak}");

    // The same from the tenant's own outage records (removal to assignment).
    let o = run(&mut cmd(&["--json", "sim", "outages", &id]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let list = v
        .as_array()
        .or_else(|| v["outages"].as_array())
        .cloned()
        .unwrap_or_default();
    let mut edges: Vec<(i64, i64)> = Vec::new();
    for o in &list {
        let start = o["start_ms"].as_i64().or_else(|| o["start"].as_i64());
        let end = o["end_ms"].as_i64().or_else(|| o["end"].as_i64());
        if let Some(s) = start {
            edges.push((s, 1));
            edges.push((end.unwrap_or(i64::MAX), -1));
        }
    }
    edges.sort();
    let (mut n, mut tpeak) = (0i64, 0i64);
    for (_, d) in &edges {
        n += d;
        tpeak = tpeak.max(n);
    }
    eprintln!("tenant: {} outages, peak {tpeak}", list.len());
    assert!(!list.is_empty(), "the tenant recorded outages: {v}");
    assert!(tpeak <= BUDGET, "tenant-recorded peak {tpeak} > {BUDGET}");
}
