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
    let st = &v["instance"]["status"];
    (
        st["phase"]["phase"]
            .as_str()
            .or(st["state"].as_str())
            .unwrap_or_default()
            .to_string(),
        st["step"].as_u64(),
    )
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
