//! The registry shares one client and one limiter per tenant; `ReadOnly`
//! never forwards a write.
#![allow(clippy::disallowed_methods)] // short real sleeps let spawned drivers run; timing is the manual clock

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::*;
use crate::backend::sim::SimConfig;
use crate::backend::{BackendError, Call, ErrorKind, Operation, ReadOnly};
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::engine::executor::{DriveEnd, Driver, Progress};
use crate::engine::instance::Instance;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::memory::MemoryStore;
use crate::store::{records, Batch, Store};

fn sim_config(tenant: &str) -> BackendConfig {
    BackendConfig::Sim(SimConfig {
        users: 12,
        tenant: Some(tenant.into()),
        ..SimConfig::default()
    })
}

fn scope(run: &str, rate: Option<f64>) -> Scope<'_> {
    Scope {
        run,
        rate_limit: rate,
        presence: Presence::SeedIfEmpty,
    }
}

/// Records every call it receives.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Operation>>,
}

#[async_trait]
impl Tenant for Recorder {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call.op.clone());
        Ok(json!({}))
    }
}

#[tokio::test]
async fn read_only_refuses_every_write_and_never_forwards_it() {
    let inner = Arc::new(Recorder::default());
    let ro = ReadOnly::new(inner.clone());
    for kind in crate::backend::OperationKind::ALL {
        if kind.info().observation {
            continue;
        }
        let mut v = json!({"op": kind.info().name, "user": "a@contoso.com",
            "number": "+14255550100", "number_type": "DirectRouting",
            "location_id": "loc", "sku": "MCOEV"});
        if let Some(m) = v.as_object_mut() {
            m.retain(|k, _| k == "op" || kind.info().params.iter().any(|p| p.name == k));
        }
        let op: Operation = match serde_json::from_value(v) {
            Ok(op) => op,
            Err(e) => panic!("{kind}: {e}"),
        };
        let r = ro.execute(&Call::action(op, "run/0/step/1", 1)).await;
        assert!(
            matches!(&r, Err(e) if e.kind == ErrorKind::Precondition && e.message.contains("read-only")),
            "{kind}: {r:?}"
        );
    }
    assert!(inner
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty());
    // Reads go through.
    let get = Operation::GetUser {
        user: "a@contoso.com".into(),
    };
    assert!(ro.execute(&Call::observation(get)).await.is_ok());
    assert_eq!(
        inner.calls.lock().unwrap_or_else(|p| p.into_inner()).len(),
        1
    );
}

#[tokio::test]
async fn a_plan_through_read_only_leaves_the_simulated_tenant_untouched() {
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else { return };
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let reg = Registry::new(dir.path());
    let opened = reg.open(&sim_config("ro"), scope("r1", None), clock.clone());
    let Ok(opened) = opened else {
        panic!("open: {:?}", opened.err())
    };
    let plan = ReadOnly::new(opened.tenant.clone());
    let user = crate::backend::sim::SimTenant::upn(1);
    let grant = Operation::GrantVoiceRoutingPolicy {
        user: user.clone(),
        policy: Some("OC".into()),
    };
    assert!(plan.execute(&Call::action(grant, "k", 1)).await.is_err());
    let read = plan
        .execute(&Call::observation(Operation::GetUser { user }))
        .await;
    assert!(read.is_ok(), "{read:?}");
    let report = plan.report().unwrap_or_default();
    assert_eq!(report.calls.get("grant_voice_routing_policy"), None);
    assert_eq!(report.calls.get("get_user"), Some(&1));
}

const WF: &str = r#"
name: grant
version: 1
subject: user
inputs: {user: {type: upn}}
steps:
  - id: grant
    action: {op: grant_voice_routing_policy, args: {user: "${inputs.user}", policy: OC}}
"#;

async fn seed(
    store: &Arc<dyn Store>,
    committer: &Committer,
    run: &str,
    users: std::ops::Range<u32>,
    now: Timestamp,
) {
    let mut b = Batch::default();
    for (idx, i) in users.enumerate() {
        let upn = crate::backend::sim::SimTenant::upn(i);
        let mut inputs = serde_json::Map::new();
        inputs.insert("user".into(), json!(upn));
        records::put_new_instance(&mut b, &Instance::new(run, idx as u32, upn, inputs, now))
            .expect("our records encode");
    }
    let _ = store;
    assert!(committer.commit(b).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_tenant_share_one_rate_limit() {
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else { return };
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let reg = Registry::new(dir.path());
    let cfg = sim_config("shared");
    // Two runs, two rates: the tenant keeps to the lower one.
    let a = reg.open(&cfg, scope("wave-1", Some(5.0)), clock.clone());
    let b = reg.open(&cfg, scope("wave-2", Some(2.0)), clock.clone());
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("open failed")
    };
    let (Some(la), Some(lb)) = (a.limiter.clone(), b.limiter.clone()) else {
        panic!("no limiter")
    };
    assert!(Arc::ptr_eq(&la, &lb), "one limiter per tenant");
    assert!(Arc::ptr_eq(&a.tenant, &b.tenant), "one client per tenant");
    assert!((la.rate() - 2.0).abs() < 1e-9, "{}", la.rate());
    // A third run without a rate still shares the tenant's limiter.
    let c = reg.open(&cfg, scope("wave-3", None), clock.clone());
    assert!(c.is_ok_and(|c| c.limiter.is_some_and(|l| Arc::ptr_eq(&l, &la))));

    let wf: Arc<Workflow> = match serde_yaml::from_str(WF) {
        Ok(w) => Arc::new(w),
        Err(e) => panic!("{e}"),
    };
    let mut drivers = Vec::new();
    for (run, opened, users) in [("wave-1", &a, 1..7), ("wave-2", &b, 7..13)] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let committer = Committer::start(store.clone(), true);
        seed(&store, &committer, run, users, clock.now()).await;
        drivers.push(Arc::new(Driver {
            store,
            committer,
            clock: clock.clone(),
            tenant: opened.tenant.clone(),
            run_id: run.into(),
            workflow: wf.clone(),
            approvals: vec![],
            on_failure: None,
            manual_ops: vec![],
            window: None,
            concurrency: 4,
            limiter: opened.limiter.clone(),
            call_timeout: Duration::from_secs(120),
            budget: None,
            space: None,
            progress: Arc::new(Progress::default()),
        }));
    }
    let (_tx, rx) = watch::channel(false);
    let tasks: Vec<_> = drivers
        .iter()
        .map(|d| tokio::spawn(d.clone().drive(rx.clone())))
        .collect();
    // Move virtual time in 10 ms steps until both runs are done. Small steps:
    // the audit records when a call ran, the limiter when its slot was, and a
    // stalled test thread must not let virtual time run ahead of the calls.
    for _ in 0..20_000 {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        clock.advance(Duration::from_millis(10));
    }
    for t in tasks {
        let end = t.await;
        assert!(matches!(end, Ok(Ok(DriveEnd::Finished))), "{end:?}");
    }
    // The tenant's own audit log: 12 grants across both runs, never more
    // than 2 in one virtual second.
    let sim = match reg.open(&cfg, scope("check", None), clock.clone()) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    let report = sim.tenant.report().unwrap_or_default();
    assert_eq!(report.calls.get("grant_voice_routing_policy"), Some(&12));
    let audit = open_audit(&reg);
    let mut per_second: BTreeMap<i64, u32> = BTreeMap::new();
    for at in &audit {
        *per_second.entry(at.0 / 1000).or_insert(0) += 1;
    }
    assert_eq!(audit.len(), 12);
    assert!(per_second.values().all(|n| *n <= 2), "{per_second:?}");
    // Paced, not merely lucky: 12 calls at 2/s span 5.5 virtual seconds, less
    // the clock steps a loaded machine lets pass between a slot and its audit.
    let span = audit[audit.len() - 1].since(audit[0]);
    assert!(span >= Duration::from_millis(5400), "{span:?}");
}

/// Instants of the shared tenant's audited actions.
fn open_audit(reg: &Registry) -> Vec<Timestamp> {
    let dir = match reg.sim_dir("shared") {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    let sim = open
        .iter()
        .find(|s| s.dir == dir)
        .and_then(|s| s.sim.upgrade());
    sim.and_then(|s| s.audit_log().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.at)
        .collect()
}
