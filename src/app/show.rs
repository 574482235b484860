//! What `status` and `show` print: the list of runs, one run's summary, one
//! instance with its history. The CLI prints it; the daemon serves the same
//! text to a CLI that finds the state directory held.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::outages::{paused_json, DownNow};
use super::runs::{load_run, pinned_workflow, run_clock};
use super::summary::{pins, RunSummary};
use super::{json_text, Error, Result};
use crate::engine::instance::{Event, EventKind, Phase, Status, TERMINAL_NAMES};
use crate::report::escape::escape_controls;
use crate::report::table::{human_duration, Table};
use crate::report::zone::Zone;
use crate::store::keys::InstanceKey;
use crate::store::{records, Store};

/// What `status` prints.
/// Human times are shown in `zone`; JSON stays UTC.
pub fn status_text(
    store: &dyn Store,
    run: Option<&str>,
    json_out: bool,
    zone: Zone,
) -> Result<String> {
    let out;
    match run {
        Some(id) => {
            let record = load_run(store, id)?;
            let wf = pinned_workflow(&record)?;
            let s = RunSummary::load(store, &record, &wf)?;
            if json_out {
                out = json_text(&s.to_json());
            } else {
                out = s.render(zone);
            }
        }
        None => {
            let runs = records::list_runs(store)?;
            let mut docs = Vec::new();
            let mut t = Table::new([
                "run",
                "label",
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
                    r.label.as_deref().map_or("-".into(), escape_controls),
                    r.workflow.name.clone(),
                    zone.format(r.created_at),
                    r.subjects.to_string(),
                    get("succeeded").to_string(),
                    get("failed").to_string(),
                    get("needs_attention").to_string(),
                    active.to_string(),
                    r.finished_real().map_or("-".into(), |t| zone.format(t)),
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

/// What `show` prints.
/// Human times are shown in `zone`; JSON stays UTC.
pub fn show_text(
    store: &dyn Store,
    run: &str,
    subject: &str,
    json_out: bool,
    zone: Zone,
) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let record = load_run(store, run)?;
    let wf = pinned_workflow(&record)?;
    let idx =
        records::find_subject(store, run, subject)?.ok_or_else(|| Error::SubjectNotFound {
            run: run.to_string(),
            subject: subject.to_string(),
        })?;
    let key = InstanceKey {
        run: run.into(),
        idx,
    };
    let inst = records::get_instance(store, &key)?.ok_or_else(|| {
        Error::runtime(format!(
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
        } => format!(
            "waiting for window (opens at {}) before {}",
            zone.format(*opens),
            step_name(*step)
        ),
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
        Status::Cancelled => match events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Cancelled { reason, by } => Some((reason, by)),
            _ => None,
        }) {
            // Operator text: a newline in it must not forge a line.
            Some((reason, Some(by))) => format!(
                "cancelled by {}: {}",
                escape_controls(by),
                escape_controls(reason)
            ),
            Some((reason, None)) => format!("cancelled: {}", escape_controls(reason)),
            None => "cancelled".to_string(),
        },
        s => s.name().to_string(),
    };
    let _ = writeln!(out, "state: {detail}");
    if let Some(d) = &inst.down {
        let _ = writeln!(
            out,
            "out of service since {} ({} at the run's clock), taken down by {}",
            zone.format(d.since),
            human_duration(run_clock(&record).now().since(d.since)),
            d.step
        );
    }
    for o in &inst.outages {
        let _ = writeln!(
            out,
            "was out of service {} → {} ({}), taken down by {}, restored by {}",
            zone.format(o.start),
            zone.format(o.end),
            human_duration(o.end.since(o.start)),
            o.step,
            o.restored_by
        );
    }
    if let Some(d) = inst.due {
        let _ = writeln!(out, "next: {}", zone.format(d));
    }
    let _ = writeln!(out, "backend calls: {}", inst.calls);
    let mut t = Table::new(["#", "at", "event", "details"]);
    for e in &events {
        t.row([
            e.seq.to_string(),
            zone.format(e.at),
            event_name(e),
            escape_controls(&event_details(e)),
        ]);
    }
    out.push_str(&t.render());
    // Histories hold operator text (`--by`, reasons): no escape bytes reach the terminal.
    let safe: Vec<String> = out.lines().map(escape_controls).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::outages::tests::{inst, instances, record, span, step_of, MIN, T};
    use crate::clock::Timestamp;
    use crate::engine::instance::{EventKind, Instance};
    use crate::engine::run::{RunRecord, Trip};
    use crate::store::memory::MemoryStore;
    use crate::store::Batch;

    fn store_with(record: &RunRecord, insts: &[Instance]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut b = Batch::default();
        records::put_run(&mut b, record).expect("our records encode");
        for i in insts {
            records::put_new_instance(&mut b, i).expect("our records encode");
        }
        assert!(store.apply(&b).is_ok());
        store
    }

    fn ok<T>(r: Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
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
        let text = ok(status_text(&store, Some("r1"), false, Zone::Utc));
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
        let v: Value = serde_json::from_str(&ok(status_text(&store, Some("r1"), true, Zone::Utc)))
            .unwrap_or(Value::Null);
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
        let mut r2 = record("r2");
        r2.label = Some("wave 3 \u{1b}[31mBerlin".into());
        // A rehearsal at 600x that ran one real hour ends 600 h later on its clock.
        r2.created_at = Timestamp(T);
        r2.clock = Some(crate::clock::ScaledClock {
            real_anchor: Timestamp(T),
            virtual_anchor: Timestamp(T),
            scale: 600.0,
        });
        r2.finished_at = Some(Timestamp(T + 600 * 60 * MIN));
        let mut b = Batch::default();
        records::put_run(&mut b, &r2).expect("our records encode");
        records::put_new_instance(&mut b, &inst("r2", 0, Status::Succeeded))
            .expect("our records encode");
        assert!(store.apply(&b).is_ok());
        let text = ok(status_text(&store, None, false, Zone::Utc));
        // The run's label, made safe for the terminal; times in the zone asked for.
        assert!(text.contains("label"), "{text}");
        assert!(text.contains("wave 3 \\u{1b}[31mBerlin"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(" UTC"), "{text}");
        let one = ok(status_text(&store, Some("r2"), false, Zone::Utc));
        let end = Zone::Utc.format(Timestamp(T + 60 * MIN));
        assert!(
            one.contains(&format!("→ {end}")),
            "shown in real time: {one}"
        );
        assert!(text.contains(&end), "{text}");
        assert!(
            one.starts_with("run r2 \"wave 3 \\u{1b}[31mBerlin\" · "),
            "{one}"
        );
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
        let v: Value = serde_json::from_str(&ok(status_text(&store, None, true, Zone::Utc)))
            .unwrap_or(Value::Null);
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
        let text = ok(status_text(&store, Some("r1"), false, Zone::Utc));
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
        let v: Value = serde_json::from_str(&ok(status_text(&store, Some("r1"), true, Zone::Utc)))
            .unwrap_or(Value::Null);
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
                by: Some("ops".into()),
            },
        }];
        let mut b = Batch::default();
        let mut next = i.clone();
        next.seq = 1;
        records::put_replaced_instance(&mut b, &i, &next, &events).expect("our records encode");
        assert!(store.apply(&b).is_ok());
        let text = ok(show_text(
            &store,
            "r1",
            "user0000@contoso.com",
            false,
            Zone::Utc,
        ));
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("bye\\u{1b}[2J\\nforged line"), "{text}");
        assert!(
            text.contains("state: cancelled by ops: bye\\u{1b}[2J\\nforged line\n"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("forged")), "{text}");
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
        records::put_replaced_instance(&mut b, &i, &next, &events).expect("our records encode");
        assert!(store.apply(&b).is_ok());
        let text = ok(show_text(
            &store,
            "r1",
            "user0000@contoso.com",
            false,
            Zone::Utc,
        ));
        assert!(
            text.contains(
                "state: held before assign-oc-number: the run's out-of-service budget (2) is full\n  \
                 the run is paused; continue with: portflow resume --continue r1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "out of service since 2029-12-31 22:30:00 UTC (1h 30m at the run's clock), \
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
