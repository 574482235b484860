//! `/api/runs`: list and start runs, one run's summary, its instances, one
//! instance with its history, its outages.

use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::{InstancesQuery, RunFileBody, RunStarted};
use crate::app::outages::OutageReport;
use crate::app::runs::{load_run, pinned_workflow, run_outcome, started_line};
use crate::app::summary::RunSummary;
use crate::app::{Error, Result};
use crate::daemon::drivers::{launch_run_file, Launched};
use crate::daemon::state::Shared;
use crate::engine::instance::Status;
use crate::store::keys::InstanceKey;
use crate::store::records;

/// `GET /api/runs`: every run's counts (the status page asks every 5 s).
pub(super) async fn list(State(d): State<Shared>) -> Result<Json<Value>> {
    let mut out = Vec::new();
    for r in records::list_runs(&*d.store)? {
        let wf = pinned_workflow(&r)?;
        let mut doc = RunSummary::load_counts(&*d.store, &r, &wf)?.to_json();
        doc["active"] = json!(d.drivers.is_active(&r.id));
        out.push(doc);
    }
    Ok(Json(json!({"runs": out})))
}

/// `POST /api/runs {"run_file": "/abs/path.yaml"}`: store a run and drive it.
pub(super) async fn start(
    State(d): State<Shared>,
    body: Option<Json<RunFileBody>>,
) -> Result<Json<RunStarted>> {
    let Json(body) = body.ok_or_else(|| {
        crate::app::Error::input("send {\"run_file\": \"/absolute/path/to/run.yaml\"}")
    })?;
    match launch_run_file(&d, &body.run_file, None, None, None).await? {
        Launched::NothingLeft => Err(Error::input(format!(
            "{} has no subjects",
            body.run_file.display()
        ))),
        Launched::Run(record) => Ok(Json(RunStarted {
            run: record.id.clone(),
            subjects: record.subjects,
            started: started_line(&record),
        })),
    }
}

/// `GET /api/runs/{run}`: the summary, whether it is driven, its outcome.
pub(super) async fn show(
    State(d): State<Shared>,
    UrlPath(run): UrlPath<String>,
) -> Result<Json<Value>> {
    let r = load_run(&*d.store, &run)?;
    let wf = pinned_workflow(&r)?;
    let summary = RunSummary::load(&*d.store, &r, &wf)?;
    let mut doc = summary.to_json();
    doc["active"] = json!(d.drivers.is_active(&run));
    doc["failed"] = json!(summary.failed());
    doc["outcome"] = run_outcome(&*d.store, &r, &wf)?.to_json();
    Ok(Json(doc))
}

/// `GET /api/runs/{run}/subjects/{subject}`: one instance and its history.
pub(super) async fn instance(
    State(d): State<Shared>,
    UrlPath((run, subject)): UrlPath<(String, String)>,
) -> Result<Json<Value>> {
    let r = load_run(&*d.store, &run)?;
    let idx = records::find_subject(&*d.store, &run, &subject)?.ok_or_else(|| {
        Error::SubjectNotFound {
            run: run.clone(),
            subject,
        }
    })?;
    let key = InstanceKey {
        run: run.clone(),
        idx,
    };
    let inst = records::get_instance(&*d.store, &key)?;
    let events = records::list_events(&*d.store, &key)?;
    Ok(Json(json!({
        "run": run,
        "workflow": {"name": r.workflow.name, "version": r.workflow.version, "hash": r.workflow.hash},
        "instance": inst,
        "events": events,
    })))
}

/// `GET /api/runs/{run}/instances?state=failed&offset=0&limit=100`: a page of a
/// run's instances (subject, state, step, next due instant), in subject order.
pub(super) async fn instances(
    State(d): State<Shared>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<InstancesQuery>,
) -> Result<Json<Value>> {
    let r = load_run(&*d.store, &run)?;
    let wf = pinned_workflow(&r)?;
    let limit = q.limit.min(10_000);
    let mut total = 0usize;
    let mut page = Vec::new();
    records::for_each_instance(&*d.store, &run, &mut |inst| {
        if q.state.as_deref().is_some_and(|s| s != inst.status.name()) {
            return;
        }
        if total >= q.offset && page.len() < limit {
            // Rolled-back instances name no step here.
            let step = match &inst.status {
                Status::Running { step, .. }
                | Status::Compensating { step, .. }
                | Status::Failed { step, .. }
                | Status::NeedsAttention { step, .. } => wf.steps.get(*step).map(|s| s.id.clone()),
                _ => None,
            };
            page.push(json!({
                "idx": inst.idx,
                "subject": inst.subject,
                "state": inst.status.name(),
                "step": step,
                "due": inst.due.map(|t| t.rfc3339()),
            }));
        }
        total += 1;
    })?;
    Ok(Json(
        json!({"run": run, "total": total, "offset": q.offset, "instances": page}),
    ))
}

/// `GET /api/runs/{run}/outages`: what `outages --json` prints.
pub(super) async fn outages(
    State(d): State<Shared>,
    UrlPath(run): UrlPath<String>,
) -> Result<Json<Value>> {
    let r = load_run(&*d.store, &run)?;
    Ok(Json(OutageReport::load(&*d.store, &r)?.to_json()))
}
