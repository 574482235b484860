//! `plan`: validate a run file, then preflight every subject against
//! the tenant with read-only calls, and print the branch each will take, its
//! steps and every blocker. Nothing is created or changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{App, Error, Result};
use crate::backend::{Operation, Tenant};
use crate::clock::{SharedClock, SystemClock, Timestamp};
use crate::report::exit;
use crate::report::plan_report::{PlanReport, PlanRow};
use crate::report::run_report::Format as ReportFormat;
use crate::report::table::{human_duration, Table};
use crate::spec::model::{ActionSpec, Workflow};
use crate::spec::runfile::Subject;
use crate::spec::{compose, LoadedRun};

/// What one step will do for one subject.
#[derive(Debug, Clone, serde::Serialize)]
struct PlannedStep {
    step: String,
    /// `run`, `skip`, `manual`, `approval`, `signal`, `check`, `observe`.
    will: String,
    detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
struct SubjectPlan {
    subject: String,
    #[serde(skip)]
    inputs: serde_json::Map<String, Value>,
    steps: Vec<PlannedStep>,
    blockers: Vec<String>,
}

impl SubjectPlan {
    /// The steps it will go through (not those skipped or only checked).
    fn path(&self) -> Vec<String> {
        let mut path: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.will != "skip" && s.will != "check")
            .map(|s| s.step.clone())
            .collect();
        path.dedup();
        path
    }
}

/// Expression context as the engine builds it, from what was observed so far.
fn context(
    inputs: &serde_json::Map<String, Value>,
    outputs: &BTreeMap<String, Value>,
    subject: &str,
) -> Value {
    let steps: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), json!({"output": v, "observed": Value::Null})))
        .collect();
    json!({"inputs": inputs, "steps": steps, "subject": subject, "obs": Value::Null})
}

fn render(spec: &ActionSpec, ctx: &Value) -> Result<Operation, String> {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), Value::String(spec.op.info().name.into()));
    for (name, tpl) in &spec.args {
        let v = tpl
            .render(ctx)
            .map_err(|e| format!("argument `{name}`: {e}"))?;
        if !v.is_null() {
            obj.insert(name.clone(), v);
        }
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| format!("{}: {e}", spec.op))
}

/// Subjects planned at once (in order of the run file all the same).
const PLAN_CONCURRENCY: usize = 8;

/// Reads a plan retries when the service pushes back, and how often.
const READ_TRIES: u32 = 5;

/// One observation, retried on throttling and unavailability (a real
/// tenant's 429 must not show up as a blocker).
async fn read(
    tenant: &dyn Tenant,
    op: Operation,
    clock: &SharedClock,
) -> std::result::Result<Value, crate::backend::BackendError> {
    use crate::backend::ErrorKind;
    let call = crate::backend::Call::observation(op);
    let mut tries = 1;
    loop {
        match tenant.execute(&call).await {
            Err(e)
                if tries < READ_TRIES
                    && matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient) =>
            {
                let pause = e
                    .retry_after()
                    .unwrap_or(std::time::Duration::from_secs(1 << tries))
                    .min(std::time::Duration::from_secs(60));
                clock.sleep_until(clock.now().plus(pause)).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

async fn plan_subject(
    wf: &Workflow,
    approvals: &[String],
    clock: &SharedClock,
    tenant: &dyn Tenant,
    subject: &Subject,
    subject_key: &str,
) -> SubjectPlan {
    let mut inputs = serde_json::Map::new();
    for name in wf.inputs.keys() {
        inputs.insert(
            name.clone(),
            subject
                .inputs
                .get(name)
                .map_or(Value::Null, |s| Value::String(s.clone())),
        );
    }
    let name = subject.inputs.get(subject_key).cloned().unwrap_or_default();
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut plan = SubjectPlan {
        subject: name.clone(),
        inputs: inputs.clone(),
        steps: Vec::new(),
        blockers: Vec::new(),
    };
    // Once a step changes the tenant, later conditions are predictions.
    let mut predicted = false;
    for step in &wf.steps {
        let ctx = context(&inputs, &outputs, &name);
        // An expression is known now if every step it reads was observed here:
        // inputs, and reads made before any change, are what the run will see
        // too, even past a change (observations are only made before one).
        let known = |e: &crate::spec::expr::Expr| {
            e.paths().iter().all(|p| {
                p.first().map(String::as_str) != Some("steps")
                    || (p.get(1).is_some_and(|id| outputs.contains_key(id))
                        && p.get(2).map(String::as_str) != Some("observed"))
            })
        };
        let mut push = |will: &str, detail: String| {
            plan.steps.push(PlannedStep {
                step: step.id.clone(),
                will: will.into(),
                detail,
            })
        };
        if let Some(cond) = &step.when {
            match cond.eval_bool(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let note = if known(cond) { "" } else { " (predicted)" };
                    push("skip", format!("`{}` is false{note}", cond.source()));
                    continue;
                }
                Err(e) => {
                    plan.blockers
                        .push(format!("{}: condition `{}`: {e}", step.id, cond.source()));
                    push("skip", "condition cannot be evaluated".into());
                    continue;
                }
            }
        }
        if let Some(check) = &step.check {
            match check.require.eval_bool(&ctx) {
                Ok(true) => push("check", format!("ok: `{}`", check.require.source())),
                Ok(false) if known(&check.require) => {
                    let msg = check.message.render_text(&ctx);
                    plan.blockers.push(format!("{}: {msg}", step.id));
                    push("check", format!("REFUSED: {msg}"));
                    break;
                }
                Ok(false) => push(
                    "check",
                    format!("depends on earlier changes: `{}`", check.require.source()),
                ),
                Err(e) => plan.blockers.push(format!(
                    "{}: check `{}`: {e}",
                    step.id,
                    check.require.source()
                )),
            }
        }
        if let Some(gate) = &step.gate {
            match (&gate.signal, approvals.iter().any(|a| a == &step.id)) {
                (Some(sig), _) => push(
                    "signal",
                    format!("waits for signal `{sig}`: {}", gate.message()),
                ),
                (None, true) => push("approval", "approved in the run file".into()),
                (None, false) => push(
                    "approval",
                    format!(
                        "waits for `portflow approve --step {}`: {}",
                        step.id,
                        gate.message()
                    ),
                ),
            }
        }
        if let Some(manual) = &step.manual {
            let text = manual.instructions.render_text(&ctx);
            push(
                "manual",
                format!("a person does it, then `signal … done`: {text}"),
            );
        }
        // An operation this backend cannot do, on the path: blocked here,
        // before anything changes, rather than stuck mid-way in the run.
        if let Some((op, needs)) = step_needs(step, tenant) {
            let info = op.info();
            let msg = format!(
                "{}: {} is not available on this backend: needs {needs} ({})",
                step.id,
                info.name,
                info.cmdlet.unwrap_or(info.microsoft)
            );
            push("blocked", msg.clone());
            plan.blockers.push(msg);
            break;
        }
        if let Some(action) = &step.action {
            let info = action.op.info();
            match render(action, &ctx) {
                Err(e) => plan.blockers.push(format!("{}: {e}", step.id)),
                Ok(op) if info.observation && !predicted => match read(tenant, op, clock).await {
                    Ok(v) => {
                        push("observe", format!("{} ({}): read now", info.name, info.microsoft));
                        outputs.insert(step.id.clone(), v);
                    }
                    Err(e) => {
                        plan.blockers.push(format!("{}: {} failed: {e}", step.id, info.name));
                        push("observe", format!("FAILED: {e}"));
                        break;
                    }
                },
                Ok(_) if !tenant.automates(action.op) => push(
                    "manual",
                    format!(
                        "{} cannot be automated on this backend: a person does it ({}), then `signal … done`",
                        info.name,
                        info.manual.unwrap_or(info.microsoft)
                    ),
                ),
                Ok(op) => {
                    if !info.observation {
                        predicted = true;
                    }
                    let args = serde_json::to_value(&op).unwrap_or(Value::Null);
                    push(
                        "run",
                        format!(
                            "{} ({}){}{} {args}",
                            info.name,
                            info.microsoft,
                            if info.idempotent { "" } else { " [not idempotent: never repeated]" },
                            if info.outage { " [number out of service from here]" } else { "" },
                        ),
                    );
                }
            }
        }
        if let Some(wait) = &step.wait {
            let op = wait.observe.op;
            if !tenant.automates(op) && op.info().observation {
                // Nothing here can read it: only a signal can end the wait.
                let Some(sig) = &wait.signal else {
                    let msg = format!(
                        "{}: {} cannot be read on this backend ({}) and the wait has no `signal`",
                        step.id,
                        op.info().name,
                        op.info().microsoft
                    );
                    push("blocked", msg.clone());
                    plan.blockers.push(msg);
                    break;
                };
                push(
                    "wait",
                    format!(
                        "for signal `{sig}` only: {} cannot be read on this backend ({}); \
                         `portflow signal <run> <subject> {sig}` once it is confirmed; timeout {}",
                        op.info().name,
                        op.info().microsoft,
                        human_duration(wait.timeout)
                    ),
                );
                continue;
            }
            let sig = wait
                .signal
                .as_ref()
                .map_or(String::new(), |s| format!(" or signal `{s}`"));
            push(
                "wait",
                format!(
                    "until `{}`{sig}: expected {}, timeout {} then {:?}",
                    wait.until.source(),
                    human_duration(wait.expected),
                    human_duration(wait.timeout),
                    wait.on_timeout
                ),
            );
        }
    }
    plan
}

/// The first operation of `step` (action, wait, undo and its wait) that
/// `tenant` cannot perform, with the backend it needs.
fn step_needs(
    step: &crate::spec::model::Step,
    tenant: &dyn Tenant,
) -> Option<(crate::backend::OperationKind, &'static str)> {
    step.operations()
        .into_iter()
        .find_map(|op| tenant.needs(op).map(|n| (op, n)))
}

/// What `plan` prints for a loaded run file, and its exit code: text, JSON
/// (`app.json`), or with `format` the preflight report as CSV or HTML.
pub async fn plan_loaded(
    app: &App,
    loaded: &LoadedRun,
    format: Option<ReportFormat>,
) -> Result<(String, u8)> {
    use std::fmt::Write;
    let mut out = String::new();
    let then: Vec<Workflow> = loaded.then.iter().map(|w| w.workflow.clone()).collect();
    let wf = compose(&loaded.workflow.workflow, &then);
    let clock: SharedClock = Arc::new(SystemClock);
    let opened = super::backends::PlanTenant::open(app, loaded, clock.clone())?;
    let note = opened.note.clone();
    let Some(tenant) = opened.tenant() else {
        return Err(Error::runtime("no tenant to plan against"));
    };
    let started: Timestamp = clock.now();
    // A few subjects at a time: a real tenant answers in ~100 ms per read,
    // and the backend's own cap bounds the requests in flight.
    use futures_util::stream::{self, StreamExt};
    // By index: a closure over `&Subject` is not general enough for the
    // daemon's `Send` handler.
    let plans: Vec<SubjectPlan> = stream::iter(0..loaded.subjects.len())
        .map(|i| {
            plan_subject(
                &wf,
                &loaded.file.approvals,
                &clock,
                tenant,
                &loaded.subjects[i],
                &wf.subject,
            )
        })
        .buffered(PLAN_CONCURRENCY)
        .collect()
        .await;
    let reads = opened.close();
    let none_blocked = plans.iter().all(|p| p.blockers.is_empty());
    let blocked: Vec<&SubjectPlan> = plans.iter().filter(|p| !p.blockers.is_empty()).collect();
    let mut grouped: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for p in &blocked {
        for b in &p.blockers {
            let key = b.replace(&p.subject, "<subject>");
            let e = grouped.entry(key).or_insert((0, p.subject.clone()));
            e.0 += 1;
        }
    }
    if let Some(f @ (ReportFormat::Csv | ReportFormat::Html)) = format {
        let report = PlanReport {
            run_file: loaded.origin.clone(),
            workflow: (wf.name.clone(), wf.version, loaded.workflow.hash.clone()),
            tenant: note,
            planned_at: started,
            inputs: wf.inputs.keys().cloned().collect(),
            subjects: plans
                .iter()
                .map(|p| PlanRow {
                    path: p.path(),
                    subject: p.subject.clone(),
                    inputs: p.inputs.clone(),
                    blockers: p.blockers.clone(),
                })
                .collect(),
        };
        // The operator's zone when chosen, else the run file's window's.
        let window_zone = loaded.file.window.as_ref().and_then(|w| w.zone());
        let zone = match (app.zone_chosen, window_zone) {
            (false, Some(z)) => z,
            _ => app.zone.tz(),
        };
        out = match f {
            ReportFormat::Html => report.to_html(zone),
            _ => report
                .to_csv()
                .map_err(|e| Error::runtime(format!("writing the CSV plan: {e}")))?,
        };
    } else if app.json || format == Some(ReportFormat::Json) {
        out.push_str(&pretty(&json!({
            "run_file": loaded.origin,
            "workflow": {"name": wf.name, "version": wf.version, "hash": loaded.workflow.hash},
            "then": loaded.then.iter().map(|w| json!({"name": w.workflow.name, "hash": w.hash})).collect::<Vec<_>>(),
            "tenant": note,
            "subjects": plans.len(),
            "ready": plans.len() - blocked.len(),
            "blocked": blocked.len(),
            "plans": plans,
            "reads": reads,
            "planned_at": started,
        })));
    } else {
        let _ = writeln!(
            out,
            "plan for {} ({} v{}, {}), against {note}: nothing is changed",
            loaded.origin,
            wf.name,
            wf.version,
            &loaded.workflow.hash[..12.min(loaded.workflow.hash.len())]
        );
        let mut branches: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for p in &plans {
            let path = p.path();
            branches
                .entry(path.join(" → "))
                .or_default()
                .push(&p.subject);
        }
        for (path, subs) in &branches {
            let _ = writeln!(
                out,
                "\n{} subject(s), e.g. {}:\n  {path}",
                subs.len(),
                subs[0]
            );
        }
        if let Some(p) = plans.first() {
            let _ = writeln!(out, "\nsteps for {}:", p.subject);
            let mut t = Table::new(["step", "will", "detail"]);
            for s in &p.steps {
                t.row([s.step.clone(), s.will.clone(), s.detail.clone()]);
            }
            out.push_str(&t.render());
        }
        let _ = writeln!(
            out,
            "\n{} subject(s) ready, {} blocked",
            plans.len() - blocked.len(),
            blocked.len()
        );
        if !grouped.is_empty() {
            let mut t = Table::new(["count", "blocker", "e.g."]);
            for (k, (n, first)) in &grouped {
                t.row([n.to_string(), k.clone(), first.clone()]);
            }
            out.push_str(&t.render());
            let _ = writeln!(
                out,
                "`portflow --json plan {}` lists every subject's blockers",
                loaded.origin
            );
        }
    }
    let code = if none_blocked { exit::OK } else { exit::FAILED };
    Ok((out, code))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()) + "\n"
}
