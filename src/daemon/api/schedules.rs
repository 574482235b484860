//! `/api/schedules`: list, show, add, remove, pause and resume schedules.
//! Edits hold the daemon's schedule lock (fires never interleave) and wake
//! the scheduler.

use axum::extract::{Path as UrlPath, State};
use axum::Json;
use serde_json::Value;

use crate::api::AddSchedules;
use crate::app::schedules::{self, ScheduleOp};
use crate::app::{Error, Result};
use crate::daemon::state::Shared;

async fn edit(d: &Shared, op: ScheduleOp) -> Result<Json<Value>> {
    let result = {
        let _guard = d.schedules.lock().await;
        schedules::apply(&*d.store, &d.committer, op, d.clock.now()).await
    };
    d.wake.notify_one();
    Ok(Json(result?))
}

/// `GET /api/schedules`.
pub(super) async fn list(State(d): State<Shared>) -> Result<Json<Value>> {
    Ok(Json(schedules::list_json(&*d.store, d.clock.now())?))
}

/// `GET /api/schedules/{name}`.
pub(super) async fn show(
    State(d): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>> {
    Ok(Json(schedules::show_json(&*d.store, &name, d.clock.now())?))
}

/// `POST /api/schedules {"schedules": [...], "replace": false}`. Run file paths
/// follow the API's rule, checked by [`schedules::add`] (the CLI makes them absolute).
pub(super) async fn add(
    State(d): State<Shared>,
    body: Option<Json<AddSchedules>>,
) -> Result<Json<Value>> {
    let Json(body) = body.ok_or_else(|| {
        crate::app::Error::input("send {\"schedules\": [ {name, cron, timezone, launch, …} ]}")
    })?;
    let op = ScheduleOp::Add {
        specs: body.schedules,
        replace: body.replace,
    };
    edit(&d, op).await
}

/// `DELETE /api/schedules/{name}`.
pub(super) async fn remove(
    State(d): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>> {
    edit(&d, ScheduleOp::Remove(name)).await
}

/// `POST /api/schedules/{name}/{pause|resume}`.
pub(super) async fn operate(
    State(d): State<Shared>,
    UrlPath((name, verb)): UrlPath<(String, String)>,
) -> Result<Json<Value>> {
    let op = match verb.as_str() {
        "pause" => ScheduleOp::Pause(name),
        "resume" => ScheduleOp::Resume(name),
        other => {
            return Err(Error::UnknownAction {
                verb: other.to_string(),
                expected: "pause or resume",
            })
        }
    };
    edit(&d, op).await
}
