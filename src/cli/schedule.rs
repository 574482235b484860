//! `portflow schedule add|list|show|pause|resume|rm`: schedules live in the store.
//! The same operations serve the CLI (store opened directly) and the daemon's API,
//! and both print from the same JSON, so the output is the same either way.

use std::path::Path;

use serde_json::{json, Value};

use super::client::{daemon_error, enc, has_daemon, request};
use super::{exit, print_json, App, CliError, ScheduleCommand};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::report::table::Table;
use crate::schedule::{Launch, ScheduleRecord, ScheduleSpec};
use crate::store::commit::Committer;
use crate::store::{keys, records, Batch, Store};

/// Fire times `show` and the API list.
const UPCOMING: usize = 5;

fn when(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.rfc3339()))
}

fn launch_json(l: &Launch) -> Value {
    match l {
        Launch::RunFile { path } => json!({"run_file": path}),
        Launch::NextWave { run_file, size } => {
            json!({"next_wave": {"run_file": run_file, "size": size}})
        }
    }
}

/// The JSON view of a schedule (API and `--json`).
pub(super) fn view(rec: &ScheduleRecord, now: Timestamp, full: bool) -> Value {
    let compiled = rec.spec.validate();
    let (next, next_local, describe) = match &compiled {
        Ok(c) => {
            let fires = rec.upcoming(c, now, UPCOMING);
            (
                fires.iter().map(|t| Value::String(t.rfc3339())).collect(),
                fires
                    .iter()
                    .map(|t| Value::String(c.schedule.local_label(*t)))
                    .collect(),
                Value::String(c.schedule.describe()),
            )
        }
        Err(e) => (
            Vec::new(),
            Vec::new(),
            Value::String(format!("invalid: {e}")),
        ),
    };
    let history: Vec<Value> = rec
        .history
        .iter()
        .rev()
        .take(if full { usize::MAX } else { 1 })
        .map(|h| {
            json!({"fire": h.fire.rfc3339(), "at": h.at.rfc3339(), "outcome": h.outcome, "text": h.outcome.describe()})
        })
        .collect();
    let mut v = json!({
        "name": rec.spec.name,
        "cron": rec.spec.cron,
        "timezone": rec.spec.timezone,
        "describe": describe,
        "overlap": rec.spec.overlap,
        "catch_up": {"policy": rec.spec.catch_up.policy, "max_age": humantime::format_duration(rec.spec.catch_up.max_age).to_string()},
        "launch": launch_json(&rec.spec.launch),
        "paused": rec.paused,
        "added_at": rec.added_at.rfc3339(),
        "last_fired": when(rec.last_fired),
        "last_run": rec.last_run(),
        "queued": rec.queued.iter().map(|t| t.rfc3339()).collect::<Vec<_>>(),
        "next_fires": next,
        "next_fires_local": next_local,
        "history": history,
    });
    if full {
        v["runs"] = json!(rec.runs);
    }
    v
}

/// `{"schedules": [...]}` of every schedule.
pub(super) fn list_json(store: &dyn Store, now: Timestamp) -> Result<Value, CliError> {
    let all = records::list_schedules(store)?;
    Ok(json!({"schedules": all.iter().map(|r| view(r, now, false)).collect::<Vec<_>>()}))
}

fn not_found(name: &str) -> CliError {
    CliError::input(format!("no schedule {name:?}"))
        .hint("`portflow schedule list` lists the schedules")
}

/// One schedule with its full history.
pub(super) fn show_json(store: &dyn Store, name: &str, now: Timestamp) -> Result<Value, CliError> {
    let rec = records::get_schedule(store, name)?.ok_or_else(|| not_found(name))?;
    Ok(view(&rec, now, true))
}

/// Store schedules. An existing one is an error unless `replace`, which keeps its
/// firing state (last fire, runs, history) and swaps the spec.
pub(super) async fn add(
    store: &dyn Store,
    committer: &Committer,
    specs: Vec<ScheduleSpec>,
    replace: bool,
    now: Timestamp,
) -> Result<Value, CliError> {
    let mut b = Batch::default();
    let mut added = Vec::new();
    for spec in specs {
        spec.validate()
            .map_err(|e| CliError::input(format!("schedule {:?}: {e}", spec.name)))?;
        // The daemon reads the run file at each fire, by the API's rule.
        let (Launch::RunFile { path } | Launch::NextWave { run_file: path, .. }) = &spec.launch;
        super::runpath::check(path).map_err(|e| {
            CliError::input(format!("schedule {:?}: {e}", spec.name))
                .hint("name a run file ending in .yaml or .yml")
        })?;
        let rec = match records::get_schedule(store, &spec.name)? {
            Some(_) if !replace => {
                return Err(
                    CliError::input(format!("schedule {:?} exists already", spec.name))
                        .hint("pass --replace to change it, or `portflow schedule rm` it first"),
                )
            }
            Some(mut old) => {
                old.spec = spec;
                old
            }
            None => ScheduleRecord::new(spec, now),
        };
        added.push(view(&rec, now, false));
        records::put_schedule(&mut b, &rec);
    }
    committer.commit(b).await?;
    Ok(json!({"schedules": added}))
}

/// Pause or resume a schedule.
pub(super) async fn set_paused(
    store: &dyn Store,
    committer: &Committer,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> Result<Value, CliError> {
    let mut rec = records::get_schedule(store, name)?.ok_or_else(|| not_found(name))?;
    if paused {
        rec.pause();
    } else {
        rec.resume(now);
    }
    let mut b = Batch::default();
    records::put_schedule(&mut b, &rec);
    committer.commit(b).await?;
    Ok(view(&rec, now, false))
}

/// Delete a schedule (its runs stay).
pub(super) async fn remove(
    store: &dyn Store,
    committer: &Committer,
    name: &str,
) -> Result<Value, CliError> {
    if records::get_schedule(store, name)?.is_none() {
        return Err(not_found(name));
    }
    let mut b = Batch::default();
    b.delete(keys::schedule(name));
    committer.commit(b).await?;
    Ok(json!({"removed": name}))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn launch_text(v: &Value) -> String {
    if let Some(f) = v["run_file"].as_str() {
        format!("run {f}")
    } else {
        format!(
            "next wave of {} from {}",
            s(&v["next_wave"]["size"]),
            s(&v["next_wave"]["run_file"])
        )
    }
}

/// `schedule list` as text.
pub(super) fn render_list(v: &Value) -> String {
    let empty = Vec::new();
    let all = v["schedules"].as_array().unwrap_or(&empty);
    if all.is_empty() {
        return "no schedules; add one with `portflow schedule add FILE`\n".into();
    }
    let mut t = Table::new([
        "name",
        "cron",
        "timezone",
        "state",
        "next fire",
        "launches",
        "last",
    ]);
    for sc in all {
        t.row([
            s(&sc["name"]),
            s(&sc["cron"]),
            s(&sc["timezone"]),
            if sc["paused"].as_bool().unwrap_or(false) {
                "paused".into()
            } else {
                "active".into()
            },
            s(&sc["next_fires"][0]),
            launch_text(&sc["launch"]),
            sc["history"][0]["text"]
                .as_str()
                .unwrap_or("never fired")
                .to_string(),
        ]);
    }
    t.render()
}

/// `schedule show` as text.
pub(super) fn render_show(v: &Value) -> String {
    let mut out = format!(
        "schedule {}: `{}` in {}: {}\n",
        s(&v["name"]),
        s(&v["cron"]),
        s(&v["timezone"]),
        s(&v["describe"])
    );
    out += &format!(
        "launches: {}\noverlap: {}; catch-up: {} (max age {})\nstate: {}; added {}; last fire {}; last run {}\n",
        launch_text(&v["launch"]),
        s(&v["overlap"]),
        s(&v["catch_up"]["policy"]),
        s(&v["catch_up"]["max_age"]),
        if v["paused"].as_bool().unwrap_or(false) { "paused" } else { "active" },
        s(&v["added_at"]),
        s(&v["last_fired"]),
        s(&v["last_run"]),
    );
    if let Some(q) = v["queued"].as_array().filter(|q| !q.is_empty()) {
        out += &format!(
            "queued behind the running run: {}\n",
            q.iter().map(s).collect::<Vec<_>>().join(", ")
        );
    }
    out += "next fire times:\n";
    match v["next_fires"].as_array().filter(|n| !n.is_empty()) {
        Some(n) => {
            for (i, t) in n.iter().enumerate() {
                out += &format!("  {}  ({})\n", s(t), s(&v["next_fires_local"][i]));
            }
        }
        None => out += "  none (paused)\n",
    }
    if let Some(h) = v["history"].as_array().filter(|h| !h.is_empty()) {
        let mut t = Table::new(["fire time", "handled at", "outcome"]);
        for e in h {
            t.row([s(&e["fire"]), s(&e["at"]), s(&e["text"])]);
        }
        out += "history (newest first):\n";
        out += &t.render();
    }
    out
}

/// Run one `portflow schedule …` command.
pub async fn command(app: &App, cmd: ScheduleCommand) -> Result<u8, CliError> {
    let (v, kind) = match app.open_store() {
        Ok(store) => {
            let store = std::sync::Arc::new(store);
            let committer = Committer::start(store.clone(), true);
            let now = SystemClock.now();
            let v = local(app, &*store, &committer, &cmd, now).await;
            committer.barrier().await?;
            (v?, kind(&cmd))
        }
        Err(e) if e.code == exit::LOCKED && has_daemon(app) => (remote(app, &cmd)?, kind(&cmd)),
        Err(e) => return Err(e),
    };
    if app.json {
        print_json(&v);
        return Ok(exit::OK);
    }
    match kind {
        Kind::List => print!("{}", render_list(&v)),
        Kind::Show => print!("{}", render_show(&v)),
        Kind::Added => {
            print!("{}", render_list(&v));
        }
        Kind::Changed(what) => println!("schedule {} {what}", s(&v["name"])),
        Kind::Removed => println!("schedule {} removed; its runs stay", s(&v["removed"])),
    }
    Ok(exit::OK)
}

enum Kind {
    List,
    Show,
    Added,
    Changed(&'static str),
    Removed,
}

fn kind(cmd: &ScheduleCommand) -> Kind {
    match cmd {
        ScheduleCommand::Add { .. } => Kind::Added,
        ScheduleCommand::List => Kind::List,
        ScheduleCommand::Show { .. } => Kind::Show,
        ScheduleCommand::Pause { .. } => Kind::Changed("paused"),
        ScheduleCommand::Resume { .. } => Kind::Changed("resumed"),
        ScheduleCommand::Rm { .. } => Kind::Removed,
    }
}

fn load_file(app: &App, file: &Path) -> Result<Vec<ScheduleSpec>, CliError> {
    Ok(crate::spec::load_schedules(file, &app.search_dirs())?)
}

async fn local(
    app: &App,
    store: &dyn Store,
    committer: &Committer,
    cmd: &ScheduleCommand,
    now: Timestamp,
) -> Result<Value, CliError> {
    match cmd {
        ScheduleCommand::Add { file, replace } => {
            add(store, committer, load_file(app, file)?, *replace, now).await
        }
        ScheduleCommand::List => list_json(store, now),
        ScheduleCommand::Show { name } => show_json(store, name, now),
        ScheduleCommand::Pause { name } => set_paused(store, committer, name, true, now).await,
        ScheduleCommand::Resume { name } => set_paused(store, committer, name, false, now).await,
        ScheduleCommand::Rm { name } => remove(store, committer, name).await,
    }
}

fn remote(app: &App, cmd: &ScheduleCommand) -> Result<Value, CliError> {
    let (method, path, body) = match cmd {
        ScheduleCommand::Add { file, replace } => (
            "POST",
            "/api/schedules".to_string(),
            json!({"schedules": load_file(app, file)?, "replace": replace}),
        ),
        ScheduleCommand::List => ("GET", "/api/schedules".into(), Value::Null),
        ScheduleCommand::Show { name } => {
            ("GET", format!("/api/schedules/{}", enc(name)), Value::Null)
        }
        ScheduleCommand::Pause { name } => (
            "POST",
            format!("/api/schedules/{}/pause", enc(name)),
            json!({}),
        ),
        ScheduleCommand::Resume { name } => (
            "POST",
            format!("/api/schedules/{}/resume", enc(name)),
            json!({}),
        ),
        ScheduleCommand::Rm { name } => (
            "DELETE",
            format!("/api/schedules/{}", enc(name)),
            Value::Null,
        ),
    };
    let (status, v) = request(app, method, &path, &body)?;
    if status != 200 {
        return Err(daemon_error(status, &v));
    }
    Ok(v)
}
