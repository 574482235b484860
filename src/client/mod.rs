//! How a command reaches the state directory: it opens the store itself, or,
//! when a daemon holds it, asks the daemon. The rule is written once, in
//! [`connect`]: the store is LOCKED and `<state>/daemon.json` names a daemon.

mod local;
mod remote;
mod service;

pub use local::Local;
pub use remote::{absolute, Daemon};
pub use service::Service;

use crate::app::{App, Error, Kind, Result};

/// Who serves this process's commands.
pub enum Conn {
    /// This process, with the store open.
    Local(Local),
    /// The daemon that holds the state directory.
    Daemon(Daemon),
}

impl Conn {
    /// As the operations both serve.
    pub fn service(&self) -> &dyn Service {
        match self {
            Conn::Local(l) => l,
            Conn::Daemon(d) => d,
        }
    }

    /// The full id of the run `given` names: its id or a unique prefix of it
    /// (every command taking a run id resolves it here first).
    pub async fn run_id(&self, given: &str) -> Result<String> {
        self.service().resolve_run(given).await
    }
}

/// Open the store here, or find the daemon holding it; any other failure to
/// open is the command's error.
pub fn connect(app: &App) -> Result<Conn> {
    match app.open_store() {
        Ok(store) => Ok(Conn::Local(Local::new(app, store))),
        Err(e) => match daemon_for(app, &e) {
            Some(d) => Ok(Conn::Daemon(d)),
            None => Err(e),
        },
    }
}

fn daemon_for(app: &App, e: &Error) -> Option<Daemon> {
    (e.kind() == Kind::Locked)
        .then(|| Daemon::find(app))
        .flatten()
}

/// A daemon to ask first for work on simulated tenants it may hold open
/// (`plan`, `sim log`): one that `daemon.json` names, whether or not the store
/// is locked. The caller falls back to working here when it does not answer.
pub fn tenant_holder(app: &App) -> Option<Daemon> {
    Daemon::find(app)
}

/// Whether `e` says the daemon did not answer.
pub fn unreachable(e: &Error) -> bool {
    matches!(e, Error::Unreachable { .. })
}
