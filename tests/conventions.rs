//! Editor support and shell conventions: the shipped JSON Schemas match
//! `portflow schema`, every shipped YAML file validates against its schema
//! (and bad ones do not), completion scripts and man pages are generated, and
//! `validate` checks schedule files with their run files.
#![allow(clippy::disallowed_methods)] // drives the real binary

mod common;

use std::path::{Path, PathBuf};

use common::*;
use portflow::spec::schema::{schema, schema_text, SchemaKind};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Which schema a shipped file is for, decided by its content as `validate` does.
fn kind_of(text: &str) -> SchemaKind {
    let v: serde_json::Value = serde_yaml::from_str(text).unwrap_or_default();
    if v.get("steps").is_some() {
        SchemaKind::Workflow
    } else if v.get("subjects").is_some() {
        SchemaKind::Run
    } else {
        SchemaKind::Schedule
    }
}

/// Compiled schemas, one per kind.
struct Validator {
    schemas: boon::Schemas,
    index: Vec<(SchemaKind, boon::SchemaIndex)>,
}

impl Validator {
    fn new() -> Validator {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let mut index = Vec::new();
        for kind in SchemaKind::ALL {
            let url = format!("file:///schema/{}", kind.file_name());
            compiler
                .add_resource(&url, schema(kind))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let i = compiler
                .compile(&url, &mut schemas)
                .unwrap_or_else(|e| panic!("{url} is not a valid 2020-12 schema: {e:#}"));
            index.push((kind, i));
        }
        Validator { schemas, index }
    }

    /// `Err` with the validator's message when `yaml` does not match `kind`'s schema.
    fn check(&self, kind: SchemaKind, yaml: &str) -> Result<(), String> {
        let value: serde_json::Value =
            serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
        let (_, i) = self
            .index
            .iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("{kind:?} compiled"));
        self.schemas
            .validate(&value, *i)
            .map_err(|e| format!("{e:#}"))
    }
}

#[test]
fn shipped_schemas_are_what_portflow_schema_prints() {
    for kind in SchemaKind::ALL {
        let path = repo().join("docs/schema").join(kind.file_name());
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == schema_text(kind),
            "{} is out of date; regenerate it with\n  cargo run --bin portflow -- schema {} --out {}",
            path.display(),
            kind.name(),
            Path::new("docs/schema").join(kind.file_name()).display()
        );
    }
    // The command prints exactly that text.
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run(portflow(&tmp.path().join("state")).args(["schema", "workflow"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), schema_text(SchemaKind::Workflow));
    let out = tmp.path().join("run.schema.json");
    let o = run(portflow(&tmp.path().join("state"))
        .args(["schema", "run", "--out"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read(&out), schema_text(SchemaKind::Run));
    let o = run(portflow(&tmp.path().join("state")).args(["schema", "plan"]));
    assert_eq!(o.status.code(), Some(2), "an unknown kind is a usage error");
    let o = run(portflow(&tmp.path().join("state"))
        .args(["schema", "run", "--out"])
        .arg(tmp.path().join("no/such/dir/run.schema.json")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
}

#[test]
fn every_shipped_yaml_names_its_schema_and_validates_against_it() {
    let v = Validator::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut files = yaml_files("workflows");
    files.extend(yaml_files("examples"));
    let mut seen = Vec::new();
    for path in &files {
        let text = read(path);
        let kind = kind_of(&text);
        seen.push(kind);
        let want = format!(
            "# yaml-language-server: $schema=../docs/schema/{}",
            kind.file_name()
        );
        assert_eq!(
            text.lines().next(),
            Some(want.as_str()),
            "{}: the first line names the schema",
            path.display()
        );
        if let Err(e) = v.check(kind, &text) {
            panic!("{} does not match its schema:\n{e}", path.display());
        }
        // The loader agrees that it is valid.
        let o = run(portflow(&tmp.path().join("state"))
            .arg("validate")
            .arg(path));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    for kind in SchemaKind::ALL {
        assert!(seen.contains(&kind), "a shipped file of kind {kind:?}");
    }
}

#[test]
fn built_in_workflows_are_the_shipped_files_and_load_with_the_schema_line() {
    for path in yaml_files("workflows") {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = portflow::spec::builtin::workflow_text(&name)
            .unwrap_or_else(|| panic!("{name} is built in"));
        assert_eq!(text, read(&path), "{name}: the built-in copy is the file");
        let loaded = portflow::spec::parse_workflow(text, &portflow::spec::builtin::origin(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // A run pins this text and its hash; the comment line is part of both.
        assert_eq!(loaded.text, text);
        assert_eq!(loaded.hash, portflow::spec::load::sha256_hex(text));
    }
}

/// Schema and loader decide alike on each case: (kind, file text, valid?).
#[test]
fn bad_files_are_rejected_by_the_schema_and_the_loader_alike() {
    let v = Validator::new();
    let workflow = "name: w\nversion: 1\nsubject: user\ninputs:\n  user: {type: upn}\n\
                    steps:\n  - id: look\n    action: {op: get_user, args: {user: \"${inputs.user}\"}}\n";
    let run_file = "workflow: w.yaml\nsubjects:\n  - {user: a@contoso.com}\n";
    let schedule =
        "name: nightly\ncron: \"0 22 * * *\"\ntimezone: UTC\nlaunch: {run_file: run.yaml}\n";
    let cases: Vec<(SchemaKind, String, bool)> = vec![
        (SchemaKind::Workflow, workflow.to_string(), true),
        (
            SchemaKind::Workflow,
            format!("{workflow}stepz: []\n"),
            false,
        ),
        (
            SchemaKind::Workflow,
            workflow.replace("version: 1", "version: one"),
            false,
        ),
        (
            SchemaKind::Workflow,
            workflow.replace("{type: upn}", "{type: phone}"),
            false,
        ),
        (
            SchemaKind::Workflow,
            workflow.replace("op: get_user", "op: get_usr"),
            false,
        ),
        (
            SchemaKind::Workflow,
            format!("{workflow}    retry: {{attempts: 2, initial: 10}}\n"),
            false,
        ),
        (
            SchemaKind::Workflow,
            format!("{workflow}    retry: {{attempts: 2, initial: 10s, on: [throttled]}}\n"),
            true,
        ),
        (SchemaKind::Run, run_file.to_string(), true),
        // A plain scalar is text to the loader: `2024` is the label "2024".
        (SchemaKind::Run, format!("{run_file}label: 2024\n"), true),
        (SchemaKind::Run, format!("{run_file}labels: x\n"), false),
        (
            SchemaKind::Run,
            format!("{run_file}concurrency: five\n"),
            false,
        ),
        (
            SchemaKind::Run,
            format!("{run_file}call_timeout: 90\n"),
            false,
        ),
        (
            SchemaKind::Run,
            format!("{run_file}stop_after_failures: 5%\n"),
            true,
        ),
        (
            SchemaKind::Run,
            format!("{run_file}backend: {{kind: sim, seeds: 4}}\n"),
            false,
        ),
        (
            SchemaKind::Run,
            format!("{run_file}backend: {{kind: cloud}}\n"),
            false,
        ),
        (
            SchemaKind::Run,
            run_file.replace("a@contoso.com}", "a@contoso.com, number: +14255550100}"),
            false,
        ),
        (SchemaKind::Schedule, schedule.to_string(), true),
        (
            SchemaKind::Schedule,
            format!("schedules:\n  - {}", schedule.replace('\n', "\n    ")),
            true,
        ),
        (
            SchemaKind::Schedule,
            format!("{schedule}when: never\n"),
            false,
        ),
        (
            SchemaKind::Schedule,
            schedule.replace("{run_file: run.yaml}", "{}"),
            false,
        ),
        (
            SchemaKind::Schedule,
            schedule.replace(
                "{run_file: run.yaml}",
                "{run_file: run.yaml, next_wave: {run_file: run.yaml, size: 5}}",
            ),
            false,
        ),
        (
            SchemaKind::Schedule,
            format!("{schedule}overlap: sometimes\n"),
            false,
        ),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("w.yaml"), workflow).expect("write");
    std::fs::write(tmp.path().join("run.yaml"), run_file).expect("write");
    for (i, (kind, text, valid)) in cases.iter().enumerate() {
        let by_schema = v.check(*kind, text);
        assert_eq!(
            by_schema.is_ok(),
            *valid,
            "case {i} ({kind:?}):\n{text}\n{by_schema:?}"
        );
        let file = tmp.path().join(format!("case{i}.yaml"));
        std::fs::write(&file, text).expect("write");
        let o = run(portflow(&tmp.path().join("state"))
            .arg("validate")
            .arg(&file));
        assert_eq!(
            o.status.code() == Some(0),
            *valid,
            "case {i}: the loader decides alike:\n{text}\n{}",
            stderr(&o)
        );
    }
}

#[test]
fn validate_checks_a_schedule_file_and_the_run_files_it_launches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let o = run(portflow(&state)
        .arg("validate")
        .arg(repo().join("examples/schedules.yaml")));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("schedules.yaml: ok"), "{}", stdout(&o));
    let o = run(portflow(&state)
        .args(["--json", "validate"])
        .arg(repo().join("examples/schedules.yaml")));
    assert_eq!(json(&o)[0]["kind"], "Schedules", "{}", stdout(&o));

    // A bad cron field, at its column; a run file that does not load, at its key.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "schedules:\n  - name: nightly\n    cron: \"0 25 * * *\"\n    timezone: UTC\n    \
         launch: {run_file: run.yaml}\n",
    )
    .expect("write");
    let o = run(portflow(&state).arg("validate").arg(&bad));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.yaml:3:14:"), "{}", stderr(&o));
    std::fs::write(
        tmp.path().join("run.yaml"),
        "workflow: nowhere\nsubjects:\n  - {user: a@contoso.com}\n",
    )
    .expect("write");
    std::fs::write(
        &bad,
        "name: nightly\ncron: \"0 22 * * *\"\ntimezone: UTC\nlaunch:\n  run_file: run.yaml\n",
    )
    .expect("write");
    let o = run(portflow(&state).arg("validate").arg(&bad));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml:5:13:") && err.contains("does not load") && err.contains("nowhere"),
        "{err}"
    );
}

const SUBCOMMANDS: &[&str] = &[
    "validate",
    "run",
    "resume",
    "status",
    "schedule",
    "schema",
    "completions",
    "man",
];

#[test]
fn completion_scripts_are_generated_for_each_shell() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let marks = [
        ("bash", "complete -F"),
        ("zsh", "#compdef portflow"),
        ("fish", "complete -c portflow"),
        ("powershell", "Register-ArgumentCompleter"),
    ];
    for (shell, mark) in marks {
        let o = run(portflow(&tmp.path().join("state")).args(["completions", shell]));
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(mark), "{shell}: no `{mark}`");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no `{sub}`");
        }
        if shell == "bash" {
            let file = tmp.path().join("portflow.bash");
            std::fs::write(&file, &script).expect("write");
            match std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
            {
                Ok(o) => assert!(o.status.success(), "bash -n: {}", stderr(&o)),
                Err(e) => eprintln!("bash not available ({e}); syntax not checked"),
            }
        }
    }
    let o = run(portflow(&tmp.path().join("state")).args(["completions", "tcsh"]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_render_for_portflow_and_every_subcommand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let o = run(portflow(&state).arg("man"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.contains(".TH portflow 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("portflow\\-{sub}(1)")),
            "main page lists {sub}"
        );
    }
    let dir = tmp.path().join("man");
    let o = run(portflow(&state).arg("man").arg("--out").arg(&dir));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("man dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let top = ["portflow.1".to_string()];
    let subs = [
        "run",
        "schedule",
        "schedule-add",
        "sim-init",
        "schema",
        "man",
    ];
    for want in top
        .iter()
        .cloned()
        .chain(subs.iter().map(|s| format!("portflow-{s}.1")))
    {
        assert!(pages.contains(&want), "{want} in {pages:?}");
        let text = read(&dir.join(&want));
        assert!(text.contains(".TH "), "{want} has the roff header");
    }
    assert!(
        !pages.iter().any(|p| p.contains("help")),
        "no page for clap's help: {pages:?}"
    );
    let blocked = tmp.path().join("file");
    std::fs::write(&blocked, "").expect("write");
    let o = run(portflow(&state).arg("man").arg("--out").arg(&blocked));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write man pages"),
        "{}",
        stderr(&o)
    );
}

/// The README's quick start is `cargo run --release -- run …`: with two
/// binaries in the crate, cargo picks one only through `default-run`.
#[test]
fn the_quick_start_command_names_a_binary_cargo_run_can_pick() {
    let manifest = read(&repo().join("Cargo.toml"));
    let bins = manifest.matches("[[bin]]").count();
    assert!(bins >= 1, "{manifest}");
    if bins > 1 {
        assert!(
            manifest.contains("default-run = \"portflow\""),
            "{bins} binaries and no `default-run = \"portflow\"`: `cargo run -- run …` fails"
        );
    }
    let readme = read(&repo().join("README.md"));
    assert!(
        readme.contains("cargo run --release -- run examples/"),
        "the quick start moved"
    );
}
