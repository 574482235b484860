//! Executor tests on a manual clock: 24-hour waits in milliseconds, storage
//! failures mid-wave and recovery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::executor::{DriveEnd, Driver, EngineError, Progress};
use super::instance::{Instance, Status};
use crate::backend::{BackendError, Operation, Tenant};
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
    async fn execute(&self, op: &Operation) -> Result<Value, BackendError> {
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
        records::put_new_instance(&mut b, &Instance::new("run", i, user(i), inputs, now));
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
        budget: None,
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
        budget: None,
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
