//! End-to-end tests of the spec layer: shipped files validate; bad inputs yield
//! the expected message at the expected position.

use std::path::{Path, PathBuf};

use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small valid workflow; line numbers matter to the tests below.
pub(super) const BASE: &str = "\
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

pub(super) fn errs(text: &str) -> Vec<Diagnostic> {
    match parse_workflow(text, "w.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics,
    }
}

/// Replace `from` (which must occur) with `to` in BASE.
pub(super) fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

pub(super) fn expect(diags: &[Diagnostic], line: usize, col: usize, msg: &str) {
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
            "check-homed-online",
            "check-phone-system",
            "check-number",
            "inspect-number",
            "check-number-in-tenant",
            "check-number-type",
            "check-number-owner",
            "check-usage-location",
            "check-no-location",
            "check-location-given",
            "inspect-location",
            "check-location",
            "check-location-validated",
            "check-location-country",
            "clear-onprem-line-uri",
            "remove-dr-number",
            "remove-voice-routing-policy",
            "wait-operator-upload",
            "check-address-mode",
            "assign-oc-number",
            "assign-oc-number-operator-address",
            "verify-user",
        ]
    );
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    let verify = &w.workflow.steps[w.workflow.step_index("verify-user").unwrap_or(0)];
    assert!(verify.restores_service);
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
    // One of the two assignments, by the declared address mode.
    for (mode, with_location) in [
        ("tenant_assigns", true),
        ("operator_assigns", false),
        ("operator_locked", false),
    ] {
        let ctx = json!({"inputs": {"address_mode": mode}});
        assert_eq!(when("assign-oc-number", &ctx), Ok(with_location), "{mode}");
        assert_eq!(
            when("assign-oc-number-operator-address", &ctx),
            Ok(!with_location),
            "{mode}"
        );
    }
    let without = step("assign-oc-number-operator-address");
    assert!(without
        .action
        .as_ref()
        .is_some_and(|a| !a.args.contains_key("location_id")));
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
    assert_eq!(
        validate_file(&p, &[]).map(|(k, _)| k),
        Ok(SpecKind::RunFile)
    );
    let wf = root().join("workflows/direct-routing-to-operator-connect.yaml");
    assert_eq!(
        validate_file(&wf, &[]),
        Ok((SpecKind::Workflow, Vec::new()))
    );
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
            "retry.attempts must be between 1 and 100",
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

pub(super) struct Dir(pub(super) tempfile::TempDir);

impl Dir {
    pub(super) fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")))
    }
    pub(super) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }
}

pub(super) const RUN: &str = "\
workflow: demo.yaml
subjects: {csv: users.csv}
concurrency: 5
approvals: []
";

pub(super) const CSV: &str = "\
user,number,loc
a@contoso.com,+14255550100,
b@contoso.com,+14255550101,loc-1
";

pub(super) fn run_errs(run: &str, csv: &str) -> (Dir, Vec<Diagnostic>) {
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

pub(super) fn expect_in(
    diags: &[Diagnostic],
    file_suffix: &str,
    line: usize,
    col: usize,
    msg: &str,
) {
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
        ("concurrency: 5", "concurrency: 0", 3, 14, "concurrency must be between 1 and 10000"),
        ("concurrency: 5", "concurrency: 5\ntime_scale: 0", 4, 13, "time_scale must be between 0.01 and 1000000"),
        ("concurrency: 5", "concurrency: 5\nrate_limit: -1", 4, 13, "rate_limit must be between 0.01 and 10000"),
        ("concurrency: 5", "concurrency: 5\nmax_out_of_service: 0", 4, 21, "max_out_of_service must be at least 1"),
        ("concurrency: 5", "concurrency: 5\nmax_out_of_service: lots", 4, 21, "expected u32"),
        ("concurrency: 5", "concurrency: 5\nstop_after_failures: 0", 4, 22, "not a whole number of failures"),
        ("concurrency: 5", "concurrency: 5\nstop_after_failures: 120%", 4, 22, "not a percentage between 0 and 100"),
        ("concurrency: 5", "concurrency: 5\nstop_after_failures: [3]", 4, 22, "a number of failures (3) or a percentage"),
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
    assert_eq!(
        validate_file(&p, &[]).map(|(k, _)| k),
        Ok(SpecKind::Workflow)
    );
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
    // The address mode the operator uploaded with is checked.
    assert!(dr.reads_observed("wait-operator-upload"));
    assert!(!dr.reads_observed("verify-user"));
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
fn a_met_wait_keeps_only_the_fields_its_condition_reads() {
    let wait_of = |text: &str| {
        let wf = parse_workflow(text, "w.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .workflow;
        wf.steps[1].wait.clone().unwrap_or_else(|| panic!("a wait"))
    };
    let obs = serde_json::json!({"line_uri": null, "display_name": "A", "policies": [1, 2]});
    let wait = wait_of(BASE);
    assert_eq!(
        wait.proof(obs.clone()),
        serde_json::json!({"line_uri": null})
    );
    // `obs` read whole (or by a computed key): all of it.
    let wait = wait_of(&base_with(
        "until: obs.line_uri == null",
        "until: obs != null",
    ));
    assert_eq!(wait.proof(obs.clone()), obs);
    assert_eq!(wait.proof(serde_json::json!(3)), serde_json::json!(3));
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
            "hosting_provider",
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

// ------------------------------------------------------------ outage warnings

/// A workflow whose step 1 takes the number out of service, then `checks`.
fn with_outage_then(checks: &str) -> String {
    format!(
        "\
name: w
version: 1
subject: user
inputs:
  user: {{type: upn}}
  number: {{type: e164}}
steps:
  - id: inspect
    action: {{op: get_user, args: {{user: '${{inputs.user}}'}}}}
  - id: remove
    action:
      op: remove_number
      args: {{user: '${{inputs.user}}', number: '${{inputs.number}}', number_type: DirectRouting}}
    wait:
      observe: {{op: get_user, args: {{user: '${{inputs.user}}'}}}}
      until: obs.line_uri == null
      timeout: 24h
  - id: policy
    action: {{op: grant_voice_routing_policy, args: {{user: '${{inputs.user}}', policy: null}}}}
{checks}"
    )
}

fn warnings_of(text: &str) -> Vec<String> {
    parse_workflow(text, "w.yaml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .warnings
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn a_check_that_could_run_before_the_outage_is_warned_about() {
    // Reads an observation made before the outage, and only inputs: both warned,
    // at the `check` key.
    let text = with_outage_then(
        "  - id: late
    check:
      require: \"'MCOEV' in steps.inspect.output.licences\"
      message: no Phone System
  - id: late-input
    when: inputs.number != null
    check: {require: \"inputs.user != null\", message: no user}
",
    );
    assert_eq!(
        warnings_of(&text),
        vec![
            "w.yaml:21:5: this check could run before `remove`, which takes the number out of service",
            "w.yaml:26:5: this check could run before `remove`, which takes the number out of service",
        ]
    );
    // Its message counts too: reading the outage step's data is depending on it.
    let msg = with_outage_then(
        "  - id: late
    check:
      require: inputs.user != null
      message: ${steps.remove.observed.line_uri}
",
    );
    assert!(warnings_of(&msg).is_empty());
}

#[test]
fn checks_that_depend_on_the_outage_or_later_steps_are_not_warned_about() {
    for checks in [
        // The outage step's own observation.
        "  - id: c\n    check: {require: steps.remove.observed.line_uri == null, message: m}\n",
        // A later step's output.
        "  - id: c\n    check: {require: steps.policy.output != null, message: m}\n",
        // Its condition reads a later step.
        "  - id: c\n    when: steps.policy.output != null\n    check: {require: inputs.user != null, message: m}\n",
        // A computed step: could be any.
        "  - id: c\n    check: {require: \"steps[inputs.user] == null\", message: m}\n",
    ] {
        let text = with_outage_then(checks);
        assert!(warnings_of(&text).is_empty(), "{checks}");
    }
    // Before the outage: nothing to say; and without an outage step at all.
    assert!(warnings_of(BASE).is_empty());
    let early = BASE.replacen(
        "  - id: remove\n",
        "  - id: early\n    check: {require: inputs.user != null, message: m}\n  - id: remove\n",
        1,
    );
    assert!(warnings_of(&early).is_empty());
}

#[test]
fn the_warning_names_the_first_outage_step_the_check_does_not_need() {
    // Two outage steps; the check reads the first one's data: the second is named.
    let text = with_outage_then(
        "  - id: clear
    action: {op: clear_onprem_line_uri, args: {user: '${inputs.user}'}}
  - id: c
    check: {require: steps.remove.observed.line_uri == null, message: m}
",
    );
    let w = warnings_of(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("before `clear`"), "{w:?}");
}

#[test]
fn shipped_workflows_have_no_warnings() {
    for name in builtin::names() {
        let text = builtin::workflow_text(name).unwrap_or_default();
        let w = parse_workflow(text, &builtin::origin(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(w.warnings.is_empty(), "{name}: {:?}", w.warnings);
    }
}

#[test]
fn validate_file_returns_warnings_and_knows_schedule_files() {
    let d = Dir::new();
    let text =
        with_outage_then("  - id: c\n    check: {require: inputs.user != null, message: m}\n");
    let p = d.write("w.yaml", &text);
    let (kind, warnings) = validate_file(&p, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kind, SpecKind::Workflow);
    assert_eq!(warnings.len(), 1);
    let p = root().join("examples/schedules.yaml");
    assert_eq!(
        validate_file(&p, &[]).map(|(k, _)| k),
        Ok(SpecKind::Schedules)
    );
}

// ------------------------------------------------------------ inputs with values

#[test]
fn input_values_are_checked_in_the_workflow() {
    let with_mode = |decl: &str, cond: &str| {
        BASE.replacen(
            "  loc: {type: string, optional: true}\n",
            &format!("  loc: {{type: string, optional: true}}\n  mode: {decl}\n"),
            1,
        )
        .replacen(
            "    when: steps.inspect.output.line_uri != null\n",
            &format!("    when: {cond}\n"),
            1,
        )
    };
    let good = with_mode("{type: string, values: [a, b]}", "inputs.mode == 'a'");
    assert!(errs(&good).is_empty(), "{:?}", errs(&good));
    // A misspelt value: at `inputs` in the condition.
    let typo = with_mode("{type: string, values: [a, b]}", "\"inputs.mode != 'c'\"");
    expect(
        &errs(&typo),
        16,
        12,
        "compared with \"c\": `c` is not a value of input `mode` (one of: a, b)",
    );
    let list = with_mode(
        "{type: string, values: [a, b]}",
        "\"inputs.mode in ['a', 'x']\"",
    );
    expect(&errs(&list), 16, 12, "`x` is not a value of input `mode`");
    let typed = with_mode("{type: upn, values: [a]}", "inputs.mode == 'a'");
    expect(&errs(&typed), 8, 29, "`values` applies to string inputs");
    let twice = with_mode("{type: string, values: [a, a]}", "inputs.mode == 'a'");
    expect(&errs(&twice), 8, 36, "listed twice");
}

// ------------------------------------------------------------ operator:

/// BASE with an `address_mode` input (required, with values).
fn base_with_mode() -> String {
    BASE.replacen(
        "  loc: {type: string, optional: true}\n",
        "  loc: {type: string, optional: true}\n  address_mode: {type: string, values: [operator_assigns, tenant_assigns, operator_locked]}\n  operator: {type: string, optional: true}\n",
        1,
    )
}

fn run_with_mode(run: &str, csv: &str) -> (Dir, Result<LoadedRun, Vec<Diagnostic>>) {
    let d = Dir::new();
    d.write("demo.yaml", &base_with_mode());
    d.write("users.csv", csv);
    let p = d.write("run.yaml", run);
    let r = load_run(&p, &[]).map_err(|e| e.diagnostics);
    (d, r)
}

#[test]
fn operator_fills_the_address_mode_and_a_row_overrides_it() {
    let run = format!("{RUN}operator: {{name: Contoso Telecom, address_mode: operator_locked}}\n");
    let csv = "user,number,loc,address_mode\n\
               a@contoso.com,+14255550100,,\n\
               b@contoso.com,+14255550101,,tenant_assigns\n";
    let (_d, r) = run_with_mode(&run, csv);
    let r = r.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r.subjects[0].inputs["address_mode"], "operator_locked");
    assert_eq!(r.subjects[0].inputs["operator"], "Contoso Telecom");
    assert_eq!(r.subjects[1].inputs["address_mode"], "tenant_assigns");
    // The CSV needs no column for what `operator:` gives; inline rows neither.
    let (_d, r) = run_with_mode(&run, CSV);
    let r = r.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(r
        .subjects
        .iter()
        .all(|s| s.inputs["address_mode"] == "operator_locked"));
    let inline = "workflow: demo.yaml\n\
                  operator: {address_mode: tenant_assigns}\n\
                  subjects:\n  - {user: a@contoso.com, number: '+14255550100'}\n  - {user: b@contoso.com, number: '+14255550101', address_mode: operator_assigns}\n";
    let (_d, r) = run_with_mode(inline, CSV);
    let r = r.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r.subjects[0].inputs["address_mode"], "tenant_assigns");
    assert!(!r.subjects[0].inputs.contains_key("operator"));
    assert_eq!(r.subjects[1].inputs["address_mode"], "operator_assigns");
}

#[test]
fn bad_operator_declarations_point_at_the_problem() {
    let errs_of = |run: &str, csv: &str| match run_with_mode(run, csv).1 {
        Ok(_) => panic!("loaded:\n{run}\n{csv}"),
        Err(d) => d,
    };
    // An unknown mode in the run file, at its value.
    let d = errs_of(
        &format!("{RUN}operator:\n  name: Contoso\n  address_mode: tenant_assign\n"),
        CSV,
    );
    expect_in(&d, "run.yaml", 7, 17, "unknown variant `tenant_assign`");
    // An unknown key of `operator:`.
    let d = errs_of(
        &format!("{RUN}operator: {{address_mode: tenant_assigns, mode: x}}\n"),
        CSV,
    );
    expect_in(&d, "run.yaml", 5, 42, "unknown field `mode`");
    // A mode is required in the block.
    let d = errs_of(&format!("{RUN}operator: {{name: Contoso}}\n"), CSV);
    expect_in(&d, "run.yaml", 5, 11, "missing field `address_mode`");
    // A row's own value is checked against the workflow's values, at its cell.
    let d = errs_of(
        &format!("{RUN}operator: {{address_mode: tenant_assigns}}\n"),
        "user,number,loc,address_mode\na@contoso.com,+14255550100,,locked\n",
    );
    expect_in(&d, "users.csv", 2, 29, "`locked` is not a value of input `address_mode` (one of: operator_assigns, tenant_assigns, operator_locked)");
}

#[test]
fn a_run_without_operator_is_refused_once_with_what_to_add() {
    let (_d, r) = run_with_mode(RUN, CSV);
    let d = r.err().unwrap_or_default();
    assert_eq!(d.len(), 1, "{d:?}");
    expect_in(
        &d,
        "run.yaml",
        1,
        1,
        "needs the operator's emergency-address mode",
    );
    assert!(
        d[0].message
            .contains("operator: {name: <operator>, address_mode: <mode>}"),
        "{}",
        d[0]
    );
    // Rows that all give it need no `operator:`; a row that does not is named.
    let csv = "user,number,loc,address_mode\n\
               a@contoso.com,+14255550100,,tenant_assigns\n\
               b@contoso.com,+14255550101,,\n";
    let (_d, r) = run_with_mode(RUN, csv);
    let d = r.err().unwrap_or_default();
    expect_in(
        &d,
        "run.yaml",
        1,
        1,
        "needs the operator's emergency-address mode",
    );
    let all = "user,number,loc,address_mode\na@contoso.com,+14255550100,,tenant_assigns\n";
    let (_d, r) = run_with_mode(RUN, all);
    assert!(r.is_ok(), "{r:?}");
    // A workflow without `address_mode` ignores `operator:`.
    let (_d, diags) = run_errs(
        &format!("{RUN}operator: {{address_mode: tenant_assigns}}\n"),
        CSV,
    );
    assert!(diags.is_empty(), "{diags:?}");
}

#[test]
fn a_secret_written_inline_is_refused_at_its_position_without_its_value() {
    let run = format!(
        "{RUN}backend:\n  kind: sim\n  client_secret: hunter2-inline\n  auth: {{password: 'pa55'}}\n"
    );
    let (_d, diags) = run_errs(&run, CSV);
    expect_in(
        &diags,
        "run.yaml",
        7,
        18,
        "write a secret reference `{env: VAR}`",
    );
    expect_in(&diags, "run.yaml", 8, 20, "backend.auth.password");
    let all: String = diags.iter().map(|d| d.to_string()).collect();
    assert!(!all.contains("hunter2") && !all.contains("pa55"), "{all}");
    // A reference is not an inline secret (the simulator has no such key, so
    // serde refuses it as unknown, naming the key only).
    let run = format!("{RUN}backend:\n  kind: sim\n  client_secret: {{env: GRAPH_SECRET}}\n");
    let (_d, diags) = run_errs(&run, CSV);
    assert!(
        diags.iter().all(|d| !d.message.contains("inline")),
        "{diags:?}"
    );
}

#[test]
fn call_timeout_is_read_from_the_run_file() {
    let d = Dir::new();
    d.write("demo.yaml", BASE);
    d.write("users.csv", CSV);
    let p = d.write("run.yaml", &format!("{RUN}call_timeout: 30s\n"));
    let loaded = load_run(&p, &[]);
    assert_eq!(
        loaded.ok().map(|l| l.file.call_timeout),
        Some(std::time::Duration::from_secs(30))
    );
}
