//! [`Service`] through a running daemon's API, found through
//! `<state>/daemon.json`; and `run`, `resume`, `plan`, `sim log` there: the
//! daemon does the work, this process shows it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::service::Service;
use crate::api::{
    enc, AddSchedules, Applied, BackupBody, BackupDone, Continued, DaemonFile, ErrorBody,
    OperateBody, Output, RunFileBody, RunList, RunProgress, RunStarted, DAEMON_FILE,
};
use crate::app::outages::Format;
use crate::app::schedules::ScheduleOp;
use crate::app::{App, Error, Result};
use crate::report::exit;
use crate::report::run_report::Format as ReportFormat;
use crate::report::zone::Zone;

/// A daemon named by `daemon.json` (it may have died since).
pub struct Daemon {
    address: String,
    token: String,
    file: PathBuf,
    foreground: bool,
    app: App,
}

/// No body.
const NONE: Option<&()> = None;

impl Daemon {
    /// The daemon `<state>/daemon.json` names, if it names one.
    pub fn find(app: &App) -> Option<Daemon> {
        let file = app.state.join(DAEMON_FILE);
        let text = std::fs::read_to_string(&file).ok()?;
        let doc: DaemonFile = serde_json::from_str(&text).ok()?;
        Some(Daemon {
            address: doc.address,
            token: doc.token,
            file,
            foreground: doc.foreground,
            app: app.clone(),
        })
    }

    /// Whether a foreground `run`/`resume` serves this API (it drives only its
    /// own run), not `portflow serve`.
    pub fn is_foreground(&self) -> bool {
        self.foreground
    }

    /// One request; returns the HTTP status and the JSON body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(u16, Value)> {
        let unreachable = |source: std::io::Error| Error::Unreachable {
            addr: self.address.clone(),
            daemon_file: self.file.clone(),
            source,
        };
        let addr = &self.address;
        let mut s = TcpStream::connect(addr).map_err(unreachable)?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(300)));
        let body = match body {
            Some(b) => serde_json::to_string(b)
                .map_err(|e| Error::runtime(format!("cannot encode the request: {e}")))?,
            None => String::new(),
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// One request whose success answer is a `T`; a refusal is [`Error::Remote`]
    /// with the daemon's message and hint.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let (status, v) = self.request(method, path, body)?;
        if status != 200 {
            let e: ErrorBody = serde_json::from_value(v).unwrap_or_default();
            let message = if e.error.is_empty() {
                "the daemon refused the request".to_string()
            } else {
                e.error
            };
            return Err(Error::Remote {
                status,
                message,
                hint: e.hint,
            });
        }
        serde_json::from_value(v).map_err(|e| {
            Error::runtime(format!("the daemon's answer to {path} does not parse: {e}"))
        })
    }

    /// The text a CLI command prints, made by the daemon.
    fn text(&self, command: &str, query: &str) -> Result<String> {
        let out: Output = self.call("GET", &format!("/api/cli/{command}?{query}"), NONE)?;
        Ok(out.output)
    }

    /// `plan FILE` here, the daemon holding the simulated tenants.
    pub fn plan(
        &self,
        file: &Path,
        json: bool,
        format: Option<ReportFormat>,
    ) -> Result<(String, u8)> {
        let body = RunFileBody {
            run_file: absolute(file)?,
            json,
            format: format.map(|f| f.name().to_string()),
        };
        let out: Output = self.call("POST", "/api/cli/plan", Some(&body))?;
        Ok((out.output, out.code.unwrap_or(exit::OK)))
    }

    /// `sim log` / `sim outages` here.
    pub fn sim_text(
        &self,
        what: &str,
        tenant: &str,
        user: Option<&str>,
        json: bool,
    ) -> Result<String> {
        self.text(
            &format!("sim-{what}"),
            &format!(
                "tenant={}&subject={}&json={json}",
                enc(tenant),
                enc(user.unwrap_or_default())
            ),
        )
    }

    /// Start a run of `file` here; the line `run` prints.
    pub fn start_run(&self, file: &Path) -> Result<RunStarted> {
        let body = RunFileBody {
            run_file: absolute(file)?,
            json: false,
            format: None,
        };
        self.call("POST", "/api/runs", Some(&body))
    }

    /// Drive run `id` again here (it usually is already).
    pub fn resume_run(&self, id: &str) -> Result<()> {
        let _: Value = self.call(
            "POST",
            &format!("/api/runs/{}/resume", enc(id)),
            Some(&json!({})),
        )?;
        Ok(())
    }

    /// The runs not yet finished, and whether a driver runs each.
    pub fn unfinished_runs(&self) -> Result<Vec<(String, bool)>> {
        let list: RunList = self.call("GET", "/api/runs", NONE)?;
        Ok(list
            .runs
            .into_iter()
            .filter(|r| r.finished_at.is_none())
            .map(|r| (r.run, r.active))
            .collect())
    }

    /// Poll a run until its driver stops, then print what `status RUN` prints and
    /// return the exit code a local run would have had.
    pub async fn follow(&self, id: &str, json: bool) -> Result<u8> {
        let path = format!("/api/runs/{}", enc(id));
        let mut last_line = String::new();
        loop {
            let v: RunProgress = match self.call("GET", &path, NONE) {
                Ok(v) => v,
                // A foreground run's API ends with it: read the run's end here.
                Err(e @ Error::Unreachable { .. }) if self.foreground => {
                    return self.ended_here(id, json, e).await
                }
                Err(e) => return Err(e),
            };
            if !v.active {
                // The daemon applies the same outcome rule as a local run.
                let code = v.outcome.map_or(exit::FAILED, |o| o.exit_code);
                print!("{}", self.status(Some(id), json, self.app.zone).await?);
                return Ok(code);
            }
            if !json {
                let line = progress_line(&v);
                if line != last_line {
                    eprintln!("{line}");
                    last_line = line;
                }
            }
            tokio::select! {
                _ = crate::app::stop::wait_for_stop_signal() => {
                    if !json {
                        println!("stopped watching; the daemon goes on with run {id}: `portflow status {id}`");
                    }
                    return Ok(exit::INTERRUPTED);
                }
                _ = crate::clock::wait_real(Duration::from_secs(1)) => {}
            }
        }
    }
}

impl Daemon {
    /// After a foreground run that served the API ended: once its store is
    /// free, print what `status RUN` prints and return the run's exit code.
    async fn ended_here(&self, id: &str, json: bool, gone: Error) -> Result<u8> {
        let t0 = crate::clock::Stopwatch::start();
        let store = loop {
            match self.app.open_store() {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == crate::app::Kind::Locked
                        && t0.elapsed() < Duration::from_secs(10) =>
                {
                    crate::clock::wait_real(Duration::from_millis(100)).await
                }
                Err(_) => return Err(gone),
            }
        };
        let record = crate::app::runs::load_run(&store, id)?;
        let wf = crate::app::runs::pinned_workflow(&record)?;
        let code = crate::app::runs::run_outcome(&store, &record, &wf)?.exit_code();
        print!(
            "{}",
            crate::app::show::status_text(&store, Some(id), json, self.app.zone)?
        );
        Ok(code)
    }
}

/// Absolute form of a path given on the command line (the daemon's working
/// directory is not ours).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::input(format!("{}: {e}", p.display())))
}

fn progress_line(v: &RunProgress) -> String {
    let states = v
        .states
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let run = if v.run.is_empty() { "run" } else { &v.run };
    let mut line = format!("{run}: {states}");
    // Who is out of service matters more than any count while a wave runs.
    let down = v.out_of_service.now;
    if down > 0 {
        line.push_str(&format!(" · out of service now: {down}"));
    }
    if v.paused.is_some() {
        line.push_str(" · paused (portflow status for why)");
    }
    line
}

#[async_trait]
impl Service for Daemon {
    async fn resolve_run(&self, run: &str) -> Result<String> {
        self.text("resolve", &format!("run={}", enc(run)))
    }

    async fn operate(&self, run: &str, verb: &str, body: &OperateBody) -> Result<Applied> {
        self.call(
            "POST",
            &format!("/api/runs/{}/{verb}", enc(run)),
            Some(body),
        )
    }

    async fn continue_breaker(&self, run: &str, by: &str) -> Result<u32> {
        let body = OperateBody {
            by: Some(by.to_string()),
            ..OperateBody::default()
        };
        let c: Continued = self.call(
            "POST",
            &format!("/api/runs/{}/continue", enc(run)),
            Some(&body),
        )?;
        Ok(c.accepted)
    }

    async fn status(&self, run: Option<&str>, json: bool, zone: Zone) -> Result<String> {
        self.text(
            "status",
            &format!(
                "run={}&json={json}&tz={}",
                enc(run.unwrap_or("")),
                enc(&zone.to_string())
            ),
        )
    }

    async fn show(&self, run: &str, subject: &str, json: bool, zone: Zone) -> Result<String> {
        self.text(
            "show",
            &format!(
                "run={}&subject={}&json={json}&tz={}",
                enc(run),
                enc(subject),
                enc(&zone.to_string())
            ),
        )
    }

    async fn outages(&self, run: &str, format: Format, zone: Zone) -> Result<String> {
        self.text(
            "outages",
            &format!(
                "run={}&json={}&csv={}&tz={}",
                enc(run),
                format == Format::Json,
                format == Format::Csv,
                enc(&zone.to_string())
            ),
        )
    }

    async fn report(&self, run: &str, format: ReportFormat, zone: Option<&str>) -> Result<String> {
        self.text(
            "report",
            &format!(
                "run={}&format={}&tz={}",
                enc(run),
                format.name(),
                enc(zone.unwrap_or_default())
            ),
        )
    }

    async fn backup(&self, dest: &Path) -> Result<BackupDone> {
        let body = BackupBody {
            dest: dest.to_path_buf(),
        };
        self.call("POST", "/api/backup", Some(&body))
    }

    async fn schedule(&self, op: ScheduleOp) -> Result<Value> {
        match op {
            ScheduleOp::Add { specs, replace } => {
                let body = AddSchedules {
                    schedules: specs,
                    replace,
                };
                self.call("POST", "/api/schedules", Some(&body))
            }
            ScheduleOp::List => self.call("GET", "/api/schedules", NONE),
            ScheduleOp::Show(name) => {
                self.call("GET", &format!("/api/schedules/{}", enc(&name)), NONE)
            }
            ScheduleOp::Pause(name) => self.call(
                "POST",
                &format!("/api/schedules/{}/pause", enc(&name)),
                Some(&json!({})),
            ),
            ScheduleOp::Resume(name) => self.call(
                "POST",
                &format!("/api/schedules/{}/resume", enc(&name)),
                Some(&json!({})),
            ),
            ScheduleOp::Remove(name) => {
                self.call("DELETE", &format!("/api/schedules/{}", enc(&name)), NONE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(v: Value) -> RunProgress {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn progress_line_says_who_is_out_of_service_and_a_pause() {
        let v = progress(
            json!({"run": "r1", "states": {"waiting": 3}, "out_of_service": {"now": 2}, "paused": null}),
        );
        assert_eq!(progress_line(&v), "r1: waiting 3 · out of service now: 2");
        let v = progress(
            json!({"run": "r1", "states": {"held": 3}, "out_of_service": {"now": 0},
                       "paused": {"failures": 5}}),
        );
        assert_eq!(
            progress_line(&v),
            "r1: held 3 · paused (portflow status for why)"
        );
    }
}
