//! Operator inputs (`approve`, `signal`, `cancel`, `retry`): one parser from a
//! verb and its request to a state-machine [`Input`], and one
//! [`apply_input`] that applies it to stored instances through the same
//! transition function and the same [`RunContext`] as the run's driver.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::context::RunContext;
use super::runs::load_run;
use super::{Error, Result};
pub use crate::api::Applied;
use crate::api::{OperateBody, Outcome, SubjectApplied};
use crate::engine::instance::{Instance, Phase, Status};
use crate::engine::machine::{self, Input, Persist};
use crate::engine::run::RunRecord;
use crate::spec::model::{Step, Workflow};
use crate::spec::validate::check_subject_value;
use crate::store::commit::Committer;
use crate::store::keys::InstanceKey;
use crate::store::{records, Batch, Store};

/// The verbs there are.
pub const VERBS: &str = "approve, signal, cancel or retry";

/// Which instances of a run an input addresses.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    /// Every instance.
    All,
    /// One subject.
    Subject(&'a str),
    /// These subjects, each answered on its own (a bulk request).
    Subjects(&'a [String]),
    /// Every instance waiting at this step (index) for the input (a bulk request).
    WaitingAt(usize),
}

impl<'a> Target<'a> {
    /// One subject, or all.
    pub fn of(subject: Option<&'a str>) -> Target<'a> {
        subject.map_or(Target::All, Target::Subject)
    }

    /// What `body` addresses, checked against the workflow: one subject, a
    /// list of them, those waiting at a step, or every instance.
    pub fn of_body(wf: &Workflow, verb: &str, body: &'a OperateBody) -> Result<Target<'a>> {
        let given = [
            body.subject.is_some(),
            !body.subjects.is_empty(),
            body.waiting_at.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(Error::input(
                "give one of `subject`, `subjects` and `waiting_at`, not several",
            ));
        }
        if body.is_bulk() && !matches!(verb, "approve" | "signal") {
            return Err(Error::input(format!(
                "`subjects` and `waiting_at` apply to approve and signal, not {verb}"
            )));
        }
        Ok(match (&body.waiting_at, body.subjects.is_empty()) {
            (Some(step), _) if verb == "approve" => {
                Target::WaitingAt(step_index(wf, step, "an approval gate", is_approval)?)
            }
            (Some(step), _) => Target::WaitingAt(step_index(wf, step, "a step", |_| true)?),
            (None, false) => Target::Subjects(&body.subjects),
            (None, true) => Target::of(body.subject.as_deref()),
        })
    }
}

/// The instances an input addresses.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Their indices.
    pub idx: Vec<u32>,
    /// Their subjects, in the same order (bulk targets only).
    pub subjects: Vec<String>,
    /// Subjects asked for that the run does not have.
    pub unknown: Vec<String>,
}

/// Whether `inst` is stopped at step `step` waiting for something (a person,
/// a signal, a wait's condition).
fn waits_at(inst: &Instance, step: usize) -> bool {
    match &inst.status {
        Status::Running { step: s, phase } | Status::Compensating { step: s, phase, .. } => {
            *s == step && matches!(phase, Phase::Blocked { .. } | Phase::Waiting { .. })
        }
        _ => false,
    }
}

/// A stored run, ready to take inputs.
pub struct OpenRun {
    /// Its record.
    pub record: RunRecord,
    /// Its context.
    pub ctx: RunContext,
}

impl OpenRun {
    /// Load run `id`.
    pub fn load(store: &dyn Store, id: &str) -> Result<OpenRun> {
        let record = load_run(store, id)?;
        let ctx = RunContext::load(&record)?;
        Ok(OpenRun { record, ctx })
    }

    /// The instances `target` addresses for `input`. A single subject the run
    /// does not have is an error; those of a list are in `unknown`. Those
    /// waiting at a step are the ones there that `input` would move on (the
    /// state machine is asked, nothing is stored).
    pub fn select(
        &self,
        store: &dyn Store,
        target: &Target<'_>,
        input: &Input,
    ) -> Result<Selection> {
        let run = &self.record.id;
        let mut sel = Selection::default();
        match target {
            Target::All => sel.idx = (0..self.record.subjects).collect(),
            Target::Subject(sub) => {
                sel.idx = vec![records::find_subject(store, run, sub)?.ok_or_else(|| {
                    Error::SubjectNotFound {
                        run: run.clone(),
                        subject: sub.to_string(),
                    }
                })?]
            }
            Target::Subjects(list) => {
                let mut seen = HashSet::new();
                for s in list.iter().filter(|s| seen.insert(s.as_str())) {
                    match records::find_subject(store, run, s)? {
                        Some(i) => {
                            sel.idx.push(i);
                            sel.subjects.push(s.clone());
                        }
                        None => sel.unknown.push(s.clone()),
                    }
                }
            }
            Target::WaitingAt(step) => {
                let now = self.ctx.clock.now();
                records::for_each_instance(store, run, &mut |inst| {
                    if waits_at(&inst, *step)
                        && machine::transition(self.ctx.ctx(now), &inst, input.clone()).persist
                            != Persist::Nothing
                    {
                        sel.idx.push(inst.idx);
                        sel.subjects.push(inst.subject);
                    }
                })?;
            }
        }
        Ok(sel)
    }
}

fn is_approval(s: &Step) -> bool {
    s.gate.as_ref().is_some_and(|g| g.approval.is_some())
}

/// Past tense of a verb, for messages.
pub fn past(verb: &str) -> &'static str {
    match verb {
        "approve" => "approved",
        "signal" => "signalled",
        "cancel" => "cancelled",
        _ => "retried",
    }
}

fn step_index(wf: &Workflow, id: &str, want: &str, ok: impl Fn(&Step) -> bool) -> Result<usize> {
    match wf.steps.iter().position(|s| s.id == id) {
        Some(i) if ok(&wf.steps[i]) => Ok(i),
        Some(_) => Err(Error::input(format!(
            "step {id:?} of {} is not {want}",
            wf.name
        ))),
        None => {
            let ids: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
            Err(
                Error::input(format!("workflow {} has no step {id:?}", wf.name))
                    .hint(format!("its steps: {}", ids.join(", "))),
            )
        }
    }
}

/// The inputs a retry amends (`body.set`), each checked as the run file's
/// subject values are: an input of the workflow, not the subject, a valid
/// value (empty only for an optional input).
fn amendments(wf: &Workflow, body: &OperateBody) -> Result<Vec<(String, Value)>> {
    if body.set.is_empty() {
        return Ok(Vec::new());
    }
    if body.subject.is_none() {
        return Err(
            Error::input("amending inputs (`set`) is for one subject: give `subject`")
                .hint("portflow retry <run> --subject <subject> --set <input>=<value>"),
        );
    }
    let mut out = Vec::new();
    for (name, value) in &body.set {
        let Some(spec) = wf.inputs.get(name) else {
            let names: Vec<&str> = wf.inputs.keys().map(String::as_str).collect();
            return Err(
                Error::input(format!("workflow {} has no input `{name}`", wf.name))
                    .hint(format!("its inputs: {}", names.join(", "))),
            );
        };
        if *name == wf.subject {
            return Err(Error::input(format!(
                "input `{name}` is the subject of {}: it names the instance and cannot be amended",
                wf.name
            ))
            .hint("cancel this subject and start a run for the new one"));
        }
        let value = if value.is_empty() {
            if !spec.optional {
                return Err(Error::input(format!(
                    "input `{name}` is required: it cannot be set to nothing"
                )));
            }
            Value::Null
        } else {
            check_subject_value(spec, name, value).map_err(Error::input)?;
            Value::String(value.clone())
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// The state-machine input of `verb` with `body`, checked against the workflow.
pub fn parse_verb(wf: &Workflow, verb: &str, body: &OperateBody) -> Result<Input> {
    let by = body.by.clone().unwrap_or_else(|| "api".into());
    Ok(match verb {
        "approve" => {
            // Approving those waiting at a gate opens that gate only.
            let step = match (&body.step, &body.waiting_at) {
                (Some(s), Some(w)) if s != w => {
                    return Err(Error::input(format!(
                        "`step` {s:?} and `waiting_at` {w:?} name different gates"
                    )))
                }
                (s, w) => s.clone().or_else(|| w.clone()),
            };
            if let Some(s) = &step {
                step_index(wf, s, "an approval gate", is_approval)?;
            }
            Input::Approve { step, by }
        }
        "signal" => Input::Signal {
            name: body
                .name
                .clone()
                .ok_or_else(|| Error::input("signal needs a `name`"))?,
            data: body.data.clone(),
            by,
        },
        "cancel" => Input::Cancel {
            reason: body
                .reason
                .clone()
                .unwrap_or_else(|| "cancelled through the API".into()),
            rollback: body.rollback,
            by,
        },
        "retry" => Input::Retry {
            from_step: body
                .from_step
                .as_deref()
                .map(|s| step_index(wf, s, "a step", |_| true))
                .transpose()?,
            amend: amendments(wf, body)?,
            reason: body.reason.clone(),
            by,
        },
        other => {
            return Err(Error::UnknownAction {
                verb: other.to_string(),
                expected: VERBS,
            })
        }
    })
}

/// What [`apply_input`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Instances changed.
    pub changed: usize,
    /// Instances it did not apply to.
    pub unchanged: usize,
    /// Whether the run has work again (it was finished and now is not).
    pub reopened: bool,
    /// Each addressed instance found in the store, and whether it changed.
    pub each: Vec<(u32, bool)>,
}

/// Apply `input` to instances `targets` of `run` through the store (for a
/// run no driver owns), in one commit. A finished run that gets work again is
/// marked unfinished, so `resume` without a run id finds it.
pub async fn apply_input(
    store: &dyn Store,
    committer: &Committer,
    run: &mut OpenRun,
    targets: &[u32],
    input: &Input,
) -> Result<Effect> {
    let mut effect = Effect::default();
    let mut batch = Batch::default();
    let now = run.ctx.clock.now();
    for &idx in targets {
        let key = InstanceKey {
            run: run.record.id.clone(),
            idx,
        };
        let Some(inst) = records::get_instance(store, &key)? else {
            continue;
        };
        // A stopped instance is not cancelled again.
        if matches!(input, Input::Cancel { .. }) && inst.is_terminal() {
            effect.unchanged += 1;
            effect.each.push((idx, false));
            continue;
        }
        let t = machine::transition(run.ctx.ctx(now), &inst, input.clone());
        let changed = t.persist != Persist::Nothing;
        if changed {
            records::put_transition(&mut batch, &inst, &t)?;
            effect.changed += 1;
        } else {
            effect.unchanged += 1;
        }
        effect.each.push((idx, changed));
    }
    if effect.changed > 0 && run.record.finished_at.is_some() {
        run.record.finished_at = None;
        records::put_run(&mut batch, &run.record)?;
        effect.reopened = true;
    }
    committer.commit(batch).await?;
    Ok(effect)
}

/// `Err(NothingApplies)` when no instance changed, else the answer.
pub fn applied(run: &str, verb: &str, changed: usize, unchanged: usize) -> Result<Applied> {
    if changed == 0 {
        return Err(Error::NothingApplies {
            verb: past(verb),
            run: run.to_string(),
            unchanged,
        });
    }
    Ok(Applied {
        run: run.to_string(),
        action: verb.to_string(),
        changed,
        unchanged,
        driven: false,
        subjects: Vec::new(),
        unknown: Vec::new(),
    })
}

/// What an input did to one instance: changed or not, or why it failed.
pub type InstanceOutcome = std::result::Result<bool, String>;

/// The answer to a bulk request (`subjects`, `waiting_at`): each selected
/// subject's outcome, from `outcomes` by index (an index without one was not
/// found in the store). Answered even when nothing changed.
pub fn bulk_applied(
    run: &str,
    verb: &str,
    sel: &Selection,
    outcomes: &HashMap<u32, InstanceOutcome>,
) -> Applied {
    let mut subjects = Vec::with_capacity(sel.idx.len());
    for (idx, subject) in sel.idx.iter().zip(&sel.subjects) {
        let (outcome, error) = match outcomes.get(idx) {
            Some(Ok(true)) => (Outcome::Changed, None),
            Some(Ok(false)) => (Outcome::NotWaiting, None),
            Some(Err(e)) => (Outcome::Failed, Some(e.clone())),
            None => (
                Outcome::Failed,
                Some("its instance is missing from the store".to_string()),
            ),
        };
        subjects.push(SubjectApplied {
            subject: subject.clone(),
            outcome,
            error,
        });
    }
    let changed = subjects
        .iter()
        .filter(|s| s.outcome == Outcome::Changed)
        .count();
    Applied {
        run: run.to_string(),
        action: verb.to_string(),
        changed,
        unchanged: subjects.len() - changed,
        driven: false,
        subjects,
        unknown: Vec::new(),
    }
}

/// The answer to a bulk request naming subjects the run does not have:
/// nothing was applied.
pub fn unknown_subjects(run: &str, verb: &str, unknown: Vec<String>) -> Applied {
    Applied {
        run: run.to_string(),
        action: verb.to_string(),
        changed: 0,
        unchanged: 0,
        driven: false,
        subjects: Vec::new(),
        unknown,
    }
}

/// Parse and apply `verb` to a stored run no driver owns (the CLI's local path).
pub async fn operate(
    store: &dyn Store,
    committer: &Committer,
    run_id: &str,
    verb: &str,
    body: &OperateBody,
) -> Result<Applied> {
    let mut run = OpenRun::load(store, run_id)?;
    let input = parse_verb(&run.ctx.workflow, verb, body)?;
    let target = Target::of_body(&run.ctx.workflow, verb, body)?;
    let sel = run.select(store, &target, &input)?;
    if !sel.unknown.is_empty() {
        return Ok(unknown_subjects(run_id, verb, sel.unknown));
    }
    let e = apply_input(store, committer, &mut run, &sel.idx, &input).await?;
    if !body.is_bulk() {
        return applied(run_id, verb, e.changed, e.unchanged);
    }
    let outcomes = e.each.iter().map(|&(i, c)| (i, Ok(c))).collect();
    Ok(bulk_applied(run_id, verb, &sel, &outcomes))
}
