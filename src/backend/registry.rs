//! The backend registry: one client and one rate limiter per tenant, shared
//! by every run on that tenant in this process.
//!
//! A run asks for its tenant with [`Registry::open`]; runs naming the same
//! tenant (waves of one migration, daemon runs side by side) get the same
//! client (for the simulator: the same sled handle, since sled allows one open
//! per directory) and the same [`RateLimiter`], because the service throttles
//! per tenant and application, not per run.
//!
//! **Rates of runs sharing a tenant.** The tenant's limiter keeps to the
//! lowest `rate_limit` any run set while it was open (and the backend's own
//! default, for real tenants that will have one): the strictest limit is the
//! one that keeps every run under the tenant's throttling threshold. It is
//! never raised while a run holds it; once no run holds the tenant, the next
//! open starts afresh. A run that sets no rate shares the limiter when one
//! exists; when none exists it gets none.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::config::BackendConfig;
use super::sim::{SimError, SimTenant, TenantNameError};
use super::Tenant;
use crate::clock::SharedClock;
use crate::engine::limiter::RateLimiter;

/// Whether a tenant may be created by this open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Create (seed) the tenant when it has no state.
    SeedIfEmpty,
    /// The tenant must exist (runs used it): missing state is an error,
    /// never a new tenant, as a real tenant does not forget its state.
    MustExist,
}

/// Who is opening a tenant.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The run id (names a simulated tenant the run file does not name).
    pub run: &'a str,
    /// The run file's `rate_limit`.
    pub rate_limit: Option<f64>,
    /// Whether the tenant may be created.
    pub presence: Presence,
}

/// An open tenant, as a run uses it.
pub struct Opened {
    /// The client, shared with every other run on this tenant.
    pub tenant: Arc<dyn Tenant>,
    /// The tenant's call pacing (for `Driver::limiter`), shared likewise.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The tenant's name (the simulator: its directory under `<state>/sim`).
    pub name: String,
    /// Where the backend keeps local state, if it does (for the free-space guard).
    pub dir: Option<PathBuf>,
}

/// Why a tenant could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The simulated tenant's name is not a valid directory name.
    #[error(transparent)]
    BadName(#[from] TenantNameError),
    /// A tenant that must exist has no state.
    #[error("simulated tenant {name:?} ({}) {why}", dir.display())]
    Missing {
        /// Its name.
        name: String,
        /// Its directory.
        dir: PathBuf,
        /// What was found instead.
        why: &'static str,
    },
    /// The Microsoft backend could not be set up (config or credential file).
    #[error("Microsoft tenant {tenant}: {message}")]
    Microsoft {
        /// The tenant id.
        tenant: String,
        /// What is wrong (never a secret).
        message: String,
    },
    /// The simulator failed to open it.
    #[error("simulated tenant {}: {source}", dir.display())]
    Sim {
        /// Its directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: SimError,
    },
}

/// One tenant open in this process.
struct Slot {
    dir: PathBuf,
    sim: Weak<SimTenant>,
    limiter: Weak<RateLimiter>,
}

/// Tenants open in this process, by identity (the simulator: its directory).
/// Process-wide rather than per registry, because sled allows one open per
/// directory per process whoever asks.
static OPEN: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// Opens tenants for runs under one state directory.
#[derive(Clone, Debug)]
pub struct Registry {
    state: PathBuf,
}

impl Registry {
    /// Tenants of the state directory `state` (simulated ones live in `<state>/sim/<name>`).
    pub fn new(state: impl Into<PathBuf>) -> Registry {
        Registry {
            state: state.into(),
        }
    }

    /// Directory of simulated tenant `name`.
    pub fn sim_dir(&self, name: &str) -> Result<PathBuf, RegistryError> {
        super::sim::check_tenant_name(name)?;
        Ok(self.state.join("sim").join(name))
    }

    /// Open the tenant `config` names for `scope.run`, or join the client
    /// and limiter other runs already hold. `clock` is the run's; a tenant
    /// opened first by another run keeps that run's clock (one timeline).
    pub fn open(
        &self,
        config: &BackendConfig,
        scope: Scope<'_>,
        clock: SharedClock,
    ) -> Result<Opened, RegistryError> {
        match config {
            BackendConfig::Sim(cfg) => {
                let name = cfg.tenant.clone().unwrap_or_else(|| scope.run.to_string());
                let dir = self.sim_dir(&name)?;
                let (sim, limiter) = open_sim(&name, &dir, cfg, scope, clock)?;
                Ok(Opened {
                    tenant: sim,
                    limiter,
                    name,
                    dir: Some(dir),
                })
            }
            BackendConfig::Microsoft(cfg) => open_microsoft(cfg, scope, clock),
        }
    }
}

/// The simulated tenant in `dir`, sharing the handle a run of this process
/// already holds (sled allows one open per directory). For what only the
/// simulator has (`sim log`, `sim init`, verify); runs go through
/// [`Registry::open`], which uses the same handles.
pub fn sim_handle(
    name: &str,
    dir: &Path,
    cfg: &super::sim::SimConfig,
    presence: Presence,
    clock: SharedClock,
) -> Result<Arc<SimTenant>, RegistryError> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    handle_in(&mut open, name, dir, cfg, presence, clock)
}

fn handle_in(
    open: &mut Vec<Slot>,
    name: &str,
    dir: &Path,
    cfg: &super::sim::SimConfig,
    presence: Presence,
    clock: SharedClock,
) -> Result<Arc<SimTenant>, RegistryError> {
    open.retain(|s| s.sim.strong_count() > 0);
    if let Some(sim) = open
        .iter()
        .find(|s| s.dir == dir)
        .and_then(|s| s.sim.upgrade())
    {
        return Ok(sim);
    }
    let opened = match presence {
        Presence::SeedIfEmpty => SimTenant::open(dir, cfg, clock),
        Presence::MustExist => SimTenant::open_existing(dir, cfg, clock),
    };
    let sim = Arc::new(opened.map_err(|e| match e {
        SimError::Missing { why, .. } => RegistryError::Missing {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            why,
        },
        source => RegistryError::Sim {
            dir: dir.to_path_buf(),
            source,
        },
    })?);
    open.push(Slot {
        dir: dir.to_path_buf(),
        sim: Arc::downgrade(&sim),
        limiter: Weak::new(),
    });
    Ok(sim)
}

/// The shared handle and limiter of the simulated tenant in `dir`.
fn open_sim(
    name: &str,
    dir: &Path,
    cfg: &super::sim::SimConfig,
    scope: Scope<'_>,
    clock: SharedClock,
) -> Result<(Arc<SimTenant>, Option<Arc<RateLimiter>>), RegistryError> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    let sim = handle_in(&mut open, name, dir, cfg, scope.presence, clock.clone())?;
    let Some(slot) = open.iter_mut().find(|s| s.dir == dir) else {
        return Ok((sim, None));
    };
    let limiter = join_limiter(&mut slot.limiter, scope.rate_limit, clock);
    Ok((sim, limiter))
}

/// The tenant's limiter held in `weak`, tightened to `rate`; or a new one at
/// `rate` when no run holds one (none without a rate).
fn join_limiter(
    weak: &mut Weak<RateLimiter>,
    rate: Option<f64>,
    clock: SharedClock,
) -> Option<Arc<RateLimiter>> {
    match (weak.upgrade(), rate) {
        (Some(l), Some(rate)) => {
            l.tighten(rate);
            Some(l)
        }
        (Some(l), None) => Some(l),
        (None, Some(rate)) => {
            let l = Arc::new(RateLimiter::new(clock, rate));
            *weak = Arc::downgrade(&l);
            Some(l)
        }
        (None, None) => None,
    }
}

/// One Microsoft tenant open in this process.
#[cfg(feature = "graph")]
struct GraphSlot {
    key: String,
    tenant: Weak<super::microsoft::MicrosoftTenant>,
    limiter: Weak<RateLimiter>,
}

#[cfg(feature = "graph")]
static GRAPH: Mutex<Vec<GraphSlot>> = Mutex::new(Vec::new());

/// The client and limiter of a Microsoft tenant, shared by every run of
/// this process on the same tenant and app. The limiter paces at the
/// backend's rate (`graph.rate_limit`, default 5/s) or a run's lower one.
#[cfg(feature = "graph")]
fn open_microsoft(
    cfg: &super::config::MicrosoftConfig,
    scope: Scope<'_>,
    clock: SharedClock,
) -> Result<Opened, RegistryError> {
    let key = super::graph::open::tenant_key(cfg);
    let rate = scope.rate_limit.map_or(cfg.rate(), |r| r.min(cfg.rate()));
    let mut open = GRAPH.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|s| s.tenant.strong_count() > 0);
    let held = open
        .iter()
        .position(|s| s.key == key)
        .and_then(|i| Some((i, open[i].tenant.upgrade()?)));
    let (i, tenant) = match held {
        Some(found) => found,
        None => {
            let t = Arc::new(super::microsoft::open(cfg, clock.clone()).map_err(|e| {
                RegistryError::Microsoft {
                    tenant: cfg.tenant_id.clone(),
                    message: e.0,
                }
            })?);
            open.push(GraphSlot {
                key,
                tenant: Arc::downgrade(&t),
                limiter: Weak::new(),
            });
            (open.len() - 1, t)
        }
    };
    let limiter = join_limiter(&mut open[i].limiter, Some(rate), clock);
    Ok(Opened {
        tenant,
        limiter,
        name: cfg.tenant_id.clone(),
        dir: None,
    })
}

#[cfg(not(feature = "graph"))]
fn open_microsoft(
    cfg: &super::config::MicrosoftConfig,
    _scope: Scope<'_>,
    _clock: SharedClock,
) -> Result<Opened, RegistryError> {
    Err(RegistryError::Microsoft {
        tenant: cfg.tenant_id.clone(),
        message: "this portflow was built without the `graph` feature".into(),
    })
}

#[cfg(test)]
mod tests;
