//! Unit tests of the pure state machine, with a fixed clock value per step.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::instance::{EventKind, Instance, Phase, Status};
use super::machine::{self, Ctx, Effect, Input, Persist, Transition, RULES};
use crate::backend::{BackendError, Call, ErrorKind, Operation};
use crate::clock::Timestamp;
use crate::spec::model::Workflow;

static FIRED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

const WF: &str = r#"
name: test-flow
version: 1
subject: user
inputs:
  user: {type: upn}
  number: {type: e164}
steps:
  - id: approve-first
    gate: {approval: "go ahead"}
  - id: inspect
    action: {op: get_user, args: {user: "${inputs.user}"}}
  - id: onprem-only
    when: "steps.inspect.output.on_prem_line_uri != null"
    action: {op: clear_onprem_line_uri, args: {user: "${inputs.user}"}}
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    retry: {attempts: 3, initial: 30s, max: 5m}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: "obs.line_uri == null"
      expected: 10m
      timeout: 24h
      poll: {initial: 20s, max: 5m, factor: 2}
  - id: upload
    wait:
      observe: {op: get_number, args: {number: "${inputs.number}"}}
      until: "obs.number_type == 'OperatorConnect'"
      timeout: 2h
      on_timeout: continue
"#;

fn wf() -> Workflow {
    match serde_yaml::from_str(WF) {
        Ok(w) => w,
        Err(e) => panic!("test workflow does not parse: {e}"),
    }
}

fn inst(now: Timestamp) -> Instance {
    let mut inputs = serde_json::Map::new();
    inputs.insert("user".into(), json!("a@contoso.com"));
    inputs.insert("number".into(), json!("+14250000001"));
    Instance::new("r", 0, "a@contoso.com".into(), inputs, now)
}

struct Sim {
    wf: Workflow,
    approvals: Vec<String>,
    on_failure: Option<crate::spec::model::OnFailure>,
    manual_ops: Vec<crate::backend::OperationKind>,
    window: Option<Nightly>,
    outages: Option<std::sync::Arc<super::budget::OutageBudget>>,
    now: Timestamp,
    inst: Instance,
    events: Vec<super::instance::Event>,
}

impl Sim {
    fn new(approvals: &[&str]) -> Sim {
        let now = Timestamp(1_800_000_000_000);
        Sim {
            wf: wf(),
            approvals: approvals.iter().map(|s| s.to_string()).collect(),
            on_failure: None,
            manual_ops: Vec::new(),
            window: None,
            outages: None,
            now,
            inst: inst(now),
            events: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) -> Transition {
        let ctx = Ctx {
            wf: &self.wf,
            run_approvals: &self.approvals,
            on_failure: self.on_failure,
            manual_ops: &self.manual_ops,
            window: self
                .window
                .as_ref()
                .map(|w| w as &dyn machine::WindowCalendar),
            outages: self
                .outages
                .as_deref()
                .map(|b| b as &dyn machine::OutageGate),
            now: self.now,
        };
        let t = machine::transition(ctx, &self.inst, input);
        FIRED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.rule);
        assert_eq!(
            t.next.seq,
            self.inst.seq + t.events.len() as u32,
            "seq advances by the events"
        );
        self.events.extend(t.events.clone());
        self.inst = t.next.clone();
        t
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
    }

    fn phase(&self) -> (usize, &'static str) {
        match &self.inst.status {
            Status::Running { step, phase } => (*step, phase.name()),
            s => (usize::MAX, s.name()),
        }
    }
}

fn user(line: Option<&str>, onprem: Option<&str>) -> Value {
    json!({"id": "id-1", "line_uri": line, "on_prem_line_uri": onprem})
}

fn err(kind: ErrorKind) -> BackendError {
    BackendError::new(kind, "boom")
}

#[test]
fn happy_path_skips_when_false_waits_and_succeeds() {
    let mut s = Sim::new(&["approve-first"]);
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::START);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::GetUser { .. },
            ..
        }))
    ));
    assert_eq!(
        t.persist,
        Persist::Durable,
        "intent is durable before the call"
    );
    s.feed(Input::ActionOk(user(Some("+14250000001"), None)));
    // on-prem step skipped; remove_number intent recorded.
    assert_eq!(s.phase(), (3, "acting"));
    assert!(s
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::StepSkipped { step, .. } if step == "onprem-only")));
    s.feed(Input::ActionOk(json!({})));
    assert_eq!(s.phase(), (3, "waiting"));
    assert_eq!(
        s.inst.due,
        Some(s.now.plus(Duration::from_secs(20))),
        "first poll after `initial`"
    );
    // Early tick: nothing.
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::EARLY);
    assert!(t.effect.is_none());
    s.advance(Duration::from_secs(20));
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::POLL);
    assert_eq!(t.persist, Persist::Nothing, "a poll tick writes nothing");
    let t = s.feed(Input::Observed(user(Some("+14250000001"), None)));
    assert_eq!(t.rule, machine::WAIT_AGAIN);
    assert_eq!(t.persist, Persist::Lazy);
    assert!(t.events.is_empty(), "polls do not grow history");
    s.advance(Duration::from_secs(40));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(user(None, None)));
    assert_eq!(t.rule, machine::WAIT_MET);
    // Wait-only step polls immediately.
    assert_eq!(s.phase(), (4, "waiting"));
    assert_eq!(s.inst.due, Some(s.now));
    s.feed(Input::Tick);
    s.feed(Input::Observed(json!({"number_type": "OperatorConnect"})));
    assert_eq!(s.inst.status, Status::Succeeded);
    let seqs: Vec<u32> = s.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..s.events.len() as u32).collect::<Vec<_>>(),
        "gap-free history"
    );
    assert_eq!(s.inst.calls, 5, "2 actions + 3 polls");
}

#[test]
fn poll_intervals_grow_to_the_cap_and_history_stays_bounded() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    s.feed(Input::ActionOk(json!({})));
    let before = s.events.len();
    let mut gaps = Vec::new();
    for _ in 0..300 {
        let due = s.inst.due.unwrap_or(s.now);
        gaps.push(due.since(s.now).as_secs());
        s.now = due;
        s.feed(Input::Tick);
        s.feed(Input::Observed(user(Some("+1"), None)));
        if s.inst.is_terminal() {
            break;
        }
    }
    assert_eq!(&gaps[..6], &[20, 40, 80, 160, 300, 300]);
    // 24 h at ≤ 5 min per poll: ~290 polls, and only the timeout added events.
    assert!(matches!(s.inst.status, Status::Failed { .. }));
    assert_eq!(s.events.len(), before + 2, "WaitTimedOut + Failed only");
    let Status::Failed { error, .. } = &s.inst.status else {
        return;
    };
    assert!(error.contains("timed out after 1day"), "{error}");
    assert!(error.contains("obs.line_uri == null"), "{error}");
}

#[test]
fn retries_transient_errors_then_fails_with_the_attempt_count() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    let t = s.feed(Input::ActionErr(err(ErrorKind::Transient)));
    assert_eq!(t.rule, machine::ACT_RETRY);
    let Status::Running {
        phase: Phase::Backoff { attempt, until, .. },
        ..
    } = s.inst.status.clone()
    else {
        panic!("expected backoff, got {:?}", s.inst.status)
    };
    assert_eq!(attempt, 2);
    let wait = until.since(s.now).as_secs();
    assert!((27..=33).contains(&wait), "30 s ± 10 %: {wait}");
    s.now = until;
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::BACKOFF_DONE);
    assert!(matches!(t.effect, Some(Effect::Invoke(_))));
    s.feed(Input::ActionErr(err(ErrorKind::Transient)));
    s.now = s.inst.due.unwrap_or(s.now);
    s.feed(Input::Tick);
    let t = s.feed(Input::ActionErr(err(ErrorKind::Transient)));
    assert_eq!(t.rule, machine::ACT_FAIL);
    let Status::Failed { error, .. } = &s.inst.status else {
        panic!()
    };
    assert!(error.contains("after 3 attempts"), "{error}");
}

#[test]
fn conflicts_fail_at_once_and_throttling_does_not_use_attempts() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    for _ in 0..10 {
        let t = s.feed(Input::ActionErr(
            err(ErrorKind::Throttled).with_retry_after(Duration::from_secs(120)),
        ));
        assert_eq!(t.rule, machine::ACT_THROTTLED);
        assert!(
            s.inst
                .due
                .is_some_and(|d| d.since(s.now) >= Duration::from_secs(120)),
            "Retry-After honoured"
        );
        s.now = s.inst.due.unwrap_or(s.now);
        s.feed(Input::Tick);
    }
    assert_eq!(s.phase(), (3, "acting"));
    let t = s.feed(Input::ActionErr(err(ErrorKind::Conflict)));
    assert_eq!(t.rule, machine::ACT_FAIL);
}

#[test]
fn refused_credentials_wait_in_place_recorded_then_fail() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    for _ in 0..24 {
        let t = s.feed(Input::ActionErr(err(ErrorKind::Auth)));
        assert_eq!(t.rule, machine::ACT_REFUSED_AUTH);
        assert!(
            s.inst
                .due
                .is_some_and(|d| d.since(s.now) >= Duration::from_secs(300)),
            "waits for a person to fix the app"
        );
        s.now = s.inst.due.unwrap_or(s.now);
        s.feed(Input::Tick);
        assert_eq!(s.phase(), (3, "acting"), "the same attempt again");
    }
    let t = s.feed(Input::ActionErr(err(ErrorKind::Auth)));
    assert_eq!(t.rule, machine::ACT_FAIL);
}

#[test]
fn gate_blocks_until_approved_then_acts() {
    let mut s = Sim::new(&[]);
    s.feed(Input::Tick);
    assert_eq!(s.phase(), (0, "blocked"));
    assert_eq!(s.inst.due, None, "a blocked instance has no timer");
    assert_eq!(s.feed(Input::Tick).rule, machine::GATE_WAIT);
    let t = s.feed(Input::Approve {
        step: Some("approve-first".into()),
        by: "ops".into(),
    });
    assert_eq!(t.rule, machine::GATE_OPEN);
    assert!(t.effect.is_none(), "approval alone issues no call");
    assert_eq!(s.inst.due, Some(s.now));
    let t = s.feed(Input::Tick);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::GetUser { .. },
            ..
        }))
    ));
    // Approving a gate already approved changes nothing.
    assert_eq!(
        s.feed(Input::Approve {
            step: Some("approve-first".into()),
            by: "ops".into()
        })
        .rule,
        machine::UNEXPECTED
    );
    // A gate approved before the instance reaches it is recorded once, then passed.
    let mut p = Sim::new(&["approve-first"]);
    let pre = || Input::Approve {
        step: Some("approve-first".into()),
        by: "ops".into(),
    };
    assert_eq!(p.feed(pre()).rule, machine::PRE_APPROVE);
    assert_eq!(p.feed(pre()).rule, machine::UNEXPECTED);
    let t = p.feed(Input::Tick);
    assert!(
        matches!(
            t.effect,
            Some(Effect::Invoke(Call {
                op: Operation::GetUser { .. },
                ..
            }))
        ),
        "the pre-approved gate does not block"
    );
    assert_eq!(
        s.feed(Input::Approve {
            step: Some("inspect".into()),
            by: "ops".into()
        })
        .rule,
        machine::UNEXPECTED
    );
}

#[test]
fn restart_mid_call_observes_before_reissuing() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    assert_eq!(s.phase(), (3, "acting"));
    // Process died here. On restart the timer (due now) delivers a tick.
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::RECOVER);
    assert!(matches!(
        t.effect,
        Some(Effect::Observe(Operation::GetUser { .. }))
    ));
    // Target state not reached: remove_number is idempotent, so re-issue.
    let t = s.feed(Input::Observed(user(Some("+1"), None)));
    assert_eq!(t.rule, machine::RECONCILE_REISSUE);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::RemoveNumber { .. },
            ..
        }))
    ));
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::ActionIntent { reissue: true, .. })));
    // Died again; this time the change had landed.
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(user(None, None)));
    assert_eq!(t.rule, machine::RECONCILE_DONE);
    assert_eq!(s.phase(), (4, "waiting"));
}

#[test]
fn restart_of_an_action_without_wait_reissues_idempotent_ops() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    assert_eq!(s.phase(), (1, "acting"));
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::RECOVER);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::GetUser { .. },
            ..
        }))
    ));
}

fn timeout() -> BackendError {
    BackendError::new(ErrorKind::Transient, "no answer within 2m; outcome unknown")
}

#[test]
fn a_call_past_its_deadline_is_reconciled_and_then_counts_as_an_attempt() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    assert_eq!(s.phase(), (3, "acting"));
    // remove_number waits: observe first, as after a crash.
    let t = s.feed(Input::ActionTimedOut(timeout()));
    assert_eq!(t.rule, machine::ACT_TIMEOUT);
    assert_eq!(s.phase(), (3, "reconciling"));
    assert!(matches!(
        t.effect,
        Some(Effect::Observe(Operation::GetUser { .. }))
    ));
    assert!(t.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Reconciling { cause: Some(c), .. } if c.contains("no answer")
    )));
    // Not reached: the attempt failed transiently; the next one is a new attempt.
    let t = s.feed(Input::Observed(user(Some("+1"), None)));
    assert_eq!(t.rule, machine::RECONCILE_TIMEOUT_RETRY);
    assert!(matches!(
        &s.inst.status,
        Status::Running {
            phase: Phase::Backoff { attempt: 2, .. },
            ..
        }
    ));
    s.now = s.inst.due.unwrap_or(s.now);
    let t = s.feed(Input::Tick);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call { attempt: 2, ref key, .. })) if key.as_deref() == Some("r/0/remove/2")
    ));
    // This time the change landed before the deadline passed.
    s.feed(Input::ActionTimedOut(timeout()));
    let t = s.feed(Input::Observed(user(None, None)));
    assert_eq!(t.rule, machine::RECONCILE_DONE);
    assert_eq!(s.phase(), (4, "waiting"));
}

#[test]
fn a_call_past_its_deadline_without_wait_retries_only_if_idempotent() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    assert_eq!(s.phase(), (1, "acting"));
    // get_user as an action is idempotent: an ordinary transient failure.
    let t = s.feed(Input::ActionTimedOut(timeout()));
    assert_eq!(t.rule, machine::ACT_TIMEOUT);
    assert_eq!(s.phase(), (1, "backoff"));
    s.wf = match serde_yaml::from_str(
        r#"
name: mail
version: 1
subject: user
inputs: {user: {type: upn}}
steps:
  - id: mail
    action: {op: send_conferencing_info, args: {user: "${inputs.user}"}}
"#,
    ) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    s.inst = inst(s.now);
    s.feed(Input::Tick);
    assert_eq!(s.phase(), (0, "acting"));
    let t = s.feed(Input::ActionTimedOut(timeout()));
    assert_eq!(t.rule, machine::ACT_TIMEOUT);
    assert!(t.effect.is_none(), "never re-sent: {:?}", t.effect);
    assert!(matches!(
        &s.inst.status,
        Status::NeedsAttention { reason, .. } if reason.contains("no answer")
    ));
}

#[test]
fn reconciliation_poll_errors_retry_later() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    s.feed(Input::Tick);
    let t = s.feed(Input::ObserveErr(err(ErrorKind::Transient)));
    assert_eq!(t.rule, machine::RECONCILE_RETRY);
    s.now = s.inst.due.unwrap_or(s.now);
    assert_eq!(s.feed(Input::Tick).rule, machine::RECONCILE_POLL);
}

#[test]
fn wait_timeout_can_continue() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(20));
    s.feed(Input::Tick);
    s.feed(Input::Observed(user(None, None)));
    assert_eq!(s.phase(), (4, "waiting"));
    s.advance(Duration::from_secs(3 * 3600));
    s.feed(Input::Tick);
    // A failed poll past the deadline decides nothing; a fresh observation does.
    let t = s.feed(Input::ObserveErr(err(ErrorKind::Transient)));
    assert_eq!(t.rule, machine::WAIT_AGAIN);
    s.advance(Duration::from_secs(30));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(json!({"number_type": "DirectRouting"})));
    assert_eq!(t.rule, machine::WAIT_TIMEOUT_CONTINUE);
    assert_eq!(s.inst.status, Status::Succeeded);
}

#[test]
fn cancel_and_terminal_states() {
    let mut s = Sim::new(&[]);
    s.feed(Input::Tick);
    assert_eq!(
        s.feed(Input::Cancel {
            reason: "wave postponed".into(),
            rollback: false,
            by: "ops-lead".into(),
        })
        .rule,
        machine::CANCEL
    );
    assert_eq!(s.inst.status, Status::Cancelled);
    assert_eq!(
        s.events.last().map(|e| e.kind.clone()),
        Some(EventKind::Cancelled {
            reason: "wave postponed".into(),
            by: Some("ops-lead".into()),
        })
    );
    assert_eq!(s.feed(Input::Tick).rule, machine::TERMINAL);
}

#[test]
fn cancel_events_stored_before_cancel_by_still_read() {
    let old = r#"{"seq": 3, "at": 1893456000000, "event": "cancelled", "reason": "cancelled by the operator"}"#;
    let e: super::instance::Event = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        e.kind,
        EventKind::Cancelled {
            reason: "cancelled by the operator".into(),
            by: None
        }
    );
    let old = r#"{"seq": 3, "at": 1893456000000, "event": "rollback_started", "step": "a", "error": "x", "undo": ["a"]}"#;
    let e: super::instance::Event = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(e.kind, EventKind::RollbackStarted { by: None, .. }),
        "{e:?}"
    );
}

#[test]
fn bad_runtime_values_fail_the_instance_with_the_expression() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    // `when` compares an object with null: fine. A non-boolean until is an error:
    if let Some(w) = s.wf.steps[3].wait.as_mut() {
        w.until = crate::spec::expr::Expr::parse("obs.line_uri").unwrap_or_else(|e| panic!("{e}"));
    }
    s.feed(Input::ActionOk(user(Some("+1"), None)));
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(20));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(user(Some("+1"), None)));
    assert_eq!(t.rule, machine::SPEC_ERROR);
    let Status::Failed { error, .. } = &s.inst.status else {
        panic!()
    };
    assert!(error.contains("obs.line_uri"), "{error}");
}

const WF2: &str = r#"
name: undo-flow
version: 1
subject: user
on_failure: rollback
inputs:
  user: {type: upn}
  number: {type: e164}
steps:
  - id: must-be-synced
    check:
      require: "inputs.user != 'cloud@contoso.com'"
      message: "${inputs.user} was created in the cloud"
  - id: port-done
    gate: {signal: port-completed, description: "the operator completed the port"}
  - id: inspect
    action: {op: get_user, args: {user: "${inputs.user}"}}
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    compensate:
      op: assign_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
      wait:
        observe: {op: get_user, args: {user: "${inputs.user}"}}
        until: "obs.line_uri == inputs.number"
        timeout: 1h
  - id: policy
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}"}}
    compensate:
      op: grant_voice_routing_policy
      args: {user: "${inputs.user}", policy: "${steps.inspect.output.online_voice_routing_policy}"}
  - id: upload
    wait:
      observe: {op: get_number, args: {number: "${inputs.number}"}}
      until: "obs.number_type == 'OperatorConnect'"
      timeout: 14d
      signal: uploaded
  - id: confirm
    manual: {instructions: "Reset the conference ID of ${inputs.user} in the admin center"}
"#;

fn sim2(user: &str) -> Sim {
    let mut s = Sim::new(&[]);
    s.wf = match serde_yaml::from_str(WF2) {
        Ok(w) => w,
        Err(e) => panic!("WF2: {e}"),
    };
    s.on_failure = None;
    s.inst.inputs.insert("user".into(), json!(user));
    s.inst.subject = user.into();
    s
}

/// Runs WF2 up to the `upload` wait.
fn to_upload(s: &mut Sim) {
    s.feed(Input::Tick);
    s.feed(Input::Signal {
        name: "port-completed".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(json!({"id": "id-1", "line_uri": "+14250000001", "online_voice_routing_policy": "DR-Global-Route"})));
    s.feed(Input::ActionOk(json!({})));
    s.feed(Input::ActionOk(json!({})));
    assert_eq!(s.phase(), (5, "waiting"));
}

#[test]
fn a_false_check_refuses_the_subject_with_its_message() {
    let mut s = sim2("cloud@contoso.com");
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::REFUSED);
    let Status::Failed { error, .. } = &s.inst.status else {
        panic!("{:?}", s.inst.status)
    };
    assert_eq!(error, "refused: cloud@contoso.com was created in the cloud");
    // Retry after the directory is fixed: starts over at the check.
    let t = s.feed(Input::Retry {
        from_step: None,
        by: "eng".into(),
        amend: Vec::new(),
        reason: None,
    });
    assert_eq!(t.rule, machine::RETRY);
    assert_eq!(s.phase(), (0, "ready"));
}

#[test]
fn a_retry_amends_inputs_first_and_records_old_and_new() {
    let mut s = sim2("cloud@contoso.com");
    let amend = || vec![("number".to_string(), json!("+14250000099"))];
    s.feed(Input::Tick);
    let t = s.feed(Input::Retry {
        from_step: None,
        by: "eng".into(),
        amend: amend(),
        reason: Some("typo".into()),
    });
    assert_eq!(t.rule, machine::RETRY);
    assert_eq!(s.inst.inputs["number"], json!("+14250000099"));
    let kinds: Vec<&EventKind> = t.events.iter().map(|e| &e.kind).collect();
    assert!(
        matches!(kinds.as_slice(), [EventKind::InputAmended { input, old, new, by, reason }, EventKind::Retried { .. }]
            if input == "number" && old == &json!("+14250000001") && new == &json!("+14250000099")
                && by == "eng" && reason.as_deref() == Some("typo")),
        "{kinds:?}"
    );
    // Not stopped: the retry does not apply, and nothing is amended.
    let before = s.inst.clone();
    let t = s.feed(Input::Retry {
        from_step: None,
        by: "eng".into(),
        amend: vec![("number".to_string(), json!("+14250000042"))],
        reason: None,
    });
    assert_eq!(t.rule, machine::UNEXPECTED);
    assert_eq!(s.inst, before);
}

#[test]
fn signal_gates_open_only_on_their_signal() {
    let mut s = sim2("a@contoso.com");
    s.feed(Input::Tick);
    assert_eq!(s.phase(), (1, "blocked"));
    assert_eq!(
        s.feed(Input::Approve {
            step: None,
            by: "x".into()
        })
        .rule,
        machine::UNEXPECTED,
        "approval does not open a signal gate"
    );
    assert_eq!(
        s.feed(Input::Signal {
            name: "other".into(),
            data: Value::Null,
            by: "x".into()
        })
        .rule,
        machine::UNEXPECTED
    );
    let t = s.feed(Input::Signal {
        name: "port-completed".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    assert_eq!(t.rule, machine::SIGNAL_OPEN);
    assert_eq!(s.inst.due, Some(s.now));
    let t = s.feed(Input::Tick);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::GetUser { .. },
            ..
        }))
    ));
}

#[test]
fn a_signal_satisfies_a_wait_and_done_completes_a_manual_task() {
    let mut s = sim2("a@contoso.com");
    to_upload(&mut s);
    let t = s.feed(Input::Signal {
        name: "uploaded".into(),
        data: json!({"number_type": "OperatorConnect"}),
        by: "eng".into(),
    });
    assert_eq!(t.rule, machine::SIGNAL_WAIT_MET);
    assert_eq!(s.phase(), (6, "blocked"));
    let Status::Running {
        phase: Phase::Blocked { gate, signal },
        ..
    } = &s.inst.status
    else {
        panic!()
    };
    assert_eq!(
        gate,
        "Reset the conference ID of a@contoso.com in the admin center"
    );
    assert_eq!(signal.as_deref(), Some("done"));
    let t = s.feed(Input::Signal {
        name: "done".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    assert_eq!(t.rule, machine::SIGNAL_OPEN);
    assert_eq!(s.inst.status, Status::Succeeded);
}

#[test]
fn timeout_after_removal_rolls_back_newest_first_and_restores_the_number() {
    let mut s = sim2("a@contoso.com");
    to_upload(&mut s);
    s.advance(Duration::from_secs(14 * 86_400));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(Value::Null));
    assert_eq!(t.rule, machine::WAIT_TIMEOUT_FAIL);
    assert!(
        matches!(s.inst.status, Status::Compensating { step: 4, .. }),
        "{:?}",
        s.inst.status
    );
    // The policy comes back first, from what `inspect` saw.
    assert!(
        matches!(&t.effect, Some(Effect::Invoke(Call { op: Operation::GrantVoiceRoutingPolicy { policy: Some(p), .. }, .. })) if p == "DR-Global-Route"),
        "{:?}",
        t.effect
    );
    let t = s.feed(Input::ActionOk(json!({})));
    assert_eq!(t.rule, machine::ROLLBACK_NEXT);
    assert!(
        matches!(s.inst.status, Status::Compensating { step: 3, .. }),
        "{:?}",
        s.inst.status
    );
    assert!(matches!(
        &t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::AssignNumber {
                number_type: crate::backend::NumberType::DirectRouting,
                ..
            },
            ..
        }))
    ));
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(20));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(json!({"line_uri": "+14250000001"})));
    assert_eq!(t.rule, machine::ROLLED_BACK);
    let Status::RolledBack { step, error } = &s.inst.status else {
        panic!("{:?}", s.inst.status)
    };
    assert_eq!(*step, 5);
    assert!(error.contains("timed out after 14days"), "{error}");
    let kinds: Vec<String> = s
        .events
        .iter()
        .map(|e| {
            format!("{:?}", e.kind)
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        kinds.contains(&"RollbackStarted".to_string()) && kinds.contains(&"RolledBack".to_string()),
        "{kinds:?}"
    );
}

#[test]
fn rollback_next_and_failed_compensation_needs_attention() {
    let mut s = sim2("a@contoso.com");
    to_upload(&mut s);
    s.advance(Duration::from_secs(14 * 86_400));
    s.feed(Input::Tick);
    s.feed(Input::Observed(Value::Null));
    // Policy restored: the next undo starts (no wait on the policy compensation).
    s.feed(Input::ActionOk(json!({})));
    let t = s.feed(Input::ActionErr(BackendError::new(
        ErrorKind::Conflict,
        "has already been assigned to another user",
    )));
    assert_eq!(t.rule, machine::ROLLBACK_FAILED);
    let Status::NeedsAttention { reason, .. } = &s.inst.status else {
        panic!("{:?}", s.inst.status)
    };
    assert!(reason.contains("rollback stopped at remove"), "{reason}");
    assert!(reason.contains("already been assigned"), "{reason}");
    assert!(s
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Compensated { step } if step == "policy")));
}

#[test]
fn on_timeout_rollback_overrides_a_stop_policy_and_cancel_can_roll_back() {
    let mut s = sim2("a@contoso.com");
    s.on_failure = Some(crate::spec::model::OnFailure::Stop);
    if let Some(w) = s.wf.steps[5].wait.as_mut() {
        w.on_timeout = crate::spec::model::OnTimeout::Rollback;
    }
    to_upload(&mut s);
    s.advance(Duration::from_secs(14 * 86_400));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(Value::Null));
    assert_eq!(t.rule, machine::WAIT_TIMEOUT_ROLLBACK);

    // Cancel with rollback while the policy change is in doubt: both get undone.
    let mut s = sim2("b@contoso.com");
    s.feed(Input::Tick);
    s.feed(Input::Signal {
        name: "port-completed".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(json!({"id": "id-2"})));
    s.feed(Input::ActionOk(json!({})));
    assert_eq!(s.phase(), (4, "acting"));
    let t = s.feed(Input::Cancel {
        reason: "wave postponed".into(),
        rollback: true,
        by: "ops-lead".into(),
    });
    assert_eq!(t.rule, machine::CANCEL);
    assert!(
        t.events.iter().any(|e| matches!(&e.kind,
            EventKind::RollbackStarted { by: Some(b), .. } if b == "ops-lead")),
        "{:?}",
        t.events
    );
    let Status::Compensating {
        step, remaining, ..
    } = &s.inst.status
    else {
        panic!("{:?}", s.inst.status)
    };
    assert_eq!((*step, remaining.clone()), (4, vec![3]));
}

#[test]
fn a_chained_workflow_failing_never_rolls_back_the_one_before() {
    let mut s = sim2("a@contoso.com");
    let then: Workflow = match serde_yaml::from_str(
        r#"
name: after
version: 1
subject: user
inputs: {user: {type: upn}}
steps:
  - id: after-check
    check: {require: "false", message: "refused by the chained workflow"}
"#,
    ) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    s.wf = crate::spec::compose(&s.wf, &[then]);
    // Skip the manual task of WF2 so the chain is reached right after it.
    to_upload(&mut s);
    s.feed(Input::Signal {
        name: "uploaded".into(),
        data: json!({"number_type": "OperatorConnect"}),
        by: "eng".into(),
    });
    s.feed(Input::Signal {
        name: "done".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    let Status::Failed { error, .. } = &s.inst.status else {
        panic!("{:?}", s.inst.status)
    };
    assert_eq!(error, "refused: refused by the chained workflow");
    assert!(
        !s.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RollbackStarted { .. })),
        "main workflow not undone"
    );
}

/// Runs last by name order within this module is not guaranteed, so it
/// drives its own scenarios and then reports the whole table's coverage.
#[test]
fn transition_table_coverage() {
    happy_path_skips_when_false_waits_and_succeeds();
    poll_intervals_grow_to_the_cap_and_history_stays_bounded();
    retries_transient_errors_then_fails_with_the_attempt_count();
    conflicts_fail_at_once_and_throttling_does_not_use_attempts();
    gate_blocks_until_approved_then_acts();
    restart_mid_call_observes_before_reissuing();
    restart_of_an_action_without_wait_reissues_idempotent_ops();
    a_call_past_its_deadline_is_reconciled_and_then_counts_as_an_attempt();
    a_call_past_its_deadline_without_wait_retries_only_if_idempotent();
    reconciliation_poll_errors_retry_later();
    wait_timeout_can_continue();
    cancel_and_terminal_states();
    bad_runtime_values_fail_the_instance_with_the_expression();
    a_false_check_refuses_the_subject_with_its_message();
    signal_gates_open_only_on_their_signal();
    a_signal_satisfies_a_wait_and_done_completes_a_manual_task();
    timeout_after_removal_rolls_back_newest_first_and_restores_the_number();
    rollback_next_and_failed_compensation_needs_attention();
    on_timeout_rollback_overrides_a_stop_policy_and_cancel_can_roll_back();
    a_chained_workflow_failing_never_rolls_back_the_one_before();
    window_steps_start_only_inside_the_porting_window_and_may_finish_after_it();
    a_full_budget_holds_before_the_outage_step_and_down_time_is_recorded();
    undoing_the_step_that_took_the_number_down_ends_the_outage();
    let fired = FIRED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| !fired.contains(id))
        .collect();
    eprintln!(
        "transition table: {}/{} rules covered; not covered: {missing:?}",
        RULES.len() - missing.len(),
        RULES.len()
    );
    // Needs a non-idempotent operation (conferencing e-mail) to reach; see issue #3.
    let allowed = ["RECONCILE_ATTENTION"];
    for m in &missing {
        assert!(allowed.contains(m), "rule {m} not covered by any test");
    }
}

/// A window open 22:00–04:00 UTC every day.
#[derive(Debug, Clone, Copy)]
struct Nightly;

impl machine::WindowCalendar for Nightly {
    fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        let day = 86_400_000;
        let tod = t.0.rem_euclid(day);
        let (open, close) = (22 * 3_600_000, 4 * 3_600_000);
        if tod >= open || tod < close {
            Some(t)
        } else {
            Some(Timestamp(t.0 - tod + open))
        }
    }
}

#[test]
fn window_steps_start_only_inside_the_porting_window_and_may_finish_after_it() {
    let mut s = Sim::new(&["approve-first"]);
    s.wf.steps[3].window = true;
    s.window = Some(Nightly);
    // 1_800_000_000_000 ms is 08:00 UTC: the window is closed.
    s.feed(Input::Tick);
    let t = s.feed(Input::ActionOk(user(Some("+1"), None)));
    assert_eq!(t.rule, machine::WINDOW_WAIT);
    let Status::Running {
        phase: Phase::Window { opens },
        ..
    } = s.inst.status.clone()
    else {
        panic!("{:?}", s.inst.status)
    };
    assert_eq!(
        opens.0.rem_euclid(86_400_000),
        22 * 3_600_000,
        "opens at 22:00"
    );
    assert_eq!(s.inst.due, Some(opens));
    assert_eq!(s.feed(Input::Tick).rule, machine::EARLY);
    s.now = opens;
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::WINDOW_OPEN);
    assert!(matches!(
        t.effect,
        Some(Effect::Invoke(Call {
            op: Operation::RemoveNumber { .. },
            ..
        }))
    ));
    // Past 04:00 the started step still completes.
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(7 * 3600));
    s.feed(Input::Tick);
    assert_eq!(
        s.feed(Input::Observed(user(None, None))).rule,
        machine::WAIT_MET
    );
}

#[test]
fn retry_after_a_failed_compensation_goes_on_with_the_rollback() {
    let mut s = sim2("a@contoso.com");
    to_upload(&mut s);
    s.advance(Duration::from_secs(14 * 86_400));
    s.feed(Input::Tick);
    s.feed(Input::Observed(Value::Null));
    s.feed(Input::ActionOk(json!({})));
    s.feed(Input::ActionErr(BackendError::new(
        ErrorKind::Conflict,
        "taken",
    )));
    assert!(matches!(
        s.inst.status,
        Status::NeedsAttention {
            rollback: Some(_),
            ..
        }
    ));
    let t = s.feed(Input::Retry {
        from_step: None,
        by: "eng".into(),
        amend: Vec::new(),
        reason: None,
    });
    assert_eq!(t.rule, machine::RETRY);
    assert!(t.effect.is_none(), "an operator input starts no call");
    assert!(
        matches!(s.inst.status, Status::Compensating { step: 3, .. }),
        "{:?}",
        s.inst.status
    );
    // The next tick re-issues the failed compensation, not the migration.
    let t = s.feed(Input::Tick);
    assert!(
        matches!(
            t.effect,
            Some(Effect::Invoke(Call {
                op: Operation::AssignNumber { .. },
                ..
            }))
        ),
        "{:?}",
        t.effect
    );
}

#[test]
fn operator_inputs_leave_the_next_action_due_instead_of_recording_an_intent() {
    let mut s = sim2("a@contoso.com");
    s.feed(Input::Tick);
    s.feed(Input::Signal {
        name: "port-completed".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    let intents = s
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActionIntent { .. }))
        .count();
    assert_eq!(intents, 0);
    // A wait satisfied by a plain signal records who confirmed it.
    let mut s = sim2("c@contoso.com");
    to_upload(&mut s);
    s.feed(Input::Signal {
        name: "uploaded".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    // No later step reads it, so it is kept in the history rather than the snapshot.
    let observed = s
        .inst
        .outputs
        .get("upload")
        .and_then(|d| d.observed.clone())
        .or_else(|| {
            s.events.iter().find_map(|e| match &e.kind {
                EventKind::WaitSatisfied { observed, .. } => observed.clone(),
                _ => None,
            })
        });
    assert_eq!(observed, Some(json!({"signal": "uploaded", "by": "eng"})));
}

#[test]
fn a_done_step_that_is_not_idempotent_is_verified_but_never_repeated_on_retry() {
    let mut s = Sim::new(&[]);
    s.wf = match serde_yaml::from_str(
        r#"
name: once
version: 1
subject: user
inputs: {user: {type: upn}}
steps:
  - id: before
    action: {op: get_conferencing, args: {user: "${inputs.user}"}}
  - id: reset
    action: {op: reset_conference_id, args: {user: "${inputs.user}"}}
    wait:
      observe: {op: get_conferencing, args: {user: "${inputs.user}"}}
      until: "obs.conference_id != steps.before.output.conference_id"
      timeout: 1h
"#,
    ) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(json!({"conference_id": "1111111"})));
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(3600));
    s.feed(Input::Tick);
    s.feed(Input::Observed(json!({"conference_id": "1111111"})));
    assert!(
        matches!(s.inst.status, Status::Failed { .. }),
        "timed out: {:?}",
        s.inst.status
    );
    s.feed(Input::Retry {
        from_step: Some(0),
        by: "eng".into(),
        amend: Vec::new(),
        reason: None,
    });
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(json!({"conference_id": "1111111"})));
    // The reset is not sent again; its wait runs and sees the new id.
    assert_eq!(s.phase(), (1, "waiting"));
    let t = s.feed(Input::Tick);
    assert!(matches!(
        t.effect,
        Some(Effect::Observe(Operation::GetConferencing { .. }))
    ));
    s.feed(Input::Observed(json!({"conference_id": "2222222"})));
    assert_eq!(s.inst.status, Status::Succeeded);
    let resets = s
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ActionIntent { operation, .. } if operation["op"] == "reset_conference_id"))
        .count();
    assert_eq!(resets, 1);
}

fn budget(max: u32) -> std::sync::Arc<super::budget::OutageBudget> {
    std::sync::Arc::new(super::budget::OutageBudget::new(
        Some(max),
        None,
        &Default::default(),
    ))
}

#[test]
fn a_full_budget_holds_before_the_outage_step_and_down_time_is_recorded() {
    use super::budget::SlotView;
    let mut s = Sim::new(&["approve-first"]);
    // `upload` proves service is back.
    s.wf.steps[4].restores_service = true;
    let b = budget(1);
    // Another subject (idx 7) is out of service: no room.
    let other = SlotView {
        holds: true,
        held: false,
        failure: false,
    };
    assert!(b.observe(7, other, s.now).is_none());
    s.outages = Some(b.clone());
    s.feed(Input::Tick);
    let t = s.feed(Input::ActionOk(user(Some("+14250000001"), None)));
    assert_eq!(t.rule, machine::HOLD);
    assert_eq!(s.phase(), (3, "held"));
    assert_eq!(s.inst.due, None, "the executor wakes it");
    assert!(t.effect.is_none(), "no call while held");
    assert!(matches!(
        t.events.last().map(|e| &e.kind),
        Some(EventKind::Held { step, reason }) if step == "remove" && reason.contains("1 of 1")
    ));
    // Woken while still full: stays held, records nothing.
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::HOLD_AGAIN);
    assert!(t.events.is_empty());
    assert_eq!(t.persist, Persist::Nothing);
    // The other subject is back in service.
    let back = SlotView {
        holds: false,
        held: false,
        failure: false,
    };
    b.observe(7, back, s.now);
    let t = s.feed(Input::Tick);
    assert_eq!(t.rule, machine::HOLD_RELEASED);
    assert_eq!(s.phase(), (3, "acting"));
    assert!(
        SlotView::of_instance(&s.wf, &s.inst).holds,
        "acting at an outage step holds a place"
    );
    assert!(s.inst.down.is_none(), "not down until the action succeeded");
    let t = s.feed(Input::ActionOk(json!({})));
    let down_at = s.now;
    assert!(t
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::ServiceDown { step } if step == "remove")));
    assert_eq!(s.inst.down.as_ref().map(|d| d.since), Some(down_at));
    s.advance(Duration::from_secs(20));
    s.feed(Input::Tick);
    s.feed(Input::Observed(user(None, None)));
    assert!(
        s.inst.down.is_some(),
        "removal verified: still out of service"
    );
    s.advance(Duration::from_secs(600));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(json!({"number_type": "OperatorConnect"})));
    assert!(t.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::ServiceRestored { step, down_ms } if step == "upload" && *down_ms == 620_000
    )));
    assert_eq!(s.inst.status, Status::Succeeded);
    assert!(s.inst.down.is_none());
    assert_eq!(s.inst.outages.len(), 1);
    assert_eq!(s.inst.outages[0].start, down_at);
    assert_eq!(s.inst.outages[0].end, s.now);
    assert_eq!(s.inst.outages[0].restored_by, "upload");
    assert!(!SlotView::of_instance(&s.wf, &s.inst).holds);
}

#[test]
fn undoing_the_step_that_took_the_number_down_ends_the_outage() {
    use crate::spec::model::{CompensateSpec, OnFailure};
    let mut s = Sim::new(&["approve-first"]);
    s.on_failure = Some(OnFailure::Rollback);
    s.wf.steps[3].compensate = Some(CompensateSpec {
        op: crate::backend::OperationKind::AssignNumber,
        args: s.wf.steps[3]
            .action
            .as_ref()
            .map(|a| a.args.clone())
            .unwrap_or_default(),
        wait: None,
        retry: Default::default(),
    });
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+14250000001"), None)));
    s.feed(Input::ActionOk(json!({})));
    assert!(s.inst.down.is_some());
    // The removal never shows within its timeout: roll back.
    s.advance(Duration::from_secs(25 * 3600));
    s.feed(Input::Tick);
    s.feed(Input::Observed(user(Some("+14250000001"), None)));
    assert!(
        matches!(s.inst.status, Status::Compensating { .. }),
        "{:?}",
        s.inst.status
    );
    assert!(s.inst.down.is_some(), "down until the undo is done");
    s.feed(Input::ActionOk(json!({})));
    assert!(
        matches!(s.inst.status, Status::RolledBack { .. }),
        "{:?}",
        s.inst.status
    );
    assert!(s.inst.down.is_none());
    assert_eq!(
        s.inst.outages.last().map(|o| o.restored_by.as_str()),
        Some("remove (undo)")
    );
}

#[test]
fn a_wait_past_its_deadline_is_judged_on_a_fresh_observation() {
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+14250000001"), None)));
    s.feed(Input::ActionOk(json!({})));
    assert_eq!(s.phase(), (3, "waiting"));
    // A long stop: the process comes back a day and an hour later.
    s.advance(Duration::from_secs(25 * 3600));
    s.feed(Input::Tick);
    let throttled = BackendError::new(ErrorKind::Throttled, "Too Many Requests")
        .with_retry_after(Duration::from_secs(45));
    let t = s.feed(Input::ObserveErr(throttled.clone()));
    assert_eq!(
        t.rule,
        machine::WAIT_AGAIN,
        "a failed poll past the deadline decides nothing"
    );
    assert_eq!(
        s.inst.due,
        Some(s.now.plus(Duration::from_secs(45))),
        "Retry-After honoured"
    );
    s.advance(Duration::from_secs(45));
    s.feed(Input::Tick);
    let t = s.feed(Input::Observed(user(None, None)));
    assert_eq!(
        t.rule,
        machine::WAIT_MET,
        "the change had landed during the stop"
    );

    // Polls that keep failing after the deadline time out after the grace.
    let mut s = Sim::new(&["approve-first"]);
    s.feed(Input::Tick);
    s.feed(Input::ActionOk(user(Some("+14250000001"), None)));
    s.feed(Input::ActionOk(json!({})));
    s.advance(Duration::from_secs(24 * 3600));
    let mut rule = "";
    for _ in 0..200 {
        s.feed(Input::Tick);
        rule = s.feed(Input::ObserveErr(err(ErrorKind::Transient))).rule;
        if rule != machine::WAIT_AGAIN {
            break;
        }
        s.advance(Duration::from_secs(30));
    }
    assert_eq!(rule, machine::WAIT_TIMEOUT_FAIL);
    let Status::Failed { error, .. } = &s.inst.status else {
        panic!("{:?}", s.inst.status)
    };
    assert!(
        error.contains("no poll succeeded in the 1h after the deadline"),
        "{error}"
    );
}

#[test]
fn a_wait_no_backend_can_read_waits_for_its_signal_without_polling() {
    let mut s = sim2("a@contoso.com");
    // As on a real tenant for a port order: the read has no API.
    s.manual_ops = vec![crate::backend::OperationKind::GetNumber];
    to_upload(&mut s);
    let fourteen_days = Duration::from_secs(14 * 24 * 3600);
    assert_eq!(
        s.inst.due,
        Some(s.now.plus(fourteen_days)),
        "first poll only at the deadline"
    );
    let t = s.feed(Input::Signal {
        name: "uploaded".into(),
        data: Value::Null,
        by: "eng".into(),
    });
    assert_eq!(t.rule, machine::SIGNAL_WAIT_MET);
    assert_eq!(s.phase(), (6, "blocked"), "on to the next step");
}

#[test]
fn a_polls_snapshot_keeps_the_fields_until_reads_unless_a_later_step_reads_all() {
    let poll = |s: &mut Sim| {
        s.feed(Input::Tick);
        s.feed(Input::ActionOk(user(Some("+1"), None)));
        s.feed(Input::ActionOk(json!({})));
        s.now = s.inst.due.unwrap_or(s.now);
        s.feed(Input::Tick);
        s.feed(Input::Observed(user(Some("+1"), None)));
        s.inst
            .outputs
            .get("remove")
            .and_then(|d| d.observed.clone())
    };
    let mut s = Sim::new(&["approve-first"]);
    assert_eq!(
        poll(&mut s),
        Some(json!({"line_uri": "+1"})),
        "only what `obs.line_uri == null` reads"
    );
    // A later step reading `steps.remove.observed` gets the whole observation.
    let mut s = Sim::new(&["approve-first"]);
    let text = format!(
        "{WF}  - id: after\n    when: \"steps.remove.observed.id == 'id-1'\"\n    \
         action: {{op: get_user, args: {{user: \"${{inputs.user}}\"}}}}\n"
    );
    s.wf = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(poll(&mut s), Some(user(Some("+1"), None)));
}
