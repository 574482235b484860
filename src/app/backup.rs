//! A consistent copy of the state directory, taken while runs go on.

use std::path::Path;

use super::backends::{open_existing_default, OpenSim};
use super::{App, Error, Result};
use crate::api::{BackupDone, TenantCopy};
use crate::clock::{Clock, SystemClock};
use crate::store::sled_store::SledStore;

/// Copy the engine store (one consistent instant: writes wait meanwhile), then
/// each simulated tenant, into `dest`. Tenants are copied after the engine, so a
/// restored tenant is never behind its runs; reconciliation handles it being ahead.
pub fn backup_into(app: &App, store: &SledStore, dest: &Path) -> Result<BackupDone> {
    if !dest.is_absolute() {
        return Err(Error::input(format!(
            "{}: give an absolute path",
            dest.display()
        )));
    }
    if dest.exists() {
        return Err(Error::input(format!("{} already exists", dest.display()))
            .hint("back up into a new directory, e.g. one named after the date"));
    }
    let started = SystemClock.now();
    let engine_keys = store.backup_to(&dest.join("engine"))?;
    let mut sims = Vec::new();
    let sim_root = app.state.join("sim");
    let names = super::backends::sim_tenant_names(app);
    for name in names {
        let dir = sim_root.join(&name);
        // Never seeds: an empty tenant directory is reported, not filled.
        let copied = open_existing_default(&dir)
            .map_err(|e| match e {
                OpenSim::Missing(why) => Error::runtime(format!("its store {why}")),
                OpenSim::Other(e) => e,
            })
            .and_then(|sim| {
                // Through the backend's backup capability; the cause alone
                // reads best in the skipped line.
                let tenant: &dyn crate::backend::Tenant = &*sim;
                match tenant.backup_to(&dest.join("sim").join(&name)) {
                    Some(done) => done.map_err(|e| Error::runtime(e.source.to_string())),
                    None => Ok(0),
                }
            });
        sims.push(match copied {
            Ok(keys) => TenantCopy {
                tenant: name,
                keys: Some(keys),
                skipped: None,
            },
            Err(e) => TenantCopy {
                tenant: name,
                keys: None,
                skipped: Some(e.to_string()),
            },
        });
    }
    let done = BackupDone {
        backup: dest.to_path_buf(),
        from: std::path::absolute(&app.state).unwrap_or_else(|_| app.state.clone()),
        taken_at: started.rfc3339(),
        portflow: env!("CARGO_PKG_VERSION").to_string(),
        engine_keys,
        simulated_tenants: sims,
    };
    let text = serde_json::to_value(&done)
        .map(|v| v.to_string())
        .map_err(|e| Error::runtime(format!("{}: {e}", dest.display())))?;
    std::fs::write(dest.join("backup.json"), text)
        .map_err(|e| Error::runtime(format!("{}: {e}", dest.display())))?;
    Ok(done)
}
