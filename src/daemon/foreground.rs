//! A foreground `portflow run`/`resume` serves the daemon's API while it holds
//! the state directory: the same router, token check and `daemon.json`, so
//! every other command works against it as against `portflow serve`, with the
//! same output. Its driver is the one the API talks to: operator inputs reach
//! its inbox. It drives only its own run (starting or driving another is
//! refused with [`Error::Foreground`]) and fires no schedule.
//!
//! A foreground drive ends by itself once only instances waiting for a person
//! (or held) are left. An inbox would keep it waiting, so a watcher closes the
//! inbox when the run is idle and then halts the drive, which ends as a drive
//! without an inbox would; inputs that arrive after the inbox closed wait until
//! the drive has stored its end and are then applied to the store, as offline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::state::{Daemon, Drivers, Role, Shared};
use super::{random_token, scan, write_daemon_file};
use crate::api::{DaemonFile, DAEMON_FILE};
use crate::app::{App, Error, Result};
use crate::engine::executor::{DriveEnd, Driver, EngineError, Place};
use crate::store::commit::Committer;
use crate::store::records;
use crate::store::sled_store::SledStore;

/// Default address of a foreground run's API: loopback, a free port (several
/// state directories may each have a run going; `daemon.json` says which port).
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// How often the idle watcher looks at the run's counts.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Longest the API takes to finish its requests when the run ends.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What [`serve`] did.
pub enum Api {
    /// The API answers; stop it with [`Foreground::stop`].
    Serving(Foreground),
    /// It could not: the line to print once (the run goes on).
    NotServing(String),
}

/// Removes `daemon.json` when dropped: on every end of the run, errors included.
struct FileGuard(PathBuf);

impl Drop for FileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The API of a foreground drive.
pub struct Foreground {
    // Dropped first: the file goes before the store (held through `shared`)
    // is released, so it never names a process that no longer holds the lock.
    /// Written once the first driver is registered, so no command reaches
    /// the API before an input can reach a driver.
    file: std::sync::Mutex<Option<FileGuard>>,
    path: PathBuf,
    doc: DaemonFile,
    shared: Shared,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serve the API for a foreground drive on `store`. A non-loopback `listen` is
/// bad input; any failure to bind or to write `daemon.json` is not an error:
/// the run goes on without the API and [`Api::NotServing`] says why.
pub async fn serve(
    app: &App,
    store: Arc<SledStore>,
    committer: Committer,
    listen: Option<SocketAddr>,
) -> Result<Api> {
    let listen = listen.unwrap_or_else(default_listen);
    if !listen.ip().is_loopback() {
        return Err(Error::input(format!(
            "{listen} is not a loopback address: a foreground run serves its API on loopback only"
        ))
        .hint(
            "use --listen 127.0.0.1:<port>, or `portflow serve --allow-remote` behind a firewall",
        ));
    }
    let file = app.state.join(DAEMON_FILE);
    let not_serving = |why: String| {
        // We hold the store: a daemon.json here is stale (a killed process's),
        // and would make other commands report "does not answer" instead of LOCKED.
        let _ = std::fs::remove_file(&file);
        Ok(Api::NotServing(format!(
            "warning: {why}; other commands see the state directory in use (exit 4) until this run ends"
        )))
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => return not_serving(format!("cannot serve the local API on {listen}: {e}")),
    };
    let address = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return not_serving(format!("cannot serve the local API: {e}")),
    };
    let token = match random_token() {
        Ok(t) => t,
        Err(e) => return not_serving(e.to_string()),
    };
    let doc = DaemonFile {
        address: address.to_string(),
        token: token.clone(),
        pid: std::process::id(),
        foreground: true,
    };
    // We hold the store: a daemon.json here is a killed process's. It goes
    // now; ours is written when the first driver is registered.
    if let Err(e) = std::fs::remove_file(&file) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return not_serving(format!("cannot replace {}: {e}", file.display()));
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Daemon {
        app: app.clone(),
        role: Role::Foreground,
        store,
        committer,
        token,
        stop: stop_rx,
        drivers: Drivers::default(),
        clock: Arc::new(crate::clock::SystemClock),
        wake: tokio::sync::Notify::new(),
        schedules: tokio::sync::Mutex::new(()),
        scans: scan::ScanCache::default(),
    });
    let router = super::api::router(shared.clone());
    let mut stop_http = shared.stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_http.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(
        url = %format!("http://{address}/"),
        token_file = %file.display(),
        "foreground run serving the local API"
    );
    Ok(Api::Serving(Foreground {
        file: std::sync::Mutex::new(None),
        path: file,
        doc,
        shared,
        stop: stop_tx,
        server,
    }))
}

/// A run being driven in the foreground, registered with the API; dropping it
/// (after the run's end is stored) hands the run back to the store.
pub struct Attached {
    shared: Shared,
    run: String,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.shared.drivers.forget(&self.run);
        self.shared.scans.invalidate();
    }
}

impl Foreground {
    /// Drive `driver` (of a run of `subjects` instances) until it ends, is idle
    /// or `stop` turns true, taking the API's operator inputs through its
    /// inbox. Keep the [`Attached`] until the run's end is stored.
    pub async fn drive(
        &self,
        driver: &Arc<Driver>,
        subjects: u32,
        stop: watch::Receiver<bool>,
    ) -> (Result<DriveEnd, EngineError>, Attached) {
        let (tx, rx) = mpsc::channel(256);
        let run = driver.run_id.clone();
        {
            let _starting = self.shared.drivers.starting.lock().await;
            self.shared.drivers.register(&run, tx, driver.clone());
        }
        self.publish();
        let attached = Attached {
            shared: self.shared.clone(),
            run,
        };
        // The driver stops on Ctrl-C, or when the watcher finds it idle.
        let (halt_tx, halt_rx) = watch::channel(false);
        let halt_tx = Arc::new(halt_tx);
        let mut user_stop = stop.clone();
        let forward = {
            let halt = halt_tx.clone();
            tokio::spawn(async move {
                if user_stop.wait_for(|s| *s).await.is_ok() {
                    let _ = halt.send(true);
                }
            })
        };
        let idle = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(halt_when_idle(
            self.shared.clone(),
            driver.clone(),
            subjects,
            idle.clone(),
            halt_tx,
        ));
        let end = driver.clone().drive_with_inbox(halt_rx, Some(rx)).await;
        forward.abort();
        watcher.abort();
        let end = match end {
            // Halted for being idle, not by Ctrl-C: what a drive without an inbox returns.
            Ok(DriveEnd::Stopped) if idle.load(Ordering::SeqCst) && !*stop.borrow() => {
                Ok(idle_end(&driver.progress.counts()))
            }
            other => other,
        };
        (end, attached)
    }

    /// Write `daemon.json` (the same exclusive 0600 write as the daemon's)
    /// the first time; if that fails, say so once: other commands then see
    /// the state directory in use.
    fn publish(&self) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_some() {
            return;
        }
        match write_daemon_file(&self.path, &self.doc) {
            Ok(()) => *file = Some(FileGuard(self.path.clone())),
            Err(e) => {
                // Never retried: one line, and a placeholder guard that removes nothing of ours.
                eprintln!(
                    "warning: {e}; other commands see the state directory in use (exit 4) until this run ends"
                );
                *file = Some(FileGuard(PathBuf::new()));
            }
        }
    }

    /// Stop answering and remove `daemon.json`.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Err(e))) => tracing::warn!("local API: {e}"),
            Ok(_) => {}
            Err(_) => tracing::warn!("local API: requests still open at the end of the run"),
        }
        drop(self.file.into_inner());
    }
}

/// How a drive without an inbox ends with these counts.
fn idle_end(counts: &BTreeMap<Place, usize>) -> DriveEnd {
    let count = |phase: &str| -> usize {
        counts
            .iter()
            .filter(|(p, _)| matches!(p, Place::Step(_, ph) if *ph == phase))
            .map(|(_, n)| *n)
            .sum()
    };
    if counts.keys().all(|p| matches!(p, Place::Terminal(_))) {
        DriveEnd::Finished
    } else {
        DriveEnd::Idle {
            blocked: count("blocked"),
            held: count("held"),
        }
    }
}

/// Whether a drive without an inbox would end now: every instance counted,
/// none anywhere but blocked, held, rolling back (a manual undo) or ended, and
/// no timer of the run left in the store (the timers are the driver's work to
/// come; its own heap may still hold stale entries for instances an input moved).
async fn idle_now(d: &Shared, driver: &Arc<Driver>, subjects: u32) -> bool {
    let counts = driver.progress.counts();
    let total: usize = counts.values().sum();
    let only_people = counts.keys().all(|p| {
        matches!(
            p,
            Place::Terminal(_) | Place::Step(_, "blocked" | "held" | "rolling_back")
        )
    });
    if total < subjects as usize || !only_people {
        return false;
    }
    let store = d.store.clone();
    let run = driver.run_id.clone();
    let timers = tokio::task::spawn_blocking(move || records::run_timers(&*store, &run)).await;
    matches!(timers, Ok(Ok(t)) if t.is_empty())
}

/// Halt the drive once it is idle, as a drive without an inbox would end:
/// first close the inbox (later inputs wait for the run's end to be stored),
/// then, idle still and no transition since, halt it.
async fn halt_when_idle(
    d: Shared,
    driver: Arc<Driver>,
    subjects: u32,
    idle: Arc<AtomicBool>,
    halt: Arc<watch::Sender<bool>>,
) {
    let mut seen: Option<u64> = None;
    let mut inbox_open = true;
    loop {
        crate::clock::wait_real(WATCH_EVERY).await;
        let moved = driver.progress.transitions.load(Ordering::SeqCst);
        if !idle_now(&d, &driver, subjects).await {
            seen = None;
            continue;
        }
        // Idle for two looks in a row with nothing committed in between.
        if seen != Some(moved) {
            seen = Some(moved);
            continue;
        }
        if inbox_open {
            d.drivers.close_inbox(&driver.run_id);
            inbox_open = false;
            seen = None;
            continue;
        }
        idle.store(true, Ordering::SeqCst);
        let _ = halt.send(true);
        return;
    }
}
