//! The daemon's run drivers: one task per run being driven, with an inbox for
//! operator inputs; starting runs from run files (the API and schedules) and
//! applying operator inputs to runs whether a driver owns them or not.

use std::collections::HashMap;
use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use super::state::{Daemon, Role, Shared};
use crate::api::{Applied, OperateBody};
use crate::app::driver::prepare;
use crate::app::operate::{self, OpenRun, Target};
use crate::app::runs::{create_run, finish_run, load_run, NewRun};
use crate::app::{Error, Result};
use crate::engine::executor::Inbound;
use crate::engine::machine::UNEXPECTED;
use crate::engine::run::RunRecord;
use crate::store::records;

/// Drive `record` in the background; its inbox is registered for operator inputs.
/// Does nothing if it is already being driven.
pub(crate) fn start_driver(daemon: &Shared, record: RunRecord) -> Result<()> {
    if daemon.drivers.is_active(&record.id) {
        return Ok(());
    }
    if daemon.role == Role::Foreground {
        return Err(daemon.refuse(format!("drive run {}", record.id)));
    }
    let prepared = prepare(
        &daemon.app,
        daemon.store.clone(),
        daemon.committer.clone(),
        &record,
    )?;
    let clock = prepared.driver.clock.clone();
    let (tx, rx) = mpsc::channel(256);
    daemon
        .drivers
        .register(&record.id, tx, prepared.driver.clone());
    let stop = daemon.stop.clone();
    let d = daemon.clone();
    tracing::info!(
        run = %record.id,
        workflow = %record.workflow.name,
        subjects = record.subjects,
        "driving run"
    );
    daemon.drivers.spawn(async move {
        let end = prepared.driver.drive_with_inbox(stop, Some(rx)).await;
        d.drivers.forget(&record.id);
        let id = record.id.clone();
        let result = async {
            let end = end?;
            finish_run(&*d.store, &d.committer, record, end, &clock).await?;
            if end == crate::engine::executor::DriveEnd::Finished {
                tracing::info!(run = %id, states = %state_counts(&d, &id), "run finished");
            } else {
                tracing::info!(run = %id, "run driver stopped; the run is resumable");
            }
            Ok::<(), Error>(())
        }
        .await;
        // A queued schedule fire may be waiting for this run to end.
        d.wake.notify_one();
        if let Err(e) = &result {
            tracing::error!(run = %id, "run driver failed: {e}");
        }
        result
    });
    Ok(())
}

/// `succeeded: 4, failed: 1` for the log line of a finished run.
fn state_counts(d: &Daemon, run: &str) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for i in records::list_instances(&*d.store, run).unwrap_or_default() {
        *counts.entry(i.status.name()).or_insert(0) += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    parts.join(", ")
}

/// Close a run's circuit breaker: through its live driver when it is being
/// driven, else in the stored run record (the next drive starts closed).
pub(crate) async fn continue_run(d: &Shared, run: &str, by: &str) -> Result<u32> {
    match d.drivers.driver(run) {
        Some(driver) => Ok(driver.continue_breaker(by).await?),
        None => {
            let mut record = load_run(&*d.store, run)?;
            crate::app::runs::accept_failures(&*d.store, &d.committer, &mut record, by).await
        }
    }
}

/// Apply an operator input: a run being driven takes it through its driver,
/// which owns the instances; the others through the store
/// ([`operate::apply_input`]), after which a run with work again is driven.
pub(crate) async fn apply_input(
    d: &Shared,
    run_id: &str,
    verb: &str,
    body: &OperateBody,
) -> Result<Applied> {
    // A foreground drive that is ending owns its instances until its end is stored.
    d.drivers.wait_released(run_id).await?;
    let _starting = match d.role {
        Role::Foreground => Some(d.drivers.starting.lock().await),
        Role::Daemon => None,
    };
    let mut run = OpenRun::load(&*d.store, run_id)?;
    let input = operate::parse_verb(&run.ctx.workflow, verb, body)?;
    let target = Target::of_body(&run.ctx.workflow, verb, body)?;
    let sel = run.select(&*d.store, &target, &input)?;
    if !sel.unknown.is_empty() {
        return Ok(operate::unknown_subjects(run_id, verb, sel.unknown));
    }
    // A bulk request answers per subject: one failing does not stop the others.
    let bulk = body.is_bulk();
    let sender = d.drivers.inbox(run_id);
    let mut outcomes: HashMap<u32, operate::InstanceOutcome> = HashMap::new();
    let mut driven = false;
    let mut offline = Vec::new();
    for &idx in &sel.idx {
        let routed = match &sender {
            Some(tx) => {
                let (reply, answer) = oneshot::channel();
                let sent = tx
                    .send(Inbound {
                        idx,
                        input: input.clone(),
                        reply,
                    })
                    .await
                    .is_ok();
                match (sent, if sent { answer.await.ok() } else { None }) {
                    (true, Some(Ok(rule))) => {
                        outcomes.insert(idx, Ok(rule != UNEXPECTED));
                        driven = true;
                        true
                    }
                    (true, Some(Err(e))) if bulk => {
                        outcomes.insert(idx, Err(e.to_string()));
                        driven = true;
                        true
                    }
                    (true, Some(Err(e))) => return Err(e.into()),
                    _ => false,
                }
            }
            None => false,
        };
        if !routed {
            offline.push(idx);
        }
    }
    if !offline.is_empty() {
        let e = operate::apply_input(&*d.store, &d.committer, &mut run, &offline, &input).await?;
        outcomes.extend(e.each.iter().map(|&(i, c)| (i, Ok(c))));
        // A foreground drive does not take on runs: they wait for `resume`.
        if e.changed > 0 && run.record.finished_at.is_none() && d.role == Role::Daemon {
            start_driver(d, run.record.clone())?;
            driven = true;
        }
    }
    // Instances changed outside the cache's view; the page and /metrics read them again.
    d.scans.invalidate();
    let mut applied = if bulk {
        operate::bulk_applied(run_id, verb, &sel, &outcomes)
    } else {
        let changed = outcomes.values().filter(|o| matches!(o, Ok(true))).count();
        operate::applied(run_id, verb, changed, sel.idx.len() - changed)?
    };
    applied.driven = driven;
    Ok(applied)
}

/// What [`launch_run_file`] did.
pub(crate) enum Launched {
    /// Stored this run and started driving it.
    Run(Box<RunRecord>),
    /// A wave found no subject left to migrate; nothing was stored.
    NothingLeft,
}

/// Load a run file, store a run of all its subjects (or of the next `wave` not yet
/// migrated) under `id` (or a fresh id), and drive it.
pub(crate) async fn launch_run_file(
    d: &Shared,
    file: &Path,
    wave: Option<usize>,
    label: Option<String>,
    id: Option<String>,
) -> Result<Launched> {
    if d.role == Role::Foreground {
        return Err(d.refuse("start another run".to_string()));
    }
    let loaded = crate::app::runpath::load(file, &d.app.search_dirs())?;
    // Scheduled waves have no terminal: the journal gets the warnings.
    for w in loaded.warnings() {
        tracing::warn!(warning = %w, "workflow warning");
    }
    let picked: Vec<&crate::spec::runfile::Subject> = match wave {
        None => loaded.subjects.iter().collect(),
        Some(n) => crate::app::waves::next_wave(&*d.store, &loaded, n)?,
    };
    if picked.is_empty() {
        return Ok(Launched::NothingLeft);
    }
    let (record, _) = create_run(
        &*d.store,
        &d.committer,
        &loaded,
        file,
        &picked,
        NewRun {
            label,
            id,
            virtual_start: crate::app::sim::run_start(&d.app, &loaded, Some(d.clock.now()))?,
        },
    )
    .await?;
    start_driver(d, record.clone())?;
    Ok(Launched::Run(Box::new(record)))
}
