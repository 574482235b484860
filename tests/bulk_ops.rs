//! Operator commands through the real binary: run ids abbreviated to a unique
//! prefix, `signal` and `approve` for many subjects at once, `cancel --by`,
//! `retry --set`.
#![allow(clippy::disallowed_methods)] // drives real processes on real time

mod common;

use common::*;

/// A workflow that only waits for people: an approval gate, then a manual task
/// (signal `done`). Nothing calls the backend, so runs block at once.
const WORKFLOW: &str = "name: bulk-ops-test\nversion: 1\nsubject: user\ninputs:\n  \
    user: {type: upn}\n  number: {type: e164, optional: true}\nsteps:\n  \
    - id: go-ahead\n    gate: {approval: the wave may start}\n  \
    - id: confirm\n    manual: {instructions: \"confirm ${inputs.user} by hand\"}\n";

/// Subjects `u1@contoso.com` … `u<n>@contoso.com`.
fn subjects(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("u{i}@contoso.com")).collect()
}

/// Write the workflow and a run file of `n` subjects; returns the run file.
fn run_file(lab: &Lab, name: &str, n: usize) -> String {
    let wf = lab.path("bulk-wf.yaml");
    write(&wf, WORKFLOW);
    let csv = lab.path(&format!("{name}.csv"));
    let mut rows = String::from("user,number\n");
    for (i, s) in subjects(n).iter().enumerate() {
        rows.push_str(&format!("{s},+1425555{:04}\n", i + 1));
    }
    write(&csv, &rows);
    let path = lab.path(&format!("{name}.yaml"));
    write(
        &path,
        &format!(
            "workflow: {}\nbackend:\n  kind: sim\n  seed: 1\n  users: 5\nsubjects: {{csv: {}}}\nconcurrency: 10\n",
            wf.display(),
            csv.display()
        ),
    );
    path.to_string_lossy().into_owned()
}

/// Start a run of `n` subjects; it ends with every instance blocked at the
/// gate (exit 3). Returns its id.
fn blocked_run(lab: &Lab, name: &str, n: usize) -> String {
    let rf = run_file(lab, name, n);
    let (code, doc) = pf_json(&lab.state, &["run", &rf]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["states"]["blocked"], n, "{doc}");
    doc["run"].as_str().expect("run id").to_string()
}

/// Where `subject`'s instance is: its state and, when running, its step index.
fn state_of(state: &std::path::Path, run: &str, subject: &str) -> (String, Option<u64>) {
    let (code, v) = pf_json(state, &["show", run, subject]);
    assert_eq!(code, 0, "{v}");
    phase_and_step(&v["instance"]["status"])
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[test]
fn run_ids_may_be_abbreviated_to_a_unique_prefix_here_and_through_the_daemon() {
    let lab = Lab::new();
    let a = blocked_run(&lab, "a", 2);
    let b = blocked_run(&lab, "b", 2);
    let shared = common_prefix(&a, &b);
    assert!(shared.len() >= 2, "{a} {b}");
    let short_a = &a[..shared.len() + 1];

    let (code, v) = pf_json(&lab.state, &["status", short_a]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["run"], a.as_str());
    let o = pf(&lab.state, &["show", short_a, "u1@contoso.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("run {a}")), "{}", stdout(&o));
    let o = pf(&lab.state, &["outages", short_a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The run's own simulated tenant, named by its full id.
    let o = pf(&lab.state, &["sim", "log", short_a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Ambiguous: exit 2, both candidates and a hint; nothing changed.
    let o = pf(&lab.state, &["approve", &shared, "--by", "ops"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("run id prefix {shared:?} matches 2 runs"))
            && err.contains(&a)
            && err.contains(&b),
        "{err}"
    );
    assert!(
        err.contains("hint: give more characters of the run id"),
        "{err}"
    );
    assert_eq!(state_of(&lab.state, &a, "u1@contoso.com").0, "blocked");
    // Unknown: the usual not-found error.
    let o = pf(
        &lab.state,
        &["cancel", "1999", "--subject", "u1@contoso.com"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no run \"1999\""), "{}", stderr(&o));

    // A stopped run takes inputs by prefix, and so does resume.
    let o = pf(
        &lab.state,
        &["approve", short_a, "--subject", "u1@contoso.com"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("of run {a} changed")),
        "{}",
        stdout(&o)
    );
    let (code, v) = pf_json(&lab.state, &["resume", short_a]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(state_of(&lab.state, &a, "u1@contoso.com").1, Some(1));

    // Through the daemon, which holds the store: the same.
    let d = start_daemon(&lab.state, &[]);
    let short_b = &b[..shared.len() + 1];
    let (code, v) = pf_json(&lab.state, &["status", short_b]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["run"], b.as_str());
    let o = pf(&lab.state, &["signal", short_a, "u1@contoso.com", "done"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pf(&lab.state, &["status", &shared]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("matches 2 runs"), "{}", stderr(&o));
    wait_for(10, "u1 to finish", || {
        (state_of(&lab.state, &a, "u1@contoso.com").0 == "succeeded").then_some(())
    });
    assert_eq!(stop_daemon(d), Some(0));
}

#[test]
fn approve_and_signal_many_subjects_from_a_file_or_all_waiting_at_a_step() {
    let lab = Lab::new();
    let id = blocked_run(&lab, "w", 4);
    let at = |s: &str| state_of(&lab.state, &id, s);
    let list = lab.path("list.csv");
    let list_s = list.to_string_lossy().into_owned();

    // A CSV's `user` column; comments and blank lines are skipped.
    write(
        &list,
        "# wave 7, first half\nnumber,user\n\n+14255550001,u1@contoso.com\n+14255550002,u2@contoso.com\n",
    );
    let o = pf(
        &lab.state,
        &["approve", &id, "--subjects", &list_s, "--by", "lead"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("approved: u1@contoso.com\napproved: u2@contoso.com\n")
            && out.contains(&format!("run {id}: 2 approved\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("continue with: portflow resume {id}")),
        "{out}"
    );
    assert_eq!(at("u3@contoso.com"), ("blocked".into(), Some(0)));

    // A bad line, or a subject the run does not have: exit 2, nothing applied.
    write(&list, "u3@contoso.com\n\nu4@contoso.com,u1@contoso.com\n");
    let o = pf(&lab.state, &["approve", &id, "--subjects", &list_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{list_s}:3:15: a comma in a list")),
        "{}",
        stderr(&o)
    );
    write(&list, "u3@contoso.com\n# typo next\nu9@contoso.com\n");
    let o = pf(&lab.state, &["approve", &id, "--subjects", &list_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{list_s}:3:1: run {id} has no subject \"u9@contoso.com\""
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(at("u3@contoso.com"), ("blocked".into(), Some(0)));

    // Every instance waiting at the gate: the two left.
    let (code, v) = pf_json(&lab.state, &["approve", &id, "--all-waiting", "go-ahead"]);
    assert_eq!(code, 0, "{v}");
    let names: Vec<&str> = v["subjects"]
        .as_array()
        .expect("subjects")
        .iter()
        .filter(|s| s["outcome"] == "changed")
        .filter_map(|s| s["subject"].as_str())
        .collect();
    assert_eq!(names, ["u3@contoso.com", "u4@contoso.com"], "{v}");
    let o = pf(&lab.state, &["approve", &id, "--all-waiting", "go-ahead"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "nothing approved: no instance of run {id} waits at gate \"go-ahead\""
        )),
        "{}",
        stderr(&o)
    );
    let (code, v) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["states"]["blocked"], 4, "all at the manual task: {v}");

    // An unknown step names the run's steps.
    let o = pf(
        &lab.state,
        &["signal", &id, "done", "--all-waiting", "nope"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no step \"nope\"")
            && stderr(&o).contains("hint: its steps: go-ahead, confirm"),
        "{}",
        stderr(&o)
    );
    // The subject, --subjects and --all-waiting exclude one another.
    let o = pf(
        &lab.state,
        &[
            "signal",
            &id,
            "u1@contoso.com",
            "done",
            "--all-waiting",
            "confirm",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Some not waiting: the others are signalled, exit 3.
    let o = pf(&lab.state, &["signal", &id, "u1@contoso.com", "done"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    write(&list, "u1@contoso.com\nu2@contoso.com\n");
    let o = pf(
        &lab.state,
        &["signal", &id, "done", "--subjects", &list_s, "--by", "tech"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "signalled: u2@contoso.com\nrun {id}: 1 signalled, 1 not waiting (u1@contoso.com)\n"
        )),
        "{}",
        stdout(&o)
    );
    // None waiting: exit 1.
    let o = pf(&lab.state, &["signal", &id, "done", "--subjects", &list_s]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 signalled, 2 not waiting"),
        "{}",
        stdout(&o)
    );
    let (_, v) = pf_json(&lab.state, &["show", &id, "u2@contoso.com"]);
    let by_tech = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["event"] == "signal_received" && e["by"] == "tech");
    assert!(by_tech, "the sender is in the history: {v}");

    // Through the daemon: its driver takes them; the same checks on the file.
    let d = start_daemon(&lab.state, &[]);
    write(&list, "u3@contoso.com\nnobody@contoso.com\n");
    let o = pf(&lab.state, &["signal", &id, "done", "--subjects", &list_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{list_s}:2:1: run {id} has no subject")),
        "{}",
        stderr(&o)
    );
    let o = pf(
        &lab.state,
        &["signal", &id, "done", "--all-waiting", "confirm"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("signalled: u3@contoso.com\nsignalled: u4@contoso.com\n")
            && out.contains("2 signalled (taken by the run's live driver; no resume needed)"),
        "{out}"
    );
    wait_for(10, "every subject to finish", || {
        let (_, v) = pf_json(&lab.state, &["status", &id]);
        (v["states"]["succeeded"] == 4).then_some(())
    });
    let o = pf(
        &lab.state,
        &["signal", &id, "done", "--all-waiting", "confirm"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("waits at step \"confirm\" for signal \"done\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(stop_daemon(d), Some(0));
}

#[test]
fn cancel_records_who_cancelled_and_show_says_so() {
    let lab = Lab::new();
    let id = blocked_run(&lab, "c", 2);
    let o = pf(
        &lab.state,
        &[
            "cancel",
            &id,
            "--subject",
            "u1@contoso.com",
            "--by",
            "ops-lead",
            "--reason",
            "wave postponed",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, v) = pf_json(&lab.state, &["show", &id, "u1@contoso.com"]);
    let last = v["events"]
        .as_array()
        .and_then(|e| e.last().cloned())
        .unwrap_or_default();
    assert_eq!(last["event"], "cancelled", "{v}");
    assert_eq!(last["by"], "ops-lead", "{v}");
    assert_eq!(last["reason"], "wave postponed", "{v}");
    let o = pf(&lab.state, &["show", &id, "u1@contoso.com"]);
    let out = stdout(&o);
    assert!(
        out.contains("state: cancelled by ops-lead: wave postponed") && out.contains("by=ops-lead"),
        "{out}"
    );

    // Through the daemon, without --by: $USER is recorded.
    let d = start_daemon(&lab.state, &[]);
    let o = run(portflow(&lab.state).env("USER", "night-shift").args([
        "cancel",
        &id,
        "--subject",
        "u2@contoso.com",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stop_daemon(d), Some(0));
    let o = pf(&lab.state, &["show", &id, "u2@contoso.com"]);
    assert!(
        stdout(&o).contains("state: cancelled by night-shift: cancelled by the operator"),
        "{}",
        stdout(&o)
    );
}

/// A workflow that refuses a subject without a number, then waits for a
/// person to port it: the manual task's text shows the number it uses.
const AMEND_WORKFLOW: &str = "name: amend-test\nversion: 1\nsubject: user\ninputs:\n  \
    user: {type: upn}\n  number: {type: e164, optional: true}\n  \
    mode: {type: string, optional: true, values: [fast, careful]}\nsteps:\n  \
    - id: has-number\n    check: {require: \"inputs.number != null\", message: \"${inputs.user} has no number\"}\n  \
    - id: confirm\n    manual: {instructions: \"port ${inputs.number} by hand\"}\n";

#[test]
fn retry_set_amends_an_input_in_the_history_and_the_retry_uses_it() {
    let lab = Lab::new();
    let wf = lab.path("amend-wf.yaml");
    write(&wf, AMEND_WORKFLOW);
    let csv = lab.path("amend.csv");
    write(
        &csv,
        "user,number\nu1@contoso.com,+14255550001\nu2@contoso.com,\nu3@contoso.com,\n",
    );
    let rf = lab.path("amend.yaml");
    write(
        &rf,
        &format!(
            "workflow: {}\nbackend:\n  kind: sim\n  seed: 1\n  users: 5\nsubjects: {{csv: {}}}\nconcurrency: 10\n",
            wf.display(),
            csv.display()
        ),
    );
    let (code, doc) = pf_json(&lab.state, &["run", &rf.to_string_lossy()]);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["states"]["failed"], 2, "u2 and u3 are refused: {doc}");
    let id = doc["run"].as_str().expect("run id").to_string();
    let show = |s: &str| pf_json(&lab.state, &["show", &id, s]).1;
    let hash = show("u2@contoso.com")["workflow"]["hash"].clone();

    // Refused, nothing changed: a value the run file would refuse, an unknown
    // input, the subject itself, several subjects.
    for (args, says) in [
        (vec!["--set", "number=12"], "`12` is not an E.164 number"),
        (
            vec!["--set", "mode=reckless"],
            "`reckless` is not a value of input `mode`",
        ),
        (
            vec!["--set", "numbr=+14255550002"],
            "workflow amend-test has no input `numbr`",
        ),
        (
            vec!["--set", "user=x@contoso.com"],
            "input `user` is the subject",
        ),
        (vec!["--set", "number"], "expected INPUT=VALUE"),
    ] {
        let mut full = vec!["retry", &id, "--subject", "u2@contoso.com"];
        full.extend(args);
        let o = pf(&lab.state, &full);
        assert_eq!(o.status.code(), Some(2), "{full:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{full:?}: {}", stderr(&o));
    }
    let o = pf(&lab.state, &["retry", &id, "--set", "number=+14255550002"]);
    assert_eq!(o.status.code(), Some(2), "needs --subject: {}", stderr(&o));
    let v = show("u2@contoso.com");
    assert_eq!(v["instance"]["status"]["state"], "failed", "{v}");
    assert!(v["instance"]["inputs"]["number"].is_null(), "{v}");

    let o = pf(
        &lab.state,
        &[
            "retry",
            &id,
            "--subject",
            "u2@contoso.com",
            "--set",
            "number=+14255550002",
            "--set",
            "mode=careful",
            "--by",
            "lead",
            "--reason",
            "missing in the CSV",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = show("u2@contoso.com");
    assert_eq!(v["instance"]["inputs"]["number"], "+14255550002", "{v}");
    assert_eq!(
        v["workflow"]["hash"], hash,
        "the pinned workflow stays: {v}"
    );
    let amended: Vec<&serde_json::Value> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "input_amended")
        .collect();
    assert_eq!(amended.len(), 2, "{v}");
    let number = amended
        .iter()
        .find(|e| e["input"] == "number")
        .expect("number amended");
    assert!(number["old"].is_null(), "{number}");
    assert_eq!(number["new"], "+14255550002");
    assert_eq!(number["by"], "lead");
    assert_eq!(number["reason"], "missing in the CSV");
    let (code, v) = pf_json(&lab.state, &["resume", &id]);
    assert_eq!(code, 3, "{v}");
    let st = &show("u2@contoso.com")["instance"]["status"];
    assert_eq!(st["phase"]["gate"], "port +14255550002 by hand", "{st}");

    let o = pf(
        &lab.state,
        &[
            "retry",
            &id,
            "--subject",
            "u1@contoso.com",
            "--set",
            "number=+14255550009",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "u1 is not stopped, so nothing is amended: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("no input was amended"),
        "{}",
        stderr(&o)
    );
    // Through the daemon: the same, taken by its driver.
    let d = start_daemon(&lab.state, &[]);
    let o = pf(
        &lab.state,
        &[
            "retry",
            &id,
            "--subject",
            "u3@contoso.com",
            "--set",
            "number=+14255550003",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("taken by the run's live driver"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stop_daemon(d), Some(0));
    let v = show("u3@contoso.com");
    assert_eq!(
        v["instance"]["status"]["phase"]["gate"], "port +14255550003 by hand",
        "{v}"
    );
    assert_eq!(
        show("u1@contoso.com")["instance"]["inputs"]["number"],
        "+14255550001"
    );
}
