//! What is stored per instance (the snapshot) and per transition (the event).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::BackendError;
use crate::clock::Timestamp;
use crate::store::keys::InstanceKey;

/// Snapshot of one subject's state machine. Derived from its events and stored
/// beside them; poll ticks update it in place without adding events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Run id.
    pub run: String,
    /// Subject index in the run.
    pub idx: u32,
    /// Subject (value of the workflow's subject input).
    pub subject: String,
    /// Inputs as JSON (absent optional inputs are `null`).
    pub inputs: serde_json::Map<String, Value>,
    /// Where the state machine is.
    pub status: Status,
    /// Per step id: what its action returned and what its wait last observed.
    #[serde(default)]
    pub outputs: BTreeMap<String, StepData>,
    /// Gate steps approved for this instance.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub approvals: BTreeSet<String>,
    /// Next event sequence number (= number of events so far).
    pub seq: u32,
    /// When the timer fires next (indexed in the `timers` key space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    /// Backend calls made for this instance (actions and polls).
    #[serde(default)]
    pub calls: u32,
    /// Last change.
    pub updated_at: Timestamp,
    /// The subject's number is out of service now: since when, and which
    /// step's action took it down (cleared once service is verified back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<OpenOutage>,
    /// Outages that ended, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<OutageSpan>,
}

/// An outage in progress: the subject's number went out of service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenOutage {
    /// When the outage-causing action succeeded.
    pub since: Timestamp,
    /// The step whose action took the number out of service.
    pub step: String,
}

/// An outage that ended: service was verified back (or restored by a rollback).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageSpan {
    /// When the number went out of service.
    pub start: Timestamp,
    /// When service was verified back.
    pub end: Timestamp,
    /// The step whose action took it down.
    pub step: String,
    /// The step whose verification (or undo) brought it back.
    pub restored_by: String,
}

impl Instance {
    /// A new instance, pending and due at `now`.
    pub fn new(
        run: &str,
        idx: u32,
        subject: String,
        inputs: serde_json::Map<String, Value>,
        now: Timestamp,
    ) -> Instance {
        Instance {
            run: run.to_string(),
            idx,
            subject,
            inputs,
            status: Status::Pending,
            outputs: BTreeMap::new(),
            approvals: BTreeSet::new(),
            seq: 0,
            due: Some(now),
            calls: 0,
            updated_at: now,
            down: None,
            outages: Vec::new(),
        }
    }

    /// Store key of this instance.
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            run: self.run.clone(),
            idx: self.idx,
        }
    }

    /// True when nothing more will happen.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// Outputs recorded for one step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepData {
    /// The action's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The wait's last observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Value>,
}

/// Instance status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Created, not started.
    Pending,
    /// Working on a step.
    Running {
        /// Step index.
        step: usize,
        /// What it is doing there.
        phase: Phase,
    },
    /// Every step done.
    Succeeded,
    /// Stopped on an error.
    Failed {
        /// Step index.
        step: usize,
        /// Why.
        error: String,
    },
    /// Undoing the steps done, newest first, after a failure (or a cancel with rollback).
    Compensating {
        /// Step whose compensation runs now.
        step: usize,
        /// What it is doing there.
        phase: Phase,
        /// The step that failed.
        failed_step: usize,
        /// Why the instance is rolling back.
        error: String,
        /// Steps still to undo after this one, in order.
        remaining: Vec<usize>,
    },
    /// Failed, then every compensation succeeded: the tenant is as before.
    RolledBack {
        /// The step that failed.
        step: usize,
        /// Why.
        error: String,
    },
    /// Stopped because a person must look (e.g. a non-idempotent action in doubt).
    NeedsAttention {
        /// Step index.
        step: usize,
        /// Why.
        reason: String,
        /// Set when a rollback stopped here: `retry` goes on undoing instead of
        /// migrating again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback: Option<PendingRollback>,
    },
    /// Cancelled by the operator.
    Cancelled,
}

impl Status {
    /// Terminal states.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Succeeded
                | Status::Failed { .. }
                | Status::RolledBack { .. }
                | Status::NeedsAttention { .. }
                | Status::Cancelled
        )
    }

    /// Short name for tables and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running { phase, .. } => phase.name(),
            Status::Compensating { .. } => "rolling_back",
            Status::RolledBack { .. } => "rolled_back",
            Status::Succeeded => "succeeded",
            Status::Failed { .. } => "failed",
            Status::NeedsAttention { .. } => "needs_attention",
            Status::Cancelled => "cancelled",
        }
    }

    /// Current step index, if any.
    pub fn step(&self) -> Option<usize> {
        match self {
            Status::Running { step, .. }
            | Status::Compensating { step, .. }
            | Status::Failed { step, .. }
            | Status::RolledBack { step, .. }
            | Status::NeedsAttention { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// A rollback interrupted by a failed compensation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRollback {
    /// The step that originally failed.
    pub failed_step: usize,
    /// Why the instance was rolling back.
    pub error: String,
    /// Steps still to undo after the one that failed, in order.
    pub remaining: Vec<usize>,
}

/// What a running instance is doing within its step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// About to evaluate the step.
    Ready,
    /// Waiting for a person: an approval (`signal` is `None`), a named signal,
    /// or a manual task (signal `done`).
    Blocked {
        /// What the person confirms or does.
        gate: String,
        /// The signal that unblocks it; `None` for an approval.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    /// Intent recorded; the backend call is (or was, before a crash) in flight.
    Acting {
        /// Attempt number (1-based).
        attempt: u32,
        /// Idempotency key of this attempt.
        key: String,
        /// Throttle responses in a row for this attempt.
        #[serde(default)]
        throttled: u32,
    },
    /// A crash, or a call past its deadline, interrupted `Acting`: observing
    /// before deciding to re-issue.
    Reconciling {
        /// The interrupted attempt.
        attempt: u32,
        /// Its key.
        key: String,
        /// Set when the call passed its deadline (rather than the process
        /// stopping): if the target is not reached, the attempt counts as this
        /// transient failure instead of being re-issued as the same attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timed_out: Option<BackendError>,
    },
    /// Waiting to retry the action.
    Backoff {
        /// The attempt that will run next.
        attempt: u32,
        /// When.
        until: Timestamp,
        /// Throttle responses in a row (not counted as attempts).
        #[serde(default)]
        throttled: u32,
    },
    /// Held before an outage-causing step: the run's out-of-service budget is
    /// full, or its circuit breaker paused new outages. Woken by the executor.
    Held {
        /// Why, for people.
        reason: String,
    },
    /// Waiting for the porting window to open before starting the step.
    Window {
        /// When the window opens.
        opens: Timestamp,
    },
    /// Polling until the wait condition holds.
    Waiting {
        /// When the wait began.
        started: Timestamp,
        /// When it times out.
        deadline: Timestamp,
        /// Next poll.
        next_poll: Timestamp,
        /// Polls so far.
        polls: u32,
        /// Last error from a poll, if the last poll failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
        /// First failed poll after the deadline: the wait keeps trying for a
        /// fresh observation from then on, for a bounded time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overdue_since: Option<Timestamp>,
    },
}

/// Names of the phases of a running instance, plus `rolling_back`, in the
/// order tables show them.
pub const PHASE_NAMES: &[&str] = &[
    "ready",
    "blocked",
    "acting",
    "reconciling",
    "backoff",
    "held",
    "window",
    "waiting",
    "rolling_back",
];

/// Terminal state names, in the order tables show them.
pub const TERMINAL_NAMES: &[&str] = &[
    "succeeded",
    "failed",
    "rolled_back",
    "needs_attention",
    "cancelled",
];

impl Phase {
    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Ready => "ready",
            Phase::Blocked { .. } => "blocked",
            Phase::Acting { .. } => "acting",
            Phase::Reconciling { .. } => "reconciling",
            Phase::Backoff { .. } => "backoff",
            Phase::Held { .. } => "held",
            Phase::Window { .. } => "window",
            Phase::Waiting { .. } => "waiting",
        }
    }
}

/// One history record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number within the instance (gap-free from 0).
    pub seq: u32,
    /// When (engine clock).
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The instance began.
    Started,
    /// A step's `when` was false, or a non-idempotent step already done is not repeated.
    StepSkipped {
        /// Step id.
        step: String,
        /// Why, when not because of `when`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A gate, signal or manual task is waiting for a person.
    GateBlocked {
        /// Step id.
        step: String,
        /// What to approve or do.
        approval: String,
        /// The signal awaited (`None` for an approval).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    /// A signal arrived.
    SignalReceived {
        /// Step id.
        step: String,
        /// Signal name.
        name: String,
        /// Who sent it.
        by: String,
        /// Data sent with it.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
    },
    /// The instance failed and is undoing the steps done.
    RollbackStarted {
        /// The step that failed.
        step: String,
        /// Why.
        error: String,
        /// Steps to undo, in order.
        undo: Vec<String>,
        /// Who cancelled, when a cancel started it (absent in older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// One step's compensation is done.
    Compensated {
        /// Step id.
        step: String,
    },
    /// Every compensation is done.
    RolledBack,
    /// An operator gave an input a new value (before a retry); the pinned
    /// workflow stays the same.
    InputAmended {
        /// The input.
        input: String,
        /// Its value before (`null`: none).
        old: Value,
        /// Its value now (`null`: none).
        new: Value,
        /// Who.
        by: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator restarted a stopped instance.
    Retried {
        /// Step it continues from.
        from_step: String,
        /// Who.
        by: String,
    },
    /// A gate was approved.
    GateApproved {
        /// Step id.
        step: String,
        /// Who or what approved (`run file`, a user name).
        by: String,
    },
    /// About to call the backend (recorded before the call).
    ActionIntent {
        /// Step id.
        step: String,
        /// Attempt.
        attempt: u32,
        /// Idempotency key.
        key: String,
        /// The operation with its rendered arguments.
        operation: Value,
        /// True when re-issued after a crash.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reissue: bool,
    },
    /// The backend call succeeded.
    ActionSucceeded {
        /// Step id.
        step: String,
        /// Attempt.
        attempt: u32,
        /// What the call returned, when the snapshot keeps only the fields later
        /// steps read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    /// The backend call failed.
    ActionFailed {
        /// Step id.
        step: String,
        /// Attempt.
        attempt: u32,
        /// The error.
        error: BackendError,
        /// When it will be retried, if it will.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<Timestamp>,
    },
    /// After a restart, or a call past its deadline, an action in flight is
    /// being reconciled.
    Reconciling {
        /// Step id.
        step: String,
        /// Attempt in doubt.
        attempt: u32,
        /// Why it is in doubt when not a restart (`no answer within 2m`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
    /// Reconciliation found the target state already holds.
    Reconciled {
        /// Step id.
        step: String,
        /// What was found.
        outcome: String,
    },
    /// Polling began.
    WaitStarted {
        /// Step id.
        step: String,
        /// Timeout instant.
        deadline: Timestamp,
    },
    /// The wait condition holds.
    WaitSatisfied {
        /// Step id.
        step: String,
        /// Polls it took.
        polls: u32,
        /// Milliseconds waited.
        waited_ms: u64,
        /// What the wait saw, when no later step reads it (it is then kept here
        /// rather than in the snapshot, which every later poll rewrites).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed: Option<Value>,
    },
    /// The wait timed out.
    WaitTimedOut {
        /// Step id.
        step: String,
        /// Polls made.
        polls: u32,
        /// Milliseconds waited.
        waited_ms: u64,
        /// Last observation.
        last_observed: Option<Value>,
        /// `fail` or `continue`.
        outcome: String,
    },
    /// The subject's number went out of service (an outage-causing action succeeded).
    ServiceDown {
        /// Step id.
        step: String,
    },
    /// Service was verified back (the restoring step's wait, or a rollback's undo).
    ServiceRestored {
        /// The step that verified or restored it.
        step: String,
        /// How long the number was out of service, in milliseconds.
        down_ms: u64,
    },
    /// Held before an outage-causing step (budget full or breaker open).
    Held {
        /// Step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// All steps done.
    Succeeded,
    /// The instance failed.
    Failed {
        /// Step id.
        step: String,
        /// Why.
        error: String,
    },
    /// The instance needs a person.
    NeedsAttention {
        /// Step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// Cancelled.
    Cancelled {
        /// Why.
        reason: String,
        /// Who (absent in records older than `cancel --by`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}
