//! `portflow backup DEST`: a consistent copy of the state directory, taken while
//! the daemon runs (through its API) or with no daemon at all.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::client::{daemon_error, has_daemon, request};
use super::{exit, print_json, App, CliError};
use crate::backend::sim::SimConfig;
use crate::clock::{Clock, SystemClock};
use crate::store::sled_store::SledStore;

/// Copy the engine store (one consistent instant: writes wait meanwhile), then
/// each simulated tenant, into `dest`. Tenants are copied after the engine, so a
/// restored tenant is never behind its runs; reconciliation handles it being ahead.
pub(super) fn backup_into(app: &App, store: &SledStore, dest: &Path) -> Result<Value, CliError> {
    if !dest.is_absolute() {
        return Err(CliError::input(format!(
            "{}: give an absolute path",
            dest.display()
        )));
    }
    if dest.exists() {
        return Err(
            CliError::input(format!("{} already exists", dest.display()))
                .hint("back up into a new directory, e.g. one named after the date"),
        );
    }
    let started = SystemClock.now();
    let engine_keys = store.backup_to(&dest.join("engine"))?;
    let mut sims = Vec::new();
    let sim_root = app.state.join("sim");
    let mut names: Vec<String> = std::fs::read_dir(&sim_root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let dir = sim_root.join(&name);
        // Never seeds: an empty tenant directory is reported, not filled.
        let copied =
            super::runs::open_existing_sim(&dir, &SimConfig::default(), Arc::new(SystemClock))
                .map_err(|e| match e {
                    super::runs::OpenSim::Missing(why) => {
                        CliError::runtime(format!("its store {why}"))
                    }
                    super::runs::OpenSim::Other(e) => e,
                })
                .and_then(|sim| {
                    sim.backup_to(&dest.join("sim").join(&name))
                        .map_err(|e| CliError::runtime(e.to_string()))
                });
        sims.push(match copied {
            Ok(keys) => json!({"tenant": name, "keys": keys}),
            Err(e) => json!({"tenant": name, "skipped": e.message}),
        });
    }
    let doc = json!({
        "backup": dest,
        "from": std::path::absolute(&app.state).unwrap_or_else(|_| app.state.clone()),
        "taken_at": started.rfc3339(),
        "portflow": env!("CARGO_PKG_VERSION"),
        "engine_keys": engine_keys,
        "simulated_tenants": sims,
    });
    std::fs::write(dest.join("backup.json"), doc.to_string())
        .map_err(|e| CliError::runtime(format!("{}: {e}", dest.display())))?;
    Ok(doc)
}

/// The `backup` command.
pub async fn backup(app: &App, dest: &Path) -> Result<u8, CliError> {
    let dest = super::remote::absolute(dest)?;
    let doc = match app.open_store() {
        Ok(store) => backup_into(app, &store, &dest)?,
        Err(e) if e.code == exit::LOCKED && has_daemon(app) => {
            let (status, v) = request(app, "POST", "/api/backup", &json!({"dest": dest}))?;
            if status != 200 {
                return Err(daemon_error(status, &v));
            }
            v
        }
        Err(e) => return Err(e),
    };
    if app.json {
        print_json(&doc);
    } else {
        let skipped: Vec<String> = doc["simulated_tenants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        s["skipped"]
                            .as_str()
                            .map(|why| format!("{}: {why}", s["tenant"].as_str().unwrap_or("?")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "backed up {} to {} at {}: {} engine keys, {} simulated tenant(s)",
            doc["from"].as_str().unwrap_or("?"),
            dest.display(),
            doc["taken_at"].as_str().unwrap_or("?"),
            doc["engine_keys"],
            doc["simulated_tenants"].as_array().map_or(0, Vec::len) - skipped.len()
        );
        for s in &skipped {
            println!("not copied: {s}");
        }
        println!(
            "restore: stop portflow, move {} aside, copy {} in its place, start portflow",
            app.state.display(),
            dest.display()
        );
    }
    Ok(exit::OK)
}
