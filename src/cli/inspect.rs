//! `status` and `show`: read-only views of runs and instances.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::outages::{paused_json, paused_lines, DownNow};
use super::runs::{load_run, pinned_workflow, run_clock};
use super::{exit, App, CliError};
use crate::backend::sim::SimTenant;
use crate::clock::Timestamp;
use crate::engine::instance::{
    Event, EventKind, Instance, Phase, Status, PHASE_NAMES, TERMINAL_NAMES,
};
use crate::engine::run::RunRecord;
use crate::report::table::{human_duration, Table};
use crate::spec::model::Workflow;
use crate::store::keys::InstanceKey;
use crate::store::{records, Store};

/// Counts and failures of one run.
pub struct RunSummary {
    record: RunRecord,
    steps: Vec<String>,
    by_state: BTreeMap<&'static str, usize>,
    /// (step index, phase) → count, for running instances.
    by_step: BTreeMap<usize, BTreeMap<&'static str, usize>>,
    /// Reason → (count, first subject).
    problems: BTreeMap<String, (usize, String)>,
    calls: u64,
    total: usize,
    /// Per step: outcomes and wait durations, from the histories.
    step_stats: Option<Vec<StepStats>>,
    /// Who is out of service now.
    down: DownNow,
    /// The run's clock when the summary was read (durations are measured at it).
    now: Timestamp,
}

/// What happened at one step across a run's instances.
#[derive(Default, Clone)]
struct StepStats {
    done: usize,
    skipped: usize,
    failed: usize,
    retries: usize,
    waits_ms: Vec<u64>,
}

/// Above this many subjects the end-of-run step table is skipped (it reads every history).
const STEP_STATS_LIMIT: usize = 50_000;

impl RunSummary {
    /// Read every instance of the run, and (up to a size) every history for the
    /// per-step statistics.
    pub fn load(
        store: &dyn Store,
        record: &RunRecord,
        wf: &Workflow,
    ) -> Result<RunSummary, CliError> {
        Self::load_with(store, record, wf, true)
    }

    /// Counts only: the instances, no histories (for pages that refresh often).
    pub fn load_counts(
        store: &dyn Store,
        record: &RunRecord,
        wf: &Workflow,
    ) -> Result<RunSummary, CliError> {
        Self::load_with(store, record, wf, false)
    }

    fn load_with(
        store: &dyn Store,
        record: &RunRecord,
        wf: &Workflow,
        histories: bool,
    ) -> Result<RunSummary, CliError> {
        let instances = records::list_instances(store, &record.id)?;
        let mut s = RunSummary {
            record: record.clone(),
            steps: wf.steps.iter().map(|s| s.id.clone()).collect(),
            by_state: BTreeMap::new(),
            by_step: BTreeMap::new(),
            problems: BTreeMap::new(),
            calls: 0,
            total: instances.len(),
            step_stats: None,
            down: DownNow::default(),
            now: run_clock(record).now(),
        };
        for i in &instances {
            s.add(i);
        }
        if histories && instances.len() <= STEP_STATS_LIMIT {
            let mut stats = vec![StepStats::default(); wf.steps.len()];
            let index: BTreeMap<&str, usize> = wf
                .steps
                .iter()
                .enumerate()
                .map(|(i, st)| (st.id.as_str(), i))
                .collect();
            for i in &instances {
                for e in records::list_events(store, &i.key())? {
                    // Compensations are not the step's own work.
                    if matches!(e.kind, EventKind::RollbackStarted { .. }) {
                        break;
                    }
                    let (step, f): (&str, fn(&mut StepStats, &EventKind)) = match &e.kind {
                        EventKind::StepSkipped { step, .. } => (step, |s, _| s.skipped += 1),
                        EventKind::ActionFailed {
                            step,
                            retry_at: Some(_),
                            ..
                        } => (step, |s, _| s.retries += 1),
                        EventKind::Failed { step, .. } | EventKind::NeedsAttention { step, .. } => {
                            (step, |s, _| s.failed += 1)
                        }
                        EventKind::WaitSatisfied { step, .. } => (step, |s, k| {
                            s.done += 1;
                            if let EventKind::WaitSatisfied { waited_ms, .. } = k {
                                s.waits_ms.push(*waited_ms);
                            }
                        }),
                        _ => continue,
                    };
                    if let Some(st) = index.get(step).and_then(|ix| stats.get_mut(*ix)) {
                        f(st, &e.kind);
                    }
                }
            }
            // Steps without a wait are done when their action succeeded and the
            // instance moved on; count those from the action events.
            for (ix, st) in wf.steps.iter().enumerate() {
                if st.wait.is_none() {
                    let moved_on = instances.iter().filter(|i| match &i.status {
                        Status::Succeeded => true,
                        Status::Running { step, .. }
                        | Status::Failed { step, .. }
                        | Status::NeedsAttention { step, .. } => *step > ix,
                        _ => false,
                    });
                    let done = moved_on.count();
                    if let Some(s) = stats.get_mut(ix) {
                        s.done = done.saturating_sub(s.skipped);
                    }
                }
            }
            for st in &mut stats {
                st.waits_ms.sort_unstable();
            }
            s.step_stats = Some(stats);
        }
        Ok(s)
    }

    fn add(&mut self, i: &Instance) {
        *self.by_state.entry(i.status.name()).or_insert(0) += 1;
        self.down.add_instance(i);
        self.calls += u64::from(i.calls);
        match &i.status {
            Status::Running { step, phase } => {
                *self
                    .by_step
                    .entry(*step)
                    .or_default()
                    .entry(phase.name())
                    .or_insert(0) += 1;
            }
            Status::Compensating { step, .. } => {
                *self
                    .by_step
                    .entry(*step)
                    .or_default()
                    .entry("rolling_back")
                    .or_insert(0) += 1;
            }
            Status::Failed { step, error: why }
            | Status::RolledBack { step, error: why }
            | Status::NeedsAttention {
                step, reason: why, ..
            } => {
                let step_id = self.steps.get(*step).cloned().unwrap_or_default();
                // Group by reason: the subject's own values would make every row unique.
                let mut why = why.clone();
                for v in i
                    .inputs
                    .values()
                    .filter_map(Value::as_str)
                    .filter(|v| v.len() > 3)
                {
                    why = why.replace(v, "<…>");
                }
                let short: String = why.chars().take(400).collect();
                let key = format!("{} at {step_id}: {short}", i.status.name());
                let e = self.problems.entry(key).or_insert((0, i.subject.clone()));
                e.0 += 1;
            }
            _ => {}
        }
    }

    /// Failed plus needs-attention instances.
    pub fn failed(&self) -> usize {
        ["failed", "rolled_back", "needs_attention"]
            .iter()
            .map(|k| self.by_state.get(k).copied().unwrap_or(0))
            .sum()
    }

    /// Backend calls per subject over the whole run.
    pub fn calls_per_subject(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.calls as f64 / self.total as f64
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut v = json!({"step": id, "counts": self.by_step.get(&i).cloned().unwrap_or_default()});
                if let Some(st) = self.step_stats.as_ref().and_then(|s| s.get(i)) {
                    let pct = |p: f64| -> Option<u64> {
                        let n = st.waits_ms.len();
                        (n > 0).then(|| st.waits_ms[((n - 1) as f64 * p).round() as usize])
                    };
                    v["done"] = json!(st.done);
                    v["skipped"] = json!(st.skipped);
                    v["failed"] = json!(st.failed);
                    v["retries"] = json!(st.retries);
                    v["wait_ms"] = json!({"p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)});
                }
                v
            })
            .collect();
        let problems: Vec<Value> = self
            .problems
            .iter()
            .map(|(k, (n, first))| json!({"problem": k, "count": n, "example_subject": first}))
            .collect();
        json!({
            "run": self.record.id,
            "label": self.record.label,
            "workflow": {"name": self.record.workflow.name, "version": self.record.workflow.version, "hash": self.record.workflow.hash},
            "created_at": self.record.created_at,
            "finished_at": self.record.finished_at,
            "subjects": self.total,
            "states": self.by_state,
            "steps": steps,
            "problems": problems,
            "backend_calls": self.calls,
            "calls_per_subject": self.calls_per_subject(),
            "out_of_service": self.down.to_json(self.now),
            "paused": paused_json(&self.record),
        })
    }

    /// Human form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let states: Vec<String> = std::iter::once(&"pending")
            .chain(PHASE_NAMES)
            .chain(TERMINAL_NAMES)
            .filter_map(|s| {
                self.by_state
                    .get(s)
                    .map(|n| format!("{n} {}", s.replace('_', " ")))
            })
            .collect();
        out.push_str(&format!(
            "run {} · {} · {} subjects: {}\n",
            self.record.id,
            pins(&self.record),
            self.total,
            if states.is_empty() {
                "none".into()
            } else {
                states.join(", ")
            }
        ));
        // Who is out of service and whether the run is paused come before the tables.
        if let Some(line) = self.down.line(self.now) {
            out.push_str(&format!(
                "{line}; who: portflow outages {}\n",
                self.record.id
            ));
        }
        if let Some(lines) = paused_lines(&self.record) {
            out.push_str(&lines);
            out.push('\n');
        }
        if let Some(stats) = &self.step_stats {
            let mut t = Table::new([
                "step", "done", "skipped", "failed", "retries", "wait p50", "wait p95", "wait max",
            ]);
            let pct = |v: &Vec<u64>, p: f64| -> String {
                if v.is_empty() {
                    return String::new();
                }
                let i = ((v.len() - 1) as f64 * p).round() as usize;
                v.get(i).map_or(String::new(), |ms| {
                    human_duration(Duration::from_millis(*ms))
                })
            };
            for (id, st) in self.steps.iter().zip(stats) {
                let n = |x: usize| if x == 0 { String::new() } else { x.to_string() };
                t.row([
                    id.clone(),
                    n(st.done),
                    n(st.skipped),
                    n(st.failed),
                    n(st.retries),
                    pct(&st.waits_ms, 0.5),
                    pct(&st.waits_ms, 0.95),
                    pct(&st.waits_ms, 1.0),
                ]);
            }
            out.push_str(&t.render());
        }
        if !self.by_step.is_empty() {
            let phases = PHASE_NAMES;
            let mut t = Table::new(std::iter::once("step").chain(phases.iter().copied()));
            for (i, id) in self.steps.iter().enumerate() {
                if let Some(c) = self.by_step.get(&i) {
                    let mut row = vec![id.clone()];
                    row.extend(
                        phases
                            .iter()
                            .map(|p| c.get(p).map_or(String::new(), |n| n.to_string())),
                    );
                    t.row(row);
                }
            }
            out.push_str(&t.render());
        }
        if !self.problems.is_empty() {
            let mut t = Table::new(["count", "problem", "e.g."]);
            for (k, (n, first)) in &self.problems {
                t.row([n.to_string(), k.clone(), first.clone()]);
            }
            out.push_str(&t.render());
        }
        out
    }
}

/// `portflow status`: through the daemon when it holds the state directory.
pub fn status(app: &App, run: Option<&str>) -> Result<u8, CliError> {
    let text = match app.open_store() {
        Ok(store) => status_text(&store, run, app.json)?,
        Err(e) => {
            let query = format!(
                "run={}&json={}",
                super::client::enc(run.unwrap_or("")),
                app.json
            );
            super::client::via_daemon(app, e, "status", &query)?
        }
    };
    print!("{text}");
    Ok(exit::OK)
}

/// What `status` prints.
pub fn status_text(
    store: &dyn Store,
    run: Option<&str>,
    json_out: bool,
) -> Result<String, CliError> {
    let out;
    match run {
        Some(id) => {
            let record = load_run(store, id)?;
            let wf = pinned_workflow(&record)?;
            let s = RunSummary::load(store, &record, &wf)?;
            if json_out {
                out = json_text(&s.to_json());
            } else {
                out = s.render();
            }
        }
        None => {
            let runs = records::list_runs(store)?;
            let mut docs = Vec::new();
            let mut t = Table::new([
                "run",
                "workflow",
                "created",
                "subjects",
                "succeeded",
                "failed",
                "attention",
                "active",
                "finished",
            ]);
            let mut notes = String::new();
            for r in &runs {
                let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
                let mut down = DownNow::default();
                for i in records::list_instances(store, &r.id)? {
                    *counts.entry(i.status.name()).or_insert(0) += 1;
                    down.add_instance(&i);
                }
                let now = run_clock(r).now();
                if let Some(line) = down.line(now) {
                    notes.push_str(&format!("run {}: {line}\n", r.id));
                }
                if let Some(t) = &r.breaker.tripped {
                    notes.push_str(&format!(
                        "run {}: paused after {} failure(s) (threshold {}); continue with: {}\n",
                        r.id,
                        t.failures,
                        t.threshold,
                        super::outages::continue_command(&r.id)
                    ));
                }
                let get = |k: &str| counts.get(k).copied().unwrap_or(0);
                let active = (r.subjects as usize)
                    .saturating_sub(TERMINAL_NAMES.iter().map(|k| get(k)).sum::<usize>());
                t.row([
                    r.id.clone(),
                    r.workflow.name.clone(),
                    r.created_at.rfc3339(),
                    r.subjects.to_string(),
                    get("succeeded").to_string(),
                    get("failed").to_string(),
                    get("needs_attention").to_string(),
                    active.to_string(),
                    r.finished_at.map_or("-".into(), |t| t.rfc3339()),
                ]);
                docs.push(json!({
                    "run": r.id, "label": r.label, "workflow": r.workflow.name,
                    "workflow_hash": r.workflow.hash, "created_at": r.created_at,
                    "finished_at": r.finished_at, "subjects": r.subjects, "states": counts,
                    "out_of_service": down.to_json(now), "paused": paused_json(r),
                }));
            }
            if json_out {
                out = json_text(&json!({"runs": docs}));
            } else if runs.is_empty() {
                out = "no runs yet; start one with: portflow run <run file>\n".into();
            } else {
                out = t.render() + &notes;
            }
        }
    }
    Ok(out)
}

fn json_text(v: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    )
}

/// `portflow show`: through the daemon when it holds the state directory.
pub fn show(app: &App, run: &str, subject: &str) -> Result<u8, CliError> {
    let text = match app.open_store() {
        Ok(store) => show_text(&store, run, subject, app.json)?,
        Err(e) => {
            let query = format!(
                "run={}&subject={}&json={}",
                super::client::enc(run),
                super::client::enc(subject),
                app.json
            );
            super::client::via_daemon(app, e, "show", &query)?
        }
    };
    print!("{text}");
    Ok(exit::OK)
}

/// What `show` prints.
pub fn show_text(
    store: &dyn Store,
    run: &str,
    subject: &str,
    json_out: bool,
) -> Result<String, CliError> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let record = load_run(store, run)?;
    let wf = pinned_workflow(&record)?;
    let idx = records::find_subject(store, run, subject)?
        .ok_or_else(|| CliError::input(format!("run {run} has no subject {subject:?}")))?;
    let key = InstanceKey {
        run: run.into(),
        idx,
    };
    let inst = records::get_instance(store, &key)?.ok_or_else(|| {
        CliError::runtime(format!(
            "subject {subject:?} is indexed but its instance is missing"
        ))
    })?;
    let events = records::list_events(store, &key)?;
    if json_out {
        return Ok(json_text(&json!({
            "run": run,
            "workflow": {"name": record.workflow.name, "version": record.workflow.version, "hash": record.workflow.hash},
            "then": record.then.iter().map(|p| json!({"name": p.name, "version": p.version, "hash": p.hash})).collect::<Vec<_>>(),
            "instance": inst,
            "events": events,
        })));
    }
    let step_name = |i: usize| wf.steps.get(i).map_or("?".to_string(), |s| s.id.clone());
    let _ = writeln!(out, "{subject} · run {run} · {}", pins(&record));
    let detail = match &inst.status {
        Status::Running {
            step,
            phase: Phase::Blocked { gate, signal },
        } => match signal {
            Some(sig) => format!(
                "waiting at {} for signal `{sig}`: {gate}\n  send it with: portflow signal {run} {subject} {sig}",
                step_name(*step)
            ),
            None => format!(
                "waiting at {} for approval: {gate}\n  approve with: portflow approve {run} --step {} --subject {subject}",
                step_name(*step),
                step_name(*step)
            ),
        },
        Status::Running {
            step,
            phase: Phase::Window { opens },
        } => format!("waiting for window (opens at {opens}) before {}", step_name(*step)),
        Status::Running {
            step,
            phase: Phase::Held { reason },
        } => {
            let mut s = format!("held before {}: {reason}", step_name(*step));
            if record.breaker.tripped.is_some() {
                s.push_str(&format!(
                    "\n  the run is paused; continue with: {}",
                    super::outages::continue_command(run)
                ));
            }
            s
        }
        Status::Running { step, phase } => format!("{} at {}", phase.name(), step_name(*step)),
        Status::Failed { step, error } => format!("failed at {}: {error}", step_name(*step)),
        Status::NeedsAttention { step, reason, .. } => {
            format!("needs attention at {}: {reason}", step_name(*step))
        }
        Status::RolledBack { step, error } => {
            format!("rolled back after failing at {}: {error}", step_name(*step))
        }
        Status::Compensating {
            step,
            phase,
            failed_step,
            error,
            ..
        } => format!(
            "rolling back ({} the undo of {}) after failing at {}: {error}",
            phase.name(),
            step_name(*step),
            step_name(*failed_step)
        ),
        s => s.name().to_string(),
    };
    let _ = writeln!(out, "state: {detail}");
    if let Some(d) = &inst.down {
        let _ = writeln!(
            out,
            "out of service since {} ({} at the run's clock), taken down by {}",
            d.since,
            human_duration(run_clock(&record).now().since(d.since)),
            d.step
        );
    }
    for o in &inst.outages {
        let _ = writeln!(
            out,
            "was out of service {} → {} ({}), taken down by {}, restored by {}",
            o.start,
            o.end,
            human_duration(o.end.since(o.start)),
            o.step,
            o.restored_by
        );
    }
    if let Some(d) = inst.due {
        let _ = writeln!(out, "next: {d}");
    }
    let _ = writeln!(out, "backend calls: {}", inst.calls);
    let mut t = Table::new(["#", "at", "event", "details"]);
    for e in &events {
        t.row([
            e.seq.to_string(),
            e.at.rfc3339(),
            event_name(e),
            super::logging::escape_controls(&event_details(e)),
        ]);
    }
    out.push_str(&t.render());
    // Histories hold operator text (`--by`, reasons): no escape bytes reach the terminal.
    let safe: Vec<String> = out.lines().map(super::logging::escape_controls).collect();
    Ok(safe.join("\n") + "\n")
}

fn event_name(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn event_details(e: &Event) -> String {
    let Ok(Value::Object(mut m)) = serde_json::to_value(e) else {
        return String::new();
    };
    for k in ["event", "seq", "at"] {
        m.remove(k);
    }
    for (k, shown) in [("waited_ms", "waited"), ("down_ms", "down")] {
        if let Some(ms) = m.remove(k).and_then(|v| v.as_u64()) {
            m.insert(
                shown.into(),
                Value::String(human_duration(Duration::from_millis(ms))),
            );
        }
    }
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name vN (hash)`, plus `then …` for chained workflows.
fn pins(r: &RunRecord) -> String {
    let one = |p: &crate::engine::run::WorkflowPin| {
        format!(
            "{} v{} ({})",
            p.name,
            p.version,
            &p.hash[..12.min(p.hash.len())]
        )
    };
    std::iter::once(one(&r.workflow))
        .chain(r.then.iter().map(|p| format!("then {}", one(p))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Outage and call figures from the simulator.
pub fn sim_report(sim: &SimTenant) -> Value {
    let outages = sim.outages().unwrap_or_default();
    let mut durations: Vec<u64> = outages
        .iter()
        .filter_map(|o| o.end.map(|e| e.since(o.start).as_millis() as u64))
        .collect();
    durations.sort_unstable();
    let pct = |p: f64| -> Option<u64> {
        if durations.is_empty() {
            None
        } else {
            let i = ((durations.len() - 1) as f64 * p).round() as usize;
            durations.get(i).copied()
        }
    };
    json!({
        "outages_recorded": outages.len(),
        "outages_ended": durations.len(),
        "outage_ms": {"p50": pct(0.5), "p95": pct(0.95), "max": durations.last()},
        "stats": serde_json::to_value(sim.stats()).unwrap_or(Value::Null),
    })
}

/// Human form of [`sim_report`].
pub fn render_sim_report(v: &Value) -> String {
    let ms = |k: &str| {
        v["outage_ms"][k].as_u64().map_or("-".to_string(), |m| {
            human_duration(Duration::from_millis(m))
        })
    };
    format!(
        "outage per subject (simulated tenant): {} ended of {}; median {}, p95 {}, max {}\n",
        v["outages_ended"],
        v["outages_recorded"],
        ms("p50"),
        ms("p95"),
        ms("max")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::outages::tests::{inst, instances, record, span, step_of, MIN, T};
    use crate::engine::run::Trip;
    use crate::store::memory::MemoryStore;
    use crate::store::Batch;

    fn store_with(record: &RunRecord, insts: &[Instance]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        records::put_run(&mut b, record);
        for i in insts {
            records::put_new_instance(&mut b, i);
        }
        assert!(store.apply(&b).is_ok());
        store
    }

    fn ok<T>(r: Result<T, CliError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{}", e.message),
        }
    }

    fn paused_run() -> RunRecord {
        let mut r = record("r1");
        r.breaker.tripped = Some(Trip {
            at: Timestamp(T - 5 * MIN),
            failures: 5,
            threshold: 5,
        });
        r
    }

    #[test]
    fn status_of_a_run_says_who_is_out_of_service_and_that_it_is_paused() {
        let r = paused_run();
        let store = store_with(&r, &instances("r1"));
        let text = ok(status_text(&store, Some("r1"), false));
        assert!(
            text.contains(
                "out of service now: 2 (longest 1h 30m, user0000@contoso.com), 1 of them stopped; \
                 who: portflow outages r1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("paused: 5 failure(s) reached the run's threshold of 5"),
            "{text}"
        );
        assert!(
            text.contains("continue with: portflow resume --continue r1"),
            "{text}"
        );
        let v: Value =
            serde_json::from_str(&ok(status_text(&store, Some("r1"), true))).unwrap_or(Value::Null);
        assert_eq!(v["out_of_service"]["now"], 2, "{v}");
        assert_eq!(v["out_of_service"]["stuck"], 1, "{v}");
        assert_eq!(v["out_of_service"]["longest"]["duration_s"], 5400.0, "{v}");
        assert_eq!(v["paused"]["failures"], 5, "{v}");
        assert_eq!(
            v["paused"]["continue_with"],
            "portflow resume --continue r1"
        );
    }

    #[test]
    fn status_of_all_runs_adds_a_line_per_run_with_someone_down_or_paused() {
        let r1 = paused_run();
        let store = store_with(&r1, &instances("r1"));
        let r2 = record("r2");
        let mut b = Batch::default();
        records::put_run(&mut b, &r2);
        records::put_new_instance(&mut b, &inst("r2", 0, Status::Succeeded));
        assert!(store.apply(&b).is_ok());
        let text = ok(status_text(&store, None, false));
        assert!(
            text.contains("run r1: out of service now: 2 (longest 1h 30m, user0000@contoso.com)"),
            "{text}"
        );
        assert!(
            text.contains(
                "run r1: paused after 5 failure(s) (threshold 5); continue with: portflow resume --continue r1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("run r2:"),
            "nothing to say about r2:\n{text}"
        );
        let v: Value =
            serde_json::from_str(&ok(status_text(&store, None, true))).unwrap_or(Value::Null);
        assert_eq!(v["runs"][0]["out_of_service"]["now"], 2, "{v}");
        assert_eq!(v["runs"][1]["out_of_service"]["now"], 0, "{v}");
        assert_eq!(v["runs"][1]["paused"], Value::Null, "{v}");
    }

    fn held(step: usize) -> Status {
        Status::Running {
            step,
            phase: Phase::Held {
                reason: "the run's out-of-service budget (2) is full".into(),
            },
        }
    }

    #[test]
    fn held_instances_are_counted_per_step_like_other_phases() {
        let r = record("r1");
        let store = store_with(
            &r,
            &[
                inst("r1", 0, held(step_of("remove-dr-number"))),
                inst("r1", 1, held(step_of("remove-dr-number"))),
            ],
        );
        let text = ok(status_text(&store, Some("r1"), false));
        assert!(text.contains("2 subjects: 2 held"), "{text}");
        // The phase table: its header, then the row of the step where they are held.
        let mut lines = text
            .lines()
            .skip_while(|l| !(l.starts_with("step") && l.contains("ready")));
        let header = lines.next().unwrap_or_default();
        let row = lines.next().unwrap_or_default();
        // Numbers are right-aligned: a cell ends where its column's name does.
        let col = |line: &str, name: &str| {
            header.find(name).map(|start| {
                line.get(start..start + name.len())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        };
        assert!(row.starts_with("remove-dr-number"), "{text}");
        assert_eq!(col(row, "held").as_deref(), Some("2"), "{text}");
        assert_eq!(col(row, "ready").as_deref(), Some(""), "{text}");
        let v: Value =
            serde_json::from_str(&ok(status_text(&store, Some("r1"), true))).unwrap_or(Value::Null);
        assert_eq!(
            v["steps"][step_of("remove-dr-number")]["step"],
            "remove-dr-number"
        );
        assert_eq!(
            v["steps"][step_of("remove-dr-number")]["counts"]["held"],
            2,
            "{v}"
        );
    }

    #[test]
    fn show_writes_no_control_bytes_from_operator_text() {
        let r = record("r1");
        let i = inst("r1", 0, Status::Cancelled);
        let store = store_with(&r, std::slice::from_ref(&i));
        let events = [Event {
            seq: 0,
            at: Timestamp(T),
            kind: EventKind::Cancelled {
                reason: "bye\u{1b}[2J\nforged line".into(),
            },
        }];
        let mut b = Batch::default();
        let mut next = i.clone();
        next.seq = 1;
        records::put_replaced_instance(&mut b, &i, &next, &events);
        assert!(store.apply(&b).is_ok());
        let text = ok(show_text(&store, "r1", "user0000@contoso.com", false));
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("bye\\u{1b}[2J\\nforged line"), "{text}");
    }

    #[test]
    fn show_renders_held_outage_events_and_spans_readably() {
        let r = paused_run();
        let mut i = inst("r1", 0, held(step_of("assign-oc-number")));
        i.down = Some(crate::engine::instance::OpenOutage {
            since: Timestamp(T - 90 * MIN),
            step: "remove-dr-number".into(),
        });
        i.outages = vec![span(300, 14)];
        let store = store_with(&r, std::slice::from_ref(&i));
        let ev = |seq: u32, at: i64, kind: EventKind| Event {
            seq,
            at: Timestamp(at),
            kind,
        };
        let events = [
            ev(
                0,
                T - 300 * MIN,
                EventKind::ServiceDown {
                    step: "remove-dr-number".into(),
                },
            ),
            ev(
                1,
                T - 286 * MIN,
                EventKind::ServiceRestored {
                    step: "assign-oc-number".into(),
                    down_ms: 14 * 60_000,
                },
            ),
            ev(
                2,
                T - 10 * MIN,
                EventKind::Held {
                    step: "assign-oc-number".into(),
                    reason: "the run's breaker is open".into(),
                },
            ),
        ];
        let mut b = Batch::default();
        let mut next = i.clone();
        next.seq = 3;
        records::put_replaced_instance(&mut b, &i, &next, &events);
        assert!(store.apply(&b).is_ok());
        let text = ok(show_text(&store, "r1", "user0000@contoso.com", false));
        assert!(
            text.contains(
                "state: held before assign-oc-number: the run's out-of-service budget (2) is full\n  \
                 the run is paused; continue with: portflow resume --continue r1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "out of service since 2029-12-31T22:30:00.000Z (1h 30m at the run's clock), \
                 taken down by remove-dr-number"
            ),
            "{text}"
        );
        assert!(
            text.contains("(14m 0s), taken down by remove-dr-number, restored by assign-oc-number"),
            "{text}"
        );
        assert!(text.contains("service_down"), "{text}");
        assert!(
            text.contains("service_restored  down=14m 0s step=assign-oc-number"),
            "{text}"
        );
        assert!(
            text.contains(
                "held              reason=the run's breaker is open step=assign-oc-number"
            ),
            "{text}"
        );
    }
}
