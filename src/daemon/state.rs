//! The daemon's shared state: its store, committer, token, clock, the runs
//! it drives, and the caches its pages read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::scan::ScanCache;
use crate::app::{App, Result};
use crate::clock::SharedClock;
use crate::engine::executor::{Driver, Inbound};
use crate::store::commit::Committer;
use crate::store::sled_store::SledStore;

/// The daemon's shared state.
pub(crate) struct Daemon {
    /// Settings.
    pub(crate) app: App,
    /// The engine store it holds.
    pub(crate) store: Arc<SledStore>,
    /// Its group committer.
    pub(crate) committer: Committer,
    /// The API token.
    pub(crate) token: String,
    /// Turns true when the daemon stops.
    pub(crate) stop: watch::Receiver<bool>,
    /// Runs being driven.
    pub(crate) drivers: Drivers,
    /// The scheduler's clock (real time, or a rehearsal clock).
    pub(crate) clock: SharedClock,
    /// Woken when schedules change or a run ends (a queued fire may start).
    pub(crate) wake: tokio::sync::Notify,
    /// Held while schedules are read and written, so API edits and fires never interleave.
    pub(crate) schedules: tokio::sync::Mutex<()>,
    /// Per-run figures for the status page and `/metrics`.
    pub(crate) scans: ScanCache,
}

/// The daemon, as handlers and tasks hold it.
pub(crate) type Shared = Arc<Daemon>;

/// The runs being driven.
#[derive(Default)]
pub(crate) struct Drivers {
    /// Inboxes of the runs being driven.
    inboxes: Mutex<HashMap<String, mpsc::Sender<Inbound>>>,
    /// Their drivers (for their breakers).
    drivers: Mutex<HashMap<String, Arc<Driver>>>,
    /// Driver tasks; awaited at shutdown so every one persists its last step.
    tasks: Mutex<tokio::task::JoinSet<Result<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drivers {
    /// Whether a driver for `run` is going.
    pub(crate) fn is_active(&self, run: &str) -> bool {
        lock(&self.inboxes).contains_key(run)
    }

    pub(crate) fn inbox(&self, run: &str) -> Option<mpsc::Sender<Inbound>> {
        lock(&self.inboxes).get(run).cloned()
    }

    pub(crate) fn driver(&self, run: &str) -> Option<Arc<Driver>> {
        lock(&self.drivers).get(run).cloned()
    }

    pub(crate) fn forget(&self, run: &str) {
        lock(&self.inboxes).remove(run);
        lock(&self.drivers).remove(run);
    }

    /// Record a driver that starts now.
    pub(crate) fn register(&self, run: &str, inbox: mpsc::Sender<Inbound>, driver: Arc<Driver>) {
        lock(&self.inboxes).insert(run.to_string(), inbox);
        lock(&self.drivers).insert(run.to_string(), driver);
    }

    /// Start a driver task, and reap those that ended (so the set does not grow
    /// for a daemon that runs for months).
    pub(crate) fn spawn(
        &self,
        task: impl std::future::Future<Output = Result<()>> + Send + 'static,
    ) {
        let mut tasks = lock(&self.tasks);
        tasks.spawn(task);
        while let Some(done) = tasks.try_join_next() {
            if let Ok(Err(e)) = done {
                tracing::error!("run driver stopped: {e}");
            }
        }
    }

    /// Wait for every driver task (they stop with the daemon's stop signal).
    pub(crate) async fn join_all(&self) {
        loop {
            let mut tasks = std::mem::take(&mut *lock(&self.tasks));
            if tasks.is_empty() {
                break;
            }
            while let Some(done) = tasks.join_next().await {
                if let Ok(Err(e)) = done {
                    tracing::error!("run driver stopped: {e}");
                }
            }
        }
    }
}
