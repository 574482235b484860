//! Safe waves end to end on the shipped Direct Routing → Operator Connect
//! workflow: the out-of-service budget holds, who is down is visible everywhere,
//! and failures after an outage open the circuit breaker.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Peak number of subjects out of service at once, from `outages --json` spans
/// (open ones have no end).
fn peak_from_spans(v: &serde_json::Value) -> i64 {
    let ms = |s: &serde_json::Value| {
        s.as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
    };
    let mut edges: Vec<(i64, i64)> = Vec::new();
    for e in v["ended"].as_array().into_iter().flatten() {
        if let (Some(a), Some(b)) = (ms(&e["start"]), ms(&e["end"])) {
            edges.push((a, 1));
            edges.push((b, -1));
        }
    }
    for e in v["down"].as_array().into_iter().flatten() {
        if let Some(a) = ms(&e["start"]) {
            edges.push((a, 1));
        }
    }
    edges.sort();
    let (mut n, mut peak) = (0, 0);
    for (_, d) in edges {
        n += d;
        peak = peak.max(n);
    }
    peak
}

/// The shipped example with its CSV path made absolute and time sped up.
fn example_copy(dir: &Path, scale: u32) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/dr-to-oc.yaml")).expect("example");
    let csv = repo().join("examples/dr-to-oc-users.csv");
    let text = text
        .replace(
            "csv: dr-to-oc-users.csv",
            &format!("csv: {}", csv.display()),
        )
        .replace("time_scale: 600", &format!("time_scale: {scale}"));
    assert!(text.contains("max_out_of_service: 20"), "{text}");
    let path = dir.join("dr-to-oc.yaml");
    write(&path, &text);
    path
}

#[test]
fn the_dr_to_oc_example_never_has_more_than_20_out_of_service() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = example_copy(tmp.path(), 6000);
    let o = pf(&state, &["--json", "run", rf.to_str().expect("utf-8")]);
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{v}");
    assert_eq!(v["states"]["succeeded"], 200, "{v}");
    let id = v["run"].as_str().expect("run id").to_string();
    let (code, out) = pf_json(&state, &["outages", &id]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["down"].as_array().map(Vec::len), Some(0), "{out}");
    assert_eq!(out["ended"].as_array().map(Vec::len), Some(200), "{out}");
    let peak = peak_from_spans(&out);
    eprintln!("peak out of service at once: {peak}");
    assert!(peak <= 20, "peak {peak} > max_out_of_service 20");
    assert_eq!(
        peak, 20,
        "200 users wanted to go at once: the budget was full"
    );
    assert!(
        out["summary"]["peak"]["count"]
            .as_i64()
            .is_some_and(|p| p <= 20),
        "{out}"
    );
    // Those beyond the budget waited in the held phase.
    let insts = instances_with_events(&state, &id);
    let held = insts
        .values()
        .filter(|(_, ev)| {
            ev.iter()
                .any(|e| matches!(e.kind, portflow::engine::instance::EventKind::Held { .. }))
        })
        .count();
    assert!(held >= 150, "held: {held}");
}

/// A run file of the shipped DR → OC workflow with its operator-upload wait
/// cut to 3 hours (a copy, named by path), on a tenant whose operator never uploads.
fn never_uploaded(dir: &Path, extra: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(repo().join("workflows/direct-routing-to-operator-connect.yaml"))
            .expect("workflow");
    assert!(text.contains("timeout: 14d"));
    write(
        &dir.join("dr-short-upload.yaml"),
        &text.replace("timeout: 14d", "timeout: 3h"),
    );
    let state = dir.join("state");
    let csv = dir.join("subjects.csv");
    export_subjects(&state, 5, 10, &csv);
    let rf = dir.join("wave.yaml");
    write(
        &rf,
        &format!(
            "workflow: dr-short-upload.yaml\n\
             backend:\n  kind: sim\n  seed: 5\n  users: 10\n  latency: {{tail_rate: 0}}\n  dirsync_interval: 10m\n  operator_upload_delay: {{min: 30d, max: 31d}}\n\
             operator: {{address_mode: tenant_assigns}}\n\
             subjects: {{csv: {}}}\n\
             approvals: [operator-coordinated]\n\
             max_out_of_service: 4\n\
             time_scale: 6000\n{extra}",
            csv.display()
        ),
    );
    rf
}

#[test]
fn subjects_stuck_out_of_service_show_everywhere_and_hold_the_budget() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = never_uploaded(tmp.path(), "on_failure: stop\n");
    let o = pf(&state, &["run", rf.to_str().expect("utf-8")]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{}", stderr(&o));
    assert!(
        text.contains("6 instance(s) held before an outage step"),
        "the stuck ones keep the budget full: {text}"
    );
    let id = only_run_id(&state).expect("run");

    let out = pf_json(&state, &["outages", &id]).1;
    let down = out["down"].as_array().cloned().unwrap_or_default();
    assert_eq!(down.len(), 4, "{out}");
    assert!(
        down.iter()
            .all(|d| d["state"] == "failed" && d["stuck"] == true),
        "{out}"
    );
    assert!(
        down.iter()
            .all(|d| d["duration_s"].as_f64().is_some_and(|s| s >= 3.0 * 3600.0)),
        "down for at least the 3 h wait, at the run's clock: {out}"
    );
    assert!(
        down.iter()
            .all(|d| d["duration_s"].as_f64().is_some_and(|s| s < 12.0 * 86400.0)),
        "the 3 h copy of the workflow ran, not the 14 d one: {out}"
    );

    let o = pf(&state, &["status", &id]);
    assert!(
        stdout(&o).contains("out of service now: 4"),
        "{}",
        stdout(&o)
    );
    let user = down[0]["subject"].as_str().expect("subject").to_string();
    let o = pf(&state, &["show", &id, &user]);
    assert!(
        stdout(&o).contains("out of service since"),
        "{}",
        stdout(&o)
    );

    // The tenant's own view agrees, at its own clock: 4 ongoing, not "0 ms".
    let o = pf(&state, &["--json", "sim", "outages", &id]);
    let v = json(&o);
    let list = v.as_array().cloned().unwrap_or_default();
    let ongoing: Vec<&serde_json::Value> = list.iter().filter(|o| o["end"].is_null()).collect();
    assert_eq!(ongoing.len(), 4, "{v}");
    assert!(
        ongoing.iter().all(|o| o["duration_ms"]
            .as_u64()
            .is_some_and(|d| d >= 3 * 3600 * 1000)),
        "{v}"
    );
}

#[test]
fn failures_after_going_out_of_service_open_the_breaker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    // The workflow's own policy rolls back: the numbers come back, the failures count.
    let rf = never_uploaded(tmp.path(), "stop_after_failures: 3\n");
    let o = pf(&state, &["run", rf.to_str().expect("utf-8")]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{}", stderr(&o));
    assert!(
        text.contains("circuit breaker paused new outages"),
        "{text}"
    );
    let id = only_run_id(&state).expect("run");
    let record = run_record(&state, &id);
    let trip = record.breaker.tripped.expect("tripped");
    assert!(trip.failures >= 3 && trip.threshold == 3, "{trip:?}");

    let o = pf(&state, &["status", &id]);
    assert!(stdout(&o).contains("paused"), "{}", stdout(&o));
    let out = pf_json(&state, &["outages", &id]).1;
    assert_eq!(
        out["down"].as_array().map(Vec::len),
        Some(0),
        "rolled back: {out}"
    );
    let ended = out["ended"].as_array().cloned().unwrap_or_default();
    assert!(
        ended.iter().all(|e| e["restored_by"]
            .as_str()
            .is_some_and(|r| r.ends_with("(undo)"))),
        "{out}"
    );
    // Nobody was let into an outage step once the breaker had opened: every
    // outage action's intent (recorded when the place was given) predates it.
    let insts = instances_with_events(&state, &id);
    for (u, (_, events)) in &insts {
        for e in events {
            if let portflow::engine::instance::EventKind::ActionIntent { step, key, .. } = &e.kind {
                let forward = !key.contains("/undo/");
                if forward && (step == "remove-dr-number" || step == "clear-onprem-line-uri") {
                    assert!(e.at <= trip.at, "{u}: {step} started after the trip");
                }
            }
        }
    }
    let insts = instances_with_events(&state, &id);
    let held = insts
        .values()
        .filter(|(i, _)| i.status.name() == "held")
        .count();
    assert_eq!(
        held + ended.len(),
        10,
        "the others wait at their outage step: {out}"
    );
    assert!(held >= 4, "held: {held}");
    // The tenant agrees: as many outages, all ended (on-premises rollbacks too).
    let o = pf(&state, &["--json", "sim", "outages", &id]);
    let v = json(&o);
    let list = v.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), ended.len(), "{v}");
    assert!(list.iter().all(|o| !o["end"].is_null()), "{v}");
}

#[test]
fn the_daemon_pauses_on_the_breaker_and_continues_on_an_api_call() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let rf = never_uploaded(tmp.path(), "stop_after_failures: 3\n");
    let daemon = start_daemon(&state, &[]);
    let (addr, token) = (daemon.addr.clone(), daemon.token.clone());
    let body = format!("{{\"run_file\": {:?}}}", rf.to_str().expect("utf-8"));
    let (code, v) = http(&addr, "POST", "/api/runs", Some(&token), &body);
    assert_eq!(code, 200, "{v}");
    let id = v["run"].as_str().expect("run id").to_string();
    let run_path = format!("/api/runs/{id}");
    // The daemon keeps the run going; it pauses by itself.
    let paused = wait_for(60, "the breaker to open", || {
        let (_, v) = http(&addr, "GET", "/api/runs", Some(&token), "");
        let run = v["runs"]
            .as_array()?
            .iter()
            .find(|r| r["run"] == id.as_str())?
            .clone();
        run["paused"].is_object().then_some(run)
    });
    assert_eq!(paused["paused"]["threshold"], 3, "{paused}");
    let (_, r) = http(&addr, "GET", &run_path, Some(&token), "");
    assert_eq!(r["active"], true, "{r}");
    let held_before = r["states"]["held"].as_u64().unwrap_or(0);
    assert!(held_before >= 4, "{r}");

    let (code, v) = http(
        &addr,
        "POST",
        &format!("/api/runs/{id}/continue"),
        Some(&token),
        "{\"by\": \"night-lead\"}",
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["accepted"].as_u64().is_some_and(|n| n >= 3), "{v}");
    // Held subjects go out of service again (and fail the same way).
    wait_for(60, "held subjects to start again", || {
        let (_, r) = http(&addr, "GET", &run_path, Some(&token), "");
        let held = r["states"]["held"].as_u64().unwrap_or(0);
        (held < held_before).then_some(())
    });
    assert_eq!(stop_daemon(daemon), Some(0));
    let record = run_record(&state, &id);
    assert_eq!(record.breaker.continued.len(), 1, "{:?}", record.breaker);
    assert_eq!(record.breaker.continued[0].by, "night-lead");
}
