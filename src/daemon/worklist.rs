//! Instances waiting for a person: pending approvals, manual tasks, named
//! signals, and waits only a signal can end (the backend cannot read what the
//! wait observes). Found while [`super::scan`] reads a run and kept with its
//! figures; `GET /api/worklist` groups them by run and step.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::app::outages::Head;
use crate::backend::OperationKind;
use crate::engine::instance::{Phase, Status};
use crate::engine::machine::DONE_SIGNAL;
use crate::spec::model::Workflow;

/// What a person is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum WorkKind {
    /// A gate's approval (`approve`).
    Approval,
    /// A manual task: a person does it, then signals `done`.
    Manual,
    /// A gate waiting for a named signal.
    Signal,
    /// A wait whose observation no backend of the run can read: only its
    /// signal ends it before the deadline.
    SignalOnly,
}

impl WorkKind {
    /// Name in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            WorkKind::Approval => "approval",
            WorkKind::Manual => "manual",
            WorkKind::Signal => "signal",
            WorkKind::SignalOnly => "signal_only",
        }
    }
}

/// One instance waiting for a person.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WorkItem {
    /// Subject.
    pub subject: String,
    /// Step index.
    pub step: usize,
    /// What it waits for.
    pub kind: WorkKind,
    /// The signal that ends it (`None` for an approval).
    pub signal: Option<String>,
    /// The approval text or the instructions; empty for a signal-only wait
    /// until [`signal_only`] fills it in.
    pub text: String,
}

/// A blocked instance's work item; a waiting one is a candidate that
/// [`signal_only`] keeps only when its wait cannot be read.
pub(crate) fn of_head(h: &Head) -> Option<WorkItem> {
    let (step, phase) = match &h.status {
        Status::Running { step, phase } | Status::Compensating { step, phase, .. } => {
            (*step, phase)
        }
        _ => return None,
    };
    let (kind, signal, text) = match phase {
        Phase::Blocked { gate, signal: None } => (WorkKind::Approval, None, gate.clone()),
        Phase::Blocked {
            gate,
            signal: Some(s),
        } if s == DONE_SIGNAL => (WorkKind::Manual, Some(s.clone()), gate.clone()),
        Phase::Blocked {
            gate,
            signal: Some(s),
        } => (WorkKind::Signal, Some(s.clone()), gate.clone()),
        Phase::Waiting { .. } => (WorkKind::SignalOnly, None, String::new()),
        _ => return None,
    };
    Some(WorkItem {
        subject: h.subject.clone(),
        step,
        kind,
        signal,
        text,
    })
}

/// Keep the waiting candidates whose wait only a signal can end (it has a
/// `signal` and its observation is among `manual` operations), naming the
/// signal and why; blocked items pass as they are.
pub(crate) fn signal_only(
    items: Vec<WorkItem>,
    wf: &Workflow,
    manual: &[OperationKind],
) -> Vec<WorkItem> {
    items
        .into_iter()
        .filter_map(|mut w| {
            if w.kind != WorkKind::SignalOnly {
                return Some(w);
            }
            let wait = wf.steps.get(w.step)?.wait.as_ref()?;
            let sig = wait.signal.as_ref()?;
            let op = wait.observe.op;
            if !manual.contains(&op) {
                return None;
            }
            let info = op.info();
            w.text = format!(
                "{} cannot be read on this backend ({}): confirm it, then signal `{sig}`",
                info.name, info.microsoft
            );
            w.signal = Some(sig.clone());
            Some(w)
        })
        .collect()
}

/// Work items of one run grouped by step, kind and signal, in step order;
/// each group lists at most `limit` subjects.
pub(crate) fn groups(run: &str, steps: &[String], items: &[WorkItem], limit: usize) -> Vec<Value> {
    let mut by: BTreeMap<(usize, WorkKind, Option<&str>), Vec<&WorkItem>> = BTreeMap::new();
    for w in items {
        by.entry((w.step, w.kind, w.signal.as_deref()))
            .or_default()
            .push(w);
    }
    by.into_iter()
        .map(|((step, kind, signal), list)| {
            let subjects: Vec<Value> = list
                .iter()
                .take(limit)
                .map(|w| json!({"subject": w.subject, "text": w.text}))
                .collect();
            json!({
                "run": run,
                "step": steps.get(step),
                "kind": kind.name(),
                "signal": signal,
                "count": list.len(),
                "text": list.first().map(|w| w.text.as_str()),
                "subjects": subjects,
                "truncated": list.len() > limit,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn head(subject: &str, status: Status) -> Head {
        Head {
            idx: 0,
            subject: subject.into(),
            status,
            down: None,
            outages: Vec::new(),
        }
    }

    fn blocked(step: usize, signal: Option<&str>) -> Status {
        Status::Running {
            step,
            phase: Phase::Blocked {
                gate: format!("gate {step}"),
                signal: signal.map(String::from),
            },
        }
    }

    fn waiting(step: usize) -> Status {
        Status::Running {
            step,
            phase: Phase::Waiting {
                started: Timestamp(0),
                deadline: Timestamp(1),
                next_poll: Timestamp(1),
                polls: 0,
                last_error: None,
                overdue_since: None,
            },
        }
    }

    const WORKFLOW: &str = "name: w\nversion: 1\nsubject: user\ninputs:\n  user: {type: upn}\n  \
        number: {type: e164}\nsteps:\n  \
        - id: gate\n    gate: {approval: go}\n  \
        - id: port\n    wait:\n      observe: {op: get_port_order, args: {number: \"${inputs.number}\"}}\n      \
        until: \"obs.status == 'Completed'\"\n      expected: 1h\n      timeout: 2h\n      signal: ported\n";

    fn workflow() -> Workflow {
        match crate::spec::parse_workflow(WORKFLOW, "test") {
            Ok(l) => l.workflow,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn blocked_instances_are_approvals_manual_tasks_or_signals() {
        let kinds: Vec<_> = [
            blocked(0, None),
            blocked(1, Some("done")),
            blocked(2, Some("ported")),
            waiting(3),
            Status::Succeeded,
            Status::Running {
                step: 0,
                phase: Phase::Ready,
            },
        ]
        .into_iter()
        .map(|s| of_head(&head("a", s)).map(|w| (w.kind, w.signal)))
        .collect();
        assert_eq!(
            kinds,
            vec![
                Some((WorkKind::Approval, None)),
                Some((WorkKind::Manual, Some("done".into()))),
                Some((WorkKind::Signal, Some("ported".into()))),
                Some((WorkKind::SignalOnly, None)),
                None,
                None,
            ]
        );
    }

    #[test]
    fn a_wait_is_work_only_when_its_observation_cannot_be_read() {
        let wf = workflow();
        let items = || {
            vec![
                of_head(&head("a", blocked(0, None))).expect("approval"),
                of_head(&head("b", waiting(1))).expect("candidate"),
            ]
        };
        let readable = signal_only(items(), &wf, &[]);
        assert_eq!(
            readable.len(),
            1,
            "a wait the backend reads is nobody's work"
        );
        assert_eq!(readable[0].kind, WorkKind::Approval);
        let manual = signal_only(items(), &wf, &[OperationKind::GetPortOrder]);
        assert_eq!(manual.len(), 2);
        assert_eq!(manual[1].kind, WorkKind::SignalOnly);
        assert_eq!(manual[1].signal.as_deref(), Some("ported"));
        assert!(
            manual[1].text.contains("signal `ported`"),
            "{}",
            manual[1].text
        );
    }

    #[test]
    fn groups_are_per_step_and_signal_with_counts_and_at_most_limit_subjects() {
        let items: Vec<WorkItem> = ["a", "b", "c"]
            .iter()
            .map(|s| of_head(&head(s, blocked(0, None))).expect("approval"))
            .chain(of_head(&head("d", blocked(1, Some("done")))))
            .collect();
        let steps = vec!["gate".to_string(), "confirm".to_string()];
        let g = groups("r1", &steps, &items, 2);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!(g[0]["step"], "gate");
        assert_eq!(g[0]["kind"], "approval");
        assert_eq!(g[0]["count"], 3);
        assert_eq!(g[0]["subjects"].as_array().map(Vec::len), Some(2));
        assert_eq!(g[0]["truncated"], true);
        assert_eq!(g[1]["kind"], "manual");
        assert_eq!(g[1]["signal"], "done");
        assert_eq!(g[1]["subjects"][0]["subject"], "d");
    }
}
