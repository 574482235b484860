//! `run`, `resume` and `plan` while a daemon holds the state directory: the
//! daemon does the work, this process shows it.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::{daemon_error, enc, has_daemon, request};
use super::{exit, print_json, App, CliError};

/// Absolute form of a path given on the command line (the daemon's working
/// directory is not ours).
pub fn absolute(p: &Path) -> Result<std::path::PathBuf, CliError> {
    std::path::absolute(p).map_err(|e| CliError::input(format!("{}: {e}", p.display())))
}

/// `portflow run FILE` through the daemon: it starts and drives the run; we print
/// its progress until it ends. Ctrl-C stops watching, not the run.
pub async fn run(app: &App, err: CliError, file: &Path) -> Result<u8, CliError> {
    if err.code != exit::LOCKED || !has_daemon(app) {
        return Err(err);
    }
    let body = json!({"run_file": absolute(file)?});
    let (status, v) = request(app, "POST", "/api/runs", &body)?;
    if status != 200 {
        return Err(daemon_error(status, &v));
    }
    let id = v["run"].as_str().unwrap_or_default().to_string();
    if !app.json {
        println!("{}", v["started"].as_str().unwrap_or(&id));
        println!("the daemon drives this run; Ctrl-C stops watching, not the run");
    }
    follow(app, &id).await
}

/// `portflow resume [RUN]` through the daemon: it already drives every unfinished
/// run, so this only says so (and watches one run when named).
pub async fn resume(
    app: &App,
    err: CliError,
    run: Option<&str>,
    continue_by: Option<&str>,
) -> Result<u8, CliError> {
    if err.code != exit::LOCKED || !has_daemon(app) {
        return Err(err);
    }
    if let (Some(id), Some(by)) = (run, continue_by) {
        let (status, v) = request(
            app,
            "POST",
            &format!("/api/runs/{}/continue", enc(id)),
            &json!({ "by": by }),
        )?;
        if status != 200 {
            return Err(daemon_error(status, &v));
        }
        if !app.json {
            println!(
                "run {id}: circuit breaker closed by {by}; {} failure(s) accepted, \
                 new outage steps may start again",
                v["accepted"].as_u64().unwrap_or(0)
            );
        }
    }
    let Some(id) = run else {
        let (status, v) = request(app, "GET", "/api/runs", &Value::Null)?;
        if status != 200 {
            return Err(daemon_error(status, &v));
        }
        let active: Vec<&str> = v["runs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["finished_at"].is_null())
                    .filter_map(|r| r["run"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if app.json {
            print_json(&json!({"resumed": active, "by": "daemon"}));
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
    let (status, v) = request(
        app,
        "POST",
        &format!("/api/runs/{}/resume", enc(id)),
        &json!({}),
    )?;
    if status != 200 {
        return Err(daemon_error(status, &v));
    }
    if !app.json {
        println!("resuming run {id} in the daemon; Ctrl-C stops watching, not the run");
    }
    follow(app, id).await
}

/// Poll a run until its driver stops, then print what `status RUN` prints and
/// return the exit code a local run would have had.
async fn follow(app: &App, id: &str) -> Result<u8, CliError> {
    let path = format!("/api/runs/{}", enc(id));
    let mut last_line = String::new();
    loop {
        let (status, v) = request(app, "GET", &path, &Value::Null)?;
        if status != 200 {
            return Err(daemon_error(status, &v));
        }
        if !v["active"].as_bool().unwrap_or(false) {
            return finish(app, id, &v);
        }
        if !app.json {
            let line = progress_line(&v);
            if line != last_line {
                eprintln!("{line}");
                last_line = line;
            }
        }
        tokio::select! {
            _ = super::runs::wait_for_stop_signal() => {
                if !app.json {
                    println!("stopped watching; the daemon goes on with run {id}: `portflow status {id}`");
                }
                return Ok(exit::INTERRUPTED);
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn progress_line(v: &Value) -> String {
    let states = v["states"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut line = format!("{}: {states}", v["run"].as_str().unwrap_or("run"));
    // Who is out of service matters more than any count while a wave runs.
    let down = v["out_of_service"]["now"].as_u64().unwrap_or(0);
    if down > 0 {
        line.push_str(&format!(" · out of service now: {down}"));
    }
    if !v["paused"].is_null() {
        line.push_str(" · paused (portflow status for why)");
    }
    line
}

fn finish(app: &App, id: &str, v: &Value) -> Result<u8, CliError> {
    // The daemon applies the same outcome rule as a local run.
    let code = v["outcome"]["exit_code"]
        .as_u64()
        .map_or(exit::FAILED, |c| c as u8);
    let (status, out) = request(
        app,
        "GET",
        &format!("/api/cli/status?run={}&json={}", enc(id), app.json),
        &Value::Null,
    )?;
    match (status, out["output"].as_str()) {
        (200, Some(text)) => print!("{text}"),
        _ => return Err(daemon_error(status, &out)),
    }
    Ok(code)
}

/// `portflow plan FILE` through the daemon, which holds the simulated tenants.
pub fn plan(app: &App, file: &Path) -> Result<u8, CliError> {
    let body = json!({"run_file": absolute(file)?, "json": app.json});
    let (status, v) = request(app, "POST", "/api/cli/plan", &body)?;
    match (status, v["output"].as_str()) {
        (200, Some(text)) => {
            print!("{text}");
            Ok(v["code"].as_u64().map_or(exit::OK, |c| c as u8))
        }
        _ => Err(daemon_error(status, &v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_says_who_is_out_of_service_and_a_pause() {
        let v = json!({"run": "r1", "states": {"waiting": 3}, "out_of_service": {"now": 2}, "paused": null});
        assert_eq!(progress_line(&v), "r1: waiting 3 · out of service now: 2");
        let v = json!({"run": "r1", "states": {"held": 3}, "out_of_service": {"now": 0},
                       "paused": {"failures": 5}});
        assert_eq!(
            progress_line(&v),
            "r1: held 3 · paused (portflow status for why)"
        );
    }
}
