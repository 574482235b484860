//! The instance state machine as a pure transducer:
//! `(instance, input, now) -> (instance', events, effect)`.
//!
//! No I/O and no clock: the executor feeds inputs (timer ticks, backend results,
//! approvals, signals), commits the events and snapshot, and only then performs
//! the effect. Every branch is one row of [`RULES`], so tests can report which
//! rows they covered and the docs can list them.
//!
//! A step runs on one of two tracks: forward (`Running`) or undo
//! (`Compensating`, running the step's `compensate` during a rollback). The
//! phases (acting, backoff, waiting, reconciling) work the same on both.

use std::time::Duration;

use serde_json::{json, Value};

use super::instance::{
    Event, EventKind, Instance, OpenOutage, OutageSpan, PendingRollback, Phase, Status,
};
use crate::backend::{BackendError, Call, ErrorKind, Operation, OperationKind};
use crate::clock::Timestamp;
use crate::spec::model::{ActionSpec, OnFailure, OnTimeout, RetrySpec, Step, WaitSpec, Workflow};

/// What drives a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The instance's timer is due (also: start, resume after restart).
    Tick,
    /// The action's backend call returned.
    ActionOk(Value),
    /// The action's backend call failed.
    ActionErr(BackendError),
    /// The action's backend call passed its deadline (a transient error whose
    /// outcome is unknown: it may have taken effect).
    ActionTimedOut(BackendError),
    /// A poll (or reconciliation observation) returned.
    Observed(Value),
    /// A poll failed.
    ObserveErr(BackendError),
    /// A person approved a gate (`step` = a gate id, or any gate when `None`).
    Approve {
        /// Gate step id.
        step: Option<String>,
        /// Who approved.
        by: String,
    },
    /// A named signal (`done` completes a manual task).
    Signal {
        /// Signal name.
        name: String,
        /// Data sent with it (becomes the observation of a wait it satisfies).
        data: Value,
        /// Who sent it.
        by: String,
    },
    /// Stop the instance, optionally undoing what it did.
    Cancel {
        /// Why.
        reason: String,
        /// Run the compensations of the steps done.
        rollback: bool,
        /// Who.
        by: String,
    },
    /// Restart a failed, rolled-back, cancelled or needs-attention instance.
    Retry {
        /// Step index to continue from (default: where it stopped).
        from_step: Option<usize>,
        /// Who.
        by: String,
        /// Inputs to give new values first (checked against the workflow by
        /// the caller), each recorded with its old value.
        amend: Vec<(String, Value)>,
        /// Why they are amended.
        reason: Option<String>,
    },
}

impl Input {
    /// Short name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Tick => "tick",
            Input::ActionOk(_) => "action_ok",
            Input::ActionErr(_) => "action_err",
            Input::ActionTimedOut(_) => "action_timed_out",
            Input::Observed(_) => "observed",
            Input::ObserveErr(_) => "observe_err",
            Input::Approve { .. } => "approve",
            Input::Signal { .. } => "signal",
            Input::Cancel { .. } => "cancel",
            Input::Retry { .. } => "retry",
        }
    }
}

/// Side effect to perform after the transition is committed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Call a backend action (its intent, with the call's key, is in the committed events).
    Invoke(Call),
    /// Read an observation.
    Observe(Operation),
}

/// How the executor must persist a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Nothing changed.
    Nothing,
    /// In-place update (poll bookkeeping): losing it only repeats a poll.
    Lazy,
    /// Must be durable before the effect runs or the result is acknowledged.
    Durable,
}

/// Result of one transition.
#[derive(Clone, Debug)]
pub struct Transition {
    /// The new snapshot (with `seq` advanced past `events`).
    pub next: Instance,
    /// History records to append.
    pub events: Vec<Event>,
    /// Effect to run after committing.
    pub effect: Option<Effect>,
    /// Persistence needed.
    pub persist: Persist,
    /// Which row of [`RULES`] fired.
    pub rule: &'static str,
}

/// One row of the transition table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Row id.
    pub id: &'static str,
    /// From state / phase.
    pub from: &'static str,
    /// Input.
    pub on: &'static str,
    /// To state / phase.
    pub to: &'static str,
    /// Meaning.
    pub note: &'static str,
}

macro_rules! rules {
    ($($id:ident = $from:literal, $on:literal => $to:literal : $note:literal;)*) => {
        $(#[allow(missing_docs)] pub const $id: &str = stringify!($id);)*
        /// The transition table.
        pub const RULES: &[Rule] = &[$(Rule { id: stringify!($id), from: $from, on: $on, to: $to, note: $note }),*];
    };
}

rules! {
    START = "pending", "tick" => "running(step 0)": "start the first step";
    ENTER = "ready", "tick" => "blocked | acting | waiting | next step | succeeded": "evaluate `when`, `check`, gate, manual task, then act or wait";
    GATE_WAIT = "blocked", "tick" => "blocked": "still not approved / signalled";
    WINDOW_WAIT = "ready", "tick" => "window": "the step takes a number out of service and the porting window is closed: wait until it opens";
    WINDOW_OPEN = "window", "tick" => "acting | window": "the window opened (checked again): start the step";
    HOLD = "ready", "tick" => "held": "an outage step, and the run's out-of-service budget is full or its breaker is open: wait, durably";
    HOLD_AGAIN = "held", "tick" => "held": "woken, but still no room: stay held (in place)";
    HOLD_RELEASED = "held", "tick" => "acting": "room in the budget (checked again): start the outage step";
    GATE_OPEN = "blocked", "approve | tick" => "ready | acting": "approval recorded (by a person, or by the run file on tick); step proceeds";
    PRE_APPROVE = "running/pending", "approve" => "(same)": "approval recorded for a later gate";
    SIGNAL_OPEN = "blocked", "signal" => "ready | waiting | next step": "the awaited signal (or `done` of a manual task) arrived";
    SIGNAL_WAIT_MET = "waiting", "signal" => "next step": "a signal the wait accepts stands in for the observation";
    ACT_OK = "acting", "action_ok" => "waiting | next step": "action done; poll if the step waits";
    ACT_RETRY = "acting", "action_err" => "backoff": "retryable error, attempts left";
    ACT_THROTTLED = "acting", "action_err" => "backoff": "throttled: wait Retry-After, attempt not counted";
    ACT_REFUSED_AUTH = "acting", "action_err" => "backoff": "the service refused our credentials or permissions (nothing was done): wait for them to be fixed, recorded, attempt not counted";
    ACT_FAIL = "acting", "action_err" => "failed | compensating": "error not retryable or attempts exhausted";
    BACKOFF_DONE = "backoff", "tick" => "acting": "retry the action";
    POLL = "waiting", "tick" => "waiting + observe": "poll the observation";
    WAIT_MET = "waiting", "observed" => "next step": "condition holds";
    WAIT_AGAIN = "waiting", "observed | observe_err" => "waiting": "not yet; next poll later (in place, no event)";
    WAIT_TIMEOUT_FAIL = "waiting", "observed | observe_err" => "failed | compensating": "deadline passed, on_timeout: fail (rollback when the policy says so)";
    WAIT_TIMEOUT_CONTINUE = "waiting", "observed | observe_err" => "next step": "deadline passed, on_timeout: continue";
    WAIT_TIMEOUT_ROLLBACK = "waiting", "observed | observe_err" => "compensating": "deadline passed, on_timeout: rollback";
    REFUSED = "ready", "tick" => "failed": "a `check` is false: the subject is refused with its message";
    RECOVER = "acting", "tick" => "reconciling | acting | needs_attention": "process stopped mid-call: observe, re-issue if idempotent, else ask a person";
    ACT_TIMEOUT = "acting", "action_timed_out" => "reconciling | backoff | failed | needs_attention": "the call passed its deadline, outcome unknown: observe when the step waits; else retry if idempotent, else ask a person";
    RECONCILE_POLL = "reconciling", "tick" => "reconciling + observe": "observe the target state";
    RECONCILE_DONE = "reconciling", "observed" => "next step": "target state already holds";
    RECONCILE_REISSUE = "reconciling", "observed" => "acting": "target not reached and the operation is idempotent";
    RECONCILE_TIMEOUT_RETRY = "reconciling", "observed" => "backoff | failed | compensating": "after a deadline: target not reached, idempotent: the attempt failed transiently (retry policy)";
    RECONCILE_ATTENTION = "reconciling", "observed" => "needs_attention": "target not reached and re-issuing could repeat a side effect";
    RECONCILE_RETRY = "reconciling", "observe_err" => "reconciling": "observation failed; try again later";
    ROLLBACK_NEXT = "compensating", "(step done)" => "compensating": "one compensation done, undo the next";
    ROLLED_BACK = "compensating", "(step done)" => "rolled_back": "every compensation done";
    ROLLBACK_FAILED = "compensating", "action_err | timeout" => "needs_attention": "a compensation failed: a person must restore service";
    CANCEL = "not terminal", "cancel" => "cancelled | compensating": "operator cancelled (with --rollback: undo first)";
    RETRY = "failed | rolled_back | needs_attention | cancelled", "retry" => "ready": "operator restarts the instance";
    SPEC_ERROR = "running", "any" => "failed": "a condition or template could not be evaluated";
    EARLY = "any", "tick" => "(same)": "timer fired before due, or nothing to do";
    TERMINAL = "terminal", "any" => "(same)": "terminal states ignore inputs";
    UNEXPECTED = "any", "any" => "(same)": "input that does not apply to this state is ignored";
}

/// Everything a transition may read besides the instance.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// The pinned workflow.
    pub wf: &'a Workflow,
    /// Gates approved for the whole run in the run file.
    pub run_approvals: &'a [String],
    /// The run file's failure policy, overriding the workflows' own.
    pub on_failure: Option<OnFailure>,
    /// Operations the backend cannot automate: they become manual tasks.
    pub manual_ops: &'a [OperationKind],
    /// The run's porting window, for steps marked `window: true`.
    pub window: Option<&'a dyn WindowCalendar>,
    /// The run's out-of-service budget and circuit breaker, for outage steps.
    pub outages: Option<&'a dyn OutageGate>,
    /// The current instant.
    pub now: Timestamp,
}

/// Who may start an outage-causing step (implemented by the executor, which
/// counts the run's subjects out of service).
pub trait OutageGate: Send + Sync + std::fmt::Debug {
    /// Reserve room for instance `idx` to take its number out of service now,
    /// or say why it must wait (budget full, breaker open).
    fn admit(&self, idx: u32) -> Result<(), String>;
}

impl<'a> Ctx<'a> {
    /// A context with the workflow's own failure policy and every operation automated.
    pub fn new(wf: &'a Workflow, run_approvals: &'a [String], now: Timestamp) -> Ctx<'a> {
        Ctx {
            wf,
            run_approvals,
            on_failure: None,
            manual_ops: &[],
            window: None,
            outages: None,
            now,
        }
    }
}

/// When a porting window is open (implemented by the schedule module).
pub trait WindowCalendar: Send + Sync + std::fmt::Debug {
    /// `t` itself when the window is open at `t`, else when it next opens
    /// (`None`: never again).
    fn next_open(&self, t: Timestamp) -> Option<Timestamp>;
}

/// Longest run of throttle responses before an attempt counts as failed.
const MAX_THROTTLES: u32 = 50;

/// Pause after the service refused an action's credentials or permissions.
/// A revoked secret or a missing consent mid-wave is fixed by a person; the
/// subjects wait for it (about 2 h in all) instead of failing and rolling
/// back on the same refusal.
const AUTH_WAIT: Duration = Duration::from_secs(300);
/// Refusals in a row before the attempt counts as failed.
const MAX_AUTH_WAITS: u32 = 24;

/// How long after its deadline a wait whose polls fail keeps trying to get one
/// fresh observation before it times out on the errors.
const DEADLINE_GRACE: Duration = Duration::from_secs(3600);

/// Poll interval after the deadline while polls fail (or Retry-After, if longer).
const DEADLINE_RETRY: Duration = Duration::from_secs(30);

/// Signal that completes a manual task.
pub const DONE_SIGNAL: &str = "done";

/// The parts of a step on the current track.
struct Parts<'a> {
    id: &'a str,
    action: Option<ActionSpec>,
    wait: Option<&'a WaitSpec>,
    retry: &'a RetrySpec,
    undo: bool,
}

/// An instance's expression roots, each built the first time an expression
/// names it: a wait's `obs.x == 'y'`, evaluated on every poll, copies nothing.
struct Roots<'i> {
    inst: &'i Instance,
    obs: Option<&'i Value>,
    inputs: std::cell::OnceCell<Value>,
    steps: std::cell::OnceCell<Value>,
    subject: std::cell::OnceCell<Value>,
}

impl<'i> Roots<'i> {
    fn new(inst: &'i Instance, obs: Option<&'i Value>) -> Roots<'i> {
        Roots {
            inst,
            obs,
            inputs: Default::default(),
            steps: Default::default(),
            subject: Default::default(),
        }
    }
}

impl crate::spec::expr::Scope for Roots<'_> {
    fn var(&self, name: &str) -> Option<&Value> {
        static NULL: Value = Value::Null;
        Some(match name {
            "obs" => self.obs.unwrap_or(&NULL),
            "inputs" => self
                .inputs
                .get_or_init(|| Value::Object(self.inst.inputs.clone())),
            "subject" => self
                .subject
                .get_or_init(|| Value::String(self.inst.subject.clone())),
            "steps" => self.steps.get_or_init(|| {
                let steps = self.inst.outputs.iter().map(|(k, v)| {
                    let data = json!({"output": v.output.clone(), "observed": v.observed.clone()});
                    (k.clone(), data)
                });
                Value::Object(steps.collect())
            }),
            _ => return None,
        })
    }
}

struct Builder<'a> {
    ctx: Ctx<'a>,
    inst: Instance,
    events: Vec<Event>,
    effect: Option<Effect>,
    persist: Persist,
    /// The input came from an operator command, which may be applied where no
    /// backend call can follow: actions are then left due instead of started.
    operator: bool,
}

impl<'a> Builder<'a> {
    fn new(ctx: Ctx<'a>, inst: Instance) -> Builder<'a> {
        Builder {
            ctx,
            inst,
            events: Vec::new(),
            effect: None,
            persist: Persist::Nothing,
            operator: false,
        }
    }

    fn event(&mut self, kind: EventKind) {
        self.events.push(Event {
            seq: self.inst.seq,
            at: self.ctx.now,
            kind,
        });
        self.inst.seq += 1;
        self.persist = Persist::Durable;
    }

    fn set(&mut self, status: Status, due: Option<Timestamp>) {
        self.inst.status = status;
        // Due now before and after: keep the stored instant, so the timer index
        // need not move (two fewer writes per transition in a chain of steps).
        let now = self.ctx.now;
        self.inst.due = match (self.inst.due, due) {
            (Some(old), Some(new)) if old <= now && new <= now => Some(old),
            _ => due,
        };
        self.inst.updated_at = self.ctx.now;
        if self.persist == Persist::Nothing {
            self.persist = Persist::Lazy;
        }
    }

    /// Move to `phase` at step `idx`, staying on the current track.
    fn set_phase(&mut self, idx: usize, phase: Phase, due: Option<Timestamp>) {
        let status = match &self.inst.status {
            Status::Compensating {
                failed_step,
                error,
                remaining,
                ..
            } => Status::Compensating {
                step: idx,
                phase,
                failed_step: *failed_step,
                error: error.clone(),
                remaining: remaining.clone(),
            },
            _ => Status::Running { step: idx, phase },
        };
        self.set(status, due);
    }

    /// Whether step `idx`'s forward action takes a number out of service.
    fn is_outage_step(&self, idx: usize) -> bool {
        outage_step(self.step(idx))
    }

    /// The outage step `idx` took effect: the number is out of service from now.
    fn mark_down(&mut self, idx: usize) {
        if self.undoing() || self.inst.down.is_some() || !self.is_outage_step(idx) {
            return;
        }
        let step = self.step(idx).id.clone();
        self.event(EventKind::ServiceDown { step: step.clone() });
        self.inst.down = Some(OpenOutage {
            since: self.ctx.now,
            step,
        });
    }

    /// Service is verified back (by `by`): close the open outage.
    fn mark_restored(&mut self, by: String) {
        let Some(open) = self.inst.down.take() else {
            return;
        };
        let down_ms = self.ctx.now.since(open.since).as_millis() as u64;
        self.event(EventKind::ServiceRestored {
            step: by.clone(),
            down_ms,
        });
        self.inst.outages.push(OutageSpan {
            start: open.since,
            end: self.ctx.now,
            step: open.step,
            restored_by: by,
        });
    }

    fn undoing(&self) -> bool {
        matches!(self.inst.status, Status::Compensating { .. })
    }

    fn finish(self, rule: &'static str) -> Transition {
        Transition {
            next: self.inst,
            events: self.events,
            effect: self.effect,
            persist: self.persist,
            rule,
        }
    }

    fn step(&self, idx: usize) -> &'a Step {
        &self.ctx.wf.steps[idx]
    }

    fn parts(&self, idx: usize) -> Parts<'a> {
        let step = self.step(idx);
        if self.undoing() {
            match &step.compensate {
                Some(c) => Parts {
                    id: &step.id,
                    action: Some(c.action()),
                    wait: c.wait.as_ref(),
                    retry: &c.retry,
                    undo: true,
                },
                None => Parts {
                    id: &step.id,
                    action: None,
                    wait: None,
                    retry: &step.retry,
                    undo: true,
                },
            }
        } else {
            Parts {
                id: &step.id,
                action: step.action.clone(),
                wait: step.wait.as_ref(),
                retry: &step.retry,
                undo: false,
            }
        }
    }

    fn expr_ctx<'s>(&'s self, obs: Option<&'s Value>) -> Roots<'s> {
        Roots::new(&self.inst, obs)
    }

    fn render(&self, spec: &ActionSpec) -> Result<Operation, String> {
        let ctx = self.expr_ctx(None);
        let mut obj = serde_json::Map::new();
        obj.insert("op".into(), Value::String(spec.op.info().name.into()));
        for (name, tpl) in &spec.args {
            let v = tpl
                .render(&ctx)
                .map_err(|e| format!("argument `{name}` ({}): {e}", tpl.source()))?;
            if !v.is_null() {
                obj.insert(name.clone(), v);
            }
        }
        serde_json::from_value(Value::Object(obj))
            .map_err(|e| format!("operation {}: {e}", spec.op.info().name))
    }

    fn render_text(&self, tpl: &crate::spec::template::Template) -> String {
        tpl.render_text(&self.expr_ctx(None))
    }

    /// Steps to undo if the instance stops at `failed`: done steps (action
    /// succeeded, or in doubt at `failed` when `in_doubt`) with a `compensate`,
    /// newest first.
    fn undo_list(&self, failed: usize, in_doubt: bool) -> Vec<usize> {
        (0..=failed.min(self.ctx.wf.steps.len().saturating_sub(1)))
            .rev()
            .filter(|&j| {
                let step = self.step(j);
                step.compensate.is_some()
                    && (self
                        .inst
                        .outputs
                        .get(&step.id)
                        .is_some_and(|d| d.output.is_some())
                        || (j == failed && in_doubt))
            })
            .collect()
    }

    /// The instance cannot go on at step `idx`. On the undo track this needs a
    /// person; on the forward track it rolls back when the policy says so.
    fn fail(&mut self, idx: usize, error: String, force_rollback: bool) -> &'static str {
        if let Status::Compensating {
            failed_step,
            error: why,
            ..
        } = self.inst.status.clone()
        {
            let reason = format!(
                "rollback stopped at {}: {error}. The instance had failed at {}: {why}. \
                 Service may not be restored: fix by hand, then `portflow retry`",
                self.step(idx).id,
                self.step(failed_step.min(self.ctx.wf.steps.len() - 1)).id
            );
            self.attention(idx, reason);
            return ROLLBACK_FAILED;
        }
        // A step's own policy (a point of no return) beats the run file's.
        let policy = self
            .step(idx)
            .on_failure
            .or(self.ctx.on_failure)
            .unwrap_or_else(|| self.ctx.wf.on_failure_at(idx));
        let rollback = force_rollback || policy == OnFailure::Rollback;
        // A chained workflow's failure never undoes the workflow before it.
        let segment = self.step(idx).segment;
        let undo: Vec<usize> = if rollback {
            self.undo_list(idx, false)
                .into_iter()
                .filter(|&j| self.step(j).segment == segment)
                .collect()
        } else {
            Vec::new()
        };
        if !undo.is_empty() {
            self.start_rollback(idx, error, undo, None);
            return ACT_FAIL;
        }
        let id = self.step(idx).id.clone();
        self.event(EventKind::Failed {
            step: id,
            error: error.clone(),
        });
        self.set(Status::Failed { step: idx, error }, None);
        ACT_FAIL
    }

    /// `by`: the operator whose cancel started it (`None` after a failure).
    fn start_rollback(
        &mut self,
        failed: usize,
        error: String,
        undo: Vec<usize>,
        by: Option<String>,
    ) {
        self.event(EventKind::RollbackStarted {
            step: self.step(failed).id.clone(),
            error: error.clone(),
            undo: undo.iter().map(|&j| self.step(j).id.clone()).collect(),
            by,
        });
        let first = undo[0];
        self.set(
            Status::Compensating {
                step: first,
                phase: Phase::Ready,
                failed_step: failed,
                error,
                remaining: undo[1..].to_vec(),
            },
            Some(self.ctx.now),
        );
        self.begin_action(first, 1, false);
    }

    fn attention(&mut self, step: usize, reason: String) {
        let id = self.step(step).id.clone();
        self.event(EventKind::NeedsAttention {
            step: id,
            reason: reason.clone(),
        });
        let rollback = match &self.inst.status {
            Status::Compensating {
                failed_step,
                error,
                remaining,
                ..
            } => Some(PendingRollback {
                failed_step: *failed_step,
                error: error.clone(),
                remaining: remaining.clone(),
            }),
            _ => None,
        };
        self.set(
            Status::NeedsAttention {
                step,
                reason,
                rollback,
            },
            None,
        );
    }

    /// The current step is complete on its track: next step, or next undo.
    fn step_done(&mut self, idx: usize) -> &'static str {
        if let Status::Compensating {
            failed_step,
            error,
            remaining,
            ..
        } = self.inst.status.clone()
        {
            self.event(EventKind::Compensated {
                step: self.step(idx).id.clone(),
            });
            // Undoing the step that took the number down puts it back in service.
            if self
                .inst
                .down
                .as_ref()
                .is_some_and(|d| d.step == self.step(idx).id)
            {
                self.mark_restored(format!("{} (undo)", self.step(idx).id));
            }
            match remaining.split_first() {
                Some((&next, rest)) => {
                    self.set(
                        Status::Compensating {
                            step: next,
                            phase: Phase::Ready,
                            failed_step,
                            error,
                            remaining: rest.to_vec(),
                        },
                        Some(self.ctx.now),
                    );
                    self.begin_action(next, 1, false);
                    ROLLBACK_NEXT
                }
                None => {
                    if self.inst.down.is_some() {
                        self.mark_restored("rollback".into());
                    }
                    self.event(EventKind::RolledBack);
                    self.set(
                        Status::RolledBack {
                            step: failed_step,
                            error,
                        },
                        None,
                    );
                    ROLLED_BACK
                }
            }
        } else {
            if self.step(idx).restores_service {
                self.mark_restored(self.step(idx).id.clone());
            }
            self.enter(idx + 1)
        }
    }

    /// Enter step `idx`: skip while `when` is false (or a non-idempotent action
    /// is already done), refuse on a false `check`, stop at an unapproved gate or a
    /// manual task, else act (or wait). Past the last step the instance succeeds.
    fn enter(&mut self, mut idx: usize) -> &'static str {
        loop {
            if idx >= self.ctx.wf.steps.len() {
                // Every verification passed: whatever was down is back.
                if self.inst.down.is_some() {
                    let last = self
                        .ctx
                        .wf
                        .steps
                        .last()
                        .map_or_else(String::new, |s| s.id.clone());
                    self.mark_restored(last);
                }
                self.event(EventKind::Succeeded);
                self.set(Status::Succeeded, None);
                return ENTER;
            }
            let step = self.step(idx);
            if let Some(cond) = &step.when {
                match cond.eval_bool(&self.expr_ctx(None)) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.event(EventKind::StepSkipped {
                            step: step.id.clone(),
                            reason: None,
                        });
                        idx += 1;
                        continue;
                    }
                    Err(e) => {
                        self.fail(idx, format!("condition `{}`: {e}", cond.source()), false);
                        return SPEC_ERROR;
                    }
                }
            }
            // After a retry, never repeat a side effect that must not happen twice.
            let done = self
                .inst
                .outputs
                .get(&step.id)
                .is_some_and(|d| d.output.is_some());
            if done
                && step
                    .action
                    .as_ref()
                    .is_some_and(|a| !a.op.info().idempotent)
            {
                self.event(EventKind::StepSkipped {
                    step: step.id.clone(),
                    reason: Some("already done; not repeated because it is not idempotent".into()),
                });
                // Its verification still runs: the effect may not be visible yet.
                if step.wait.is_some() {
                    return self.begin_wait(idx, false);
                }
                idx += 1;
                continue;
            }
            if let Some(check) = &step.check {
                match check.require.eval_bool(&self.expr_ctx(None)) {
                    Ok(true) => {}
                    Ok(false) => {
                        let msg = self.render_text(&check.message);
                        self.fail(idx, format!("refused: {msg}"), false);
                        return REFUSED;
                    }
                    Err(e) => {
                        self.fail(
                            idx,
                            format!("check `{}`: {e}", check.require.source()),
                            false,
                        );
                        return SPEC_ERROR;
                    }
                }
            }
            if let Some(gate) = &step.gate {
                if !self.inst.approvals.contains(&step.id) {
                    if gate.signal.is_none() && self.ctx.run_approvals.iter().any(|a| a == &step.id)
                    {
                        self.inst.approvals.insert(step.id.clone());
                        self.event(EventKind::GateApproved {
                            step: step.id.clone(),
                            by: "run file".into(),
                        });
                    } else {
                        self.block(idx, gate.message(), gate.signal.clone());
                        return ENTER;
                    }
                }
            }
            if step.window {
                if let Some(cal) = self.ctx.window {
                    match cal.next_open(self.ctx.now) {
                        Some(t) if t <= self.ctx.now => {}
                        Some(opens) => {
                            self.set_phase(idx, Phase::Window { opens }, Some(opens));
                            return WINDOW_WAIT;
                        }
                        None => {
                            self.fail(idx, "the porting window never opens again".into(), false);
                            return WINDOW_WAIT;
                        }
                    }
                }
            }
            if self.is_outage_step(idx) && self.inst.down.is_none() {
                if let Some(gate) = self.ctx.outages {
                    if let Err(reason) = gate.admit(self.inst.idx) {
                        return self.hold(idx, reason);
                    }
                }
            }
            if let Some(manual) = &step.manual {
                let text = self.render_text(&manual.instructions);
                self.block(idx, text, Some(DONE_SIGNAL.into()));
                return ENTER;
            }
            self.begin_action(idx, 1, false);
            return ENTER;
        }
    }

    /// Wait before outage step `idx` until the executor wakes the instance.
    fn hold(&mut self, idx: usize, reason: String) -> &'static str {
        let already = matches!(
            &self.inst.status,
            Status::Running { step, phase: Phase::Held { reason: r } } if *step == idx && *r == reason
        );
        if already {
            // Woken without room: nothing new to record.
            return HOLD_AGAIN;
        }
        self.event(EventKind::Held {
            step: self.step(idx).id.clone(),
            reason: reason.clone(),
        });
        self.set_phase(idx, Phase::Held { reason }, None);
        HOLD
    }

    fn block(&mut self, idx: usize, text: String, signal: Option<String>) {
        self.event(EventKind::GateBlocked {
            step: self.step(idx).id.clone(),
            approval: text.clone(),
            signal: signal.clone(),
        });
        self.set_phase(idx, Phase::Blocked { gate: text, signal }, None);
    }

    /// Record the intent and ask for the call; or go straight to the wait.
    fn begin_action(&mut self, idx: usize, attempt: u32, reissue: bool) {
        if self.operator {
            // Never record an intent nobody is about to carry out.
            self.set_phase(idx, Phase::Ready, Some(self.ctx.now));
            return;
        }
        let parts = self.parts(idx);
        let Some(spec) = parts.action else {
            self.begin_wait(idx, false);
            return;
        };
        match self.render(&spec) {
            Ok(op) => {
                if self.ctx.manual_ops.contains(&spec.op) {
                    // The backend cannot do this: a person does it in the admin center.
                    let info = spec.op.info();
                    let how = match (info.manual, info.cmdlet) {
                        (Some(m), _) => m.to_string(),
                        // A PowerShell-only operation on a backend without it.
                        (None, Some(c)) => {
                            format!("in PowerShell, `{c}` (this backend cannot run it)")
                        }
                        (None, None) => "the Teams admin center".to_string(),
                    };
                    let text = format!(
                        "do by hand: {} ({}) with {}; then `portflow signal <run> {} done`. How: {how}",
                        spec.op,
                        spec.op.info().microsoft,
                        serde_json::to_value(&op).unwrap_or(Value::Null),
                        self.inst.subject
                    );
                    self.block(idx, text, Some(DONE_SIGNAL.into()));
                    return;
                }
                let track = if parts.undo { "undo/" } else { "" };
                let key = format!(
                    "{}/{}/{}/{track}{attempt}",
                    self.inst.run, self.inst.idx, parts.id
                );
                self.event(EventKind::ActionIntent {
                    step: parts.id.to_string(),
                    attempt,
                    key: key.clone(),
                    operation: serde_json::to_value(&op).unwrap_or(Value::Null),
                    reissue,
                });
                // Due now: if the process dies mid-call, restart finds it via the timer index.
                self.set_phase(
                    idx,
                    Phase::Acting {
                        attempt,
                        key: key.clone(),
                        throttled: 0,
                    },
                    Some(self.ctx.now),
                );
                self.inst.calls += 1;
                self.effect = Some(Effect::Invoke(Call::action(op, key, attempt)));
            }
            Err(e) => {
                self.fail(idx, e, false);
            }
        }
    }

    /// Start the step's wait; without one the step is done (returns that rule).
    fn begin_wait(&mut self, idx: usize, after_action: bool) -> &'static str {
        let parts = self.parts(idx);
        let Some(wait) = parts.wait else {
            return self.step_done(idx);
        };
        let now = self.ctx.now;
        let deadline = now.plus(wait.timeout);
        // Right after a write the change cannot be visible yet: first poll after `initial`.
        let next_poll = if wait.signal.is_some() && self.ctx.manual_ops.contains(&wait.observe.op) {
            // The backend cannot read it (a port order on a real tenant): only
            // the signal ends the wait; one poll at the deadline judges it.
            deadline
        } else if after_action {
            now.plus(wait.poll.initial)
        } else {
            now
        };
        self.event(EventKind::WaitStarted {
            step: parts.id.to_string(),
            deadline,
        });
        self.set_phase(
            idx,
            Phase::Waiting {
                started: now,
                deadline,
                next_poll,
                polls: 0,
                last_error: None,
                overdue_since: None,
            },
            Some(next_poll),
        );
        ENTER
    }

    fn poll_interval(wait: &WaitSpec, polls: u32) -> Duration {
        let cap = wait.poll.max.min(wait.expected).max(wait.poll.initial);
        let grown =
            wait.poll.initial.as_secs_f64() * wait.poll.factor.max(1.0).powi(polls.min(64) as i32);
        Duration::from_secs_f64(grown.min(cap.as_secs_f64()))
    }

    fn backoff(&self, retry: &RetrySpec, attempt: u32, err: &BackendError) -> Duration {
        let exp = retry.initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let base = Duration::from_secs_f64(exp.min(retry.max.as_secs_f64()));
        // Spread retries of many instances (deterministic, ±10%).
        let spread = (self.inst.idx.wrapping_mul(2_654_435_761) % 200) as f64 / 1000.0 - 0.1;
        let jittered = Duration::from_secs_f64(base.as_secs_f64() * (1.0 + spread));
        err.retry_after().map_or(jittered, |ra| ra.max(jittered))
    }

    /// Take a finished wait's observation out of the snapshot (which every
    /// later poll rewrites) unless an expression of the workflow reads it;
    /// returns it for the `wait_satisfied` event, which keeps it instead.
    fn unread_observation(&mut self, idx: usize) -> Option<Value> {
        let id = &self.step(idx).id;
        if self.undoing() || self.ctx.wf.reads_observed(id) {
            return None;
        }
        let data = self.inst.outputs.get_mut(id)?;
        let observed = data.observed.take();
        if data.output.is_none() {
            self.inst.outputs.remove(id);
        }
        observed
    }

    /// Keep a poll's observation in the wait's snapshot: all of it when a
    /// later step reads `steps.<id>.observed`, else the fields `until` reads.
    /// Each poll rewrites the snapshot, so this is written once per poll.
    fn keep_observation(&mut self, id: &str, wait: &WaitSpec, obs: Value) {
        let kept = if self.ctx.wf.reads_observed(id) {
            obs
        } else {
            wait.proof(obs)
        };
        self.output_mut(id).observed = Some(kept);
    }

    fn output_mut(&mut self, id: &str) -> &mut super::instance::StepData {
        self.inst.outputs.entry(id.to_string()).or_default()
    }

    /// A poll outcome in `Waiting`: satisfied, keep polling, or time out.
    fn waited(
        &mut self,
        idx: usize,
        phase: Phase,
        obs: Result<Value, BackendError>,
    ) -> &'static str {
        let parts = self.parts(idx);
        let Some(wait) = parts.wait else {
            return self.step_done(idx);
        };
        let Phase::Waiting {
            started,
            deadline,
            polls,
            overdue_since,
            ..
        } = phase
        else {
            return UNEXPECTED;
        };
        let now = self.ctx.now;
        let polls = polls + 1;
        self.inst.calls += 1;
        let mut last_error = None;
        let mut throttle_wait = None;
        match obs {
            Ok(obs) => {
                let holds = wait.until.eval_bool(&self.expr_ctx(Some(&obs)));
                if !parts.undo {
                    self.keep_observation(parts.id, wait, obs);
                }
                match holds {
                    Ok(true) => {
                        let observed = self.unread_observation(idx).map(|o| wait.proof(o));
                        self.event(EventKind::WaitSatisfied {
                            step: parts.id.to_string(),
                            polls,
                            waited_ms: now.since(started).as_millis() as u64,
                            observed,
                        });
                        let rule = self.step_done(idx);
                        return if rule == ENTER { WAIT_MET } else { rule };
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.fail(
                            idx,
                            format!("condition `{}`: {e}", wait.until.source()),
                            false,
                        );
                        return SPEC_ERROR;
                    }
                }
            }
            Err(e) => {
                if e.kind == ErrorKind::Throttled {
                    throttle_wait = e.retry_after();
                }
                last_error = Some(e.to_string());
            }
        }
        // A wait is judged on an observation taken at or after its deadline: a
        // failed poll there (throttled, unavailable) is retried for a while.
        let past = now >= deadline;
        let overdue_since = (past && last_error.is_some()).then(|| overdue_since.unwrap_or(now));
        let unjudged = overdue_since.is_some_and(|t| now < t.plus(DEADLINE_GRACE));
        if past && !unjudged {
            let waited = now.since(started);
            let last = self
                .inst
                .outputs
                .get(parts.id)
                .and_then(|d| d.observed.clone());
            let outcome = match wait.on_timeout {
                OnTimeout::Fail => "fail",
                OnTimeout::Continue => "continue",
                OnTimeout::Rollback => "rollback",
            };
            self.event(EventKind::WaitTimedOut {
                step: parts.id.to_string(),
                polls,
                waited_ms: waited.as_millis() as u64,
                last_observed: last.clone(),
                outcome: outcome.into(),
            });
            if wait.on_timeout == OnTimeout::Continue && !parts.undo {
                // The event above has the last observation.
                self.unread_observation(idx);
                self.step_done(idx);
                return WAIT_TIMEOUT_CONTINUE;
            }
            let seen = last.map_or_else(|| "nothing".to_string(), |v| v.to_string());
            let err = last_error.map_or(String::new(), |e| {
                format!(
                    "; no poll succeeded in the {} after the deadline, last poll error: {e}",
                    humantime::format_duration(DEADLINE_GRACE)
                )
            });
            let msg = format!(
                "timed out after {} waiting for `{}` ({polls} polls); last observed: {seen}{err}",
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                wait.until.source()
            );
            let rule = self.fail(idx, msg, wait.on_timeout == OnTimeout::Rollback);
            return match (rule, wait.on_timeout) {
                (ROLLBACK_FAILED, _) => ROLLBACK_FAILED,
                (_, OnTimeout::Rollback) => WAIT_TIMEOUT_ROLLBACK,
                _ => WAIT_TIMEOUT_FAIL,
            };
        }
        let mut next = if past {
            now.plus(DEADLINE_RETRY)
        } else {
            now.plus(Self::poll_interval(wait, polls))
        };
        if let Some(ra) = throttle_wait {
            next = next.max(now.plus(ra));
        }
        // One last look exactly at the deadline.
        let next = if past { next } else { next.min(deadline) };
        self.set_phase(
            idx,
            Phase::Waiting {
                started,
                deadline,
                next_poll: next,
                polls,
                last_error,
                overdue_since,
            },
            Some(next),
        );
        WAIT_AGAIN
    }

    fn action_error(&mut self, idx: usize, attempt: u32, err: BackendError) -> &'static str {
        let parts = self.parts(idx);
        let now = self.ctx.now;
        let op = parts.action.as_ref().map_or("action", |a| a.op.info().name);
        let retryable = parts.retry.on.contains(&err.kind);
        if retryable && attempt < parts.retry.attempts {
            let until = now.plus(self.backoff(parts.retry, attempt, &err));
            self.event(EventKind::ActionFailed {
                step: parts.id.to_string(),
                attempt,
                error: err,
                retry_at: Some(until),
            });
            self.set_phase(
                idx,
                Phase::Backoff {
                    attempt: attempt + 1,
                    until,
                    throttled: 0,
                },
                Some(until),
            );
            ACT_RETRY
        } else {
            let msg = if retryable {
                format!("{op} failed after {attempt} attempts: {err}")
            } else {
                format!("{op} failed: {err}")
            };
            self.event(EventKind::ActionFailed {
                step: parts.id.to_string(),
                attempt,
                error: err,
                retry_at: None,
            });
            self.fail(idx, msg, false)
        }
    }

    fn reconcile_observe(&mut self, idx: usize) {
        if let Some(wait) = self.parts(idx).wait {
            match self.render(&wait.observe) {
                Ok(op) => self.effect = Some(Effect::Observe(op)),
                Err(e) => {
                    self.fail(idx, e, false);
                }
            }
        }
    }
}

/// Whether a step's forward action takes a number out of service (catalog `outage`).
pub fn outage_step(step: &Step) -> bool {
    step.action.as_ref().is_some_and(|a| a.op.info().outage)
}

fn in_doubt(op: &str) -> String {
    format!(
        "the process stopped while `{op}` was in flight; it may or may not have taken effect and \
         re-issuing it could repeat a side effect. Check the tenant, then `portflow retry` \
         (to issue it again) or skip the step with `portflow retry --from-step <next step>`"
    )
}

fn timed_out_in_doubt(op: &str, err: &BackendError) -> String {
    format!(
        "`{op}` got no answer ({}); it may or may not have taken effect and re-issuing it \
         could repeat a side effect. Check the tenant, then `portflow retry` (to issue it again) \
         or skip the step with `portflow retry --from-step <next step>`",
        err.message
    )
}

/// Apply `input` to `inst` at `ctx.now`.
pub fn transition(ctx: Ctx<'_>, inst: &Instance, input: Input) -> Transition {
    transition_owned(ctx, inst.clone(), input)
}

/// [`transition`] of an instance the caller hands over, so it is not copied
/// (the executor's loop, on every poll).
pub fn transition_owned(ctx: Ctx<'_>, inst: Instance, input: Input) -> Transition {
    let mut b = Builder::new(ctx, inst);
    b.operator = matches!(
        input,
        Input::Approve { .. } | Input::Signal { .. } | Input::Cancel { .. } | Input::Retry { .. }
    );
    let rule = apply(&mut b, input);
    b.finish(rule)
}

fn apply(b: &mut Builder<'_>, input: Input) -> &'static str {
    if let Input::Retry {
        from_step,
        by,
        amend,
        reason,
    } = &input
    {
        return retry(b, *from_step, by, amend, reason.as_deref());
    }
    if b.inst.status.is_terminal() {
        return TERMINAL;
    }
    match input {
        Input::Cancel {
            reason,
            rollback,
            by,
        } => cancel(b, reason, rollback, by),
        Input::Approve { step, by } => approve(b, step.as_deref(), &by),
        Input::Signal { name, data, by } => signal(b, &name, data, &by),
        Input::Tick if b.inst.status == Status::Pending => {
            b.event(EventKind::Started);
            match b.enter(0) {
                ENTER => START,
                other => other,
            }
        }
        input => match b.inst.status.clone() {
            Status::Running { step, phase } | Status::Compensating { step, phase, .. } => {
                if step >= b.ctx.wf.steps.len() {
                    // The pinned workflow never changes, so this means a damaged snapshot.
                    let error = "snapshot points past the last step".to_string();
                    b.event(EventKind::Failed {
                        step: format!("#{step}"),
                        error: error.clone(),
                    });
                    b.set(Status::Failed { step, error }, None);
                    return SPEC_ERROR;
                }
                running(b, step, phase, input)
            }
            _ => UNEXPECTED,
        },
    }
}

fn cancel(b: &mut Builder<'_>, reason: String, rollback: bool, by: String) -> &'static str {
    let at = match &b.inst.status {
        Status::Running { step, phase } => Some((
            *step,
            matches!(phase, Phase::Acting { .. } | Phase::Reconciling { .. }),
        )),
        _ => None,
    };
    if rollback {
        if let Some((idx, in_doubt)) = at {
            let undo = b.undo_list(idx, in_doubt);
            if !undo.is_empty() {
                b.start_rollback(idx, format!("cancelled: {reason}"), undo, Some(by));
                return CANCEL;
            }
        }
    }
    b.event(EventKind::Cancelled {
        reason,
        by: Some(by),
    });
    b.set(Status::Cancelled, None);
    CANCEL
}

/// Give inputs new values, each recorded with its old one (an unchanged
/// value records nothing).
fn amend_inputs(b: &mut Builder<'_>, amend: &[(String, Value)], by: &str, reason: Option<&str>) {
    for (input, new) in amend {
        let old = b.inst.inputs.get(input).cloned().unwrap_or(Value::Null);
        if &old == new {
            continue;
        }
        b.inst.inputs.insert(input.clone(), new.clone());
        b.event(EventKind::InputAmended {
            input: input.clone(),
            old,
            new: new.clone(),
            by: by.to_string(),
            reason: reason.map(str::to_string),
        });
    }
}

fn retry(
    b: &mut Builder<'_>,
    from_step: Option<usize>,
    by: &str,
    amend: &[(String, Value)],
    reason: Option<&str>,
) -> &'static str {
    // A rollback that stopped for a person goes on undoing (unless told where to go).
    if let (
        Status::NeedsAttention {
            step,
            rollback: Some(rb),
            ..
        },
        None,
    ) = (b.inst.status.clone(), from_step)
    {
        amend_inputs(b, amend, by, reason);
        b.event(EventKind::Retried {
            from_step: b.step(step).id.clone(),
            by: by.to_string(),
        });
        b.set(
            Status::Compensating {
                step,
                phase: Phase::Ready,
                failed_step: rb.failed_step,
                error: rb.error,
                remaining: rb.remaining,
            },
            Some(b.ctx.now),
        );
        return RETRY;
    }
    let stopped_at = match &b.inst.status {
        Status::Failed { step, .. } | Status::NeedsAttention { step, .. } => *step,
        Status::RolledBack { .. } | Status::Cancelled => 0,
        _ => return UNEXPECTED,
    };
    let from = from_step
        .unwrap_or(stopped_at)
        .min(b.ctx.wf.steps.len().saturating_sub(1));
    amend_inputs(b, amend, by, reason);
    b.event(EventKind::Retried {
        from_step: b.step(from).id.clone(),
        by: by.to_string(),
    });
    b.set(
        Status::Running {
            step: from,
            phase: Phase::Ready,
        },
        Some(b.ctx.now),
    );
    RETRY
}

fn approve(b: &mut Builder<'_>, which: Option<&str>, by: &str) -> &'static str {
    let blocked_at = match &b.inst.status {
        Status::Running {
            step,
            phase: Phase::Blocked { signal: None, .. },
        } => Some(*step),
        _ => None,
    };
    if let Some(idx) = blocked_at {
        let id = b.step(idx).id.clone();
        if which.is_none_or(|w| w == id) {
            b.inst.approvals.insert(id.clone());
            b.event(EventKind::GateApproved {
                step: id,
                by: by.to_string(),
            });
            // Ready and due now: the executor re-enters the step and acts. Acting
            // here would record an intent nobody is about to carry out.
            b.set_phase(idx, Phase::Ready, Some(b.ctx.now));
            return GATE_OPEN;
        }
    }
    match which {
        Some(id)
            if b.ctx
                .wf
                .steps
                .iter()
                .any(|s| s.id == id && s.gate.as_ref().is_some_and(|g| g.signal.is_none())) =>
        {
            // Approving again changes nothing, and says so.
            if !b.inst.approvals.insert(id.to_string()) {
                return UNEXPECTED;
            }
            b.event(EventKind::GateApproved {
                step: id.to_string(),
                by: by.to_string(),
            });
            PRE_APPROVE
        }
        _ => UNEXPECTED,
    }
}

fn signal(b: &mut Builder<'_>, name: &str, data: Value, by: &str) -> &'static str {
    let (idx, phase) = match b.inst.status.clone() {
        Status::Running { step, phase } | Status::Compensating { step, phase, .. } => (step, phase),
        _ => return UNEXPECTED,
    };
    let id = b.step(idx).id.clone();
    match phase {
        Phase::Blocked {
            signal: Some(awaited),
            ..
        } if awaited == name => {
            b.event(EventKind::SignalReceived {
                step: id.clone(),
                name: name.to_string(),
                by: by.to_string(),
                data: data.clone(),
            });
            let step = b.step(idx);
            let gate_signal = step.gate.as_ref().and_then(|g| g.signal.as_deref()) == Some(name)
                && !b.inst.approvals.contains(&id);
            if gate_signal {
                // The gate opens; the step's manual task or action comes next.
                b.inst.approvals.insert(id);
                b.set_phase(idx, Phase::Ready, Some(b.ctx.now));
            } else {
                // A manual task (or a non-automated action) is done: its result is the data.
                if !b.undoing() {
                    b.output_mut(&step.id).output = Some(if data.is_null() {
                        json!({"done": true})
                    } else {
                        data
                    });
                    b.mark_down(idx);
                }
                b.begin_wait(idx, true);
            }
            SIGNAL_OPEN
        }
        Phase::Waiting { started, .. }
            if b.parts(idx).wait.and_then(|w| w.signal.as_deref()) == Some(name) =>
        {
            b.event(EventKind::SignalReceived {
                step: id.clone(),
                name: name.to_string(),
                by: by.to_string(),
                data: data.clone(),
            });
            // Without data the observation records who confirmed it.
            let obs = if data.is_null() {
                json!({"signal": name, "by": by})
            } else {
                data
            };
            b.output_mut(&id).observed = Some(obs);
            let observed = b.unread_observation(idx);
            b.event(EventKind::WaitSatisfied {
                step: id,
                polls: 0,
                waited_ms: b.ctx.now.since(started).as_millis() as u64,
                observed,
            });
            b.step_done(idx);
            SIGNAL_WAIT_MET
        }
        _ => UNEXPECTED,
    }
}

fn running(b: &mut Builder<'_>, idx: usize, phase: Phase, input: Input) -> &'static str {
    let now = b.ctx.now;
    let parts = b.parts(idx);
    match (phase.clone(), input) {
        (Phase::Ready, Input::Tick) => {
            if b.undoing() {
                b.begin_action(idx, 1, false);
                ENTER
            } else {
                b.enter(idx)
            }
        }
        (Phase::Blocked { signal: None, .. }, Input::Tick) => {
            let step = b.step(idx);
            if b.ctx.run_approvals.iter().any(|a| a == &step.id) {
                b.inst.approvals.insert(step.id.clone());
                b.event(EventKind::GateApproved {
                    step: step.id.clone(),
                    by: "run file".into(),
                });
                b.set_phase(idx, Phase::Ready, Some(now));
                b.enter(idx);
                GATE_OPEN
            } else {
                GATE_WAIT
            }
        }
        (Phase::Blocked { .. }, Input::Tick) => GATE_WAIT,
        (Phase::Held { .. }, Input::Tick) => match b.enter(idx) {
            ENTER => HOLD_RELEASED,
            other => other,
        },
        (Phase::Window { opens }, Input::Tick) => {
            if now < opens {
                return EARLY;
            }
            // Re-enter: `when`, checks and gates are settled, the window is checked again.
            match b.enter(idx) {
                ENTER => WINDOW_OPEN,
                other => other,
            }
        }
        (Phase::Acting { attempt, .. }, Input::ActionOk(output)) => {
            // The snapshot keeps what later steps read of the output; the
            // history keeps all of it (when that is more).
            let (kept, whole) = if parts.undo {
                (None, None)
            } else {
                let (kept, whole) = b.ctx.wf.trim_output(parts.id, output);
                (Some(kept), whole)
            };
            b.event(EventKind::ActionSucceeded {
                step: parts.id.to_string(),
                attempt,
                output: whole,
            });
            if let Some(kept) = kept {
                b.output_mut(parts.id).output = Some(kept);
            }
            b.mark_down(idx);
            match b.begin_wait(idx, true) {
                ENTER => ACT_OK,
                rule => rule,
            }
        }
        (
            Phase::Acting {
                attempt, throttled, ..
            },
            Input::ActionErr(err),
        ) => {
            // The same attempt again later, not counted as failed.
            let again = |b: &mut Builder<'_>, until: Timestamp| {
                b.set_phase(
                    idx,
                    Phase::Backoff {
                        attempt,
                        until,
                        throttled: throttled + 1,
                    },
                    Some(until),
                );
            };
            if err.kind == ErrorKind::Throttled
                && parts.retry.on.contains(&ErrorKind::Throttled)
                && throttled < MAX_THROTTLES
            {
                // Throttling is the service pacing us, not a failed attempt: wait
                // in place (no event) unless it goes on for too long.
                let until = now.plus(b.backoff(parts.retry, throttled + 1, &err));
                again(b, until);
                return ACT_THROTTLED;
            }
            if err.kind == ErrorKind::Auth && throttled < MAX_AUTH_WAITS {
                // A 401/403 means the request was refused, not carried out:
                // re-issuing it later is safe, whatever the operation.
                let until = now.plus(AUTH_WAIT);
                b.event(EventKind::ActionFailed {
                    step: parts.id.to_string(),
                    attempt,
                    error: err,
                    retry_at: Some(until),
                });
                again(b, until);
                return ACT_REFUSED_AUTH;
            }
            b.action_error(idx, attempt, err)
        }
        (
            Phase::Backoff {
                attempt,
                until,
                throttled,
            },
            Input::Tick,
        ) => {
            if now < until {
                return EARLY;
            }
            // After throttling the refused call is re-issued as the same attempt.
            b.begin_action(idx, attempt, false);
            if let Status::Running {
                phase: Phase::Acting { throttled: t, .. },
                ..
            }
            | Status::Compensating {
                phase: Phase::Acting { throttled: t, .. },
                ..
            } = &mut b.inst.status
            {
                *t = throttled;
            }
            BACKOFF_DONE
        }
        (Phase::Waiting { next_poll, .. }, Input::Tick) => {
            if now < next_poll {
                return EARLY;
            }
            match parts.wait.map(|w| b.render(&w.observe)) {
                Some(Ok(op)) => {
                    b.effect = Some(Effect::Observe(op));
                    POLL
                }
                Some(Err(e)) => {
                    b.fail(idx, e, false);
                    SPEC_ERROR
                }
                None => {
                    b.step_done(idx);
                    WAIT_MET
                }
            }
        }
        (Phase::Waiting { .. }, Input::Observed(obs)) => b.waited(idx, phase, Ok(obs)),
        (Phase::Waiting { .. }, Input::ObserveErr(e)) => b.waited(idx, phase, Err(e)),
        (Phase::Acting { attempt, key, .. }, Input::Tick) => {
            // Only a restart delivers a tick to an acting instance: the call may or
            // may not have reached the tenant.
            let info = parts.action.as_ref().map(|a| a.op.info());
            b.event(EventKind::Reconciling {
                step: parts.id.to_string(),
                attempt,
                cause: None,
            });
            if parts.wait.is_some() {
                b.set_phase(
                    idx,
                    Phase::Reconciling {
                        attempt,
                        key,
                        timed_out: None,
                    },
                    Some(now),
                );
                b.reconcile_observe(idx);
            } else if info.is_some_and(|i| i.idempotent) {
                b.begin_action(idx, attempt, true);
            } else {
                let name = info.map_or("action", |i| i.name);
                b.attention(idx, in_doubt(name));
            }
            RECOVER
        }
        (Phase::Acting { attempt, key, .. }, Input::ActionTimedOut(err)) => {
            // Like a restart mid-call, except that the attempt is spent: a
            // backend that keeps hanging must not be re-sent the same attempt
            // for ever.
            let info = parts.action.as_ref().map(|a| a.op.info());
            b.event(EventKind::Reconciling {
                step: parts.id.to_string(),
                attempt,
                cause: Some(err.message.clone()),
            });
            if parts.wait.is_some() {
                b.set_phase(
                    idx,
                    Phase::Reconciling {
                        attempt,
                        key,
                        timed_out: Some(err),
                    },
                    Some(now),
                );
                b.reconcile_observe(idx);
            } else if info.is_some_and(|i| i.idempotent) {
                b.action_error(idx, attempt, err);
            } else {
                let name = info.map_or("action", |i| i.name);
                b.attention(idx, timed_out_in_doubt(name, &err));
            }
            ACT_TIMEOUT
        }
        (Phase::Reconciling { .. }, Input::Tick) => {
            b.reconcile_observe(idx);
            RECONCILE_POLL
        }
        (
            Phase::Reconciling {
                attempt, timed_out, ..
            },
            Input::Observed(obs),
        ) => {
            let Some(wait) = parts.wait else {
                return UNEXPECTED;
            };
            let holds = wait.until.eval_bool(&b.expr_ctx(Some(&obs)));
            b.inst.calls += 1;
            if !parts.undo {
                b.keep_observation(parts.id, wait, obs);
            }
            match holds {
                Ok(true) => {
                    b.event(EventKind::Reconciled {
                        step: parts.id.to_string(),
                        outcome: format!("`{}` already holds; not re-issued", wait.until.source()),
                    });
                    if !parts.undo {
                        // The action evidently succeeded; record that it is done.
                        let out = b.output_mut(parts.id);
                        if out.output.is_none() {
                            out.output = Some(json!({"reconciled": true}));
                        }
                        b.mark_down(idx);
                    }
                    let observed = b.unread_observation(idx).map(|o| wait.proof(o));
                    b.event(EventKind::WaitSatisfied {
                        step: parts.id.to_string(),
                        polls: 1,
                        waited_ms: 0,
                        observed,
                    });
                    b.step_done(idx);
                    RECONCILE_DONE
                }
                Ok(false) => {
                    let info = parts.action.as_ref().map(|a| a.op.info());
                    match (info.is_none_or(|i| i.idempotent), timed_out) {
                        (true, None) => {
                            b.begin_action(idx, attempt, true);
                            RECONCILE_REISSUE
                        }
                        (true, Some(err)) => {
                            b.action_error(idx, attempt, err);
                            RECONCILE_TIMEOUT_RETRY
                        }
                        (false, cause) => {
                            let name = info.map_or("action", |i| i.name);
                            let why = match cause {
                                Some(err) => timed_out_in_doubt(name, &err),
                                None => in_doubt(name),
                            };
                            b.attention(idx, why);
                            RECONCILE_ATTENTION
                        }
                    }
                }
                Err(e) => {
                    b.fail(
                        idx,
                        format!("condition `{}`: {e}", wait.until.source()),
                        false,
                    );
                    SPEC_ERROR
                }
            }
        }
        (
            Phase::Reconciling {
                attempt,
                key,
                timed_out,
            },
            Input::ObserveErr(e),
        ) => {
            b.inst.calls += 1;
            let wait = e.retry_after().unwrap_or(Duration::from_secs(30));
            b.set_phase(
                idx,
                Phase::Reconciling {
                    attempt,
                    key,
                    timed_out,
                },
                Some(now.plus(wait)),
            );
            RECONCILE_RETRY
        }
        _ => UNEXPECTED,
    }
}
