//! `portflow serve`: the daemon. It owns the state directory, resumes every
//! unfinished run at start, and answers a local JSON API (runs, instances,
//! approve / signal / cancel / retry) guarded by a token it writes, mode 0600,
//! to `<state>/daemon.json` and checks in [`super::guard`] before any handler.
//! SIGTERM or Ctrl-C stops it cleanly.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::inspect::RunSummary;
use super::runs::{load_run, prepare, run_clock};
use super::{exit, App, CliError};
use crate::clock::SharedClock;
use crate::engine::executor::{DriveEnd, Inbound};
use crate::engine::machine::{Input, UNEXPECTED};
use crate::engine::run::RunRecord;
use crate::store::commit::Committer;
use crate::store::keys::InstanceKey;
use crate::store::sled_store::SledStore;
use crate::store::{records, Batch};

/// Name of the file (in the state directory) telling clients where the daemon is.
pub const DAEMON_FILE: &str = "daemon.json";

pub(super) struct Daemon {
    pub(super) app: App,
    pub(super) store: Arc<SledStore>,
    pub(super) committer: Committer,
    pub(super) token: String,
    pub(super) stop: watch::Receiver<bool>,
    /// Inboxes of the runs being driven.
    runs: Mutex<HashMap<String, mpsc::Sender<Inbound>>>,
    /// Drivers of the runs being driven (for their breakers).
    drivers: Mutex<HashMap<String, Arc<crate::engine::executor::Driver>>>,
    /// Run drivers; awaited at shutdown so every one persists its last step.
    tasks: Mutex<tokio::task::JoinSet<Result<(), CliError>>>,
    /// The scheduler's clock (real time, or a rehearsal clock).
    pub(super) clock: SharedClock,
    /// Woken when schedules change or a run ends (a queued fire may start).
    pub(super) wake: tokio::sync::Notify,
    /// Held while schedules are read and written, so API edits and fires never interleave.
    pub(super) schedules: tokio::sync::Mutex<()>,
    /// Per-run figures for the status page and `/metrics`.
    pub(super) scans: super::scan::ScanCache,
}

pub(super) type Shared = Arc<Daemon>;

fn random_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            CliError::runtime(format!("cannot read /dev/urandom for the API token: {e}"))
        })?;
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

impl From<DaemonFileError> for CliError {
    fn from(e: DaemonFileError) -> CliError {
        CliError::runtime(e.to_string())
            .hint("the daemon writes its address and token there: check the state directory's owner and permissions")
    }
}

/// Write `daemon.json` readable by its owner only (it holds the token), through
/// a tmp file that is always new: created exclusively, mode 0600, never through
/// a link, so a stale file's mode or a planted link cannot expose the token.
fn write_daemon_file(path: &std::path::Path, doc: &Value) -> Result<(), DaemonFileError> {
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
        f.write_all(doc.to_string().as_bytes())?;
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

/// Run the daemon until SIGTERM / Ctrl-C.
pub async fn serve(
    app: &App,
    listen: SocketAddr,
    allow_remote: bool,
    clock: SharedClock,
    schedule_file: Option<&std::path::Path>,
) -> Result<u8, CliError> {
    if !listen.ip().is_loopback() && !allow_remote {
        return Err(CliError::input(format!(
            "{listen} is not a loopback address: the API would be reachable from the network"
        ))
        .hint("listen on 127.0.0.1, or pass --allow-remote if a firewall protects it"));
    }
    let store = Arc::new(app.open_store()?);
    let committer = Committer::start(store.clone(), true);
    let token = random_token()?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        CliError::runtime(format!("cannot listen on {listen}: {e}"))
            .hint("pick another port with --listen")
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::runtime(e.to_string()))?;
    // Listen for SIGTERM before anyone can find the daemon and ask it to stop.
    let stop_signals = super::runs::StopSignals::install();
    let daemon_file = app.state.join(DAEMON_FILE);
    write_daemon_file(
        &daemon_file,
        &json!({"address": address.to_string(), "token": token, "pid": std::process::id()}),
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        app: App {
            state: app.state.clone(),
            json: app.json,
            workflow_dirs: app.workflow_dirs.clone(),
            min_free: app.min_free,
        },
        store: store.clone(),
        committer: committer.clone(),
        token,
        stop: stop_rx,
        runs: Mutex::new(HashMap::new()),
        drivers: Mutex::new(HashMap::new()),
        tasks: Mutex::new(tokio::task::JoinSet::new()),
        clock,
        wake: tokio::sync::Notify::new(),
        schedules: tokio::sync::Mutex::new(()),
        scans: super::scan::ScanCache::default(),
    });
    if let Some(file) = schedule_file {
        let specs = crate::spec::load_schedules(file, &daemon.app.search_dirs())?;
        let v = super::schedule::add(&*store, &committer, specs, true, daemon.clock.now()).await?;
        eprint!("{}", super::schedule::render_list(&v));
    }
    for record in records::list_runs(&*store)?
        .into_iter()
        .filter(|r| r.finished_at.is_none())
    {
        start_driver(&daemon, record)?;
    }
    let scheduler = tokio::spawn(super::scheduler::run(daemon.clone()));
    // A log line, not a print: with --log-format json every stderr line is JSON.
    tracing::info!(
        url = %format!("http://{address}/"),
        token_file = %daemon_file.display(),
        "portflow daemon listening"
    );
    let router = Router::new()
        .route("/api/runs", get(list_runs).post(start_run))
        .route("/api/runs/{run}", get(show_run))
        .route("/api/runs/{run}/subjects/{subject}", get(show_instance))
        .route("/api/runs/{run}/instances", get(list_instances))
        .route("/api/runs/{run}/outages", get(run_outages))
        .route("/api/runs/{run}/{verb}", post(operate))
        .route("/api/cli/{command}", get(cli_text))
        .route("/api/cli/plan", post(plan_text))
        .route("/api/backup", post(backup))
        .route(
            "/api/schedules",
            get(super::scheduler::list).post(super::scheduler::add),
        )
        .route(
            "/api/schedules/{name}",
            get(super::scheduler::show).delete(super::scheduler::remove),
        )
        .route(
            "/api/schedules/{name}/{verb}",
            post(super::scheduler::operate),
        )
        .merge(super::web::routes())
        // Outermost: the token (and a cookie write's origin) before any extractor.
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            super::guard::guard,
        ))
        .with_state(daemon.clone());
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
        tracing::error!("scheduler stopped: {}", e.message);
    }
    // Drivers see the same stop signal; wait for them to persist and finish.
    loop {
        let mut tasks =
            std::mem::take(&mut *daemon.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if tasks.is_empty() {
            break;
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!("run driver stopped: {}", e.message);
            }
        }
    }
    committer.barrier().await?;
    let _ = std::fs::remove_file(&daemon_file);
    served.map_err(|e| CliError::runtime(format!("API server: {e}")))?;
    Ok(exit::OK)
}

/// Whether a driver for `run` is going.
pub(super) fn is_active(daemon: &Daemon, run: &str) -> bool {
    daemon
        .runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(run)
}

/// Drive `record` in the background; its inbox is registered for operator inputs.
/// Does nothing if it is already being driven.
pub(super) fn start_driver(daemon: &Shared, record: RunRecord) -> Result<(), CliError> {
    if is_active(daemon, &record.id) {
        return Ok(());
    }
    let clock = run_clock(&record);
    let prepared = prepare(
        &daemon.app,
        daemon.store.clone(),
        daemon.committer.clone(),
        &record,
        clock.clone(),
    )?;
    let (tx, rx) = mpsc::channel(256);
    daemon
        .runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(record.id.clone(), tx);
    daemon
        .drivers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(record.id.clone(), prepared.driver.clone());
    let stop = daemon.stop.clone();
    let d = daemon.clone();
    tracing::info!(
        run = %record.id,
        workflow = %record.workflow.name,
        subjects = record.subjects,
        "driving run"
    );
    let mut tasks = daemon.tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.spawn(async move {
        let end = prepared.driver.drive_with_inbox(stop, Some(rx)).await;
        d.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.id);
        d.drivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.id);
        let id = record.id.clone();
        let result = async {
            if end? == DriveEnd::Finished {
                // Re-read: the driver may have stored the breaker's state meanwhile.
                let mut done = records::get_run(&*d.store, &id)?.unwrap_or(record);
                done.finished_at = Some(clock.now());
                let mut b = Batch::default();
                records::put_run(&mut b, &done);
                d.committer.commit(b).await?;
                tracing::info!(run = %id, states = %state_counts(&d, &id), "run finished");
            } else {
                tracing::info!(run = %id, "run driver stopped; the run is resumable");
            }
            Ok::<(), CliError>(())
        }
        .await;
        // A queued schedule fire may be waiting for this run to end.
        d.wake.notify_one();
        if let Err(e) = &result {
            tracing::error!(run = %id, "run driver failed: {}", e.message);
        }
        result
    });
    // Reap drivers that ended so the set does not grow for a daemon that runs for months.
    while let Some(done) = tasks.try_join_next() {
        if let Ok(Err(e)) = done {
            tracing::error!("run driver stopped: {}", e.message);
        }
    }
    Ok(())
}

/// `succeeded: 4, failed: 1` for the log line of a finished run.
fn state_counts(d: &Daemon, run: &str) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for i in records::list_instances(&*d.store, run).unwrap_or_default() {
        *counts.entry(i.status.name()).or_insert(0) += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    parts.join(", ")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// An error response that keeps the CLI error's hint.
fn error_with_hint(status: StatusCode, e: CliError) -> Response {
    let mut body = json!({"error": e.message});
    if let Some(h) = e.hint {
        body["hint"] = json!(h);
    }
    (status, Json(body)).into_response()
}

fn cli_error(e: CliError) -> Response {
    let status = match e.code {
        exit::INPUT => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_with_hint(status, e)
}

async fn list_runs(State(d): State<Shared>) -> Response {
    let result = (|| -> Result<Value, CliError> {
        let mut out = Vec::new();
        for r in records::list_runs(&*d.store)? {
            let wf = super::runs::pinned_workflow(&r)?;
            // Counts only: the status page asks every 5 s.
            let mut doc = RunSummary::load_counts(&*d.store, &r, &wf)?.to_json();
            doc["active"] = json!(d
                .runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&r.id));
            out.push(doc);
        }
        Ok(json!({"runs": out}))
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => cli_error(e),
    }
}

async fn show_run(State(d): State<Shared>, UrlPath(run): UrlPath<String>) -> Response {
    let result = (|| -> Result<Value, CliError> {
        let r = load_run(&*d.store, &run)?;
        let wf = super::runs::pinned_workflow(&r)?;
        let summary = RunSummary::load(&*d.store, &r, &wf)?;
        let mut doc = summary.to_json();
        doc["active"] = json!(is_active(&d, &run));
        doc["failed"] = json!(summary.failed());
        doc["outcome"] = super::runs::run_outcome(&*d.store, &r, &wf)?.to_json();
        Ok(doc)
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => cli_error(e),
    }
}

async fn show_instance(
    State(d): State<Shared>,
    UrlPath((run, subject)): UrlPath<(String, String)>,
) -> Response {
    let result = (|| -> Result<Value, CliError> {
        let r = load_run(&*d.store, &run)?;
        let idx = records::find_subject(&*d.store, &run, &subject)?
            .ok_or_else(|| CliError::input(format!("run {run} has no subject {subject:?}")))?;
        let key = InstanceKey {
            run: run.clone(),
            idx,
        };
        let inst = records::get_instance(&*d.store, &key)?;
        let events = records::list_events(&*d.store, &key)?;
        Ok(json!({
            "run": run,
            "workflow": {"name": r.workflow.name, "version": r.workflow.version, "hash": r.workflow.hash},
            "instance": inst,
            "events": events,
        }))
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => cli_error(e),
    }
}

/// Query of `GET /api/cli/{status|show}`: what the CLI command would print.
#[derive(Debug, Deserialize)]
struct CliQuery {
    #[serde(default)]
    run: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    json: bool,
    /// `sim-log` / `sim-outages`: the tenant (name or run id).
    #[serde(default)]
    tenant: String,
    /// `outages`: CSV output.
    #[serde(default)]
    csv: bool,
}

async fn cli_text(
    State(d): State<Shared>,
    UrlPath(command): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<CliQuery>,
) -> Response {
    let run = (!q.run.is_empty()).then_some(q.run.as_str());
    let out = match command.as_str() {
        "status" => super::inspect::status_text(&*d.store, run, q.json),
        "show" => super::inspect::show_text(&*d.store, &q.run, &q.subject, q.json),
        "outages" => super::outages::Format::from_flags(q.json, q.csv)
            .and_then(|f| super::outages::outages_text(&*d.store, &q.run, f)),
        "sim-log" | "sim-outages" => super::simcmd::sim_text(
            &d.app,
            Some(&*d.store),
            command.trim_start_matches("sim-"),
            &q.tenant,
            (!q.subject.is_empty()).then_some(q.subject.as_str()),
            q.json,
        ),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no command {other:?} through the API"),
            )
        }
    };
    match out {
        Ok(text) => Json(json!({"output": text})).into_response(),
        Err(e) => error_with_hint(
            if e.code == exit::INPUT {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            e,
        ),
    }
}

/// Body of `POST /api/runs/{run}/{approve|signal|cancel|retry}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperateBody {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    rollback: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    from_step: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn operate(
    State(d): State<Shared>,
    UrlPath((run, verb)): UrlPath<(String, String)>,
    body: Option<Json<OperateBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    if verb == "continue" {
        return match continue_run(&d, &run, body.by.as_deref().unwrap_or("api")).await {
            Ok(accepted) => Json(json!({"run": run, "action": "continue", "accepted": accepted}))
                .into_response(),
            Err(e) => cli_error(e),
        };
    }
    if verb == "resume" {
        return match load_run(&*d.store, &run).and_then(|r| start_driver(&d, r)) {
            Ok(()) => Json(json!({"run": run, "action": "resume", "active": is_active(&d, &run)}))
                .into_response(),
            Err(e) => cli_error(e),
        };
    }
    match apply(&d, &run, &verb, body).await {
        Ok(v) => Json(v).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

/// Close a run's circuit breaker: through its live driver when it is being
/// driven, else in the stored run record (the next drive starts closed).
async fn continue_run(d: &Shared, run: &str, by: &str) -> Result<u32, CliError> {
    let live = d
        .drivers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(run)
        .cloned();
    match live {
        Some(driver) => Ok(driver.continue_breaker(by).await?),
        None => {
            let mut record = load_run(&*d.store, run)?;
            super::runs::accept_failures(&*d.store, &d.committer, &mut record, by).await
        }
    }
}

async fn apply(
    d: &Shared,
    run: &str,
    verb: &str,
    b: OperateBody,
) -> Result<Value, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let record = load_run(&*d.store, run).map_err(|e| (StatusCode::NOT_FOUND, e.message))?;
    let wf = super::runs::pinned_workflow(&record)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.message))?;
    let by = b.by.clone().unwrap_or_else(|| "api".into());
    let step_idx = |id: &str| {
        wf.step_index(id)
            .ok_or_else(|| bad(format!("workflow {} has no step {id:?}", wf.name)))
    };
    let input = match verb {
        "approve" => Input::Approve {
            step: b.step.clone(),
            by,
        },
        "signal" => Input::Signal {
            name: b
                .name
                .clone()
                .ok_or_else(|| bad("signal needs a `name`".into()))?,
            data: b.data.clone(),
            by,
        },
        "cancel" => Input::Cancel {
            reason: b
                .reason
                .clone()
                .unwrap_or_else(|| "cancelled through the API".into()),
            rollback: b.rollback,
        },
        "retry" => Input::Retry {
            from_step: b.from_step.as_deref().map(step_idx).transpose()?,
            by,
        },
        other => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}: approve, signal, cancel or retry"),
            ))
        }
    };
    let targets: Vec<u32> = match &b.subject {
        Some(s) => vec![records::find_subject(&*d.store, run, s)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("run {run} has no subject {s:?}"),
                )
            })?],
        None => (0..record.subjects).collect(),
    };
    let sender = d
        .runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(run)
        .cloned();
    let addressed = targets.len();
    let mut changed = 0usize;
    let mut offline = Vec::new();
    for idx in targets {
        // A run being driven takes inputs through its driver, which owns the instances.
        let routed = match &sender {
            Some(tx) => {
                let (reply, answer) = oneshot::channel();
                if tx
                    .send(Inbound {
                        idx,
                        input: input.clone(),
                        reply,
                    })
                    .await
                    .is_ok()
                {
                    match answer.await {
                        Ok(Ok(rule)) => {
                            changed += usize::from(rule != UNEXPECTED);
                            true
                        }
                        Ok(Err(e)) => {
                            return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                        }
                        Err(_) => false,
                    }
                } else {
                    false
                }
            }
            None => false,
        };
        if !routed {
            offline.push(idx);
        }
    }
    if !offline.is_empty() {
        // No driver (the run had finished): apply through the store, then drive the
        // run again if that gave it work (a retry, a rollback).
        let mut batch = Batch::default();
        let mut due = false;
        for idx in offline {
            let key = InstanceKey {
                run: run.to_string(),
                idx,
            };
            let Some(inst) = records::get_instance(&*d.store, &key)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            else {
                continue;
            };
            let clock = run_clock(&record);
            let t = crate::engine::machine::transition(
                crate::engine::machine::Ctx::new(&wf, &[], clock.now()),
                &inst,
                input.clone(),
            );
            if t.persist != crate::engine::machine::Persist::Nothing {
                records::put_transition(&mut batch, &inst, &t);
                changed += 1;
                due |= t.next.due.is_some();
            }
        }
        let mut record = record.clone();
        if due {
            record.finished_at = None;
            records::put_run(&mut batch, &record);
        }
        d.committer
            .commit(batch)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if due {
            start_driver(d, record).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.message))?;
        }
    }
    // Instances changed outside the cache's view; the page and /metrics read them again.
    d.scans.invalidate();
    tracing::info!(
        run = %run,
        action = %verb,
        by = %b.by.as_deref().unwrap_or("api"),
        changed,
        "operator input through the API"
    );
    if changed == 0 {
        return Err(bad(format!(
            "nothing to {verb}: no addressed instance of run {run} is in a state where it applies"
        )));
    }
    Ok(json!({"run": run, "action": verb, "changed": changed, "unchanged": addressed - changed}))
}

/// Default listen address.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}

/// Body of `POST /api/runs` and `POST /api/cli/plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFileBody {
    /// Absolute path of the run file (the daemon's working directory is not the caller's).
    run_file: std::path::PathBuf,
    /// `plan` only: JSON output.
    #[serde(default)]
    json: bool,
}

fn input_error(e: CliError) -> Response {
    let status = match e.code {
        exit::INPUT => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_with_hint(status, e)
}

/// `POST /api/runs {"run_file": "/abs/path.yaml"}`: store a run and drive it.
async fn start_run(State(d): State<Shared>, body: Option<Json<RunFileBody>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"run_file\": \"/absolute/path/to/run.yaml\"}",
        );
    };
    match launch_run_file(&d, &body.run_file, None, None, None).await {
        Ok(Launched::NothingLeft) => error(
            StatusCode::BAD_REQUEST,
            format!("{} has no subjects", body.run_file.display()),
        ),
        Ok(Launched::Run(record)) => Json(json!({
            "run": record.id,
            "subjects": record.subjects,
            "started": super::runs::started_line(&record),
        }))
        .into_response(),
        Err(e) => input_error(e),
    }
}

/// What [`launch_run_file`] did.
pub(super) enum Launched {
    /// Stored this run and started driving it.
    Run(Box<RunRecord>),
    /// A wave found no subject left to migrate; nothing was stored.
    NothingLeft,
}

/// Load a run file, store a run of all its subjects (or of the next `wave` not yet
/// migrated) under `id` (or a fresh id), and drive it.
pub(super) async fn launch_run_file(
    d: &Shared,
    file: &std::path::Path,
    wave: Option<usize>,
    label: Option<String>,
    id: Option<String>,
) -> Result<Launched, CliError> {
    let loaded = super::runpath::load(file, &d.app.search_dirs())?;
    // Scheduled waves have no terminal: the journal gets the warnings.
    for w in loaded.warnings() {
        tracing::warn!(warning = %w, "workflow warning");
    }
    let picked: Vec<&crate::spec::runfile::Subject> = match wave {
        None => loaded.subjects.iter().collect(),
        Some(n) => super::scheduler::next_wave(&*d.store, &loaded, n)?,
    };
    if picked.is_empty() {
        return Ok(Launched::NothingLeft);
    }
    let (record, _) = super::runs::create_run(
        &*d.store,
        &d.committer,
        &loaded,
        file,
        &picked,
        super::runs::NewRun {
            label,
            id,
            virtual_start: super::simcmd::run_start(&d.app, &loaded, Some(d.clock.now()))?,
        },
    )
    .await?;
    start_driver(d, record.clone())?;
    Ok(Launched::Run(Box::new(record)))
}

/// `POST /api/cli/plan {"run_file": "/abs/path.yaml", "json": false}`: what `plan` prints.
async fn plan_text(State(d): State<Shared>, body: Option<Json<RunFileBody>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"run_file\": \"/absolute/path\"}",
        );
    };
    let app = App {
        state: d.app.state.clone(),
        json: body.json,
        workflow_dirs: d.app.workflow_dirs.clone(),
        min_free: d.app.min_free,
    };
    let planned = match super::runpath::load(&body.run_file, &app.search_dirs()) {
        Ok(loaded) => super::plan::plan_loaded(&app, &loaded).await,
        Err(e) => Err(e),
    };
    match planned {
        Ok((text, code)) => Json(json!({"output": text, "code": code})).into_response(),
        Err(e) => input_error(e),
    }
}

/// Body of `POST /api/backup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    /// Absolute path of a directory that does not exist yet.
    dest: std::path::PathBuf,
}

/// `POST /api/backup {"dest": "/backups/portflow-2026-11-23"}`: a consistent copy
/// of the state directory while runs go on (their writes wait for the copy).
async fn backup(State(d): State<Shared>, body: Option<Json<BackupBody>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"dest\": \"/absolute/new/dir\"}",
        );
    };
    let d2 = d.clone();
    let done = tokio::task::spawn_blocking(move || {
        super::backup::backup_into(&d2.app, &d2.store, &body.dest)
    })
    .await;
    match done {
        Ok(Ok(v)) => {
            tracing::info!(dest = %v["backup"], "backup taken");
            Json(v).into_response()
        }
        Ok(Err(e)) => input_error(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("backup task: {e}"),
        ),
    }
}

/// `GET /api/runs/{run}/outages`: what `outages --json` prints.
async fn run_outages(State(d): State<Shared>, UrlPath(run): UrlPath<String>) -> Response {
    let result =
        load_run(&*d.store, &run).and_then(|r| super::outages::OutageReport::load(&*d.store, &r));
    match result {
        Ok(report) => Json(report.to_json()).into_response(),
        Err(e) => cli_error(e),
    }
}

/// Every stored run with its figures (cached, see [`super::scan`]), oldest first.
pub(super) fn run_scans(
    d: &Daemon,
) -> Result<Vec<(RunRecord, Arc<super::scan::RunScan>)>, CliError> {
    let runs = records::list_runs(&*d.store)?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let scan = d
            .scans
            .get(&*d.store, &r, is_active(d, &r.id), super::scan::TTL)?;
        out.push((r, scan));
    }
    d.scans
        .retain(&out.iter().map(|(r, _)| r.id.as_str()).collect());
    Ok(out)
}

/// Query of `GET /api/runs/{run}/instances`.
#[derive(Debug, Deserialize)]
struct InstancesQuery {
    /// Only instances in this state (`failed`, `window`, `blocked`, …).
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_page")]
    limit: usize,
}

fn default_page() -> usize {
    100
}

/// `GET /api/runs/{run}/instances?state=failed&offset=0&limit=100`: a page of a
/// run's instances (subject, state, step, next due instant), in subject order.
async fn list_instances(
    State(d): State<Shared>,
    UrlPath(run): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<InstancesQuery>,
) -> Response {
    let result = (|| -> Result<Value, CliError> {
        let r = load_run(&*d.store, &run)?;
        let wf = super::runs::pinned_workflow(&r)?;
        let limit = q.limit.min(10_000);
        let mut total = 0usize;
        let mut page = Vec::new();
        records::for_each_instance(&*d.store, &run, &mut |inst| {
            if q.state.as_deref().is_some_and(|s| s != inst.status.name()) {
                return;
            }
            if total >= q.offset && page.len() < limit {
                let step = match &inst.status {
                    crate::engine::instance::Status::Running { step, .. }
                    | crate::engine::instance::Status::Compensating { step, .. }
                    | crate::engine::instance::Status::Failed { step, .. }
                    | crate::engine::instance::Status::NeedsAttention { step, .. } => {
                        wf.steps.get(*step).map(|s| s.id.clone())
                    }
                    _ => None,
                };
                page.push(json!({
                    "idx": inst.idx,
                    "subject": inst.subject,
                    "state": inst.status.name(),
                    "step": step,
                    "due": inst.due.map(|t| t.rfc3339()),
                }));
            }
            total += 1;
        })?;
        Ok(json!({"run": run, "total": total, "offset": q.offset, "instances": page}))
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => cli_error(e),
    }
}
