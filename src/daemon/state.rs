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

/// Who answers the API: `portflow serve`, or a foreground `run`/`resume`
/// that serves it while it holds the state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The daemon: drives every unfinished run, starts runs, fires schedules.
    Daemon,
    /// A foreground drive: serves every read and operator input, but drives
    /// only its own run and fires no schedule.
    Foreground,
}

/// The daemon's shared state.
pub(crate) struct Daemon {
    /// Settings.
    pub(crate) app: App,
    /// Who serves.
    pub(crate) role: Role,
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

impl Daemon {
    /// The refusal of a foreground drive asked to `what` (start or drive another run).
    pub(crate) fn refuse(&self, what: String) -> crate::app::Error {
        crate::app::Error::Foreground {
            what,
            running: lock(&self.drivers.drivers).keys().next().cloned(),
            pid: std::process::id(),
        }
    }
}

/// How long an operator input waits for a foreground drive that is ending
/// (its inbox closed) to store its end, before it is applied to the store.
const ENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The runs being driven.
#[derive(Default)]
pub(crate) struct Drivers {
    /// Inboxes of the runs being driven.
    inboxes: Mutex<HashMap<String, mpsc::Sender<Inbound>>>,
    /// Their drivers (for their breakers).
    drivers: Mutex<HashMap<String, Arc<Driver>>>,
    /// Driver tasks; awaited at shutdown so every one persists its last step.
    tasks: Mutex<tokio::task::JoinSet<Result<()>>>,
    /// Held by an input applied without a driver and by a foreground driver's
    /// registration: an input is either committed before the driver reads
    /// the store or goes to its inbox, never lost in between.
    pub(crate) starting: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drivers {
    /// Whether a driver for `run` is going (until its end is stored: a
    /// foreground drive that closed its inbox is still active).
    pub(crate) fn is_active(&self, run: &str) -> bool {
        lock(&self.drivers).contains_key(run)
    }

    /// Stop taking inputs for `run` through its inbox: its driver, left
    /// without a sender, ends like a drive without one once it is idle.
    pub(crate) fn close_inbox(&self, run: &str) {
        lock(&self.inboxes).remove(run);
    }

    /// Wait until `run`'s driver, whose inbox is closed, is forgotten (its end
    /// stored); then the store is the only owner of its instances.
    pub(crate) async fn wait_released(&self, run: &str) -> Result<()> {
        let t0 = crate::clock::Stopwatch::start();
        while self.is_active(run) && self.inbox(run).is_none() {
            if t0.elapsed() > ENDING_WAIT {
                return Err(crate::app::Error::runtime(format!(
                    "run {run}'s drive is ending but did not store its end within {} s",
                    ENDING_WAIT.as_secs()
                ))
                .hint("send the input again once `portflow status` works without it"));
            }
            crate::clock::wait_real(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
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
