//! The simulated tenant as a user sees it: creating one (`sim init`), its
//! audit log and outages (`sim log`, `sim outages`), and the instant a
//! time-scaled run on a named tenant starts at.

use std::path::PathBuf;
use std::sync::Arc;

use super::backends::{is_tenant, open_existing_default, open_sim, OpenSim};
use super::{App, Error, Result};
use crate::backend::sim::{SimConfig, SimTenant};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::report::table::{human_duration, Table};
use crate::spec::runfile::{BackendConfig, RunFile};
use crate::store::Store;

/// Create (or open) the simulated tenant `name` (default `seed-<seed>`) of
/// `users` users; optionally write its subjects as CSV to `export`. Returns
/// its name and directory.
pub fn init(
    app: &App,
    name: Option<String>,
    seed: u64,
    users: u32,
    profile: &str,
    export: Option<&std::path::Path>,
) -> Result<(String, PathBuf)> {
    let profile: crate::backend::sim::Profile =
        serde_json::from_value(serde_json::Value::String(profile.to_string())).map_err(|_| {
            Error::input(format!("unknown profile {profile:?}"))
                .hint("direct_routing, calling_plans, on_premises or operator_connect")
        })?;
    let name = name.unwrap_or_else(|| format!("seed-{seed}"));
    let dir = app.sim_dir(&name)?;
    let cfg = SimConfig {
        seed,
        users,
        profile,
        ..SimConfig::default()
    };
    let sim =
        SimTenant::open(&dir, &cfg, Arc::new(SystemClock)).map_err(|e| Error::backend(&dir, e))?;
    if let Some(path) = export {
        let f = std::fs::File::create(path)
            .map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?;
        sim.export_subjects_csv(std::io::BufWriter::new(f))
            .map_err(|e| Error::runtime(format!("{}: {e}", path.display())))?;
    }
    Ok((name, dir))
}

/// What `sim log` (`what = "log"`) or `sim outages` prints. `tenant` is a
/// tenant name or a run id; `store` resolves run ids on named tenants (opened
/// from `app` when `None`).
pub fn sim_text(
    app: &App,
    store: Option<&dyn Store>,
    what: &str,
    tenant: &str,
    user: Option<&str>,
    json: bool,
) -> Result<String> {
    let sim = open_existing(app, store, tenant)?;
    let pretty = |v: serde_json::Value| {
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| "null".into()) + "\n"
    };
    if what == "log" {
        let log = sim.audit_log().map_err(|e| Error::runtime(e.to_string()))?;
        let log: Vec<_> = log
            .into_iter()
            .filter(|e| user.is_none_or(|u| e.user.as_deref() == Some(u)))
            .collect();
        if json {
            return Ok(pretty(serde_json::to_value(&log).unwrap_or_default()));
        }
        let mut t = Table::new(["#", "at", "operation", "user", "number", "outcome"]);
        for e in &log {
            let v = serde_json::to_value(e).unwrap_or_default();
            t.row([
                e.seq.to_string(),
                e.at.rfc3339(),
                e.op.to_string(),
                e.user.clone().unwrap_or_default(),
                e.number.clone().unwrap_or_default(),
                v.get("outcome").map(|o| o.to_string()).unwrap_or_default(),
            ]);
        }
        return Ok(t.render());
    }
    let outages = sim.outages().map_err(|e| Error::runtime(e.to_string()))?;
    if json {
        return Ok(pretty(serde_json::to_value(&outages).unwrap_or_default()));
    }
    let mut t = Table::new(["user", "number", "out of service", "back", "outage"]);
    for o in &outages {
        t.row([
            o.user.clone(),
            o.number.clone(),
            o.start.rfc3339(),
            o.end.map_or("-".into(), |e| e.rfc3339()),
            o.end
                .map_or("ongoing".into(), |e| human_duration(e.since(o.start))),
        ]);
    }
    Ok(t.render())
}

/// Open a tenant by name, or the tenant of a run id (its own, or the named
/// tenant its run file uses). Only an existing tenant is opened: reading must
/// never create one.
fn open_existing(app: &App, store: Option<&dyn Store>, tenant: &str) -> Result<Arc<SimTenant>> {
    let mut dir = app.sim_dir(tenant)?;
    if !is_tenant(&dir) {
        if let Some(name) = run_tenant(app, store, tenant)? {
            dir = app.sim_dir(&name)?;
        }
    }
    if !is_tenant(&dir) {
        return Err(Error::input(format!("no simulated tenant {tenant:?} in {}", app.state.join("sim").display()))
            .hint("name a run id (runs get their own tenant) or a tenant created with `portflow sim init --name`"));
    }
    // Reading the log needs no config: an existing tenant keeps its own seed and users.
    // A run of this process may hold it: share its handle. Never seeds.
    open_existing_default(&dir).map_err(|e| match e {
        OpenSim::Missing(why) => Error::Damaged {
            message: format!("simulated tenant {}: its store {why}", dir.display()),
            hint: Some(super::error::RESTORE_HINT.to_string()),
        },
        OpenSim::Other(e) => e,
    })
}

/// The simulated tenant the stored run `id` (or a unique prefix of it) uses:
/// the one its run file names (`backend: {kind: sim, tenant: NAME}`), or its
/// own, named by its id; `None` when there is no such run.
fn run_tenant(app: &App, store: Option<&dyn Store>, id: &str) -> Result<Option<String>> {
    let opened;
    let store: &dyn Store = match store {
        Some(s) => s,
        None => {
            // No state store (none yet, or another process holds it): no run to
            // resolve. Opening a missing one would create it.
            if !app.engine_dir().join("db").is_file() {
                return Ok(None);
            }
            let Ok(s) = app.open_store() else {
                return Ok(None);
            };
            opened = s;
            &opened
        }
    };
    let id = match super::runs::resolve_run_id(store, id) {
        Ok(full) => full,
        Err(Error::RunNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(record) = crate::store::records::get_run(store, &id)? else {
        return Ok(None);
    };
    let file: RunFile = serde_yaml::from_str(&record.run_text).map_err(|e| {
        Error::runtime(format!(
            "the run file stored with run {id} no longer parses: {e}"
        ))
    })?;
    Ok(match file.backend {
        BackendConfig::Sim(cfg) => Some(cfg.tenant.unwrap_or(id)),
        BackendConfig::Microsoft(_) => None,
    })
}

/// The virtual instant a new run of `loaded` starts at: `base` (the wall
/// clock when `None`), or later, the instant its named simulated tenant
/// reached, so a time-scaled run sees the tenant as the previous run left it.
/// `base` unchanged for unscaled runs, per-run tenants and new tenants.
pub fn run_start(
    app: &App,
    loaded: &crate::spec::LoadedRun,
    base: Option<Timestamp>,
) -> Result<Option<Timestamp>> {
    if loaded.file.time_scale == 1.0 {
        return Ok(base);
    }
    let Some((cfg, name)) = (match &loaded.file.backend {
        BackendConfig::Sim(cfg) => cfg.tenant.as_ref().map(|n| (cfg, n)),
        BackendConfig::Microsoft(_) => None,
    }) else {
        return Ok(base);
    };
    let dir = app.sim_dir(name)?;
    if !is_tenant(&dir) {
        return Ok(base);
    }
    // The handle closes when dropped here unless a run of this process holds it.
    let reached = open_sim(&dir, cfg, Arc::new(SystemClock))?.reached();
    let start = base.unwrap_or_else(|| SystemClock.now());
    Ok(match reached {
        Some(r) if r > start => Some(r),
        _ => base,
    })
}
