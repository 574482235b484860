//! A run's report for the change board: one row per subject (inputs, final
//! state, where it stopped and why, when, time out of service, backend calls,
//! who approved, signalled, cancelled, retried or amended it), and a summary:
//! counts per state, the per-step funnel, failures grouped by normalised
//! cause, outages with a histogram. Rendered as JSON, CSV or one
//! self-contained HTML page; the time zone is a parameter of each renderer.
//! `crate::app::report` builds it from the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;
use serde_json::{json, Map, Value};

use super::escape::csv_text;
use super::html::{self, Bar, Cell};
use super::normalise::{Group, Grouper};
use super::table::human_duration;
use super::zone::{local_rfc3339, Zone};
use crate::clock::Timestamp;
use crate::engine::instance::{PHASE_NAMES, TERMINAL_NAMES};

/// Output form of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document.
    Json,
    /// One row per subject, with a header.
    Csv,
    /// One self-contained page.
    Html,
}

impl Format {
    /// `json`, `csv` or `html`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "html" => Some(Format::Html),
            _ => None,
        }
    }

    /// From a file name's extension (`.json`, `.csv`, `.html`/`.htm`).
    pub fn of_path(p: &Path) -> Option<Format> {
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "htm" => Some(Format::Html),
            e => Format::parse(e),
        }
    }

    /// Its name and file extension.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }

    /// Its HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// An instant of a run's history: real, and on the run's virtual clock when
/// the run was a time-scaled rehearsal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct At {
    /// Real time.
    pub real: Timestamp,
    /// The engine's (virtual) clock, in a time-scaled rehearsal only.
    pub virtual_: Option<Timestamp>,
}

impl At {
    fn json(&self, zone: Tz) -> Value {
        let mut v = json!({"utc": self.real.rfc3339(), "local": local_rfc3339(self.real, zone)});
        if let Some(t) = self.virtual_ {
            v["virtual_utc"] = json!(t.rfc3339());
        }
        v
    }
}

/// Something a person (or the run file) did to a subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// `approved`, `signalled`, `cancelled`, `retried` or `amended`.
    pub action: &'static str,
    /// Who.
    pub by: String,
    /// When.
    pub at: At,
    /// At which step (the gate, the signal's step, where a retry resumed).
    pub step: Option<String>,
    /// What: the signal's name, a cancel's reason, an input's change.
    pub detail: Option<String>,
}

/// The names of [`Action::action`], in the order the CSV's columns show them.
pub const ACTIONS: [&str; 5] = ["approved", "signalled", "cancelled", "retried", "amended"];

/// One subject's line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectRow {
    /// Index in the run.
    pub idx: u32,
    /// The subject.
    pub subject: String,
    /// Its inputs (absent optional ones are `null`).
    pub inputs: Map<String, Value>,
    /// Where it is: a terminal state or a phase (`Status::name`).
    pub state: &'static str,
    /// The step it is at or stopped at (none once it succeeded or before it started).
    pub step: Option<String>,
    /// Index of the furthest step it reached (the number of steps once it
    /// succeeded; none before it started): the funnel is counted from it.
    pub reached: Option<usize>,
    /// Whether nothing more will happen to it.
    pub terminal: bool,
    /// The class of the backend error that stopped it (`transient`, …), or
    /// `refused` when a check refused it.
    pub error_class: Option<String>,
    /// Why it stopped (failed, rolled back, needs attention).
    pub message: Option<String>,
    /// Its first event.
    pub start: Option<At>,
    /// Its last event, once it is terminal.
    pub end: Option<At>,
    /// Each outage (ended, then the one going on), on the run's clock.
    pub outages: Vec<Duration>,
    /// Out of service when the report was made.
    pub down_now: bool,
    /// Backend calls made for it.
    pub calls: u32,
    /// What people did, oldest first.
    pub actions: Vec<Action>,
}

impl SubjectRow {
    /// Its total time out of service.
    pub fn out_of_service(&self) -> Duration {
        self.outages.iter().sum()
    }
}

/// A run's report.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// Run id.
    pub run: String,
    /// Its label.
    pub label: Option<String>,
    /// Workflow name, version and hash (`then:` workflows are named after it).
    pub workflow: (String, u32, String),
    /// Not finished yet: the report shows what is there now.
    pub live: bool,
    /// When the report was made.
    pub generated: At,
    /// Virtual seconds per real second, for a time-scaled rehearsal.
    pub time_scale: Option<f64>,
    /// When the run was created.
    pub created: At,
    /// When it finished.
    pub finished: Option<At>,
    /// Step ids, in order.
    pub steps: Vec<String>,
    /// Input names, in order.
    pub inputs: Vec<String>,
    /// One row per subject, by index.
    pub subjects: Vec<SubjectRow>,
}

/// One step's line of the funnel.
#[derive(Clone, Debug, PartialEq)]
pub struct StepFunnel {
    /// Step id.
    pub step: String,
    /// Subjects that got to it.
    pub reached: usize,
    /// Still there (not stopped).
    pub at: usize,
    /// Went past it.
    pub passed: usize,
    /// Stopped there: failed, rolled back, needs attention, cancelled.
    pub stopped: usize,
}

/// One bucket of the outage histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Stable id (`5m-15m`).
    pub id: &'static str,
    /// Lower bound, inclusive.
    pub min: Duration,
    /// Upper bound, exclusive (none for the last).
    pub max: Option<Duration>,
    /// Outages in it.
    pub count: usize,
}

/// Bucket ids and upper bounds in seconds (the last has none).
const BUCKETS: [(&str, Option<u64>); 8] = [
    ("under-1m", Some(60)),
    ("1m-5m", Some(300)),
    ("5m-15m", Some(900)),
    ("15m-30m", Some(1800)),
    ("30m-1h", Some(3600)),
    ("1h-2h", Some(7200)),
    ("2h-4h", Some(14_400)),
    ("4h-plus", None),
];

/// Outage figures over the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outages {
    /// Outages (ended and going on).
    pub count: usize,
    /// Subjects out of service now.
    pub down_now: usize,
    /// Their total length.
    pub total: Duration,
    /// The longest, and whose.
    pub longest: Option<(Duration, String)>,
    /// The histogram.
    pub buckets: Vec<Bucket>,
}

/// The report's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Subjects per state, in table order (only states someone is in).
    pub states: Vec<(&'static str, usize)>,
    /// The funnel, per step.
    pub funnel: Vec<StepFunnel>,
    /// Why subjects stopped, by normalised cause, largest first.
    pub groups: Vec<Group>,
    /// Outages.
    pub outages: Outages,
    /// Backend calls in all.
    pub calls: u64,
}

/// States in the order reports list them.
fn state_order() -> impl Iterator<Item = &'static str> {
    std::iter::once("pending")
        .chain(PHASE_NAMES.iter().copied())
        .chain(TERMINAL_NAMES.iter().copied())
}

/// States whose message is a problem to group.
const PROBLEM_STATES: [&str; 3] = ["failed", "rolled_back", "needs_attention"];

impl RunReport {
    /// The summary of the rows.
    pub fn summary(&self) -> Summary {
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        let mut grouper = Grouper::new();
        let mut funnel: Vec<StepFunnel> = self
            .steps
            .iter()
            .map(|s| StepFunnel {
                step: s.clone(),
                reached: 0,
                at: 0,
                passed: 0,
                stopped: 0,
            })
            .collect();
        let mut buckets: Vec<Bucket> = BUCKETS
            .iter()
            .enumerate()
            .map(|(i, (id, max))| Bucket {
                id,
                min: Duration::from_secs(match i {
                    0 => 0,
                    _ => BUCKETS[i - 1].1.unwrap_or(0),
                }),
                max: max.map(Duration::from_secs),
                count: 0,
            })
            .collect();
        let mut outages = Outages {
            count: 0,
            down_now: 0,
            total: Duration::ZERO,
            longest: None,
            buckets: Vec::new(),
        };
        let mut calls = 0u64;
        for r in &self.subjects {
            *by_state.entry(r.state).or_insert(0) += 1;
            calls += u64::from(r.calls);
            if let (true, Some(m)) = (PROBLEM_STATES.contains(&r.state), &r.message) {
                grouper.add(&r.subject, m, &r.inputs);
            }
            if let Some(furthest) = r.reached {
                for (i, f) in funnel.iter_mut().enumerate().take(furthest + 1) {
                    f.reached += 1;
                    if i < furthest {
                        f.passed += 1;
                    } else if r.terminal {
                        f.stopped += 1;
                    } else {
                        f.at += 1;
                    }
                }
            }
            outages.down_now += usize::from(r.down_now);
            for d in &r.outages {
                outages.count += 1;
                outages.total += *d;
                if outages.longest.as_ref().is_none_or(|(l, _)| d > l) {
                    outages.longest = Some((*d, r.subject.clone()));
                }
                if let Some(b) = buckets
                    .iter_mut()
                    .find(|b| b.max.is_none_or(|max| *d < max))
                {
                    b.count += 1;
                }
            }
        }
        outages.buckets = buckets;
        Summary {
            states: state_order()
                .filter_map(|s| by_state.get(s).map(|n| (s, *n)))
                .collect(),
            funnel,
            groups: grouper.finish(),
            outages,
            calls,
        }
    }

    /// The JSON document (field names are stable; see docs/operations.md).
    pub fn to_json(&self, zone: Tz) -> Value {
        let s = self.summary();
        let t = |a: &Option<At>| a.as_ref().map_or(Value::Null, |a| a.json(zone));
        let subjects: Vec<Value> = self
            .subjects
            .iter()
            .map(|r| {
                json!({
                    "idx": r.idx,
                    "subject": r.subject,
                    "inputs": r.inputs,
                    "state": r.state,
                    "step": r.step,
                    "error_class": r.error_class,
                    "message": r.message,
                    "start": t(&r.start),
                    "end": t(&r.end),
                    "out_of_service_s": seconds(r.out_of_service()),
                    "outages": r.outages.len(),
                    "down_now": r.down_now,
                    "calls": r.calls,
                    "actions": r.actions.iter().map(|a| json!({
                        "action": a.action,
                        "by": a.by,
                        "at": a.at.json(zone),
                        "step": a.step,
                        "detail": a.detail,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let states: Map<String, Value> = s
            .states
            .iter()
            .map(|(k, n)| ((*k).to_string(), json!(n)))
            .collect();
        json!({
            "report": "run",
            "run": self.run,
            "label": self.label,
            "workflow": {"name": self.workflow.0, "version": self.workflow.1, "hash": self.workflow.2},
            "live": self.live,
            "time_zone": zone.name(),
            "time_scale": self.time_scale,
            "generated_at": self.generated.json(zone),
            "created_at": self.created.json(zone),
            "finished_at": t(&self.finished),
            "steps": self.steps,
            "inputs": self.inputs,
            "summary": {
                "subjects": self.subjects.len(),
                "states": states,
                "steps": s.funnel.iter().map(|f| json!({
                    "step": f.step, "reached": f.reached, "at": f.at,
                    "passed": f.passed, "stopped": f.stopped,
                })).collect::<Vec<_>>(),
                "groups": s.groups,
                "outages": {
                    "count": s.outages.count,
                    "down_now": s.outages.down_now,
                    "total_s": seconds(s.outages.total),
                    "longest_s": s.outages.longest.as_ref().map(|(d, _)| seconds(*d)),
                    "longest_subject": s.outages.longest.as_ref().map(|(_, who)| who),
                    "buckets": s.outages.buckets.iter().map(|b| json!({
                        "bucket": b.id,
                        "min_s": b.min.as_secs(),
                        "max_s": b.max.map(|m| m.as_secs()),
                        "count": b.count,
                    })).collect::<Vec<_>>(),
                },
                "backend_calls": s.calls,
            },
            "subjects": subjects,
        })
    }

    /// One row per subject with a header; every cell is safe to open in a
    /// spreadsheet (`escape::csv_cell`).
    pub fn to_csv(&self, zone: Tz) -> Result<String, csv::Error> {
        let scaled = self.time_scale.is_some();
        let mut fixed: Vec<String> = ["state", "step", "error_class", "message"]
            .map(String::from)
            .to_vec();
        for h in ["start", "end"] {
            fixed.push(format!("{h}_utc"));
            fixed.push(format!("{h}_local"));
            if scaled {
                fixed.push(format!("{h}_virtual_utc"));
            }
        }
        fixed.extend(["out_of_service_s", "outages", "calls"].map(String::from));
        fixed.extend(ACTIONS.iter().map(|a| a.to_string()));
        let mut header: Vec<String> = vec!["idx".into(), "subject".into()];
        for name in &self.inputs {
            // An input named like another column keeps a column of its own.
            let taken = name == "idx" || name == "subject" || fixed.contains(name);
            header.push(if taken {
                format!("input.{name}")
            } else {
                name.clone()
            });
        }
        header.extend(fixed);
        let mut records = vec![header];
        for r in &self.subjects {
            let mut row: Vec<String> = vec![r.idx.to_string(), r.subject.clone()];
            for name in &self.inputs {
                row.push(input_text(&r.inputs, name));
            }
            row.push(r.state.into());
            row.push(r.step.clone().unwrap_or_default());
            row.push(r.error_class.clone().unwrap_or_default());
            row.push(r.message.clone().unwrap_or_default());
            for at in [&r.start, &r.end] {
                row.push(at.map_or(String::new(), |a| a.real.rfc3339()));
                row.push(at.map_or(String::new(), |a| local_rfc3339(a.real, zone)));
                if scaled {
                    row.push(
                        at.and_then(|a| a.virtual_)
                            .map_or(String::new(), Timestamp::rfc3339),
                    );
                }
            }
            row.push(format!("{:.3}", seconds(r.out_of_service())));
            row.push(r.outages.len().to_string());
            row.push(r.calls.to_string());
            for kind in ACTIONS {
                let cells: Vec<String> = r
                    .actions
                    .iter()
                    .filter(|a| a.action == kind)
                    .map(action_text)
                    .collect();
                row.push(cells.join("; "));
            }
            records.push(row);
        }
        csv_text(&records)
    }

    /// One self-contained page: counts, the funnel and outage histogram as
    /// inline SVG, the groups, every subject. No script; every value escaped.
    pub fn to_html(&self, zone: Tz) -> String {
        let s = self.summary();
        // People read the page: local time to the second, the UTC instant beside it.
        let local = |a: &At| Zone::Named(zone).format(a.real);
        let mut subtitle = format!(
            "{} v{} ({}) · {} subjects · generated {} · times in {}",
            self.workflow.0,
            self.workflow.1,
            &self.workflow.2[..12.min(self.workflow.2.len())],
            self.subjects.len(),
            local(&self.generated),
            zone.name()
        );
        if let Some(scale) = self.time_scale {
            subtitle.push_str(&format!(
                " · time-scaled rehearsal (×{scale}): virtual times shown apart"
            ));
        }
        let mut body = String::new();
        let mut when = format!("created {}", local(&self.created));
        if let Some(f) = &self.finished {
            when.push_str(&format!(" · finished {}", local(f)));
        }
        body.push_str(&html::para("muted", &when));
        let items: Vec<(String, String, usize, &str)> = s
            .states
            .iter()
            .map(|(k, n)| {
                let class = match *k {
                    "succeeded" => "ok",
                    "failed" | "rolled_back" | "needs_attention" => "bad",
                    _ if !TERMINAL_NAMES.contains(k) => "now",
                    _ => "",
                };
                ((*k).to_string(), k.replace('_', " "), *n, class)
            })
            .collect();
        body.push_str(&html::section(
            "states",
            "Subjects by state",
            &html::counts("state", &items),
        ));
        let bars: Vec<Bar> = s
            .funnel
            .iter()
            .map(|f| Bar {
                key: f.step.clone(),
                label: f.step.clone(),
                count: f.reached,
                parts: vec![("passed", f.passed), ("at", f.at), ("stopped", f.stopped)],
            })
            .collect();
        let funnel =
            html::legend(&[
                ("passed", "went past it"),
                ("at", "still there"),
                ("stopped", "stopped there"),
            ]) + &html::bar_chart("funnel-chart", "step", "Subjects reaching each step", &bars);
        body.push_str(&html::section("funnel", "Per step", &funnel));
        let o = &s.outages;
        let mut line = format!(
            "{} outage(s), {} out of service now, {} in all",
            o.count,
            o.down_now,
            human_duration(round_s(o.total))
        );
        if let Some((d, who)) = &o.longest {
            line.push_str(&format!(
                ", longest {} ({who})",
                human_duration(round_s(*d))
            ));
        }
        if self.time_scale.is_some() {
            line.push_str(" · on the rehearsal's virtual clock");
        }
        let bars: Vec<Bar> = o
            .buckets
            .iter()
            .map(|b| Bar {
                key: b.id.into(),
                label: bucket_label(b),
                count: b.count,
                parts: vec![("plain", b.count)],
            })
            .collect();
        let outages = html::para("", &line)
            + &html::bar_chart("outage-chart", "bucket", "Outages by length", &bars);
        body.push_str(&html::section("outages", "Time out of service", &outages));
        let groups = html::groups_table(&s.groups, "cause", "No subject failed.");
        body.push_str(&html::section("groups", "Problems by cause", &groups));
        let scaled = self.time_scale.is_some();
        let mut headers = vec!["#", "subject"];
        headers.extend(self.inputs.iter().map(String::as_str));
        headers.extend(["state", "step", "error", "start", "end"]);
        if scaled {
            headers.extend(["start (virtual, UTC)", "end (virtual, UTC)"]);
        }
        headers.extend(["out of service", "calls", "who did what"]);
        let rows: Vec<html::Row> = self
            .subjects
            .iter()
            .map(|r| {
                let mut cells = vec![Cell::Num(r.idx.to_string()), Cell::Text(r.subject.clone())];
                for name in &self.inputs {
                    cells.push(Cell::Text(input_text(&r.inputs, name)));
                }
                cells.push(Cell::Text(r.state.replace('_', " ")));
                cells.push(Cell::Text(r.step.clone().unwrap_or_default()));
                let error = match (&r.error_class, &r.message) {
                    (Some(c), Some(m)) => format!("[{c}] {m}"),
                    (None, Some(m)) => m.clone(),
                    _ => String::new(),
                };
                cells.push(Cell::Msg(error));
                let utc =
                    |a: &Option<At>| a.map_or(Vec::new(), |a| vec![local(&a), a.real.rfc3339()]);
                cells.push(Cell::Lines(utc(&r.start)));
                cells.push(Cell::Lines(utc(&r.end)));
                if scaled {
                    for a in [&r.start, &r.end] {
                        cells.push(Cell::Text(
                            a.and_then(|a| a.virtual_)
                                .map_or(String::new(), Timestamp::rfc3339),
                        ));
                    }
                }
                let down = r.out_of_service();
                cells.push(Cell::Text(if r.outages.is_empty() {
                    String::new()
                } else {
                    human_duration(round_s(down)) + if r.down_now { " (still down)" } else { "" }
                }));
                cells.push(Cell::Num(r.calls.to_string()));
                cells.push(Cell::Lines(
                    r.actions
                        .iter()
                        .map(|a| format!("{} {}", a.action, action_text(a)))
                        .collect(),
                ));
                (
                    vec![
                        ("subject", r.subject.clone()),
                        ("state", r.state.to_string()),
                    ],
                    cells,
                )
            })
            .collect();
        body.push_str(&html::section(
            "subjects",
            "Subjects",
            &html::table(&headers, &rows),
        ));
        body.push_str(&format!(
            "<footer>portflow report of run {} · local times in {}, UTC below them{}</footer>\n",
            super::escape::escape_html(&self.run),
            super::escape::escape_html(zone.name()),
            if scaled {
                "; virtual times are the rehearsal's clock"
            } else {
                ""
            }
        ));
        let title = match &self.label {
            Some(l) => format!("Run {} · {l}", self.run),
            None => format!("Run {}", self.run),
        };
        html::page(
            &title,
            &subtitle,
            self.live.then_some("live: still running"),
            &body,
        )
    }

    /// The report in `format`, times shown in `zone`.
    pub fn render(&self, format: Format, zone: Tz) -> Result<String, csv::Error> {
        Ok(match format {
            Format::Json => {
                serde_json::to_string_pretty(&self.to_json(zone)).unwrap_or_else(|_| "null".into())
                    + "\n"
            }
            Format::Csv => self.to_csv(zone)?,
            Format::Html => self.to_html(zone),
        })
    }
}

/// An input's value as a cell's text (an absent one is empty).
fn input_text(inputs: &Map<String, Value>, name: &str) -> String {
    match inputs.get(name) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `alice at 2026-…Z (step): detail`.
fn action_text(a: &Action) -> String {
    let mut s = format!("{} at {}", a.by, a.at.real.rfc3339());
    if let Some(step) = &a.step {
        s.push_str(&format!(" ({step})"));
    }
    if let Some(d) = &a.detail {
        s.push_str(&format!(": {d}"));
    }
    s
}

fn bucket_label(b: &Bucket) -> String {
    match b.max {
        Some(max) if b.min.is_zero() => format!("under {}", human_duration(max)),
        Some(max) => format!("{} – {}", human_duration(b.min), human_duration(max)),
        None => format!("{} or more", human_duration(b.min)),
    }
}

/// Whole seconds, for people.
fn round_s(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Seconds with millisecond precision, for JSON and CSV.
fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MIN: u64 = 60;

    fn at(ms: i64) -> At {
        At {
            real: Timestamp(ms),
            virtual_: None,
        }
    }

    fn row(idx: u32, state: &'static str, reached: Option<usize>, terminal: bool) -> SubjectRow {
        SubjectRow {
            idx,
            subject: format!("user{idx:04}@contoso.com"),
            inputs: json!({"user": format!("user{idx:04}@contoso.com"), "number": format!("+1425000{idx:04}")})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            state,
            step: None,
            reached,
            terminal,
            error_class: None,
            message: None,
            start: Some(at(1_000)),
            end: terminal.then(|| at(2_000)),
            outages: Vec::new(),
            down_now: false,
            calls: 3,
            actions: Vec::new(),
        }
    }

    pub(crate) fn sample() -> RunReport {
        let mut rows = vec![
            row(0, "succeeded", Some(3), true),
            row(1, "failed", Some(1), true),
            row(2, "failed", Some(1), true),
            row(3, "blocked", Some(2), false),
            row(4, "pending", None, false),
        ];
        rows[0].outages = vec![Duration::from_secs(12 * MIN)];
        rows[3].outages = vec![Duration::from_secs(30), Duration::from_secs(5 * 3600)];
        rows[3].down_now = true;
        for r in &mut rows[1..3] {
            r.message = Some(format!(
                "refused: {} has the number +1425999{:04}, not {}",
                r.subject,
                r.idx,
                r.inputs["number"].as_str().unwrap_or_default()
            ));
            r.error_class = Some("refused".into());
            r.step = Some("check".into());
        }
        rows[0].actions.push(Action {
            action: "approved",
            by: "alice".into(),
            at: at(1_500),
            step: Some("gate".into()),
            detail: None,
        });
        RunReport {
            run: "20261123-221500-abcd".into(),
            label: Some("wave 1".into()),
            workflow: ("wf".into(), 1, "0123456789abcdef".into()),
            live: true,
            generated: at(3_000),
            time_scale: None,
            created: at(500),
            finished: None,
            steps: vec!["inspect".into(), "check".into(), "gate".into()],
            inputs: vec!["user".into(), "number".into()],
            subjects: rows,
        }
    }

    #[test]
    fn the_summary_counts_states_the_funnel_groups_and_outages() {
        let s = sample().summary();
        assert_eq!(
            s.states,
            vec![
                ("pending", 1),
                ("blocked", 1),
                ("succeeded", 1),
                ("failed", 2)
            ]
        );
        let f: Vec<(usize, usize, usize, usize)> = s
            .funnel
            .iter()
            .map(|f| (f.reached, f.at, f.passed, f.stopped))
            .collect();
        // inspect: all 4 started went past it; check: 2 stopped there; gate: 1 at it.
        assert_eq!(f, vec![(4, 0, 4, 0), (4, 0, 2, 2), (2, 1, 1, 0)]);
        assert_eq!(s.groups.len(), 1, "{:?}", s.groups);
        assert_eq!(s.groups[0].count, 2);
        assert_eq!(s.outages.count, 3);
        assert_eq!(s.outages.down_now, 1);
        let b: Vec<(&str, usize)> = s.outages.buckets.iter().map(|b| (b.id, b.count)).collect();
        assert_eq!(b[0], ("under-1m", 1));
        assert_eq!(b[2], ("5m-15m", 1));
        assert_eq!(b[7], ("4h-plus", 1));
        assert_eq!(s.calls, 15);
    }

    #[test]
    fn csv_has_a_column_per_input_and_quotes_formulas() {
        let mut r = sample();
        r.subjects[0].subject = "=HYPERLINK(\"http://x\")".into();
        let text = r.to_csv(Tz::UTC).unwrap_or_default();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = rd
            .headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .unwrap_or_default();
        assert_eq!(&header[..4], ["idx", "subject", "user", "number"]);
        assert!(header.contains(&"approved".to_string()));
        let rows: Vec<csv::StringRecord> = rd.records().filter_map(|r| r.ok()).collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(&rows[0][1], "'=HYPERLINK(\"http://x\")");
        assert_eq!(&rows[0][3], "'+14250000000");
        let approved = header.iter().position(|h| h == "approved").unwrap_or(0);
        assert_eq!(
            &rows[0][approved],
            "alice at 1970-01-01T00:00:01.500Z (gate)"
        );
    }

    #[test]
    fn html_carries_the_counts_as_data_attributes_and_escapes_subjects() {
        let mut r = sample();
        r.subjects[4].subject = "<script>alert(1)</script>".into();
        let page = r.to_html(Tz::UTC);
        assert!(
            page.contains("data-state=\"failed\" data-count=\"2\""),
            "{page}"
        );
        assert!(page.contains("data-step=\"check\" data-count=\"4\" data-passed=\"2\" data-at=\"0\" data-stopped=\"2\""), "{page}");
        assert!(
            page.contains("data-bucket=\"4h-plus\" data-count=\"1\""),
            "{page}"
        );
        assert!(page.contains("<tr data-count=\"2\">"), "{page}");
        assert!(page.contains("id=\"live\""), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn json_gives_real_local_and_virtual_times_apart() {
        let mut r = sample();
        r.time_scale = Some(600.0);
        r.subjects[0].start = Some(At {
            real: Timestamp(1_795_000_000_000),
            virtual_: Some(Timestamp(1_795_000_600_000)),
        });
        let zone = super::super::zone::parse_zone("Europe/Berlin").unwrap_or(Tz::UTC);
        let v = r.to_json(zone);
        assert_eq!(v["time_zone"], "Europe/Berlin");
        let start = &v["subjects"][0]["start"];
        assert_eq!(start["utc"], "2026-11-18T11:06:40.000Z", "{start}");
        assert_eq!(start["local"], "2026-11-18T12:06:40.000+01:00", "{start}");
        assert_eq!(start["virtual_utc"], "2026-11-18T11:16:40.000Z", "{start}");
        assert_eq!(v["summary"]["states"]["failed"], 2);
        assert_eq!(v["summary"]["groups"][0]["count"], 2);
        let csv = r.to_csv(zone).unwrap_or_default();
        assert!(csv
            .lines()
            .next()
            .unwrap_or_default()
            .contains("start_virtual_utc"));
    }
}
