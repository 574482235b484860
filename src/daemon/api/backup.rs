//! `POST /api/backup {"dest": "/backups/portflow-2026-11-23"}`: a consistent
//! copy of the state directory while runs go on (their writes wait for the copy).

use axum::extract::State;
use axum::Json;

use crate::api::{BackupBody, BackupDone};
use crate::app::{Error, Result};
use crate::daemon::state::Shared;

/// Take the backup on a blocking thread.
pub(super) async fn backup(
    State(d): State<Shared>,
    body: Option<Json<BackupBody>>,
) -> Result<Json<BackupDone>> {
    let Json(body) =
        body.ok_or_else(|| crate::app::Error::input("send {\"dest\": \"/absolute/new/dir\"}"))?;
    let d2 = d.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::app::backup::backup_into(&d2.app, &d2.store, &body.dest)
    })
    .await
    .map_err(|e| Error::runtime(format!("backup task: {e}")))??;
    tracing::info!(dest = %done.backup.display(), "backup taken");
    Ok(Json(done))
}
