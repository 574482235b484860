//! End-to-end tests of the spec layer: shipped files validate; bad inputs yield
//! the expected message at the expected position.

use std::path::{Path, PathBuf};

use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small valid workflow; line numbers matter to the tests below.
const BASE: &str = "\
name: demo
version: 1
subject: user
inputs:
  user: {type: upn}
  number: {type: e164}
  loc: {type: string, optional: true}
steps:
  - id: inspect
    action:
      op: get_user
      args:
        user: ${inputs.user}
  - id: remove
    when: steps.inspect.output.line_uri != null
    action:
      op: remove_number
      args:
        user: ${inputs.user}
        number: ${inputs.number}
        number_type: DirectRouting
    wait:
      observe:
        op: get_user
        args: {user: '${inputs.user}'}
      until: obs.line_uri == null
      timeout: 24h
";

fn errs(text: &str) -> Vec<Diagnostic> {
    match parse_workflow(text, "w.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics,
    }
}

/// Replace `from` (which must occur) with `to` in BASE.
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn expect(diags: &[Diagnostic], line: usize, col: usize, msg: &str) {
    assert!(
        diags
            .iter()
            .any(|d| d.line == line && d.col == col && d.message.contains(msg)),
        "expected {line}:{col} {msg:?}, got:\n{}",
        diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn base_is_valid() {
    let w = parse_workflow(BASE, "w.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.workflow.steps.len(), 2);
    assert_eq!(w.hash.len(), 64);
    assert_eq!(w.hash, load::sha256_hex(BASE));
}

#[test]
fn shipped_workflow_validates() {
    let p = root().join("workflows/direct-routing-to-operator-connect.yaml");
    let w = load_workflow(&p).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = w.workflow.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "operator-coordinated",
            "inspect",
            "check-teams-only",
            "check-phone-system",
            "check-number",
            "clear-onprem-line-uri",
            "remove-dr-number",
            "remove-voice-routing-policy",
            "wait-operator-upload",
            "assign-oc-number",
            "verify-user",
        ]
    );
    assert_eq!(w.workflow.subject, "user");
    // The built-in copy is the same text.
    for name in builtin::names() {
        let text = builtin::workflow_text(name).unwrap_or_default();
        let b = parse_workflow(text, &builtin::origin(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.workflow.name, name);
    }
    assert_eq!(
        builtin::workflow_text("direct-routing-to-operator-connect").map(load::sha256_hex),
        Some(w.hash)
    );
}

#[test]
fn shipped_workflow_conditions_behave() {
    use serde_json::json;
    let w = resolve_workflow("direct-routing-to-operator-connect", Path::new("."), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let step = |id: &str| &w.workflow.steps[w.workflow.step_index(id).unwrap_or(0)];
    let onprem =
        json!({"steps": {"inspect": {"output": {"id": "u1", "on_prem_line_uri": "+14255550100"}}}});
    let online = json!({"steps": {"inspect": {"output": {"id": "u1", "on_prem_line_uri": null}}}});
    let when = |id: &str, ctx: &serde_json::Value| {
        step(id)
            .when
            .as_ref()
            .map(|e| e.eval_bool(ctx))
            .unwrap_or(Ok(true))
    };
    assert_eq!(when("clear-onprem-line-uri", &onprem), Ok(true));
    assert_eq!(when("remove-dr-number", &onprem), Ok(false));
    assert_eq!(when("clear-onprem-line-uri", &online), Ok(false));
    assert_eq!(when("remove-dr-number", &online), Ok(true));
    let assign = step("assign-oc-number");
    let args = &assign
        .action
        .as_ref()
        .map(|a| a.args.clone())
        .unwrap_or_default();
    let ctx =
        json!({"inputs": {"user": "a@contoso.com", "number": "+14255550100", "location_id": null}});
    assert_eq!(
        args["location_id"].render(&ctx),
        Ok(serde_json::Value::Null)
    );
    let until = &assign.wait.as_ref().map(|w| w.until.clone());
    let mut ctx = online.clone();
    ctx["obs"] = json!({"activation_state": "Activated", "pstn_assignment_status": "UserAssigned",
                         "assigned_pstn_target_id": "u1"});
    assert_eq!(until.as_ref().map(|u| u.eval_bool(&ctx)), Some(Ok(true)));
    ctx["obs"]["assigned_pstn_target_id"] = json!("u2");
    assert_eq!(until.as_ref().map(|u| u.eval_bool(&ctx)), Some(Ok(false)));
}

#[test]
fn shipped_example_validates() {
    let p = root().join("examples/dr-to-oc.yaml");
    let run = load_run(&p, &[root().join("workflows")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.subjects.len(), 200);
    assert_eq!(run.file.concurrency, 50);
    assert_eq!(run.file.approvals, vec!["operator-coordinated"]);
    let s = &run.subjects[0];
    assert_eq!(s.inputs["user"], "user0001@contoso.com");
    assert_eq!(s.inputs["number"], "+14250000001");
    assert_eq!(s.inputs["location_id"], "loc-nyc-01");
    assert!(s.origin.ends_with("dr-to-oc-users.csv:2"), "{}", s.origin);
    assert_eq!(
        run.workflow.workflow.name,
        "direct-routing-to-operator-connect"
    );
    assert_eq!(validate_file(&p, &[]), Ok(SpecKind::RunFile));
    let wf = root().join("workflows/direct-routing-to-operator-connect.yaml");
    assert_eq!(validate_file(&wf, &[]), Ok(SpecKind::Workflow));
}

#[test]
fn bad_workflows_point_at_the_problem() {
    // (replace, with, line, col, message)
    let cases: &[(&str, &str, usize, usize, &str)] = &[
        // unknown field: at the key, not at the mapping start
        (
            "    when: steps",
            "    bogus: 1\n    when: steps",
            15,
            5,
            "unknown field `bogus`",
        ),
        // unknown op
        (
            "      op: remove_number",
            "      op: remove_numbers",
            17,
            11,
            "unknown operation `remove_numbers`",
        ),
        // duration without unit
        (
            "      timeout: 24h",
            "      timeout: 10",
            27,
            16,
            "time unit needed",
        ),
        // undefined input, inside a template: column of `inputs`
        (
            "        number: ${inputs.number}",
            "        number: ${inputs.nmber}",
            20,
            19,
            "unknown input `nmber`",
        ),
        // forward reference in a condition
        (
            "    when: steps.inspect.output.line_uri",
            "    when: steps.remove.output.line_uri",
            15,
            11,
            "only earlier steps",
        ),
        // bad condition syntax: column of the offending character
        (
            "      until: obs.line_uri == null",
            "      until: obs.line_uri = null",
            26,
            27,
            "compare with `==`",
        ),
        // obs outside wait.until
        (
            "    when: steps.inspect.output.line_uri",
            "    when: obs.line_uri",
            15,
            11,
            "only available in `wait.until`",
        ),
        // unknown root
        (
            "    when: steps.inspect.output.line_uri",
            "    when: step.inspect.output.line_uri",
            15,
            11,
            "unknown variable `step`",
        ),
        // literal type checks
        (
            "        number_type: DirectRouting",
            "        number_type: Direct",
            21,
            22,
            "is not DirectRouting, CallingPlan or OperatorConnect",
        ),
        (
            "        number: ${inputs.number}",
            "        number: '+1425'",
            20,
            17,
            "is not an E.164 number",
        ),
        // unknown and missing args
        (
            "        number_type: DirectRouting",
            "        number_typ: DirectRouting",
            21,
            9,
            "unknown argument `number_typ`",
        ),
        (
            "        number_type: DirectRouting",
            "        user2: x",
            18,
            7,
            "missing required argument `number_type`",
        ),
        // wait must observe
        (
            "        op: get_user\n        args: {user",
            "        op: clear_onprem_line_uri\n        args: {user",
            24,
            13,
            "a wait must observe",
        ),
        // timeout bounds, expected > timeout
        (
            "      timeout: 24h",
            "      timeout: 31d",
            27,
            16,
            "out of range",
        ),
        (
            "      timeout: 24h",
            "      timeout: 5m\n      expected: 10m",
            28,
            17,
            "longer than the timeout",
        ),
        (
            "      timeout: 24h",
            "      timeout: 1h\n      poll: {factor: 0.5, initial: 10m, max: 1m}",
            28,
            22,
            "poll.factor",
        ),
        (
            "      timeout: 24h",
            "      timeout: 1h\n      poll: {factor: 0.5, initial: 10m, max: 1m}",
            28,
            36,
            "poll.initial (10m) is longer",
        ),
        // retry attempts
        (
            "    when: steps",
            "    retry: {attempts: 0}\n    when: steps",
            15,
            23,
            "retry.attempts must be at least 1",
        ),
        // step ids
        (
            "  - id: remove\n",
            "  - id: inspect\n",
            14,
            9,
            "duplicate step id `inspect` (first used on line 9)",
        ),
        (
            "  - id: remove\n",
            "  - id: Remove\n",
            14,
            9,
            "must match [a-z0-9]",
        ),
        // subject, name
        (
            "subject: user",
            "subject: usr",
            3,
            10,
            "subject `usr` is not an input",
        ),
        ("name: demo", "name: ''", 1, 7, "must not be empty"),
        // wrong type and input type
        ("version: 1", "version: one", 2, 10, "invalid type"),
        (
            "  user: {type: upn}",
            "  user: {type: text}",
            5,
            16,
            "unknown variant `text`",
        ),
        // duplicate key (libyaml would say 1:1)
        (
            "version: 1\n",
            "version: 1\nversion: 2\n",
            3,
            1,
            "duplicate key `version` (first on line 2)",
        ),
        // a step with nothing to do
        (
            "  - id: remove\n",
            "  - id: idle\n  - id: remove\n",
            14,
            5,
            "has nothing to do",
        ),
        // unterminated template
        (
            "        number: ${inputs.number}",
            "        number: x${inputs.number",
            20,
            18,
            "unterminated",
        ),
        // input type clash
        (
            "        number: ${inputs.number}",
            "        number: ${inputs.user}",
            20,
            17,
            "expects an e164 number but input `user` is upn",
        ),
        // YAML syntax
        ("version: 1", "version: [1", 3, 8, "invalid YAML"),
    ];
    for (from, to, line, col, msg) in cases {
        let text = base_with(from, to);
        expect(&errs(&text), *line, *col, msg);
    }
}

#[test]
fn all_semantic_errors_are_reported() {
    let text = BASE
        .replacen("subject: user", "subject: usr", 1)
        .replacen("${inputs.number}", "${inputs.nmber}", 1)
        .replacen("timeout: 24h", "timeout: 31d", 1);
    let d = errs(&text);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.windows(2).all(|w| w[0].line <= w[1].line));
}

#[test]
fn io_errors_are_diagnostics() {
    let e = load_workflow(Path::new("/nonexistent/w.yaml")).err();
    let d = e.map(|e| e.diagnostics).unwrap_or_default();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].line, 0);
    assert!(d[0]
        .to_string()
        .starts_with("/nonexistent/w.yaml: cannot read:"));
    let e = resolve_workflow("no-such-workflow", Path::new("."), &[]).err();
    assert!(e.is_some_and(|e| e
        .to_string()
        .contains("no workflow named `no-such-workflow`")));
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")))
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }
}

const RUN: &str = "\
workflow: demo.yaml
subjects: {csv: users.csv}
concurrency: 5
approvals: []
";

const CSV: &str = "\
user,number,loc
a@contoso.com,+14255550100,
b@contoso.com,+14255550101,loc-1
";

fn run_errs(run: &str, csv: &str) -> (Dir, Vec<Diagnostic>) {
    let d = Dir::new();
    d.write("demo.yaml", BASE);
    d.write("users.csv", csv);
    let p = d.write("run.yaml", run);
    let diags = match load_run(&p, &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics,
    };
    (d, diags)
}

fn expect_in(diags: &[Diagnostic], file_suffix: &str, line: usize, col: usize, msg: &str) {
    assert!(
        diags.iter().any(|d| d.file.ends_with(file_suffix)
            && d.line == line
            && d.col == col
            && d.message.contains(msg)),
        "expected {file_suffix}:{line}:{col} {msg:?}, got:\n{}",
        diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn good_run_loads() {
    let d = Dir::new();
    d.write("demo.yaml", BASE);
    d.write("users.csv", CSV);
    let p = d.write("run.yaml", RUN);
    let run = load_run(&p, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.subjects.len(), 2);
    assert!(!run.subjects[0].inputs.contains_key("loc"));
    assert_eq!(run.subjects[1].inputs["loc"], "loc-1");
    assert!(run.subjects[1].origin.ends_with("users.csv:3"));
}

#[test]
fn bad_csv_rows() {
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "user,number,loc\na@contoso.com,14255550100,\n",
            2,
            15,
            "is not an E.164 number",
        ),
        (
            "user,number,loc\na@contoso,+14255550100,\n",
            2,
            1,
            "is not a user principal name",
        ),
        (
            "user,number,loc\n,+14255550100,\n",
            2,
            1,
            "missing value for required input `user`",
        ),
        (
            "user,number,loc\na@contoso.com,+14255550100,\nA@Contoso.com,+14255550101,\n",
            3,
            1,
            "duplicate subject `A@Contoso.com` (first on line 2)",
        ),
        (
            "user,number,loc\na@contoso.com,+14255550100\n",
            2,
            27,
            "expected 3 fields",
        ),
        (
            "user,number,location\na@contoso.com,+14255550100,x\n",
            1,
            13,
            "unknown column `location`",
        ),
        (
            "user,loc\na@contoso.com,x\n",
            1,
            1,
            "lacks a column for required input `number`",
        ),
        ("", 1, 1, "empty"),
    ];
    for (csv, line, col, msg) in cases {
        let (_d, diags) = run_errs(RUN, csv);
        expect_in(&diags, "users.csv", *line, *col, msg);
    }
}

#[test]
fn bad_run_files() {
    let cases: &[(&str, &str, usize, usize, &str)] = &[
        ("concurrency: 5", "concurrency: 0", 3, 14, "concurrency must be at least 1"),
        ("concurrency: 5", "concurrency: 5\ntime_scale: 0", 4, 13, "time_scale must be a positive"),
        ("concurrency: 5", "concurrency: 5\nrate_limit: -1", 4, 13, "rate_limit must be a positive"),
        ("approvals: []", "approvals: [inspect]", 4, 13, "step `inspect` has no approval gate"),
        ("approvals: []", "approvals: [nope]", 4, 13, "no step `nope`"),
        ("workflow: demo.yaml", "workflow: nope", 1, 11, "no workflow named `nope`"),
        ("concurrency: 5", "concurency: 5", 3, 1, "unknown field `concurency`"),
        ("subjects: {csv: users.csv}", "subjects: {cvs: users.csv}", 2, 12, "unknown key `cvs`"),
        ("subjects: {csv: users.csv}", "subjects: {csv: missing.csv}", 2, 17, "cannot read CSV file"),
        (
            "subjects: {csv: users.csv}",
            "subjects:\n  - {user: a@contoso.com, number: +14255550100}",
            3,
            35,
            "quote it",
        ),
        (
            "subjects: {csv: users.csv}",
            "subjects:\n  - {user: a@contoso.com, number: '+1425'}",
            3,
            35,
            "is not an E.164 number",
        ),
        (
            "subjects: {csv: users.csv}",
            "subjects:\n  - {user: a@contoso.com, number: '+14255550100', nmber: x}",
            3,
            51,
            "unknown input `nmber`",
        ),
        (
            "subjects: {csv: users.csv}",
            "subjects:\n  - {user: a@contoso.com, number: '+14255550100'}\n  - {user: a@contoso.com, number: '+14255550101'}",
            4,
            12,
            "duplicate subject",
        ),
        ("workflow: demo.yaml", "workflow: demo.yaml\nbackend: {kind: sim, sed: 1}", 2, 22, "unknown field `sed`"),
    ];
    for (from, to, line, col, msg) in cases {
        assert!(RUN.contains(from), "{from}");
        let (_d, diags) = run_errs(&RUN.replacen(from, to, 1), CSV);
        expect_in(&diags, "run.yaml", *line, *col, msg);
    }
}

#[test]
fn invalid_workflow_reports_with_its_own_file() {
    let d = Dir::new();
    d.write(
        "demo.yaml",
        &BASE.replacen("subject: user", "subject: usr", 1),
    );
    d.write("users.csv", CSV);
    let p = d.write("run.yaml", RUN);
    let diags = load_run(&p, &[])
        .err()
        .map(|e| e.diagnostics)
        .unwrap_or_default();
    expect_in(&diags, "demo.yaml", 3, 10, "subject `usr` is not an input");
    expect_in(&diags, "run.yaml", 1, 11, "workflow `demo.yaml` is invalid");
}

#[test]
fn validate_file_decides_by_keys() {
    let d = Dir::new();
    let p = d.write("x.yaml", "foo: 1\n");
    let e = validate_file(&p, &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains(":1:1: cannot tell what this file is"), "{e}");
    let p = d.write("w.yaml", BASE);
    assert_eq!(validate_file(&p, &[]), Ok(SpecKind::Workflow));
}

#[test]
fn search_dirs_come_before_builtins() {
    let d = Dir::new();
    let text = BASE.replacen("name: demo", "name: direct-routing-to-operator-connect", 1);
    d.write("direct-routing-to-operator-connect.yaml", &text);
    let w = resolve_workflow(
        "direct-routing-to-operator-connect",
        Path::new("."),
        &[d.0.path().to_path_buf()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.workflow.steps.len(), 2);
    assert!(w
        .origin
        .ends_with("direct-routing-to-operator-connect.yaml"));
    let b = resolve_workflow("direct-routing-to-operator-connect", Path::new("."), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.origin, "builtin:direct-routing-to-operator-connect.yaml");
}

#[test]
fn hostile_inputs_do_not_panic() {
    let long = format!(
        "name: x\nversion: 1\nsubject: u\ninputs: {{}}\nsteps:\n  - id: a\n    when: \"{}\"\n",
        "(".repeat(5000)
    );
    assert!(!errs(&long).is_empty());
    for text in [
        "",
        "---\n",
        "[]",
        "a: &x [*x]",
        "steps: 1",
        "{",
        "\t",
        "name: x\n\u{0}",
    ] {
        let _ = parse_workflow(text, "w.yaml");
    }
}

#[test]
fn messages_read_well() {
    let text = BASE
        .replacen("    when: steps", "    bogus: 1\n    when: steps", 1)
        .replacen("version: 1\n", "version: 1\nversion: 2\n", 1);
    let e = parse_workflow(&text, "w.yaml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(e, "w.yaml:3:1: duplicate key `version` (first on line 2)");
    let e = parse_workflow(
        &base_with(
            "      until: obs.line_uri == null",
            "      until: obs.line_uri = null",
        ),
        "w.yaml",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert_eq!(
        e,
        "w.yaml:26:27: steps[1].wait.until: invalid condition: unexpected `=` (compare with `==`)"
    );
}

#[test]
fn only_observations_a_later_expression_reads_are_kept() {
    let load = |name: &str| {
        let text = builtin::workflow_text(name).unwrap_or_default();
        parse_workflow(text, &builtin::origin(name)).unwrap_or_else(|e| panic!("{e}"))
    };
    let dr = load("direct-routing-to-operator-connect").workflow;
    assert!(!dr.reads_observed("remove-dr-number"));
    assert!(!dr.reads_observed("wait-operator-upload"));
    let cp = load("calling-plans-to-operator-connect").workflow;
    assert!(cp.reads_observed("wait-port"));
    // `steps.x` whole, or `steps[…]` with a computed index, may read any observation.
    let whole = base_with(
        "until: obs.line_uri == null",
        "until: steps.inspect == null",
    );
    let any = base_with(
        "until: obs.line_uri == null",
        "until: \"steps[inputs.user] == null\"",
    );
    for text in [whole, any] {
        let w = parse_workflow(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let ids: Vec<String> = w.workflow.steps.iter().map(|s| s.id.clone()).collect();
        assert!(ids.iter().any(|id| w.workflow.reads_observed(id)), "{text}");
    }
}

#[test]
fn outputs_are_trimmed_to_the_fields_later_steps_read() {
    let text = builtin::workflow_text("direct-routing-to-operator-connect").unwrap_or_default();
    let wf = parse_workflow(text, "dr")
        .unwrap_or_else(|e| panic!("{e}"))
        .workflow;
    let view = serde_json::json!({
        "id": "u1", "line_uri": "+1", "on_prem_line_uri": null, "licences": ["MCOEV"],
        "teams_upgrade_effective_mode": "TeamsOnly", "online_voice_routing_policy": "p",
        "upn": "a@contoso.com", "sip_address": "a@contoso.com", "hosting_provider": "x",
    });
    let (kept, whole) = wf.trim_output("inspect", view.clone());
    assert_eq!(whole, Some(view));
    let mut fields: Vec<&str> = kept
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "id",
            "licences",
            "line_uri",
            "on_prem_line_uri",
            "online_voice_routing_policy",
            "teams_upgrade_effective_mode"
        ]
    );
    // Nothing to trim: kept as it is, nothing extra for the history.
    let (kept, whole) = wf.trim_output("remove-dr-number", serde_json::json!({}));
    assert_eq!((kept, whole), (serde_json::json!({}), None));
}
