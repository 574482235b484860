//! Executor tests on a manual clock: 24-hour waits in milliseconds, storage
//! failures mid-wave and recovery.
#![allow(clippy::disallowed_methods)] // short real sleeps let spawned tasks run; timing here is the manual clock

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::executor::{DriveEnd, Driver, EngineError, Progress};
use super::instance::{Instance, Status};
use crate::backend::{BackendError, Call, Operation, Tenant};
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::fault::FaultyStore;
use crate::store::memory::MemoryStore;
use crate::store::{records, Batch, Store};

const WF: &str = r#"
name: t
version: 1
subject: user
inputs: {user: {type: upn}, number: {type: e164}}
steps:
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.line_uri == null
      expected: 10m
      timeout: 24h
"#;

/// A tenant whose removal becomes visible a fixed delay per user after the call.
struct LaggingTenant {
    clock: Arc<ManualClock>,
    lag: HashMap<String, Duration>,
    removed_at: Mutex<HashMap<String, Timestamp>>,
    actions: Mutex<Vec<String>>,
    polls: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Tenant for LaggingTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        let op = &call.op;
        let now = self.clock.now();
        match op {
            Operation::RemoveNumber { user, .. } => {
                self.actions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(user.clone());
                self.removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(user.clone())
                    .or_insert(now);
                Ok(json!({}))
            }
            Operation::GetUser { user } => {
                *self
                    .polls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(user.clone())
                    .or_insert(0) += 1;
                let at = self
                    .removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(user)
                    .copied();
                let lag = self.lag.get(user).copied().unwrap_or_default();
                let visible = at.is_some_and(|t| now >= t.plus(lag));
                Ok(json!({"line_uri": if visible { Value::Null } else { json!("+14250000001") }}))
            }
            other => Ok(json!({"unexpected": format!("{other:?}")})),
        }
    }
}

fn workflow() -> Arc<Workflow> {
    match serde_yaml::from_str(WF) {
        Ok(w) => Arc::new(w),
        Err(e) => panic!("{e}"),
    }
}

fn user(i: u32) -> String {
    format!("user{i}@contoso.com")
}

async fn seed_run(store: &dyn Store, committer: &Committer, n: u32, now: Timestamp) {
    let mut b = Batch::default();
    for i in 0..n {
        let mut inputs = serde_json::Map::new();
        inputs.insert("user".into(), json!(user(i)));
        inputs.insert("number".into(), json!(format!("+1425000{i:04}")));
        records::put_new_instance(&mut b, &Instance::new("run", i, user(i), inputs, now))
            .expect("our records encode");
    }
    let _ = store;
    assert!(committer.commit(b).await.is_ok());
}

fn driver(
    store: Arc<dyn Store>,
    committer: Committer,
    clock: Arc<ManualClock>,
    tenant: Arc<LaggingTenant>,
) -> Arc<Driver> {
    Arc::new(Driver {
        store,
        committer,
        clock,
        tenant,
        run_id: "run".into(),
        workflow: workflow(),
        approvals: vec![],
        on_failure: None,
        manual_ops: vec![],
        window: None,
        concurrency: 4,
        limiter: None,
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: None,
        space: None,
        progress: Arc::new(Progress::default()),
    })
}

/// Drive while moving the manual clock forward in 1-minute steps, each time only
/// once the driver has gone quiet (so no poll lands later than it would for real).
async fn drive_with_time(d: Arc<Driver>, clock: Arc<ManualClock>) -> Result<DriveEnd, EngineError> {
    use std::sync::atomic::Ordering::Relaxed;
    let progress = d.progress.clone();
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(d.drive(rx));
    let activity = || progress.calls.load(Relaxed) + progress.transitions.load(Relaxed);
    while !task.is_finished() {
        let mut last = activity();
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = activity();
            if now == last {
                break;
            }
            last = now;
        }
        clock.advance(Duration::from_secs(60));
    }
    match task.await {
        Ok(r) => r,
        Err(e) => panic!("driver task: {e}"),
    }
}

fn tenant(clock: &Arc<ManualClock>, lags: &[(u32, Duration)]) -> Arc<LaggingTenant> {
    Arc::new(LaggingTenant {
        clock: clock.clone(),
        lag: lags.iter().map(|(i, d)| (user(*i), *d)).collect(),
        removed_at: Mutex::new(HashMap::new()),
        actions: Mutex::new(Vec::new()),
        polls: Mutex::new(HashMap::new()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_long_waits_run_on_a_manual_clock_and_time_out_at_24h() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 3, clock.now()).await;
    let hour = Duration::from_secs(3600);
    let t = tenant(
        &clock,
        &[
            (0, Duration::from_secs(120)),
            (1, 20 * hour),
            (2, 25 * hour),
        ],
    );
    let d = driver(store.clone(), committer, clock.clone(), t.clone());
    let end = drive_with_time(d, clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    let insts = records::list_instances(&*store, "run").unwrap_or_default();
    assert_eq!(insts[0].status, Status::Succeeded);
    assert_eq!(
        insts[1].status,
        Status::Succeeded,
        "20 h lag is inside the 24 h timeout"
    );
    let Status::Failed { error, .. } = &insts[2].status else {
        panic!("25 h lag must time out: {:?}", insts[2].status)
    };
    assert!(error.contains("timed out after 1day"), "{error}");
    // Polls grow to the 5-minute default cap: a 20-hour wait takes ~240 polls,
    // a tenth of what a fixed 30-second poll would cost.
    let polls = t
        .polls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&user(1))
        .copied()
        .unwrap_or(0);
    assert!(
        (230..=250).contains(&polls),
        "polls for a 20 h wait: {polls}"
    );
    // ...and none of them added history.
    let events = records::list_events(&*store, &insts[1].key()).unwrap_or_default();
    assert!(events.len() <= 8, "{} events", events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_write_stops_the_run_and_a_restart_completes_it() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let inner = Arc::new(MemoryStore::new());
    let faulty = Arc::new(FaultyStore::new(inner.clone()));
    let committer = Committer::start(faulty.clone(), true);
    seed_run(&*faulty, &committer, 20, clock.now()).await;
    // Fail the 6th write group half way through its batch.
    faulty.fail_apply_from(faulty.applies() + 5, 2);
    let t = tenant(&clock, &[]);
    let d = driver(faulty.clone(), committer, clock.clone(), t.clone());
    let end = drive_with_time(d, clock.clone()).await;
    assert!(matches!(end, Err(EngineError::Store(_))), "{end:?}");
    let before = records::list_instances(&*inner, "run").unwrap_or_default();
    assert!(
        before.iter().any(|i| !i.is_terminal()),
        "the failure stopped the run early"
    );

    // Restart on the same data with a healthy store.
    let store: Arc<dyn Store> = inner.clone();
    let committer = Committer::start(store.clone(), true);
    let d = driver(store.clone(), committer, clock.clone(), t.clone());
    let end = drive_with_time(d, clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    for i in records::list_instances(&*store, "run").unwrap_or_default() {
        assert_eq!(i.status, Status::Succeeded, "{}", i.subject);
        let events = records::list_events(&*store, &i.key()).unwrap_or_default();
        let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (0..i.seq).collect::<Vec<_>>(),
            "{}: gap-free history",
            i.subject
        );
    }
    let actions = t.actions.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for u in 0..20 {
        let n = actions.iter().filter(|a| **a == user(u)).count();
        assert!(
            (1..=2).contains(&n),
            "{}: removed {n} times (at most one re-issue)",
            user(u)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_inputs_reach_a_running_driver_through_its_inbox() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 3, clock.now()).await;
    let mut wf: Workflow = match serde_yaml::from_str(WF) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let gated: Workflow = match serde_yaml::from_str(
        "name: g\nversion: 1\nsubject: user\ninputs: {user: {type: upn}}\nsteps:\n  - id: go\n    gate: {approval: go}\n",
    ) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    wf.steps.insert(0, gated.steps[0].clone());
    let t = tenant(&clock, &[]);
    let mut d = Driver {
        store: store.clone(),
        committer,
        clock: clock.clone(),
        tenant: t.clone(),
        run_id: "run".into(),
        workflow: Arc::new(wf),
        approvals: vec![],
        on_failure: None,
        manual_ops: vec![],
        window: None,
        concurrency: 4,
        limiter: None,
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: None,
        space: None,
        progress: Arc::new(Progress::default()),
    };
    d.concurrency = 2;
    let d = Arc::new(d);
    let (_stop_tx, stop) = watch::channel(false);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let task = tokio::spawn(d.clone().drive_with_inbox(stop, Some(rx)));
    // All three block at the gate; the driver keeps waiting for input.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !task.is_finished(),
        "a driver with an inbox waits for approvals"
    );
    for idx in 0..3 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = tx
            .send(super::executor::Inbound {
                idx,
                input: super::machine::Input::Approve {
                    step: None,
                    by: "ops".into(),
                },
                reply,
            })
            .await;
        assert!(sent.is_ok());
        assert!(matches!(answer.await, Ok(Ok(super::machine::GATE_OPEN))));
    }
    // Let the removals become visible.
    while !task.is_finished() {
        clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(matches!(task.await, Ok(Ok(DriveEnd::Finished))));
    let done = records::list_instances(&*store, "run").unwrap_or_default();
    assert!(
        done.iter().all(|i| i.status == Status::Succeeded),
        "{done:?}"
    );
}

const BUDGET_WF: &str = r#"
name: t
version: 1
subject: user
inputs: {user: {type: upn}, number: {type: e164}}
steps:
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    retry: {attempts: 1}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.line_uri == null
      expected: 10m
      timeout: 24h
      poll: {initial: 1m, max: 5m}
  - id: restore
    restores_service: true
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}"}}
"#;

/// A tenant that knows who is out of service: removed and not yet restored.
struct OutageTenant {
    clock: Arc<ManualClock>,
    removed_at: Mutex<HashMap<String, Timestamp>>,
    down: Mutex<std::collections::HashSet<String>>,
    max_down: Mutex<usize>,
    /// Users whose removal is refused.
    refuse: Vec<String>,
}

#[async_trait]
impl Tenant for OutageTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        let op = &call.op;
        let now = self.clock.now();
        match op {
            Operation::RemoveNumber { user, .. } => {
                if self.refuse.contains(user) {
                    return Err(BackendError::new(
                        crate::backend::ErrorKind::Fatal,
                        "Insufficient privileges",
                    ));
                }
                self.removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(user.clone(), now);
                let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
                down.insert(user.clone());
                let mut max = self.max_down.lock().unwrap_or_else(|p| p.into_inner());
                *max = (*max).max(down.len());
                Ok(json!({}))
            }
            Operation::GetUser { user } => {
                let at = self
                    .removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(user)
                    .copied();
                let gone = at.is_some_and(|t| now >= t.plus(Duration::from_secs(300)));
                Ok(json!({"line_uri": if gone { Value::Null } else { json!("+14250000001") }}))
            }
            Operation::GrantVoiceRoutingPolicy { user, .. } => {
                self.down
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(user);
                Ok(json!({}))
            }
            other => Ok(json!({"unexpected": format!("{other:?}")})),
        }
    }
}

fn budget_driver(
    store: Arc<dyn Store>,
    committer: Committer,
    clock: Arc<ManualClock>,
    tenant: Arc<OutageTenant>,
    max: Option<u32>,
    threshold: Option<u32>,
    concurrency: usize,
) -> Arc<Driver> {
    let breaker = records::get_run(&*store, "run")
        .ok()
        .flatten()
        .map(|r| r.breaker)
        .unwrap_or_default();
    let wf: Workflow = match serde_yaml::from_str(BUDGET_WF) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    Arc::new(Driver {
        store,
        committer,
        clock,
        tenant,
        run_id: "run".into(),
        workflow: Arc::new(wf),
        approvals: vec![],
        on_failure: None,
        manual_ops: vec![],
        window: None,
        concurrency,
        limiter: None,
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: Some(Arc::new(super::budget::OutageBudget::new(
            max, threshold, &breaker,
        ))),
        space: None,
        progress: Arc::new(Progress::default()),
    })
}

fn outage_tenant(clock: &Arc<ManualClock>, refuse: &[u32]) -> Arc<OutageTenant> {
    Arc::new(OutageTenant {
        clock: clock.clone(),
        removed_at: Mutex::new(HashMap::new()),
        down: Mutex::new(Default::default()),
        max_down: Mutex::new(0),
        refuse: refuse.iter().map(|i| user(*i)).collect(),
    })
}

/// A run record for "run" (the breaker lives there).
async fn put_record(store: &dyn Store, committer: &Committer, subjects: u32) {
    let record = crate::engine::run::RunRecord {
        id: "run".into(),
        label: None,
        created_at: Timestamp(0),
        workflow: crate::engine::run::WorkflowPin {
            name: "t".into(),
            version: 1,
            hash: String::new(),
            origin: String::new(),
            text: BUDGET_WF.into(),
        },
        then: vec![],
        run_origin: String::new(),
        run_text: String::new(),
        base_dir: ".".into(),
        clock: None,
        subjects,
        finished_at: None,
        breaker: Default::default(),
    };
    let mut b = Batch::default();
    records::put_run(&mut b, &record).expect("our records encode");
    let _ = store;
    assert!(committer.commit(b).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_subjects_out_of_service_than_the_budget() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 12, clock.now()).await;
    put_record(&*store, &committer, 12).await;
    let t = outage_tenant(&clock, &[]);
    let d = budget_driver(
        store.clone(),
        committer,
        clock.clone(),
        t.clone(),
        Some(3),
        None,
        8,
    );
    let end = drive_with_time(d, clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    let max = *t.max_down.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(
        max, 3,
        "the tenant saw at most (and, with 12 waiting, exactly) 3 down at once"
    );
    let insts = records::list_instances(&*store, "run").unwrap_or_default();
    assert!(insts.iter().all(|i| i.status == Status::Succeeded));
    assert!(insts
        .iter()
        .all(|i| i.down.is_none() && i.outages.len() == 1));
    // The engine's own record agrees with the tenant: at most 3 spans overlap.
    let mut edges: Vec<(Timestamp, i32)> = insts
        .iter()
        .flat_map(|i| i.outages.iter().flat_map(|o| [(o.start, 1), (o.end, -1)]))
        .collect();
    edges.sort();
    let (mut n, mut peak) = (0, 0);
    for (_, d) in edges {
        n += d;
        peak = peak.max(n);
    }
    assert!(peak <= 3, "engine-recorded overlap {peak}");
    let held = insts
        .iter()
        .filter(|i| {
            records::list_events(&*store, &i.key())
                .unwrap_or_default()
                .iter()
                .any(|e| matches!(e.kind, super::instance::EventKind::Held { .. }))
        })
        .count();
    assert!(held >= 9, "those beyond the budget were held first: {held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_pauses_new_outages_durably_until_continued() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 8, clock.now()).await;
    put_record(&*store, &committer, 8).await;
    let t = outage_tenant(&clock, &[0, 1]);
    let make = |c: usize| {
        budget_driver(
            store.clone(),
            committer.clone(),
            clock.clone(),
            t.clone(),
            Some(2),
            Some(2),
            c,
        )
    };
    let end = drive_with_time(make(1), clock.clone()).await;
    assert!(
        matches!(end, Ok(DriveEnd::Idle { held: 6, .. })),
        "two refusals at the outage step open the breaker: {end:?}"
    );
    let stored = records::get_run(&*store, "run").ok().flatten();
    let trip = stored.and_then(|r| r.breaker.tripped);
    assert!(
        matches!(&trip, Some(tr) if tr.failures == 2 && tr.threshold == 2),
        "{trip:?}"
    );
    assert_eq!(
        t.removed_at.lock().unwrap_or_else(|p| p.into_inner()).len(),
        0,
        "nobody else went out of service"
    );
    // A restart (a new driver over the same store) stays paused.
    let end = drive_with_time(make(4), clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Idle { held: 6, .. })), "{end:?}");
    // `resume --continue`.
    let d = make(4);
    let accepted = d.continue_breaker("ops").await;
    assert!(matches!(accepted, Ok(2)), "{accepted:?}");
    let end = drive_with_time(d, clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    let insts = records::list_instances(&*store, "run").unwrap_or_default();
    let ok = insts
        .iter()
        .filter(|i| i.status == Status::Succeeded)
        .count();
    assert_eq!(ok, 6);
    let stored = records::get_run(&*store, "run").ok().flatten();
    let b = stored.map(|r| r.breaker).unwrap_or_default();
    assert!(b.tripped.is_none());
    assert_eq!(b.accepted, 2);
    assert_eq!(b.continued.len(), 1);
    assert!(*t.max_down.lock().unwrap_or_else(|p| p.into_inner()) <= 2);
}

const MAIL_WF: &str = r#"
name: t
version: 1
subject: user
inputs: {user: {type: upn}, number: {type: e164}}
steps:
  - id: mail
    action: {op: send_conferencing_info, args: {user: "${inputs.user}"}}
"#;

/// Counts the conferencing e-mails each user was sent.
struct Outbox {
    sent: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Tenant for Outbox {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        let op = &call.op;
        if let Operation::SendConferencingInfo { user } = op {
            *self
                .sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(user.clone())
                .or_insert(0) += 1;
        }
        Ok(json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_waiting_for_the_rate_limiter_leaves_no_intent_in_doubt() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 6, clock.now()).await;
    let outbox = Arc::new(Outbox {
        sent: Mutex::new(HashMap::new()),
    });
    let make = || {
        let wf: Workflow = match serde_yaml::from_str(MAIL_WF) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        };
        Arc::new(Driver {
            store: store.clone(),
            committer: committer.clone(),
            clock: clock.clone(),
            tenant: outbox.clone(),
            run_id: "run".into(),
            workflow: Arc::new(wf),
            approvals: vec![],
            on_failure: None,
            manual_ops: vec![],
            window: None,
            concurrency: 4,
            // One call a minute on a clock that does not move: after the first
            // call every worker waits for the limiter.
            limiter: Some(Arc::new(super::limiter::RateLimiter::new(
                clock.clone(),
                1.0 / 60.0,
            ))),
            call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
            budget: None,
            space: None,
            progress: Arc::new(Progress::default()),
        })
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(make().drive(stop_rx));
    let t0 = crate::clock::Stopwatch::start();
    while outbox
        .sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "no first e-mail");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop_tx.send(true);
    let end = task.await;
    assert!(matches!(end, Ok(Ok(DriveEnd::Stopped))), "{end:?}");
    let insts = records::list_instances(&*store, "run").unwrap_or_default();
    let acting = insts
        .iter()
        .filter(|i| {
            matches!(
                &i.status,
                Status::Running {
                    phase: super::instance::Phase::Acting { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        acting, 0,
        "no intent is recorded for a call still waiting its turn"
    );
    // Resume: everyone gets exactly one e-mail, nobody needs a person.
    let end = drive_with_time(make(), clock.clone()).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    let insts = records::list_instances(&*store, "run").unwrap_or_default();
    assert!(
        insts.iter().all(|i| i.status == Status::Succeeded),
        "{:?}",
        insts.iter().map(|i| i.status.name()).collect::<Vec<_>>()
    );
    let sent = outbox
        .sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(sent.len(), 6);
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");
}

const WRITES_WF: &str = r#"
name: t
version: 1
subject: user
inputs: {user: {type: upn}, number: {type: e164}}
steps:
  - id: remove
    action:
      op: remove_number
      args: {user: "${inputs.user}", number: "${inputs.number}", number_type: DirectRouting}
    wait:
      observe: {op: get_user, args: {user: "${inputs.user}"}}
      until: obs.line_uri == null
      expected: 10m
      timeout: 24h
      poll: {initial: 1m, max: 5m}
  - id: mail
    action: {op: send_conferencing_info, args: {user: "${inputs.user}"}}
  - id: restore
    restores_service: true
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}"}}
"#;

/// Removals visible after 3 minutes; counts e-mails (not idempotent).
struct WritesTenant {
    clock: Arc<ManualClock>,
    removed_at: Mutex<HashMap<String, Timestamp>>,
    mails: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Tenant for WritesTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        let op = &call.op;
        let now = self.clock.now();
        match op {
            Operation::RemoveNumber { user, .. } => {
                self.removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(user.clone())
                    .or_insert(now);
                Ok(json!({}))
            }
            Operation::GetUser { user } => {
                let at = self
                    .removed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(user)
                    .copied();
                let gone = at.is_some_and(|t| now >= t.plus(Duration::from_secs(180)));
                Ok(json!({"line_uri": if gone { Value::Null } else { json!("+14250000001") }}))
            }
            Operation::SendConferencingInfo { user } => {
                *self
                    .mails
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(user.clone())
                    .or_insert(0) += 1;
                Ok(json!({}))
            }
            _ => Ok(json!({})),
        }
    }
}

/// One wave of 3 subjects on `store`; returns how it ended.
async fn writes_wave(
    store: Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    tenant: &Arc<WritesTenant>,
) -> Result<DriveEnd, EngineError> {
    let committer = Committer::start(store.clone(), true);
    let wf: Workflow = match serde_yaml::from_str(WRITES_WF) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let d = Arc::new(Driver {
        store,
        committer,
        clock: clock.clone(),
        tenant: tenant.clone(),
        run_id: "run".into(),
        workflow: Arc::new(wf),
        approvals: vec![],
        on_failure: None,
        manual_ops: vec![],
        window: None,
        // One worker: each durable transition is its own write, in a fixed order.
        concurrency: 1,
        limiter: None,
        call_timeout: crate::spec::runfile::DEFAULT_CALL_TIMEOUT,
        budget: Some(Arc::new(super::budget::OutageBudget::new(
            Some(2),
            None,
            &Default::default(),
        ))),
        space: None,
        progress: Arc::new(Progress::default()),
    });
    drive_with_time(d, clock.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_every_write_in_turn_recovers_with_every_promise_kept() {
    // How many writes a healthy wave makes.
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let probe = Arc::new(FaultyStore::new(inner.clone()));
    {
        let c = Committer::start(probe.clone(), true);
        seed_run(&*probe, &c, 3, clock.now()).await;
    }
    let base = probe.applies();
    let t = Arc::new(WritesTenant {
        clock: clock.clone(),
        removed_at: Mutex::new(HashMap::new()),
        mails: Mutex::new(HashMap::new()),
    });
    let end = writes_wave(probe.clone(), &clock, &t).await;
    assert!(matches!(end, Ok(DriveEnd::Finished)), "{end:?}");
    let writes = probe.applies() - base;
    assert!(writes >= 15, "a wave of 3 makes many writes: {writes}");

    let (mut scenarios, mut stopped) = (0, 0);
    for k in 1..=writes + 1 {
        for (torn, sync) in [(0, false), (1, false), (0, true)] {
            scenarios += 1;
            let clock = ManualClock::new(Timestamp(1_800_000_000_000));
            let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let faulty = Arc::new(FaultyStore::new(inner.clone()));
            {
                let c = Committer::start(faulty.clone(), true);
                seed_run(&*faulty, &c, 3, clock.now()).await;
            }
            if sync {
                faulty.fail_sync_from(faulty.syncs() + k);
            } else {
                faulty.fail_apply_from(faulty.applies() + k, torn);
            }
            let t = Arc::new(WritesTenant {
                clock: clock.clone(),
                removed_at: Mutex::new(HashMap::new()),
                mails: Mutex::new(HashMap::new()),
            });
            let first = writes_wave(faulty.clone(), &clock, &t).await;
            // Group commit may merge a write or two differently from the probe
            // run; syncs are fewer than writes, so late sync faults never fire.
            if !sync && k + 2 <= writes {
                assert!(
                    first.is_err(),
                    "write {k}: the failure stops the run: {first:?}"
                );
            }
            stopped += usize::from(first.is_err());
            // Restart on what was stored, with a healthy store.
            let end = writes_wave(inner.clone(), &clock, &t).await;
            let what = format!("write {k} (torn {torn}, sync {sync})");
            assert!(matches!(end, Ok(DriveEnd::Finished)), "{what}: {end:?}");
            let mails = t.mails.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for i in records::list_instances(&*inner, "run").unwrap_or_default() {
                let sent = mails.get(&i.subject).copied().unwrap_or(0);
                assert!(sent <= 1, "{what}: {} mailed {sent} times", i.subject);
                match &i.status {
                    Status::Succeeded => {
                        assert_eq!(sent, 1, "{what}: {}", i.subject);
                        assert!(i.down.is_none() && i.outages.len() == 1, "{what}: {i:?}");
                    }
                    // The e-mail's call was in doubt when the store failed.
                    Status::NeedsAttention { reason, .. } => {
                        assert!(reason.contains("may or may not"), "{what}: {reason}");
                    }
                    other => panic!("{what}: {} ended {other:?}", i.subject),
                }
                let events = records::list_events(&*inner, &i.key()).unwrap_or_default();
                let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
                assert_eq!(seqs, (0..i.seq).collect::<Vec<_>>(), "{what}: gap-free");
                let terminal = events
                    .iter()
                    .filter(|e| {
                        matches!(
                            e.kind,
                            super::instance::EventKind::Succeeded
                                | super::instance::EventKind::NeedsAttention { .. }
                                | super::instance::EventKind::Failed { .. }
                        )
                    })
                    .count();
                assert_eq!(terminal, 1, "{what}: {}: one terminal event", i.subject);
            }
            let timers = records::run_timers(&*inner, "run").unwrap_or_default();
            assert!(
                timers.is_empty(),
                "{what}: timers left for ended instances: {timers:?}"
            );
        }
    }
    eprintln!("{scenarios} failure scenarios over {writes} writes; {stopped} stopped the run");
    assert!(stopped >= 2 * (writes as usize - 2), "{stopped}");
}

/// Free space the test sets.
#[derive(Debug, Default)]
struct FakeDisk(std::sync::atomic::AtomicU64);

impl super::space::FreeSpace for FakeDisk {
    fn free(&self, _: &std::path::Path) -> std::io::Result<u64> {
        Ok(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

fn with_space(d: Arc<Driver>, disk: &Arc<FakeDisk>) -> Arc<Driver> {
    let mut d = match Arc::try_unwrap(d) {
        Ok(d) => d,
        Err(_) => panic!("a fresh driver has one owner"),
    };
    d.budget = None;
    d.space = Some(Arc::new(super::space::SpaceGuard::with_probe(
        vec!["/state/engine".into()],
        1 << 20,
        disk.clone(),
    )));
    Arc::new(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_space_holds_outage_steps_and_a_daemon_lets_them_go_when_space_is_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 4, clock.now()).await;
    put_record(&*store, &committer, 4).await;
    let t = outage_tenant(&clock, &[]);
    let disk = Arc::new(FakeDisk::default());
    let make = || {
        with_space(
            budget_driver(
                store.clone(),
                committer.clone(),
                clock.clone(),
                t.clone(),
                None,
                None,
                4,
            ),
            &disk,
        )
    };
    let end = drive_with_time(make(), clock.clone()).await;
    assert!(
        matches!(end, Ok(DriveEnd::Idle { held: 4, .. })),
        "a full disk holds everyone before the outage step: {end:?}"
    );
    assert!(t
        .removed_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty());
    let reason = records::list_instances(&*store, "run")
        .unwrap_or_default()
        .iter()
        .find_map(|i| match &i.status {
            Status::Running {
                phase: super::instance::Phase::Held { reason },
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(reason.starts_with(super::space::REASON_PREFIX), "{reason}");

    // A restarted daemon (its inbox stays open) finds them held and lets them
    // go by itself once there is room.
    let d = make();
    let (stop_tx, stop) = watch::channel(false);
    let (_inbox, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(d.clone().drive_with_inbox(stop, Some(rx)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    disk.0.store(1 << 30, SeqCst);
    let t0 = crate::clock::Stopwatch::start();
    loop {
        let done = records::list_instances(&*store, "run")
            .unwrap_or_default()
            .iter()
            .all(|i| i.status == Status::Succeeded);
        if done {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "held subjects did not go on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        clock.advance(Duration::from_secs(60));
    }
    let _ = stop_tx.send(true);
    let end = task.await;
    assert!(
        matches!(end, Ok(Ok(DriveEnd::Finished | DriveEnd::Stopped))),
        "{end:?}"
    );
    assert_eq!(
        t.removed_at.lock().unwrap_or_else(|p| p.into_inner()).len(),
        4
    );
}

const HUNG_WF: &str = r#"
name: hung
version: 1
subject: user
inputs: {user: {type: upn}}
steps:
  - id: mail
    action: {op: send_conferencing_info, args: {user: "${inputs.user}"}}
    wait:
      observe: {op: get_conferencing, args: {user: "${inputs.user}"}}
      until: "obs.conference_id != null"
      expected: 1m
      timeout: 1h
  - id: policy
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}"}}
"#;

/// Sends the e-mail and then never answers; the first policy grant of each
/// user never answers and does nothing.
struct HangingTenant {
    mails: Mutex<HashMap<String, u32>>,
    grants: Mutex<HashMap<String, u32>>,
    keys: Mutex<Vec<String>>,
}

#[async_trait]
impl Tenant for HangingTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        if let Some(k) = &call.key {
            self.keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(k.clone());
        }
        match &call.op {
            Operation::SendConferencingInfo { user } => {
                *self
                    .mails
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(user.clone())
                    .or_insert(0) += 1;
                std::future::pending().await
            }
            Operation::GetConferencing { user } => {
                let sent = self
                    .mails
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(user);
                Ok(
                    json!({"provider": "Microsoft", "conference_id": if sent { json!("1234567") } else { Value::Null }}),
                )
            }
            Operation::GrantVoiceRoutingPolicy { user, .. } => {
                let n = {
                    let mut g = self.grants.lock().unwrap_or_else(|p| p.into_inner());
                    let n = g.entry(user.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if n == 1 {
                    std::future::pending().await
                }
                Ok(json!({}))
            }
            _ => Ok(json!({})),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_hits_its_deadline_and_is_reconciled_without_resending() {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), true);
    seed_run(&*store, &committer, 3, clock.now()).await;
    let tenant = Arc::new(HangingTenant {
        mails: Mutex::new(HashMap::new()),
        grants: Mutex::new(HashMap::new()),
        keys: Mutex::new(Vec::new()),
    });
    let wf: Workflow = match serde_yaml::from_str(HUNG_WF) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let d = Arc::new(Driver {
        store: store.clone(),
        committer,
        clock: clock.clone(),
        tenant: tenant.clone(),
        run_id: "run".into(),
        workflow: Arc::new(wf),
        approvals: vec![],
        on_failure: None,
        manual_ops: vec![],
        window: None,
        concurrency: 4,
        limiter: None,
        call_timeout: Duration::from_secs(120),
        budget: None,
        space: None,
        progress: Arc::new(Progress::default()),
    });
    // Real time: a few milliseconds; the deadlines pass on the manual clock.
    let end =
        tokio::time::timeout(Duration::from_secs(30), drive_with_time(d, clock.clone())).await;
    assert!(matches!(end, Ok(Ok(DriveEnd::Finished))), "{end:?}");
    for i in 0..3 {
        let inst = records::get_instance(
            &*store,
            &crate::store::keys::InstanceKey {
                run: "run".into(),
                idx: i,
            },
        );
        let inst = match inst {
            Ok(Some(inst)) => inst,
            other => panic!("instance {i}: {other:?}"),
        };
        assert_eq!(inst.status, Status::Succeeded, "{i}");
    }
    let mails = tenant
        .mails
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(mails.len(), 3);
    assert!(
        mails.values().all(|n| *n == 1),
        "the e-mail is never re-sent: {mails:?}"
    );
    let grants = tenant
        .grants
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        grants.values().all(|n| *n == 2),
        "the idempotent grant is retried once: {grants:?}"
    );
    // Each call carried its attempt's idempotency key.
    let keys = tenant
        .keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(keys.contains(&"run/0/mail/1".to_string()), "{keys:?}");
    assert!(keys.contains(&"run/0/policy/2".to_string()), "{keys:?}");
}

#[test]
fn progress_times_steps_for_the_eta() {
    use super::eta::Eta;
    use super::executor::Place;
    let p = Progress::default();
    let t0 = Timestamp(1_000_000);
    let min = Duration::from_secs(60);
    // Instance 0 goes through step 0 in 1 min and the sync wait of step 1 in
    // 10 min, passing over step 2; instance 1 has been waiting 4 min at step 1.
    p.set(0, Place::Step(0, "acting"), t0);
    p.set(0, Place::Step(1, "waiting"), t0.plus(min));
    p.set(1, Place::Step(1, "waiting"), t0.plus(min * 7));
    p.set(0, Place::Step(3, "acting"), t0.plus(min * 11));
    p.set(0, Place::Terminal("succeeded"), t0.plus(min * 12));
    p.set(2, Place::Step(1, "blocked"), t0.plus(min * 11));
    let e = p.estimate(4, t0.plus(min * 11));
    // 10 − 4 minutes left at step 1, step 2 took 0, step 3 took 1.
    assert_eq!(e.eta, Eta::Known(min * 7));
    assert_eq!(e.people, 1);
    // A failure or a rollback is not a step's duration.
    p.set(1, Place::Step(1, "rolling_back"), t0.plus(min * 12));
    p.set(1, Place::Terminal("failed"), t0.plus(min * 13));
    let e = p.estimate(4, t0.plus(min * 13));
    assert_eq!(e.eta, Eta::Known(Duration::ZERO), "{e:?}");
}
