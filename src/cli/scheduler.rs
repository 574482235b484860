//! The daemon's scheduler: fires schedules at their cron times (catch-up and
//! overlap policies from [`crate::schedule`]), launches runs and waves, and
//! answers the schedule API.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::serve::{launch_run_file, Launched, Shared};
use super::{exit, schedule, CliError};
use crate::clock::Timestamp;
use crate::engine::instance::Status;
use crate::schedule::{FireOutcome, Launch, ScheduleRecord, ScheduleSpec};
use crate::spec::runfile::Subject;
use crate::spec::LoadedRun;
use crate::store::{records, Batch, Store};

/// Longest the scheduler sleeps before looking again (clock jumps, suspend).
const MAX_NAP: Duration = Duration::from_secs(60);

/// The next `n` subjects of a run file not yet migrated: subjects are taken in
/// file order, skipping any that a run of the same workflow has already
/// succeeded, has in flight, or left failed or needing attention (a person must
/// look at those first). Cancelled and rolled-back subjects are eligible again.
pub(super) fn next_wave<'a>(
    store: &dyn Store,
    loaded: &'a LoadedRun,
    n: usize,
) -> Result<Vec<&'a Subject>, CliError> {
    let wf = &loaded.workflow.workflow;
    let mut taken: HashSet<String> = HashSet::new();
    for run in records::list_runs(store)? {
        if run.workflow.name != wf.name {
            continue;
        }
        records::for_each_instance(store, &run.id, &mut |inst| {
            if !matches!(inst.status, Status::Cancelled | Status::RolledBack { .. }) {
                taken.insert(inst.subject);
            }
        })?;
    }
    let mut seen = HashSet::new();
    Ok(loaded
        .subjects
        .iter()
        .filter(|s| {
            let name = s.inputs.get(&wf.subject).cloned().unwrap_or_default();
            !taken.contains(&name) && seen.insert(name)
        })
        .take(n)
        .collect())
}

fn run_unfinished(store: &dyn Store, run: Option<&str>) -> Result<bool, CliError> {
    Ok(match run {
        Some(id) => records::get_run(store, id)?.is_some_and(|r| r.finished_at.is_none()),
        None => false,
    })
}

async fn save(d: &Shared, rec: &ScheduleRecord) -> Result<(), CliError> {
    let mut b = Batch::default();
    records::put_schedule(&mut b, rec);
    Ok(d.committer.commit(b).await?)
}

/// Launch what `rec` launches for `fire`, recording the run id durably first.
async fn launch(d: &Shared, rec: &mut ScheduleRecord, fire: Timestamp) -> Result<(), CliError> {
    let id = super::runs::fresh_run_id(&*d.store)?;
    rec.pending.push(crate::schedule::PendingLaunch {
        fire,
        run: id.clone(),
    });
    save(d, rec).await?;
    let (file, wave) = match &rec.spec.launch {
        Launch::RunFile { path } => (path.clone(), None),
        Launch::NextWave { run_file, size } => (run_file.clone(), Some(*size)),
    };
    let label = Some(format!("schedule {} at {}", rec.spec.name, fire.rfc3339()));
    let now = d.clock.now();
    match launch_run_file(d, &file, wave, label, Some(id)).await {
        Ok(Launched::Run(run)) => {
            tracing::info!(schedule = %rec.spec.name, run = %run.id, subjects = run.subjects, "schedule fired");
            rec.launched(fire, now, &run.id, run.subjects);
        }
        Ok(Launched::NothingLeft) => {
            tracing::info!(schedule = %rec.spec.name, "schedule fired: no subject left to migrate");
            rec.not_launched(
                fire,
                now,
                FireOutcome::Skipped {
                    reason: "no subject left to migrate".into(),
                },
            );
        }
        Err(e) => {
            tracing::error!(schedule = %rec.spec.name, "schedule could not start a run: {}", e.message);
            rec.not_launched(fire, now, FireOutcome::Failed { error: e.message });
        }
    }
    save(d, rec).await
}

/// After a crash between recording a launch and storing its run: keep launches
/// whose run exists, and redo the others from scratch.
async fn recover(d: &Shared) -> Result<(), CliError> {
    let _guard = d.schedules.lock().await;
    for mut rec in records::list_schedules(&*d.store)? {
        let pending = std::mem::take(&mut rec.pending);
        if pending.is_empty() {
            continue;
        }
        let now = d.clock.now();
        let mut redo = Vec::new();
        for p in pending {
            match records::get_run(&*d.store, &p.run)? {
                Some(run) => rec.launched(p.fire, now, &run.id, run.subjects),
                None => {
                    let b = records::delete_run_data(&*d.store, &p.run)?;
                    d.committer.commit(b).await?;
                    redo.push(p.fire);
                }
            }
        }
        save(d, &rec).await?;
        for fire in redo {
            tracing::warn!(schedule = %rec.spec.name, fire = %fire.rfc3339(), "redoing a launch a crash interrupted");
            launch(d, &mut rec, fire).await?;
        }
    }
    Ok(())
}

/// Fire what is due at `now`; returns when to look next.
async fn tick(d: &Shared, now: Timestamp) -> Result<Option<Timestamp>, CliError> {
    let _guard = d.schedules.lock().await;
    let mut next: Option<Timestamp> = None;
    for mut rec in records::list_schedules(&*d.store)? {
        let compiled = match rec.spec.validate() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(schedule = %rec.spec.name, "schedule no longer valid: {e}");
                continue;
            }
        };
        let before = rec.clone();
        let running = run_unfinished(&*d.store, rec.last_run())?;
        let fires = rec.tick(&compiled, now, running);
        if rec != before {
            save(d, &rec).await?;
        }
        for fire in fires {
            launch(d, &mut rec, fire).await?;
        }
        if let Some(t) = rec.next_wake(&compiled, now) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}

/// The scheduler loop; ends when the daemon stops.
pub(super) async fn run(d: Shared) -> Result<(), CliError> {
    recover(&d).await?;
    let mut stop = d.stop.clone();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let now = d.clock.now();
        let next = tick(&d, now).await?;
        let cap = now.plus(MAX_NAP.mul_f64(d.clock.scale().max(1.0)));
        let until = next.map_or(cap, |t| t.min(cap));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = d.wake.notified() => {}
            _ = d.clock.sleep_until(until) => {}
        }
    }
}

fn reply(result: Result<Value, CliError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = if e.code == exit::INPUT {
                if e.message.starts_with("no schedule") {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::BAD_REQUEST
                }
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let mut body = json!({"error": e.message});
            if let Some(h) = e.hint {
                body["hint"] = json!(h);
            }
            (status, Json(body)).into_response()
        }
    }
}

/// `GET /api/schedules`.
pub(super) async fn list(State(d): State<Shared>) -> Response {
    reply(schedule::list_json(&*d.store, d.clock.now()))
}

/// `GET /api/schedules/{name}`.
pub(super) async fn show(State(d): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    reply(schedule::show_json(&*d.store, &name, d.clock.now()))
}

/// Body of `POST /api/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    schedules: Vec<ScheduleSpec>,
    #[serde(default)]
    replace: bool,
}

/// `POST /api/schedules {"schedules": [...], "replace": false}`. Run file paths
/// follow the API's rule, checked by [`schedule::add`] (the CLI makes them absolute).
pub(super) async fn add(State(d): State<Shared>, body: Option<Json<AddBody>>) -> Response {
    let Some(Json(body)) = body else {
        return reply(Err(CliError::input(
            "send {\"schedules\": [ {name, cron, timezone, launch, …} ]}",
        )));
    };
    let result = {
        let _guard = d.schedules.lock().await;
        schedule::add(
            &*d.store,
            &d.committer,
            body.schedules,
            body.replace,
            d.clock.now(),
        )
        .await
    };
    d.wake.notify_one();
    reply(result)
}

/// `DELETE /api/schedules/{name}`.
pub(super) async fn remove(State(d): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    let result = {
        let _guard = d.schedules.lock().await;
        schedule::remove(&*d.store, &d.committer, &name).await
    };
    d.wake.notify_one();
    reply(result)
}

/// `POST /api/schedules/{name}/{pause|resume}`.
pub(super) async fn operate(
    State(d): State<Shared>,
    UrlPath((name, verb)): UrlPath<(String, String)>,
) -> Response {
    let paused = match verb.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": format!("unknown action {other:?}: pause or resume")})),
            )
                .into_response()
        }
    };
    let result = {
        let _guard = d.schedules.lock().await;
        schedule::set_paused(&*d.store, &d.committer, &name, paused, d.clock.now()).await
    };
    d.wake.notify_one();
    reply(result)
}
