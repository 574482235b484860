//! `approve`, `signal`, `cancel`, `retry`: the same request here or through
//! the daemon, and one report of what it changed; `approve` and `signal` for
//! many subjects at once (`--subjects FILE`, `--all-waiting STEP`), reported
//! per subject.

use std::path::PathBuf;

use serde_json::Value;

use super::error::CliError;
use super::print::print_json;
use crate::api::{Applied, OperateBody, Outcome};
use crate::app::operate::past;
use crate::app::{App, Error};
use crate::client::connect;
use crate::report::exit;
use crate::spec::subject_list::{load_subject_list, Listed};

/// Names a summary line lists at most (`--json` lists every one).
const MAX_NAMED: usize = 20;

/// Who an approval or a signal is for.
#[derive(Debug)]
pub enum Who {
    /// One subject, or (approve) every instance.
    One(Option<String>),
    /// The subjects listed in this file.
    File(PathBuf),
    /// Every instance waiting at this step.
    WaitingAt(String),
}

impl Who {
    /// From the flags (clap lets at most one of them through).
    pub fn of(subject: Option<String>, file: Option<PathBuf>, step: Option<String>) -> Who {
        match (file, step) {
            (Some(f), _) => Who::File(f),
            (None, Some(s)) => Who::WaitingAt(s),
            (None, None) => Who::One(subject),
        }
    }
}

/// `signal`'s positionals: `SUBJECT NAME`, or `NAME` alone when `bulk`
/// (`--subjects`, `--all-waiting`) says who.
pub fn signal_args(
    mut args: Vec<String>,
    bulk: bool,
) -> Result<(Option<String>, String), CliError> {
    let usage = "portflow signal <run> <subject> <name>, or portflow signal <run> <name> \
                 --subjects FILE | --all-waiting STEP";
    match (args.len(), bulk) {
        (2, false) => {
            let name = args.remove(1);
            Ok((Some(args.remove(0)), name))
        }
        (1, true) => Ok((None, args.remove(0))),
        (2, true) => Err(CliError::input(
            "give a subject, --subjects or --all-waiting, not several",
        )
        .hint(usage)),
        _ => Err(CliError::input("signal needs a subject and a signal name").hint(usage)),
    }
}

/// The end of the line when the run's live driver takes the input: the same
/// through `portflow serve` and through a foreground run.
const DRIVEN_NOTE: &str = " (taken by the run's live driver; no resume needed)";

/// Send `verb` and print what it changed. Stored only, `extra` ends the lines
/// and `nothing` the error when nothing applied; taken by a live driver (the
/// daemon's or a foreground run's), a note says so and no resume is needed.
async fn send(
    app: &App,
    run: &str,
    verb: &str,
    body: OperateBody,
    extra: &str,
    nothing: &str,
) -> Result<u8, CliError> {
    let conn = connect(app)?;
    let run = &conn.run_id(run).await?;
    let service = conn.service();
    let subject = body.subject.clone();
    let a = match service.operate(run, verb, &body).await {
        Ok(a) => a,
        Err(e @ Error::NothingApplies { .. }) => {
            let mut err = CliError::from(e);
            err.message.push_str(nothing);
            err.message.push_str(extra);
            return Err(err);
        }
        Err(e) => return Err(e.into()),
    };
    let extra = if a.driven { DRIVEN_NOTE } else { extra };
    let verb = past(verb);
    if app.json {
        print_json(&serde_json::json!({
            "run": run, "subject": subject, "action": verb,
            "changed": a.changed, "unchanged": a.unchanged,
        }));
    } else {
        println!(
            "{verb}: {} instance(s) of run {run} changed, {} not applicable{extra}",
            a.changed, a.unchanged
        );
        if !a.driven {
            // Nothing drives the run until someone resumes it.
            println!("continue with: portflow resume {run}");
        }
    }
    Ok(exit::OK)
}

/// `portflow approve`.
pub async fn approve(
    app: &App,
    run: &str,
    who: Who,
    step: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let body = OperateBody {
        step: step.map(str::to_string),
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    match who {
        Who::One(subject) => {
            let body = OperateBody { subject, ..body };
            send(app, run, "approve", body, "", "").await
        }
        bulk => {
            let waits = match &bulk {
                Who::WaitingAt(gate) => format!("at gate {gate:?}"),
                _ => "at an approval gate".to_string(),
            };
            send_bulk(app, run, "approve", body, bulk, &waits).await
        }
    }
}

/// `portflow signal`.
pub async fn signal(
    app: &App,
    run: &str,
    who: Who,
    name: &str,
    data: Option<&str>,
    by: &str,
) -> Result<u8, CliError> {
    let data: Value = match data {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).map_err(|e| {
            CliError::input(format!("--data is not JSON: {e}"))
                .hint(r#"e.g. --data '{"number_type": "OperatorConnect"}'"#)
        })?,
    };
    let body = OperateBody {
        name: Some(name.to_string()),
        data,
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    match who {
        Who::One(subject) => {
            let body = OperateBody { subject, ..body };
            let nothing = format!(" (none waits for signal {name:?})");
            send(app, run, "signal", body, "", &nothing).await
        }
        bulk => {
            let waits = match &bulk {
                Who::WaitingAt(step) => format!("at step {step:?} for signal {name:?}"),
                _ => format!("for signal {name:?}"),
            };
            send_bulk(app, run, "signal", body, bulk, &waits).await
        }
    }
}

/// Send `verb` to many subjects (`who` is a file or a step) and report each.
/// Exit 0 when every one changed, 3 when the others were not waiting, 1 when
/// none changed or one failed. `waits` says where or what for, in messages.
async fn send_bulk(
    app: &App,
    run: &str,
    verb: &str,
    mut body: OperateBody,
    who: Who,
    waits: &str,
) -> Result<u8, CliError> {
    // The file is read first: a bad line changes nothing.
    let listed = match who {
        Who::File(path) => {
            let listed = load_subject_list(&path)?;
            body.subjects = listed.iter().map(|l| l.subject.clone()).collect();
            Some((path, listed))
        }
        Who::WaitingAt(step) => {
            body.waiting_at = Some(step);
            None
        }
        Who::One(_) => None,
    };
    let conn = connect(app)?;
    let run = conn.run_id(run).await?;
    let a = conn.service().operate(&run, verb, &body).await?;
    let done = past(verb);
    if !a.unknown.is_empty() {
        return Err(unknown_subjects(&run, done, listed, &a.unknown));
    }
    if a.subjects.is_empty() {
        return Err(CliError::runtime(format!(
            "nothing {done}: no instance of run {run} waits {waits}"
        ))
        .hint(format!(
            "`portflow status {run}` shows where the instances are"
        )));
    }
    let pick = |o: Outcome| -> Vec<&str> {
        a.subjects
            .iter()
            .filter(|s| s.outcome == o)
            .map(|s| s.subject.as_str())
            .collect()
    };
    let (not_waiting, failed) = (pick(Outcome::NotWaiting), pick(Outcome::Failed));
    if app.json {
        print_json(&serde_json::json!({
            "run": run, "action": done, "driven": a.driven,
            "changed": a.changed, "not_waiting": not_waiting.len(), "failed": failed.len(),
            "subjects": a.subjects,
        }));
    } else {
        print_bulk(&a, &run, done, &not_waiting, &failed);
    }
    if !failed.is_empty() {
        let why: Vec<String> = a
            .subjects
            .iter()
            .filter(|s| s.outcome == Outcome::Failed)
            .take(MAX_NAMED)
            .map(|s| format!("{}: {}", s.subject, s.error.as_deref().unwrap_or("failed")))
            .collect();
        return Err(CliError::runtime(format!(
            "{} subject(s) of run {run} failed: {}",
            failed.len(),
            why.join("; ")
        ))
        .hint("the others are done; send it again to those that failed"));
    }
    if a.changed == 0 {
        return Err(CliError::runtime(format!(
            "nothing {done}: none of the {} addressed subject(s) of run {run} waits {waits}",
            a.subjects.len()
        ))
        .hint(format!(
            "`portflow show {run} <subject>` says where each one is"
        )));
    }
    Ok(if not_waiting.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// One line per subject that changed, then the counts.
fn print_bulk(a: &Applied, run: &str, done: &str, not_waiting: &[&str], failed: &[&str]) {
    for s in a.subjects.iter().filter(|s| s.outcome == Outcome::Changed) {
        println!("{done}: {}", s.subject);
    }
    let mut line = format!("run {run}: {} {done}", a.changed);
    if !not_waiting.is_empty() {
        line.push_str(&format!(
            ", {} not waiting ({})",
            not_waiting.len(),
            named(not_waiting)
        ));
    }
    if !failed.is_empty() {
        line.push_str(&format!(", {} failed ({})", failed.len(), named(failed)));
    }
    if a.changed > 0 && a.driven {
        line.push_str(DRIVEN_NOTE);
    }
    println!("{line}");
    if a.changed > 0 && !a.driven {
        println!("continue with: portflow resume {run}");
    }
}

/// `a, b, c` and how many more past [`MAX_NAMED`].
fn named(names: &[&str]) -> String {
    let mut s = names
        .iter()
        .take(MAX_NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMED {
        s.push_str(&format!(" and {} more", names.len() - MAX_NAMED));
    }
    s
}

/// The error for subjects the run does not have, at their place in the file.
fn unknown_subjects(
    run: &str,
    done: &str,
    listed: Option<(PathBuf, Vec<Listed>)>,
    unknown: &[String],
) -> CliError {
    let unknown: std::collections::HashSet<&str> = unknown.iter().map(String::as_str).collect();
    let lines: Vec<String> = match &listed {
        Some((path, listed)) => listed
            .iter()
            .filter(|l| unknown.contains(l.subject.as_str()))
            .take(MAX_NAMED)
            .map(|l| {
                format!(
                    "{}:{}:{}: run {run} has no subject {:?}",
                    path.display(),
                    l.line,
                    l.col,
                    l.subject
                )
            })
            .collect(),
        None => vec![format!("run {run} has no subjects {unknown:?}")],
    };
    let mut message = lines.join("\n");
    if unknown.len() > lines.len() {
        message.push_str(&format!(
            "\n… and {} more subject(s) the run does not have",
            unknown.len() - lines.len()
        ));
    }
    CliError::input(message).hint(format!(
        "nothing was {done}; fix the list (`portflow status {run}` shows the run)"
    ))
}

/// `portflow cancel`.
pub async fn cancel(
    app: &App,
    run: &str,
    subject: Option<&str>,
    rollback: bool,
    reason: &str,
    by: &str,
) -> Result<u8, CliError> {
    let body = OperateBody {
        subject: subject.map(str::to_string),
        rollback,
        reason: Some(reason.to_string()),
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    let extra = if rollback {
        "; rollbacks run on resume"
    } else {
        ""
    };
    send(app, run, "cancel", body, extra, "").await
}

/// `retry --set`: inputs to amend first, and why.
#[derive(Debug, Default)]
pub struct Amend {
    /// `INPUT=VALUE` pairs, in the order given.
    pub set: Vec<(String, String)>,
    /// `--reason`.
    pub reason: Option<String>,
}

/// `portflow retry`.
pub async fn retry(
    app: &App,
    run: &str,
    subject: Option<&str>,
    from_step: Option<&str>,
    amend: Amend,
    by: &str,
) -> Result<u8, CliError> {
    let mut set = std::collections::BTreeMap::new();
    for (name, value) in amend.set {
        if set.insert(name.clone(), value).is_some() {
            return Err(CliError::input(format!("--set {name}=… is given twice"))
                .hint("give each input once"));
        }
    }
    let nothing = if set.is_empty() {
        ""
    } else {
        "; no input was amended"
    };
    let body = OperateBody {
        subject: subject.map(str::to_string),
        from_step: from_step.map(str::to_string),
        set,
        reason: amend.reason,
        by: Some(by.to_string()),
        ..OperateBody::default()
    };
    send(app, run, "retry", body, "", nothing).await
}
