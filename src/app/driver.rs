//! Driver assembly: a stored run's executor, from its context, its tenant and
//! the run file's limits.

use std::sync::Arc;

use super::context::RunContext;
use super::{App, Result};
use crate::engine::executor::{Driver, Progress};
use crate::engine::run::RunRecord;
use crate::spec::model::Workflow;
use crate::store::commit::Committer;
use crate::store::Store;

/// A driver for a stored run, with what its caller reports on.
pub struct Prepared {
    /// The driver.
    pub driver: Arc<Driver>,
    /// The simulated tenant's report figures, when the run uses one.
    pub report: Option<super::backends::TenantReport>,
    /// The composed, pinned workflow.
    pub workflow: Arc<Workflow>,
}

/// Build the driver of a stored run from its [`RunContext`]: backend, limits,
/// window, budget, free-space guard.
pub fn prepare(
    app: &App,
    store: Arc<dyn Store>,
    committer: Committer,
    record: &RunRecord,
) -> Result<Prepared> {
    let ctx = RunContext::load(record)?;
    let opened = super::backends::open_backend(app, &*store, record, &ctx.file, ctx.clock.clone())?;
    let tenant = opened.tenant;
    let report = super::backends::TenantReport::of(&tenant);
    // What the tenant itself automates decides the manual tasks of the drive.
    let ctx = ctx.with_tenant(&*tenant);
    let file = &ctx.file;
    // One limiter per tenant, shared with every run on it (the service
    // throttles per tenant and app).
    let limiter = opened.limiter;
    let threshold = file
        .stop_after_failures
        .map(|l| l.threshold(record.subjects));
    let budget = (file.max_out_of_service.is_some() || threshold.is_some()).then(|| {
        Arc::new(crate::engine::budget::OutageBudget::new(
            file.max_out_of_service,
            threshold,
            &record.breaker,
        ))
    });
    // The guard measures where this run writes: the engine store and its tenant.
    // Also with `--min-free 0`, so subjects an earlier session held for space go on.
    let space = {
        let mut dirs = vec![app.engine_dir()];
        dirs.extend(opened.dir);
        Some(Arc::new(crate::engine::space::SpaceGuard::new(
            dirs,
            app.min_free,
        )))
    };
    let driver = Arc::new(Driver {
        store,
        committer,
        clock: ctx.clock.clone(),
        tenant,
        run_id: record.id.clone(),
        workflow: ctx.workflow.clone(),
        approvals: ctx.approvals.clone(),
        on_failure: ctx.on_failure,
        manual_ops: ctx.manual_ops.clone(),
        window: ctx.window.clone(),
        concurrency: file.concurrency,
        call_timeout: file.call_timeout,
        limiter,
        budget,
        space,
        progress: Arc::new(Progress::default()),
    });
    Ok(Prepared {
        driver,
        report,
        workflow: ctx.workflow,
    })
}
