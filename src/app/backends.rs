//! The tenants runs talk to, through the backend registry: opening a run's
//! tenant (checking it is the one the run first used), its report figures,
//! the read-only tenant a plan uses, and the simulator's own entry points
//! (`sim` commands, backup) on the registry's shared handles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{App, Error, Result};
use crate::backend::sim::{SimConfig, SimTenant};
use crate::backend::{OperationKind, Presence, ReadOnly, Registry, RegistryError, Scope, Tenant};
use crate::clock::{SharedClock, SystemClock};
use crate::engine::limiter::RateLimiter;
use crate::engine::run::RunRecord;
use crate::report::table::human_duration;
use crate::spec::runfile::{BackendConfig, RunFile};
use crate::store::{records, Batch, Store};

/// A run's tenant figures, for the lines printed at the end of a drive
/// (read when printed, so they cover the whole drive).
pub struct TenantReport(Arc<dyn Tenant>);

impl TenantReport {
    /// For a tenant that keeps figures.
    pub fn of(tenant: &Arc<dyn Tenant>) -> Option<TenantReport> {
        tenant
            .report()
            .is_some()
            .then(|| TenantReport(tenant.clone()))
    }

    /// Outage and call figures.
    pub fn to_json(&self) -> Value {
        let Some(r) = self.0.report() else {
            return Value::Null;
        };
        let mut durations: Vec<u64> = r
            .outages
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
            "outages_recorded": r.outages.len(),
            "outages_ended": durations.len(),
            "outage_ms": {"p50": pct(0.5), "p95": pct(0.95), "max": durations.last()},
            "stats": {
                "calls": r.calls,
                "throttled": r.throttled,
                "rate_limited": r.rate_limited,
                "injected_faults": r.injected_faults,
            },
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

/// A run's tenant as its driver uses it.
pub struct RunTenant {
    /// The client, shared with every run on this tenant in this process.
    pub tenant: Arc<dyn Tenant>,
    /// The tenant's call pacing, shared likewise.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Where the backend keeps local state (for the free-space guard).
    pub dir: Option<PathBuf>,
}

/// Open the tenant of a run through the registry. The first run to use a
/// tenant records its identity in the engine store (durably, before any
/// call); from then on it must be there and be the same tenant: a missing or
/// re-seeded one is refused instead of seeded anew, as a real tenant would
/// not forget its state.
pub fn open_backend(
    app: &App,
    store: &dyn Store,
    record: &RunRecord,
    file: &RunFile,
    clock: SharedClock,
) -> Result<RunTenant> {
    let name = tenant_name(record, file);
    let used = records::get_tenant_use(store, &name)?;
    let scope = Scope {
        run: &record.id,
        rate_limit: file.rate_limit,
        presence: if used.is_some() {
            Presence::MustExist
        } else {
            Presence::SeedIfEmpty
        },
    };
    let gone = |why: String, first_run: &str, seeded: &str| {
        Error::Damaged {
        message: format!(
            "simulated tenant {name:?} ({}) {why}; run {first_run} used it first (seeded {seeded}), and portflow \
             will not seed a new one in its place: a real tenant does not forget its state",
            app.state.join("sim").join(&name).display(),
        ),
        hint: Some(format!(
            "restore the state directory from a `portflow backup` (it holds sim/{name}); \
             `portflow verify` checks the rest"
        )),
    }
    };
    let opened = match Registry::new(&app.state).open(&file.backend, scope, clock) {
        Ok(o) => o,
        Err(RegistryError::Missing { why, .. }) => {
            let (first, seeded) = used
                .as_ref()
                .map(|u| (u.first_run.clone(), u.created_at.rfc3339()))
                .unwrap_or_default();
            return Err(gone(why.to_string(), &first, &seeded));
        }
        Err(e) => return Err(registry_error(e)),
    };
    if let Some(id) = opened.tenant.identity() {
        match &used {
            None => {
                let mut b = Batch::default();
                records::put_tenant_use(
                    &mut b,
                    &records::TenantUse {
                        name: name.clone(),
                        tenant_id: id.tenant_id,
                        created_at: id.created_at,
                        first_run: record.id.clone(),
                    },
                )?;
                store.apply(&b)?;
                store.sync()?;
            }
            Some(u) if id.tenant_id != u.tenant_id || id.created_at != u.created_at => {
                return Err(gone(
                    format!("is another tenant now (seeded {})", id.created_at.rfc3339()),
                    &u.first_run,
                    &u.created_at.rfc3339(),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(RunTenant {
        tenant: opened.tenant,
        limiter: opened.limiter,
        dir: opened.dir,
    })
}

/// The tenant name a run's identity is recorded under.
fn tenant_name(record: &RunRecord, file: &RunFile) -> String {
    match &file.backend {
        BackendConfig::Sim(cfg) => cfg.tenant.clone().unwrap_or_else(|| record.id.clone()),
        BackendConfig::Microsoft(cfg) => format!("microsoft:{}", cfg.tenant_id),
    }
}

/// A registry failure as the application reports it.
fn registry_error(e: RegistryError) -> Error {
    match e {
        RegistryError::BadName(e) => e.into(),
        RegistryError::Missing { name, dir, why } => Error::Damaged {
            message: format!(
                "simulated tenant {name:?} ({}): its store {why}",
                dir.display()
            ),
            hint: Some(super::error::RESTORE_HINT.to_string()),
        },
        RegistryError::Sim { dir, source } => Error::backend(&dir, source),
        e @ RegistryError::Microsoft { .. } => Error::input(e.to_string()).hint(
            "check the run file's backend: block and the credential file; \
             `portflow doctor <run file>` tests the sign-in and the permissions",
        ),
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
        // What neither Graph nor a configured PowerShell part performs.
        BackendConfig::Microsoft(ms) => OperationKind::ALL
            .iter()
            .copied()
            .filter(|k| {
                crate::backend::powershell_config::route_of(
                    *k,
                    ms.graph.enabled != Some(false),
                    &ms.powershell,
                    &ms.routes,
                ) == crate::backend::powershell_config::RouteChoice::Manual
            })
            .collect(),
    }
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
    crate::backend::registry::sim_handle(&dir_name(dir), dir, cfg, Presence::MustExist, clock)
        .map_err(|e| match e {
            RegistryError::Missing { why, .. } => OpenSim::Missing(why),
            e => OpenSim::Other(registry_error(e)),
        })
}

/// Open a simulated tenant (seeding an empty one), or share the handle a
/// running run already has.
pub fn open_sim(dir: &Path, cfg: &SimConfig, clock: SharedClock) -> Result<Arc<SimTenant>> {
    crate::backend::registry::sim_handle(&dir_name(dir), dir, cfg, Presence::SeedIfEmpty, clock)
        .map_err(registry_error)
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Open an existing tenant with no config of its own (reading its log, a
/// backup): it keeps its own seed and users. Shares a running run's handle.
pub fn open_existing_default(dir: &Path) -> std::result::Result<Arc<SimTenant>, OpenSim> {
    open_existing_sim(dir, &SimConfig::default(), Arc::new(SystemClock))
}

/// The simulated tenants' directory names under `<state>/sim`, sorted
/// (hidden ones, such as an older plan's `.plan-<pid>` scratch, left out).
pub fn sim_tenant_names(app: &App) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app.state.join("sim"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether `dir` holds a simulated tenant: sled's data file is there. A bare
/// directory is not one (opening it would seed a tenant).
pub fn is_tenant(dir: &std::path::Path) -> bool {
    dir.join("db").is_file()
}

/// The tenant a plan reads, and the scratch directory of a fresh one.
pub struct PlanTenant {
    /// Read-only: a plan cannot write, whatever the workflow says.
    tenant: Option<Arc<dyn Tenant>>,
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
                        tenant: Some(read_only(open_sim(&dir, cfg, clock)?)),
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
                        tenant: Some(read_only(Arc::new(sim))),
                        scratch: Some(scratch),
                        note: format!(
                            "a fresh simulated tenant (seed {}, {} users), as the run will get",
                            cfg.seed, cfg.users
                        ),
                    })
                }
            },
            BackendConfig::Microsoft(cfg) => {
                let scope = Scope {
                    run: "plan",
                    rate_limit: loaded.file.rate_limit,
                    presence: Presence::MustExist,
                };
                let opened = Registry::new(&app.state)
                    .open(&loaded.file.backend, scope, clock)
                    .map_err(registry_error)?;
                Ok(PlanTenant {
                    tenant: Some(Arc::new(ReadOnly::new(opened.tenant))),
                    scratch: None,
                    note: format!(
                        "Microsoft tenant {} through Graph, read-only",
                        cfg.tenant_id
                    ),
                })
            }
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> Option<&dyn Tenant> {
        self.tenant.as_deref()
    }

    /// Calls it received, per operation (JSON), then close it.
    pub fn close(mut self) -> Value {
        let reads = self
            .tenant
            .take()
            .and_then(|t| t.report())
            .map(|r| serde_json::to_value(r.calls).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        // The tenant closes its store before its directory goes.
        drop(self.scratch.take());
        reads
    }
}

fn read_only(sim: Arc<SimTenant>) -> Arc<dyn Tenant> {
    Arc::new(ReadOnly::new(sim))
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
