//! The instance state machine as a pure transducer:
//! `(instance, input, now) -> (instance', events, effect)`.
//!
//! No I/O and no clock: the executor feeds inputs (timer ticks, backend results,
//! approvals), commits the events and snapshot, and only then performs the
//! effect. Every branch is one row of [`RULES`], so tests can report which rows
//! they covered and the docs can list them.

use std::time::Duration;

use serde_json::{json, Value};

use super::instance::{Event, EventKind, Instance, Phase, Status};
use crate::backend::{BackendError, ErrorKind, Operation};
use crate::clock::Timestamp;
use crate::spec::model::{ActionSpec, OnTimeout, Step, Workflow};

/// What drives a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The instance's timer is due (also: start, resume after restart).
    Tick,
    /// The action's backend call returned.
    ActionOk(Value),
    /// The action's backend call failed.
    ActionErr(BackendError),
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
    /// Stop the instance.
    Cancel {
        /// Why / who.
        reason: String,
    },
}

impl Input {
    /// Short name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Input::Tick => "tick",
            Input::ActionOk(_) => "action_ok",
            Input::ActionErr(_) => "action_err",
            Input::Observed(_) => "observed",
            Input::ObserveErr(_) => "observe_err",
            Input::Approve { .. } => "approve",
            Input::Cancel { .. } => "cancel",
        }
    }
}

/// Side effect to perform after the transition is committed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Call a backend action (its intent is in the committed events).
    Invoke(Operation),
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
    ENTER = "ready", "tick" => "blocked | acting | waiting | next step | succeeded": "evaluate `when`, gate, then act or wait";
    GATE_WAIT = "blocked", "tick" => "blocked": "still not approved";
    GATE_OPEN = "blocked", "approve | tick" => "ready | acting": "approval recorded (by a person, or by the run file on tick); step proceeds";
    PRE_APPROVE = "running/pending", "approve" => "(same)": "approval recorded for a later gate";
    ACT_OK = "acting", "action_ok" => "waiting | next step": "action done; poll if the step waits";
    ACT_RETRY = "acting", "action_err" => "backoff": "retryable error, attempts left";
    ACT_THROTTLED = "acting", "action_err" => "backoff": "throttled: wait Retry-After, attempt not counted";
    ACT_FAIL = "acting", "action_err" => "failed": "error not retryable or attempts exhausted";
    BACKOFF_DONE = "backoff", "tick" => "acting": "retry the action";
    POLL = "waiting", "tick" => "waiting + observe": "poll the observation";
    WAIT_MET = "waiting", "observed" => "next step": "condition holds";
    WAIT_AGAIN = "waiting", "observed | observe_err" => "waiting": "not yet; next poll later (in place, no event)";
    WAIT_TIMEOUT_FAIL = "waiting", "observed | observe_err" => "failed": "deadline passed, on_timeout: fail";
    WAIT_TIMEOUT_CONTINUE = "waiting", "observed | observe_err" => "next step": "deadline passed, on_timeout: continue";
    RECOVER = "acting", "tick" => "reconciling | acting | needs_attention": "process stopped mid-call: observe, re-issue if idempotent, else ask a person";
    RECONCILE_POLL = "reconciling", "tick" => "reconciling + observe": "observe the target state";
    RECONCILE_DONE = "reconciling", "observed" => "next step": "target state already holds";
    RECONCILE_REISSUE = "reconciling", "observed" => "acting": "target not reached and the operation is idempotent";
    RECONCILE_ATTENTION = "reconciling", "observed" => "needs_attention": "target not reached and re-issuing could repeat a side effect";
    RECONCILE_RETRY = "reconciling", "observe_err" => "reconciling": "observation failed; try again later";
    CANCEL = "not terminal", "cancel" => "cancelled": "operator cancelled";
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
    /// The current instant.
    pub now: Timestamp,
}

/// Longest run of throttle responses before an attempt counts as failed.
const MAX_THROTTLES: u32 = 50;

struct Builder<'a> {
    ctx: Ctx<'a>,
    inst: Instance,
    events: Vec<Event>,
    effect: Option<Effect>,
    persist: Persist,
}

impl<'a> Builder<'a> {
    fn new(ctx: Ctx<'a>, inst: &Instance) -> Builder<'a> {
        Builder {
            ctx,
            inst: inst.clone(),
            events: Vec::new(),
            effect: None,
            persist: Persist::Nothing,
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
        self.inst.due = due;
        self.inst.updated_at = self.ctx.now;
        if self.persist == Persist::Nothing {
            self.persist = Persist::Lazy;
        }
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

    fn expr_ctx(&self, obs: Option<&Value>) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .inst
            .outputs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"output": v.output.clone(), "observed": v.observed.clone()}),
                )
            })
            .collect();
        json!({
            "inputs": Value::Object(self.inst.inputs.clone()),
            "steps": Value::Object(steps),
            "subject": self.inst.subject,
            "obs": obs.cloned().unwrap_or(Value::Null),
        })
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

    fn fail(&mut self, step: usize, error: String) {
        let id = self.step(step).id.clone();
        self.event(EventKind::Failed {
            step: id,
            error: error.clone(),
        });
        self.set(Status::Failed { step, error }, None);
    }

    fn attention(&mut self, step: usize, reason: String) {
        let id = self.step(step).id.clone();
        self.event(EventKind::NeedsAttention {
            step: id,
            reason: reason.clone(),
        });
        self.set(Status::NeedsAttention { step, reason }, None);
    }

    /// Enter step `idx`: skip while `when` is false, stop at an unapproved gate,
    /// else act (or wait). Past the last step the instance succeeds.
    fn enter(&mut self, mut idx: usize) {
        loop {
            if idx >= self.ctx.wf.steps.len() {
                self.event(EventKind::Succeeded);
                self.set(Status::Succeeded, None);
                return;
            }
            let step = self.step(idx);
            if let Some(cond) = &step.when {
                match cond.eval_bool(&self.expr_ctx(None)) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.event(EventKind::StepSkipped {
                            step: step.id.clone(),
                        });
                        idx += 1;
                        continue;
                    }
                    Err(e) => {
                        self.fail(idx, format!("condition `{}`: {e}", cond.source()));
                        return;
                    }
                }
            }
            if let Some(gate) = &step.gate {
                if !self.inst.approvals.contains(&step.id) {
                    if self.ctx.run_approvals.iter().any(|a| a == &step.id) {
                        self.inst.approvals.insert(step.id.clone());
                        self.event(EventKind::GateApproved {
                            step: step.id.clone(),
                            by: "run file".into(),
                        });
                    } else {
                        self.event(EventKind::GateBlocked {
                            step: step.id.clone(),
                            approval: gate.approval.clone(),
                        });
                        self.set(
                            Status::Running {
                                step: idx,
                                phase: Phase::Blocked {
                                    gate: gate.approval.clone(),
                                },
                            },
                            None,
                        );
                        return;
                    }
                }
            }
            self.begin_action(idx, 1, false);
            return;
        }
    }

    /// Record the intent and ask for the call; or go straight to the wait.
    fn begin_action(&mut self, idx: usize, attempt: u32, reissue: bool) {
        let step = self.step(idx);
        match &step.action {
            Some(spec) => match self.render(spec) {
                Ok(op) => {
                    let key = format!("{}/{}/{}/{attempt}", self.inst.run, self.inst.idx, step.id);
                    self.event(EventKind::ActionIntent {
                        step: step.id.clone(),
                        attempt,
                        key: key.clone(),
                        operation: serde_json::to_value(&op).unwrap_or(Value::Null),
                        reissue,
                    });
                    // Due now: if the process dies mid-call, restart finds it via the timer index.
                    self.set(
                        Status::Running {
                            step: idx,
                            phase: Phase::Acting {
                                attempt,
                                key,
                                throttled: 0,
                            },
                        },
                        Some(self.ctx.now),
                    );
                    self.inst.calls += 1;
                    self.effect = Some(Effect::Invoke(op));
                }
                Err(e) => self.fail(idx, e),
            },
            None => self.begin_wait(idx, false),
        }
    }

    fn begin_wait(&mut self, idx: usize, after_action: bool) {
        let step = self.step(idx);
        let Some(wait) = &step.wait else {
            self.enter(idx + 1);
            return;
        };
        let now = self.ctx.now;
        let deadline = now.plus(wait.timeout);
        // Right after a write the change cannot be visible yet: first poll after `initial`.
        let next_poll = if after_action {
            now.plus(wait.poll.initial)
        } else {
            now
        };
        self.event(EventKind::WaitStarted {
            step: step.id.clone(),
            deadline,
        });
        self.set(
            Status::Running {
                step: idx,
                phase: Phase::Waiting {
                    started: now,
                    deadline,
                    next_poll,
                    polls: 0,
                    last_error: None,
                },
            },
            Some(next_poll),
        );
    }

    fn poll_interval(step: &Step, polls: u32) -> Duration {
        let Some(wait) = &step.wait else {
            return Duration::from_secs(60);
        };
        let cap = wait.poll.max.min(wait.expected).max(wait.poll.initial);
        let grown =
            wait.poll.initial.as_secs_f64() * wait.poll.factor.max(1.0).powi(polls.min(64) as i32);
        Duration::from_secs_f64(grown.min(cap.as_secs_f64()))
    }

    fn backoff(&self, step: &Step, attempt: u32, err: &BackendError) -> Duration {
        let r = &step.retry;
        let exp = r.initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let base = Duration::from_secs_f64(exp.min(r.max.as_secs_f64()));
        // Spread retries of many instances (deterministic, ±10%).
        let spread = (self.inst.idx.wrapping_mul(2_654_435_761) % 200) as f64 / 1000.0 - 0.1;
        let jittered = Duration::from_secs_f64(base.as_secs_f64() * (1.0 + spread));
        err.retry_after().map_or(jittered, |ra| ra.max(jittered))
    }

    /// A poll outcome in `Waiting`: satisfied, keep polling, or time out.
    fn waited(&mut self, idx: usize, obs: Result<Value, BackendError>) -> &'static str {
        let step = self.step(idx);
        let Some(wait) = &step.wait else {
            self.enter(idx + 1);
            return WAIT_MET;
        };
        let Status::Running {
            phase:
                Phase::Waiting {
                    started,
                    deadline,
                    polls,
                    ..
                },
            ..
        } = self.inst.status.clone()
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
                self.inst
                    .outputs
                    .entry(step.id.clone())
                    .or_default()
                    .observed = Some(obs);
                match holds {
                    Ok(true) => {
                        self.event(EventKind::WaitSatisfied {
                            step: step.id.clone(),
                            polls,
                            waited_ms: now.since(started).as_millis() as u64,
                        });
                        self.enter(idx + 1);
                        return WAIT_MET;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.fail(idx, format!("condition `{}`: {e}", wait.until.source()));
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
        if now >= deadline {
            let waited = now.since(started);
            let last = self
                .inst
                .outputs
                .get(&step.id)
                .and_then(|d| d.observed.clone());
            let outcome = match wait.on_timeout {
                OnTimeout::Fail => "fail",
                OnTimeout::Continue => "continue",
            };
            self.event(EventKind::WaitTimedOut {
                step: step.id.clone(),
                polls,
                waited_ms: waited.as_millis() as u64,
                last_observed: last.clone(),
                outcome: outcome.into(),
            });
            return match wait.on_timeout {
                OnTimeout::Fail => {
                    let seen = last.map_or_else(|| "nothing".to_string(), |v| v.to_string());
                    let err =
                        last_error.map_or(String::new(), |e| format!("; last poll error: {e}"));
                    self.fail(
                        idx,
                        format!(
                            "timed out after {} waiting for `{}` ({polls} polls); last observed: {seen}{err}",
                            humantime::format_duration(Duration::from_secs(waited.as_secs())),
                            wait.until.source()
                        ),
                    );
                    WAIT_TIMEOUT_FAIL
                }
                OnTimeout::Continue => {
                    self.enter(idx + 1);
                    WAIT_TIMEOUT_CONTINUE
                }
            };
        }
        let mut next = now.plus(Self::poll_interval(step, polls));
        if let Some(ra) = throttle_wait {
            next = next.max(now.plus(ra));
        }
        // One last look exactly at the deadline.
        let next = next.min(deadline);
        self.set(
            Status::Running {
                step: idx,
                phase: Phase::Waiting {
                    started,
                    deadline,
                    next_poll: next,
                    polls,
                    last_error,
                },
            },
            Some(next),
        );
        WAIT_AGAIN
    }
}

/// Apply `input` to `inst` at `ctx.now`.
pub fn transition(ctx: Ctx<'_>, inst: &Instance, input: Input) -> Transition {
    let mut b = Builder::new(ctx, inst);
    let rule = apply(&mut b, input);
    b.finish(rule)
}

fn apply(b: &mut Builder<'_>, input: Input) -> &'static str {
    let now = b.ctx.now;
    if b.inst.status.is_terminal() {
        return TERMINAL;
    }
    if let Input::Cancel { reason } = input {
        b.event(EventKind::Cancelled { reason });
        b.set(Status::Cancelled, None);
        return CANCEL;
    }
    if let Input::Approve { step, by } = &input {
        return approve(b, step.as_deref(), by);
    }
    match (b.inst.status.clone(), input) {
        (Status::Pending, Input::Tick) => {
            b.event(EventKind::Started);
            b.enter(0);
            START
        }
        (Status::Running { step, phase }, input) => running(b, step, phase, input, now),
        _ => UNEXPECTED,
    }
}

fn approve(b: &mut Builder<'_>, which: Option<&str>, by: &str) -> &'static str {
    let blocked_at = match &b.inst.status {
        Status::Running {
            step,
            phase: Phase::Blocked { .. },
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
            b.set(
                Status::Running {
                    step: idx,
                    phase: Phase::Ready,
                },
                Some(b.ctx.now),
            );
            return GATE_OPEN;
        }
    }
    match which {
        Some(id)
            if b.ctx
                .wf
                .steps
                .iter()
                .any(|s| s.id == id && s.gate.is_some()) =>
        {
            if b.inst.approvals.insert(id.to_string()) {
                b.event(EventKind::GateApproved {
                    step: id.to_string(),
                    by: by.to_string(),
                });
            }
            PRE_APPROVE
        }
        _ => UNEXPECTED,
    }
}

fn running(
    b: &mut Builder<'_>,
    idx: usize,
    phase: Phase,
    input: Input,
    now: Timestamp,
) -> &'static str {
    if idx >= b.ctx.wf.steps.len() {
        // The pinned workflow never changes, so this means a damaged snapshot.
        b.event(EventKind::Failed {
            step: format!("#{idx}"),
            error: "snapshot points past the last step".into(),
        });
        b.set(
            Status::Failed {
                step: idx,
                error: "snapshot points past the last step".into(),
            },
            None,
        );
        return SPEC_ERROR;
    }
    let step = b.step(idx);
    match (phase, input) {
        (Phase::Ready, Input::Tick) => {
            b.enter(idx);
            ENTER
        }
        (Phase::Blocked { .. }, Input::Tick) => {
            if b.ctx.run_approvals.iter().any(|a| a == &step.id) {
                b.inst.approvals.insert(step.id.clone());
                b.event(EventKind::GateApproved {
                    step: step.id.clone(),
                    by: "run file".into(),
                });
                b.begin_action(idx, 1, false);
                GATE_OPEN
            } else {
                GATE_WAIT
            }
        }
        (Phase::Acting { attempt, .. }, Input::ActionOk(output)) => {
            b.event(EventKind::ActionSucceeded {
                step: step.id.clone(),
                attempt,
            });
            b.inst.outputs.entry(step.id.clone()).or_default().output = Some(output);
            b.begin_wait(idx, true);
            ACT_OK
        }
        (
            Phase::Acting {
                attempt, throttled, ..
            },
            Input::ActionErr(err),
        ) => {
            if err.kind == ErrorKind::Throttled
                && step.retry.on.contains(&ErrorKind::Throttled)
                && throttled < MAX_THROTTLES
            {
                // Throttling is the service pacing us, not a failed attempt: wait
                // in place (no event) unless it goes on for too long.
                let throttled = throttled + 1;
                let until = now.plus(b.backoff(step, throttled, &err));
                b.set(
                    Status::Running {
                        step: idx,
                        phase: Phase::Backoff {
                            attempt,
                            until,
                            throttled,
                        },
                    },
                    Some(until),
                );
                return ACT_THROTTLED;
            }
            action_error(b, idx, attempt, err, now)
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
            match step.wait.as_ref().map(|w| b.render(&w.observe)) {
                Some(Ok(op)) => {
                    b.effect = Some(Effect::Observe(op));
                    POLL
                }
                Some(Err(e)) => {
                    b.fail(idx, e);
                    SPEC_ERROR
                }
                None => {
                    b.enter(idx + 1);
                    WAIT_MET
                }
            }
        }
        (Phase::Waiting { .. }, Input::Observed(obs)) => b.waited(idx, Ok(obs)),
        (Phase::Waiting { .. }, Input::ObserveErr(e)) => b.waited(idx, Err(e)),
        (Phase::Acting { attempt, key, .. }, Input::Tick) => {
            // Only a restart delivers a tick to an acting instance: the call may or
            // may not have reached the tenant.
            let info = step.action.as_ref().map(|a| a.op.info());
            b.event(EventKind::Reconciling {
                step: step.id.clone(),
                attempt,
            });
            if step.wait.is_some() {
                b.set(
                    Status::Running {
                        step: idx,
                        phase: Phase::Reconciling { attempt, key },
                    },
                    Some(now),
                );
                reconcile_observe(b, idx);
                RECOVER
            } else if info.is_some_and(|i| i.idempotent) {
                b.begin_action(idx, attempt, true);
                RECOVER
            } else {
                let name = info.map_or("action", |i| i.name);
                b.attention(idx, in_doubt(name));
                RECOVER
            }
        }
        (Phase::Reconciling { .. }, Input::Tick) => {
            reconcile_observe(b, idx);
            RECONCILE_POLL
        }
        (Phase::Reconciling { attempt, .. }, Input::Observed(obs)) => {
            let Some(wait) = &step.wait else {
                return UNEXPECTED;
            };
            let holds = wait.until.eval_bool(&b.expr_ctx(Some(&obs)));
            b.inst.calls += 1;
            b.inst.outputs.entry(step.id.clone()).or_default().observed = Some(obs);
            match holds {
                Ok(true) => {
                    b.event(EventKind::Reconciled {
                        step: step.id.clone(),
                        outcome: format!("`{}` already holds; not re-issued", wait.until.source()),
                    });
                    b.event(EventKind::WaitSatisfied {
                        step: step.id.clone(),
                        polls: 1,
                        waited_ms: 0,
                    });
                    b.enter(idx + 1);
                    RECONCILE_DONE
                }
                Ok(false) => {
                    let info = step.action.as_ref().map(|a| a.op.info());
                    if info.is_none_or(|i| i.idempotent) {
                        b.begin_action(idx, attempt, true);
                        RECONCILE_REISSUE
                    } else {
                        let name = info.map_or("action", |i| i.name);
                        b.attention(idx, in_doubt(name));
                        RECONCILE_ATTENTION
                    }
                }
                Err(e) => {
                    b.fail(idx, format!("condition `{}`: {e}", wait.until.source()));
                    SPEC_ERROR
                }
            }
        }
        (Phase::Reconciling { attempt, key }, Input::ObserveErr(e)) => {
            b.inst.calls += 1;
            let wait = e.retry_after().unwrap_or(Duration::from_secs(30));
            b.set(
                Status::Running {
                    step: idx,
                    phase: Phase::Reconciling { attempt, key },
                },
                Some(now.plus(wait)),
            );
            RECONCILE_RETRY
        }
        (Phase::Backoff { .. } | Phase::Blocked { .. } | Phase::Ready, _) => UNEXPECTED,
        _ => UNEXPECTED,
    }
}

fn in_doubt(op: &str) -> String {
    format!(
        "the process stopped while `{op}` was in flight; it may or may not have taken effect and \
         re-issuing it could repeat a side effect. Check the tenant, then `portflow retry` \
         (to issue it again) or skip the step"
    )
}

fn reconcile_observe(b: &mut Builder<'_>, idx: usize) {
    let step = b.step(idx);
    if let Some(wait) = &step.wait {
        match b.render(&wait.observe) {
            Ok(op) => b.effect = Some(Effect::Observe(op)),
            Err(e) => b.fail(idx, e),
        }
    }
}

fn action_error(
    b: &mut Builder<'_>,
    idx: usize,
    attempt: u32,
    err: BackendError,
    now: Timestamp,
) -> &'static str {
    let step = b.step(idx);
    let retryable = step.retry.on.contains(&err.kind);
    if retryable && attempt < step.retry.attempts {
        let until = now.plus(b.backoff(step, attempt, &err));
        b.event(EventKind::ActionFailed {
            step: step.id.clone(),
            attempt,
            error: err,
            retry_at: Some(until),
        });
        b.set(
            Status::Running {
                step: idx,
                phase: Phase::Backoff {
                    attempt: attempt + 1,
                    until,
                    throttled: 0,
                },
            },
            Some(until),
        );
        ACT_RETRY
    } else {
        let msg = if retryable {
            format!("{} failed after {attempt} attempts: {err}", step_op(step))
        } else {
            format!("{} failed: {err}", step_op(step))
        };
        b.event(EventKind::ActionFailed {
            step: step.id.clone(),
            attempt,
            error: err,
            retry_at: None,
        });
        b.fail(idx, msg);
        ACT_FAIL
    }
}

fn step_op(step: &Step) -> &'static str {
    step.action.as_ref().map_or("action", |a| a.op.info().name)
}
