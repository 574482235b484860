//! What CLI commands print, made here for a CLI that finds the state
//! directory held by this daemon: `GET /api/cli/{status|show|outages|report|sim-log|sim-outages}`
//! and `POST /api/cli/plan`; and `GET /api/cli/resolve?run=PREFIX`, the full id
//! of the run a prefix names.

use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;

use crate::api::{CliQuery, Output, RunFileBody};
use crate::app::outages::{outages_text, Format};
use crate::app::show::{show_text, status_text};
use crate::app::{Error, Result};
use crate::daemon::state::Shared;
use crate::report::run_report::Format as ReportFormat;
use crate::report::zone::{UnknownZone, Zone};

/// `GET /api/cli/{command}?run=…&subject=…&json=…` (`resolve`: the run's full id).
pub(super) async fn text(
    State(d): State<Shared>,
    UrlPath(command): UrlPath<String>,
    Query(q): Query<CliQuery>,
) -> Result<Json<Output>> {
    let run = (!q.run.is_empty()).then_some(q.run.as_str());
    let zone: Zone = match q.tz.as_str() {
        "" => Zone::Utc,
        tz => tz
            .parse()
            .map_err(|e: UnknownZone| Error::input(e.to_string()))?,
    };
    let output = match command.as_str() {
        "resolve" => crate::app::runs::resolve_run_id(&*d.store, &q.run)?,
        "status" => status_text(&*d.store, run, q.json, zone)?,
        "show" => show_text(&*d.store, &q.run, &q.subject, q.json, zone)?,
        "outages" => outages_text(&*d.store, &q.run, Format::from_flags(q.json, q.csv)?, zone)?,
        "report" => crate::app::report::report_text(
            &*d.store,
            &q.run,
            report_format(&q.format)?,
            (!q.tz.is_empty()).then_some(q.tz.as_str()),
        )?,
        "sim-log" | "sim-outages" => crate::app::sim::sim_text(
            &d.app,
            Some(&*d.store),
            command.trim_start_matches("sim-"),
            &q.tenant,
            (!q.subject.is_empty()).then_some(q.subject.as_str()),
            q.json,
        )?,
        other => {
            return Err(Error::UnknownAction {
                verb: other.to_string(),
                expected: "resolve, status, show, outages, report, sim-log or sim-outages",
            })
        }
    };
    Ok(Json(Output { output, code: None }))
}

/// `POST /api/cli/plan {"run_file": "/abs/path.yaml", "json": false}`: what `plan` prints.
pub(super) async fn plan(
    State(d): State<Shared>,
    body: Option<Json<RunFileBody>>,
) -> Result<Json<Output>> {
    let Json(body) =
        body.ok_or_else(|| crate::app::Error::input("send {\"run_file\": \"/absolute/path\"}"))?;
    let app = d.app.with_json(body.json);
    let format = body.format.as_deref().map(report_format).transpose()?;
    let loaded = crate::app::runpath::load(&body.run_file, &app.search_dirs())?;
    let (output, code) = crate::app::plan::plan_loaded(&app, &loaded, format).await?;
    Ok(Json(Output {
        output,
        code: Some(code),
    }))
}

/// A report format named in a request.
pub(super) fn report_format(name: &str) -> Result<ReportFormat> {
    ReportFormat::parse(name)
        .ok_or_else(|| Error::input(format!("unknown report format {name:?}: json, csv or html")))
}
