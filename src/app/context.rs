//! A run's context, built once from its stored record: what the state machine
//! needs to decide for any of its instances. The executor's driver is made
//! from it, and operator inputs applied without a driver use it too, so both
//! paths decide with the same approvals, failure policy, window and manual tasks.

use std::sync::Arc;

use super::runs::{pinned_workflow, run_clock, stored_run_file};
use super::{Error, Result};
use crate::backend::{OperationKind, Tenant};
use crate::clock::{SharedClock, Timestamp};
use crate::engine::machine::{Ctx, WindowCalendar};
use crate::engine::run::RunRecord;
use crate::spec::model::{OnFailure, Workflow};
use crate::spec::runfile::RunFile;

/// What deciding a transition of a run's instances needs.
pub struct RunContext {
    /// The composed, pinned workflow.
    pub workflow: Arc<Workflow>,
    /// The run file stored with the run.
    pub file: RunFile,
    /// Gates approved in the run file.
    pub approvals: Vec<String>,
    /// The run file's failure policy.
    pub on_failure: Option<OnFailure>,
    /// Operations the backend does not automate.
    pub manual_ops: Vec<OperationKind>,
    /// The run's porting window.
    pub window: Option<Arc<dyn WindowCalendar>>,
    /// The run's clock.
    pub clock: SharedClock,
}

impl RunContext {
    /// Build from a stored run (its pinned workflow and stored run file).
    pub fn load(record: &RunRecord) -> Result<RunContext> {
        let file = stored_run_file(record)?;
        let workflow = Arc::new(pinned_workflow(record)?);
        let window = match &file.window {
            Some(w) => Some(Arc::new(w.compile().map_err(|e| {
                Error::runtime(format!(
                    "the window stored with run {} no longer compiles: {e}",
                    record.id
                ))
            })?) as Arc<dyn WindowCalendar>),
            None => None,
        };
        Ok(RunContext {
            workflow,
            approvals: file.approvals.clone(),
            on_failure: file.on_failure,
            manual_ops: super::backends::manual_ops(&file),
            window,
            clock: run_clock(record),
            file,
        })
    }

    /// With the manual operations of the tenant the run is driven against.
    pub fn with_tenant(mut self, tenant: &dyn Tenant) -> RunContext {
        self.manual_ops = OperationKind::ALL
            .iter()
            .copied()
            .filter(|k| !tenant.automates(*k))
            .collect();
        self
    }

    /// The machine's context at `now` (no outage gate: only a driver has one).
    pub fn ctx(&self, now: Timestamp) -> Ctx<'_> {
        Ctx {
            wf: &self.workflow,
            run_approvals: &self.approvals,
            on_failure: self.on_failure,
            manual_ops: &self.manual_ops,
            window: self.window.as_deref(),
            outages: None,
            now,
        }
    }
}
