//! A run's outcome, the one rule behind the exit codes of `run` and `resume`
//! (locally or through the daemon):
//!
//! - 0: every subject ended in a success state: succeeded, or stopped on an
//!   operator's request (`cancel`, `cancel --rollback`) with its number in service;
//! - 3: some failed, need attention, were rolled back after a failure, were
//!   cancelled while out of service, or are still open (blocked at a gate, a
//!   manual task or a signal, held by the out-of-service budget, waiting for
//!   the window) when the command returns.
//!
//! A chained run (`then:`) reports each workflow of the chain on its own: a
//! user migrated by the first workflow stays migrated when the e-mail of the
//! next one is refused.

use serde_json::{json, Value};

use crate::engine::instance::{Instance, Status};
use crate::spec::model::Workflow;

/// Per workflow of a chain: how its part ended across the subjects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentOutcome {
    /// Workflow name.
    pub workflow: String,
    /// Subjects for which this workflow's steps all completed.
    pub succeeded: usize,
    /// Subjects that stopped in it (failed, needs attention, rolled back after a failure).
    pub failed: usize,
    /// Subjects still in it (pending, running, blocked, held).
    pub open: usize,
    /// Subjects that never reached it (stopped earlier, cancelled).
    pub not_reached: usize,
}

/// How a run's subjects ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Subjects.
    pub total: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Rolled back because an operator cancelled with `--rollback`.
    pub rolled_back_on_request: usize,
    /// Failed, needs attention, or rolled back after a failure.
    pub failed: usize,
    /// Cancelled without rollback, number in service.
    pub cancelled: usize,
    /// Cancelled (or rolled back on request) while out of service.
    pub cancelled_out_of_service: usize,
    /// Not terminal yet.
    pub open: usize,
    /// One per workflow of the chain (one entry for a run without `then:`).
    pub segments: Vec<SegmentOutcome>,
}

impl Outcome {
    /// The outcome of `instances` of a run of `wf` (composed with its chain),
    /// whose workflows are named `names` (main first).
    pub fn of<'a>(
        wf: &Workflow,
        names: &[String],
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> Outcome {
        let segments = names.len().max(1);
        let mut o = Outcome {
            segments: (0..segments)
                .map(|i| SegmentOutcome {
                    workflow: names.get(i).cloned().unwrap_or_default(),
                    ..SegmentOutcome::default()
                })
                .collect(),
            ..Outcome::default()
        };
        let segment_of = |step: usize| {
            wf.steps
                .get(step)
                .map_or(0, |s| s.segment)
                .min(segments - 1)
        };
        for inst in instances {
            o.total += 1;
            // (segment reached, how it ended there): earlier segments succeeded.
            let (at, ended) = match &inst.status {
                Status::Succeeded => {
                    o.succeeded += 1;
                    (segments, Ended::Succeeded)
                }
                Status::RolledBack { error, .. }
                    if error.starts_with("cancelled:") && inst.down.is_none() =>
                {
                    o.rolled_back_on_request += 1;
                    // What was undone is per segment unknown here; nothing failed.
                    (0, Ended::NotReached)
                }
                Status::Cancelled if inst.down.is_none() => {
                    o.cancelled += 1;
                    (0, Ended::NotReached)
                }
                Status::Cancelled => {
                    o.cancelled_out_of_service += 1;
                    (0, Ended::NotReached)
                }
                Status::Failed { step, .. }
                | Status::NeedsAttention { step, .. }
                | Status::RolledBack { step, .. } => {
                    o.failed += 1;
                    (segment_of(*step), Ended::Failed)
                }
                Status::Pending => {
                    o.open += 1;
                    (0, Ended::Open)
                }
                Status::Running { step, .. } | Status::Compensating { step, .. } => {
                    o.open += 1;
                    (segment_of(*step), Ended::Open)
                }
            };
            for (i, seg) in o.segments.iter_mut().enumerate() {
                match (i.cmp(&at), ended) {
                    (std::cmp::Ordering::Less, _) => seg.succeeded += 1,
                    (std::cmp::Ordering::Equal, Ended::Failed) => seg.failed += 1,
                    (std::cmp::Ordering::Equal, Ended::Open) => seg.open += 1,
                    _ => seg.not_reached += 1,
                }
            }
        }
        o
    }

    /// Every subject ended in a success state.
    pub fn all_succeeded(&self) -> bool {
        self.succeeded + self.rolled_back_on_request + self.cancelled == self.total
    }

    /// The exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        if self.all_succeeded() {
            crate::report::exit::OK
        } else {
            crate::report::exit::FAILED
        }
    }

    /// One line per workflow of a chain (nothing for a single workflow).
    pub fn render_chain(&self) -> String {
        if self.segments.len() < 2 {
            return String::new();
        }
        let mut out = String::from("outcome per workflow:\n");
        for (i, s) in self.segments.iter().enumerate() {
            let mut parts = vec![format!("{} succeeded", s.succeeded)];
            for (n, what) in [
                (s.failed, "failed"),
                (s.open, "still open"),
                (s.not_reached, "not reached"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            out.push_str(&format!(
                "  {}{}: {}\n",
                if i == 0 { "" } else { "then " },
                s.workflow,
                parts.join(", ")
            ));
        }
        out
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "exit_code": self.exit_code(),
            "total": self.total,
            "succeeded": self.succeeded,
            "rolled_back_on_request": self.rolled_back_on_request,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "cancelled_out_of_service": self.cancelled_out_of_service,
            "open": self.open,
            "workflows": self.segments.iter().map(|s| json!({
                "workflow": s.workflow,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "open": s.open,
                "not_reached": s.not_reached,
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
    Open,
    NotReached,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::engine::instance::Phase;

    fn wf(segments: &[usize]) -> Workflow {
        let steps: String = segments
            .iter()
            .enumerate()
            .map(|(i, _)| {
                format!("  - id: s{i}\n    check:\n      require: 'true'\n      message: x\n")
            })
            .collect();
        let text = format!(
            "name: w\nversion: 1\nsubject: user\ninputs:\n  user: {{type: upn}}\nsteps:\n{steps}"
        );
        let mut w = crate::spec::parse_workflow(&text, "t.yaml")
            .map(|l| l.workflow)
            .unwrap_or_else(|e| panic!("{e}"));
        for (s, seg) in w.steps.iter_mut().zip(segments) {
            s.segment = *seg;
        }
        w
    }

    fn inst(idx: u32, status: Status) -> Instance {
        let mut i = Instance::new(
            "r",
            idx,
            format!("u{idx}"),
            Default::default(),
            Timestamp(0),
        );
        i.status = status;
        i
    }

    #[test]
    fn succeeded_and_rolled_back_on_request_exit_0_everything_else_3() {
        let w = wf(&[0, 0]);
        let names = vec!["w".to_string()];
        let ok = [
            inst(0, Status::Succeeded),
            inst(
                1,
                Status::RolledBack {
                    step: 1,
                    error: "cancelled: by ops".into(),
                },
            ),
        ];
        assert_eq!(Outcome::of(&w, &names, &ok).exit_code(), 0);
        let mut cancelled_down = inst(2, Status::Cancelled);
        cancelled_down.down = Some(crate::engine::instance::OpenOutage {
            since: Timestamp(0),
            step: "s1".into(),
        });
        let with_cancel = [inst(0, Status::Succeeded), inst(1, Status::Cancelled)];
        assert_eq!(Outcome::of(&w, &names, &with_cancel).exit_code(), 0);
        let o = Outcome::of(&w, &names, [&with_cancel[0], &cancelled_down]);
        assert_eq!((o.exit_code(), o.cancelled_out_of_service), (3, 1));
        let not_ok = [
            Status::RolledBack {
                step: 1,
                error: "assign failed".into(),
            },
            Status::Failed {
                step: 0,
                error: "x".into(),
            },
            Status::Running {
                step: 0,
                phase: Phase::Blocked {
                    gate: "approve".into(),
                    signal: None,
                },
            },
            Status::Running {
                step: 1,
                phase: Phase::Held {
                    reason: "budget".into(),
                },
            },
            Status::Pending,
        ];
        for s in not_ok {
            let all = [inst(0, Status::Succeeded), inst(1, s.clone())];
            assert_eq!(Outcome::of(&w, &names, &all).exit_code(), 3, "{s:?}");
        }
    }

    #[test]
    fn a_chained_refusal_keeps_the_first_workflow_succeeded() {
        let w = wf(&[0, 0, 1]);
        let names = vec!["migrate".to_string(), "mail".to_string()];
        let all = [
            inst(0, Status::Succeeded),
            inst(
                1,
                Status::Failed {
                    step: 2,
                    error: "refused".into(),
                },
            ),
            inst(
                2,
                Status::Failed {
                    step: 0,
                    error: "refused".into(),
                },
            ),
        ];
        let o = Outcome::of(&w, &names, &all);
        assert_eq!(o.segments[0].succeeded, 2);
        assert_eq!(o.segments[0].failed, 1);
        assert_eq!(o.segments[1].succeeded, 1);
        assert_eq!(o.segments[1].failed, 1);
        assert_eq!(o.segments[1].not_reached, 1);
        assert_eq!(o.exit_code(), 3);
        let text = o.render_chain();
        assert!(text.contains("migrate: 2 succeeded, 1 failed"), "{text}");
        assert!(
            text.contains("then mail: 1 succeeded, 1 failed, 1 not reached"),
            "{text}"
        );
    }
}
