//! `portflow outages`: who is out of service now in a run, and every outage that
//! ended, measured at the run's clock. The pieces (`Head`, `DownRow`,
//! [`DownNow`], the breaker's pause) also feed `status`, the status page and
//! `/metrics`.

use std::cmp::Reverse;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::runs::{load_run, pinned_workflow, run_clock};
use super::{Error, Result};
use crate::clock::Timestamp;
use crate::engine::instance::{Instance, OpenOutage, OutageSpan, Status};
use crate::engine::run::RunRecord;
use crate::report::table::{human_duration, Table};
use crate::report::zone::Zone;
use crate::store::{keys, Store, StoreError};

/// What the outage views read of an instance snapshot; decoding skips the rest
/// (inputs, outputs), so a scan of 100,000 instances stays cheap.
#[derive(Clone, Debug, Deserialize)]
pub struct Head {
    /// Subject index.
    pub idx: u32,
    /// Subject.
    pub subject: String,
    /// Where the state machine is.
    pub status: Status,
    /// Out of service now.
    #[serde(default)]
    pub down: Option<OpenOutage>,
    /// Outages that ended.
    #[serde(default)]
    pub outages: Vec<OutageSpan>,
}

impl From<&Instance> for Head {
    fn from(i: &Instance) -> Head {
        Head {
            idx: i.idx,
            subject: i.subject.clone(),
            status: i.status.clone(),
            down: i.down.clone(),
            outages: i.outages.clone(),
        }
    }
}

/// Visit the [`Head`] of every instance of `run`, in index order.
pub fn for_each_head(
    store: &dyn Store,
    run: &str,
    f: &mut dyn FnMut(Head),
) -> Result<(), StoreError> {
    let mut err = None;
    store.scan_prefix(
        &keys::instance_prefix(run),
        &mut |k, v| match crate::store::records::decode::<Head>(k, v) {
            Ok(h) => {
                f(h);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        },
    )?;
    err.map_or(Ok(()), Err)
}

/// One subject out of service now.
#[derive(Clone, Debug, PartialEq)]
pub struct DownRow {
    /// Subject index.
    pub idx: u32,
    /// Subject.
    pub subject: String,
    /// When its number went out of service.
    pub since: Timestamp,
    /// The step whose action took it down.
    pub step: String,
    /// The instance's state name (`waiting`, `failed`, …).
    pub state: &'static str,
    /// The step the instance is at now, when it is at one.
    pub at_step: Option<String>,
    /// Why it stopped, for failed, rolled-back and needs-attention instances.
    pub reason: Option<String>,
    /// Nothing more happens for this instance by itself: a person must bring
    /// the number back. These come first.
    pub stuck: bool,
}

impl DownRow {
    /// From a snapshot that is down; `steps` are the run's step ids (may be empty).
    pub fn of(h: &Head, steps: &[String]) -> Option<DownRow> {
        let down = h.down.as_ref()?;
        let reason = match &h.status {
            Status::Failed { error, .. } | Status::RolledBack { error, .. } => Some(error),
            Status::NeedsAttention { reason, .. } => Some(reason),
            _ => None,
        };
        Some(DownRow {
            idx: h.idx,
            subject: h.subject.clone(),
            since: down.since,
            step: down.step.clone(),
            state: h.status.name(),
            at_step: h.status.step().and_then(|i| steps.get(i).cloned()),
            reason: reason.map(|r| r.chars().take(300).collect()),
            stuck: h.status.is_terminal(),
        })
    }

    /// How long it has been down at `now` (the run's clock).
    pub fn duration(&self, now: Timestamp) -> Duration {
        now.since(self.since)
    }

    /// `failed at assign-oc-number: …` / `waiting at wait-port`.
    fn state_text(&self, max_reason: usize) -> String {
        let mut s = self.state.replace('_', " ");
        if let Some(step) = &self.at_step {
            s.push_str(" at ");
            s.push_str(step);
        }
        if let Some(r) = &self.reason {
            let short: String = r.chars().take(max_reason).collect();
            s.push_str(": ");
            s.push_str(&short);
            if short.len() < r.len() {
                s.push('…');
            }
        }
        if self.stuck {
            s = format!("STOPPED · {s}");
        }
        s
    }

    /// JSON form, with the duration at `now`.
    pub fn to_json(&self, now: Timestamp) -> Value {
        json!({
            "idx": self.idx,
            "subject": self.subject,
            "start": self.since.rfc3339(),
            "duration_s": seconds(self.duration(now)),
            "step": self.step,
            "state": self.state,
            "at_step": self.at_step,
            "reason": self.reason,
            "stuck": self.stuck,
        })
    }
}

/// Most important first: stuck ones, then the longest down, then by index.
pub fn sort_down(rows: &mut [DownRow]) {
    rows.sort_by_key(|r| (Reverse(r.stuck), r.since, r.idx));
}

/// One outage that ended.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedRow {
    /// Subject index.
    pub idx: u32,
    /// Subject.
    pub subject: String,
    /// When the number went out of service.
    pub start: Timestamp,
    /// When service was verified back.
    pub end: Timestamp,
    /// The step that took it down.
    pub step: String,
    /// The step that brought it back.
    pub restored_by: String,
}

impl EndedRow {
    /// Its length (zero if the record's end is before its start).
    pub fn duration(&self) -> Duration {
        self.end.since(self.start)
    }
}

/// Seconds with millisecond precision, for JSON.
fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// A run's outages at one instant of its clock.
#[derive(Clone, Debug)]
pub struct OutageReport {
    /// Run id.
    pub run: String,
    /// The run's clock when the report was made.
    pub now: Timestamp,
    /// Out of service now, most important first ([`sort_down`]).
    pub down: Vec<DownRow>,
    /// Ended outages, by start.
    pub ended: Vec<EndedRow>,
}

/// Figures of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Subjects out of service now.
    pub down: usize,
    /// Of those, how many nothing restores by itself.
    pub stuck: usize,
    /// The longest down now: how long, and who.
    pub longest_down: Option<(Duration, u32, String)>,
    /// Ended outages.
    pub ended: usize,
    /// Their median length.
    pub median: Option<Duration>,
    /// Their longest.
    pub longest_ended: Option<Duration>,
    /// Most subjects out of service at one instant over the run, and the first
    /// instant it was reached.
    pub peak: (usize, Option<Timestamp>),
}

impl OutageReport {
    /// Build from the run's snapshots; `steps` are its step ids.
    pub fn new(
        run: &str,
        now: Timestamp,
        heads: impl IntoIterator<Item = Head>,
        steps: &[String],
    ) -> OutageReport {
        let mut down = Vec::new();
        let mut ended = Vec::new();
        for h in heads {
            if let Some(row) = DownRow::of(&h, steps) {
                down.push(row);
            }
            for o in &h.outages {
                ended.push(EndedRow {
                    idx: h.idx,
                    subject: h.subject.clone(),
                    start: o.start,
                    end: o.end,
                    step: o.step.clone(),
                    restored_by: o.restored_by.clone(),
                });
            }
        }
        sort_down(&mut down);
        ended.sort_by_key(|e| (e.start, e.idx));
        OutageReport {
            run: run.to_string(),
            now,
            down,
            ended,
        }
    }

    /// Read a stored run at its own clock.
    pub fn load(store: &dyn Store, record: &RunRecord) -> Result<OutageReport> {
        // Step ids only label where an instance is; a workflow that no longer
        // parses must not hide who is out of service.
        let steps: Vec<String> = pinned_workflow(record)
            .map(|wf| wf.steps.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        let mut heads = Vec::new();
        for_each_head(store, &record.id, &mut |h| {
            if h.down.is_some() || !h.outages.is_empty() {
                heads.push(h);
            }
        })?;
        let now = run_clock(record).now();
        Ok(OutageReport::new(&record.id, now, heads, &steps))
    }

    /// Counts, longest, median, peak.
    pub fn summary(&self) -> Summary {
        let mut lengths: Vec<Duration> = self.ended.iter().map(EndedRow::duration).collect();
        lengths.sort_unstable();
        let median = match lengths.len() {
            0 => None,
            n if n % 2 == 1 => lengths.get(n / 2).copied(),
            n => match (lengths.get(n / 2 - 1), lengths.get(n / 2)) {
                (Some(a), Some(b)) => Some((*a + *b) / 2),
                _ => None,
            },
        };
        let longest_down = self
            .down
            .iter()
            .min_by_key(|r| (r.since, r.idx))
            .map(|r| (r.duration(self.now), r.idx, r.subject.clone()));
        Summary {
            down: self.down.len(),
            stuck: self.down.iter().filter(|r| r.stuck).count(),
            longest_down,
            ended: self.ended.len(),
            median,
            longest_ended: lengths.last().copied(),
            peak: self.peak(),
        }
    }

    /// Most subjects out of service at once: a sweep over every span's start
    /// and end (open ones have none). An end at the instant another starts is
    /// counted first, so back-to-back outages do not overlap.
    fn peak(&self) -> (usize, Option<Timestamp>) {
        let mut edges: Vec<(Timestamp, i8)> = Vec::new();
        for e in &self.ended {
            edges.push((e.start, 1));
            edges.push((e.end.max(e.start), -1));
        }
        edges.extend(self.down.iter().map(|d| (d.since, 1)));
        edges.sort_unstable();
        let (mut now, mut best, mut at) = (0i64, 0i64, None);
        for (t, delta) in edges {
            now += i64::from(delta);
            if now > best {
                best = now;
                at = Some(t);
            }
        }
        (usize::try_from(best).unwrap_or(0), at)
    }

    /// `out of service now: N (longest 1h 12m, user…); ended: M (median …, longest …)`.
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        let now = match &s.longest_down {
            Some((d, _, who)) => format!(
                "out of service now: {} (longest {}, {who})",
                s.down,
                human_duration(*d)
            ),
            None => "out of service now: 0".to_string(),
        };
        let ended = match (s.median, s.longest_ended) {
            (Some(m), Some(l)) => format!(
                "ended: {} (median {}, longest {})",
                s.ended,
                human_duration(m),
                human_duration(l)
            ),
            _ => "ended: 0".to_string(),
        };
        format!("{now}; {ended}")
    }

    /// What `outages` prints, its times in `zone`.
    pub fn render(&self, zone: Zone) -> String {
        let s = self.summary();
        let mut out = format!(
            "run {} · at {} (the run's clock)\n{}\n",
            self.run,
            zone.format(self.now),
            self.summary_line()
        );
        if let (n, Some(at)) = s.peak {
            out.push_str(&format!(
                "at most {n} out of service at once (first at {})\n",
                zone.format(at)
            ));
        }
        if s.stuck > 0 {
            out.push_str(&format!(
                "{} stopped while out of service: nothing brings them back by itself; \
                 restore service by hand or `portflow retry {} --subject <user>`\n",
                s.stuck, self.run
            ));
        }
        if !self.down.is_empty() {
            out.push_str("\nout of service now\n");
            let mut t = Table::new(["subject", "idx", "since", "for", "taken down by", "state"]);
            for r in &self.down {
                t.row([
                    r.subject.clone(),
                    r.idx.to_string(),
                    zone.format(r.since),
                    human_duration(r.duration(self.now)),
                    r.step.clone(),
                    r.state_text(80),
                ]);
            }
            out.push_str(&t.render());
        }
        if !self.ended.is_empty() {
            out.push_str("\nended\n");
            let mut t = Table::new([
                "subject",
                "idx",
                "start",
                "end",
                "duration",
                "taken down by",
                "restored by",
            ]);
            for e in &self.ended {
                t.row([
                    e.subject.clone(),
                    e.idx.to_string(),
                    zone.format(e.start),
                    zone.format(e.end),
                    human_duration(e.duration()),
                    e.step.clone(),
                    e.restored_by.clone(),
                ]);
            }
            out.push_str(&t.render());
        }
        out
    }

    /// What `outages --json` prints.
    pub fn to_json(&self) -> Value {
        let s = self.summary();
        json!({
            "run": self.run,
            "now": self.now.rfc3339(),
            "summary": {
                "down": s.down,
                "stuck": s.stuck,
                "longest_down": s.longest_down.as_ref().map(|(d, idx, who)| json!({
                    "idx": idx, "subject": who, "duration_s": seconds(*d),
                })),
                "ended": s.ended,
                "ended_median_s": s.median.map(seconds),
                "ended_longest_s": s.longest_ended.map(seconds),
                "peak": {"count": s.peak.0, "at": s.peak.1.map(Timestamp::rfc3339)},
            },
            "down": self.down.iter().map(|r| r.to_json(self.now)).collect::<Vec<_>>(),
            "ended": self.ended.iter().map(|e| json!({
                "idx": e.idx,
                "subject": e.subject,
                "start": e.start.rfc3339(),
                "end": e.end.rfc3339(),
                "duration_s": seconds(e.duration()),
                "step": e.step,
                "restored_by": e.restored_by,
            })).collect::<Vec<_>>(),
        })
    }

    /// What `outages --csv` prints: one row per outage, open ones first.
    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| Error::runtime(format!("writing CSV: {e}"));
        w.write_record([
            "kind",
            "idx",
            "subject",
            "start",
            "end",
            "duration_s",
            "step",
            "restored_by",
            "state",
        ])
        .map_err(err)?;
        for r in &self.down {
            w.write_record([
                "down",
                &r.idx.to_string(),
                &r.subject,
                &r.since.rfc3339(),
                "",
                &format!("{:.3}", seconds(r.duration(self.now))),
                &r.step,
                "",
                r.state,
            ])
            .map_err(err)?;
        }
        for e in &self.ended {
            w.write_record([
                "ended",
                &e.idx.to_string(),
                &e.subject,
                &e.start.rfc3339(),
                &e.end.rfc3339(),
                &format!("{:.3}", seconds(e.duration())),
                &e.step,
                &e.restored_by,
                "",
            ])
            .map_err(err)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::runtime(format!("writing CSV: {e}")))?;
        String::from_utf8(bytes).map_err(|e| Error::runtime(format!("writing CSV: {e}")))
    }
}

/// Output form of `outages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables for people.
    Text,
    /// One JSON document.
    Json,
    /// One row per outage.
    Csv,
}

impl Format {
    /// From the `--json` and `--csv` flags.
    pub fn from_flags(json: bool, csv: bool) -> Result<Format> {
        match (json, csv) {
            (true, true) => Err(Error::input("--json and --csv exclude each other").hint(
                "pick one: `portflow --json outages <run>` or `portflow outages <run> --csv`",
            )),
            (true, false) => Ok(Format::Json),
            (false, true) => Ok(Format::Csv),
            (false, false) => Ok(Format::Text),
        }
    }
}

/// What `outages` prints.
/// What `outages` prints; human times in `zone`.
pub fn outages_text(store: &dyn Store, run: &str, format: Format, zone: Zone) -> Result<String> {
    let record = load_run(store, run)?;
    let report = OutageReport::load(store, &record)?;
    Ok(match format {
        Format::Text => report.render(zone),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_else(|_| "null".into())
        ),
        Format::Csv => report.to_csv()?,
    })
}

/// Who is down now in one run, for `status`: a count and the longest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DownNow {
    /// Subjects out of service now.
    pub count: usize,
    /// Of those, stopped (terminal) instances.
    pub stuck: usize,
    /// Earliest `since`, with its index and subject.
    oldest: Option<(Timestamp, u32, String)>,
}

impl DownNow {
    /// Count one instance (nothing if it is not down).
    pub fn add(&mut self, idx: u32, subject: &str, status: &Status, down: Option<&OpenOutage>) {
        let Some(d) = down else { return };
        self.count += 1;
        self.stuck += usize::from(status.is_terminal());
        let older = self
            .oldest
            .as_ref()
            .is_none_or(|(t, i, _)| (d.since, idx) < (*t, *i));
        if older {
            self.oldest = Some((d.since, idx, subject.to_string()));
        }
    }

    /// Count one instance.
    pub fn add_instance(&mut self, i: &Instance) {
        self.add(i.idx, &i.subject, &i.status, i.down.as_ref());
    }

    /// `out of service now: N (longest 1h 12m, user…)`, when anyone is.
    pub fn line(&self, now: Timestamp) -> Option<String> {
        let (since, _, who) = self.oldest.as_ref()?;
        let mut s = format!(
            "out of service now: {} (longest {}, {who})",
            self.count,
            human_duration(now.since(*since))
        );
        if self.stuck > 0 {
            s.push_str(&format!(", {} of them stopped", self.stuck));
        }
        Some(s)
    }

    /// JSON form (always present, `now: 0` when nobody is down).
    pub fn to_json(&self, now: Timestamp) -> Value {
        json!({
            "now": self.count,
            "stuck": self.stuck,
            "longest": self.oldest.as_ref().map(|(since, idx, who)| json!({
                "idx": idx,
                "subject": who,
                "start": since.rfc3339(),
                "duration_s": seconds(now.since(*since)),
            })),
        })
    }
}

/// The command that lets a paused run go on.
pub fn continue_command(run: &str) -> String {
    format!("portflow resume --continue {run}")
}

/// Lines saying the run's breaker paused it, when it did.
pub fn paused_lines(record: &RunRecord) -> Option<String> {
    let t = record.breaker.tripped.as_ref()?;
    Some(format!(
        "paused: {} failure(s) reached the run's threshold of {} (stop_after_failures) at {}; \
         no new outage step starts\n  look at the failures, then continue with: {}",
        t.failures,
        t.threshold,
        t.at.rfc3339(),
        continue_command(&record.id)
    ))
}

/// JSON form of the pause (`null` when the breaker has not tripped).
pub fn paused_json(record: &RunRecord) -> Value {
    match &record.breaker.tripped {
        None => Value::Null,
        Some(t) => json!({
            "at": t.at.rfc3339(),
            "failures": t.failures,
            "threshold": t.threshold,
            "accepted": record.breaker.accepted,
            "continue_with": continue_command(&record.id),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::{Clock, ScaledClock, SystemClock};
    use crate::engine::instance::Phase;
    use crate::engine::run::{Breaker, Trip, WorkflowPin};
    use crate::report::exit;
    use crate::store::memory::MemoryStore;
    use crate::store::{records, Batch};

    pub(crate) const MIN: i64 = 60_000;
    /// The run's "now" in these tests: 2030-01-01T00:00:00Z.
    pub(crate) const T: i64 = 1_893_456_000_000;

    /// A DR → OC run whose clock is nearly stopped at `T`, so durations are exact.
    /// Index of a step of the shipped Direct Routing → Operator Connect workflow.
    pub(crate) fn step_of(id: &str) -> usize {
        let text = crate::spec::builtin::workflow_text("direct-routing-to-operator-connect")
            .unwrap_or_default();
        crate::spec::parse_workflow(text, "builtin")
            .ok()
            .and_then(|w| w.workflow.step_index(id))
            .unwrap_or_else(|| panic!("no step {id}"))
    }

    pub(crate) fn record(id: &str) -> RunRecord {
        let text = crate::spec::builtin::workflow_text("direct-routing-to-operator-connect")
            .unwrap_or_default();
        RunRecord {
            id: id.into(),
            label: None,
            created_at: Timestamp(T - 600 * MIN),
            workflow: WorkflowPin {
                name: "direct-routing-to-operator-connect".into(),
                version: 1,
                hash: "0".repeat(64),
                origin: "builtin:direct-routing-to-operator-connect.yaml".into(),
                text: text.into(),
            },
            then: Vec::new(),
            run_origin: "test.yaml".into(),
            run_text: String::new(),
            base_dir: ".".into(),
            clock: Some(ScaledClock {
                real_anchor: SystemClock.now(),
                virtual_anchor: Timestamp(T),
                scale: 1e-9,
            }),
            subjects: 4,
            finished_at: None,
            breaker: Breaker::default(),
        }
    }

    pub(crate) fn inst(run: &str, idx: u32, status: Status) -> Instance {
        let mut i = Instance::new(
            run,
            idx,
            format!("user{idx:04}@contoso.com"),
            serde_json::Map::new(),
            Timestamp(T - 600 * MIN),
        );
        i.status = status;
        i
    }

    pub(crate) fn down(since_min_ago: i64) -> Option<OpenOutage> {
        Some(OpenOutage {
            since: Timestamp(T - since_min_ago * MIN),
            step: "remove-dr-number".into(),
        })
    }

    pub(crate) fn span(start_min_ago: i64, minutes: i64) -> OutageSpan {
        OutageSpan {
            start: Timestamp(T - start_min_ago * MIN),
            end: Timestamp(T - start_min_ago * MIN + minutes * MIN),
            step: "remove-dr-number".into(),
            restored_by: "assign-oc-number".into(),
        }
    }

    /// Four subjects: 0 waiting and down 90 min; 1 failed while down 72 min;
    /// 2 succeeded after a 14-min outage; 3 never down.
    pub(crate) fn instances(run: &str) -> Vec<Instance> {
        let waiting = Status::Running {
            step: step_of("wait-operator-upload"),
            phase: Phase::Waiting {
                started: Timestamp(T - 80 * MIN),
                deadline: Timestamp(T + 600 * MIN),
                next_poll: Timestamp(T + MIN),
                polls: 3,
                last_error: None,
                overdue_since: None,
            },
        };
        let mut a = inst(run, 0, waiting);
        a.down = down(90);
        let mut b = inst(
            run,
            1,
            Status::Failed {
                step: step_of("assign-oc-number"),
                error: "Service is unavailable".into(),
            },
        );
        b.down = down(72);
        let mut c = inst(run, 2, Status::Succeeded);
        c.outages = vec![span(300, 14)];
        let d = inst(run, 3, Status::Succeeded);
        vec![a, b, c, d]
    }

    fn store_with(record: &RunRecord, instances: &[Instance]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        records::put_run(&mut b, record).expect("our records encode");
        for i in instances {
            records::put_new_instance(&mut b, i).expect("our records encode");
        }
        assert!(store.apply(&b).is_ok());
        store
    }

    fn report() -> OutageReport {
        let r = record("r1");
        let store = store_with(&r, &instances("r1"));
        match OutageReport::load(&store, &r) {
            Ok(rep) => rep,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_stopped_instance_comes_first_then_the_longest_down() {
        let rep = report();
        let order: Vec<u32> = rep.down.iter().map(|r| r.idx).collect();
        assert_eq!(order, vec![1, 0], "failed-while-down first, though shorter");
        assert!(rep.down[0].stuck && !rep.down[1].stuck);
        assert_eq!(rep.down[0].at_step.as_deref(), Some("assign-oc-number"));
        assert_eq!(rep.down[1].at_step.as_deref(), Some("wait-operator-upload"));
        assert_eq!(
            rep.down[0].reason.as_deref(),
            Some("Service is unavailable")
        );
        assert_eq!(rep.ended.len(), 1);
        assert_eq!(rep.ended[0].idx, 2);
        assert_eq!(rep.ended[0].duration(), Duration::from_secs(14 * 60));
    }

    #[test]
    fn durations_are_measured_at_the_runs_clock_not_the_wall_clock() {
        let rep = report();
        // The run's clock stands at 2030-01-01; the wall clock is years before.
        assert_eq!(rep.now, Timestamp(T));
        assert_eq!(rep.down[1].duration(rep.now), Duration::from_secs(90 * 60));
        let v = rep.to_json();
        assert_eq!(v["now"], "2030-01-01T00:00:00.000Z");
        assert_eq!(v["down"][0]["duration_s"], 72.0 * 60.0);
        assert_eq!(v["down"][1]["duration_s"], 90.0 * 60.0);
        assert_eq!(v["down"][1]["start"], "2029-12-31T22:30:00.000Z");
    }

    #[test]
    fn summary_line_names_the_longest_and_the_median() {
        let rep = report();
        assert_eq!(
            rep.summary_line(),
            "out of service now: 2 (longest 1h 30m, user0000@contoso.com); \
             ended: 1 (median 14m 0s, longest 14m 0s)"
        );
        let text = rep.render(Zone::Utc);
        assert!(
            text.contains("at 2030-01-01 00:00:00 UTC (the run's clock)"),
            "{text}"
        );
        let berlin = rep.render(Zone::Named(chrono_tz::Tz::Europe__Berlin));
        assert!(
            berlin.contains("at 2030-01-01 01:00:00 CET (the run's clock)"),
            "{berlin}"
        );
        assert!(text.contains("1 stopped while out of service"), "{text}");
        assert!(
            text.contains("STOPPED · failed at assign-oc-number: Service is unavailable"),
            "{text}"
        );
        // Row order in the table: the stopped one before the longer one.
        let a = text.find("user0001@contoso.com").unwrap_or(usize::MAX);
        let b = text.find("user0000@contoso.com    0").unwrap_or(0);
        assert!(a < b, "{text}");
        assert!(text.contains("1h 12m"), "{text}");
        assert!(text.contains("restored by"), "{text}");
    }

    #[test]
    fn nobody_down_reads_as_zero() {
        let rep = OutageReport::new("r", Timestamp(T), Vec::new(), &[]);
        assert_eq!(rep.summary_line(), "out of service now: 0; ended: 0");
        assert_eq!(rep.summary().peak, (0, None));
        let v = rep.to_json();
        assert_eq!(v["down"], json!([]));
        assert_eq!(v["summary"]["longest_down"], Value::Null);
        assert_eq!(v["summary"]["ended_median_s"], Value::Null);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let mut i = inst("r", 0, Status::Succeeded);
        i.outages = vec![span(500, 10), span(400, 20), span(300, 40), span(200, 90)];
        let rep = OutageReport::new("r", Timestamp(T), [Head::from(&i)], &[]);
        let s = rep.summary();
        assert_eq!(s.median, Some(Duration::from_secs(30 * 60)));
        assert_eq!(s.longest_ended, Some(Duration::from_secs(90 * 60)));
        assert_eq!(s.peak.0, 1, "one subject's outages never overlap");
    }

    #[test]
    fn peak_counts_overlapping_spans_and_open_outages_but_not_back_to_back_ones() {
        let mut a = inst("r", 0, Status::Succeeded);
        a.outages = vec![span(100, 30)]; // T-100 .. T-70
        let mut b = inst("r", 1, Status::Succeeded);
        b.outages = vec![span(70, 10)]; // starts as a's ends: no overlap
        let mut c = inst("r", 2, Status::Succeeded);
        c.outages = vec![span(90, 60)]; // T-90 .. T-30
        let mut d = inst("r", 3, Status::Cancelled);
        d.down = down(80); // open since T-80
        let heads: Vec<Head> = [&a, &b, &c, &d].into_iter().map(Head::from).collect();
        let rep = OutageReport::new("r", Timestamp(T), heads, &[]);
        // At T-80: a, c and d are down.
        assert_eq!(rep.summary().peak, (3, Some(Timestamp(T - 80 * MIN))));
        let v = rep.to_json();
        assert_eq!(v["summary"]["peak"]["count"], 3);
        assert_eq!(
            v["down"][0]["stuck"], true,
            "a cancelled instance stays down"
        );
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_outage() {
        let rep = report();
        let text = match rep.to_csv() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kind,idx,subject,start,end,duration_s,step,restored_by,state"
        );
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[1],
            "down,1,user0001@contoso.com,2029-12-31T22:48:00.000Z,,4320.000,remove-dr-number,,failed"
        );
        assert_eq!(
            lines[3],
            "ended,2,user0002@contoso.com,2029-12-31T19:00:00.000Z,2029-12-31T19:14:00.000Z,840.000,remove-dr-number,assign-oc-number,"
        );
    }

    #[test]
    fn unknown_run_is_bad_input_with_a_hint_and_flags_exclude_each_other() {
        let store = MemoryStore::new();
        let e = match outages_text(&store, "no-such-run", Format::Text, Zone::Utc) {
            Ok(t) => panic!("answered {t}"),
            Err(e) => e,
        };
        assert_eq!(e.kind().exit_code(), exit::INPUT);
        assert!(e.hint_text().is_some_and(|h| h.contains("portflow status")));
        let e = Format::from_flags(true, true)
            .err()
            .map(|e| e.kind().exit_code());
        assert_eq!(e, Some(exit::INPUT));
        assert!(matches!(Format::from_flags(false, true), Ok(Format::Csv)));
    }

    #[test]
    fn down_now_counts_and_names_the_longest() {
        let mut d = DownNow::default();
        for i in instances("r1") {
            d.add_instance(&i);
        }
        assert_eq!((d.count, d.stuck), (2, 1));
        assert_eq!(
            d.line(Timestamp(T)).as_deref(),
            Some("out of service now: 2 (longest 1h 30m, user0000@contoso.com), 1 of them stopped")
        );
        assert_eq!(d.to_json(Timestamp(T))["longest"]["duration_s"], 5400.0);
        assert_eq!(DownNow::default().line(Timestamp(T)), None);
    }

    #[test]
    fn a_tripped_breaker_says_why_and_how_to_continue() {
        let mut r = record("r9");
        assert_eq!(paused_lines(&r), None);
        assert_eq!(paused_json(&r), Value::Null);
        r.breaker.tripped = Some(Trip {
            at: Timestamp(T - 5 * MIN),
            failures: 5,
            threshold: 5,
        });
        let text = paused_lines(&r).unwrap_or_default();
        assert!(
            text.contains("5 failure(s) reached the run's threshold of 5"),
            "{text}"
        );
        assert!(text.contains("portflow resume --continue r9"), "{text}");
        assert_eq!(
            paused_json(&r)["continue_with"],
            "portflow resume --continue r9"
        );
    }
}
