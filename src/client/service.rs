//! What a command asks of the state directory's owner, whoever that is: this
//! process (the store opened here) or the daemon that holds it.

use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;

use crate::api::{Applied, BackupDone, OperateBody};
use crate::app::outages::Format;
use crate::app::schedules::ScheduleOp;
use crate::app::Result;
use crate::report::run_report::Format as ReportFormat;
use crate::report::zone::Zone;

/// The operations both owners of a state directory serve, with the same answers.
#[async_trait]
pub trait Service: Send + Sync {
    /// The full id of the run `run` names (its id or a unique prefix of it).
    async fn resolve_run(&self, run: &str) -> Result<String>;
    /// `approve`, `signal`, `cancel`, `retry` on run `run`.
    async fn operate(&self, run: &str, verb: &str, body: &OperateBody) -> Result<Applied>;
    /// `resume --continue`: close run `run`'s circuit breaker; the failures accepted.
    async fn continue_breaker(&self, run: &str, by: &str) -> Result<u32>;
    /// What `status [RUN]` prints.
    async fn status(&self, run: Option<&str>, json: bool, zone: Zone) -> Result<String>;
    /// What `show RUN SUBJECT` prints.
    async fn show(&self, run: &str, subject: &str, json: bool, zone: Zone) -> Result<String>;
    /// What `outages RUN` prints.
    async fn outages(&self, run: &str, format: Format, zone: Zone) -> Result<String>;
    /// What `report RUN` writes, times in `zone` (default: the run's).
    async fn report(&self, run: &str, format: ReportFormat, zone: Option<&str>) -> Result<String>;
    /// `backup DEST` (an absolute path).
    async fn backup(&self, dest: &Path) -> Result<BackupDone>;
    /// A `schedule …` operation; the answer is the schedule view document.
    async fn schedule(&self, op: ScheduleOp) -> Result<Value>;
}
