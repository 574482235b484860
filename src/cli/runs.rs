//! `run`, `resume`, `approve`: create runs and drive them.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use super::{exit, inspect, print_json, progress, App, CliError};
use crate::backend::sim::SimTenant;
use crate::backend::Tenant;
use crate::clock::{Clock, ScaledClock, SharedClock, Stopwatch, SystemClock};
use crate::engine::executor::{DriveEnd, Driver, Progress};
use crate::engine::instance::Instance;
use crate::engine::limiter::RateLimiter;
use crate::engine::run::{new_run_id, RunRecord, WorkflowPin};
use crate::spec::runfile::{BackendConfig, RunFile};
use crate::spec::{self, model::Workflow};
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;
use crate::store::{records, Batch, Store};

/// Instances written per batch when a run is created.
const CREATE_CHUNK: usize = 5000;

pub async fn run(app: &App, file: &Path) -> Result<u8, CliError> {
    let loaded = spec::load_run(file, &app.search_dirs())?;
    super::print_warnings(&loaded.warnings());
    let store: Arc<SledStore> = match app.open_store() {
        Ok(s) => Arc::new(s),
        Err(e) => return super::remote::run(app, e, file).await,
    };
    let committer = Committer::start(store.clone(), true);
    let all: Vec<&spec::runfile::Subject> = loaded.subjects.iter().collect();
    // A named simulated tenant's clock goes on where its last run left it.
    let opts = NewRun {
        virtual_start: super::simcmd::run_start(app, &loaded, None)?,
        ..NewRun::default()
    };
    let (record, clock) = create_run(&*store, &committer, &loaded, file, &all, opts).await?;
    if !app.json {
        println!("{}", started_line(&record));
    }
    drive(app, store, committer, record, clock).await
}

/// The line `run` prints when a run starts.
pub(super) fn started_line(record: &RunRecord) -> String {
    format!(
        "run {}: {} v{} ({}), {} subjects",
        record.id,
        record.workflow.name,
        record.workflow.version,
        &record.workflow.hash[..12.min(record.workflow.hash.len())],
        record.subjects
    )
}

/// Salt that keeps run ids unique when one process starts several in one millisecond.
static RUN_SALT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh run id that no stored run has.
pub(super) fn fresh_run_id(store: &dyn Store) -> Result<String, CliError> {
    loop {
        let salt = RUN_SALT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = new_run_id(
            SystemClock.now(),
            u64::from(std::process::id()) ^ salt.rotate_left(32),
        );
        if records::get_run(store, &id)?.is_none() {
            return Ok(id);
        }
    }
}

/// Options of [`create_run`].
#[derive(Debug, Default)]
pub(super) struct NewRun {
    /// Label instead of the run file's.
    pub label: Option<String>,
    /// Run id chosen beforehand (a schedule records it first).
    pub id: Option<String>,
    /// Virtual instant a simulated run starts at (a rehearsing daemon's).
    pub virtual_start: Option<crate::clock::Timestamp>,
}

/// Store a new run of `subjects` (a subset of `loaded`'s, in order) and return it
/// with its clock. The run record is written last, so a crash part-way leaves
/// only instances no run points at, never a run with missing instances.
pub(super) async fn create_run(
    store: &dyn Store,
    committer: &Committer,
    loaded: &spec::LoadedRun,
    file: &Path,
    subjects: &[&spec::runfile::Subject],
    opts: NewRun,
) -> Result<(RunRecord, SharedClock), CliError> {
    let NewRun {
        label,
        id,
        virtual_start,
    } = opts;
    let scale = loaded.file.time_scale;
    // A daemon rehearsing on a virtual clock starts simulated runs at its own instant.
    let anchor = (scale != 1.0).then(|| {
        let mut c = ScaledClock::starting_now(scale);
        if let Some(t) = virtual_start {
            c.virtual_anchor = t;
        }
        c
    });
    let clock: SharedClock = match anchor {
        Some(c) => Arc::new(c),
        None => Arc::new(SystemClock),
    };
    let now = clock.now();
    let id = match id {
        Some(id) => id,
        None => fresh_run_id(store)?,
    };
    let base_dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base_dir = std::fs::canonicalize(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let wf = &loaded.workflow;
    let record = RunRecord {
        id: id.clone(),
        label: label.or_else(|| loaded.file.label.clone()),
        created_at: now,
        workflow: WorkflowPin::of(wf),
        then: loaded.then.iter().map(WorkflowPin::of).collect(),
        run_origin: super::display(file),
        run_text: loaded.text.clone(),
        base_dir,
        clock: anchor,
        subjects: subjects.len() as u32,
        finished_at: None,
        breaker: Default::default(),
    };
    let mut batch = Batch::default();
    for (i, subject) in subjects.iter().enumerate() {
        let mut inputs = serde_json::Map::new();
        for name in wf.workflow.inputs.keys() {
            let v = subject
                .inputs
                .get(name)
                .map_or(Value::Null, |s| Value::String(s.clone()));
            inputs.insert(name.clone(), v);
        }
        let subject_name = subject
            .inputs
            .get(&wf.workflow.subject)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"));
        let inst = Instance::new(&id, i as u32, subject_name, inputs, now);
        records::put_new_instance(&mut batch, &inst);
        if batch.ops.len() >= CREATE_CHUNK * 3 {
            committer.commit(std::mem::take(&mut batch)).await?;
        }
    }
    records::put_run(&mut batch, &record);
    committer.commit(batch).await?;
    Ok((record, clock))
}

pub async fn resume(
    app: &App,
    run: Option<&str>,
    continue_by: Option<&str>,
) -> Result<u8, CliError> {
    if continue_by.is_some() && run.is_none() {
        return Err(CliError::input("`resume --continue` needs the run id")
            .hint("portflow resume --continue <run>: `portflow status` lists the runs"));
    }
    let store: Arc<SledStore> = match app.open_store() {
        Ok(s) => Arc::new(s),
        Err(e) => return super::remote::resume(app, e, run, continue_by).await,
    };
    let committer = Committer::start(store.clone(), true);
    if let (Some(id), Some(by)) = (run, continue_by) {
        let mut record = load_run(&*store, id)?;
        let accepted = accept_failures(&*store, &committer, &mut record, by).await?;
        if !app.json {
            println!(
                "run {id}: circuit breaker closed by {by}; {accepted} failure(s) accepted, \
                 new outage steps may start again"
            );
        }
    }
    let runs = match run {
        Some(id) => vec![load_run(&*store, id)?],
        None => records::list_runs(&*store)?
            .into_iter()
            .filter(|r| r.finished_at.is_none())
            .collect(),
    };
    if runs.is_empty() {
        if app.json {
            print_json(&serde_json::json!({"resumed": []}));
        } else {
            println!("nothing to resume: every run has finished");
        }
        return Ok(exit::OK);
    }
    let mut worst = exit::OK;
    for record in runs {
        if !app.json {
            println!("resuming run {} ({})", record.id, record.workflow.name);
        }
        let clock: SharedClock = match record.clock {
            Some(c) => Arc::new(c),
            None => Arc::new(SystemClock),
        };
        let code = drive(app, store.clone(), committer.clone(), record, clock).await?;
        if code == exit::INTERRUPTED {
            return Ok(code);
        }
        worst = worst.max(code);
    }
    Ok(worst)
}

pub(super) fn load_run(store: &dyn Store, id: &str) -> Result<RunRecord, CliError> {
    records::get_run(store, id)?.ok_or_else(|| {
        CliError::input(format!("no run {id:?} in this state directory"))
            .hint("`portflow status` lists the runs; check --state / PORTFLOW_STATE")
    })
}

pub(super) fn pinned_workflow(record: &RunRecord) -> Result<Workflow, CliError> {
    let parse = |pin: &WorkflowPin| {
        spec::parse_workflow(&pin.text, &pin.origin)
            .map(|l| l.workflow)
            .map_err(|e| {
                CliError::runtime(format!(
                    "the workflow {} pinned by run {} no longer parses with this portflow: {}",
                    pin.name,
                    record.id,
                    e.to_string().trim_end()
                ))
                .hint("use the portflow version that started the run")
            })
    };
    let main = parse(&record.workflow)?;
    let then = record
        .then
        .iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(spec::compose(&main, &then))
}

fn stored_run_file(record: &RunRecord) -> Result<RunFile, CliError> {
    serde_yaml::from_str(&record.run_text).map_err(|e| {
        CliError::runtime(format!(
            "the run file stored with run {} no longer parses: {e}",
            record.id
        ))
    })
}

/// A run's tenant, and the simulator handle when simulated (for its report).
type Backend = (Arc<dyn Tenant>, Option<Arc<SimTenant>>);

/// The tenant of a run (and the simulator handle, when simulated).
fn open_backend(
    app: &App,
    store: &dyn Store,
    record: &RunRecord,
    file: &RunFile,
    clock: SharedClock,
) -> Result<Backend, CliError> {
    match &file.backend {
        BackendConfig::Sim(cfg) => {
            let name = cfg.tenant.clone().unwrap_or_else(|| record.id.clone());
            let sim = open_used_sim(app, store, &name, &record.id, cfg, clock)?;
            Ok((sim.clone(), Some(sim)))
        }
    }
}

/// Open simulated tenant `name` for run `run`. The first run to use a tenant
/// records its identity in the engine store (durably, before any call);
/// from then on it must be there and be the same tenant: a missing or
/// re-seeded one is refused instead of seeded anew, as a real tenant would
/// not forget its state.
fn open_used_sim(
    app: &App,
    store: &dyn Store,
    name: &str,
    run: &str,
    cfg: &crate::backend::sim::SimConfig,
    clock: SharedClock,
) -> Result<Arc<SimTenant>, CliError> {
    let dir = app.sim_dir(name)?;
    let Some(used) = records::get_tenant_use(store, name)? else {
        let sim = open_sim(&dir, cfg, clock)?;
        let mut b = Batch::default();
        records::put_tenant_use(
            &mut b,
            &records::TenantUse {
                name: name.to_string(),
                tenant_id: sim.tenant_id().to_string(),
                created_at: sim.created_at(),
                first_run: run.to_string(),
            },
        );
        store.apply(&b)?;
        store.sync()?;
        return Ok(sim);
    };
    let gone = |why: String| CliError {
        code: exit::DAMAGED,
        message: format!(
            "simulated tenant {name:?} ({}) {why}; run {} used it first (seeded {}), and portflow \
             will not seed a new one in its place: a real tenant does not forget its state",
            dir.display(),
            used.first_run,
            used.created_at.rfc3339()
        ),
        hint: Some(format!(
            "restore the state directory from a `portflow backup` (it holds sim/{name}); \
             `portflow verify` checks the rest"
        )),
    };
    let sim = match open_existing_sim(&dir, cfg, clock) {
        Ok(sim) => sim,
        Err(OpenSim::Missing(why)) => return Err(gone(why.to_string())),
        Err(OpenSim::Other(e)) => return Err(e),
    };
    if sim.tenant_id() != used.tenant_id || sim.created_at() != used.created_at {
        return Err(gone(format!(
            "is another tenant now (seeded {})",
            sim.created_at().rfc3339()
        )));
    }
    Ok(sim)
}

/// Why [`open_existing_sim`] failed.
pub(super) enum OpenSim {
    /// No state: the directory is gone or its store is empty.
    Missing(&'static str),
    /// Anything else.
    Other(CliError),
}

/// [`open_sim`] for a tenant that must exist: never seeds.
pub(super) fn open_existing_sim(
    dir: &Path,
    cfg: &crate::backend::sim::SimConfig,
    clock: SharedClock,
) -> Result<Arc<SimTenant>, OpenSim> {
    let mut open = OPEN_SIMS.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    if let Some(sim) = open
        .iter()
        .find(|(d, _)| d == dir)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(sim);
    }
    let sim = match SimTenant::open_existing(dir, cfg, clock) {
        Ok(s) => Arc::new(s),
        Err(crate::backend::sim::SimError::Missing { why, .. }) => {
            return Err(OpenSim::Missing(why))
        }
        Err(e) => return Err(OpenSim::Other(CliError::sim(dir, e))),
    };
    open.push((dir.to_path_buf(), Arc::downgrade(&sim)));
    Ok(sim)
}

/// Simulated tenants open in this process, by directory: runs that share a
/// named tenant (waves of one migration) must share one handle, because sled
/// allows one open per directory.
static OPEN_SIMS: std::sync::Mutex<Vec<(std::path::PathBuf, std::sync::Weak<SimTenant>)>> =
    std::sync::Mutex::new(Vec::new());

/// Open a simulated tenant, or return the handle a running run already has.
pub(super) fn open_sim(
    dir: &Path,
    cfg: &crate::backend::sim::SimConfig,
    clock: SharedClock,
) -> Result<Arc<SimTenant>, CliError> {
    let mut open = OPEN_SIMS.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    if let Some(sim) = open
        .iter()
        .find(|(d, _)| d == dir)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(sim);
    }
    let sim = SimTenant::open(dir, cfg, clock).map_err(|e| CliError::sim(dir, e))?;
    let sim = Arc::new(sim);
    open.push((dir.to_path_buf(), Arc::downgrade(&sim)));
    Ok(sim)
}

/// A driver for a stored run, with what its caller reports on.
pub(super) struct Prepared {
    /// The driver.
    pub driver: Arc<Driver>,
    /// The simulated tenant, when the run uses one.
    pub sim: Option<Arc<SimTenant>>,
    /// The composed, pinned workflow.
    pub workflow: Arc<Workflow>,
}

/// Build the driver of a stored run: pinned workflow, backend, limits, window.
pub(super) fn prepare(
    app: &App,
    store: Arc<SledStore>,
    committer: Committer,
    record: &RunRecord,
    clock: SharedClock,
) -> Result<Prepared, CliError> {
    let file = stored_run_file(record)?;
    let workflow = Arc::new(pinned_workflow(record)?);
    let (tenant, sim) = open_backend(app, &*store, record, &file, clock.clone())?;
    let manual_ops: Vec<crate::backend::OperationKind> = crate::backend::OperationKind::ALL
        .iter()
        .copied()
        .filter(|k| !tenant.automates(*k))
        .collect();
    let limiter = file
        .rate_limit
        .map(|r| Arc::new(RateLimiter::new(clock.clone(), r)));
    let window = match &file.window {
        Some(w) => Some(Arc::new(w.compile().map_err(|e| {
            CliError::runtime(format!(
                "the window stored with run {} no longer compiles: {e}",
                record.id
            ))
        })?)
            as Arc<dyn crate::engine::machine::WindowCalendar>),
        None => None,
    };
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
        match &file.backend {
            BackendConfig::Sim(cfg) => {
                dirs.push(app.sim_dir(cfg.tenant.as_deref().unwrap_or(&record.id))?)
            }
        }
        Some(Arc::new(crate::engine::space::SpaceGuard::new(
            dirs,
            app.min_free,
        )))
    };
    let driver = Arc::new(Driver {
        store,
        committer,
        clock,
        tenant,
        run_id: record.id.clone(),
        workflow: workflow.clone(),
        approvals: file.approvals.clone(),
        on_failure: file.on_failure,
        manual_ops,
        window,
        concurrency: file.concurrency,
        limiter,
        call_timeout: file.call_timeout,
        budget,
        space,
        progress: Arc::new(Progress::default()),
    });
    Ok(Prepared {
        driver,
        sim,
        workflow,
    })
}

/// The clock a stored run runs on.
pub(super) fn run_clock(record: &RunRecord) -> SharedClock {
    match record.clock {
        Some(c) => Arc::new(c),
        None => Arc::new(SystemClock),
    }
}

async fn drive(
    app: &App,
    store: Arc<SledStore>,
    committer: Committer,
    record: RunRecord,
    clock: SharedClock,
) -> Result<u8, CliError> {
    let Prepared {
        driver,
        sim,
        workflow,
    } = prepare(
        app,
        store.clone(),
        committer.clone(),
        &record,
        clock.clone(),
    )?;
    let progress = driver.progress.clone();
    let space = driver.space.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let watch = Stopwatch::start();
    let virtual_start = clock.now();
    let display = progress::Display::start(
        app.json,
        workflow.clone(),
        progress.clone(),
        clock.clone(),
        driver.budget.clone(),
    );
    let end = driver.drive(stop_rx).await;
    display.stop().await;
    signals.abort();
    let end = end?;
    // Re-read: the driver may have stored the breaker's state meanwhile.
    let mut record = records::get_run(&*store, &record.id)?.unwrap_or(record);
    if end == DriveEnd::Finished && record.finished_at.is_none() {
        record.finished_at = Some(clock.now());
        let mut b = Batch::default();
        records::put_run(&mut b, &record);
        committer.commit(b).await?;
    }
    let elapsed = watch.elapsed();
    let virtual_elapsed = clock.now().since(virtual_start);
    let summary = inspect::RunSummary::load(&*store, &record, &workflow)?;
    let outcome = run_outcome(&*store, &record, &workflow)?;
    let code = match end {
        DriveEnd::Stopped => exit::INTERRUPTED,
        _ => outcome.exit_code(),
    };
    let calls = progress.calls.load(std::sync::atomic::Ordering::Relaxed);
    let sim_report = sim.as_ref().map(|s| inspect::sim_report(s));
    if app.json {
        let mut doc = summary.to_json();
        doc["end"] = Value::String(format!("{end:?}"));
        doc["outcome"] = outcome.to_json();
        doc["elapsed_real_s"] = serde_json::json!(elapsed.as_secs_f64());
        doc["elapsed_virtual_s"] = serde_json::json!(virtual_elapsed.as_secs_f64());
        doc["backend_calls_this_session"] = serde_json::json!(calls);
        if let Some(s) = sim_report {
            doc["simulator"] = s;
        }
        print_json(&doc);
    } else {
        print!("{}", summary.render());
        print!("{}", outcome.render_chain());
        println!(
            "elapsed: {} real, {} virtual (time scale {})",
            crate::report::table::human_duration(elapsed),
            crate::report::table::human_duration(virtual_elapsed),
            clock.scale()
        );
        println!(
            "backend calls: {} this session; {:.1} per subject over the run",
            calls,
            summary.calls_per_subject()
        );
        if let Some(s) = &sim_report {
            print!("{}", inspect::render_sim_report(s));
        }
        match end {
            DriveEnd::Stopped => {
                println!("stopped; continue with: portflow resume {}", record.id)
            }
            DriveEnd::Idle { blocked, held } => {
                if blocked > 0 {
                    println!(
                        "{blocked} instance(s) wait for a person (an approval, a signal or a manual task): \
                         `portflow show {} <subject>` says which and how; then portflow resume {}",
                        record.id, record.id
                    );
                }
                let space_held = space.as_ref().map_or(0, |g| g.held());
                if space_held > 0 {
                    println!(
                        "{space_held} instance(s) held before an outage step: the disk holding {} has less \
                         than {} free (--min-free); free some space, then portflow resume {}",
                        app.state.display(),
                        crate::engine::space::human_bytes(app.min_free),
                        record.id
                    );
                }
                if held > space_held {
                    match &record.breaker.tripped {
                        Some(t) => println!(
                            "{held} instance(s) held: the circuit breaker paused new outages after {} failure(s) \
                             (stop_after_failures: {}); look at the failures (`portflow status {}`), then \
                             `portflow resume --continue {}`",
                            t.failures, t.threshold, record.id, record.id
                        ),
                        None => println!(
                            "{held} instance(s) held before an outage step: the out-of-service budget is taken \
                             by subjects that are still out of service (`portflow outages {}`); restore them \
                             (retry, or cancel --rollback), then portflow resume {}",
                            record.id, record.id
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(code)
}

/// The outcome of a stored run (exit code and per-workflow counts).
pub(super) fn run_outcome(
    store: &dyn Store,
    record: &RunRecord,
    workflow: &Workflow,
) -> Result<crate::report::outcome::Outcome, CliError> {
    let names: Vec<String> = std::iter::once(record.workflow.name.clone())
        .chain(record.then.iter().map(|t| t.name.clone()))
        .collect();
    let instances = records::list_instances(store, &record.id)?;
    Ok(crate::report::outcome::Outcome::of(
        workflow, &names, &instances,
    ))
}

/// `resume --continue`: accept the failures counted so far and close the
/// run's circuit breaker, durably, before the run is driven again.
pub(super) async fn accept_failures(
    store: &dyn Store,
    committer: &Committer,
    record: &mut RunRecord,
    by: &str,
) -> Result<u32, CliError> {
    let wf = pinned_workflow(record)?;
    let accepted = crate::engine::budget::count_failures(store, &record.id, &wf)?;
    record.breaker.accepted = accepted;
    record.breaker.tripped = None;
    record
        .breaker
        .continued
        .push(crate::engine::run::Continued {
            at: run_clock(record).now(),
            by: by.to_string(),
            accepted,
        });
    let mut b = Batch::default();
    records::put_run(&mut b, record);
    committer.commit(b).await?;
    Ok(accepted)
}

pub(super) async fn wait_for_stop_signal() {
    StopSignals::install().wait().await
}

#[cfg(unix)]
async fn recv_opt(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Ctrl-C and SIGTERM, listened for from the moment they are installed (so a
/// stop that arrives right after start-up is a clean stop, not a kill).
pub(super) struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Start listening now.
    pub(super) fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Until one arrives.
    pub(super) async fn wait(self) {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (self.term, self.int);
            if term.is_none() && int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = recv_opt(&mut term) => {}
                _ = recv_opt(&mut int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
