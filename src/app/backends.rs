//! The tenants runs talk to. Today every backend is the simulated tenant, and
//! this file is the one place outside `src/backend/` that knows it: opening a
//! run's tenant (checking it is the one the run first used), sharing one handle
//! per tenant directory within the process, its report figures, and where its
//! state lives. A backend registry replaces this file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{App, Error, Result};
use crate::backend::sim::{SimConfig, SimError, SimTenant};
use crate::backend::{OperationKind, Tenant};
use crate::clock::{SharedClock, SystemClock};
use crate::engine::run::RunRecord;
use crate::report::table::human_duration;
use crate::spec::runfile::{BackendConfig, RunFile};
use crate::store::{records, Batch, Store};

/// A run's simulated tenant, for the figures printed at the end of a drive.
pub struct TenantReport(Arc<SimTenant>);

impl TenantReport {
    /// Outage and call figures from the simulator.
    pub fn to_json(&self) -> Value {
        let sim = &self.0;
        let outages = sim.outages().unwrap_or_default();
        let mut durations: Vec<u64> = outages
            .iter()
            .filter_map(|o| o.end.map(|e| e.since(o.start).as_millis() as u64))
            .collect();
        durations.sort_unstable();
        let pct = |p: f64| -> Option<u64> {
            if durations.is_empty() {
                None
            } else {
                let i = ((durations.len() - 1) as f64 * p).round() as usize;
                durations.get(i).copied()
            }
        };
        json!({
            "outages_recorded": outages.len(),
            "outages_ended": durations.len(),
            "outage_ms": {"p50": pct(0.5), "p95": pct(0.95), "max": durations.last()},
            "stats": serde_json::to_value(sim.stats()).unwrap_or(Value::Null),
        })
    }
}

/// Human form of [`TenantReport::to_json`].
pub fn render_tenant_report(v: &Value) -> String {
    let ms = |k: &str| {
        v["outage_ms"][k].as_u64().map_or("-".to_string(), |m| {
            human_duration(std::time::Duration::from_millis(m))
        })
    };
    format!(
        "outage per subject (simulated tenant): {} ended of {}; median {}, p95 {}, max {}\n",
        v["outages_ended"],
        v["outages_recorded"],
        ms("p50"),
        ms("p95"),
        ms("max")
    )
}

/// The tenant of a run, and its report figures when it has them.
pub fn open_backend(
    app: &App,
    store: &dyn Store,
    record: &RunRecord,
    file: &RunFile,
    clock: SharedClock,
) -> Result<(Arc<dyn Tenant>, Option<TenantReport>)> {
    match &file.backend {
        BackendConfig::Sim(cfg) => {
            let name = cfg.tenant.clone().unwrap_or_else(|| record.id.clone());
            let sim = open_used_sim(app, store, &name, &record.id, cfg, clock)?;
            Ok((sim.clone(), Some(TenantReport(sim))))
        }
    }
}

/// Operations a run's backend does not automate, from its stored config (for
/// operator inputs, which do not open the tenant).
pub fn manual_ops(file: &RunFile) -> Vec<OperationKind> {
    match &file.backend {
        BackendConfig::Sim(cfg) => OperationKind::ALL
            .iter()
            .copied()
            .filter(|k| cfg.manual.contains(k))
            .collect(),
    }
}

/// Where a run's tenant keeps state on this machine (for the free-space guard).
pub fn tenant_dir(app: &App, record: &RunRecord, file: &RunFile) -> Result<Option<PathBuf>> {
    match &file.backend {
        BackendConfig::Sim(cfg) => Ok(Some(
            app.sim_dir(cfg.tenant.as_deref().unwrap_or(&record.id))?,
        )),
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
    cfg: &SimConfig,
    clock: SharedClock,
) -> Result<Arc<SimTenant>> {
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
    let gone = |why: String| Error::Damaged {
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
pub enum OpenSim {
    /// No state: the directory is gone or its store is empty.
    Missing(&'static str),
    /// Anything else.
    Other(Error),
}

/// [`open_sim`] for a tenant that must exist: never seeds.
pub fn open_existing_sim(
    dir: &Path,
    cfg: &SimConfig,
    clock: SharedClock,
) -> std::result::Result<Arc<SimTenant>, OpenSim> {
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
        Err(SimError::Missing { why, .. }) => return Err(OpenSim::Missing(why)),
        Err(e) => return Err(OpenSim::Other(Error::backend(dir, e))),
    };
    open.push((dir.to_path_buf(), Arc::downgrade(&sim)));
    Ok(sim)
}

/// Simulated tenants open in this process, by directory: runs that share a
/// named tenant (waves of one migration) must share one handle, because sled
/// allows one open per directory.
static OPEN_SIMS: std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<SimTenant>)>> =
    std::sync::Mutex::new(Vec::new());

/// Open a simulated tenant, or return the handle a running run already has.
pub fn open_sim(dir: &Path, cfg: &SimConfig, clock: SharedClock) -> Result<Arc<SimTenant>> {
    let mut open = OPEN_SIMS.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    if let Some(sim) = open
        .iter()
        .find(|(d, _)| d == dir)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(sim);
    }
    let sim = SimTenant::open(dir, cfg, clock).map_err(|e| Error::backend(dir, e))?;
    let sim = Arc::new(sim);
    open.push((dir.to_path_buf(), Arc::downgrade(&sim)));
    Ok(sim)
}

/// Open an existing tenant with no config of its own (reading its log, a
/// backup): it keeps its own seed and users. Shares a running run's handle.
pub fn open_existing_default(dir: &Path) -> std::result::Result<Arc<SimTenant>, OpenSim> {
    open_existing_sim(dir, &SimConfig::default(), Arc::new(SystemClock))
}

/// Whether `dir` holds a simulated tenant: sled's data file is there. A bare
/// directory is not one (opening it would seed a tenant).
pub fn is_tenant(dir: &std::path::Path) -> bool {
    dir.join("db").is_file()
}

/// The tenant a plan reads, and the scratch directory of a fresh one.
pub struct PlanTenant {
    sim: Option<Arc<SimTenant>>,
    /// Removed after the tenant is closed.
    scratch: Option<Scratch>,
    /// What it is, for the plan's first line.
    pub note: String,
}

impl PlanTenant {
    /// The tenant of `loaded` as its run will see it, opened only to read: a
    /// named tenant must exist; a per-run one is a scratch copy seeded alike,
    /// outside the state directory (a plan creates nothing there).
    pub fn open(
        app: &App,
        loaded: &crate::spec::LoadedRun,
        clock: SharedClock,
    ) -> Result<PlanTenant> {
        match &loaded.file.backend {
            BackendConfig::Sim(cfg) => match &cfg.tenant {
                Some(name) => {
                    let dir = app.sim_dir(name)?;
                    if !is_tenant(&dir) {
                        return Err(Error::input(format!(
                            "simulated tenant {name:?} does not exist in {}",
                            app.state.join("sim").display()
                        ))
                        .hint(format!("create it with: portflow sim init --name {name}")));
                    }
                    Ok(PlanTenant {
                        sim: Some(open_sim(&dir, cfg, clock)?),
                        scratch: None,
                        note: format!("simulated tenant {name:?}"),
                    })
                }
                None => {
                    let scratch = Scratch::new();
                    let sim = SimTenant::open(&scratch.0, cfg, clock).map_err(|e| {
                        Error::runtime(format!("simulated tenant {}: {e}", scratch.0.display()))
                    })?;
                    Ok(PlanTenant {
                        sim: Some(Arc::new(sim)),
                        scratch: Some(scratch),
                        note: format!(
                            "a fresh simulated tenant (seed {}, {} users), as the run will get",
                            cfg.seed, cfg.users
                        ),
                    })
                }
            },
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> Option<&dyn Tenant> {
        self.sim.as_deref().map(|s| s as &dyn Tenant)
    }

    /// Calls it received, per operation (JSON), then close it.
    pub fn close(mut self) -> Value {
        let reads = self
            .sim
            .take()
            .map(|s| serde_json::to_value(s.stats().calls).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        // The tenant closes its store before its directory goes.
        drop(self.scratch.take());
        reads
    }
}

/// A scratch directory in the system's temporary directory, removed on drop
/// (errors included).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Unique per process and per plan: the daemon plans concurrently.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portflow-plan-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
