//! Operator inputs (`approve`, `signal`, `cancel`, `retry`): one parser from a
//! verb and its request to a state-machine [`Input`], and one
//! [`apply_input`] that applies it to stored instances through the same
//! transition function and the same [`RunContext`] as the run's driver.

use super::context::RunContext;
use super::runs::load_run;
use super::{Error, Result};
pub use crate::api::Applied;
use crate::api::OperateBody;
use crate::engine::machine::{self, Input, Persist};
use crate::engine::run::RunRecord;
use crate::spec::model::{Step, Workflow};
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
    /// These indices (what a driver did not take).
    Indices(Vec<u32>),
}

impl<'a> Target<'a> {
    /// One subject, or all.
    pub fn of(subject: Option<&'a str>) -> Target<'a> {
        subject.map_or(Target::All, Target::Subject)
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

    /// The indices `target` addresses.
    pub fn indices(&self, store: &dyn Store, target: &Target<'_>) -> Result<Vec<u32>> {
        let run = &self.record.id;
        Ok(match target {
            Target::All => (0..self.record.subjects).collect(),
            Target::Indices(v) => v.clone(),
            Target::Subject(sub) => {
                vec![records::find_subject(store, run, sub)?.ok_or_else(|| {
                    Error::SubjectNotFound {
                        run: run.clone(),
                        subject: sub.to_string(),
                    }
                })?]
            }
        })
    }
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

/// The state-machine input of `verb` with `body`, checked against the workflow.
pub fn parse_verb(wf: &Workflow, verb: &str, body: &OperateBody) -> Result<Input> {
    let by = body.by.clone().unwrap_or_else(|| "api".into());
    Ok(match verb {
        "approve" => {
            if let Some(s) = &body.step {
                step_index(wf, s, "an approval gate", |x| {
                    x.gate.as_ref().is_some_and(|g| g.approval.is_some())
                })?;
            }
            Input::Approve {
                step: body.step.clone(),
                by,
            }
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
        },
        "retry" => Input::Retry {
            from_step: body
                .from_step
                .as_deref()
                .map(|s| step_index(wf, s, "a step", |_| true))
                .transpose()?,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Instances changed.
    pub changed: usize,
    /// Instances it did not apply to.
    pub unchanged: usize,
    /// Whether the run has work again (it was finished and now is not).
    pub reopened: bool,
}

/// Apply `input` to the addressed instances of `run` through the store (for a
/// run no driver owns), in one commit. A finished run that gets work again is
/// marked unfinished, so `resume` without a run id finds it.
pub async fn apply_input(
    store: &dyn Store,
    committer: &Committer,
    run: &mut OpenRun,
    target: &Target<'_>,
    input: &Input,
) -> Result<Effect> {
    let mut effect = Effect::default();
    let mut batch = Batch::default();
    let now = run.ctx.clock.now();
    for idx in run.indices(store, target)? {
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
            continue;
        }
        let t = machine::transition(run.ctx.ctx(now), &inst, input.clone());
        if t.persist == Persist::Nothing {
            effect.unchanged += 1;
        } else {
            records::put_transition(&mut batch, &inst, &t)?;
            effect.changed += 1;
        }
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
    })
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
    let target = Target::of(body.subject.as_deref());
    let e = apply_input(store, committer, &mut run, &target, &input).await?;
    applied(run_id, verb, e.changed, e.unchanged)
}
