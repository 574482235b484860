//! The CLI through the real binary: validate, run, status, show, approve,
//! Ctrl-C and resume, exit codes.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn validate_accepts_shipped_files_and_reports_positions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let o = run(portflow(&state)
        .arg("validate")
        .arg(repo().join("workflows/direct-routing-to-operator-connect.yaml"))
        .arg(repo().join("examples/dr-to-oc.yaml")));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\nversion: 1\nsubject: user\ninputs:\n  user: {type: upn}\nsteps:\n  - id: a\n    wait:\n      observe: {op: get_user, args: {user: \"${inputs.nobody}\"}}\n      until: \"obs.line_uri == null\"\n      timeout: 10\n",
    )
    .expect("write");
    let o = run(portflow(&state).arg("validate").arg(&bad));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml:11:"),
        "duration error points at line 11: {err}"
    );
}

#[test]
fn run_status_show_and_exit_codes_on_a_small_wave() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 3, 20, &csv);
    let rf = write_run_file(tmp.path(), "small.yaml", &csv, 3, 20, 6000, "");
    let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["states"]["succeeded"], 20, "{doc}");
    assert_eq!(doc["end"], "Finished");
    let id = doc["run"].as_str().expect("run id").to_string();
    let calls = doc["calls_per_subject"].as_f64().unwrap_or(0.0);
    assert!(calls > 5.0 && calls < 60.0, "calls per subject {calls}");

    let o = run(portflow(&state).args(["--json", "status"]));
    let v = json(&o);
    assert_eq!(v["runs"][0]["run"], id.as_str());
    assert_eq!(v["runs"][0]["states"]["succeeded"], 20);

    let o = run(portflow(&state).args(["status", &id]));
    assert!(stdout(&o).contains("20 succeeded"), "{}", stdout(&o));

    let o = run(portflow(&state).args(["--json", "show", &id, "user0001@contoso.com"]));
    let v = json(&o);
    let events = v["events"].as_array().expect("events");
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some("started".into())
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some("succeeded".into())
    );
    assert!(
        events.iter().all(|e| e["at"].is_i64()),
        "timestamps on every event"
    );
    assert!(v["workflow"]["hash"]
        .as_str()
        .is_some_and(|h| h.len() == 64));

    let o = run(portflow(&state).args(["show", &id, "user0001@contoso.com"]));
    assert!(stdout(&o).contains("wait_satisfied"), "{}", stdout(&o));

    let o = run(portflow(&state).args(["show", &id, "nobody@contoso.com"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(portflow(&state).args(["status", "no-such-run"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn failing_subjects_end_with_exit_3_and_grouped_reasons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 5, 10, &csv);
    // Give subject 2 a number the tenant does not hold: remove_number fails (not found).
    let text = std::fs::read_to_string(&csv).expect("csv");
    let text = text.replacen("+14250000002", "+14259999999", 1);
    std::fs::write(&csv, text).expect("csv");
    let rf = write_run_file(tmp.path(), "w.yaml", &csv, 5, 10, 6000, "");
    let o = run(portflow(&state).arg("run").arg(&rf));
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 failed"), "{}", stdout(&o));
}

#[test]
fn gate_without_approval_waits_then_approve_and_resume_finish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 9, 5, &csv);
    let rf = write_run_file(tmp.path(), "g.yaml", &csv, 9, 5, 6000, "");
    let text = std::fs::read_to_string(&rf)
        .expect("rf")
        .replace("approvals: [operator-coordinated]\n", "");
    std::fs::write(&rf, text).expect("rf");
    let o = run(portflow(&state).arg("--json").arg("run").arg(&rf));
    // Still blocked when the command returns: 3, not success.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["states"]["blocked"], 5, "{doc}");
    let id = doc["run"].as_str().expect("id").to_string();
    let o = run(portflow(&state).args([
        "approve",
        &id,
        "--step",
        "operator-coordinated",
        "--by",
        "ops-lead",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(portflow(&state).args(["--json", "resume", &id]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["states"]["succeeded"], 5);
    let o = run(portflow(&state).args(["--json", "show", &id, "user0003@contoso.com"]));
    let v = json(&o);
    let approved = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["event"] == "gate_approved" && e["by"] == "ops-lead");
    assert!(approved, "approval recorded with the approver");
}

#[test]
fn ctrl_c_stops_within_a_second_and_resume_finishes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 11, 60, &csv);
    let rf = write_run_file(tmp.path(), "c.yaml", &csv, 11, 60, 300, "");
    let child = portflow(&state)
        .arg("run")
        .arg(&rf)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id() as i32;
    // SAFETY: sending SIGINT to our own child process.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0);
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "stopped in {:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", stdout(&out));
    assert!(stdout(&out).contains("portflow resume"), "{}", stdout(&out));
    let id = only_run_id(&state).expect("run id");
    let o = run(portflow(&state).args(["--json", "resume", &id]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["states"]["succeeded"], 60);
}

/// A foreground run holds the state directory and serves its API: `status`
/// works through it, but `serve` and a second `run` get exit 4 with a hint.
#[test]
fn a_second_process_on_the_same_state_gets_exit_4() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 13, 30, &csv);
    let rf = write_run_file(tmp.path(), "l.yaml", &csv, 13, 30, 300, "");
    let mut child = portflow(&state)
        .arg("run")
        .arg(&rf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    let status = run(portflow(&state).arg("status"));
    let serve = run(portflow(&state).args(["serve", "--listen", "127.0.0.1:0"]));
    let second = run(portflow(&state).arg("run").arg(&rf));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    for o in [&serve, &second] {
        assert_eq!(o.status.code(), Some(4), "{}", stderr(o));
        assert!(stderr(o).contains("hint:"), "{}", stderr(o));
    }
    assert!(
        stderr(&second).contains("portflow serve"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn outage_steps_wait_for_the_porting_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let csv = tmp.path().join("subjects.csv");
    export_subjects(&state, 21, 6, &csv);
    // New Year's night only: closed for weeks of virtual time.
    let rf = write_run_file(tmp.path(), "w.yaml", &csv, 21, 6, 6000, "");
    let text = std::fs::read_to_string(&rf).expect("rf")
        + "window: {cron: \"0 0 1 1 *\", duration: 2h, timezone: Europe/Berlin}\n";
    std::fs::write(&rf, text).expect("rf");
    let mut child = portflow(&state)
        .arg("run")
        .arg(&rf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    let id = only_run_id(&state).expect("run id");
    let v = json(&run(portflow(&state).args(["--json", "status", &id])));
    assert_eq!(v["states"]["window"], 6, "{v}");
    // Human times in the operator's zone (`--tz`), or UTC with `--utc`.
    let o =
        run(portflow(&state).args(["show", &id, "user0001@contoso.com", "--tz", "Europe/Berlin"]));
    assert!(
        stdout(&o).contains("waiting for window (opens at 2027-01-01 00:00:00 CET)"),
        "{}",
        stdout(&o)
    );
    let o = run(portflow(&state).args(["show", &id, "user0001@contoso.com", "--utc"]));
    assert!(
        stdout(&o).contains("waiting for window (opens at 2026-12-31 23:00:00 UTC)"),
        "{}",
        stdout(&o)
    );
    let o = portflow(&state)
        .args(["status", "--tz", "Mars/Olympus"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "a bad zone is bad input");
    assert!(
        stderr(&o).contains("unknown time zone `Mars/Olympus`"),
        "{}",
        stderr(&o)
    );

    // An hourly window at 6000x opens within a second: the wave completes.
    let rf2 = write_run_file(tmp.path(), "w2.yaml", &csv, 21, 6, 6000, "");
    let text = std::fs::read_to_string(&rf2).expect("rf")
        + "window: {cron: \"0 * * * *\", duration: 10m}\n";
    std::fs::write(&rf2, text).expect("rf");
    let o = run(portflow(&state).arg("--json").arg("run").arg(&rf2));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["states"]["succeeded"], 6);

    let bad = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string(&rf2)
        .expect("rf")
        .replace("0 * * * *", "0 * * * * *");
    std::fs::write(&bad, text).expect("bad");
    let o = run(portflow(&state).arg("validate").arg(&bad));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("window:"), "{}", stderr(&o));
}

#[test]
fn the_readme_validate_example_passes_on_the_repository_without_warnings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for dir in ["workflows", "examples"] {
        let mut found: Vec<_> = std::fs::read_dir(repo().join(dir))
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        found.sort();
        files.extend(found);
    }
    let o = run(portflow(&tmp.path().join("state"))
        .arg("validate")
        .args(&files));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(stdout(&o).contains("schedules.yaml: ok"), "{}", stdout(&o));
}

#[test]
fn warnings_are_printed_by_validate_plan_and_run_without_changing_the_exit_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let wf = tmp.path().join("late-check.yaml");
    write(
        &wf,
        "name: late-check\nversion: 1\nsubject: user\ninputs:\n  user: {type: upn}\n  number: {type: e164}\nsteps:\n  - id: remove\n    action:\n      op: remove_number\n      args: {user: '${inputs.user}', number: '${inputs.number}', number_type: DirectRouting}\n    wait:\n      observe: {op: get_user, args: {user: '${inputs.user}'}}\n      until: obs.line_uri == null\n      timeout: 24h\n  - id: late\n    check: {require: inputs.user != null, message: no user}\n",
    );
    let rf = tmp.path().join("run.yaml");
    write(
        &rf,
        "workflow: late-check.yaml\nbackend: {kind: sim, seed: 5, users: 3, latency: {tail_rate: 0}}\nsubjects:\n  - {user: user0002@contoso.com, number: '+14250000002'}\ntime_scale: 20000\n",
    );
    let warning = "late-check.yaml:17:5: this check could run before `remove`, which takes the number out of service";
    for (args, code) in [
        (vec!["validate".to_string(), wf.display().to_string()], 0),
        (vec!["validate".to_string(), rf.display().to_string()], 0),
        (vec!["plan".to_string(), rf.display().to_string()], 0),
        (vec!["run".to_string(), rf.display().to_string()], 0),
    ] {
        let o = run(portflow(&state).args(&args));
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line per warning: {err}");
        assert!(lines[0].ends_with(warning), "{args:?}: {err}");
    }
    // In JSON, validate lists it too.
    let o = run(portflow(&state).args(["--json", "validate"]).arg(&wf));
    let v = json(&o);
    assert!(
        v[0]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.ends_with(warning)),
        "{v}"
    );
}

#[test]
fn plan_creates_nothing_in_the_state_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = tmp.path().join("run.yaml");
    write(
        &rf,
        "workflow: direct-routing-to-operator-connect\nbackend: {kind: sim, seed: 5, users: 3}\n\
         operator: {address_mode: tenant_assigns}\n\
         subjects:\n  - {user: user0002@contoso.com, number: '+14250000002', location_id: loc-1}\n",
    );
    let o = run(portflow(&state).arg("plan").arg(&rf));
    assert!(stdout(&o).contains("nothing is changed"), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "plan created {left:?}");
}

#[test]
fn validate_and_plan_read_a_run_file_with_a_byte_order_mark_alike() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    for f in ["dr-to-oc.yaml", "dr-to-oc-users.csv"] {
        let text = std::fs::read_to_string(repo().join("examples").join(f)).expect("example");
        write(&tmp.path().join(f), &format!("\u{feff}{text}"));
    }
    let rf = tmp.path().join("dr-to-oc.yaml");
    let o = run(portflow(&state).arg("validate").arg(&rf));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(portflow(&state).arg("plan").arg(&rf));
    assert!(
        stdout(&o).contains("60 subject(s)"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_seeded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = tmp.path().join("run.yaml");
    write(
        &rf,
        "workflow: direct-routing-to-operator-connect\nbackend: {kind: sim, users: 4294967295}\n\
         operator: {address_mode: tenant_assigns}\n\
         subjects:\n  - {user: user0002@contoso.com, number: '+14250000002', location_id: loc-1}\n",
    );
    for cmd in ["validate", "plan", "run"] {
        let t0 = std::time::Instant::now();
        let o = run(portflow(&state).arg(cmd).arg(&rf));
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("run.yaml:2:29: users: at most 100000 simulated users"),
            "{cmd}: {}",
            stderr(&o)
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{cmd}");
    }
    let o = run(portflow(&state).args(["sim", "init", "--users", "4294967295"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(portflow(&state).args(["sim", "init", "--name", "../escape"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!state.join("sim").exists() && !tmp.path().join("escape").exists());
}
