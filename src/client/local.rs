//! [`Service`] on a store this process opened.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;

use super::service::Service;
use crate::api::{Applied, BackupDone, OperateBody};
use crate::app::outages::{outages_text, Format};
use crate::app::schedules::ScheduleOp;
use crate::app::show::{show_text, status_text};
use crate::app::{App, Result};
use crate::clock::{Clock, SystemClock};
use crate::report::run_report::Format as ReportFormat;
use crate::report::zone::Zone;
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;

/// The state directory, opened by this process.
pub struct Local {
    app: App,
    /// The engine store.
    pub store: Arc<SledStore>,
    committer: OnceLock<Committer>,
}

impl Local {
    /// Over an opened store.
    pub fn new(app: &App, store: SledStore) -> Local {
        Local {
            app: app.clone(),
            store: Arc::new(store),
            committer: OnceLock::new(),
        }
    }

    /// The store's committer (started on first use: reads need none).
    pub fn committer(&self) -> &Committer {
        self.committer
            .get_or_init(|| Committer::start(self.store.clone(), true))
    }
}

#[async_trait]
impl Service for Local {
    async fn resolve_run(&self, run: &str) -> Result<String> {
        crate::app::runs::resolve_run_id(&*self.store, run)
    }

    async fn operate(&self, run: &str, verb: &str, body: &OperateBody) -> Result<Applied> {
        crate::app::operate::operate(&*self.store, self.committer(), run, verb, body).await
    }

    async fn continue_breaker(&self, run: &str, by: &str) -> Result<u32> {
        let mut record = crate::app::runs::load_run(&*self.store, run)?;
        crate::app::runs::accept_failures(&*self.store, self.committer(), &mut record, by).await
    }

    async fn status(&self, run: Option<&str>, json: bool, zone: Zone) -> Result<String> {
        status_text(&*self.store, run, json, zone)
    }

    async fn show(&self, run: &str, subject: &str, json: bool, zone: Zone) -> Result<String> {
        show_text(&*self.store, run, subject, json, zone)
    }

    async fn outages(&self, run: &str, format: Format, zone: Zone) -> Result<String> {
        outages_text(&*self.store, run, format, zone)
    }

    async fn report(&self, run: &str, format: ReportFormat, zone: Option<&str>) -> Result<String> {
        crate::app::report::report_text(&*self.store, run, format, zone)
    }

    async fn backup(&self, dest: &Path) -> Result<BackupDone> {
        crate::app::backup::backup_into(&self.app, &self.store, dest)
    }

    async fn schedule(&self, op: ScheduleOp) -> Result<Value> {
        let committer = self.committer();
        let v = crate::app::schedules::apply(&*self.store, committer, op, SystemClock.now()).await;
        committer.barrier().await?;
        v
    }
}
