//! The one exit-code rule of `run` and `resume` (docs/operations.md, "Exit
//! codes"): 0 when every subject succeeded or was stopped on request with its
//! number in service; 3 when some failed, need attention or are still blocked
//! when the command returns. Chained workflows report their outcomes apart.

mod common;

use common::*;

/// A workflow that changes a policy (undone on rollback), then waits at a gate.
const GATED: &str = r#"
name: gated-policy
version: 1
subject: user
inputs:
  user: {type: upn}
steps:
  - id: set-policy
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}", policy: Test}}
    compensate: {op: grant_voice_routing_policy, args: {user: "${inputs.user}"}}
  - id: approve
    gate: {approval: "go on"}
"#;

/// Succeeds for everyone.
const MIGRATE: &str = r#"
name: migrate-policy
version: 1
subject: user
inputs:
  user: {type: upn}
steps:
  - id: set-policy
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}", policy: Test}}
"#;

/// Refuses one user, as a chained e-mail workflow refusing a migrated user would.
const MAIL: &str = r#"
name: mail-some
version: 1
subject: user
inputs:
  user: {type: upn}
steps:
  - id: refuse-one
    check:
      require: "inputs.user != 'user0002@contoso.com'"
      message: "${inputs.user} has no conferencing"
"#;

fn setup(workflows: &[(&str, &str)], run_file: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf_dir = tmp.path().join("wf");
    std::fs::create_dir_all(&wf_dir).expect("mkdir");
    for (name, text) in workflows {
        write(&wf_dir.join(format!("{name}.yaml")), text);
    }
    let rf = tmp.path().join("run.yaml");
    write(&rf, run_file);
    (tmp, rf)
}

fn pfw(tmp: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    let state = tmp.path().join("state");
    let dir = tmp.path().join("wf");
    let mut full = vec!["--workflows", dir.to_str().unwrap_or("wf")];
    full.extend_from_slice(args);
    pf(&state, &full)
}

const SUBJECTS: &str = "subjects:\n  - {user: user0001@contoso.com}\n  - {user: user0002@contoso.com}\n  - {user: user0003@contoso.com}\n";

#[test]
fn blocked_at_a_gate_exits_3_and_rolled_back_on_request_exits_0() {
    let (tmp, rf) = setup(
        &[("gated-policy", GATED)],
        &format!(
            "workflow: gated-policy\nbackend: {{kind: sim, users: 5, seed: 3}}\n{SUBJECTS}time_scale: 600\n"
        ),
    );
    let rfs = rf.to_str().unwrap_or("run.yaml");
    let o = pfw(&tmp, &["run", rfs]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "every subject still blocked at a gate: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains("wait for a person"), "{}", stdout(&o));
    let id = only_run_id(&tmp.path().join("state")).expect("a run");
    let o = pfw(&tmp, &["cancel", &id, "--rollback"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pfw(&tmp, &["--json", "resume", &id]);
    let v = json(&o);
    assert_eq!(
        v["states"]["rolled_back"].as_u64(),
        Some(3),
        "the policy change is undone for all: {v}"
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "rolled back on request is a success state: {v}"
    );
    assert_eq!(v["outcome"]["rolled_back_on_request"], 3);
    assert_eq!(v["outcome"]["exit_code"], 0);
}

#[test]
fn a_chained_refusal_is_reported_apart_from_the_migration() {
    let (tmp, rf) = setup(
        &[("migrate-policy", MIGRATE), ("mail-some", MAIL)],
        &format!(
            "workflow: migrate-policy\nthen: [mail-some]\nbackend: {{kind: sim, users: 5, seed: 3}}\n{SUBJECTS}time_scale: 600\n"
        ),
    );
    let rfs = rf.to_str().unwrap_or("run.yaml");
    let o = pfw(&tmp, &["run", rfs]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("migrate-policy: 3 succeeded"),
        "the migration succeeded for every subject: {out}"
    );
    assert!(
        out.contains("then mail-some: 2 succeeded, 1 failed"),
        "the chained refusal is its own line: {out}"
    );
    let id = only_run_id(&tmp.path().join("state")).expect("a run");
    let o = pfw(&tmp, &["--json", "resume", &id]);
    let v = json(&o);
    assert_eq!(v["outcome"]["workflows"][0]["succeeded"], 3, "{v}");
    assert_eq!(v["outcome"]["workflows"][0]["failed"], 0, "{v}");
    assert_eq!(v["outcome"]["workflows"][1]["failed"], 1, "{v}");
    assert_eq!(o.status.code(), Some(3));
}
