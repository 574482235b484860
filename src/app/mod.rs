//! The application core: what a command or an API request does, independent of
//! how it arrived. The CLI (`crate::cli`), the daemon (`crate::daemon`) and the
//! client (`crate::client`) call into here; nothing here prints or speaks HTTP.

pub mod backends;
pub mod backup;
pub mod context;
pub mod doctor;
pub mod driver;
pub mod error;
pub mod operate;
pub mod outages;
pub mod plan;
pub mod report;
pub mod runpath;
pub mod runs;
pub mod schedules;
pub mod show;
pub mod sim;
#[cfg(feature = "graph")]
pub mod sim_serve;
pub mod stop;
pub mod summary;
pub mod verify;
pub mod waves;

use std::path::PathBuf;

pub use error::{Error, Kind, Result};

use crate::store::sled_store::SledStore;

/// Settings every operation shares (from the command line or the daemon's).
#[derive(Clone, Debug)]
pub struct App {
    /// State directory.
    pub state: PathBuf,
    /// JSON output.
    pub json: bool,
    /// Extra workflow directories (`--workflows`).
    pub workflow_dirs: Vec<PathBuf>,
    /// `--min-free`, in bytes (0: no free-space guard).
    pub min_free: u64,
    /// The zone human output shows times in (`--tz`, `--utc`).
    pub zone: crate::report::zone::Zone,
    /// Whether the operator chose the zone (`--tz`, `PORTFLOW_TZ`, `--utc`);
    /// otherwise a report shows the run's own porting-window zone.
    pub zone_chosen: bool,
}

impl App {
    /// The engine store's directory.
    pub fn engine_dir(&self) -> PathBuf {
        self.state.join("engine")
    }

    /// Open the engine store (fails with a `Locked` store error while another
    /// process holds it).
    pub fn open_store(&self) -> Result<SledStore> {
        Ok(SledStore::open(&self.engine_dir())?)
    }

    /// Workflow search path: --workflows dirs, then ./workflows.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.workflow_dirs.clone();
        dirs.push(PathBuf::from("workflows"));
        dirs
    }

    /// Directory of the simulated tenant `tenant`; the name is checked first so
    /// that it can never point outside `<state>/sim/`.
    pub fn sim_dir(&self, tenant: &str) -> Result<PathBuf> {
        crate::backend::sim::check_tenant_name(tenant)?;
        Ok(self.state.join("sim").join(tenant))
    }

    /// The same settings with another output form.
    pub fn with_json(&self, json: bool) -> App {
        App {
            json,
            ..self.clone()
        }
    }
}

/// Pretty JSON text with a final newline, as commands print it.
pub fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()) + "\n"
}
