//! `portflow report RUN`: a run's report (see `crate::report::run_report`)
//! built from what the store holds now, whether the run is finished or live.
//! The per-subject facts are the ones `show --json` gives: the instance
//! snapshot and its history.

use std::path::Path;

use chrono_tz::Tz;

use super::runs::{load_run, pinned_workflow, run_clock, stored_run_file};
use super::{Error, Result};
use crate::clock::Timestamp;
use crate::engine::instance::{Event, EventKind, Instance, Status};
use crate::engine::run::RunRecord;
use crate::report::run_report::{Action, At, Format, RunReport, SubjectRow};
use crate::report::zone::parse_zone;
use crate::store::{records, Store};

/// What `report` prints or writes: run `run` in `format`, times in `zone`
/// (default: [`default_zone`]).
pub fn report_text(
    store: &dyn Store,
    run: &str,
    format: Format,
    zone: Option<&str>,
) -> Result<String> {
    let record = load_run(store, run)?;
    let zone = match zone {
        Some(z) => parse_zone(z).map_err(|e| Error::input(e.to_string()))?,
        None => default_zone(&record),
    };
    build(store, &record)?
        .render(format, zone)
        .map_err(|e| Error::runtime(format!("writing the CSV report: {e}")))
}

/// The format a report is written in: `--format`; else `json` with
/// `--json`; else the extension of `--out` (`.csv`, `.json`, `.html`); else
/// none (the caller's default). `--json` with another `--format` is an error.
pub fn choose_format(
    json: bool,
    format: Option<Format>,
    out: Option<&Path>,
) -> Result<Option<Format>> {
    match (json, format) {
        (true, Some(f)) if f != Format::Json => Err(Error::input(format!(
            "--json and --format {} exclude each other",
            f.name()
        ))
        .hint("drop --json, or use --format json")),
        (_, Some(f)) => Ok(Some(f)),
        (true, None) => Ok(Some(Format::Json)),
        (false, None) => Ok(out.and_then(Format::of_path)),
    }
}

/// Write `text` to `path` whole or not at all: into a temporary file beside
/// it, synced, then renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let cannot = |e: std::io::Error| {
        Error::input(format!("cannot write {}: {e}", path.display()))
            .hint("choose a writable path for --out")
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::input(format!("--out {}: not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    Ok(())
}

/// The display zone of a run when the operator names none: its porting
/// window's time zone, else UTC.
pub fn default_zone(record: &RunRecord) -> Tz {
    stored_run_file(record)
        .ok()
        .and_then(|f| f.window)
        .and_then(|w| w.zone())
        .unwrap_or(Tz::UTC)
}

/// The report of a stored run, as its store holds it now.
pub fn build(store: &dyn Store, record: &RunRecord) -> Result<RunReport> {
    let wf = pinned_workflow(record)?;
    let steps: Vec<String> = wf.steps.iter().map(|s| s.id.clone()).collect();
    let at = |t: Timestamp| match &record.clock {
        Some(c) => At {
            real: c.real_of(t),
            virtual_: Some(t),
        },
        None => At {
            real: t,
            virtual_: None,
        },
    };
    let now = run_clock(record).now();
    let mut subjects = Vec::new();
    for inst in records::list_instances(store, &record.id)? {
        let events = records::list_events(store, &inst.key())?;
        subjects.push(subject_row(&inst, &events, &steps, now, &at));
    }
    Ok(RunReport {
        run: record.id.clone(),
        label: record.label.clone(),
        workflow: (
            record.workflow.name.clone(),
            record.workflow.version,
            record.workflow.hash.clone(),
        ),
        live: record.finished_at.is_none(),
        generated: at(now),
        time_scale: record.clock.map(|c| c.scale),
        created: at(record.created_at),
        finished: record.finished_at.map(at),
        steps,
        inputs: wf.inputs.keys().cloned().collect(),
        subjects,
    })
}

/// One subject's row from its snapshot and history; `now` is the run's clock.
fn subject_row(
    inst: &Instance,
    events: &[Event],
    steps: &[String],
    now: Timestamp,
    at: &dyn Fn(Timestamp) -> At,
) -> SubjectRow {
    let step_index = |id: &str| steps.iter().position(|s| s == id);
    // Where it got to: the snapshot says, except for a cancelled subject,
    // whose history does (the furthest step it worked on).
    let furthest_in_history = events
        .iter()
        .filter_map(|e| forward_step(&e.kind).and_then(step_index))
        .max();
    let (step, reached) = match &inst.status {
        Status::Pending => (None, None),
        Status::Succeeded => (None, Some(steps.len())),
        Status::Cancelled => (furthest_in_history, furthest_in_history),
        Status::Compensating { failed_step, .. } => (inst.status.step(), Some(*failed_step)),
        Status::NeedsAttention {
            step,
            rollback: Some(r),
            ..
        } => (Some(*step), Some(r.failed_step.max(*step))),
        s => (s.step(), s.step()),
    };
    let message = match &inst.status {
        Status::Failed { error, .. } | Status::RolledBack { error, .. } => Some(error.clone()),
        Status::NeedsAttention { reason, .. } => Some(reason.clone()),
        Status::Compensating { error, .. } => Some(error.clone()),
        _ => None,
    };
    // The error of the call that stopped it: the last failure not retried
    // since the operator's last retry.
    let mut error_class = None;
    let mut actions = Vec::new();
    for e in events {
        let mut act =
            |action: &'static str, by: &str, step: Option<&str>, detail: Option<String>| {
                actions.push(Action {
                    action,
                    by: by.to_string(),
                    at: at(e.at),
                    step: step.map(str::to_string),
                    detail,
                })
            };
        match &e.kind {
            EventKind::ActionFailed {
                error,
                retry_at: None,
                ..
            } => error_class = Some(error.kind.as_str().to_string()),
            EventKind::GateApproved { step, by } => act("approved", by, Some(step), None),
            EventKind::SignalReceived { step, name, by, .. } => {
                act("signalled", by, Some(step), Some(name.clone()))
            }
            EventKind::Retried { from_step, by } => {
                error_class = None;
                act("retried", by, Some(from_step), None)
            }
            EventKind::InputAmended {
                input,
                old,
                new,
                by,
                reason,
            } => {
                let mut d = format!("{input}: {old} → {new}");
                if let Some(r) = reason {
                    d.push_str(&format!(" ({r})"));
                }
                act("amended", by, None, Some(d))
            }
            EventKind::RollbackStarted {
                by: Some(by), step, ..
            } => act("cancelled", by, Some(step), Some("with rollback".into())),
            EventKind::Cancelled {
                reason,
                by: Some(by),
            } => act("cancelled", by, None, Some(reason.clone())),
            _ => {}
        }
    }
    let stopped = matches!(
        inst.status,
        Status::Failed { .. } | Status::RolledBack { .. } | Status::NeedsAttention { .. }
    );
    if error_class.is_none()
        && message
            .as_deref()
            .is_some_and(|m| m.starts_with("refused:"))
    {
        error_class = Some("refused".into());
    }
    if !stopped && !matches!(inst.status, Status::Compensating { .. }) {
        error_class = None;
    }
    let mut outages: Vec<std::time::Duration> =
        inst.outages.iter().map(|o| o.end.since(o.start)).collect();
    if let Some(d) = &inst.down {
        outages.push(now.since(d.since));
    }
    SubjectRow {
        idx: inst.idx,
        subject: inst.subject.clone(),
        inputs: inst.inputs.clone(),
        state: inst.status.name(),
        step: step.and_then(|i| steps.get(i).cloned()),
        reached,
        terminal: inst.is_terminal(),
        error_class,
        message,
        start: events.first().map(|e| at(e.at)),
        end: inst
            .is_terminal()
            .then(|| events.last().map(|e| at(e.at)))
            .flatten(),
        outages,
        down_now: inst.down.is_some(),
        calls: inst.calls,
        actions,
    }
}

/// The step a forward-track event is about (not undo work).
fn forward_step(k: &EventKind) -> Option<&str> {
    match k {
        EventKind::StepSkipped { step, .. }
        | EventKind::GateBlocked { step, .. }
        | EventKind::GateApproved { step, .. }
        | EventKind::SignalReceived { step, .. }
        | EventKind::ActionIntent { step, .. }
        | EventKind::WaitStarted { step, .. }
        | EventKind::Held { step, .. }
        | EventKind::Failed { step, .. }
        | EventKind::NeedsAttention { step, .. } => Some(step),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::outages::tests::{inst, record, step_of, T};
    use crate::backend::{BackendError, ErrorKind};
    use crate::store::memory::MemoryStore;
    use crate::store::Batch;

    fn ev(seq: u32, at: i64, kind: EventKind) -> Event {
        Event {
            seq,
            at: Timestamp(at),
            kind,
        }
    }

    fn store_with(record: &RunRecord, insts: &[(Instance, Vec<Event>)]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        records::put_run(&mut b, record).expect("our records encode");
        for (i, events) in insts {
            records::put_new_instance(&mut b, i).expect("our records encode");
            let mut next = i.clone();
            next.seq = events.len() as u32;
            records::put_replaced_instance(&mut b, i, &next, events).expect("our records encode");
        }
        assert!(store.apply(&b).is_ok());
        store
    }

    #[test]
    fn rows_say_who_did_what_and_which_call_stopped_a_subject() {
        let mut r = record("r1");
        r.clock = None;
        let gate = step_of("operator-coordinated");
        let failed_at = step_of("remove-dr-number");
        let steps = pinned_workflow(&r).map(|w| w.steps.len()).unwrap_or(0);
        let failed = inst(
            "r1",
            0,
            Status::Failed {
                step: failed_at,
                error: "remove_number failed after 5 attempts: Service is unavailable".into(),
            },
        );
        let transient = BackendError::new(ErrorKind::Transient, "Service is unavailable");
        let failed_events = vec![
            ev(0, T, EventKind::Started),
            ev(
                1,
                T + 1,
                EventKind::GateApproved {
                    step: "operator-coordinated".into(),
                    by: "alice".into(),
                },
            ),
            ev(
                2,
                T + 2,
                EventKind::ActionFailed {
                    step: "remove-dr-number".into(),
                    attempt: 1,
                    error: BackendError::new(ErrorKind::Throttled, "429"),
                    retry_at: Some(Timestamp(T + 3)),
                },
            ),
            ev(
                3,
                T + 4,
                EventKind::ActionFailed {
                    step: "remove-dr-number".into(),
                    attempt: 5,
                    error: transient,
                    retry_at: None,
                },
            ),
        ];
        let cancelled = inst("r1", 1, Status::Cancelled);
        let cancelled_events = vec![
            ev(0, T, EventKind::Started),
            ev(
                1,
                T + 5,
                EventKind::GateBlocked {
                    step: "operator-coordinated".into(),
                    approval: "go".into(),
                    signal: None,
                },
            ),
            ev(
                2,
                T + 6,
                EventKind::Cancelled {
                    reason: "not this wave".into(),
                    by: Some("bob".into()),
                },
            ),
        ];
        let mut ok = inst("r1", 2, Status::Succeeded);
        ok.calls = 9;
        let ok_events = vec![
            ev(0, T, EventKind::Started),
            ev(
                1,
                T + 7,
                EventKind::SignalReceived {
                    step: "operator-coordinated".into(),
                    name: "done".into(),
                    by: "carol".into(),
                    data: serde_json::Value::Null,
                },
            ),
            ev(2, T + 8, EventKind::Succeeded),
        ];
        let store = store_with(
            &r,
            &[
                (failed, failed_events),
                (cancelled, cancelled_events),
                (ok, ok_events),
            ],
        );
        let rep = build(&store, &r).expect("report");
        assert!(rep.live);
        let [f, c, s] = &rep.subjects[..] else {
            panic!("3 rows: {:?}", rep.subjects)
        };
        assert_eq!(f.state, "failed");
        assert_eq!(f.step.as_deref(), Some("remove-dr-number"));
        assert_eq!(f.error_class.as_deref(), Some("transient"));
        assert_eq!(f.actions[0].action, "approved");
        assert_eq!(f.actions[0].by, "alice");
        assert_eq!(f.end.map(|a| a.real), Some(Timestamp(T + 4)));
        assert_eq!(c.step.as_deref(), Some("operator-coordinated"));
        assert_eq!(c.reached, Some(gate));
        assert_eq!(c.actions[0].action, "cancelled");
        assert_eq!(c.actions[0].detail.as_deref(), Some("not this wave"));
        assert_eq!(c.error_class, None);
        assert_eq!(s.reached, Some(steps));
        assert_eq!(s.calls, 9);
        assert_eq!(s.actions[0].action, "signalled");
        assert_eq!(s.actions[0].detail.as_deref(), Some("done"));
        let sum = rep.summary();
        let g = &sum.funnel[gate];
        assert_eq!((g.reached, g.stopped, g.passed), (3, 1, 2));
        assert_eq!(sum.funnel[failed_at].stopped, 1);
    }

    #[test]
    fn the_format_comes_from_the_flag_then_json_then_the_file_name() {
        let html = Some(Path::new("out/r.html"));
        assert_eq!(
            choose_format(false, None, html).ok().flatten(),
            Some(Format::Html)
        );
        assert_eq!(
            choose_format(false, Some(Format::Csv), html).ok().flatten(),
            Some(Format::Csv)
        );
        assert_eq!(
            choose_format(true, None, html).ok().flatten(),
            Some(Format::Json)
        );
        assert_eq!(
            choose_format(false, None, Some(Path::new("r.txt")))
                .ok()
                .flatten(),
            None
        );
        assert!(choose_format(true, Some(Format::Html), None).is_err());
    }

    #[test]
    fn a_report_file_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "old").expect("write");
        write_atomically(&path, "new,text\n").expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("new,text\n")
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        assert!(write_atomically(&dir.path().join("missing/r.csv"), "x").is_err());
    }

    #[test]
    fn a_rehearsal_reports_real_time_and_keeps_virtual_time_apart() {
        let mut r = record("r1");
        r.clock = Some(crate::clock::ScaledClock {
            real_anchor: Timestamp(T - 3_600_000),
            virtual_anchor: Timestamp(T - 3_600_000),
            scale: 60.0,
        });
        let i = inst("r1", 0, Status::Succeeded);
        let events = vec![ev(0, T, EventKind::Started), ev(1, T, EventKind::Succeeded)];
        let store = store_with(&r, &[(i, events)]);
        let rep = build(&store, &r).expect("report");
        let start = rep.subjects[0].start.expect("start");
        // One virtual hour after the anchor is one real minute after it.
        assert_eq!(start.real, Timestamp(T - 3_600_000 + 60_000));
        assert_eq!(start.virtual_, Some(Timestamp(T)));
        assert_eq!(rep.time_scale, Some(60.0));
    }
}
