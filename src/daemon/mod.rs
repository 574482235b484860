//! `portflow serve`: the daemon. It owns the state directory, resumes every
//! unfinished run at start, and answers a local JSON API (`api`: runs,
//! instances, approve / signal / cancel / retry, schedules, backup) guarded by
//! a token it writes, mode 0600, to `<state>/daemon.json` and checks in
//! [`auth`] before any handler. SIGTERM or Ctrl-C stops it cleanly. A
//! foreground `run`/`resume` serves the same API ([`foreground`]).

mod api;
mod auth;
mod drivers;
pub mod foreground;
mod scan;
mod scheduler;
mod state;
mod web;
mod worklist;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::{DaemonFile, DAEMON_FILE};
use crate::app::{App, Error, Result};
use crate::clock::SharedClock;
use crate::store::commit::Committer;
use crate::store::records;
use state::Daemon;

/// Default listen address.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::runtime(format!("cannot read /dev/urandom for the API token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why `daemon.json` could not be written. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum DaemonFileError {
    /// A stale `daemon.json.tmp` (or a link by that name) cannot be removed.
    #[error("cannot remove the stale {}: {source}", path.display())]
    RemoveStale {
        /// The tmp file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating, writing or syncing the new tmp file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The tmp file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Moving it over `daemon.json` failed.
    #[error("cannot replace {}: {source}", path.display())]
    Replace {
        /// `daemon.json`.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<DaemonFileError> for Error {
    fn from(e: DaemonFileError) -> Error {
        Error::runtime(e.to_string())
            .hint("the daemon writes its address and token there: check the state directory's owner and permissions")
    }
}

/// Write `daemon.json` readable by its owner only (it holds the token), through
/// a tmp file that is always new: created exclusively, mode 0600, never through
/// a link, so a stale file's mode or a planted link cannot expose the token.
fn write_daemon_file(path: &std::path::Path, doc: &DaemonFile) -> Result<(), DaemonFileError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("json.tmp");
    // unlink removes a link itself, never its target.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(DaemonFileError::RemoveStale { path: tmp, source }),
    }
    let mut opts = std::fs::OpenOptions::new();
    // O_CREAT|O_EXCL: a file planted since the unlink makes this fail instead.
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    let write_err = |source| DaemonFileError::Write {
        path: tmp.clone(),
        source,
    };
    let mut f = opts.open(&tmp).map_err(write_err)?;
    let written = (|| {
        // The umask only narrows 0600, but say it exactly.
        #[cfg(unix)]
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(
            serde_json::to_string(doc)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        f.sync_all()
    })()
    .map_err(write_err)
    // rename replaces a link at `path` itself; it never writes through it.
    .and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|source| DaemonFileError::Replace {
            path: path.to_path_buf(),
            source,
        })
    });
    if written.is_err() {
        // No token left behind in a file nobody will use.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Run the daemon until SIGTERM / Ctrl-C. `schedule_file`'s schedules are
/// added (or updated) first and listed on stderr.
pub async fn serve(
    app: &App,
    listen: SocketAddr,
    allow_remote: bool,
    clock: SharedClock,
    schedule_file: Option<&std::path::Path>,
) -> Result<()> {
    if !listen.ip().is_loopback() && !allow_remote {
        return Err(Error::input(format!(
            "{listen} is not a loopback address: the API would be reachable from the network"
        ))
        .hint("listen on 127.0.0.1, or pass --allow-remote if a firewall protects it"));
    }
    let store = Arc::new(app.open_store()?);
    let committer = Committer::start(store.clone(), true);
    let token = random_token()?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::runtime(format!("cannot listen on {listen}: {e}"))
            .hint("pick another port with --listen")
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::runtime(e.to_string()))?;
    // Listen for SIGTERM before anyone can find the daemon and ask it to stop.
    let stop_signals = crate::app::stop::StopSignals::install();
    let daemon_file = app.state.join(DAEMON_FILE);
    write_daemon_file(
        &daemon_file,
        &DaemonFile {
            address: address.to_string(),
            token: token.clone(),
            pid: std::process::id(),
            foreground: false,
        },
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        app: app.clone(),
        role: state::Role::Daemon,
        store: store.clone(),
        committer: committer.clone(),
        token,
        stop: stop_rx,
        drivers: state::Drivers::default(),
        clock,
        wake: tokio::sync::Notify::new(),
        schedules: tokio::sync::Mutex::new(()),
        scans: scan::ScanCache::default(),
    });
    if let Some(file) = schedule_file {
        let specs = crate::spec::load_schedules(file, &daemon.app.search_dirs())?;
        let v = crate::app::schedules::add(&*store, &committer, specs, true, daemon.clock.now())
            .await?;
        eprint!("{}", crate::app::schedules::render_list(&v));
    }
    for record in records::list_runs(&*store)?
        .into_iter()
        .filter(|r| r.finished_at.is_none())
    {
        drivers::start_driver(&daemon, record)?;
    }
    let scheduler = tokio::spawn(scheduler::run(daemon.clone()));
    // A log line, not a print: with --log-format json every stderr line is JSON.
    tracing::info!(
        url = %format!("http://{address}/"),
        token_file = %daemon_file.display(),
        "portflow daemon listening"
    );
    let router = api::router(daemon.clone());
    let mut stop_http = daemon.stop.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stop_http.wait_for(|s| *s).await;
    });
    let signals = tokio::spawn(async move {
        stop_signals.wait().await;
        let _ = stop_tx.send(true);
    });
    let served = server.await;
    signals.abort();
    if let Ok(Err(e)) = scheduler.await {
        tracing::error!("scheduler stopped: {e}");
    }
    // Drivers see the same stop signal; wait for them to persist and finish.
    daemon.drivers.join_all().await;
    committer.barrier().await?;
    let _ = std::fs::remove_file(&daemon_file);
    served.map_err(|e| Error::runtime(format!("API server: {e}")))?;
    Ok(())
}
