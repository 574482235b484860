//! A foreground `run`/`resume` serves the daemon's local API while it holds the
//! state directory: every other command works against it with the same output
//! as offline and as through `portflow serve`; its token file is private and
//! goes away when it ends; a SIGKILL leaves nothing that breaks the next command.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::*;

/// Subjects 1–4 wait at a gate; 5–8 lose their number (an outage step) and
/// wait for the signal `ported` (the first poll is a day away).
const WORKFLOW: &str = "name: fg-probe
version: 1
description: Holds some subjects at a gate and others out of service in a wait.
subject: user
inputs:
  user: {type: upn}
  number: {type: e164}
  location_id: {type: string, optional: true}
steps:
  - id: go-ahead
    when: inputs.user <= 'user0004@contoso.com'
    gate: {approval: \"Go ahead.\"}
  - id: remove-dr-number
    when: inputs.user > 'user0004@contoso.com'
    action:
      op: remove_number
      args: {user: \"${inputs.user}\", number: \"${inputs.number}\", number_type: DirectRouting}
    wait:
      observe: {op: get_user, args: {user: \"${inputs.user}\"}}
      until: obs.line_uri == 'never'
      signal: ported
      expected: 24h
      timeout: 30d
      poll: {initial: 24h, max: 24h}
";

/// What the CLI prints for an input a live driver took.
const DRIVEN_NOTE: &str = " (taken by the run's live driver; no resume needed)";

/// Wait until `child` (a foreground run or resume) serves the API: its own
/// `daemon.json`, mode 0600, marked foreground.
fn serving(state: &Path, child: Child) -> Daemon {
    let file = state.join("daemon.json");
    let pid = u64::from(child.id());
    let doc = wait_for(20, "the foreground run's daemon.json", || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|d| d["pid"].as_u64() == Some(pid))
    });
    assert_eq!(doc["foreground"], true, "{doc}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("daemon.json")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the token file is private");
    }
    Daemon {
        addr: doc["address"].as_str().expect("address").to_string(),
        token: doc["token"].as_str().expect("token").to_string(),
        child,
    }
}

/// SIGINT (Ctrl-C) a foreground run; it stops cleanly and removes daemon.json.
fn ctrl_c(state: &Path, fg: Daemon) {
    assert_eq!(interrupt(fg.child), Some(130));
    assert!(
        !state.join("daemon.json").exists(),
        "daemon.json is removed when the run ends"
    );
}

/// Stop the run's virtual clock where it is, so that the durations and "now"
/// every view prints are the same whenever it is asked (the run is stopped).
fn freeze_clock(state: &Path, id: &str) {
    use portflow::clock::Clock;
    use portflow::store::{records, Batch, Store};
    let store = portflow::store::sled_store::SledStore::open(&state.join("engine"))
        .expect("open engine store");
    let mut record = records::get_run(&store, id)
        .expect("read run")
        .expect("run exists");
    let now = record.clock.expect("a scaled run").now();
    record.clock = Some(frozen_clock(now.0));
    let mut b = Batch::default();
    records::put_run(&mut b, &record).expect("our records encode");
    store.apply(&b).expect("write");
    store.sync().expect("sync");
}

/// Every read-only view the test compares, with its exit code.
fn views(state: &Path, id: &str, gate: &str, down: &str) -> Vec<(String, i32, String)> {
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", id],
        vec!["show", id, gate],
        vec!["show", id, down],
        vec!["outages", id],
        vec!["outages", id, "--csv"],
        vec!["--json", "status", id],
        vec!["--json", "show", id, down],
        vec!["--json", "outages", id],
    ];
    commands
        .into_iter()
        .map(|args| {
            let o = pf(state, &args);
            (args.join(" "), o.status.code().unwrap_or(-1), stdout(&o))
        })
        .collect()
}

fn assert_same(what: &str, a: &[(String, i32, String)], b: &[(String, i32, String)]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.1, 0, "{}: exit {}", x.0, x.1);
        assert_eq!(x, y, "{what}: `{}` differs", x.0);
    }
}

/// `approve` one gate subject and `signal` one waiting subject; what they print.
fn operate(state: &Path, id: &str, gate: &str, down: &str) -> (String, String) {
    let a = pf(
        state,
        &["approve", id, "--step", "go-ahead", "--subject", gate],
    );
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    let s = pf(state, &["signal", id, down, "ported"]);
    assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
    (stdout(&a), stdout(&s))
}

fn state_of(state: &Path, id: &str, subject: &str) -> String {
    let (code, v) = pf_json(state, &["show", id, subject]);
    assert_eq!(code, 0, "{v}");
    // `running` names its phase: `waiting`, `blocked`, …
    let status = &v["instance"]["status"];
    let state = status["state"].as_str().unwrap_or_default();
    match status["phase"]["phase"].as_str() {
        Some(phase) if state == "running" => phase.to_string(),
        _ => state.to_string(),
    }
}

#[test]
fn commands_print_the_same_offline_through_serve_and_through_a_foreground_run() {
    let lab = Lab::new();
    let state = lab.state.clone();
    let csv = lab.path("subjects.csv");
    export_subjects(&state, 7, 8, &csv);
    write(&lab.path("fg-probe.yaml"), WORKFLOW);
    let rf = lab.path("fg.yaml");
    write(
        &rf,
        &format!(
            "workflow: fg-probe.yaml\n\
             backend:\n  kind: sim\n  seed: 7\n  users: 8\n  latency: {{min: 0s, typical_max: 0s, tail_rate: 0}}\n\
             subjects: {{csv: {}}}\n\
             concurrency: 10\n\
             time_scale: 0.01\n",
            csv.display()
        ),
    );
    let rf = rf.to_str().expect("path");

    // 1. A foreground `run` serves the API: status works through it while it
    //    holds the store, until every subject waits at the gate or in the wait.
    let fg = serving(&state, spawn_pf(&state, &["run", rf]));
    let id = wait_for(20, "the run", || only_run_id(&state));
    wait_for(30, "subjects at the gate and in the wait", || {
        let (code, v) = pf_json(&state, &["status", &id]);
        assert_eq!(code, 0, "{v}");
        let n = |s: &str| v["states"][s].as_u64().unwrap_or(0);
        (n("blocked") == 4 && n("waiting") + n("failed") == 4 && n("waiting") >= 3).then_some(())
    });
    ctrl_c(&state, fg);
    freeze_clock(&state, &id);
    let gates: Vec<String> = (1..=4).map(|i| format!("user{i:04}@contoso.com")).collect();
    let downs: Vec<String> = (5..=8)
        .map(|i| format!("user{i:04}@contoso.com"))
        .filter(|u| state_of(&state, &id, u) == "waiting")
        .collect();
    assert!(downs.len() >= 3, "{downs:?}");
    let (gate, down) = (gates[0].as_str(), downs[0].as_str());

    // 2. Through a live foreground `resume`; then SIGKILL it: its stale
    //    daemon.json stays, and every command works offline regardless.
    let fg = serving(&state, spawn_pf(&state, &["resume", &id]));
    let through_fg = views(&state, &id, gate, down);
    kill_daemon(fg);
    assert!(state.join("daemon.json").exists(), "a SIGKILL leaves it");
    let offline = views(&state, &id, gate, down);
    assert_same("offline vs foreground", &offline, &through_fg);

    // 3. The next foreground `resume` replaces the stale file and serves again.
    let fg = serving(&state, spawn_pf(&state, &["resume", &id]));
    assert_same(
        "foreground after a SIGKILL",
        &views(&state, &id, gate, down),
        &offline,
    );
    // It drives only its own run: the daemon cannot start beside it.
    let o = pf(&state, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    ctrl_c(&state, fg);

    // 4. Through `portflow serve`.
    let d = start_daemon(&state, &[]);
    let through_serve = views(&state, &id, gate, down);
    assert_same("serve vs offline", &through_serve, &offline);

    // 5. An approval and a signal each way, each to subjects of its own.
    let served = operate(&state, &id, &gates[0], &downs[0]);
    wait_for(30, "the daemon's driver to apply them", || {
        (state_of(&state, &id, &gates[0]) == "succeeded"
            && state_of(&state, &id, &downs[0]) == "succeeded")
            .then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));
    let stored = operate(&state, &id, &gates[1], &downs[1]);
    let fg = serving(&state, spawn_pf(&state, &["resume", &id]));
    let driven = operate(&state, &id, &gates[2], &downs[2]);
    let line = |verb: &str| format!("{verb}: 1 instance(s) of run {id} changed, 0 not applicable");
    let live = (
        format!("{}{DRIVEN_NOTE}\n", line("approved")),
        format!("{}{DRIVEN_NOTE}\n", line("signalled")),
    );
    assert_eq!(served, live, "through serve");
    assert_eq!(driven, live, "through the foreground run: the same");
    // Offline only the note differs: nothing drives the run until a resume.
    let resume = format!("continue with: portflow resume {id}\n");
    assert_eq!(
        stored,
        (
            format!("{}\n{resume}", line("approved")),
            format!("{}\n{resume}", line("signalled")),
        ),
        "offline"
    );

    // 6. Once only the last gate is left, the foreground run ends by itself
    //    (exit 3: someone waits for a person) and removes daemon.json.
    for d in &downs[3..] {
        let o = pf(&state, &["signal", &id, d, "ported"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let mut child = fg.child;
    let status = wait_for(30, "the foreground run to end by itself", || {
        child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(3), "{status}");
    assert!(!state.join("daemon.json").exists(), "removed at the end");
    let (_, v) = pf_json(&state, &["status", &id]);
    assert_eq!(v["states"]["blocked"], 1, "{v}");
    for u in gates[..3].iter().chain(&downs) {
        assert_eq!(state_of(&state, &id, u), "succeeded", "{u}");
    }
}

#[test]
fn a_foreground_run_refuses_to_start_another_and_says_where_to() {
    let lab = Lab::new();
    let state = lab.state.clone();
    let csv = lab.path("subjects.csv");
    export_subjects(&state, 13, 30, &csv);
    let rf = write_run_file(&lab.path(""), "l.yaml", &csv, 13, 30, 300, "");
    let fg = serving(
        &state,
        spawn_pf(&state, &["run", rf.to_str().expect("path")]),
    );
    let o = pf(&state, &["run", rf.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("drives only run") && stderr(&o).contains("portflow serve"),
        "{}",
        stderr(&o)
    );
    let (code, v) = http(&fg.addr, "GET", "/api/schedules", Some(&fg.token), "");
    assert_eq!(code, 200, "{v}");
    ctrl_c(&state, fg);
    std::thread::sleep(Duration::from_millis(10));
}
