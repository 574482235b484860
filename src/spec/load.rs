//! Loading workflows and run files with diagnostics that point at the problem.
//!
//! Each file goes through: a position map ([`PosMap`], also catching duplicate
//! keys) → serde (shape, types, unknown fields; its error is re-pointed at the
//! offending node) → semantic validation (all problems, not just the first).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::builtin;
use super::diag::{Diagnostic, SpecError};
use super::expr::Expr;
use super::limits::{MAX_THEN, MAX_YAML_BYTES, MAX_YAML_DEPTH};
use super::locate::{is_under, join_key, Pos, PosMap, Style};
use super::model::Workflow;
use super::runfile::{RunFile, Subject};
use super::source::{read_text, yaml_text};
use super::subjects::load_subjects;
use super::template::Template;
use super::validate::{fast_poll_warnings, outage_warnings, validate_workflow};

/// A parsed and validated workflow, with the text it came from.
#[derive(Clone, Debug)]
pub struct LoadedWorkflow {
    /// The workflow.
    pub workflow: Workflow,
    /// Its exact source text (pinned by runs).
    pub text: String,
    /// SHA-256 of `text`, lowercase hex.
    pub hash: String,
    /// Where it came from: a path, or `builtin:<name>.yaml`.
    pub origin: String,
    /// Problems that do not stop it from running (see [`outage_warnings`]).
    pub warnings: Vec<Diagnostic>,
    /// Warnings only for a run on a real tenant: sub-second polls (see
    /// [`fast_poll_warnings`]).
    pub real_tenant_warnings: Vec<Diagnostic>,
}

/// A parsed and validated run file, with its workflow and subjects.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    /// The run file.
    pub file: RunFile,
    /// Its path as given.
    pub origin: String,
    /// Its source text.
    pub text: String,
    /// The workflow it names, loaded and valid.
    pub workflow: LoadedWorkflow,
    /// Workflows whose steps follow (`then:`), loaded and valid.
    pub then: Vec<LoadedWorkflow>,
    /// Every subject, checked against the workflow's inputs.
    pub subjects: Vec<Subject>,
}

impl LoadedRun {
    /// Warnings of the workflow and of the `then:` workflows, in order, with
    /// those that apply to the run's backend.
    pub fn warnings(&self) -> Vec<Diagnostic> {
        let real = !matches!(
            self.file.backend,
            crate::backend::config::BackendConfig::Sim(_)
        );
        std::iter::once(&self.workflow)
            .chain(&self.then)
            .flat_map(|w| {
                let extra = if real {
                    &w.real_tenant_warnings[..]
                } else {
                    &[]
                };
                w.warnings.iter().chain(extra).cloned()
            })
            .collect()
    }
}

/// What kind of spec file a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecKind {
    /// A workflow (has top-level `steps`).
    Workflow,
    /// A run file (has top-level `subjects`).
    RunFile,
    /// A schedule file (top-level `schedules`, or one schedule with `launch`).
    Schedules,
}

/// SHA-256 of `text` as lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read a workflow, run or schedule file (see [`read_text`]).
pub(super) fn read(path: &Path) -> Result<String, SpecError> {
    read_text(path, MAX_YAML_BYTES, "file")
}

pub(super) fn diag(file: &str, p: Pos, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(file, p.line, p.col, msg)
}

/// Check `text` and build its position map. Returns the text serde must parse
/// (without a byte-order mark), the map, and duplicate keys as diagnostics.
pub(super) fn position_map<'a>(
    text: &'a str,
    file: &str,
) -> Result<(&'a str, PosMap, Vec<Diagnostic>), SpecError> {
    let text = yaml_text(text, file)?;
    let map = PosMap::build(text).map_err(|(p, msg)| {
        // yaml-rust2's own limit on nested flow collections (255) says only this.
        let msg = if msg == "recursion limit exceeded" {
            format!("nested more than {MAX_YAML_DEPTH} levels deep")
        } else {
            msg
        };
        SpecError::one(diag(file, p, format!("invalid YAML: {msg}")))
    })?;
    let dups = map
        .duplicates
        .iter()
        .map(|d| {
            diag(
                file,
                d.pos,
                format!("duplicate key `{}` (first on line {})", d.key, d.first.line),
            )
        })
        .collect();
    Ok((text, map, dups))
}

/// Strip serde_yaml's ` at line N column M` / ` at position N` suffix.
fn strip_location(msg: &str) -> &str {
    if let Some(i) = msg.rfind(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        if rest
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return &msg[..i];
        }
    }
    if let Some(i) = msg.rfind(" at position ") {
        if msg[i + " at position ".len()..]
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            return &msg[..i];
        }
    }
    msg
}

/// Split `path: message` as serde_yaml writes it.
fn split_path(msg: &str) -> (Option<&str>, &str) {
    if let Some((p, m)) = msg.split_once(": ") {
        let is_path = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c));
        if is_path {
            return (Some(p), m);
        }
    }
    (None, msg)
}

/// The name between the first pair of backticks.
fn backticked(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

/// Turn a serde error into a diagnostic pointing at the node concerned.
/// `None` when the error only repeats a duplicate key already reported.
pub(super) fn serde_diag(err: &serde_yaml::Error, map: &PosMap, file: &str) -> Option<Diagnostic> {
    let full = err.to_string();
    let (path, msg) = split_path(strip_location(&full));
    let at_path = path.unwrap_or(".");
    let loc = err
        .location()
        .map(|l| Pos {
            line: l.line(),
            col: l.column(),
        })
        .filter(|p| *p != Pos::START);
    let fallback = loc.unwrap_or_else(|| map.at(at_path));
    let with_path = |m: &str| match path {
        Some(p) => format!("{p}: {m}"),
        None => m.to_string(),
    };

    if msg.starts_with("duplicate field") && !map.duplicates.is_empty() {
        return None;
    }
    if msg.starts_with("unknown field") || msg.starts_with("duplicate field") {
        if let Some(name) = backticked(msg) {
            let exact = map.key(&join_key(at_path, name));
            let anywhere = || {
                let found = map.find_key(name);
                found
                    .iter()
                    .find(|(p, _)| is_under(p, at_path))
                    .or(found.first())
                    .map(|(_, pos)| *pos)
            };
            let p = exact.or_else(anywhere).unwrap_or(fallback);
            return Some(diag(file, p, with_path(msg)));
        }
    }
    if msg.starts_with("missing field") {
        return Some(diag(file, map.at(at_path), with_path(msg)));
    }
    // Conditions and templates: point inside the scalar at the offending character.
    for (kind, is_cond) in [("in condition ", true), ("in template ", false)] {
        if let Some(rest) = msg.strip_prefix(kind) {
            for (p, text) in map.scalars_under(at_path) {
                if rest.starts_with(&format!("{text:?} at character")) {
                    let (offset, m) = if is_cond {
                        match Expr::parse(text) {
                            Err(e) => (e.offset, e.message),
                            Ok(_) => (0, msg.to_string()),
                        }
                    } else {
                        match Template::parse(text) {
                            Err(e) => (e.offset, e.message),
                            Ok(_) => (0, msg.to_string()),
                        }
                    };
                    let what = if is_cond { "condition" } else { "template" };
                    return Some(diag(
                        file,
                        map.at_offset(&p, offset),
                        format!("{p}: invalid {what}: {m}"),
                    ));
                }
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid duration ") {
        for (p, text) in map.scalars_under(at_path) {
            if rest.starts_with(&format!("{text:?}:")) {
                return Some(diag(file, map.at(&p), format!("{p}: {msg}")));
            }
        }
    }
    if msg.starts_with("an argument must be a single value") {
        let bad = map
            .children(at_path)
            .into_iter()
            .map(|(k, _)| join_key(at_path, &k))
            .filter(|p| map.scalar(p).is_none())
            .min_by_key(|p| map.at(p));
        if let Some(p) = bad {
            return Some(diag(file, map.at(&p), format!("{p}: {msg}")));
        }
    }
    if msg.starts_with("unknown variant") && at_path.ends_with("op") {
        let m = msg.replacen("unknown variant", "unknown operation", 1);
        return Some(diag(file, fallback, with_path(&m)));
    }
    if msg.contains("untagged enum SubjectsSpec") {
        return Some(explain_subjects(map, file));
    }
    Some(diag(file, fallback, with_path(msg)))
}

/// Why `subjects:` is neither a list of subjects nor `{csv: path}`.
fn explain_subjects(map: &PosMap, file: &str) -> Diagnostic {
    const USAGE: &str = "subjects must be a list of input maps or {csv: path}";
    if !map.has("subjects[0]") && !map.has("subjects.csv") {
        let first = map.children("subjects").into_iter().min_by_key(|(_, p)| *p);
        if let Some((k, pos)) = first {
            return diag(file, pos, format!("subjects: unknown key `{k}` ({USAGE})"));
        }
    }
    for (p, _) in map.scalars_under("subjects") {
        if p.matches('[').count() == 1 && p.contains("].") {
            // A value inside an inline subject: plain YAML numbers and booleans
            // are not text (`+14255550100` would lose its `+`).
            let text = map.scalar(&p).unwrap_or_default();
            let pos = map.at(&p);
            let numeric = text
                .trim_start_matches(['+', '-'])
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
            let keyword = matches!(text, "true" | "false" | "null" | "~" | "");
            if (numeric || keyword) && !is_quoted(map, &p) {
                return diag(
                    file,
                    pos,
                    format!("{p}: `{text}` is not text to YAML; quote it: \"{text}\""),
                );
            }
        }
    }
    diag(file, map.at("subjects"), format!("subjects: {USAGE}"))
}

fn is_quoted(map: &PosMap, path: &str) -> bool {
    map.style(path)
        .is_some_and(|s| matches!(s, Style::SingleQuoted | Style::DoubleQuoted))
}

/// Parse and validate a workflow from text; `origin` names it in diagnostics.
pub fn parse_workflow(text: &str, origin: &str) -> Result<LoadedWorkflow, SpecError> {
    let (body, map, mut diags) = position_map(text, origin)?;
    let workflow: Workflow = match serde_yaml::from_str(body) {
        Ok(w) => w,
        Err(e) => {
            diags.extend(serde_diag(&e, &map, origin));
            return Err(fail(diags, origin));
        }
    };
    diags.extend(validate_workflow(&workflow, &map, origin));
    SpecError::check(diags)?;
    let mut warnings = outage_warnings(&workflow, &map, origin);
    warnings.sort();
    let real_tenant_warnings = fast_poll_warnings(&workflow, &map, origin);
    Ok(LoadedWorkflow {
        workflow,
        hash: sha256_hex(text),
        text: text.to_string(),
        origin: origin.to_string(),
        warnings,
        real_tenant_warnings,
    })
}

/// The error for `diags`, which must not be empty (a generic one if it is).
pub(super) fn fail(diags: Vec<Diagnostic>, origin: &str) -> SpecError {
    match SpecError::check(diags) {
        Err(e) => e,
        Ok(()) => SpecError::one(Diagnostic::new(origin, 1, 1, "invalid document")),
    }
}

/// Load and validate the workflow file at `path`.
pub fn load_workflow(path: &Path) -> Result<LoadedWorkflow, SpecError> {
    let text = read(path)?;
    parse_workflow(&text, &path.display().to_string())
}

enum Resolved {
    Found(Box<LoadedWorkflow>),
    NotFound(String),
    Invalid(SpecError),
}

fn resolve(name_or_path: &str, base_dir: &Path, search_dirs: &[PathBuf]) -> Resolved {
    let is_path = name_or_path.contains('/')
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    let done = |r: Result<LoadedWorkflow, SpecError>| match r {
        Ok(w) => Resolved::Found(Box::new(w)),
        Err(e) => Resolved::Invalid(e),
    };
    if is_path {
        let p = base_dir.join(name_or_path);
        if !p.exists() {
            return Resolved::NotFound(format!("workflow file {} does not exist", p.display()));
        }
        return done(load_workflow(&p));
    }
    for dir in search_dirs {
        for ext in ["yaml", "yml"] {
            let p = dir.join(format!("{name_or_path}.{ext}"));
            if p.is_file() {
                return done(load_workflow(&p));
            }
        }
    }
    if let Some(text) = builtin::workflow_text(name_or_path) {
        return done(parse_workflow(text, &builtin::origin(name_or_path)));
    }
    let dirs: Vec<String> = search_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Resolved::NotFound(format!(
        "no workflow named `{name_or_path}` (looked in {}; built-in: {})",
        if dirs.is_empty() {
            "no directories".to_string()
        } else {
            dirs.join(", ")
        },
        builtin::names().join(", ")
    ))
}

/// A credential written as a plain value anywhere under `root` (`.` for the
/// whole file) but for keys in `exempt`: a stored file may hold secret
/// references only.
pub(crate) fn inline_secrets(
    map: &PosMap,
    origin: &str,
    root: &str,
    exempt: &[&str],
) -> Vec<Diagnostic> {
    map.scalars_under(root)
        .into_iter()
        .filter(|(_, value)| !matches!(*value, "" | "~" | "null"))
        .filter(|(path, _)| {
            let last = path.rsplit('.').next().unwrap_or(path);
            let key = last.split('[').next().unwrap_or(last);
            crate::backend::config::is_secret_key(key) && !exempt.contains(&key)
        })
        .map(|(path, _)| {
            diag(
                origin,
                map.at(&path),
                crate::backend::config::inline_secret(&path),
            )
        })
        .collect()
}

/// Find and load a workflow: a path if `name_or_path` contains `/` or ends in
/// `.yaml`/`.yml` (relative to `base_dir`); else `<dir>/<name>.yaml` in
/// `search_dirs`, in order, then the built-in set.
pub fn resolve_workflow(
    name_or_path: &str,
    base_dir: &Path,
    search_dirs: &[PathBuf],
) -> Result<LoadedWorkflow, SpecError> {
    match resolve(name_or_path, base_dir, search_dirs) {
        Resolved::Found(w) => Ok(*w),
        Resolved::Invalid(e) => Err(e),
        Resolved::NotFound(msg) => Err(SpecError::one(Diagnostic::file(name_or_path, msg))),
    }
}

/// Load and validate a run file, its workflow (resolved relative to the run
/// file's directory, then in `search_dirs`, then built in) and its subjects.
pub fn load_run(path: &Path, search_dirs: &[PathBuf]) -> Result<LoadedRun, SpecError> {
    let text = read(path)?;
    load_run_text(path, text, search_dirs)
}

/// Whether `text` has the shape of a run file: a YAML mapping with top-level
/// `workflow` and `subjects`. Decides nothing else about it.
pub fn is_run_file_text(text: &str) -> bool {
    PosMap::build(text).is_ok_and(|m| {
        m.top_keys.iter().any(|k| k == "workflow") && m.top_keys.iter().any(|k| k == "subjects")
    })
}

/// [`load_run`] of `text`, already read from `path`.
pub fn load_run_text(
    path: &Path,
    text: String,
    search_dirs: &[PathBuf],
) -> Result<LoadedRun, SpecError> {
    let origin = path.display().to_string();
    let (body, map, mut diags) = position_map(&text, &origin)?;
    // The run file's text is stored: only secret references under `backend:`.
    let secrets = inline_secrets(&map, &origin, "backend", &[]);
    if !secrets.is_empty() {
        // Stop before serde: its messages may quote the value.
        diags.extend(secrets);
        return Err(fail(diags, &origin));
    }
    let file: RunFile = match serde_yaml::from_str(body) {
        Ok(f) => f,
        Err(e) => {
            diags.extend(serde_diag(&e, &map, &origin));
            return Err(fail(diags, &origin));
        }
    };
    for (path, msg) in file.problems() {
        diags.push(diag(&origin, map.at(&path), msg));
    }
    if file.then.len() > MAX_THEN {
        // Not one of them is loaded.
        return Err(fail(diags, &origin));
    }
    if let super::runfile::BackendConfig::Sim(crate::backend::sim::SimConfig {
        tenant: Some(name),
        ..
    }) = &file.backend
    {
        if let Err(e) = crate::backend::sim::check_tenant_name(name) {
            diags.push(diag(
                &origin,
                map.at("backend.tenant"),
                format!(
                    "backend.tenant: {e} (a tenant name is {})",
                    crate::backend::sim::TENANT_NAME_RULE
                ),
            ));
        }
    }
    let run_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let workflow = match resolve(&file.workflow, &run_dir, search_dirs) {
        Resolved::Found(w) => Some(*w),
        Resolved::NotFound(msg) => {
            diags.push(diag(&origin, map.at("workflow"), msg));
            None
        }
        Resolved::Invalid(e) => {
            diags.push(diag(
                &origin,
                map.at("workflow"),
                format!("workflow `{}` is invalid (see its errors)", file.workflow),
            ));
            diags.extend(e.diagnostics);
            None
        }
    };
    let Some(workflow) = workflow else {
        return Err(fail(diags, &origin));
    };
    let mut then = Vec::new();
    for (i, name) in file.then.iter().enumerate() {
        let p = map.at(&format!("then[{i}]"));
        match resolve(name, &run_dir, search_dirs) {
            Resolved::Found(w) => {
                for problem in compose_problems(&workflow.workflow, &then, &w.workflow) {
                    diags.push(diag(&origin, p, problem));
                }
                then.push(*w);
            }
            Resolved::NotFound(msg) => diags.push(diag(&origin, p, msg)),
            Resolved::Invalid(e) => {
                diags.push(diag(
                    &origin,
                    p,
                    format!("workflow `{name}` is invalid (see its errors)"),
                ));
                diags.extend(e.diagnostics);
            }
        }
    }
    let composite = compose(
        &workflow.workflow,
        &then.iter().map(|w| w.workflow.clone()).collect::<Vec<_>>(),
    );
    let wf = &composite;
    for (i, id) in file.approvals.iter().enumerate() {
        let p = map.at(&format!("approvals[{i}]"));
        match wf.step_index(id) {
            None => diags.push(diag(
                &origin,
                p,
                format!("approval `{id}`: the workflow has no step `{id}`"),
            )),
            Some(s) if wf.steps[s].gate.as_ref().is_none_or(|g| g.approval.is_none()) => diags.push(diag(
                &origin,
                p,
                format!("approval `{id}`: step `{id}` has no approval gate (a signal gate opens with `portflow signal`)"),
            )),
            Some(_) => {}
        }
    }
    let (subjects, sd) = load_subjects(
        &file.subjects,
        &workflow.workflow,
        file.operator.as_ref(),
        &map,
        &origin,
        &run_dir,
    );
    diags.extend(sd);
    SpecError::check(diags)?;
    Ok(LoadedRun {
        file,
        origin,
        text,
        workflow,
        then,
        subjects,
    })
}

/// The workflow a run executes: `main`'s steps followed by each `then`
/// workflow's steps, for the same subject.
pub fn compose(main: &Workflow, then: &[Workflow]) -> Workflow {
    let mut wf = main.clone();
    // The steps change: what reads which observation is worked out again.
    wf.reads = Default::default();
    for (i, t) in then.iter().enumerate() {
        wf.then_on_failure.push(t.on_failure);
        wf.steps.extend(t.steps.iter().cloned().map(|mut s| {
            s.segment = i + 1;
            s
        }));
    }
    wf
}

/// Why `next` cannot follow `main` (and the `then` workflows before it).
fn compose_problems(main: &Workflow, before: &[LoadedWorkflow], next: &Workflow) -> Vec<String> {
    let mut out = Vec::new();
    for (name, spec) in &next.inputs {
        match main.inputs.get(name) {
            Some(m) if m.ty == spec.ty => {}
            Some(m) => out.push(format!(
                "`then: {}`: its input `{name}` is {} but {} has it as {}",
                next.name, spec.ty, main.name, m.ty
            )),
            None if spec.optional => {}
            None => out.push(format!(
                "`then: {}` needs the input `{name}`, which {} does not have",
                next.name, main.name
            )),
        }
    }
    let taken: Vec<&str> = main
        .steps
        .iter()
        .chain(before.iter().flat_map(|w| w.workflow.steps.iter()))
        .map(|s| s.id.as_str())
        .collect();
    for s in &next.steps {
        if taken.contains(&s.id.as_str()) {
            out.push(format!(
                "`then: {}`: its step id `{}` is already used by an earlier workflow",
                next.name, s.id
            ));
        }
    }
    out
}

/// Validate a workflow, run file or schedule file, deciding by its top-level
/// keys (`steps` → workflow, `subjects` → run file, `schedules` or `launch` →
/// schedule file). Returns its kind and its warnings.
pub fn validate_file(
    path: &Path,
    search_dirs: &[PathBuf],
) -> Result<(SpecKind, Vec<Diagnostic>), SpecError> {
    let text = read(path)?;
    let origin = path.display().to_string();
    let (_, map, _) = position_map(&text, &origin)?;
    let has = |k: &str| map.top_keys.iter().any(|t| t == k);
    if has("steps") {
        parse_workflow(&text, &origin).map(|w| (SpecKind::Workflow, w.warnings))
    } else if has("subjects") {
        load_run(path, search_dirs).map(|r| (SpecKind::RunFile, r.warnings()))
    } else if has("schedules") || has("launch") {
        super::schedules::load_schedules(path, search_dirs)
            .map(|_| (SpecKind::Schedules, Vec::new()))
    } else {
        Err(SpecError::one(Diagnostic::new(
            origin,
            1,
            1,
            "cannot tell what this file is: a workflow has `steps`, a run file has `subjects`, \
             a schedule file has `schedules`",
        )))
    }
}
