//! Schedules in the store: add, list, show, pause, resume, remove. The same
//! operations serve the CLI (store opened directly) and the daemon's API, and
//! both print from the same JSON view, so the output is the same either way.

use serde_json::{json, Value};

use super::{Error, Result};
use crate::clock::Timestamp;
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
pub fn view(rec: &ScheduleRecord, now: Timestamp, full: bool) -> Value {
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
pub fn list_json(store: &dyn Store, now: Timestamp) -> Result<Value> {
    let all = records::list_schedules(store)?;
    Ok(json!({"schedules": all.iter().map(|r| view(r, now, false)).collect::<Vec<_>>()}))
}

fn not_found(name: &str) -> Error {
    Error::ScheduleNotFound(name.to_string())
}

/// One schedule with its full history.
pub fn show_json(store: &dyn Store, name: &str, now: Timestamp) -> Result<Value> {
    let rec = records::get_schedule(store, name)?.ok_or_else(|| not_found(name))?;
    Ok(view(&rec, now, true))
}

/// Store schedules. An existing one is an error unless `replace`, which keeps its
/// firing state (last fire, runs, history) and swaps the spec.
pub async fn add(
    store: &dyn Store,
    committer: &Committer,
    specs: Vec<ScheduleSpec>,
    replace: bool,
    now: Timestamp,
) -> Result<Value> {
    let mut b = Batch::default();
    let mut added = Vec::new();
    for spec in specs {
        spec.validate()
            .map_err(|e| Error::input(format!("schedule {:?}: {e}", spec.name)))?;
        // The daemon reads the run file at each fire, by the API's rule.
        let (Launch::RunFile { path } | Launch::NextWave { run_file: path, .. }) = &spec.launch;
        super::runpath::check(path).map_err(|e| {
            Error::input(format!("schedule {:?}: {e}", spec.name))
                .hint("name a run file ending in .yaml or .yml")
        })?;
        let rec = match records::get_schedule(store, &spec.name)? {
            Some(_) if !replace => {
                return Err(
                    Error::input(format!("schedule {:?} exists already", spec.name))
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
        records::put_schedule(&mut b, &rec)?;
    }
    committer.commit(b).await?;
    Ok(json!({"schedules": added}))
}

/// Pause or resume a schedule.
pub async fn set_paused(
    store: &dyn Store,
    committer: &Committer,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> Result<Value> {
    let mut rec = records::get_schedule(store, name)?.ok_or_else(|| not_found(name))?;
    if paused {
        rec.pause();
    } else {
        rec.resume(now);
    }
    let mut b = Batch::default();
    records::put_schedule(&mut b, &rec)?;
    committer.commit(b).await?;
    Ok(view(&rec, now, false))
}

/// Delete a schedule (its runs stay).
pub async fn remove(store: &dyn Store, committer: &Committer, name: &str) -> Result<Value> {
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
pub fn render_list(v: &Value) -> String {
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
pub fn render_show(v: &Value) -> String {
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

/// One operation on the stored schedules.
#[derive(Debug)]
pub enum ScheduleOp {
    /// Store these (replacing ones of the same name when asked).
    Add {
        /// The schedules.
        specs: Vec<ScheduleSpec>,
        /// Replace existing ones.
        replace: bool,
    },
    /// Every schedule.
    List,
    /// One schedule with its history.
    Show(String),
    /// Stop one firing.
    Pause(String),
    /// Let one fire again.
    Resume(String),
    /// Delete one.
    Remove(String),
}

/// Carry out `op` at `now`; the answer is what the API returns for it.
pub async fn apply(
    store: &dyn Store,
    committer: &Committer,
    op: ScheduleOp,
    now: Timestamp,
) -> Result<Value> {
    match op {
        ScheduleOp::Add { specs, replace } => add(store, committer, specs, replace, now).await,
        ScheduleOp::List => list_json(store, now),
        ScheduleOp::Show(name) => show_json(store, &name, now),
        ScheduleOp::Pause(name) => set_paused(store, committer, &name, true, now).await,
        ScheduleOp::Resume(name) => set_paused(store, committer, &name, false, now).await,
        ScheduleOp::Remove(name) => remove(store, committer, &name).await,
    }
}
