//! `run` and `resume`: drive runs here with a live progress display (serving
//! the local API meanwhile, so other commands work), or watch the daemon
//! drive them; then print the summary.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use tokio::sync::watch;

use super::error::CliError;
use super::print::{print_json, print_warnings};
use super::progress;
use crate::app::backends::render_tenant_report;
use crate::app::driver::{prepare, Prepared};
use crate::app::runs::{create_run, finish_run, run_outcome, runs_to_resume, started_line, NewRun};
use crate::app::summary::RunSummary;
use crate::app::App;
use crate::client::{connect, Conn, Local};
use crate::clock::Stopwatch;
use crate::daemon::foreground::{self, Api, Foreground};
use crate::engine::executor::DriveEnd;
use crate::engine::run::RunRecord;
use crate::report::exit;
use crate::spec;

/// `portflow run FILE`.
pub async fn run(app: &App, file: &Path, listen: Option<SocketAddr>) -> Result<u8, CliError> {
    let loaded = spec::load_run(file, &app.search_dirs())?;
    print_warnings(&loaded.warnings());
    let local = match connect(app)? {
        Conn::Local(l) => l,
        Conn::Daemon(d) => {
            // The daemon starts and drives the run; we print its progress until it
            // ends. Ctrl-C stops watching, not the run.
            let started = d.start_run(file)?;
            if !app.json {
                println!("{}", started.started);
                println!("the daemon drives this run; Ctrl-C stops watching, not the run");
            }
            return Ok(d.follow(&started.run, app.json).await?);
        }
    };
    let api = serve_api(app, &local, listen).await?;
    let all: Vec<&spec::runfile::Subject> = loaded.subjects.iter().collect();
    // A named simulated tenant's clock goes on where its last run left it.
    let opts = NewRun {
        virtual_start: crate::app::sim::run_start(app, &loaded, None)?,
        ..NewRun::default()
    };
    let (record, _) =
        create_run(&*local.store, local.committer(), &loaded, file, &all, opts).await?;
    if !app.json {
        println!("{}", started_line(&record));
    }
    let code = drive(app, &local, api.as_ref(), record).await;
    stop_api(api).await;
    code
}

/// Serve the local API while this process holds the state directory; when it
/// cannot, say once why and go on without it.
async fn serve_api(
    app: &App,
    local: &Local,
    listen: Option<SocketAddr>,
) -> Result<Option<Foreground>, CliError> {
    let store = local.store.clone();
    match foreground::serve(app, store, local.committer().clone(), listen).await? {
        Api::Serving(f) => Ok(Some(f)),
        Api::NotServing(line) => {
            eprintln!("{line}");
            Ok(None)
        }
    }
}

async fn stop_api(api: Option<Foreground>) {
    if let Some(f) = api {
        f.stop().await;
    }
}

/// `portflow resume [RUN] [--continue]`.
pub async fn resume(
    app: &App,
    run: Option<&str>,
    continue_by: Option<&str>,
    listen: Option<SocketAddr>,
) -> Result<u8, CliError> {
    if continue_by.is_some() && run.is_none() {
        return Err(CliError::input("`resume --continue` needs the run id")
            .hint("portflow resume --continue <run>: `portflow status` lists the runs"));
    }
    let conn = connect(app)?;
    let run = match run {
        Some(r) => Some(conn.run_id(r).await?),
        None => None,
    };
    let run = run.as_deref();
    if let (Some(id), Some(by)) = (run, continue_by) {
        let accepted = conn.service().continue_breaker(id, by).await?;
        if !app.json {
            println!(
                "run {id}: circuit breaker closed by {by}; {accepted} failure(s) accepted, \
                 new outage steps may start again"
            );
        }
    }
    let local = match conn {
        Conn::Local(l) => l,
        Conn::Daemon(d) => return Ok(resume_through(app, &d, run).await?),
    };
    let runs = runs_to_resume(&*local.store, run)?;
    if runs.is_empty() {
        if app.json {
            print_json(&serde_json::json!({"resumed": []}));
        } else {
            println!("nothing to resume: every run has finished");
        }
        return Ok(exit::OK);
    }
    let api = serve_api(app, &local, listen).await?;
    let mut worst = Ok(exit::OK);
    for record in runs {
        if !app.json {
            println!("resuming run {} ({})", record.id, record.workflow.name);
        }
        match drive(app, &local, api.as_ref(), record).await {
            Ok(code) if code == exit::INTERRUPTED => {
                worst = Ok(code);
                break;
            }
            Ok(code) => worst = worst.map(|w| w.max(code)),
            Err(e) => {
                worst = Err(e);
                break;
            }
        }
    }
    stop_api(api).await;
    worst
}

/// `resume` while the daemon drives every unfinished run: say so, and watch
/// the one named.
async fn resume_through(
    app: &App,
    d: &crate::client::Daemon,
    run: Option<&str>,
) -> crate::app::Result<u8> {
    let Some(id) = run else {
        let unfinished = d.unfinished_runs()?;
        if d.is_foreground() {
            return Ok(resume_beside_foreground(app, &unfinished));
        }
        let active: Vec<String> = unfinished.into_iter().map(|(r, _)| r).collect();
        if app.json {
            print_json(&serde_json::json!({"resumed": active, "by": "daemon"}));
        } else if active.is_empty() {
            println!("nothing to resume: every run has finished");
        } else {
            println!(
                "the daemon drives every unfinished run: {}",
                active.join(", ")
            );
        }
        return Ok(exit::OK);
    };
    d.resume_run(id)?;
    if !app.json {
        let by = if d.is_foreground() {
            "by the foreground run that holds the state directory"
        } else {
            "in the daemon"
        };
        println!("resuming run {id} {by}; Ctrl-C stops watching, not the run");
    }
    d.follow(id, app.json).await
}

/// `resume` while a foreground run holds the state directory: it drives only
/// its own run; the others wait until it ends.
fn resume_beside_foreground(app: &App, unfinished: &[(String, bool)]) -> u8 {
    let pick = |active: bool| -> Vec<&str> {
        unfinished
            .iter()
            .filter(|(_, a)| *a == active)
            .map(|(r, _)| r.as_str())
            .collect()
    };
    let (driven, waiting) = (pick(true), pick(false));
    if app.json {
        print_json(&serde_json::json!({"resumed": driven, "by": "foreground", "waiting": waiting}));
    } else {
        println!(
            "a foreground `portflow run`/`resume` holds the state directory and drives: {}",
            if driven.is_empty() {
                "nothing now".to_string()
            } else {
                driven.join(", ")
            }
        );
        if !waiting.is_empty() {
            println!(
                "not driven until it ends: {} (then `portflow resume`, or use `portflow serve` to drive several at once)",
                waiting.join(", ")
            );
        }
    }
    if waiting.is_empty() {
        exit::OK
    } else {
        exit::LOCKED
    }
}

/// Drive a stored run here until it ends, is idle, or Ctrl-C; print its
/// summary. With `api`, the API's operator inputs reach this driver.
async fn drive(
    app: &App,
    local: &Local,
    api: Option<&Foreground>,
    record: RunRecord,
) -> Result<u8, CliError> {
    let store = local.store.clone();
    let committer = local.committer().clone();
    let Prepared {
        driver,
        report,
        workflow,
    } = prepare(app, store.clone(), committer.clone(), &record)?;
    let clock = driver.clock.clone();
    let progress = driver.progress.clone();
    let space = driver.space.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        crate::app::stop::wait_for_stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let watch = Stopwatch::start();
    let virtual_start = clock.now();
    let display = progress::Display::start(
        app.json,
        workflow.clone(),
        progress.clone(),
        clock.clone(),
        driver.budget.clone(),
    );
    let (end, attached) = match api {
        Some(f) => {
            let (end, a) = f.drive(&driver, record.subjects, stop_rx).await;
            (end, Some(a))
        }
        None => (driver.drive(stop_rx).await, None),
    };
    display.stop().await;
    signals.abort();
    let end = end.map_err(crate::app::Error::from)?;
    let record = finish_run(&*store, &committer, record, end, &clock).await?;
    // Stored: inputs from now on go to the store, as offline.
    drop(attached);
    let elapsed = watch.elapsed();
    let virtual_elapsed = clock.now().since(virtual_start);
    let summary = RunSummary::load(&*store, &record, &workflow)?;
    let outcome = run_outcome(&*store, &record, &workflow)?;
    let code = match end {
        DriveEnd::Stopped => exit::INTERRUPTED,
        _ => outcome.exit_code(),
    };
    let calls = progress.calls.load(std::sync::atomic::Ordering::Relaxed);
    let tenant_report = report.as_ref().map(|r| r.to_json());
    if app.json {
        let mut doc = summary.to_json();
        doc["end"] = Value::String(format!("{end:?}"));
        doc["outcome"] = outcome.to_json();
        doc["elapsed_real_s"] = serde_json::json!(elapsed.as_secs_f64());
        doc["elapsed_virtual_s"] = serde_json::json!(virtual_elapsed.as_secs_f64());
        doc["backend_calls_this_session"] = serde_json::json!(calls);
        if let Some(s) = tenant_report {
            doc["simulator"] = s;
        }
        print_json(&doc);
        return Ok(code);
    }
    print!("{}", summary.render(app.zone));
    print!("{}", outcome.render_chain());
    println!(
        "elapsed: {} real, {} virtual (time scale {})",
        crate::report::table::human_duration(elapsed),
        crate::report::table::human_duration(virtual_elapsed),
        clock.scale()
    );
    println!(
        "backend calls: {} this session; {:.1} per subject over the run",
        calls,
        summary.calls_per_subject()
    );
    if let Some(s) = &tenant_report {
        print!("{}", render_tenant_report(s));
    }
    let space_held = space.as_ref().map_or(0, |g| g.held());
    print_end(app, &record, end, space_held);
    Ok(code)
}

/// What to do next, after a drive that stopped or went idle.
fn print_end(app: &App, record: &RunRecord, end: DriveEnd, space_held: usize) {
    match end {
        DriveEnd::Stopped => {
            println!("stopped; continue with: portflow resume {}", record.id)
        }
        DriveEnd::Idle { blocked, held } => {
            if blocked > 0 {
                println!(
                    "{blocked} instance(s) wait for a person (an approval, a signal or a manual task): \
                     `portflow show {} <subject>` says which and how; then portflow resume {}",
                    record.id, record.id
                );
            }
            if space_held > 0 {
                println!(
                    "{space_held} instance(s) held before an outage step: the disk holding {} has less \
                     than {} free (--min-free); free some space, then portflow resume {}",
                    app.state.display(),
                    crate::engine::space::human_bytes(app.min_free),
                    record.id
                );
            }
            if held > space_held {
                match &record.breaker.tripped {
                    Some(t) => println!(
                        "{held} instance(s) held: the circuit breaker paused new outages after {} failure(s) \
                         (stop_after_failures: {}); look at the failures (`portflow status {}`), then \
                         `portflow resume --continue {}`",
                        t.failures, t.threshold, record.id, record.id
                    ),
                    None => println!(
                        "{held} instance(s) held before an outage step: the out-of-service budget is taken \
                         by subjects that are still out of service (`portflow outages {}`); restore them \
                         (retry, or cancel --rollback), then portflow resume {}",
                        record.id, record.id
                    ),
                }
            }
        }
        _ => {}
    }
}
