//! A run's summary: instances per state, per step and phase, grouped problems,
//! step statistics from the histories, who is out of service. `status RUN`,
//! the end of a drive and the daemon's run API show it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::outages::{paused_json, paused_lines, DownNow};
use super::runs::run_clock;
use super::Result;
use crate::clock::Timestamp;
use crate::engine::instance::{EventKind, Instance, Status, PHASE_NAMES, TERMINAL_NAMES};
use crate::engine::run::RunRecord;
use crate::report::escape::escape_controls;
use crate::report::normalise::normalise;
use crate::report::table::{human_duration, Table};
use crate::report::zone::Zone;
use crate::spec::model::Workflow;
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
    pub fn load(store: &dyn Store, record: &RunRecord, wf: &Workflow) -> Result<RunSummary> {
        Self::load_with(store, record, wf, true)
    }

    /// Counts only: the instances, no histories (for pages that refresh often).
    pub fn load_counts(store: &dyn Store, record: &RunRecord, wf: &Workflow) -> Result<RunSummary> {
        Self::load_with(store, record, wf, false)
    }

    fn load_with(
        store: &dyn Store,
        record: &RunRecord,
        wf: &Workflow,
        histories: bool,
    ) -> Result<RunSummary> {
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
                // Group by cause: the subject's own values would make every row unique.
                let why = normalise(why, &i.inputs);
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

    /// Human form, its times in `zone`.
    pub fn render(&self, zone: Zone) -> String {
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
        let label = self
            .record
            .label
            .as_deref()
            .map_or(String::new(), |l| format!(" \"{}\"", escape_controls(l)));
        let when = match self.record.finished_real() {
            Some(f) => format!(
                "{} → {}",
                zone.format(self.record.created_at),
                zone.format(f)
            ),
            None => format!("started {}", zone.format(self.record.created_at)),
        };
        out.push_str(&format!(
            "run {}{label} · {} · {when} · {} subjects: {}\n",
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

/// `name vN (hash)`, plus `then …` for chained workflows.
pub fn pins(r: &RunRecord) -> String {
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
