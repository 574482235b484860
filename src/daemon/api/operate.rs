//! `POST /api/runs/{run}/{approve|signal|cancel|retry|continue|resume}`.

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{Continued, OperateBody, Resumed};
use crate::app::runs::load_run;
use crate::app::{Error, Result};
use crate::daemon::drivers::{apply_input, continue_run, start_driver};
use crate::daemon::state::Shared;

/// An operator input, closing the breaker (`continue`) or driving a run again (`resume`).
pub(super) async fn operate(
    State(d): State<Shared>,
    UrlPath((run, verb)): UrlPath<(String, String)>,
    body: Option<Json<OperateBody>>,
) -> Result<Response> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let by = body.by.as_deref().unwrap_or("api");
    match verb.as_str() {
        "continue" => {
            let accepted = continue_run(&d, &run, by).await?;
            let action = verb.clone();
            Ok(Json(Continued {
                run,
                action,
                accepted,
            })
            .into_response())
        }
        "resume" => {
            start_driver(&d, load_run(&*d.store, &run)?)?;
            let active = d.drivers.is_active(&run);
            Ok(Json(Resumed {
                run,
                action: verb,
                active,
            })
            .into_response())
        }
        _ => {
            let applied = apply_input(&d, &run, &verb, &body).await;
            // Logged once the input reached the instances, whatever it changed.
            let changed = match &applied {
                Ok(a) => Some(a.changed),
                Err(Error::NothingApplies { .. }) => Some(0),
                Err(_) => None,
            };
            if let Some(changed) = changed {
                tracing::info!(run = %run, action = %verb, by = %by, changed, "operator input through the API");
            }
            Ok(Json(applied?).into_response())
        }
    }
}
