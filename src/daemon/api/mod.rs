//! The daemon's JSON API: routes, and the one mapping from an application
//! error to an HTTP answer (`404` for what does not exist, `400` for bad
//! input, `409` for what the state directory's holder will not do, `500` for the rest; the body is `{"error", "hint"}`).

mod backup;
mod cli;
mod operate;
mod report;
mod runs;
mod schedules;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::state::Shared;
use crate::api::ErrorBody;
use crate::app::{Error, Kind};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match self.kind() {
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Input => StatusCode::BAD_REQUEST,
            // The client maps 409 back to exit 4, as a locked store is locally.
            Kind::Locked => StatusCode::CONFLICT,
            Kind::Damaged | Kind::Runtime => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            error: self.to_string(),
            hint: self.hint_text(),
        };
        (status, Json(body)).into_response()
    }
}

/// Every route, behind the token check. The check is a route layer: it runs
/// after routing and before any handler's extractor reads the request.
pub(super) fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/api/runs", get(runs::list).post(runs::start))
        .route("/api/runs/{run}", get(runs::show))
        .route("/api/runs/{run}/subjects/{subject}", get(runs::instance))
        .route("/api/runs/{run}/instances", get(runs::instances))
        .route("/api/runs/{run}/outages", get(runs::outages))
        .route("/api/runs/{run}/{verb}", post(operate::operate))
        .route("/runs/{run}/report.csv", get(report::csv))
        .route("/runs/{run}/report.json", get(report::json))
        .route("/runs/{run}/report.html", get(report::html))
        .route("/api/cli/{command}", get(cli::text))
        .route("/api/cli/plan", post(cli::plan))
        .route("/api/backup", post(backup::backup))
        .route("/api/schedules", get(schedules::list).post(schedules::add))
        .route(
            "/api/schedules/{name}",
            get(schedules::show).delete(schedules::remove),
        )
        .route("/api/schedules/{name}/{verb}", post(schedules::operate))
        .merge(super::web::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            super::auth::require_token,
        ))
        .with_state(daemon)
}
