//! Bad input (issue 11): byte-order marks, nesting, sizes, control characters,
//! `not in`, the `subject` variable. Each case failed before its fix.

use std::time::Duration;

use serde_json::json;

use super::expr::Expr;
use super::tests::{base_with, errs, expect, expect_in, run_errs, Dir, BASE, CSV, RUN};
use super::*;

const BOM: &str = "\u{feff}";

/// 1-based column of `needle` in line `line` of `text`.
fn col_of(text: &str, line: usize, needle: &str) -> usize {
    let l = text.lines().nth(line - 1).unwrap_or_default();
    l.find(needle).map_or(0, |i| l[..i].chars().count() + 1)
}

fn messages(e: &SpecError) -> String {
    e.to_string()
}

const SCHEDULES: &str = "\
schedules:
  - name: nightly
    cron: \"0 22 * * MON-FRI\"
    timezone: Europe/Berlin
    launch: {run_file: run.yaml}
";

#[test]
fn a_byte_order_mark_is_read_alike_by_every_loader() {
    let d = Dir::new();
    d.write("demo.yaml", &format!("{BOM}{BASE}"));
    d.write("users.csv", CSV);
    let kinds = [
        ("run.yaml", format!("{BOM}{RUN}"), SpecKind::RunFile),
        (
            "run2.yaml",
            format!("{BOM}# a comment first\n{RUN}"),
            SpecKind::RunFile,
        ),
        (
            "wf.yaml",
            format!("{BOM}# a comment first\n{BASE}"),
            SpecKind::Workflow,
        ),
        ("s.yaml", format!("{BOM}{SCHEDULES}"), SpecKind::Schedules),
    ];
    for (name, text, kind) in kinds {
        let p = d.write(name, &text);
        match validate_file(&p, &[]) {
            Ok((k, _)) => assert_eq!(k, kind, "{name}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    let run = load_run(&d.0.path().join("run.yaml"), &[]);
    assert!(run.is_ok_and(|r| r.subjects.len() == 2));
    // Positions after the mark are those of the file without it.
    let bad = base_with("version: 1", "version: x");
    let plain = errs(&bad);
    expect(&plain, 2, 10, "version");
    assert_eq!(errs(&format!("{BOM}{bad}")), plain);
}

#[test]
fn a_byte_order_mark_does_not_hide_deep_nesting() {
    let n = 20_000;
    let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let cases = [
        // libyaml skips the mark and sees 20,000 lists; yaml-rust2 used to see text.
        format!("{BOM}{deep}\n"),
        format!("{BOM}# c\nname: x\nsteps: {deep}\n"),
        // A second document used to go unchecked (serde parses it in full).
        format!("name: demo\n---\n{deep}\n"),
    ];
    for text in &cases {
        let t0 = crate::clock::Stopwatch::start();
        let e = parse_workflow(text, "w.yaml").err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let msg = e.as_ref().map(messages).unwrap_or_default();
        assert!(
            msg.contains("nested more than 64 levels") || msg.contains("second YAML document"),
            "{msg}"
        );
    }
    let e = parse_workflow(&cases[2], "w.yaml").err();
    assert_eq!(
        e.map(|e| (e.diagnostics[0].line, e.diagnostics[0].col)),
        Some((2, 1))
    );
    // Through a run file, as `validate` and `plan` read it.
    let d = Dir::new();
    d.write("deep.yaml", &cases[0]);
    let rf = d.write(
        "run.yaml",
        "workflow: deep.yaml\nsubjects: {csv: users.csv}\n",
    );
    let t0 = crate::clock::Stopwatch::start();
    assert!(validate_file(&rf, &[]).is_err());
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Block nesting has the same limit.
    let mut block = String::new();
    for i in 0..70 {
        block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
    }
    let msg = parse_workflow(&block, "w.yaml").err().map(|e| messages(&e));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("w.yaml:65:") && m.contains("nested more than 64 levels")),
        "{msg:?}"
    );
}

#[test]
fn run_file_sizes_are_bounded_where_they_are_written() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "backend: {kind: sim, users: 4294967295}",
            "4294967295",
            "at most 100000 simulated users",
        ),
        (
            "concurrency: 1000000000",
            "1000000000",
            "concurrency must be between 1 and 10000",
        ),
        ("time_scale: 1e300", "1e300", "time_scale must be between"),
        (
            "time_scale: 0.000001",
            "0.000001",
            "time_scale must be between",
        ),
        ("rate_limit: 1e9", "1e9", "rate_limit must be between"),
        (
            "call_timeout: 10h",
            "10h",
            "call_timeout must be between 1s and 1h",
        ),
        (
            "call_timeout: 10ms",
            "10ms",
            "call_timeout must be between 1s and 1h",
        ),
        ("then: [a, b, c, d, e, f, g, h, i]", "[a", "at most 8"),
        (
            "window: {cron: '0 22 * * *', duration: 400d}",
            "400d",
            "must be at most 31d",
        ),
        (
            "backend: {kind: sim, latency: {tail_max: 100000d}}",
            "100000d",
            "longer than 365d",
        ),
        (
            "backend: {kind: sim, faults: {transient_rate: 2}}",
            "2}",
            "probability between 0 and 1",
        ),
        (
            "backend: {kind: sim, latency: {tail_rate: .nan}}",
            ".nan",
            "probability",
        ),
        (
            "backend: {kind: sim, max_concurrent_moves: 0}",
            "0}",
            "between 1 and 100000",
        ),
        (
            "backend: {kind: sim, faults: {throttle_limit: 0}}",
            "0}",
            "between 1 and 100000",
        ),
        (
            "backend: {kind: sim, dirsync_interval: 0s}",
            "0s",
            "at least 1s",
        ),
        (
            "backend: {kind: sim, tenant: ../../etc}",
            "../",
            "must start with a letter or digit",
        ),
    ];
    for (line, at, msg) in cases {
        let text = RUN.replacen("concurrency: 5", line, 1);
        let (_d, diags) = run_errs(&text, CSV);
        expect_in(&diags, "run.yaml", 3, col_of(&text, 3, at), msg);
    }
}

#[test]
fn workflow_sizes_are_bounded_where_they_are_written() {
    let retry = base_with(
        "      timeout: 24h\n",
        "      timeout: 24h\n      poll: {max: 1000d}\n    retry: {attempts: 1000000, max: 1000d}\n",
    );
    let d = errs(&retry);
    let line = BASE.lines().count() + 1;
    expect(
        &d,
        line,
        col_of(&retry, line, "1000d"),
        "poll.max (1000d) is longer than 24h",
    );
    expect(
        &d,
        line + 1,
        col_of(&retry, line + 1, "1000000"),
        "between 1 and 100",
    );
    expect(
        &d,
        line + 1,
        col_of(&retry, line + 1, "1000d"),
        "retry.max (1000d) is longer than 24h",
    );
}

#[test]
fn subject_lists_and_files_are_bounded() {
    // 100,001 rows: one too many.
    let mut csv = String::from("user,number,loc\n");
    for i in 0..=100_000 {
        csv.push_str(&format!("u{i}@contoso.com,+1425{i:07},\n"));
    }
    let (_d, diags) = run_errs(RUN, &csv);
    expect_in(&diags, "users.csv", 100_002, 1, "at most 100000");

    let long = "x".repeat(2000);
    let (_d, diags) = run_errs(
        RUN,
        &format!("user,number,loc\na@contoso.com,+14255550100,{long}\n"),
    );
    expect_in(&diags, "users.csv", 2, 28, "at most 1024");

    // Sizes are checked before anything is parsed (a sparse file reads as NULs).
    let d = Dir::new();
    d.write("demo.yaml", BASE);
    let rf = d.write("run.yaml", RUN);
    let sparse = |name: &str, len: u64| {
        let f = std::fs::File::create(d.0.path().join(name)).and_then(|f| f.set_len(len));
        assert!(f.is_ok(), "{f:?}");
    };
    sparse("users.csv", 65 << 20);
    let msg = load_run(&rf, &[])
        .err()
        .map(|e| messages(&e))
        .unwrap_or_default();
    assert!(msg.contains("larger than 64 MiB"), "{msg}");
    sparse("big.yaml", 5 << 20);
    let msg = validate_file(&d.0.path().join("big.yaml"), &[])
        .err()
        .map(|e| messages(&e));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("larger than 4 MiB")),
        "{msg:?}"
    );
}

#[test]
fn control_characters_are_reported_where_they_are() {
    let text = base_with("line_uri != null", "line_uri\u{1} != null");
    let line = 15;
    assert!(text
        .lines()
        .nth(line - 1)
        .is_some_and(|l| l.contains('\u{1}')));
    let d = errs(&text);
    expect(
        &d,
        line,
        col_of(&text, line, "\u{1}"),
        "control character U+0001",
    );

    let dir = Dir::new();
    let p = dir.write("nul.yaml", &base_with("version: 1", "version: 1\0"));
    let msg = validate_file(&p, &[]).err().map(|e| messages(&e));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("nul.yaml:2:11:") && m.contains("NUL")),
        "{msg:?}"
    );
    // Not UTF-8: where the first bad byte is.
    let p = dir.0.path().join("latin1.yaml");
    let wrote = std::fs::write(&p, b"name: demo\nversion: 1\nsubject: caf\xe9\n");
    assert!(wrote.is_ok());
    let msg = validate_file(&p, &[]).err().map(|e| messages(&e));
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("latin1.yaml:3:13:") && m.contains("UTF-8")),
        "{msg:?}"
    );
}

#[test]
fn not_in_is_the_negation_of_in() {
    let ctx = json!({"x": "c", "y": ["a", "b"]});
    for (src, want) in [
        ("x not in y", true),
        ("x !in y", true),
        ("'a' not in y", false),
        ("not x in y", true),
        ("x not in y && 'a' in y", true),
        ("!(x not in y)", false),
    ] {
        let got = Expr::parse(src).map(|e| e.eval_bool(&ctx));
        assert_eq!(got, Ok(Ok(want)), "{src}");
    }
    let e = Expr::parse("x not y").err().map(|e| e.message);
    assert!(e.as_deref().is_some_and(|m| m.contains("`not`")), "{e:?}");
    assert!(Expr::parse("x not in y in z").is_err());
    let wf = base_with(
        "when: steps.inspect.output.line_uri != null",
        "when: inputs.loc not in ['a', 'b']",
    );
    assert!(errs(&wf).is_empty(), "{:?}", errs(&wf));
}

#[test]
fn subject_is_a_variable_of_every_expression() {
    let wf = base_with(
        "when: steps.inspect.output.line_uri != null",
        "when: subject != 'nobody@contoso.com'",
    );
    assert!(errs(&wf).is_empty(), "{:?}", errs(&wf));
    let bad = base_with(
        "when: steps.inspect.output.line_uri != null",
        "when: subject.upn != null",
    );
    expect(&errs(&bad), 15, 11, "`subject` is the subject's name");
}

#[test]
fn csv_lines_ending_in_a_lone_carriage_return_are_lines() {
    // Old Mac files end lines with `\r` alone (found by the csv_subjects fuzz target).
    let csv = "user,number,loc\rb@contoso.com,+14255550101,\ra@contoso.com,+1425,\r";
    let (_d, diags) = run_errs(RUN, csv);
    expect_in(&diags, "users.csv", 3, 15, "is not an E.164 number");
    let (_d, diags) = run_errs(RUN, "user,number,loc\ra@contoso.c\r\0om,+14255550100,x\r");
    assert!(
        diags.iter().all(|d| d.line == 0 || d.line <= 3),
        "{diags:?}"
    );
}

#[test]
fn lists_that_are_compared_with_each_other_are_bounded() {
    // 34,000 steps that each read an earlier one took 5.5 s to validate (each
    // reference looked the step up among all of them).
    let mut many = BASE.to_string();
    for i in 0..200 {
        many.push_str(&format!("  - id: extra{i}\n    gate: {{approval: ok}}\n"));
    }
    expect(&errs(&many), 9, 3, "202 steps; a workflow has at most 200");
    let mut inputs = String::new();
    for i in 0..65 {
        inputs.push_str(&format!("  i{i}: {{type: string, optional: true}}\n"));
    }
    let wide = base_with(
        "  user: {type: upn}\n",
        &format!("  user: {{type: upn}}\n{inputs}"),
    );
    expect(&errs(&wide), 5, 3, "68 inputs; a workflow has at most 64");
    let values: Vec<String> = (0..101).map(|i| format!("v{i}")).collect();
    let long = base_with(
        "loc: {type: string, optional: true}",
        &format!(
            "loc: {{type: string, optional: true, values: [{}]}}",
            values.join(", ")
        ),
    );
    expect(&errs(&long), 7, 47, "lists 101 values; at most 100");
    let twice = base_with(
        "      timeout: 24h\n",
        "      timeout: 24h\n    retry: {on: [throttled, transient, throttled]}\n",
    );
    expect(&errs(&twice), 28, 40, "retry.on lists `throttled` twice");

    let (_d, diags) = run_errs(
        &RUN.replacen(
            "concurrency: 5",
            "backend: {kind: sim, manual: [move_user, move_user]}",
            1,
        ),
        CSV,
    );
    expect_in(&diags, "run.yaml", 3, 42, "manual lists `move_user` twice");
    let gates = vec!["inspect"; 201].join(", ");
    let (_d, diags) = run_errs(
        &RUN.replacen("approvals: []", &format!("approvals: [{gates}]"), 1),
        CSV,
    );
    expect_in(
        &diags,
        "run.yaml",
        4,
        12,
        "approvals: 201 gates; at most 200",
    );

    let header: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    let (_d, diags) = run_errs(RUN, &format!("{}\n", header.join(",")));
    expect_in(&diags, "users.csv", 1, 1, "the header has 65 columns");
    // Bad rows: reading stops after 1000 problems.
    let mut csv = String::from("user,number,loc\n");
    for _ in 0..5000 {
        csv.push_str("nobody,+1,\n");
    }
    let (_d, diags) = run_errs(RUN, &csv);
    // A row's problems are all said, then the reading stops (row 335: 3 each after the first).
    assert!(diags.len() < 1010, "{}", diags.len());
    expect_in(
        &diags,
        "users.csv",
        336,
        1,
        "stopped reading subjects here after 1000 problems",
    );
}

#[test]
fn fast_polls_are_opted_into_and_warned_about_on_a_real_tenant() {
    let fast = base_with(
        "      timeout: 24h\n",
        "      timeout: 2s\n      expected: 1s\n      poll: {initial: 100ms, max: 200ms}\n",
    );
    // Without the opt-in: both limits, each saying how to lift it.
    let diags = errs(&fast);
    let line = fast
        .lines()
        .position(|l| l.contains("timeout: 2s"))
        .map_or(0, |i| i + 1);
    expect(
        &diags,
        line,
        col_of(&fast, line, "2s"),
        "out of range (1m to 30d; from 1s with `fast_polls: true`)",
    );
    expect(
        &diags,
        line + 2,
        col_of(&fast, line + 2, "100ms"),
        "at least 1s (100ms with `fast_polls: true`",
    );
    // With it: 100 ms and 1 s are the floor.
    let opted = fast.replacen("version: 1\n", "version: 1\nfast_polls: true\n", 1);
    assert!(errs(&opted).is_empty(), "{:?}", errs(&opted));
    let too_fast = opted.replacen("initial: 100ms", "initial: 50ms", 1);
    let d = errs(&too_fast);
    assert!(
        d.iter()
            .any(|d| d.message == "poll.initial must be at least 100ms"),
        "{d:?}"
    );
    // On the simulator no warning; on a real tenant one, at the poll.
    let d = Dir::new();
    d.write("demo.yaml", &opted);
    d.write("users.csv", CSV);
    let sim = d.write("sim.yaml", RUN);
    let real = d.write(
        "real.yaml",
        &format!(
            "{RUN}backend:\n  kind: microsoft\n  tenant_id: contoso.onmicrosoft.com\n  \
             client_id: 9a3e0000-0000-4000-8000-000000000002\n  \
             credential: {{certificate: /etc/pf/app.pem}}\n"
        ),
    );
    let warnings = |p: &std::path::Path| match load_run(p, &[]) {
        Ok(r) => r.warnings(),
        Err(e) => panic!("{e}"),
    };
    assert!(warnings(&sim).is_empty());
    let w = warnings(&real);
    assert_eq!(w.len(), 1, "{w:?}");
    // One line lower: `fast_polls` was added at the top.
    assert_eq!(
        (w[0].line, w[0].col),
        (line + 3, col_of(&opted, line + 3, "100ms"))
    );
    assert!(
        w[0].message
            .contains("step remove polls every 100ms on a real tenant"),
        "{}",
        w[0]
    );
}
